/**
 * The log of one partition: an ordered list of segments, the append pipeline, reads, time
 * lookups, rolling and retention.
 *
 * Offsets: `logStartOffset` is the first offset still stored (base of the oldest segment);
 * `logEndOffset` is the offset the next record will get; `highWatermark` is the end of what is
 * durable under the flush policy. Readers never see past the high watermark.
 *
 * Append pipeline (one writer per partition, so appends are serialised in arrival order):
 *   append() validates the batches in the caller's turn of the event loop (so a bad batch is
 *   refused at once), then queues them. The writer takes everything queued (up to
 *   `WRITE_BYTES_MAX`), assigns offsets by rewriting each batch's `baseOffset` in place, updates
 *   the in-memory indexes and writes the group with one `writev`. Under `flush=always` a syncer
 *   then runs one `fdatasync` for everything written so far; appends that arrive meanwhile
 *   queue until it returns, then go out as the next group with the next one (group commit:
 *   writing during an fdatasync would only make it longer). An append resolves when its
 *   bytes are written (`waitFor: 'written'`) or covered by an fdatasync (`'durable'`). Under
 *   `flush=interval` the high watermark advances on write and a timer fdatasyncs every
 *   `flush.ms`.
 *
 * Bounds: queued bytes are bounded (`queuedBytesMax`; appends wait for room), one append is at
 * most `APPEND_BYTES_MAX`, and written but not fdatasynced bytes never exceed
 * `UNSYNCED_WINDOW_BYTES` (recovery relies on it).
 *
 * Failures: a failed write is rolled back (file truncated to the last good size, indexes reset)
 * and its appends are refused (`DISK_FULL` for ENOSPC); nothing partial becomes visible. A failed
 * fdatasync fences the partition: the kernel may have dropped the dirty pages, so nothing
 * written since the last good sync can be trusted (the lesson of PostgreSQL's "fsyncgate").
 * Corruption found by a read, a timestamp search or retention fences it too, and is recorded on
 * disk (`fence-marker.ts`) so that a restart keeps it fenced. A fenced log refuses reads and
 * appends with the file, byte position and the repair command; it never drops data on its own.
 *
 * Ownership: `append` takes ownership of the buffer it is given (its base offsets are
 * rewritten); `read` returns views of fresh buffers the caller may keep.
 */
import { type Clock, TIMER_DELAY_MAX_MS, systemClock } from '../common/clock.js';
import { assert } from '../common/assert.js';
import { ErrorCode, StrataError, errnoOrMessage, fileCallErrno, isDiskFullCode, isTooManyOpenFilesCode, logClosedError, storedBatchError } from '../common/errors.js';
import { yieldToEventLoop } from '../common/event-loop.js';
import { rootLogger, type Logger } from '../common/logger.js';
import { shellWord } from '../common/shell-word.js';
import { ThrottledWarning } from '../common/throttled-warning.js';
import { writeRecoveryCheckpoint } from './checkpoint-file.js';
import { writeFenceMarker } from './fence-marker.js';
import { writeSyncFailureMarker } from './sync-failure-marker.js';
import { CLEAN_SHUTDOWN_FILE, LOG_SUFFIX, segmentFilePath } from './file-names.js';
import { nodeFileSystem, type FileSystem } from './file-system.js';
import { type LoadedLog, type RecoveryReport, UNSYNCED_WINDOW_BYTES, loadLog } from './log-loader.js';
import { type LogConfig, resolveLogConfig } from './log-config.js';
import { firstRecordFrom } from './inflated-records.js';
import {
  NO_PRODUCER_ID,
  forEachBatch,
  readAttributes,
  readBaseSequence,
  readLastOffset,
  readLastOffsetDelta,
  readMaxTimestamp,
  readProducerEpoch,
  readProducerId,
  stampLogAppendTime,
  TIMESTAMP_TYPE_MASK,
  writeBaseOffset,
} from './record-batch.js';
import { type CheckedBatches, checkCompressedBatches, validateBatchesOnLoop } from './batch-validation.js';
import { ProducerState, type SequenceCheck } from './producer-state.js';
import { segmentsToDelete } from './retention.js';
import { LogSegment, READ_HEADROOM_BYTES, type SegmentOptions, corruptionError } from './segment.js';
import { DIRECT_IO_BLOCK_BYTES, stagingPool } from './aligned-memory.js';
import { DirectWritesUnsupported } from './direct-writer.js';
import { SegmentList } from './segment-list.js';
import type { InlineIoBudget, InlineIoOperation } from './inline-io.js';
import type { IndexCache } from './index-cache.js';
import type { TailCache } from './tail-cache.js';
import { basename, join, resolve } from 'node:path';

/**
 * A roll's new segment file may be in the directory, though it never joined the log: its
 * directory fsync failed other than for a full disk (what the directory holds is unknown), or
 * the file could not be removed again. After a restart, such an empty file would take the
 * place of the records appended to the active segment after its base; so, whatever its errno,
 * it fences.
 */
class StraySegmentFile extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
  }
}

/** Largest group of queued appends written with one writev (one larger append goes alone). */
const WRITE_BYTES_MAX = 8 * 1024 * 1024;
/**
 * Largest single append (one request's batches for one partition): half the unsynced window, so
 * one write never leaves more unsynced bytes than recovery looks past for a torn tail.
 */
export const APPEND_BYTES_MAX = UNSYNCED_WINDOW_BYTES / 2;
/**
 * Smallest write group the broker writes directly, on the pool, when direct writes are on.
 * Smaller groups are written directly only on the event loop under flush=always (see
 * `directWriteFor`), else through the page cache.
 */
export const DIRECT_WRITE_MIN_BYTES = 256 * 1024;
/** writev takes at most IOV_MAX (1024) buffers. */
const WRITE_BUFFERS_MAX = 1024;
/** Offsets a segment spans at most: its offset and time indexes store them relative to its base, in 32 bits. */
const RELATIVE_OFFSET_MAX = 0xffff_ffff;
/**
 * What to do after a failed fdatasync. Linux may keep the pages it failed to write in its page
 * cache, marked clean: a broker restarted on the same kernel would read them back, find them
 * valid and serve them, though the disk never had them. A machine restart drops them.
 */
const AFTER_FAILED_SYNC = 'check the disk, then restart the machine, not only the broker, to recover: until then the kernel may hold bytes it failed to write, and a recovery would serve them';
const EMPTY = Buffer.alloc(0);

/**
 * When `append` resolves: once queued (after validation; offsets are then unknown, -1), once
 * written to the OS, or once durable under the flush policy.
 */
export type AppendWait = 'queued' | 'written' | 'durable';

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  recordCount: number;
  /** Clock time at which the batches were written. */
  logAppendTimeMs: number;
  /** A retry of an idempotent batch already in the log: not written again, original offsets. */
  duplicate: boolean;
}

export interface ReadResult {
  /** Whole record batches; empty when nothing is visible at the offset yet. */
  batches: Buffer;
  /**
   * Bytes just before `batches`, in the same memory, that belong to this result alone: a caller
   * may write its framing there and send one buffer (0 when there are none).
   */
  headroom: number;
  /** As the read returned: at or past the end of `batches`. */
  highWatermark: number;
  logStartOffset: number;
}

/** Log writes and fdatasyncs of the append path, by the thread that made them. */
export type IoCalls = Record<'eventLoop' | 'threadPool', Record<InlineIoOperation, number>>;

export function emptyIoCalls(): IoCalls {
  return { eventLoop: { write: 0, fdatasync: 0 }, threadPool: { write: 0, fdatasync: 0 } };
}

/**
 * Group writes that failed, by the error code their appends were refused with (DISK_FULL,
 * STORAGE_ERROR, PARTITION_FENCED); a failed segment roll counts as one, since the appends
 * queued behind it are refused. Counted per failed write, whatever the appends' acks: an
 * append that asked only to be queued (acks=none) was answered before its write, so this is
 * the one place its failure shows.
 */
export type WriteFailures = Map<string, number>;

export interface PartitionLogOptions {
  directory: string;
  config?: Partial<LogConfig>;
  fs?: FileSystem;
  clock?: Clock;
  logger?: Logger;
  /** Truncate (after quarantining) at mid-log corruption instead of fencing the partition. */
  repair?: boolean;
  /** Bound on bytes queued for the writer; appends wait for room beyond it. */
  queuedBytesMax?: number;
  /** Name used in error messages, e.g. "orders-3". */
  name?: string;
  /**
   * Write groups of at least this many bytes with direct (O_DIRECT) writes, bypassing the page
   * cache (see `direct-writer.ts`); null (the default) writes everything buffered. The broker
   * uses `DIRECT_WRITE_MIN_BYTES`. Falls back to buffered writes where direct ones fail.
   */
  directWriteMinBytes?: number | null;
  /** Keeps the newest written bytes in memory for tailing readers (see `tail-cache.ts`). */
  tailCache?: TailCache | null;
  /**
   * Bounds the memory of sealed segments' loaded indexes (see `index-cache.ts`); null (the
   * default) keeps them loaded until the segment goes. The broker shares one among all its
   * partitions.
   */
  indexCache?: IndexCache | null;
  /**
   * Lets small writes and fdatasyncs run on the event loop instead of the thread pool (see
   * `inline-io.ts`); null (the default) pools every call. The broker shares one budget among
   * all its partitions.
   */
  inlineIo?: InlineIoBudget | null;
  /**
   * Where the log counts its writes and fdatasyncs (`ioCalls`); by default its own. The broker
   * gives all its partitions one, so its totals keep the calls of logs closed or deleted since.
   */
  ioCalls?: IoCalls;
  /** Where the log counts its failed group writes (`writeFailures`); by default its own. Shared by the broker's partitions, as `ioCalls` is. */
  writeFailures?: WriteFailures;
  /**
   * Refuses (throws) an idempotent batch's producer id that was never handed out: a client that
   * leaves the id zero would otherwise have each later batch with the same sequence taken as a
   * retry, answered as written and dropped. The broker checks against its InitProducer counter.
   */
  checkProducerId?: (producerId: number) => void;
}

interface QueuedAppend {
  data: Buffer;
  recordCount: number;
  batchCount: number;
  /** Carries a producer id: sequence-checked and deduplicated. */
  idempotent: boolean;
  waitFor: AppendWait;
  resolve: (result: AppendResult) => void;
  reject: (error: Error) => void;
  result: AppendResult | null;
}

/** End of a durable prefix of the log: offset and where it lies on disk. */
interface LogPosition {
  offset: number;
  segmentBaseOffset: number;
  position: number;
}

export class PartitionLog {
  readonly directory: string;
  readonly name: string;
  private config: LogConfig;
  private readonly segmentOptions: SegmentOptions;
  private readonly fs: FileSystem;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** Lines for failed writes that were rolled back; made at the first. */
  private rolledBackWrites: ThrottledWarning | null = null;
  private readonly queuedBytesMax: number;
  private readonly segments: SegmentList;

  private nextOffset: number;
  private highWatermarkPosition: LogPosition;
  private queue: QueuedAppend[] = [];
  private queuedBytes = 0;
  /** Appends waiting for room in the queue, in call order. */
  private blocked: QueuedAppend[] = [];
  /**
   * Appends whose compressed batches are being checked off the event loop, or that wait behind
   * one that is. While there are any, a new append waits too: `compressedChecks` settles when
   * the last of them has been queued or refused.
   */
  private appendsInCheck = 0;
  private compressedChecks: Promise<void> = Promise.resolve();
  private awaitingDurable: QueuedAppend[] = [];
  /** True from the writer's start until it finds the queue empty (set synchronously). */
  private writerRunning = false;
  private writing: Promise<void> = Promise.resolve();
  /** The group being written, from when it is taken until it is answered or refused. */
  private groupBeingWritten: Promise<void> | null = null;
  private syncing: Promise<void> | null = null;
  private syncWanted = false;
  /**
   * Set when the high watermark moves (its appends resolved, its readers woken): the writer lets
   * the event loop send their answers before it writes the next group.
   */
  private answersToSend = false;
  private writtenBytesTotal = 0;
  /** `writtenBytesTotal` as of the high watermark (`visibleBytesTotal`). */
  private visibleBytes = 0;
  private syncedBytesTotal = 0;
  /** The log end offset the last fdatasync covered: every record below it is durable. */
  private syncedOffset: number;
  /** The offset in `recovery-point.checkpoint`, as loaded at open or last written. */
  private recoveryPoint: number;
  /** Writes of the recovery checkpoint, one after another (they share a temporary file). */
  private recoveryPointWrites: Promise<unknown> = Promise.resolve();
  private fence: StrataError | null = null;
  /** The write of the fence marker, once corrupt data fenced the log (see `fence-marker.ts`). */
  private fenceRecorded: Promise<void> | null = null;
  /** The write of the sync-failure marker (`fenceForFailedSync`); null until an fdatasync failed. */
  private syncFailureRecorded: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /**
   * The last retention pass started or queued (null when none is under way): the next one
   * starts after it, and `close` waits for it, and so for every pass.
   */
  private lastRetentionPass: Promise<unknown> | null = null;
  /** A pass queued behind another and not started yet: a call meanwhile joins it. */
  private queuedRetentionPass: Promise<number> | null = null;
  /** What calls after `close` are refused with (set by `close`). */
  private closedError: StrataError | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  /** The config of a switch to flush=interval, held until an fdatasync covers what `always` wrote. */
  private pendingIntervalConfig: LogConfig | null = null;
  private readonly highWatermarkListeners = new Set<() => void>();
  /** What recovery did at open, for the caller to report. */
  readonly recovery: RecoveryReport | null;
  private producerState: ProducerState;
  private directWriteMinBytes: number | null;
  private readonly inlineIo: InlineIoBudget | null;
  /** As last told to `inlineIo`: the writer runs or an fdatasync is under way. */
  private ioBusy = false;
  /** Bytes appended with direct writes and through the page cache, since open. */
  readonly writtenBytes = { direct: 0, buffered: 0 };
  /** Bytes and records of the batches that answers to readers held, since open (`noteServed`). */
  readonly served = { bytes: 0, records: 0 };
  /** The log end offset at open: every record appended since moves it on by one. */
  private readonly nextOffsetAtOpen: number;
  /** Log writes and fdatasyncs of the append path, by the thread that made them (see `PartitionLogOptions.ioCalls`). */
  readonly ioCalls: IoCalls;
  /** Failed group writes, by the code their appends were refused with (see `PartitionLogOptions.writeFailures`). */
  readonly writeFailures: WriteFailures;
  private readonly checkProducerId: ((producerId: number) => void) | null;
  /** The offset of the producer-state snapshot on disk (see `keepingProducerSnapshot`); null when there is none. */
  private producerSnapshotOffset: number | null = null;

  private constructor(
    options: PartitionLogOptions,
    config: LogConfig,
    segmentOptions: SegmentOptions,
    loaded: LoadedLog,
    logger: Logger,
  ) {
    this.directory = options.directory;
    this.name = options.name ?? options.directory;
    this.config = config;
    this.segmentOptions = segmentOptions;
    this.fs = options.fs ?? nodeFileSystem;
    this.clock = options.clock ?? systemClock;
    this.producerState = new ProducerState(() => this.clock.nowMs());
    this.logger = logger;
    this.queuedBytesMax = options.queuedBytesMax ?? 64 * 1024 * 1024;
    this.directWriteMinBytes = options.directWriteMinBytes ?? null;
    this.inlineIo = options.inlineIo ?? null;
    this.ioCalls = options.ioCalls ?? emptyIoCalls();
    this.writeFailures = options.writeFailures ?? new Map();
    this.checkProducerId = options.checkProducerId ?? null;
    this.segments = loaded.segments;
    this.recovery = loaded.recovery;
    const active = this.segments.last();
    for (let index = 0; index < this.segments.count - 1; index++) this.segments.at(index).markSealed();
    this.nextOffset = active.nextOffset;
    this.nextOffsetAtOpen = active.nextOffset;
    // A clean close fdatasynced the log, and recovery fdatasyncs its active segment.
    this.syncedOffset = active.nextOffset;
    this.recoveryPoint = loaded.recoveryPoint;
    this.highWatermarkPosition = { offset: active.nextOffset, segmentBaseOffset: active.baseOffset, position: active.sizeBytes };
    if (loaded.fence !== null) {
      this.fence = fencedError(this.name, this.directory, loaded.fence.file, loaded.fence.position, loaded.fence.problem);
    }
    this.scheduleFlushTimer();
  }

  /** Opens (creating if needed) and, after an unclean stop, recovers the log in `directory`. */
  static async open(options: PartitionLogOptions): Promise<PartitionLog> {
    const config = resolveLogConfig(options.config);
    const fs = options.fs ?? nodeFileSystem;
    const logger = (options.logger ?? rootLogger).child({ subsystem: 'storage', log: options.name ?? options.directory });
    const segmentOptions: SegmentOptions = {
      indexIntervalBytes: config.indexIntervalBytes,
      maxIndexEntries: Math.floor(config.segmentIndexBytes / 12),
      tailCache: options.tailCache ?? null,
      indexCache: options.indexCache ?? null,
    };
    const nowMs = (options.clock ?? systemClock).nowMs();
    const loaded = await loadLog({
      fs,
      directory: options.directory,
      segmentOptions,
      logger,
      repair: options.repair ?? false,
      nowMs,
    });
    const log = new PartitionLog(options, config, segmentOptions, loaded, logger);
    // The active segment's age for segment.ms comes from its first batch's timestamp here: one
    // ahead of the broker's clock (a producer's) would hold off its roll by age for as long. It
    // counts from now at most.
    const active = log.segments.last();
    if (active.rollStartMs > nowMs) active.rollStartMs = nowMs;
    if (log.fence === null) {
      try {
        await log.loadProducerState();
      } catch (error) {
        // Damage the replay read fenced the log (with its marker): it opens fenced, as for damage
        // the load found, so that the broker starts and serves its other partitions.
        if (log.fence !== null) {
          logger.error({ err: error }, 'the replay of producer state met damage: the partition is fenced until `strata repair`');
          return log;
        }
        // Nobody gets the log to close: release what it holds (a retry opens it anew).
        if (log.flushTimer !== null) clearInterval(log.flushTimer);
        await log.closeSegments();
        throw error;
      }
    }
    return log;
  }

  /**
   * Loads the producer-state snapshot and replays the batch headers written after it (after an
   * unclean stop: the active segment, whose start the last snapshot was taken at).
   */
  private async loadProducerState(): Promise<void> {
    const snapshot = await ProducerState.load(this.fs, this.directory, () => this.clock.nowMs());
    this.producerSnapshotOffset = snapshot?.offset ?? null;
    let from = this.segments.last().baseOffset;
    if (snapshot !== null && snapshot.offset >= this.logStartOffset) {
      this.producerState = snapshot.state;
      if (snapshot.offset > this.nextOffset) {
        // A repair cut the log below the snapshot. Saved again at once: left as it was, a
        // reopen after a crash would trust it past the batches appended from here on.
        this.producerState.truncateFrom(this.nextOffset);
        await this.saveProducerState(this.nextOffset);
        await this.fs.fsyncDirectory(this.directory);
      }
      from = Math.min(snapshot.offset, this.nextOffset);
    }
    while (from < this.nextOffset) {
      const { batches } = await this.read(from, 1024 * 1024);
      if (batches.length === 0) break;
      forEachBatch(batches, (position) => {
        if (readLastOffset(batches, position) >= from) this.producerState.observe(batches, position);
        from = readLastOffset(batches, position) + 1;
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // State.

  get logStartOffset(): number {
    return this.segments.first().baseOffset;
  }

  get logEndOffset(): number {
    return this.nextOffset;
  }

  /**
   * Counts an answer to a reader into `served`: `bytes` of batches, `records` from the offset
   * it read from. The server calls it: only it knows what of the batches read went out (decoded
   * answers may hold fewer).
   */
  noteServed(bytes: number, records: number): void {
    this.served.bytes += bytes;
    this.served.records += records;
  }

  /** Records appended since open; duplicates of idempotent retries, never appended, are not counted. */
  get appendedRecords(): number {
    return this.nextOffset - this.nextOffsetAtOpen;
  }

  get highWatermark(): number {
    return this.highWatermarkPosition.offset;
  }

  /**
   * Bytes of batches appended since open that are below the high watermark: it grows by what
   * each advance makes visible, so a reader waiting for more data can tell how much arrived
   * without reading it.
   */
  get visibleBytesTotal(): number {
    return this.visibleBytes;
  }

  get sizeBytes(): number {
    return this.segments.totalBytes();
  }

  /** The highest producer id whose batches the partition remembers (for deduplication); 0 for none. */
  get highestProducerId(): number {
    return this.producerState.highestProducerId;
  }

  get segmentCount(): number {
    return this.segments.count;
  }

  /** Whether reads and appends are taken: not fenced, not closing or closed. */
  get usable(): boolean {
    return this.fence === null && this.closing === null;
  }

  /** The error every call gets while the partition is fenced, or null. */
  get fenced(): StrataError | null {
    return this.fence;
  }

  get logConfig(): Readonly<LogConfig> {
    return this.config;
  }

  /**
   * Applies new settings; size and index settings take effect from the next segment. The
   * interval flush timer starts again only when `flush` or `flush.ms` changed: restarted by
   * every change of another setting, alters more frequent than `flush.ms` would hold off its
   * fdatasyncs.
   */
  updateConfig(overrides: Partial<LogConfig>): void {
    const previous = this.config;
    const next = resolveLogConfig(overrides, this.pendingIntervalConfig ?? this.config);
    this.pendingIntervalConfig = null;
    if (this.config.flush === 'always' && next.flush === 'interval' && this.hasUnsyncedAppends()) {
      // Appends taken under `always` (written, or being written) were promised an fdatasync
      // before their answer, and `interval` would answer them at their write or the next one:
      // it takes effect once one covers them.
      this.config = { ...next, flush: 'always' };
      this.pendingIntervalConfig = next;
      this.switchFlushWhenSynced(next);
    } else {
      this.config = next;
      // Appends acknowledged under `interval` and not synced yet: `always` has no timer to sync
      // them, and the next append may be far off. Sync them now.
      if (previous.flush === 'interval' && next.flush === 'always' && this.usable) this.requestSync();
    }
    this.segmentOptions.indexIntervalBytes = this.config.indexIntervalBytes;
    this.segmentOptions.maxIndexEntries = Math.floor(this.config.segmentIndexBytes / 12);
    if (this.config.flush !== previous.flush || this.config.flushMs !== previous.flushMs) this.scheduleFlushTimer();
  }

  /** Applies a pending switch to `interval` once everything written so far is fdatasynced. */
  private switchFlushWhenSynced(next: LogConfig): void {
    if (this.pendingIntervalConfig !== next || !this.usable) return;
    if (this.groupBeingWritten !== null) {
      const recheck = (): void => this.switchFlushWhenSynced(next);
      void this.groupBeingWritten.then(recheck, recheck);
      return;
    }
    if (this.writtenBytesTotal > this.syncedBytesTotal) {
      this.requestSync();
      void this.syncing!.then(() => this.switchFlushWhenSynced(next));
      return;
    }
    this.pendingIntervalConfig = null;
    this.config = next;
    this.scheduleFlushTimer();
  }

  /** Whether appends are written, or being written, that no fdatasync covers yet. */
  private hasUnsyncedAppends(): boolean {
    return this.groupBeingWritten !== null || this.writtenBytesTotal > this.syncedBytesTotal;
  }

  /** Calls `listener` each time the high watermark advances. Returns an unsubscribe function. */
  onHighWatermark(listener: () => void): () => void {
    this.highWatermarkListeners.add(listener);
    return () => this.highWatermarkListeners.delete(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Appending.

  /**
   * Appends one or more concatenated record batches, assigning them the next offsets. Validates
   * every batch first (CORRUPT_BATCH, RECORD_TOO_LARGE), a compressed one's records off the
   * event loop, and appends all or none.
   */
  async append(data: Buffer, options: { waitFor?: AppendWait } = {}): Promise<AppendResult> {
    this.checkUsable();
    if (data.length > APPEND_BYTES_MAX) {
      throw new StrataError(ErrorCode.RECORD_TOO_LARGE, `${data.length} bytes of batches for one partition in one request exceed the limit of ${APPEND_BYTES_MAX}; send them in several requests`);
    }
    const checked = validateBatchesOnLoop(data, this.config.maxMessageBytes);
    const nowMs = this.clock.nowMs();
    let index = 0;
    let idempotent = false;
    forEachBatch(data, (position) => {
      this.checkNotAhead(data, position, index++, nowMs);
      const producerId = readProducerId(data, position);
      if (producerId === NO_PRODUCER_ID) return;
      // Any other negative id is a client bug; taken as "not idempotent", its retries would be
      // appended twice without a word.
      if (producerId < 0) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a batch's producer id ${producerId} is not valid: use an id from InitProducer (1 or more), or -1 for a producer that is not idempotent`);
      }
      this.checkProducerId?.(producerId);
      // Kafka's -1 ("no epoch", "no sequence") and other negatives are client bugs too; left to
      // the sequence check, they would be refused as out of order (FAILED_PRECONDITION), or
      // taken from a producer the partition has not seen.
      const epoch = readProducerEpoch(data, position);
      if (epoch < 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a batch of producer ${producerId} has producer epoch ${epoch}: it must be from 0 to 32767 (the epoch InitProducer gave)`);
      const sequence = readBaseSequence(data, position);
      if (sequence < 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a batch of producer ${producerId} has base sequence ${sequence}: an idempotent batch's sequence starts at 0 and counts its records`);
      idempotent = true;
    });
    if (idempotent && checked.batchCount > 1) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `an idempotent append carries exactly one batch per partition, got ${checked.batchCount}`);
    }
    const waitFor = options.waitFor ?? 'durable';
    // Answered before it is written, a batch the sequence check then refused (a gap, a fenced
    // epoch) would be dropped without a word to the producer, whose next batches would all fail.
    if (idempotent && waitFor === 'queued') {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'an idempotent batch needs acks=leader or acks=all: with acks=none the broker could not report a sequence it refuses; use -1 as producer id for a producer that is not idempotent');
    }
    if (checked.compressed.length === 0 && this.appendsInCheck === 0) return this.queueAppend(data, checked, idempotent, waitFor);
    // Compressed records are checked off the event loop. Until this append is queued (or
    // refused), later ones wait behind it, so that appends keep call order.
    this.appendsInCheck++;
    const previous = this.compressedChecks;
    let release!: () => void;
    this.compressedChecks = new Promise<void>((resolve) => (release = resolve));
    try {
      await previous;
      if (this.fence !== null) throw this.fence;
      await checkCompressedBatches(data, checked.compressed, this.config.maxMessageBytes);
      // Called before any close (which waits for it), so only a fence refuses it now.
      if (this.fence !== null) throw this.fence;
      return this.queueAppend(data, checked, idempotent, waitFor);
    } finally {
      this.appendsInCheck--;
      release();
    }
  }

  /**
   * Refuses batch `index` (at `position`) if its newest record is further ahead of the broker's
   * clock than `message.timestamp.after.max.ms` allows (its max timestamp: with create time,
   * the records' own; with log-append time, the broker stamps its own clock in at the write).
   */
  private checkNotAhead(data: Buffer, position: number, index: number, nowMs: number): void {
    const allowedMs = this.config.messageTimestampAfterMaxMs;
    const maxTimestamp = readMaxTimestamp(data, position);
    if (maxTimestamp - nowMs <= allowedMs || readAttributes(data, position) & TIMESTAMP_TYPE_MASK) return;
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `batch ${index} has a record timestamped ${maxTimestamp}, ${maxTimestamp - nowMs} ms ahead of the broker's clock, more than message.timestamp.after.max.ms (${allowedMs}) allows: ` +
        "timestamps are milliseconds since the epoch (not micro- or nanoseconds); check the producer's clock, or raise the topic's message.timestamp.after.max.ms",
    );
  }

  /** Queues a validated append (or blocks it behind others until there is room) and settles it once written. */
  private queueAppend(data: Buffer, checked: CheckedBatches, idempotent: boolean, waitFor: AppendWait): Promise<AppendResult> {
    const { recordCount, batchCount } = checked;
    return new Promise<AppendResult>((resolve, reject) => {
      const append: QueuedAppend = { data, recordCount, batchCount, idempotent, waitFor, resolve, reject, result: null };
      if (this.blocked.length > 0 || !this.hasRoomFor(append)) {
        this.blocked.push(append); // keeps call order: nothing overtakes a waiting append
        return;
      }
      this.enqueue(append);
      this.startWriter();
    });
  }

  private hasRoomFor(append: QueuedAppend): boolean {
    return this.queuedBytes === 0 || this.queuedBytes + append.data.length <= this.queuedBytesMax;
  }

  private enqueue(append: QueuedAppend): void {
    this.queue.push(append);
    this.queuedBytes += append.data.length;
    if (append.waitFor === 'queued') {
      // Settled now; a later write failure is logged by the writer (the caller chose not to wait).
      append.resolve({ baseOffset: -1, lastOffset: -1, recordCount: append.recordCount, logAppendTimeMs: this.clock.nowMs(), duplicate: false });
    }
  }

  private startWriter(): void {
    if (this.writerRunning || this.queue.length === 0) return;
    void this.runAsWriter(() => this.writeQueued());
  }

  /**
   * Runs `task` in the writer's place (the writer's own loop, or a roll for retention): one at a
   * time, `writing` settling when it ends. Appends queue meanwhile; once it has ended the
   * writer starts again if any did, so none is left unwritten (not after a task that threw: a
   * broken invariant, which must not turn into a loop).
   */
  private runAsWriter(task: () => Promise<void>): Promise<void> {
    this.writerRunning = true;
    this.noteIoActivity();
    const release = (): void => {
      this.writerRunning = false;
      this.noteIoActivity();
    };
    this.writing = task().then(
      () => {
        release();
        this.startWriter();
      },
      (error: unknown) => {
        release();
        throw error;
      },
    );
    return this.writing;
  }

  /** Throws what every call gets while the partition is fenced, closing or closed. */
  checkUsable(): void {
    if (this.fence !== null) throw this.fence;
    if (this.closing !== null) throw this.closedError!;
  }

  /** Calls the high-watermark listeners: readers waiting for records (long polls, subscriptions). */
  private wakeReaders(): void {
    for (const listener of this.highWatermarkListeners) listener();
  }

  /** The writer: drains the queue group by group (in `runAsWriter`, so only one runs at a time). */
  private async writeQueued(): Promise<void> {
    while (this.queue.length > 0) {
      if (this.fence !== null) {
        this.rejectQueued(this.fence);
        break;
      }
      await this.waitForUnsyncedRoom();
      await this.waitForSyncUnderWay();
      await this.letAnswersGo();
      if (this.fence !== null || this.queue.length === 0) continue; // fenced while waiting
      try {
        await this.maybeRoll(this.queue[0]!);
      } catch (error) {
        this.failRoll(error as NodeJS.ErrnoException);
        continue;
      }
      const group = this.takeGroup();
      this.releaseRoom();
      try {
        this.groupBeingWritten = this.writeGroup(group);
        await this.groupBeingWritten;
      } catch (error) {
        // Not an I/O failure (writeGroup handles those): a broken invariant. Stop writing.
        const fence = new StrataError(ErrorCode.PARTITION_FENCED, `partition ${this.name} is fenced: internal error while appending (${(error as Error).message}); restart to recover`, { cause: error });
        for (const append of group) append.reject(fence);
        this.fenceWith(fence);
      } finally {
        this.groupBeingWritten = null;
      }
    }
  }

  /**
   * A roll that fails before the new segment joins the list leaves the log as it was (every
   * step is repeatable), so ENOSPC refuses the queued appends and a later append retries, as do
   * EMFILE and ENFILE (too many open files: a moment later some may have been closed).
   * Anything else (a new segment file that may have stayed behind, which carries no errno, say)
   * fences the partition; a failed fdatasync of the segment being sealed has fenced it already.
   */
  private failRoll(error: NodeJS.ErrnoException): void {
    // Fenced already: by the seal's failed fdatasync (whatever its errno: the kernel may have
    // dropped dirty pages of the sealed segment; `sealSync` fenced and recorded it), or
    // meanwhile, the roll having waited for an fdatasync that failed. Nothing more to do.
    if (this.fence !== null) return;
    // Counted as a failed write: the appends queued behind the roll are refused, acks=none ones too.
    if (isDiskFullCode(error.code)) {
      this.logger.error({ err: error }, 'segment roll failed: disk full');
      const refusal = new StrataError(ErrorCode.DISK_FULL, `disk full: cannot start a new segment for ${this.name}; nothing was written`, { cause: error });
      this.countWriteFailure(refusal);
      this.rejectQueued(refusal);
      return;
    }
    if (isTooManyOpenFilesCode(error.code)) {
      this.logger.error({ err: error }, 'segment roll failed: too many open files');
      const advice = "nothing was written; retry, and raise the broker's open-file limit (LimitNOFILE, ulimit -n) if it goes on";
      const refusal = new StrataError(ErrorCode.STORAGE_ERROR, `too many open files (${error.code}): cannot start a new segment for ${this.name}; ${advice}`, { cause: error });
      this.countWriteFailure(refusal);
      this.rejectQueued(refusal);
      return;
    }
    const fence = new StrataError(ErrorCode.PARTITION_FENCED, `partition ${this.name} is fenced: rolling to a new segment failed (${errnoOrMessage(error)}); restart to recover`, { cause: error });
    this.countWriteFailure(fence);
    this.fenceWith(fence);
  }

  private takeGroup(): QueuedAppend[] {
    const active = this.segments.last();
    let bytes = 0;
    let batches = 0;
    let records = 0;
    let count = 0;
    const indexRoom = active.indexEntriesLeft();
    // The group's offsets must stay within the segment's 32-bit relative range (its indexes
    // store offsets so): maybeRoll checked the first append only.
    const offsetRoom = active.baseOffset + RELATIVE_OFFSET_MAX - this.nextOffset;
    while (count < this.queue.length && count < WRITE_BUFFERS_MAX) {
      const append = this.queue[count]!;
      const size = append.data.length;
      if (
        count > 0 &&
        (bytes + size > WRITE_BYTES_MAX || active.sizeBytes + bytes + size > this.config.segmentBytes || batches + append.batchCount > indexRoom || records + append.recordCount > offsetRoom)
      ) {
        break;
      }
      bytes += size;
      batches += append.batchCount;
      records += append.recordCount;
      count++;
    }
    const group = this.queue.splice(0, count);
    this.queuedBytes -= bytes;
    return group;
  }

  /** Moves waiting appends into the queue, in order, while they fit. */
  private releaseRoom(): void {
    while (this.blocked.length > 0 && this.hasRoomFor(this.blocked[0]!)) this.enqueue(this.blocked.shift()!);
  }

  private async writeGroup(group: QueuedAppend[]): Promise<void> {
    const active = this.segments.last();
    const mark = active.indexMark();
    const nowMs = this.clock.nowMs();
    let offset = this.nextOffset;
    let position = active.sizeBytes;
    const buffers: Buffer[] = [];
    const written: QueuedAppend[] = [];
    const duplicates: QueuedAppend[] = [];
    for (const append of group) {
      if (append.idempotent) {
        let check: SequenceCheck;
        try {
          check = this.producerState.check(append.data, 0);
        } catch (error) {
          append.reject(error as Error);
          continue;
        }
        if (check.duplicate) {
          append.result = { baseOffset: check.baseOffset, lastOffset: check.lastOffset, recordCount: append.recordCount, logAppendTimeMs: nowMs, duplicate: true };
          duplicates.push(append);
          continue;
        }
      }
      const baseOffset = offset;
      forEachBatch(append.data, (batchPosition, size) => {
        writeBaseOffset(append.data, batchPosition, offset);
        stampLogAppendTime(append.data, batchPosition, nowMs);
        active.indexBatch(offset, position, size, readMaxTimestamp(append.data, batchPosition), nowMs);
        offset += readLastOffsetDelta(append.data, batchPosition) + 1;
        position += size;
      });
      if (append.idempotent) this.producerState.recordPending(append.data, 0);
      append.result = { baseOffset, lastOffset: offset - 1, recordCount: append.recordCount, logAppendTimeMs: nowMs, duplicate: false };
      buffers.push(append.data);
      written.push(append);
    }
    if (written.length > 0) {
      const bytes = position - active.sizeBytes;
      try {
        await this.writeToSegment(active, buffers, bytes);
      } catch (error) {
        this.producerState.abortPending();
        active.resetToIndexMark(mark);
        if (error instanceof DirectWriteFailed) {
          // The write rewrote the last block, which holds acknowledged bytes, and failed: what
          // the disk now has there is unknown. As after a failed fdatasync, stop and recover.
          const fence = new StrataError(ErrorCode.PARTITION_FENCED, `partition ${this.name} is fenced: a direct write to ${active.logPath} failed (${error.code}); restart to recover`, { cause: error.cause });
          for (const append of written) append.reject(fence);
          this.fenceWith(fence);
          this.countWriteFailure(fence);
          this.answerDuplicatesOfFailedGroup(duplicates, fence);
          return;
        }
        const refusal = await this.rollBackWrite(active, error as NodeJS.ErrnoException);
        this.countWriteFailure(refusal);
        for (const append of written) append.reject(refusal);
        this.answerDuplicatesOfFailedGroup(duplicates, refusal);
        return;
      }
      this.producerState.commitPending();
      active.noteWritten(bytes, offset);
      this.nextOffset = offset;
      this.writtenBytesTotal += bytes;
    }
    this.answerAppended(written);
    this.answerAppended(duplicates);
    if (written.length === 0) return;
    if (this.config.flush === 'interval') {
      this.advanceHighWatermark({ offset, segmentBaseOffset: active.baseOffset, position: active.sizeBytes }, this.writtenBytesTotal);
    } else {
      this.requestSync();
    }
  }

  /**
   * Writes a group at the end of the active segment: directly when `directWriteFor` says so and
   * a staging buffer is free; else through the page cache.
   */
  private async writeToSegment(active: LogSegment, buffers: readonly Buffer[], bytes: number): Promise<void> {
    const direct = this.directWriteFor(active, bytes);
    if (direct !== null) {
      const staging = stagingPool.take();
      if (staging === null && stagingPool.unavailable) {
        this.stopDirectWrites(active, 'no aligned memory for staging buffers (WebAssembly disabled or address space limited)');
      } else if (staging !== null) {
        try {
          this.ioCalls[direct].write++;
          if (direct === 'eventLoop') {
            this.inlineIo!.runInline('write', () => active.writeDirectInline(buffers, bytes, staging));
          } else {
            await active.writeDirect(buffers, bytes, staging);
          }
          this.writtenBytes.direct += bytes;
          return;
        } catch (error) {
          if (error instanceof DirectWritesUnsupported) {
            this.stopDirectWrites(active, error.message);
          } else {
            const code = (error as NodeJS.ErrnoException).code;
            // Out of space: the last block was written again with the bytes it held, or not at
            // all. Refuse the appends (DISK_FULL) and go on.
            if (isDiskFullCode(code)) throw error;
            throw new DirectWriteFailed(code ?? (error as Error).message, error);
          }
        } finally {
          stagingPool.give(staging);
        }
      }
    }
    await this.runIo(
      'write',
      bytes,
      () => active.writeBufferedInline(buffers, bytes),
      () => active.writeBuffered(buffers, bytes),
    );
    this.writtenBytes.buffered += bytes;
  }

  /**
   * Whether a group of `bytes` is written directly, and where; null: through the page cache.
   * - Large groups (throughput workloads): directly, on the pool.
   * - Small groups, under flush=always, when the budget lets the write run on the loop (a
   *   latency workload: one small group per fdatasync, syncs spaced out): directly, on the loop.
   *   The fdatasync right after it waits for the device anyway; a direct write has the device
   *   write the bytes within the call, so the fdatasync is left only the device cache, and the
   *   file's new size when the write grew the file (rarely: see the runway in
   *   `direct-writer.ts`). On the project's 2-core test machine, alone: a 12 KB append with its
   *   fdatasync p50 0.17–0.19 / p99 0.26–0.31 ms direct, 0.23–0.26 / 0.34–0.38 buffered. In e2e
   *   runs at 10,000 records/s, p50 was lower in every interleaved pair (100 B: 0.43–0.44
   *   against 0.47–0.50 ms) and p99 in most, by less than the machine's noise at 1 KiB (the
   *   README's "Direct writes" has the figures).
   *   The first such write of a segment goes to the pool once, to open the direct descriptor
   *   (and read the last block back, after a recovery). Readers that keep up are served by the
   *   tail cache, as for large groups.
   * - Other small groups stay buffered: without an fdatasync right after (flush=interval) the
   *   page cache lets the kernel batch them, and back to back on the pool a direct write waits
   *   for the device where a buffered one is a copy (1 producer of 16 KiB batches: 580,000–
   *   600,000 records/s written directly, 700,000–770,000 buffered).
   */
  private directWriteFor(active: LogSegment, bytes: number): keyof IoCalls | null {
    if (this.directWriteMinBytes === null) return null;
    if (bytes >= this.directWriteMinBytes) return 'threadPool';
    // On the loop a group is written in one piece: with the last block's bytes, it must fit a
    // staging buffer.
    if (this.config.flush !== 'always' || this.inlineIo === null || bytes + DIRECT_IO_BLOCK_BYTES > stagingPool.bufferBytes) return null;
    if (!this.inlineIo.allows('write', bytes)) return null;
    return active.canWriteDirectInline() ? 'eventLoop' : 'threadPool';
  }

  /** Runs a write or an fdatasync of `bytes` on the event loop if the budget allows, else on the pool. */
  private async runIo(operation: InlineIoOperation, bytes: number, onLoop: () => void, onPool: () => Promise<void>): Promise<void> {
    if (this.inlineIo === null) {
      this.ioCalls.threadPool[operation]++;
      return onPool();
    }
    if (this.inlineIo.allows(operation, bytes)) {
      this.ioCalls.eventLoop[operation]++;
      this.inlineIo.runInline(operation, onLoop);
    } else {
      this.ioCalls.threadPool[operation]++;
      await this.inlineIo.runPooled(operation, onPool);
    }
  }

  private stopDirectWrites(active: LogSegment, reason: string): void {
    this.directWriteMinBytes = null;
    this.logger.warn({ file: active.logPath, reason }, 'direct writes are not possible here; writing through the page cache (--write-mode buffered does so from the start)');
  }

  /**
   * Answers appends that are in the log (written just now, or retries of batches written
   * before): at once when they asked for less than durability or are below the high watermark,
   * else once it passes them; refused with the fence when the partition is fenced before that.
   */
  private answerAppended(appends: readonly QueuedAppend[]): void {
    for (const append of appends) {
      if (append.waitFor === 'written' || append.result!.lastOffset < this.highWatermark) append.resolve(append.result!);
      else if (this.fence !== null) append.reject(this.fence);
      else this.awaitDurable(append);
    }
  }

  /**
   * After a group's write failed: a retry of a batch written before the group is answered as a
   * duplicate ("nothing was written" would have its producer's application send it again); a
   * retry of a batch of the group itself (its producer resent it while the first was queued)
   * is refused with the group.
   */
  private answerDuplicatesOfFailedGroup(duplicates: readonly QueuedAppend[], refusal: StrataError): void {
    for (const append of duplicates) {
      if (append.result!.lastOffset < this.nextOffset) this.answerAppended([append]);
      else append.reject(refusal);
    }
  }

  private countWriteFailure(refusal: StrataError): void {
    this.writeFailures.set(refusal.code, (this.writeFailures.get(refusal.code) ?? 0) + 1);
  }

  /** Queues an append to resolve when the high watermark passes it (kept sorted by offset). */
  private awaitDurable(append: QueuedAppend): void {
    let index = this.awaitingDurable.length;
    while (index > 0 && this.awaitingDurable[index - 1]!.result!.lastOffset > append.result!.lastOffset) index--;
    this.awaitingDurable.splice(index, 0, append);
  }

  /**
   * Undoes a failed write on disk; returns the error to refuse its appends with: "nothing was
   * written" once the cut is durable, else the fence, which does not promise that (what the
   * failed write left may be in the log after the restart, as for a crash).
   */
  private async rollBackWrite(active: LogSegment, error: NodeJS.ErrnoException): Promise<StrataError> {
    const diskFull = isDiskFullCode(error.code);
    const refusal = diskFull
      ? new StrataError(ErrorCode.DISK_FULL, `disk full: cannot append to ${this.name}; nothing was written`, { cause: error })
      : new StrataError(ErrorCode.STORAGE_ERROR, `write to ${active.logPath} failed (${errnoOrMessage(error)}); nothing was written`, { cause: error });
    try {
      await active.truncateUnwritten();
    } catch (truncateError) {
      this.fenceWith(
        new StrataError(
          ErrorCode.PARTITION_FENCED,
          `partition ${this.name} is fenced: a write to ${active.logPath} failed (${errnoOrMessage(error)}) and could not be rolled back (${(truncateError as Error).message}); its records may be in the log after a restart. Restart to recover`,
          { cause: error },
        ),
      );
      return this.fence!;
    }
    try {
      // Made durable at once: part of the group may have reached the disk, and a power loss
      // before the cut did would bring refused batches back into the log. Not beside another
      // fdatasync (the interval flush's), nor on a log fenced meanwhile (see `sealSync`).
      await this.aloneSyncing(async () => {
        try {
          await this.fs.fdatasync(active.openFileDescriptor());
        } catch (syncError) {
          this.fenceForFailedSync(`fdatasync of ${active.logPath} after rolling back a failed write failed (${(syncError as Error).message})`, syncError);
        }
      });
    } catch {
      // fenced before it could run: the fence refuses what follows
    }
    // A producer retrying into a full disk fails a write per request: a line per 10 s, the
    // others counted (strata_log_write_failures_total counts every one).
    this.rolledBackWrites ??= new ThrottledWarning(this.logger, 'append failed and was rolled back', { intervalMs: 10_000, countField: 'rolledBackSinceLastLine', level: 'error', clock: this.clock });
    this.rolledBackWrites.note({
      err: error,
      file: active.logPath,
      strataCode: refusal.code,
      ...(diskFull ? { action: "free space on the data directory's file system (lower retention, delete topics, or grow the volume); producers can send again then" } : {}),
    });
    // Fenced meanwhile (the cut's fdatasync failed, say): the cut may not last a power loss.
    return this.fence ?? refusal;
  }

  private rejectQueued(error: Error): void {
    const queued = [...this.queue, ...this.blocked];
    this.queue = [];
    this.blocked = [];
    this.queuedBytes = 0;
    for (const append of queued) append.reject(error);
  }

  /**
   * Under flush=always a write waits for the fdatasync under way. Linux's fdatasync writes back
   * whatever of the file is dirty when it gets to it, so bytes written during it make it longer,
   * and only the next fdatasync may acknowledge them anyway. Held back, they join one larger
   * group, and every fdatasync flushes just the group it acknowledges (in a probe on this
   * project's test machine, syncs under concurrent writes took 14 ms instead of 0.5 ms).
   */
  private async waitForSyncUnderWay(): Promise<void> {
    if (this.config.flush !== 'always') return;
    while (this.syncing !== null && this.fence === null) await this.syncing;
  }

  /**
   * The answers to appends an fdatasync just acknowledged, and the records for readers it woke,
   * are written to their sockets by the event loop after this turn's microtasks (HTTP/2 sends in
   * an immediate). The writer runs in those microtasks too: if it went straight on, the next
   * group's write and fdatasync (on the loop, when small) would run first and hold them back.
   * In a traced e2e run at 10,000 records/s of 1 KiB, that wait was the longest part of over
   * half the records over 1 ms. So the writer waits for an immediate first: the answers leave,
   * then the next group is written.
   */
  private async letAnswersGo(): Promise<void> {
    if (!this.answersToSend) return;
    this.answersToSend = false;
    await yieldToEventLoop();
  }

  /** Waits until the next group (at most the larger of WRITE_BYTES_MAX and one append) fits the unsynced window. */
  private async waitForUnsyncedRoom(): Promise<void> {
    const nextGroupBytes = Math.max(WRITE_BYTES_MAX, this.queue[0]?.data.length ?? 0);
    while (this.writtenBytesTotal - this.syncedBytesTotal > UNSYNCED_WINDOW_BYTES - nextGroupBytes && this.fence === null) {
      this.requestSync();
      await this.syncing;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Syncing (group commit).

  private requestSync(): void {
    if (this.syncing !== null) {
      this.syncWanted = true;
      return;
    }
    this.syncing = this.syncLoop().finally(() => {
      this.syncing = null;
      this.noteIoActivity();
    });
    this.noteIoActivity();
  }

  private async syncLoop(): Promise<void> {
    // Start in a microtask, so `syncing` is set before an inline fdatasync advances the high
    // watermark and its listeners run: one that calls flush() then joins this loop instead of
    // starting a second one beside it.
    await undefined;
    do {
      this.syncWanted = false;
      // After a failed fdatasync, no more: a later one can succeed over pages the kernel
      // dropped, and must not move the high watermark (the interval flush asks on). A log
      // fenced for another reason still makes durable what interval flushing acknowledged.
      if (this.syncFailureRecorded !== null) return;
      const active = this.segments.last();
      const target: LogPosition = { offset: this.nextOffset, segmentBaseOffset: active.baseOffset, position: active.sizeBytes };
      const writtenBytes = this.writtenBytesTotal;
      if (writtenBytes === this.syncedBytesTotal) return;
      this.inlineIo?.syncStarting();
      try {
        const fd = active.openFileDescriptor();
        await this.runIo(
          'fdatasync',
          writtenBytes - this.syncedBytesTotal,
          () => this.fs.fdatasyncSync(fd),
          () => this.fs.fdatasync(fd),
        );
      } catch (error) {
        this.fenceForFailedSync(`fdatasync of ${active.logPath} failed (${(error as Error).message})`, error);
        return;
      } finally {
        this.inlineIo?.syncEnded();
      }
      this.syncedBytesTotal = Math.max(this.syncedBytesTotal, writtenBytes);
      this.syncedOffset = Math.max(this.syncedOffset, target.offset);
      this.advanceHighWatermark(target, writtenBytes);
    } while (this.syncWanted);
  }

  /** Tells the inline I/O budget whether this log is writing or syncing (it then counts as busy). */
  private noteIoActivity(): void {
    const busy = this.writerRunning || this.syncing !== null;
    if (busy === this.ioBusy) return;
    this.ioBusy = busy;
    this.inlineIo?.noteBusy(busy);
  }

  /** `writtenBytes`: `writtenBytesTotal` when the log ended at `target`. */
  private advanceHighWatermark(target: LogPosition, writtenBytes: number): void {
    if (target.offset <= this.highWatermarkPosition.offset) return;
    this.highWatermarkPosition = target;
    this.visibleBytes = writtenBytes;
    let resolved = 0;
    while (resolved < this.awaitingDurable.length && this.awaitingDurable[resolved]!.result!.lastOffset < target.offset) {
      const append = this.awaitingDurable[resolved++]!;
      append.resolve(append.result!);
    }
    if (resolved > 0) this.awaitingDurable.splice(0, resolved);
    this.answersToSend = true;
    this.wakeReaders();
  }

  private fenceWith(error: StrataError): void {
    if (this.fence === null) {
      this.fence = error;
      this.logger.error({ err: error }, 'partition fenced');
    }
    const waiting = this.awaitingDurable;
    this.awaitingDurable = [];
    for (const append of waiting) append.reject(error);
    this.rejectQueued(error);
    // Readers waiting for records (long polls, subscriptions) wake, read and get the fence.
    this.wakeReaders();
  }

  /**
   * Fences the log for a failed fdatasync (`failure` says which), and records that on disk
   * (`sync-failure-marker.ts`): a start on the same boot then refuses to open the partition,
   * whose pages the kernel failed to write may still be in its page cache.
   */
  private fenceForFailedSync(failure: string, cause: unknown): void {
    this.fenceWith(new StrataError(ErrorCode.PARTITION_FENCED, `partition ${this.name} is fenced: ${failure}; ${AFTER_FAILED_SYNC}`, { cause }));
    // The first failure only: one write of the marker, never two at once on its temp file.
    this.syncFailureRecorded ??= writeSyncFailureMarker(this.fs, this.directory, { boot: this.fs.bootId(), problem: failure }).catch((error: unknown) =>
      this.logger.error({ err: error }, 'could not record the failed fdatasync on disk: restart the machine before the broker, or a recovery may serve bytes the disk never got'),
    );
  }

  /** fdatasyncs everything written so far (used by interval flushing and before close). */
  async flush(): Promise<void> {
    this.requestSync();
    while (this.syncing !== null) await this.syncing;
  }

  private scheduleFlushTimer(): void {
    if (this.flushTimer !== null) clearInterval(this.flushTimer);
    this.flushTimer = null;
    if (this.config.flush !== 'interval' || this.closing !== null) return;
    // Node runs an interval longer than its timers' limit every 1 ms instead: such a flush.ms
    // (accepted, and perhaps stored by an older version) means as rarely as a timer can.
    this.flushTimer = setInterval(() => this.requestSync(), Math.min(this.config.flushMs, TIMER_DELAY_MAX_MS));
    this.flushTimer.unref();
  }

  // -------------------------------------------------------------------------------------------
  // Rolling.

  private async maybeRoll(next: QueuedAppend): Promise<void> {
    const active = this.segments.last();
    if (active.isEmpty) return;
    const reason =
      active.sizeBytes + next.data.length > this.config.segmentBytes ? 'segment.bytes'
      : active.indexEntriesLeft() < next.batchCount ? 'index full'
      : this.clock.nowMs() - active.rollStartMs > this.config.segmentMs ? 'segment.ms'
      : this.nextOffset + next.recordCount - active.baseOffset > RELATIVE_OFFSET_MAX ? 'relative offset range'
      : null;
    if (reason !== null) await this.roll(reason);
  }

  /**
   * Creates the file of the next segment and makes its name durable. If that fails, the file
   * is removed again: the roll is retried later at a higher offset, and appends meanwhile go to
   * the old segment, so an empty file left under this offset would, after a restart, take the
   * place of those records in the segment list and hide them.
   */
  private async createSegment(baseOffset: number): Promise<LogSegment> {
    let segment: LogSegment | null = null;
    try {
      segment = await LogSegment.create(this.fs, this.directory, baseOffset, this.segmentOptions);
      try {
        await this.fs.fsyncDirectory(this.directory);
      } catch (error) {
        // A full disk changed nothing durable that removing the file below does not undo, nor
        // did a directory that could not be opened for want of a descriptor.
        const code = (error as NodeJS.ErrnoException).code;
        if (isDiskFullCode(code) || isTooManyOpenFilesCode(code)) throw error;
        throw new StraySegmentFile(`fsync of the directory after creating ${segment.logPath} failed (${errnoOrMessage(error)})`, error);
      }
      return segment;
    } catch (error) {
      const path = segment?.logPath ?? segmentFilePath(this.directory, baseOffset, LOG_SUFFIX);
      // Its descriptor, whatever becomes of it: what matters is that the file goes.
      await segment?.close().catch(() => undefined);
      try {
        await this.fs.unlink(path);
      } catch (removeError) {
        throw new StraySegmentFile(`could not remove ${path}, created by a roll that failed (${errnoOrMessage(error)}): ${(removeError as Error).message}`, error);
      }
      throw error;
    }
  }

  /**
   * Moves the recovery checkpoint up to the end of what the last fdatasync covered, when that
   * is higher; resolves to whether it wrote. The broker calls it every
   * `--recovery-checkpoint-interval-ms` (as Kafka checkpoints its recovery points every
   * `log.flush.offset.checkpoint.interval.ms`). Recovery takes damage below the checkpoint for
   * damage to durable data and fences, where past it, within the unsynced window of the log's
   * end, it would cut the damage and what follows as an unfinished write: so the checkpoint
   * keeps that window to the records of the last interval, not all of the active segment's.
   * Recovery still scans the whole active segment (its indexes are rebuilt from it).
   *
   * A segment whose base is the checkpoint exists only once the roll that made it has sealed
   * the one before (fdatasync, durable indexes), so a checkpoint at the log end written during
   * a roll never leaves an unsealed segment below the one it names. A fenced, closing or closed
   * log is left as it is.
   */
  checkpointRecoveryPoint(): Promise<boolean> {
    return this.writeRecoveryPoint('move');
  }

  /**
   * `move`: the broker's periodic move, which leaves a fenced, closing or closed log alone. A
   * roll and the clean close write it whatever the state; the close fsyncs the directory
   * itself once its marker is written.
   */
  private writeRecoveryPoint(caller: 'move' | 'roll' | 'close'): Promise<boolean> {
    const write = this.recoveryPointWrites.then(async () => {
      if (caller === 'move' && (this.fence !== null || this.closing !== null)) return false;
      const offset = this.syncedOffset;
      if (offset <= this.recoveryPoint) return false;
      // A move (and the close, which fsyncs the directory after its marker) leaves the rename to
      // a later fsync of the directory: until then a crash keeps the lower checkpoint before it,
      // which is safe, and it costs an fsync less.
      await writeRecoveryCheckpoint(this.fs, this.directory, offset, { syncDirectory: caller === 'roll' });
      this.recoveryPoint = offset;
      return true;
    });
    this.recoveryPointWrites = write.catch(() => undefined);
    return write;
  }

  /** Everything written is durable (`active`, the last segment, was just fdatasynced): the high watermark goes to the log end. */
  private flushedAll(active: LogSegment): void {
    this.syncedBytesTotal = this.writtenBytesTotal;
    this.syncedOffset = this.nextOffset;
    this.advanceHighWatermark({ offset: this.nextOffset, segmentBaseOffset: active.baseOffset, position: active.sizeBytes }, this.writtenBytesTotal);
  }

  /** Seals the active segment (fdatasync, durable indexes) and starts a new one. Writer only. */
  private async roll(reason: string): Promise<void> {
    const old = this.segments.last();
    await this.sealSync(old);
    await old.closeDirectWriter();
    this.flushedAll(old);
    await old.writeIndexes();
    const segment = await this.createSegment(this.nextOffset);
    this.segments.append(segment);
    // Not before: a roll that fails to create the next segment leaves appends going to this one.
    old.markSealed();
    await this.saveProducerState(segment.baseOffset);
    await this.writeRecoveryPoint('roll');
    this.logger.info({ baseOffset: segment.baseOffset, reason, sealedBytes: old.sizeBytes }, 'rolled to a new segment');
  }

  /**
   * fdatasyncs the segment being sealed as the log's only fdatasync in flight. After one that
   * failed, Linux reports the error to one caller only: a second one running beside it (the
   * group commit's, or the interval flush's) could succeed, and acknowledge, over pages the
   * first was told were lost. Throws the fence: the log's if it was fenced meanwhile, the one
   * this sets if the fdatasync fails.
   */
  private async sealSync(segment: LogSegment): Promise<void> {
    await this.aloneSyncing(async () => {
      try {
        await segment.flush();
      } catch (error) {
        this.fenceForFailedSync(`fdatasync of the segment being sealed failed (${errnoOrMessage(error)})`, error);
        throw this.fence!;
      }
    });
  }

  /**
   * Runs `sync` (an fdatasync and what it fences on failure) as the log's only fdatasync in
   * flight, once the one in flight has ended; throws the fence if the log is fenced by then.
   * `syncing` clears only after `sync` has settled, its fence included.
   */
  private async aloneSyncing(sync: () => Promise<void>): Promise<void> {
    while (this.syncing !== null) await this.syncing;
    if (this.fence !== null) throw this.fence;
    const running = sync();
    this.syncing = running
      .catch(() => undefined)
      .finally(() => {
        this.syncing = null;
        this.noteIoActivity();
      });
    this.noteIoActivity();
    await running;
  }

  // -------------------------------------------------------------------------------------------
  // Reading.

  /**
   * Reads whole batches from the one containing `offset`, up to `maxBytes` (at least one whole
   * batch), never past the high watermark. Offsets outside [logStartOffset, logEndOffset] are
   * OFFSET_OUT_OF_RANGE.
   */
  async read(offset: number, maxBytes: number): Promise<ReadResult> {
    this.checkUsable();
    const logStartOffset = this.logStartOffset;
    const highWatermark = this.highWatermark;
    if (!Number.isSafeInteger(offset) || offset < logStartOffset || offset > this.nextOffset) {
      throw new StrataError(ErrorCode.OFFSET_OUT_OF_RANGE, `offset ${offset} is out of range for ${this.name}: valid offsets are ${logStartOffset} to ${this.nextOffset} (${this.nextOffset} is the log end, where the next record goes)`);
    }
    if (offset >= highWatermark) return { batches: EMPTY, headroom: 0, highWatermark, logStartOffset };
    // The segment holding `offset`: the high watermark's segment or one before it, `offset` being below it.
    const segment = this.segments.at(Math.max(0, this.segments.floorIndex(offset)));
    const limit = this.readLimit(segment);
    if (limit === 0) return { batches: EMPTY, headroom: 0, highWatermark, logStartOffset };
    segment.acquire();
    let batches: Buffer | null;
    try {
      batches = await segment.read(offset, maxBytes, limit, segment === this.segments.last());
    } catch (error) {
      throw this.readFailure(segment, error);
    } finally {
      segment.release();
    }
    if (batches !== null && batches.length > 0) {
      // The high watermark now: it may have moved past the one above while a read waited, and
      // these batches may end past that one.
      return { batches, headroom: READ_HEADROOM_BYTES, highWatermark: this.highWatermark, logStartOffset };
    }
    if (this.segments.indexOf(segment) < 0) {
      throw new StrataError(ErrorCode.OFFSET_OUT_OF_RANGE, `offset ${offset} is out of range for ${this.name}: retention removed it during the read; valid offsets now start at ${this.logStartOffset}`);
    }
    // A sealed segment holds every offset up to the next one's base: one that has nothing for
    // `offset` lost its end.
    if (segment !== this.segments.last()) throw this.missingRecords(segment, offset);
    return { batches: EMPTY, headroom: 0, highWatermark, logStartOffset };
  }

  /**
   * A read for `offset` found nothing in `short`, a sealed segment that should hold it: its log
   * was cut below what was written, and the offsets from there up to the next segment's base are
   * in no segment. Fences the partition, as for any damage, rather than serve the records after
   * the gap as those asked for, or nothing while a consumer waits on an offset that never comes.
   */
  private missingRecords(short: LogSegment, offset: number): unknown {
    const problem = `offset ${offset} is missing: the log ends before the next segment's base offset ${short.nextOffset}`;
    return this.fenceOnCorruption(short, corruptionError(short.logPath, short.sizeBytes, problem));
  }

  /**
   * What a read or timestamp search that failed on `segment` throws (a retention pass goes on
   * without the segment's age: `loadIndexesForRetention`): a failed file call (an I/O error, too
   * many open files) as STORAGE_ERROR (UNAVAILABLE to a client: the next call tries the file
   * again), naming the errno, with the file in the broker log; anything else as
   * `fenceOnCorruption` says.
   */
  private readFailure(segment: LogSegment, error: unknown): unknown {
    const code = fileCallErrno(error);
    if (code === null) return this.fenceOnCorruption(segment, error);
    this.logger.warn({ err: error, file: segment.logPath }, 'a read of a segment failed; the next read tries again');
    return new StrataError(ErrorCode.STORAGE_ERROR, `reading partition ${this.name} failed: a file operation failed with ${code}; nothing changed, retry (the broker log names the file)`, { cause: error });
  }

  /**
   * Corruption a segment reports (a read, or an index load for a timestamp search or retention)
   * fences the partition, whoever met it: the segment is left as it was, so serving on would
   * skip or misplace records. Returns what to throw: the fence, or `error` when it is not
   * corruption.
   */
  private fenceOnCorruption(segment: LogSegment, error: unknown): unknown {
    if (!(error instanceof StrataError) || error.code !== ErrorCode.PARTITION_FENCED) return error;
    if (this.segments.indexOf(segment) < 0) {
      // Retention removed the segment while this waited on it: the damage goes with it, and the
      // records asked for are gone, as for a read that found its segment removed.
      this.logger.warn({ file: segment.logPath, problem: error.message }, 'a segment retention is removing turned out damaged; not fencing for it');
      return new StrataError(ErrorCode.OFFSET_OUT_OF_RANGE, `the records asked for in ${this.name} were removed by retention during the read; valid offsets now start at ${this.logStartOffset}`);
    }
    this.fenceWith(fencedError(this.name, this.directory, segment.logPath, -1, error.message));
    this.fenceRecorded ??= writeFenceMarker(this.fs, this.directory, { file: basename(segment.logPath), problem: error.message }).catch((failure: unknown) =>
      this.logger.error({ err: failure }, 'could not record the fence on disk: after a restart the partition serves again until a read meets the damage; run `strata repair` for it'),
    );
    return this.fence!;
  }

  /** Bytes of `segment` below the high watermark. */
  private readLimit(segment: LogSegment): number {
    const hw = this.highWatermarkPosition;
    if (segment.baseOffset < hw.segmentBaseOffset) return segment.sizeBytes;
    if (segment.baseOffset === hw.segmentBaseOffset) return hw.position;
    return 0;
  }

  /**
   * The first offset whose record timestamp is >= `timestamp`, or null when no visible record
   * is that recent.
   */
  async offsetForTimestamp(timestamp: number): Promise<number | null> {
    for (let index = 0; index < this.segments.count; ) {
      // On each segment: a close that began during the last one may have closed this one.
      this.checkUsable();
      const segment = this.segments.at(index);
      if (segment.baseOffset >= this.highWatermark) return null;
      // Known to hold nothing that recent: its indexes (maybe dropped by the index cache) are not
      // loaded again for it. A search from a long log's start loads only the segments it must.
      if (segment.knownOlderThan(timestamp)) {
        index++;
        continue;
      }
      // Held, as a read holds it, so that retention and close leave its files while its
      // indexes load.
      segment.acquire();
      let start: number | null;
      try {
        await segment.loadIndexes();
        start = segment.maxTimestamp < timestamp ? null : await segment.timeIndexLookup(timestamp);
      } catch (error) {
        throw this.readFailure(segment, error);
      } finally {
        segment.release();
      }
      if (start === null) {
        // On to the segment after this one, found anew: retention may have removed segments
        // meanwhile, which shifts the indices (if it removed this one, on to the first).
        index = this.segments.indexOf(segment) + 1;
        continue;
      }
      let offset = start;
      while (offset < this.highWatermark) {
        // Retention may have moved the log's start past `offset` (past `start` too, while the
        // indexes loaded).
        offset = Math.max(offset, this.logStartOffset);
        const { batches } = await this.read(offset, 64 * 1024);
        if (batches.length === 0) return null;
        let found;
        try {
          found = await firstRecordFrom(batches, offset, timestamp);
        } catch (error) {
          throw storedBatchError(error, `partition ${this.name}`);
        }
        if (found !== null) {
          // A read returns a segment retention removed during it: such a record is gone, and
          // the search goes on among the records kept.
          if (found.offset >= this.logStartOffset) return found.offset;
          offset = this.logStartOffset;
          continue;
        }
        forEachBatch(batches, (position) => {
          offset = Math.max(offset, readLastOffset(batches, position) + 1);
        });
      }
      return null; // read up to the high watermark: no visible record is that recent
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // Retention.

  /**
   * Deletes segments past `retention.ms` / `retention.bytes`, the active one too (after a roll);
   * returns how many. `close` waits for the passes under way, so none opens a segment file after
   * close closed it. Passes run one at a time: a pass whose delete failed puts the segments it
   * could not remove back at the front of the log, which another pass must not have moved. A
   * call while a pass waits for its turn joins that pass, so that checks behind a slow one
   * (a stalled disk) do not pile up. A sealed segment whose indexes cannot be loaded (a failed
   * file call) is kept by time, and the pass throws STORAGE_ERROR for it once `retention.bytes`
   * deleted what it may.
   */
  async applyRetention(): Promise<number> {
    this.checkUsable();
    if (this.queuedRetentionPass !== null) return this.queuedRetentionPass;
    const previous = this.lastRetentionPass;
    const after = (): Promise<number> => {
      this.queuedRetentionPass = null;
      this.checkUsable();
      return this.retentionPass();
    };
    // With no pass under way, this one starts at once: its segments leave the log before the call returns.
    const pass = previous === null ? this.retentionPass() : previous.then(after, after);
    if (previous !== null) this.queuedRetentionPass = pass;
    this.lastRetentionPass = pass;
    try {
      return await pass;
    } finally {
      if (this.lastRetentionPass === pass) this.lastRetentionPass = null;
    }
  }

  private async retentionPass(): Promise<number> {
    const nowMs = this.clock.nowMs();
    // The periodic check that also forgets idle producers between rolls.
    this.producerState.expire();
    // Learn the newest timestamp of the oldest sealed segments (lazy indexes) until one is young
    // enough to keep by `retention.ms`; without it, none is loaded. The policy treats an unknown
    // timestamp as young. When a file call fails (EIO, EMFILE, a `.timeindex` that is not a
    // file...), the segment's age stays unknown: it is kept by time (deleting it might delete
    // records that should be kept), but `retention.bytes` still applies, so that such a segment
    // does not let the log grow until the disk is full. Damage met while loading (an index
    // rebuilt from a damaged log) fences the partition and is thrown, as for a read: a fenced
    // partition deletes nothing (its files stay as they are for `strata repair`) and takes no
    // appends. No await when nothing is loaded: the segments leave the log before the call returns.
    let ageUnknown: { segment: LogSegment; error: StrataError } | null = null;
    for (let index = 0; index < this.segments.count - 1 && this.config.retentionMs >= 0; index++) {
      const segment = this.segments.at(index);
      if (segment.maxTimestamp < 0) {
        const error = await this.loadIndexesForRetention(segment);
        if (error !== null) ageUnknown = { segment, error };
      }
      // A close (which waits for this pass) or a fence may have come meanwhile: stop here.
      this.checkUsable();
      if (ageUnknown !== null || nowMs - segment.maxTimestamp <= this.config.retentionMs) break;
    }
    const deleted = await this.deleteForRetention(nowMs);
    // Thrown once the segments due are deleted (and logged where it failed), unless
    // retention.bytes deleted that segment too: the broker logs the pass as failed, as before,
    // but a segment of unknown age no longer holds back retention.bytes.
    if (ageUnknown !== null && this.segments.indexOf(ageUnknown.segment) >= 0) throw ageUnknown.error;
    return deleted;
  }

  /** Deletes the segments the policy picks (`segmentsToDelete`), the active one too after a roll; returns how many. */
  private async deleteForRetention(nowMs: number): Promise<number> {
    let count = segmentsToDelete([...this.segments], this.config, nowMs);
    if (count === this.segments.count) {
      // The active segment goes too: roll first, then decide again on the list as it is now
      // (the roll yields to the event loop, where appends may have come).
      await this.rollForRetention();
      this.checkUsable();
      count = Math.min(segmentsToDelete([...this.segments], this.config, nowMs), this.segments.count - 1);
    }
    count = this.keepingProducerSnapshot(count);
    if (count === 0) return 0;
    // The segments are renamed to `.deleted`, oldest first, while still in the log (a read that
    // opens one meanwhile finds it by its new name), and taken out only once the renames are
    // durable: the log start readers see never runs ahead of what a crash leaves on disk, where
    // the next start drops the renamed ones. A prefix of the log is renamed at any moment, and
    // a journaling file system makes renames in one directory durable in order.
    const doomed: LogSegment[] = [];
    for (let index = 0; index < count; index++) doomed.push(this.segments.at(index));
    let renamed = 0;
    let failure: unknown = null;
    for (; renamed < doomed.length; renamed++) {
      try {
        await doomed[renamed]!.renameForDeletion();
      } catch (error) {
        failure = error;
        break;
      }
    }
    if (renamed === 0) return this.retentionFailed(doomed[0]!, failure);
    // Failed, the renamed ones stay in the log (readable by their new names) until a pass whose
    // sync succeeds: a restart drops them, which is the deletion that was due.
    await this.fs.fsyncDirectory(this.directory);
    for (let index = 0; index < renamed; index++) assert(this.segments.removeFirst() === doomed[index], 'another retention pass changed the front of the log meanwhile');
    const deleted = doomed.slice(0, renamed);
    for (const segment of deleted) {
      // Renamed, the segment is gone (the next start removes a `.deleted` file left behind).
      await segment.removeFiles().catch((error: unknown) => this.logger.warn({ err: error, log: this.name, segment: segment.baseOffset }, 'could not remove the files of a segment retention deleted; the next start removes them'));
    }
    this.logger.info(
      { segments: deleted.length, bytes: deleted.reduce((sum, segment) => sum + segment.sizeBytes, 0), logStartOffset: this.logStartOffset },
      'retention deleted old segments',
    );
    if (failure !== null) return this.retentionFailed(doomed[renamed]!, failure);
    return deleted.length;
  }

  /** The pass's rename of `segment` failed: it and the later segments stay in the log, whole. */
  private retentionFailed(segment: LogSegment, failure: unknown): never {
    throw new StrataError(
      ErrorCode.STORAGE_ERROR,
      `retention of partition ${this.name} could not delete the segment at offset ${segment.baseOffset}: renaming ${segment.logPath} failed (${errnoOrMessage(failure)}); it and the later segments of the pass stay in the log, and the next pass tries again`,
      { cause: failure },
    );
  }

  /**
   * Rolls the active segment so that retention can delete it, in the writer's place: only when
   * no append is being written, and appends that come meanwhile wait for it as for any roll.
   * A failed fdatasync of the segment being sealed, a new segment file that may have stayed
   * in the directory (`StraySegmentFile`), or a failure after the new segment joined the list,
   * is handled as in the writer's rolls (`failRoll`: ENOSPC, EMFILE and ENFILE refuse what
   * queued meanwhile, anything else fences). Any other failure left the log as it was (every step before is
   * repeatable): the active segment stays until the next check, and the appends that waited go
   * on into it, since they do not need the roll; the sealed segments can still go.
   */
  private async rollForRetention(): Promise<void> {
    if (this.writerRunning) return;
    const active = this.segments.last();
    await this.runAsWriter(async () => {
      try {
        await this.roll('retention');
      } catch (error) {
        const leftAsItWas = !(error instanceof StraySegmentFile) && this.fence === null && this.segments.last() === active;
        if (leftAsItWas) this.logger.warn({ err: error }, 'retention could not roll the active segment; it stays until the next check');
        else this.failRoll(error as NodeJS.ErrnoException);
      }
    });
  }

  /**
   * At most `count`: deleting the oldest `count` segments must leave the log start at or below
   * the producer-state snapshot on disk, which a restart replays from (one it finds below the
   * log start is ignored, and the state of the producers in between lost). Only a snapshot
   * that failed to be written at a roll holds retention back, until a later roll writes one.
   */
  private keepingProducerSnapshot(count: number): number {
    const snapshot = this.producerSnapshotOffset;
    if (snapshot === null) return count;
    while (count > 0 && this.segments.at(count).baseOffset > snapshot) count--;
    return count;
  }

  /**
   * Writes the producer-state snapshot as of `offset` (its state then, replayed from there),
   * without the producers idle past their expiration.
   */
  private async saveProducerState(offset: number): Promise<void> {
    this.producerState.expire();
    await this.producerState.save(this.fs, this.directory, offset);
    this.producerSnapshotOffset = offset;
  }

  /**
   * Loads a segment's indexes, held as a read holds it (see `offsetForTimestamp`). A failed file
   * call is logged and returned as STORAGE_ERROR (the next pass tries again); anything else is
   * thrown as `fenceOnCorruption` says (damage fences the partition).
   */
  private async loadIndexesForRetention(segment: LogSegment): Promise<StrataError | null> {
    segment.acquire();
    try {
      await segment.loadIndexes();
      return null;
    } catch (error) {
      const code = fileCallErrno(error);
      if (code === null) throw this.fenceOnCorruption(segment, error);
      this.logger.warn({ err: error, file: segment.logPath }, 'retention could not load the indexes of a segment: its age is unknown, so it is kept by time (retention.bytes still applies); the next pass tries again');
      return new StrataError(
        ErrorCode.STORAGE_ERROR,
        `retention of partition ${this.name} could not learn the age of the segment at offset ${segment.baseOffset}: loading its indexes failed with ${code}; it is kept by time (retention.bytes still applied), and the next pass tries again (the broker log names the file)`,
        { cause: error },
      );
    } finally {
      segment.release();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Closing.

  /**
   * Stops taking appends, finishes queued ones (and those called before it that are still in
   * their compressed check), fdatasyncs, writes the indexes, the recovery checkpoint and the
   * clean-shutdown marker, and closes the files. Idempotent. Later calls are refused with
   * `reason` (default: FAILED_PRECONDITION "log is closed"). With `discard` (a deleted topic's
   * log, whose files go next) nothing more is synced or written: the writes and fdatasyncs under
   * way finish, and the files are closed.
   */
  close(options: { reason?: StrataError; discard?: boolean } = {}): Promise<void> {
    this.closedError ??= options.reason ?? logClosedError(`log ${this.name}`);
    this.closing ??= this.closeOnce(options.discard === true);
    return this.closing;
  }

  private async closeOnce(discard: boolean): Promise<void> {
    if (this.flushTimer !== null) clearInterval(this.flushTimer);
    await this.fenceRecorded;
    await this.syncFailureRecorded;
    // Appends called before the close and still in their compressed check are finished too.
    while (this.appendsInCheck > 0) await this.compressedChecks;
    while (this.writerRunning) await this.writing;
    while (this.syncing !== null) await this.syncing;
    this.rolledBackWrites?.dispose();
    try {
      if (discard) {
        // None is left waiting for an fdatasync once the syncs under way ended; were one, it is
        // refused with the reason, as the appends after it, rather than left unanswered.
        const waiting = this.awaitingDurable;
        this.awaitingDurable = [];
        for (const append of waiting) append.reject(this.closedError!);
      } else if (this.fence === null) {
        const active = this.segments.last();
        try {
          await active.flush();
        } catch (error) {
          this.fenceForFailedSync(`fdatasync of ${active.logPath} at close failed (${errnoOrMessage(error)})`, error);
          throw error;
        }
        this.flushedAll(active);
        await active.writeIndexes();
        await this.saveProducerState(this.nextOffset);
        await this.writeRecoveryPoint('close');
        await this.fs.writeFileDurably(join(this.directory, CLEAN_SHUTDOWN_FILE), EMPTY);
        await this.fs.fsyncDirectory(this.directory);
      }
    } finally {
      // A retention pass under way may still load a segment's indexes (opening its file) or
      // take segments out of the list: let it stop first, then close a copy of the list.
      await this.lastRetentionPass?.catch(() => undefined);
      // A move of the recovery checkpoint under way (a fenced log's close writes none) ends
      // before the close returns, and with it the files of a deleted topic may move.
      await this.recoveryPointWrites;
      // Even when the clean close failed (the next open recovers): release every descriptor.
      await this.closeSegments();
      // A read or retention pass that finished meanwhile may have fenced the log: its marker is
      // on disk before the close returns (and before a deleted topic's directory moves).
      await this.fenceRecorded;
      await this.syncFailureRecorded;
      this.rejectQueued(this.closedError!);
      // Wake readers waiting for new data, so they see the log is gone instead of timing out.
      this.wakeReaders();
    }
  }

  private closeSegments(): Promise<void> {
    return this.segments.closeAll((segment, error) => this.logger.warn({ err: error, file: segment.logPath }, 'closing a segment failed'));
  }

  /** For tests and tools: the sizes of the segments, oldest first. */
  segmentSizes(): { baseOffset: number; sizeBytes: number }[] {
    return [...this.segments].map((segment) => ({ baseOffset: segment.baseOffset, sizeBytes: segment.sizeBytes }));
  }
}

/** A direct write failed other than for lack of space: the last block on disk is in doubt. */
class DirectWriteFailed extends Error {
  constructor(
    readonly code: string,
    cause: unknown,
  ) {
    super(`direct write failed: ${code}`, { cause });
  }
}

function fencedError(name: string, directory: string, file: string, position: number, problem: string): StrataError {
  const where = position >= 0 ? ` in ${file} at byte ${position}` : '';
  // Resolved: a relative data directory means nothing to a client that gets this message.
  const dir = shellWord(resolve(directory));
  return new StrataError(
    ErrorCode.PARTITION_FENCED,
    `partition ${name} is fenced: corrupt data${where}: ${problem}. Nothing was dropped. ` +
      `Stop the broker and run \`strata repair --dir ${dir}\` to move the damaged bytes and everything after them to quarantine and resume`,
  );
}
