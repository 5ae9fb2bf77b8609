/**
 * One segment of a partition log: a `.log` file of record batches starting at `baseOffset`, with
 * its offset index and time index (see `offset-index.ts`, `time-index.ts`).
 *
 * Invariants:
 * - The log holds whole, CRC-valid batches with contiguous offsets from `baseOffset` to
 *   `nextOffset - 1`, from byte 0 to `sizeBytes` (bytes past `sizeBytes` are an unfinished or
 *   failed write and are never read).
 * - Sealed segments are immutable; only the last (active) segment is appended to.
 * - Indexes live in memory and reach the disk in `writeIndexes()` (seal, clean close). A sealed
 *   segment's indexes are loaded lazily on the first read, so opening a log of a thousand
 *   segments reads no index file.
 *
 * Reads of bytes the segment's tail in the shared `TailCache` still holds are copied from
 * memory; all others read the file. The tail is cleared when the log is cut, closed or deleted.
 *
 * Concurrency: appends are serialised by the owning `PartitionLog`; reads may run concurrently
 * with appends and with each other. Reads and timestamp lookups hold a reference
 * (`acquire`/`release`), so a segment that is closed, or deleted by retention, closes its file
 * only after the reads in flight finish.
 */
import { ErrorCode, StrataError } from '../common/errors.js';
import { BATCH_BYTES_MAX } from '../common/request-limits.js';
import { INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, DELETED_SUFFIX, segmentFilePath } from './file-names.js';
import { DirectWriter } from './direct-writer.js';
import { type FileSystem, readFully } from './file-system.js';
import { type IndexPosition, OFFSET_INDEX_ENTRY_BYTES, OffsetIndex } from './offset-index.js';
import type { IndexCache, UnloadableIndexes } from './index-cache.js';
import { indexFileBytes, indexFileEntries } from './index-file.js';
import type { SegmentTail, TailCache } from './tail-cache.js';
import {
  BATCH_HEADER_BYTES,
  CURRENT_MAGIC,
  LOG_OVERHEAD,
  MAGIC_OFFSET,
  checkBatchFrame,
  TIMESTAMP_TYPE_MASK,
  readAttributes,
  readBaseOffset,
  readBaseTimestamp,
  readBatchSize,
  readLastOffset,
  readMaxTimestamp,
} from './record-batch.js';
import { TIME_INDEX_ENTRY_BYTES, TimeIndex } from './time-index.js';

export interface SegmentOptions {
  indexIntervalBytes: number;
  /** Most entries either index may hold (`segment.index.bytes` / 12, the larger entry). */
  maxIndexEntries: number;
  /** Keeps the newest written bytes in memory for reads (see `tail-cache.ts`); null: none. */
  tailCache: TailCache | null;
  /** Bounds the memory of sealed segments' loaded indexes (see `index-cache.ts`); null: no bound, they stay loaded. */
  indexCache: IndexCache | null;
}

/** What a full scan of a segment's log found. */
export interface SegmentScan {
  /** Bytes of whole valid batches from the start of the file. */
  validBytes: number;
  fileBytes: number;
  nextOffset: number;
  maxTimestamp: number;
  batchCount: number;
  recordCount: number;
  /** Why the scan stopped before the end of the file; null when the whole file is valid. */
  problem: string | null;
}

const SCAN_CHUNK_BYTES = 8 * 1024 * 1024;
/**
 * Bytes free in front of what `read` returns, in the same memory: a server writes a response's
 * other fields (at most 44 bytes) and grpc-js's frame prefix (5) there and sends the read buffer
 * itself (server/raw-responses.ts).
 */
export const READ_HEADROOM_BYTES = 64;
const RESYNC_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Most bytes a read's first chunk covers before the `maxBytes` it returns, looking for the batch
 * it starts at: the index interval normally, less than this; a topic's index.interval.bytes may
 * be set to gigabytes, and one read's memory must not follow it.
 */
const SCAN_AHEAD_BYTES_MAX = 1024 * 1024;
/**
 * Least bytes of each later chunk of that search: reads of a small `maxBytes` (down to 1) still
 * scan in chunks of this size, not a read per batch.
 */
const SCAN_CHUNK_BYTES_MIN = 64 * 1024;
/** Earlier index entries a read of the active segment tries past a wrong one before byte 0. */
const EARLIER_ENTRIES_MAX = 8;

/** Saved index state to undo a failed write. */
export interface IndexMark {
  rollStartMs: number;
  offsetEntries: number;
  timeEntries: number;
  bytesSinceLastIndexEntry: number;
  maxTimestampSoFar: number;
}

export class LogSegment implements UnloadableIndexes {
  readonly logPath: string;
  readonly indexPath: string;
  readonly timeIndexPath: string;
  /** Bytes of valid batches in the log. */
  sizeBytes: number;
  /** One past the last offset in this segment (== baseOffset when empty). */
  nextOffset: number;
  /** Largest batch max timestamp in the segment, -1 when empty or not yet known. */
  maxTimestamp = -1;
  /** When the segment started to fill, for `segment.ms` rolls (clock ms); -1 while empty. */
  rollStartMs = -1;

  private fd: number | null = null;
  /** Direct writes to the active segment, opened by the first one. */
  private direct: DirectWriter | null = null;
  /** The newest written bytes, in memory; made by the first write. */
  private tail: SegmentTail | null = null;
  private opening: Promise<number> | null = null;
  private offsetIndex: OffsetIndex | null = null;
  private timeIndex: TimeIndex | null = null;
  private loadingIndexes: Promise<void> | null = null;
  /** No append can come any more (`markSealed`): the indexes, on disk, may be unloaded under `options.indexCache`. */
  private sealed = false;
  /** Indexes rebuilt from the log (the files were wrong) that could not be written back: they stay loaded, as a reload would rebuild them again. */
  private indexesOnlyInMemory = false;
  private bytesSinceLastIndexEntry = 0;
  private maxTimestampSoFar = -1;
  private readers = 0;
  /** Settles when the last read releases the segment (see `whenUnread`). */
  private unread: { promise: Promise<void>; resolve: () => void } | null = null;
  deleted = false;

  private constructor(
    private readonly fs: FileSystem,
    readonly directory: string,
    readonly baseOffset: number,
    private readonly options: SegmentOptions,
    sizeBytes: number,
    nextOffset: number,
  ) {
    this.logPath = segmentFilePath(directory, baseOffset, LOG_SUFFIX);
    this.indexPath = segmentFilePath(directory, baseOffset, INDEX_SUFFIX);
    this.timeIndexPath = segmentFilePath(directory, baseOffset, TIME_INDEX_SUFFIX);
    this.sizeBytes = sizeBytes;
    this.nextOffset = nextOffset;
  }

  /** Creates the `.log` of a new, empty segment. The caller fsyncs the directory. */
  static async create(fs: FileSystem, directory: string, baseOffset: number, options: SegmentOptions): Promise<LogSegment> {
    const segment = new LogSegment(fs, directory, baseOffset, options, 0, baseOffset);
    const fd = await fs.open(segment.logPath, { create: true });
    try {
      await fs.ftruncate(fd, 0);
    } catch (error) {
      await fs.close(fd);
      throw error;
    }
    segment.fd = fd;
    segment.offsetIndex = new OffsetIndex(baseOffset, options.maxIndexEntries);
    segment.timeIndex = new TimeIndex(baseOffset, options.maxIndexEntries);
    return segment;
  }

  /**
   * A segment already on disk. `nextOffset` may be unknown (-1) until `scan()` or
   * `loadIndexes()` runs; its file is opened on first use.
   */
  static existing(
    fs: FileSystem,
    directory: string,
    baseOffset: number,
    options: SegmentOptions,
    sizeBytes: number,
    nextOffset: number,
  ): LogSegment {
    return new LogSegment(fs, directory, baseOffset, options, sizeBytes, nextOffset);
  }

  get isEmpty(): boolean {
    return this.sizeBytes === 0;
  }

  async fileDescriptor(): Promise<number> {
    if (this.fd !== null) return this.fd;
    this.opening ??= this.openLog().then(
      (fd) => (this.fd = fd),
      (error: unknown) => {
        // Forgotten, so a transient failure (EMFILE, EIO) fails this call only, not every later one.
        this.opening = null;
        throw error;
      },
    );
    return this.opening;
  }

  /**
   * Opens the log by its name, or by its `.deleted` name once retention has renamed it: a read
   * that holds the segment may open it only after the rename (`delete` unlinks the file only
   * after such reads).
   */
  private async openLog(): Promise<number> {
    try {
      return await this.fs.open(this.logPath, { create: false });
    } catch (error) {
      if (!this.deleted || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      return this.fs.open(this.logPath + DELETED_SUFFIX, { create: false });
    }
  }

  /** The descriptor of an open segment (the active one always is). */
  openFileDescriptor(): number {
    if (this.fd === null) throw new StrataError(ErrorCode.STORAGE_ERROR, `segment ${this.logPath} is not open`);
    return this.fd;
  }

  // -------------------------------------------------------------------------------------------
  // Appending (active segment only; the partition log serialises calls).

  /**
   * Updates the in-memory indexes for a batch about to be written at `position`. `rollStartMs`
   * becomes the segment's roll start if this is its first batch.
   */
  indexBatch(baseOffset: number, position: number, size: number, maxTimestamp: number, rollStartMs: number): void {
    const offsetIndex = this.offsetIndex!;
    // A full index skips entries (lookups then scan further) rather than fail; the writer rolls
    // before that happens, so it is a backstop only.
    if (this.bytesSinceLastIndexEntry >= this.options.indexIntervalBytes && position > 0 && !offsetIndex.isFull()) {
      offsetIndex.append(baseOffset, position);
      this.timeIndex!.maybeAppend(this.maxTimestampSoFar, baseOffset);
      this.bytesSinceLastIndexEntry = 0;
    }
    this.bytesSinceLastIndexEntry += size;
    if (maxTimestamp > this.maxTimestampSoFar) this.maxTimestampSoFar = maxTimestamp;
    if (this.rollStartMs < 0) this.rollStartMs = rollStartMs;
  }

  indexMark(): IndexMark {
    return {
      rollStartMs: this.rollStartMs,
      offsetEntries: this.offsetIndex!.entryCount,
      timeEntries: this.timeIndex!.entryCount,
      bytesSinceLastIndexEntry: this.bytesSinceLastIndexEntry,
      maxTimestampSoFar: this.maxTimestampSoFar,
    };
  }

  resetToIndexMark(mark: IndexMark): void {
    this.rollStartMs = mark.rollStartMs;
    this.offsetIndex!.truncateToEntries(mark.offsetEntries);
    this.timeIndex!.truncateToEntries(mark.timeEntries);
    this.bytesSinceLastIndexEntry = mark.bytesSinceLastIndexEntry;
    this.maxTimestampSoFar = mark.maxTimestampSoFar;
  }

  /**
   * Writes `buffers` (`bytes` in all) at the end of the log through the page cache (the caller
   * updates sizes).
   */
  async writeBuffered(buffers: readonly Buffer[], bytes: number): Promise<void> {
    await this.fs.writev(this.openFileDescriptor(), buffers, this.sizeBytes);
    this.noteBufferedWrite(buffers, bytes);
  }

  /** `writeBuffered` on the calling thread (see `inline-io.ts`). */
  writeBufferedInline(buffers: readonly Buffer[], bytes: number): void {
    this.fs.writevSync(this.openFileDescriptor(), buffers, this.sizeBytes);
    this.noteBufferedWrite(buffers, bytes);
  }

  private noteBufferedWrite(buffers: readonly Buffer[], bytes: number): void {
    this.direct?.noteBufferedWrite(buffers, this.sizeBytes, bytes);
    this.cacheWritten(buffers, bytes);
  }

  /**
   * Writes `buffers` (`bytes` in all) at the end of the log with direct writes through `staging`
   * (see `direct-writer.ts`); throws DirectWritesUnsupported where that is not possible.
   */
  async writeDirect(buffers: readonly Buffer[], bytes: number, staging: Buffer): Promise<void> {
    const fd = this.openFileDescriptor();
    this.direct ??= await DirectWriter.open(this.fs, this.logPath);
    await this.direct.write(fd, buffers, this.sizeBytes, bytes, staging);
    this.cacheWritten(buffers, bytes);
  }

  /** Whether `writeDirectInline` may run now (a direct writer is open and holds the last block). */
  canWriteDirectInline(): boolean {
    return this.direct !== null && this.direct.canWriteInline;
  }

  /** `writeDirect` on the calling thread, for a group that fits in `staging` (see `inline-io.ts`). */
  writeDirectInline(buffers: readonly Buffer[], bytes: number, staging: Buffer): void {
    this.direct!.writeInline(buffers, this.sizeBytes, bytes, staging);
    this.cacheWritten(buffers, bytes);
  }

  /** Keeps what was just written at `sizeBytes` in the tail cache. */
  private cacheWritten(buffers: readonly Buffer[], bytes: number): void {
    const cache = this.options.tailCache;
    if (cache === null) return;
    this.tail ??= cache.tail();
    this.tail.written(this.sizeBytes, buffers, bytes);
  }

  /**
   * Undoes a failed write: cuts the file back to the end of the log. The bytes before it are
   * unchanged, so a direct writer's copy of the last block stays valid.
   */
  async truncateUnwritten(): Promise<void> {
    await this.fs.ftruncate(this.openFileDescriptor(), this.sizeBytes);
    this.direct?.noteUndone();
  }

  /** Records that batches up to `nextOffset` were written, `bytes` long in total. */
  noteWritten(bytes: number, nextOffset: number): void {
    this.sizeBytes += bytes;
    this.nextOffset = nextOffset;
    this.maxTimestamp = this.maxTimestampSoFar;
  }

  /** Index entries either index can still take (each batch adds at most one). */
  indexEntriesLeft(): number {
    return Math.min(this.offsetIndex!.maxEntries - this.offsetIndex!.entryCount, this.timeIndex!.maxEntries - this.timeIndex!.entryCount);
  }

  // -------------------------------------------------------------------------------------------
  // Reading.

  acquire(): void {
    this.readers++;
  }

  release(): void {
    this.readers--;
    if (this.readers === 0 && this.unread !== null) {
      this.unread.resolve();
      this.unread = null;
    }
  }

  /** Resolves once no read holds the segment. */
  private whenUnread(): Promise<void> {
    if (this.readers === 0) return Promise.resolve();
    if (this.unread === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((settle) => (resolve = settle));
      this.unread = { promise, resolve };
    }
    return this.unread.promise;
  }

  /**
   * Loads (or rebuilds) the indexes of a segment opened from disk. Every use of the indexes
   * begins here, which counts as a use for the index cache; a caller that awaits between this
   * and its use holds the segment (`acquire`), so that the cache cannot unload them meanwhile.
   */
  async loadIndexes(): Promise<void> {
    if (this.offsetIndex !== null) {
      this.noteIndexUse(false);
      return;
    }
    this.loadingIndexes ??= this.loadIndexFiles().catch((error: unknown) => {
      // Forgotten, as a failed open is: the next read or retention pass tries again.
      this.loadingIndexes = null;
      throw error;
    });
    return this.loadingIndexes;
  }

  private async loadIndexFiles(): Promise<void> {
    const problem = await this.loadIndexFilesWithoutRebuild();
    if (problem !== null) {
      this.onIndexRebuild?.(this, problem);
      await this.rebuildIndexes();
      await this.saveRebuiltIndexes();
    }
    this.noteIndexUse(true);
  }

  /**
   * Writes the indexes a sealed segment rebuilt from its log over its damaged or missing index
   * files, so that they can be unloaded and loaded again without another rebuild. The caller
   * holds the segment, so its files stay until this ends. If the write fails, they stay in
   * memory only, out of the index cache (`indexesOnlyInMemory`), and the files are checked and
   * rebuilt again at the next start.
   */
  private async saveRebuiltIndexes(): Promise<void> {
    if (!this.sealed || this.offsetIndex === null) return;
    const offsetIndex = this.offsetIndex;
    const timeIndex = this.timeIndex!;
    try {
      await this.sealAndWriteIndexFiles(offsetIndex, timeIndex);
    } catch (error) {
      this.onIndexRebuild?.(this, `the rebuilt index could not be written (${(error as Error).message}); it stays in memory`);
      this.indexesOnlyInMemory = true;
      this.options.indexCache?.forget(this);
    }
    // Sealed: no entry comes any more.
    offsetIndex.shrinkToEntries();
    timeIndex.shrinkToEntries();
  }

  /**
   * Whether every record here is known to be older than `timestamp` without loading the indexes:
   * the segment is sealed and its largest timestamp was learnt at an earlier load (it outlives an
   * unload by the index cache). False when not known.
   */
  knownOlderThan(timestamp: number): boolean {
    return this.sealed && this.maxTimestamp >= 0 && this.maxTimestamp < timestamp;
  }

  /**
   * Marks the segment sealed: no append comes any more and its indexes are on disk (written at
   * the roll, or at the clean close before the start that found it sealed). From now on the
   * index cache may unload them when they are not in use.
   */
  markSealed(): void {
    this.sealed = true;
    // No entry comes any more: room left for more would be held for nothing.
    this.offsetIndex?.shrinkToEntries();
    this.timeIndex?.shrinkToEntries();
    this.noteIndexUse(false);
  }

  /** Tells the index cache of a use of a sealed segment's loaded indexes (`loaded`: just read from disk). */
  private noteIndexUse(loaded: boolean): void {
    const cache = this.options.indexCache;
    if (cache === null || !this.sealed || this.offsetIndex === null || this.indexesOnlyInMemory) return;
    cache.used(this, this.offsetIndex.memoryBytes + this.timeIndex!.memoryBytes, loaded);
  }

  /**
   * Drops the indexes of a sealed segment that nothing uses now (the index cache asks), and
   * closes its log, which a read opened: its next use loads and opens them again. So the
   * descriptors of sealed segments are bounded with their indexes, and a replay of a long
   * history does not leave one open per segment it passed until retention deletes them.
   */
  unloadIndexes(): boolean {
    if (!this.sealed || this.readers > 0 || this.rebuilding !== null || this.indexUntrusted || this.indexesOnlyInMemory) return false;
    this.closeUnreadLog();
    if (this.offsetIndex === null) return true;
    this.offsetIndex = null;
    this.timeIndex = null;
    this.loadingIndexes = null;
    return true;
  }

  /** Closes the log of a sealed segment no read holds (sealed, it was fdatasynced at its roll). */
  private closeUnreadLog(): void {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    this.opening = null;
    // Linux frees the descriptor even when close(2) fails, and nothing unsynced is left to lose.
    this.fs.close(fd).catch(() => undefined);
  }

  /** Loads both index files if they pass the sanity checks; else returns what is wrong. */
  private async loadIndexFilesWithoutRebuild(): Promise<string | null> {
    const [offsetFile, timeFile] = await Promise.all([this.fs.readFile(this.indexPath), this.fs.readFile(this.timeIndexPath)]);
    if (offsetFile === null || timeFile === null) return 'index file missing';
    const offsetBytes = indexFileEntries(offsetFile, OFFSET_INDEX_ENTRY_BYTES);
    const timeBytes = indexFileEntries(timeFile, TIME_INDEX_ENTRY_BYTES);
    let problem: string | null = null;
    if (typeof offsetBytes === 'string') problem = `${this.indexPath}: ${offsetBytes}`;
    else if (typeof timeBytes === 'string') problem = `${this.timeIndexPath}: ${timeBytes}`;
    else {
      const offsetIndex = new OffsetIndex(this.baseOffset, Math.max(this.options.maxIndexEntries, offsetBytes.length / 8), offsetBytes);
      const timeIndex = new TimeIndex(this.baseOffset, Math.max(this.options.maxIndexEntries, timeBytes.length / 12), timeBytes);
      problem = offsetIndex.sanityCheck(this.sizeBytes) ?? (this.nextOffset >= 0 ? timeIndex.sanityCheck(this.nextOffset) : null);
      if (problem === null && this.nextOffset >= 0 && this.sizeBytes > 0 && !timeIndex.isSealedAt(this.nextOffset)) {
        problem = `time index does not end with the closing entry for offset ${this.nextOffset}`;
      }
      if (problem === null) {
        this.offsetIndex = offsetIndex;
        this.timeIndex = timeIndex;
        if (this.maxTimestamp < 0) this.maxTimestamp = timeIndex.lastTimestamp();
        this.maxTimestampSoFar = this.maxTimestamp;
      }
    }
    return problem;
  }

  /** Set when a read of the active segment found its index wrong, until `writeIndexes` rebuilds it. */
  private indexUntrusted = false;
  private rebuilding: Promise<void> | null = null;

  /** Called when an index is found wrong and rebuilt from the log (for a warning log line). */
  onIndexRebuild: ((segment: LogSegment, reason: string) => void) | null = null;

  /**
   * Reads whole batches starting with the one that contains `offset`, at most `maxBytes` (but
   * always one whole batch), never past `limitPosition`. Returns null when no batch at or
   * after `offset` lies below the limit. Batches are CRC-checked; a mismatch throws. The result
   * has `READ_HEADROOM_BYTES` of its own memory in front of it.
   */
  async read(offset: number, maxBytes: number, limitPosition: number, appendable: boolean): Promise<Buffer | null> {
    await this.loadIndexes();
    if (this.indexUntrusted && !appendable) await this.rebuildUntrustedIndex(); // sealed since
    try {
      return await this.readFrom(this.offsetIndex!.lookup(offset), offset, maxBytes, limitPosition);
    } catch (error) {
      if (!(error instanceof IndexMismatch)) throw error;
      if (appendable) return this.readFromEarlierEntry(offset, maxBytes, limitPosition, error);
      this.onIndexRebuild?.(this, error.message);
      // Up to the known end: past it lie unfinished writes or a direct write's zero padding.
      await this.rebuildIndexes(this.sizeBytes);
      await this.saveRebuiltIndexes();
      this.noteIndexUse(false);
      return this.readFrom(this.offsetIndex!.lookup(offset), offset, maxBytes, limitPosition);
    }
  }

  /**
   * A read of the active segment found its index entry wrong. A rebuild now would race the
   * writer, which adds entries and moves `sizeBytes` on as it appends, so the read steps back
   * to an earlier entry that is right (damage is usually one entry; a read checks that a batch
   * with the entry's offset starts at its position) and, failing that, to byte 0. The index is
   * rebuilt by `writeIndexes`, at the next roll or clean close.
   */
  private async readFromEarlierEntry(offset: number, maxBytes: number, limitPosition: number, mismatch: IndexMismatch): Promise<Buffer | null> {
    if (!this.indexUntrusted) {
      this.indexUntrusted = true;
      this.onIndexRebuild?.(this, `${mismatch.message}; the active segment's index is rebuilt at its next roll or clean close`);
    }
    for (let back = 1; ; back++) {
      const start = back > EARLIER_ENTRIES_MAX ? this.offsetIndex!.lookupBefore(offset, Number.MAX_SAFE_INTEGER) : this.offsetIndex!.lookupBefore(offset, back);
      try {
        return await this.readFrom(start, offset, maxBytes, limitPosition);
      } catch (error) {
        if (!(error instanceof IndexMismatch)) throw error;
        // Not even the first batch is where it must be: damage, not a wrong index.
        if (start.position === 0) throw corruptionError(this.logPath, 0, error.message);
      }
    }
  }

  /** Rebuilds an index a read found wrong, once no append can run (one rebuild at a time). */
  private rebuildUntrustedIndex(): Promise<void> {
    this.rebuilding ??= (async () => {
      try {
        await this.rebuildIndexes(this.sizeBytes);
        this.indexUntrusted = false;
      } finally {
        this.rebuilding = null;
      }
    })();
    return this.rebuilding;
  }

  private async readFrom(start: IndexPosition, offset: number, maxBytes: number, limitPosition: number): Promise<Buffer | null> {
    const fd = await this.fileDescriptor();
    const startPosition = start.position;
    const indexedOffset = start.offset;
    let chunkPosition = startPosition;
    // One read normally covers the batch holding `offset` and maxBytes after it: that batch ends
    // by the next index entry, or (past the last entry) about one index interval on. When it
    // lies further (an index that stopped taking entries, or one not trusted), the loop below
    // reads on chunk by chunk. The first read never scans more than SCAN_AHEAD_BYTES_MAX ahead
    // of maxBytes, so a topic with a large index.interval.bytes reads in bounded chunks too.
    const indexedEnd = start.nextPosition >= 0 ? start.nextPosition : startPosition + this.options.indexIntervalBytes;
    const coverEnd = Math.min(indexedEnd, startPosition + SCAN_AHEAD_BYTES_MAX) + maxBytes;
    let chunk = await this.readLog(fd, chunkPosition, Math.min(limitPosition, coverEnd) - chunkPosition);
    let cursor = 0;
    let firstBatch = true;
    let expectedOffset = indexedOffset;
    // Find the first batch whose last offset is >= offset.
    for (;;) {
      if (chunkPosition + cursor >= limitPosition) return null;
      if (chunk.length - cursor < BATCH_HEADER_BYTES) {
        chunkPosition += cursor;
        cursor = 0;
        chunk = await this.readLog(fd, chunkPosition, Math.min(limitPosition - chunkPosition, Math.max(maxBytes, SCAN_CHUNK_BYTES_MIN) + BATCH_HEADER_BYTES));
        if (chunk.length < BATCH_HEADER_BYTES) throw corruptionError(this.logPath, chunkPosition, 'batch header runs past the readable end');
        continue;
      }
      const size = readBatchSize(chunk, cursor);
      const plausible = size >= BATCH_HEADER_BYTES && size <= BATCH_BYTES_MAX && chunk[cursor + MAGIC_OFFSET] === CURRENT_MAGIC;
      if (firstBatch) {
        firstBatch = false;
        if (!plausible || readBaseOffset(chunk, cursor) !== indexedOffset) {
          throw new IndexMismatch(`index points at byte ${startPosition} for offset ${indexedOffset}, where no such batch starts`);
        }
      }
      if (!plausible) throw corruptionError(this.logPath, chunkPosition + cursor, `implausible batch header (length ${size})`);
      // The CRC does not cover baseOffset: check offsets continue, so a damaged one is caught.
      if (readBaseOffset(chunk, cursor) !== expectedOffset) {
        throw corruptionError(this.logPath, chunkPosition + cursor, `batch has base offset ${readBaseOffset(chunk, cursor)}, expected ${expectedOffset}`);
      }
      expectedOffset = readLastOffset(chunk, cursor) + 1;
      if (expectedOffset > offset) break;
      cursor += size;
    }
    expectedOffset = readBaseOffset(chunk, cursor);
    // Make sure the first batch is whole in the chunk, then take as many whole batches as fit.
    const firstSize = readBatchSize(chunk, cursor);
    if (cursor + firstSize > chunk.length) {
      chunkPosition += cursor;
      cursor = 0;
      chunk = await this.readLog(fd, chunkPosition, Math.min(limitPosition - chunkPosition, Math.max(firstSize, maxBytes)));
      if (chunk.length < firstSize) throw corruptionError(this.logPath, chunkPosition, `batch of ${firstSize} bytes runs past the readable end`);
    }
    let end = cursor;
    while (chunk.length - end >= LOG_OVERHEAD) {
      const size = readBatchSize(chunk, end);
      if (end + size > chunk.length || (end > cursor && end + size - cursor > maxBytes)) break;
      const problem =
        checkBatchFrame(chunk, end, chunk.length) ??
        (readBaseOffset(chunk, end) !== expectedOffset ? `batch has base offset ${readBaseOffset(chunk, end)}, expected ${expectedOffset}` : null);
      if (problem !== null) throw corruptionError(this.logPath, chunkPosition + end, problem);
      expectedOffset = readLastOffset(chunk, end) + 1;
      end += size;
    }
    return chunk.subarray(cursor, end);
  }

  /** `readChunk` for readers: from the tail cache when it holds the whole range. */
  private async readLog(fd: number, position: number, length: number): Promise<Buffer> {
    const cache = this.options.tailCache;
    if (cache === null || length <= 0) return this.readChunk(fd, position, length);
    if (this.tail !== null && this.tail.covers(position, length)) {
      const buffer = Buffer.allocUnsafeSlow(READ_HEADROOM_BYTES + length);
      this.tail.readInto(position, length, buffer, READ_HEADROOM_BYTES);
      cache.hits++;
      return buffer.subarray(READ_HEADROOM_BYTES);
    }
    cache.misses++;
    return this.readChunk(fd, position, length);
  }

  /**
   * Reads into a buffer of its own with `READ_HEADROOM_BYTES` free in front, so every view of
   * the result has that much of its own memory before it (see `ReadResult.headroom`).
   */
  private async readChunk(fd: number, position: number, length: number): Promise<Buffer> {
    const size = Math.max(0, length);
    const buffer = Buffer.allocUnsafeSlow(READ_HEADROOM_BYTES + size);
    const filled = await readFully(this.fs, fd, buffer, READ_HEADROOM_BYTES, size, position);
    return buffer.subarray(READ_HEADROOM_BYTES, READ_HEADROOM_BYTES + filled);
  }

  /** Offset to start a scan for timestamp `timestamp` (see `TimeIndex.lookup`). */
  async timeIndexLookup(timestamp: number): Promise<number> {
    await this.loadIndexes();
    // Held by the caller (`offsetForTimestamp`), so not unloaded since.
    return this.timeIndex!.lookup(timestamp);
  }

  // -------------------------------------------------------------------------------------------
  // Recovery.

  /**
   * Readies the active segment after a clean shutdown: loads its indexes (written at close) and
   * checks the batches after the last index entry, which gives `nextOffset`; when the index
   * files are missing or fail their checks, rebuilds them from a scan of the segment instead.
   * Returns null when all is consistent, else what is wrong; throws what a scan meets (either
   * way the log is then recovered).
   */
  async loadAfterCleanShutdown(): Promise<string | null> {
    const indexProblem = await this.loadIndexFilesWithoutRebuild();
    if (indexProblem !== null) {
      // Index files missing, damaged or from a version before their trailer: the close that
      // left the marker finished the log, so this segment's indexes are rebuilt from a scan of
      // it, which checks every batch, rather than the whole log recovered. A problem the scan
      // meets throws (then the log is recovered).
      this.onIndexRebuild?.(this, indexProblem);
      await this.rebuildIndexes(this.sizeBytes);
      return null;
    }
    const fd = await this.fileDescriptor();
    const last = this.offsetIndex!.lastEntry();
    let nextOffset = last.offset;
    let maxTimestamp = this.timeIndex!.lastTimestamp();
    // A chunk at a time: with a large index.interval.bytes, this tail may be most of the segment.
    const walk = await walkBatches(this.fs, fd, last.position, this.sizeBytes, (buffer, cursor) => {
      if (readBaseOffset(buffer, cursor) !== nextOffset) return `batch does not continue offset ${nextOffset}`;
      nextOffset = readLastOffset(buffer, cursor) + 1;
      maxTimestamp = Math.max(maxTimestamp, readMaxTimestamp(buffer, cursor));
      return null;
    });
    if (walk.problem !== null) return `at byte ${walk.validEnd}: ${walk.problem}`;
    const timeProblem = this.timeIndex!.sanityCheck(nextOffset);
    if (timeProblem !== null) return timeProblem;
    if (this.sizeBytes > 0 && !this.timeIndex!.isSealedAt(nextOffset)) return 'time index lacks its closing entry';
    this.nextOffset = nextOffset;
    this.maxTimestamp = maxTimestamp;
    this.maxTimestampSoFar = maxTimestamp;
    this.bytesSinceLastIndexEntry = this.sizeBytes - last.position;
    // The final time-index entry written at close points at nextOffset; appends continue from
    // there, so drop it to keep entries pointing at batch starts within the segment.
    this.timeIndex!.truncateToOffset(nextOffset - 1);
    if (this.sizeBytes > 0) {
      const header = await this.readChunk(fd, 0, BATCH_HEADER_BYTES);
      this.rollStartMs = rollStartOf(header, 0);
    }
    return null;
  }

  /**
   * Reads the whole log, checking every batch's frame and CRC and that offsets run on from
   * `baseOffset` without gaps, and rebuilds both indexes, `nextOffset` and `maxTimestamp` from
   * what it finds. Stops at the first invalid byte and reports it; changes no file. With
   * `limitBytes`, reads no further than that (the file may be longer).
   *
   * For recovery: the segment takes what the scan found valid even when it stopped at damage,
   * since recovery then truncates there (or fences the partition). Elsewhere, damage must leave
   * the segment as it was: see `rebuildIndexes`.
   */
  async scan(limitBytes = Number.MAX_SAFE_INTEGER): Promise<SegmentScan> {
    const { result, rebuilt } = await this.scanLog(limitBytes);
    this.adoptScan(result, rebuilt);
    return result;
  }

  /**
   * Rebuilds the indexes from the log up to `limitBytes`, or throws the corruption it met. The
   * segment takes the rebuilt state only when the whole range is valid: a partial index and a
   * `sizeBytes` cut to the valid prefix would let later reads skip the damaged records.
   */
  private async rebuildIndexes(limitBytes = Number.MAX_SAFE_INTEGER): Promise<void> {
    const { result, rebuilt } = await this.scanLog(limitBytes);
    if (result.problem !== null) throw corruptionError(this.logPath, result.validBytes, result.problem);
    // A sealed segment must run up to the next one's base offset (the active one, up to what was
    // written): a log that ends sooner lost records, and an index rebuilt to that end would skip them.
    if (this.nextOffset >= 0 && result.nextOffset !== this.nextOffset) {
      throw corruptionError(this.logPath, result.validBytes, `the log ends at offset ${result.nextOffset}, but the segment holds offsets up to ${this.nextOffset - 1}`);
    }
    this.adoptScan(result, rebuilt);
  }

  /**
   * The scan itself. It indexes into `rebuilt`, a detached segment with no file of its own, so
   * that the index rules of `indexBatch` apply and this segment changes only when one adopts it.
   */
  private async scanLog(limitBytes: number): Promise<{ result: SegmentScan; rebuilt: LogSegment }> {
    const fd = await this.fileDescriptor();
    const fileBytes = Math.min(limitBytes, await this.fs.fileSize(fd));
    // Room for every entry these bytes can need under the current settings, even when they
    // were written under settings that allowed more (an operator may lower segment.index.bytes
    // or index.interval.bytes at any time): a full index must not pass for a damaged log.
    const maxEntries = Math.max(this.options.maxIndexEntries, Math.floor(fileBytes / Math.max(1, this.options.indexIntervalBytes)) + 2);
    const offsetIndex = new OffsetIndex(this.baseOffset, maxEntries);
    const timeIndex = new TimeIndex(this.baseOffset, maxEntries);
    const rebuilt = new LogSegment(this.fs, this.directory, this.baseOffset, this.options, 0, this.baseOffset);
    rebuilt.offsetIndex = offsetIndex;
    rebuilt.timeIndex = timeIndex;
    const result: SegmentScan = {
      validBytes: 0, fileBytes, nextOffset: this.baseOffset, maxTimestamp: -1, batchCount: 0, recordCount: 0, problem: null,
    };
    const walk = await walkBatches(this.fs, fd, 0, fileBytes, (buffer, cursor, position) => {
      const batchOffset = readBaseOffset(buffer, cursor);
      if (batchOffset !== result.nextOffset) return `batch has base offset ${batchOffset}, expected ${result.nextOffset}`;
      rebuilt.indexBatch(batchOffset, position, readBatchSize(buffer, cursor), readMaxTimestamp(buffer, cursor), rollStartOf(buffer, cursor));
      result.nextOffset = readLastOffset(buffer, cursor) + 1;
      result.batchCount++;
      result.recordCount += result.nextOffset - batchOffset;
      return null;
    });
    result.validBytes = walk.validEnd;
    result.problem = walk.problem;
    // Back to the configured bound (or the entries held, if more): a segment that needed more
    // counts as full, so the writer rolls before appending to it.
    offsetIndex.limitTo(this.options.maxIndexEntries);
    timeIndex.limitTo(this.options.maxIndexEntries);
    result.maxTimestamp = rebuilt.maxTimestampSoFar;
    return { result, rebuilt };
  }

  /** Takes the indexes and sizes a scan rebuilt for the valid bytes it found. */
  private adoptScan(result: SegmentScan, rebuilt: LogSegment): void {
    this.offsetIndex = rebuilt.offsetIndex;
    this.timeIndex = rebuilt.timeIndex;
    this.bytesSinceLastIndexEntry = rebuilt.bytesSinceLastIndexEntry;
    this.maxTimestampSoFar = result.maxTimestamp;
    if (this.rollStartMs < 0) this.rollStartMs = rebuilt.rollStartMs;
    this.sizeBytes = result.validBytes;
    this.nextOffset = result.nextOffset;
    this.maxTimestamp = result.maxTimestamp;
  }

  /**
   * Looks for a valid batch starting after `position` whose base offset is at least
   * `minimumOffset`: evidence that the bytes at `position` are damage in the middle of the log
   * rather than a torn tail. Returns its position, or -1.
   */
  async findValidBatchAfter(position: number, minimumOffset: number): Promise<number> {
    const fd = await this.fileDescriptor();
    return findValidBatchAfter(this.fs, fd, await this.fs.fileSize(fd), position, minimumOffset);
  }

  /** Cuts the log at `position` (a batch boundary found by `scan`) and fsyncs it. */
  async truncateTo(position: number): Promise<void> {
    const fd = await this.fileDescriptor();
    this.tail?.clear();
    await this.fs.ftruncate(fd, position);
    await this.fs.fdatasync(fd);
    this.sizeBytes = position;
    this.direct?.noteTruncated();
  }

  // -------------------------------------------------------------------------------------------
  // Sealing and closing.

  /**
   * Adds the final time index entry and writes both indexes to disk durably. The writer calls
   * it when no append can run (roll, clean close), so an index a read found wrong is rebuilt
   * here first.
   */
  async writeIndexes(): Promise<void> {
    await this.loadIndexes();
    if (this.indexUntrusted) await this.rebuildUntrustedIndex();
    await this.sealAndWriteIndexFiles(this.offsetIndex!, this.timeIndex!);
  }

  /** Adds the time index's final entry (the segment's largest timestamp), then writes both index files durably. */
  private async sealAndWriteIndexFiles(offsetIndex: OffsetIndex, timeIndex: TimeIndex): Promise<void> {
    timeIndex.seal(this.maxTimestamp, this.nextOffset);
    await this.fs.writeFileDurably(this.indexPath, indexFileBytes(offsetIndex.contents()));
    await this.fs.writeFileDurably(this.timeIndexPath, indexFileBytes(timeIndex.contents()));
  }

  /** fdatasyncs the log, first cutting any zero padding direct writes left past its end. */
  async flush(): Promise<void> {
    if (this.fd === null) return;
    await this.direct?.trimPadding(this.fd, this.sizeBytes);
    await this.fs.fdatasync(this.fd);
  }

  /** Closes the direct-write descriptor of a segment no longer written (sealed). */
  async closeDirectWriter(): Promise<void> {
    const direct = this.direct;
    this.direct = null;
    await direct?.close();
  }

  /** Closes the segment's files once no read holds it (reads under way finish first). */
  async close(): Promise<void> {
    this.tail?.clear();
    await this.closeDirectWriter();
    await this.whenUnread();
    this.options.indexCache?.forget(this);
    const fd = this.fd ?? (this.opening ? await this.opening.catch(() => null) : null);
    this.fd = null;
    this.opening = null;
    if (fd !== null) await this.fs.close(fd);
  }

  /**
   * The first step of removing the segment: renames the log to `.deleted`, so that a crash from
   * here on cannot bring it back (the next start removes such files). When the rename fails,
   * the segment is as it was.
   */
  async renameForDeletion(): Promise<void> {
    if (this.deleted) return; // renamed by a pass that failed after it (its directory sync)
    this.deleted = true; // a read that opens the log meanwhile looks for it by its new name too
    this.tail?.clear();
    try {
      await this.fs.rename(this.logPath, this.logPath + DELETED_SUFFIX);
    } catch (error) {
      this.deleted = false;
      throw error;
    }
  }

  /**
   * The second step, after `renameForDeletion`: once no read holds the segment, closes it and
   * unlinks its files. The caller fsyncs the directory.
   */
  async removeFiles(): Promise<void> {
    await this.close();
    await Promise.all([this.fs.unlink(this.logPath + DELETED_SUFFIX), this.fs.unlink(this.indexPath), this.fs.unlink(this.timeIndexPath)]);
  }
}

/**
 * When a segment whose first batch is at `position` started to fill, as its bytes tell after a
 * restart (while the broker runs, its clock at the first append is used): for a log-append-time
 * batch the broker's append time, which it stamped as the max timestamp (the base timestamp is
 * the producer's and unchecked), else the producer's base timestamp. The partition log takes no
 * later than its clock at the open (`PartitionLog.open`).
 */
function rollStartOf(buffer: Buffer, position: number): number {
  return readAttributes(buffer, position) & TIMESTAMP_TYPE_MASK ? readMaxTimestamp(buffer, position) : readBaseTimestamp(buffer, position);
}

/** The index pointed at a position where the expected batch does not start. */
class IndexMismatch extends Error {}

export function corruptionError(file: string, position: number, problem: string): StrataError {
  return new StrataError(ErrorCode.PARTITION_FENCED, `corrupt record batch in ${file} at byte ${position}: ${problem}`);
}

/**
 * Walks the batches of the log open at `fd` from `start` (a batch boundary) to `end`, reading
 * `SCAN_CHUNK_BYTES` at a time (more for a larger batch), checks each one's frame and CRC, and
 * hands it to `visit` with its position in the file. Stops at the first batch that fails the
 * checks or that `visit` refuses (by returning what is wrong). Returns where the last valid batch
 * ends and the problem met there, or null when every byte up to `end` was valid.
 */
async function walkBatches(
  fs: FileSystem,
  fd: number,
  start: number,
  end: number,
  visit: (buffer: Buffer, cursor: number, position: number) => string | null,
): Promise<{ validEnd: number; problem: string | null }> {
  let buffer = Buffer.allocUnsafe(Math.min(SCAN_CHUNK_BYTES, Math.max(end - start, LOG_OVERHEAD)));
  let position = start;
  while (position < end) {
    const wanted = Math.min(buffer.length, end - position);
    const bytes = await readFully(fs, fd, buffer, 0, wanted, position);
    if (bytes === 0) return { validEnd: position, problem: 'the file shrank during the scan' };
    // Fewer bytes than wanted: the file shrank, and these are the last (reading on would loop).
    const reachesEnd = position + bytes >= end || bytes < wanted;
    let cursor = 0;
    for (;;) {
      const left = bytes - cursor;
      if (left < LOG_OVERHEAD) {
        if (reachesEnd && left > 0) return { validEnd: position + cursor, problem: `${left} stray bytes at the end of the file` };
        break;
      }
      const size = readBatchSize(buffer, cursor);
      if (size >= BATCH_HEADER_BYTES && size <= BATCH_BYTES_MAX && size > left && !reachesEnd) {
        if (size > buffer.length) buffer = Buffer.allocUnsafe(size);
        break; // the batch continues past this chunk: read on from its start
      }
      const problem = checkBatchFrame(buffer, cursor, bytes) ?? visit(buffer, cursor, position + cursor);
      if (problem !== null) return { validEnd: position + cursor, problem };
      cursor += size;
    }
    position += cursor;
  }
  return { validEnd: position, problem: null };
}

/**
 * The first valid batch starting after `position` in the file open at `fd` (of `fileBytes`)
 * whose base offset is at least `minimumOffset`: its position, or -1. Reads the file a few MiB
 * at a time.
 */
export async function findValidBatchAfter(fs: FileSystem, fd: number, fileBytes: number, position: number, minimumOffset: number): Promise<number> {
  const readChunk = async (at: number, length: number): Promise<Buffer> => {
    const buffer = Buffer.allocUnsafe(Math.max(0, length));
    return buffer.subarray(0, await readFully(fs, fd, buffer, 0, buffer.length, at));
  };
  let windowStart = position + 1;
  while (windowStart + BATCH_HEADER_BYTES <= fileBytes) {
    const window = await readChunk(windowStart, Math.min(RESYNC_CHUNK_BYTES, fileBytes - windowStart));
    if (window.length < BATCH_HEADER_BYTES) break; // the file got shorter than `fileBytes` meanwhile
    const lastCandidate = window.length - BATCH_HEADER_BYTES;
    for (let cursor = 0; cursor <= lastCandidate; cursor++) {
      if (window[cursor + MAGIC_OFFSET] !== CURRENT_MAGIC) continue;
      const size = readBatchSize(window, cursor);
      if (size < BATCH_HEADER_BYTES || size > BATCH_BYTES_MAX || windowStart + cursor + size > fileBytes) continue;
      let candidate = window;
      let candidateCursor = cursor;
      if (cursor + size > window.length) {
        candidate = await readChunk(windowStart + cursor, size);
        candidateCursor = 0;
      }
      if (checkBatchFrame(candidate, candidateCursor, candidate.length) === null && readBaseOffset(candidate, candidateCursor) >= minimumOffset) {
        return windowStart + cursor;
      }
    }
    windowStart += lastCandidate + 1;
  }
  return -1;
}
