/**
 * A bounded memory cache of the newest bytes of each segment's log, for the readers that follow
 * the head of a partition.
 *
 * Why: direct writes (`direct-writer.ts`) bypass the page cache, so without this a consumer
 * tailing a busy partition would read from the disk what was written a few milliseconds
 * earlier. Buffered writes leave the bytes in the page cache, but each read still costs a
 * `pread` through libuv's thread pool; a read served from here is a memory copy on the event
 * loop. Redpanda keeps a batch cache beside its direct writes for the same reason.
 *
 * Layout: one ring of `bytesMax` bytes, shared by all partitions, allocated once at start-up. Each written group is copied into the ring as one chunk, after the previous
 * chunk; a chunk that does not fit before the end of the ring starts again at its beginning.
 * Chunks leave in the order they came, so the memory a new chunk needs is always that of the
 * oldest ones. Each segment has a `SegmentTail`: the contiguous byte range [start, end) of its
 * log that the ring holds, `end` being where its last write ended. A write that does not
 * continue at `end` (the tail was cleared, or the segment was opened with bytes already on
 * disk) starts the range afresh, and evicting the oldest chunk of the ring always evicts the
 * first chunk of its segment's tail, so every tail stays contiguous.
 *
 * Why a ring and a copy: keeping the written request buffers themselves would save the copy,
 * but it holds tens of megabytes of short-lived allocations for V8 to track and the allocator
 * to replace with fresh pages; measured with 1 KiB records and direct writes, that cost a
 * fifth of the produce throughput. The ring's pages are touched once and reused; the copy
 * costs a few percent of one core at 500 MB/s.
 *
 * Correctness: the bytes are those the writer wrote, after offsets were assigned; reads check
 * CRCs on them exactly as on bytes read from the file. A tail is cleared when its segment is
 * truncated, closed or deleted, so nothing cut from the file is read from memory. Reads copy
 * out synchronously, so a chunk cannot be overwritten while it is being read.
 */
import { constants as bufferConstants } from 'node:buffer';

/**
 * The broker's default bound. A consumer keeping up reads what was written a few milliseconds
 * ago: at 500 MB/s, 16 MiB is the last 30 ms of one partition's writes.
 */
export const DEFAULT_TAIL_CACHE_BYTES = 16 * 1024 * 1024;

/** The largest ring: 4 GiB, or less where Node.js cannot allocate a Buffer that large. */
export const TAIL_CACHE_BYTES_MAX = Math.min(4 * 1024 * 1024 * 1024, bufferConstants.MAX_LENGTH);

/** Of a group larger than this share of the ring only the last part is cached (a whole one would evict everything). */
const CHUNK_SHARE_MAX = 0.25;
/** Consumed queue entries are dropped once at least this many and half the queue. */
const COMPACT_MIN = 1024;

export class TailCache {
  /** Bytes of log held for reads (chunks of cleared tails not counted). */
  bytes = 0;
  /** Segment reads served from memory, and those that went to the file (counted by readers). */
  hits = 0;
  misses = 0;
  private readonly ring: Buffer;
  /** Where the next chunk goes. */
  private writePosition = 0;
  // The chunks in the ring, oldest first, as parallel arrays from `head`.
  private chunkTails: (SegmentTail | null)[] = [];
  private chunkGenerations: number[] = [];
  private chunkStarts: number[] = [];
  private chunkLengths: number[] = [];
  private head = 0;

  /**
   * `bytesMax` 0 caches nothing. The ring is allocated here, so a size the process cannot
   * address fails at start-up, never in the middle of a write. Its pages count towards RSS once
   * written (with Linux's overcommit, memory the machine lacks shows only then).
   */
  constructor(readonly bytesMax: number) {
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 0 || bytesMax > TAIL_CACHE_BYTES_MAX) {
      throw new RangeError(`tail cache size must be a whole number of bytes from 0 to ${TAIL_CACHE_BYTES_MAX}, got ${bytesMax}`);
    }
    this.ring = Buffer.allocUnsafeSlow(bytesMax);
  }

  /** A new, empty tail for one segment. */
  tail(): SegmentTail {
    return new SegmentTail(this);
  }

  /** Most bytes of one group a tail caches. */
  get chunkBytesMax(): number {
    return Math.floor(this.bytesMax * CHUNK_SHARE_MAX);
  }

  /**
   * @internal Copies `length` bytes of `buffers`, after the first `skip`, into the ring as the
   * newest chunk of `tail`, evicting the oldest chunks to make room; returns the chunk's
   * position in the ring.
   */
  store(tail: SegmentTail, buffers: readonly Buffer[], skip: number, length: number): number {
    const ring = this.ring;
    if (this.writePosition + length > ring.length) {
      // Skip the end of the ring: what lies there is the oldest data (the previous lap).
      while (this.head < this.chunkStarts.length && this.chunkStarts[this.head]! >= this.writePosition) this.evictOldest();
      this.writePosition = 0;
    }
    const start = this.writePosition;
    const end = start + length;
    while (this.head < this.chunkStarts.length) {
      const oldestStart = this.chunkStarts[this.head]!;
      // Chunks of this lap sit below `start`, so an overlap means an older lap's chunk.
      if (oldestStart >= end || oldestStart + this.chunkLengths[this.head]! <= start) break;
      this.evictOldest();
    }
    let at = start;
    let skipLeft = skip;
    for (const buffer of buffers) {
      if (skipLeft >= buffer.length) {
        skipLeft -= buffer.length;
        continue;
      }
      at += buffer.copy(ring, at, skipLeft);
      skipLeft = 0;
    }
    this.writePosition = end;
    this.chunkTails.push(tail);
    this.chunkGenerations.push(tail.generation);
    this.chunkStarts.push(start);
    this.chunkLengths.push(length);
    this.bytes += length;
    return start;
  }

  /** @internal Copies ring bytes [ringStart, ringStart + length) into `target`. */
  copyOut(ringStart: number, length: number, target: Buffer, targetStart: number): void {
    this.ring.copy(target, targetStart, ringStart, ringStart + length);
  }

  /** @internal A tail let go of chunks holding `length` bytes. */
  released(length: number): void {
    this.bytes -= length;
  }

  private evictOldest(): void {
    const tail = this.chunkTails[this.head]!;
    // A tail cleared since has already given its bytes back.
    if (tail !== null && this.chunkGenerations[this.head] === tail.generation) tail.dropFirst();
    this.chunkTails[this.head] = null;
    this.head++;
    if (this.head === this.chunkStarts.length) {
      this.chunkTails = [];
      this.chunkGenerations = [];
      this.chunkStarts = [];
      this.chunkLengths = [];
      this.head = 0;
    } else if (this.head >= COMPACT_MIN && this.head * 2 >= this.chunkStarts.length) {
      this.chunkTails = this.chunkTails.slice(this.head);
      this.chunkGenerations = this.chunkGenerations.slice(this.head);
      this.chunkStarts = this.chunkStarts.slice(this.head);
      this.chunkLengths = this.chunkLengths.slice(this.head);
      this.head = 0;
    }
  }
}

export class SegmentTail {
  /** File position of the first cached byte; equals `end` when nothing is cached. */
  start = 0;
  /** File position just past the last cached byte. */
  end = 0;
  /** Bumped by `clear`, so the ring's entries for earlier chunks are skipped. */
  generation = 0;
  // This tail's chunks in file order, as parallel arrays from `head`.
  private filePositions: number[] = [];
  private ringStarts: number[] = [];
  private lengths: number[] = [];
  private head = 0;

  constructor(private readonly cache: TailCache) {}

  /**
   * Records that `buffers` (`length` bytes) were written contiguously at file position
   * `position`. Of a group larger than the cache's chunk bound only the last part is kept, the
   * part tailing readers want: the range then starts inside the group.
   */
  written(position: number, buffers: readonly Buffer[], length: number): void {
    if (this.cache.bytesMax === 0 || length === 0) return;
    const skip = Math.max(0, length - this.cache.chunkBytesMax);
    if (position !== this.end || skip > 0) this.restartAt(position + skip);
    const ringStart = this.cache.store(this, buffers, skip, length - skip);
    this.filePositions.push(position + skip);
    this.ringStarts.push(ringStart);
    this.lengths.push(length - skip);
    this.end = position + length;
  }

  /** Whether file bytes [position, position + length) are all cached. */
  covers(position: number, length: number): boolean {
    return position >= this.start && position + length <= this.end;
  }

  /** Copies cached file bytes [position, position + length) into `target` at `targetStart`. */
  readInto(position: number, length: number, target: Buffer, targetStart: number): void {
    if (!this.covers(position, length)) throw new RangeError(`bytes ${position} to ${position + length} are not all cached (cached: ${this.start} to ${this.end})`);
    let index = this.chunkAt(position);
    let at = targetStart;
    let from = position - this.filePositions[index]!;
    let left = length;
    while (left > 0) {
      const count = Math.min(left, this.lengths[index]! - from);
      this.cache.copyOut(this.ringStarts[index]! + from, count, target, at);
      at += count;
      left -= count;
      from = 0;
      index++;
    }
  }

  /** Forgets everything (the segment was truncated, closed or deleted). */
  clear(): void {
    let length = 0;
    for (let index = this.head; index < this.lengths.length; index++) length += this.lengths[index]!;
    if (length > 0) this.cache.released(length);
    this.filePositions = [];
    this.ringStarts = [];
    this.lengths = [];
    this.head = 0;
    this.start = this.end;
    this.generation++;
  }

  /** @internal Evicts this tail's first chunk (the ring evicts oldest first). */
  dropFirst(): void {
    if (this.head >= this.lengths.length) return;
    const length = this.lengths[this.head]!;
    this.cache.released(length);
    this.start = this.filePositions[this.head]! + length;
    this.head++;
    if (this.head === this.lengths.length) {
      this.filePositions = [];
      this.ringStarts = [];
      this.lengths = [];
      this.head = 0;
    } else if (this.head >= COMPACT_MIN && this.head * 2 >= this.lengths.length) {
      this.filePositions = this.filePositions.slice(this.head);
      this.ringStarts = this.ringStarts.slice(this.head);
      this.lengths = this.lengths.slice(this.head);
      this.head = 0;
    }
  }

  private restartAt(position: number): void {
    this.clear();
    this.start = position;
    this.end = position;
  }

  /** Index of the chunk holding file position `position` (start <= position < end). */
  private chunkAt(position: number): number {
    let low = this.head;
    let high = this.lengths.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.filePositions[middle]! <= position) low = middle;
      else high = middle - 1;
    }
    return low;
  }
}
