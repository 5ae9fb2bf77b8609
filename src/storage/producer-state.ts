/**
 * Idempotent-producer state of one partition: for each producer id, its epoch and the sequence
 * numbers and offsets of its last `PRODUCER_BATCH_WINDOW` batches (10; Kafka keeps 5). It lets the log answer a
 * retried batch with its original offsets instead of writing it twice, and refuse a batch whose
 * sequence number leaves a gap.
 *
 * Rules (as Kafka's broker applies them):
 * - A batch with producerId -1 is not idempotent and is never checked.
 * - An unknown producer id starts a new entry at whatever sequence it brings (its state may have
 *   been lost with old segments); from then on sequences must follow on without gaps.
 * - An epoch below the producer's current one is refused (an older instance was fenced); a
 *   higher epoch must start at sequence 0.
 * - A batch equal (first and last sequence) to one of the last `PRODUCER_BATCH_WINDOW` is a
 *   duplicate: not written, answered with the offsets it got the first time. Producers learn
 *   the window from InitProducer and keep at most that many batches in flight per partition.
 * - Sequences wrap from 2^31 - 1 to 0.
 *
 * Within one write group the writer checks batches against a provisional view (`pending`) and
 * commits it only when the write succeeds, so a failed write leaves no trace.
 *
 * Persistence: a snapshot (`producer-state.checkpoint`, JSON behind a CRC32C line) is written at
 * every roll and clean close with the offset it is valid for; on open the log loads it and
 * replays the batch headers after that offset. State older than a lost snapshot is forgotten,
 * which makes those producers "unknown": accepted, not deduplicated, for one batch. A producer
 * idle for `PRODUCER_EXPIRATION_MS` is forgotten too (see `expire`).
 */
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { ErrorCode, StrataError } from '../common/errors.js';
import { type FileSystem, replaceFileDurably } from './file-system.js';
import { readBaseOffset, readBaseSequence, readLastOffset, readProducerEpoch, readProducerId, readRecordCount } from './record-batch.js';

export const PRODUCER_BATCH_WINDOW = 10;
export const PRODUCER_STATE_FILE = 'producer-state.checkpoint';
const SEQUENCE_MODULUS = 2 ** 31;

interface BatchSequence {
  firstSequence: number;
  lastSequence: number;
  baseOffset: number;
  lastOffset: number;
}

interface ProducerEntry {
  epoch: number;
  /** Oldest first, at most PRODUCER_BATCH_WINDOW. */
  batches: BatchSequence[];
  /** When its last batch was appended (or replayed, or loaded from a snapshot without it), broker clock. */
  lastAppendMs: number;
}

/**
 * How long a producer that appends nothing more is remembered (Kafka's
 * `producer.id.expiration.ms`, whose default this is): every InitProducer makes a new id, so
 * without it each producer a partition ever had would stay in its memory and its snapshot.
 * Forgotten, a producer that comes back is "unknown": its next batch is accepted at whatever
 * sequence it brings, and no batch of a day ago can still be in its retries.
 */
export const PRODUCER_EXPIRATION_MS = 24 * 60 * 60 * 1000;

export type SequenceCheck = { duplicate: false } | { duplicate: true; baseOffset: number; lastOffset: number };

function lastSequenceOf(firstSequence: number, recordCount: number): number {
  return (firstSequence + recordCount - 1) % SEQUENCE_MODULUS;
}

function outOfOrder(message: string): StrataError {
  return new StrataError(ErrorCode.FAILED_PRECONDITION, message);
}

export class ProducerState {
  private producers = new Map<number, ProducerEntry>();
  private pending = new Map<number, ProducerEntry>();

  constructor(private readonly nowMs: () => number = Date.now) {}

  get producerCount(): number {
    return this.producers.size;
  }

  /** The highest producer id this partition remembers batches of; 0 for none. */
  get highestProducerId(): number {
    let highest = 0;
    for (const producerId of this.producers.keys()) highest = Math.max(highest, producerId);
    return highest;
  }

  private current(producerId: number): ProducerEntry | undefined {
    return this.pending.get(producerId) ?? this.producers.get(producerId);
  }

  /**
   * Checks the idempotent batch at `position` against the producer's state. Returns whether it
   * is a duplicate; throws FAILED_PRECONDITION for a fenced epoch or a sequence gap.
   */
  check(buffer: Buffer, position: number): SequenceCheck {
    const producerId = readProducerId(buffer, position);
    const epoch = readProducerEpoch(buffer, position);
    const firstSequence = readBaseSequence(buffer, position);
    const lastSequence = lastSequenceOf(firstSequence, readRecordCount(buffer, position));
    if (firstSequence < 0) throw outOfOrder(`idempotent batch of producer ${producerId} has base sequence ${firstSequence}`);
    const entry = this.current(producerId);
    if (entry === undefined) return { duplicate: false };
    if (epoch < entry.epoch) {
      throw outOfOrder(`producer ${producerId} epoch ${epoch} is fenced: a newer instance has epoch ${entry.epoch}`);
    }
    if (epoch > entry.epoch) {
      if (firstSequence !== 0) throw outOfOrder(`out-of-order sequence for producer ${producerId} new epoch ${epoch}: expected 0, got ${firstSequence}`);
      return { duplicate: false };
    }
    for (const batch of entry.batches) {
      if (batch.firstSequence === firstSequence && batch.lastSequence === lastSequence) {
        return { duplicate: true, baseOffset: batch.baseOffset, lastOffset: batch.lastOffset };
      }
    }
    const last = entry.batches[entry.batches.length - 1];
    const expected = last === undefined ? firstSequence : (last.lastSequence + 1) % SEQUENCE_MODULUS;
    if (firstSequence !== expected) {
      throw outOfOrder(`out-of-order sequence for producer ${producerId} epoch ${epoch}: expected ${expected}, got ${firstSequence}`);
    }
    return { duplicate: false };
  }

  /** Records a batch the writer is about to write (provisional until `commitPending`). */
  recordPending(buffer: Buffer, position: number): void {
    const producerId = readProducerId(buffer, position);
    const entry = this.current(producerId);
    const next: ProducerEntry = this.apply(entry, buffer, position);
    this.pending.set(producerId, next);
  }

  commitPending(): void {
    for (const [producerId, entry] of this.pending) this.producers.set(producerId, entry);
    this.pending.clear();
  }

  abortPending(): void {
    this.pending.clear();
  }

  /** Updates the state from a batch read back from the log (recovery replay). */
  observe(buffer: Buffer, position: number): void {
    const producerId = readProducerId(buffer, position);
    if (producerId < 0) return;
    this.producers.set(producerId, this.apply(this.producers.get(producerId), buffer, position));
  }

  private apply(entry: ProducerEntry | undefined, buffer: Buffer, position: number): ProducerEntry {
    const epoch = readProducerEpoch(buffer, position);
    const firstSequence = readBaseSequence(buffer, position);
    const batch: BatchSequence = {
      firstSequence,
      lastSequence: lastSequenceOf(firstSequence, readRecordCount(buffer, position)),
      baseOffset: readBaseOffset(buffer, position),
      lastOffset: readLastOffset(buffer, position),
    };
    const kept = entry !== undefined && entry.epoch === epoch ? entry.batches.slice(-(PRODUCER_BATCH_WINDOW - 1)) : [];
    kept.push(batch);
    return { epoch, batches: kept, lastAppendMs: this.nowMs() };
  }

  /** Forgets batches at or above `offset` (the log was truncated there). */
  truncateFrom(offset: number): void {
    for (const [producerId, entry] of this.producers) {
      const batches = entry.batches.filter((batch) => batch.lastOffset < offset);
      if (batches.length === 0) this.producers.delete(producerId);
      else this.producers.set(producerId, { ...entry, batches });
    }
  }

  /**
   * Forgets the producers that have appended nothing for longer than `PRODUCER_EXPIRATION_MS`
   * (not one with a batch being written); returns how many.
   */
  expire(): number {
    const cutoff = this.nowMs() - PRODUCER_EXPIRATION_MS;
    let expired = 0;
    for (const [producerId, entry] of this.producers) {
      if (entry.lastAppendMs < cutoff && !this.pending.has(producerId)) {
        this.producers.delete(producerId);
        expired++;
      }
    }
    return expired;
  }

  // -------------------------------------------------------------------------------------------
  // Snapshot file.

  encode(offset: number): Buffer {
    const producers = [...this.producers].map(([id, entry]) => [id, entry.epoch, entry.batches.map((b) => [b.firstSequence, b.lastSequence, b.baseOffset, b.lastOffset]), entry.lastAppendMs]);
    const body = JSON.stringify({ version: 2, offset, producers });
    return Buffer.from(`${crc32c(Buffer.from(body)).toString(16).padStart(8, '0')}\n${body}`);
  }

  /**
   * Parses a snapshot; null when missing, torn or corrupt. A version 1 snapshot has no append
   * times: its producers count as seen at `nowMs()`.
   */
  static decode(bytes: Buffer | null, nowMs: () => number = Date.now): { state: ProducerState; offset: number } | null {
    if (bytes === null) return null;
    const text = bytes.toString('utf8');
    const newline = text.indexOf('\n');
    if (newline !== 8) return null;
    const body = text.slice(9);
    if (crc32c(Buffer.from(body)).toString(16).padStart(8, '0') !== text.slice(0, 8)) return null;
    try {
      const parsed = JSON.parse(body) as { version: number; offset: number; producers: [number, number, number[][], number?][] };
      if ((parsed.version !== 1 && parsed.version !== 2) || !Number.isSafeInteger(parsed.offset)) return null;
      const state = new ProducerState(nowMs);
      const loadedAtMs = nowMs();
      for (const [id, epoch, batches, lastAppendMs] of parsed.producers) {
        if (parsed.version === 2 && !Number.isSafeInteger(lastAppendMs)) return null;
        state.producers.set(id, {
          epoch,
          lastAppendMs: lastAppendMs ?? loadedAtMs,
          batches: batches.map(([firstSequence, lastSequence, baseOffset, lastOffset]) => ({
            firstSequence: firstSequence!, lastSequence: lastSequence!, baseOffset: baseOffset!, lastOffset: lastOffset!,
          })),
        });
      }
      return { state, offset: parsed.offset };
    } catch {
      return null;
    }
  }

  /** Writes the snapshot atomically (temp, fsync, rename; the caller fsyncs the directory). */
  async save(fs: FileSystem, directory: string, offset: number): Promise<void> {
    // No fsync of the directory: a crash may keep the snapshot before, from which the load replays.
    await replaceFileDurably(fs, join(directory, PRODUCER_STATE_FILE), this.encode(offset), { syncDirectory: false });
  }

  static async load(fs: FileSystem, directory: string, nowMs: () => number = Date.now): Promise<{ state: ProducerState; offset: number } | null> {
    return ProducerState.decode(await fs.readFile(join(directory, PRODUCER_STATE_FILE)), nowMs);
  }
}
