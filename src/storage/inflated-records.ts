/**
 * The records of a gzip batch, handed to a visitor as they inflate: on libuv's thread pool, a
 * chunk at a time, and no further than the visitor wants. A decoded read stops at `max_bytes`
 * and a lookup by time (`firstRecordFrom`) at its first record, so each inflates what it reads,
 * where inflating the whole batch first held up to `INFLATED_BATCH_BYTES_MAX` (128 MiB) for
 * every such read. Besides the chunk being read, only a record cut by a chunk's end is held.
 */
import { type Gunzip, createGunzip } from 'node:zlib';
import type { StrataError } from '../common/errors.js';
import {
  CRC_OFFSET,
  Compression,
  INFLATED_BATCH_BYTES_MAX,
  INFLATE_CHUNK_BYTES,
  RECORDS_OFFSET,
  type RecordVisitor,
  type RecordsContext,
  compressionOf,
  forEachBatch,
  forEachRecord,
  isCompressedBatch,
  readAttributes,
  readBaseOffset,
  readBatchSize,
  readLastOffset,
  readMaxTimestamp,
  readRecordCount,
  recordsContext,
  undecodable,
  unsupportedCodecMessage,
  visitRecords,
} from './record-batch.js';
import { VarintReader } from './varint.js';

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * Visits the records of the gzip batch at `position` whose offset is at least `fromOffset`, as
 * `forEachRecord` does, until the visitor returns false. Rejects with `CORRUPT_BATCH` when the
 * records do not inflate or parse (those before the damage have been visited).
 */
export async function forEachInflatedRecord(buffer: Buffer, position: number, fromOffset: number, visit: RecordVisitor): Promise<void> {
  const inflation = new BatchInflation(buffer.subarray(position, position + readBatchSize(buffer, position)));
  try {
    await inflation.read(fromOffset, visit);
  } finally {
    inflation.close();
  }
}

/** Whole records inflated and not yet all visited: `records` of them in `pending[0, end)`. */
interface RecordRun {
  pending: Buffer;
  end: number;
  records: number;
  nextRecordBytes: number;
}

interface PendingRead {
  fromOffset: number;
  visit: RecordVisitor;
  resolve(stopped: boolean): void;
  reject(error: unknown): void;
}

/**
 * One gzip batch (`batch`: its bytes, header included) inflating on the thread pool as its
 * records are read. A read that its visitor stops leaves the inflation paused where it was, and
 * the next read goes on from there: the batch is inflated once however many reads it takes, not
 * again from its start for each (which cost a series of reads time in the square of the batch's
 * inflated size). The records of the chunk a read stopped in are kept and visited again by the
 * next read, which skips those below its `fromOffset`. Holds the inflater's state, that chunk,
 * and `batch` itself; `close` releases them.
 */
export class BatchInflation {
  private readonly gunzip: Gunzip;
  private readonly context: RecordsContext;
  private readonly count: number;
  private readonly lengthReader = new VarintReader(EMPTY, 0, 0);
  /** Inflated chunks not taken apart yet (they arrive while no read is under way, too). */
  private readonly arrived: Buffer[] = [];
  /**
   * Inflated bytes not visited yet, in the pieces they came in: the start of a record the last
   * chunk cut, and the chunks since. They are joined once they may hold it whole (`needed`, when
   * its length prefix is known), so a record of many chunks is copied once.
   */
  private pieces: Buffer[] = [];
  private piecesBytes = 0;
  private needed = 0;
  /** Records of the batch visited by reads before the current run. */
  private visited = 0;
  private inflatedBytesTotal = 0;
  /** The run a read stopped in, visited again by the next. */
  private stoppedIn: RecordRun | null = null;
  /** The offset of the last record handed to a visitor (-1 before the first). */
  private passedOffset = -1;
  private reading: PendingRead | null = null;
  private inflated = false;
  private closed = false;
  private failure: StrataError | null = null;

  constructor(readonly batch: Buffer) {
    this.context = recordsContext(batch, 0);
    this.count = readRecordCount(batch, 0);
    this.gunzip = createGunzip({ chunkSize: INFLATE_CHUNK_BYTES });
    const compression = compressionOf(readAttributes(batch, 0));
    if (compression !== Compression.gzip) {
      this.failure = undecodable(this.context, new Error(unsupportedCodecMessage(compression)));
      return;
    }
    this.gunzip.on('data', (chunk: Buffer) => {
      this.arrived.push(chunk);
      this.takeApart();
    });
    this.gunzip.on('error', (error) => this.fail(new Error(`its records do not inflate: ${error.message}`)));
    this.gunzip.on('end', () => {
      this.inflated = true;
      this.takeApart();
    });
    this.gunzip.pause();
    this.gunzip.end(batch.subarray(RECORDS_OFFSET));
  }

  /** The offset after the last record a read handed its visitor: where the next read may start. */
  get nextOffset(): number {
    return this.passedOffset + 1;
  }

  /**
   * Bytes this inflation holds: its batch, the records inflated and not yet read, and a chunk's
   * worth for what the inflater has ready (its window and state are about a tenth of that).
   */
  get heldBytes(): number {
    let bytes = this.batch.length + this.piecesBytes + (this.stoppedIn?.pending.length ?? 0) + INFLATE_CHUNK_BYTES;
    for (const chunk of this.arrived) bytes += chunk.length;
    return bytes;
  }

  /** Bytes inflated so far. */
  get inflatedBytes(): number {
    return this.inflatedBytesTotal;
  }

  /**
   * Visits the records from `fromOffset` on that this inflation has not passed, until the
   * visitor returns false or the batch ends. Resolves to true when the visitor stopped it (the
   * inflation may then be read on), false at the batch's end. Rejects with `CORRUPT_BATCH` when
   * the records do not inflate or parse. One read at a time.
   */
  read(fromOffset: number, visit: RecordVisitor): Promise<boolean> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('the inflation of this batch was closed'));
    if (this.reading !== null) return Promise.reject(new Error('a read of this batch is under way'));
    if (fromOffset <= this.passedOffset) return Promise.reject(new Error(`offset ${fromOffset} is behind this inflation, which has passed offset ${this.passedOffset}`));
    return new Promise((resolve, reject) => {
      const passing: RecordVisitor = (offset, timestamp, key, value, headers) => {
        this.passedOffset = offset;
        return visit(offset, timestamp, key, value, headers);
      };
      this.reading = { fromOffset, visit: passing, resolve, reject };
      const stoppedIn = this.stoppedIn;
      this.stoppedIn = null;
      if (stoppedIn !== null && !this.visitRun(stoppedIn)) return;
      this.takeApart();
      if (this.reading !== null) this.gunzip.resume();
    });
  }

  /** Stops the inflation and lets go of what it holds; a read under way or later rejects. */
  close(): void {
    this.closed = true;
    this.gunzip.destroy();
    this.arrived.length = 0;
    this.pieces = [];
    this.stoppedIn = null;
    const reading = this.reading;
    this.reading = null;
    reading?.reject(new Error('the inflation of this batch was closed'));
  }

  /** Visits what has arrived, while a read is under way; ends the read at the batch's end. */
  private takeApart(): void {
    while (this.reading !== null && this.arrived.length > 0) {
      const chunk = this.arrived.shift()!;
      this.inflatedBytesTotal += chunk.length;
      if (this.inflatedBytesTotal > INFLATED_BATCH_BYTES_MAX) {
        this.fail(new Error(`its records inflate to more than ${INFLATED_BATCH_BYTES_MAX} bytes`));
        return;
      }
      this.pieces.push(chunk);
      this.piecesBytes += chunk.length;
      if (this.piecesBytes < this.needed) continue;
      const pending = this.pieces.length === 1 ? chunk : Buffer.concat(this.pieces, this.piecesBytes);
      this.pieces = [];
      this.piecesBytes = 0;
      if (!this.visitRun({ pending, ...wholeRecords(this.lengthReader, pending, this.count - this.visited) })) return;
    }
    if (this.reading !== null && this.inflated && this.arrived.length === 0) {
      if (this.visited < this.count) this.fail(new Error(`its records end after ${this.visited} of the ${this.count} its header counts`));
      else this.settle(false);
    }
  }

  /**
   * Hands the run's records to the read under way. Returns whether the read goes on: false when
   * its visitor stopped it (the run is kept for the next read) or the records do not parse.
   */
  private visitRun(run: RecordRun): boolean {
    const { fromOffset, visit } = this.reading!;
    try {
      if (visitRecords(run.pending, 0, run.end, this.visited, run.records, this.context, fromOffset, visit)) {
        this.stoppedIn = run;
        this.gunzip.pause();
        this.settle(true);
        return false;
      }
    } catch (error) {
      this.fail(error);
      return false;
    }
    this.visited += run.records;
    const rest = run.pending.subarray(run.end);
    if (this.visited === this.count && rest.length > 0) {
      this.fail(new Error(`${rest.length} bytes follow its last record`));
      return false;
    }
    this.pieces = rest.length > 0 ? [rest] : [];
    this.piecesBytes = rest.length;
    this.needed = run.nextRecordBytes;
    return true;
  }

  private settle(stopped: boolean): void {
    const reading = this.reading;
    this.reading = null;
    reading?.resolve(stopped);
  }

  /** Ends this inflation: the read under way and every later one reject with CORRUPT_BATCH. */
  private fail(problem: unknown): void {
    if (this.failure !== null) return;
    this.failure = undecodable(this.context, problem);
    const reading = this.reading;
    this.reading = null;
    this.close();
    reading?.reject(this.failure);
  }
}

/** Inflations kept at once by `StoppedInflations` by default. */
const STOPPED_INFLATIONS_KEPT = 8;
/** Bytes the inflations kept by `StoppedInflations` may hold together, by default. */
const STOPPED_INFLATIONS_BYTES_MAX = 32 * 1024 * 1024;
/** How long an inflation no read has gone on with is kept. */
const STOPPED_INFLATION_IDLE_MS = 30_000;

/**
 * Gzip batches whose decoded read stopped inside them (at `max_bytes`), kept so that the next
 * read of the batch, from where that one stopped, goes on with the same inflation. A reader that
 * goes through a batch inflating to many times its `max_bytes` costs the broker one inflation of
 * it, not one per read. Bounded three ways, the least recently kept going first: at most
 * `capacity` inflations, holding at most `bytesMax` together (`heldBytes`: a copy of the batch,
 * the records inflated and not yet read, a chunk's worth for the inflater), and each for
 * `idleMs` unused (freed within half as long again). An inflation that has passed its batch's
 * last record is not kept. An inflation is matched by its batch's bytes, not by where they came
 * from, so it can never be taken for another batch.
 */
export class StoppedInflations {
  private readonly kept = new Map<string, { inflation: BatchInflation; keptAtMs: number; bytes: number }>();
  private keptBytes = 0;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly capacity = STOPPED_INFLATIONS_KEPT,
    private readonly idleMs = STOPPED_INFLATION_IDLE_MS,
    private readonly nowMs: () => number = () => performance.now(),
    private readonly bytesMax = STOPPED_INFLATIONS_BYTES_MAX,
  ) {}

  get size(): number {
    return this.kept.size;
  }

  /** What the kept inflations hold, as `heldBytes` counted it when each was kept. */
  get bytes(): number {
    return this.keptBytes;
  }

  /**
   * The inflation of `batch` (a gzip batch's bytes) kept stopped before `fromOffset`, taken out
   * of the cache, or a new one of a copy of `batch` (which `keep` may hold on to; the batch in a
   * read's buffer would hold all of that buffer).
   */
  take(batch: Buffer, fromOffset: number): BatchInflation {
    this.dropIdle();
    const key = keyOf(batch, fromOffset);
    const entry = this.kept.get(key);
    if (entry !== undefined && entry.inflation.batch.equals(batch)) {
      this.remove(key, entry);
      return entry.inflation;
    }
    return new BatchInflation(Buffer.from(batch));
  }

  /** Keeps `inflation`, which a read stopped in, for the read that goes on from its next offset. */
  keep(inflation: BatchInflation): void {
    this.dropIdle();
    const bytes = inflation.heldBytes;
    if (inflation.nextOffset > readLastOffset(inflation.batch, 0) || bytes > this.bytesMax) {
      inflation.close();
      return;
    }
    const key = keyOf(inflation.batch, inflation.nextOffset);
    const same = this.kept.get(key);
    if (same !== undefined) {
      same.inflation.close();
      this.remove(key, same);
    }
    this.kept.set(key, { inflation, keptAtMs: this.nowMs(), bytes });
    this.keptBytes += bytes;
    for (const [oldest, entry] of this.kept) {
      if (this.kept.size <= this.capacity && this.keptBytes <= this.bytesMax) break;
      entry.inflation.close();
      this.remove(oldest, entry);
    }
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.dropIdle(), this.idleMs / 2);
      this.sweeper.unref();
    }
  }

  /** Closes the inflations kept for `idleMs` or more. */
  dropIdle(): void {
    const now = this.nowMs();
    for (const [key, entry] of this.kept) {
      if (now - entry.keptAtMs < this.idleMs) break; // kept in order
      entry.inflation.close();
      this.remove(key, entry);
    }
    if (this.kept.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  private remove(key: string, entry: { bytes: number }): void {
    this.kept.delete(key);
    this.keptBytes -= entry.bytes;
  }
}

/** A batch by its base offset, CRC and size, and a read of it by the offset it starts at. */
function keyOf(batch: Buffer, fromOffset: number): string {
  return `${readBaseOffset(batch, 0)}:${batch.readUInt32BE(CRC_OFFSET)}:${batch.length}:${fromOffset}`;
}

/**
 * The end of the whole records at the start of `buffer`, at most `most` of them, how many there
 * are, and the bytes from `end` that the record cut there takes whole (0 when its length
 * prefix is cut too). A length prefix that does not parse ends the run after it, so that the
 * parse of the records reports it.
 */
function wholeRecords(reader: VarintReader, buffer: Buffer, most: number): { end: number; records: number; nextRecordBytes: number } {
  let end = 0;
  let records = 0;
  while (records < most && end < buffer.length) {
    reader.reset(buffer, end, buffer.length);
    let length: number;
    try {
      length = reader.readVarint();
    } catch {
      // Cut by the chunk's end: wait for the next. Over five bytes: malformed.
      if (reader.position >= buffer.length) return { end, records, nextRecordBytes: 0 };
      return { end: buffer.length, records: records + 1, nextRecordBytes: 0 };
    }
    if (length <= 0) return { end: buffer.length, records: records + 1, nextRecordBytes: 0 };
    if (reader.position + length > buffer.length) return { end, records, nextRecordBytes: reader.position + length - end };
    end = reader.position + length;
    records++;
  }
  return { end, records, nextRecordBytes: 0 };
}

/**
 * The offset and timestamp of the first record at or after `fromOffset`, with a timestamp of at
 * least `minTimestamp`, among the whole batches in `buffer`; null when there is none. A batch
 * whose max timestamp is lower is not read; a gzip one that is read is inflated on the thread
 * pool, up to the record found. Rejects with `CORRUPT_BATCH` when a batch read does not decode.
 */
export async function firstRecordFrom(buffer: Buffer, fromOffset: number, minTimestamp = Number.NEGATIVE_INFINITY): Promise<{ offset: number; timestamp: number } | null> {
  const positions: number[] = [];
  forEachBatch(buffer, (position) => {
    if (readLastOffset(buffer, position) >= fromOffset && readMaxTimestamp(buffer, position) >= minTimestamp) positions.push(position);
  });
  for (const position of positions) {
    let found: { offset: number; timestamp: number } | null = null;
    const visit: RecordVisitor = (offset, timestamp) => {
      if (timestamp < minTimestamp) return true;
      found = { offset, timestamp };
      return false;
    };
    if (isCompressedBatch(buffer, position)) await forEachInflatedRecord(buffer, position, fromOffset, visit);
    else forEachRecord(buffer, position, fromOffset, visit);
    if (found !== null) return found;
  }
  return null;
}
