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
 * Layout: one ring of `bytesMax` bytes, shared by all partitions, allocated once at start-up.
 * Each written group is copied into the ring as one chunk, after the previous chunk; a chunk
 * that does not fit before the end of the ring starts again at its beginning. Of a group
 * larger than a quarter of the ring only its last quarter-ring of bytes is kept.
 * Chunks leave in the order they came, so the memory a new chunk needs is always that of the
 * oldest ones. Each segment has a `SegmentTail`: the contiguous byte range [start, end) of its
 * log that the ring holds, `end` being where its last write ended. A write that does not
 * continue at `end` (the tail was cleared, or the segment was opened with bytes already on
 * disk) starts the range afresh, and evicting the oldest chunk of the ring always evicts the
 * first chunk of its segment's tail, so every tail stays contiguous. A chunk object sits in
 * two queues: the ring's (all segments, write order) and its segment's (file order).
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
import { FifoQueue } from '../common/fifo-queue.js';
import { copyRange } from './buffer-run.js';

/**
 * The broker's default bound. A consumer keeping up reads what was written a few milliseconds
 * ago: at 500 MB/s, 16 MiB is the last 30 ms of one partition's writes.
 */
export const DEFAULT_TAIL_CACHE_BYTES = 16 * 1024 * 1024;

/** The largest ring: 4 GiB, or less where Node.js cannot allocate a Buffer that large. */
export const TAIL_CACHE_BYTES_MAX = Math.min(4 * 1024 * 1024 * 1024, bufferConstants.MAX_LENGTH);

/** Of a group larger than this share of the ring only the last part is cached. */
const CHUNK_SHARE_MAX = 0.25;

/** One cached group: where its bytes lie in the file and in the ring. In both queues at once. */
interface Chunk {
  tail: SegmentTail;
  /** The tail's generation when stored; a `clear` since makes the chunk dead. */
  generation: number;
  filePosition: number;
  ringStart: number;
  length: number;
}

export class TailCache {
  /** Bytes of log held for reads (chunks of cleared tails not counted). */
  bytes = 0;
  /** Segment reads served from memory, and those that went to the file (counted by readers). */
  hits = 0;
  misses = 0;
  private readonly ring: Buffer;
  /** Where the next chunk goes. */
  private writePosition = 0;
  /** Every chunk in the ring, dead ones too (they still take room), oldest first. */
  private readonly chunks = new FifoQueue<Chunk>();

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

  /** Chunks in the ring, dead ones (of cleared tails) included. */
  get chunkCount(): number {
    return this.chunks.length;
  }

  /** Most bytes of one group a tail caches. */
  get chunkBytesMax(): number {
    return Math.floor(this.bytesMax * CHUNK_SHARE_MAX);
  }

  /**
   * @internal Copies `length` bytes of `buffers`, after the first `skip`, into the ring as the
   * newest chunk of `tail` (at file position `filePosition`), evicting the oldest chunks to
   * make room.
   */
  store(tail: SegmentTail, buffers: readonly Buffer[], skip: number, length: number, filePosition: number): Chunk {
    if (this.writePosition + length > this.ring.length) {
      // Skip the end of the ring: what lies there is the oldest data (the previous lap).
      while (this.chunks.length > 0 && this.chunks.peek()!.ringStart >= this.writePosition) this.evictOldest();
      this.writePosition = 0;
    }
    const start = this.writePosition;
    const end = start + length;
    for (let oldest = this.chunks.peek(); oldest !== undefined; oldest = this.chunks.peek()) {
      // Chunks of this lap sit below `start`, so an overlap means an older lap's chunk.
      if (oldest.ringStart >= end || oldest.ringStart + oldest.length <= start) break;
      this.evictOldest();
    }
    copyRange(buffers, skip, length, this.ring, start);
    this.writePosition = end;
    const chunk: Chunk = { tail, generation: tail.generation, filePosition, ringStart: start, length };
    this.chunks.push(chunk);
    this.bytes += length;
    return chunk;
  }

  /** @internal Copies ring bytes [ringStart, ringStart + length) into `target`. */
  copyOut(ringStart: number, length: number, target: Buffer, targetStart: number): void {
    this.ring.copy(target, targetStart, ringStart, ringStart + length);
  }

  /** @internal A tail let go of `length` cached bytes. */
  released(length: number): void {
    this.bytes -= length;
  }

  private evictOldest(): void {
    const chunk = this.chunks.shift()!;
    // A tail cleared since has already given its bytes back.
    if (chunk.generation === chunk.tail.generation) chunk.tail.dropFirst();
  }
}

export class SegmentTail {
  /** File position of the first cached byte; equals `end` when nothing is cached. */
  start = 0;
  /** File position just past the last cached byte. */
  end = 0;
  /** Bumped by `clear`, so the ring's entries for earlier chunks are skipped. */
  generation = 0;
  /** This tail's live chunks in file order (the same objects as in the ring's queue). */
  private chunks = new FifoQueue<Chunk>();

  constructor(private readonly cache: TailCache) {}

  /**
   * Records that `buffers` (`length` bytes) were written contiguously at file position
   * `position`. Of a group larger than the cache's chunk bound only the last part is kept, the
   * part tailing readers want: the range then starts inside the group.
   */
  written(position: number, buffers: readonly Buffer[], length: number): void {
    // A cache under 4 bytes holds no chunk at all (its bound rounds down to 0): as good as off.
    if (this.cache.chunkBytesMax === 0 || length === 0) return;
    const skip = Math.max(0, length - this.cache.chunkBytesMax);
    if (position !== this.end || skip > 0) this.restartAt(position + skip);
    this.chunks.push(this.cache.store(this, buffers, skip, length - skip, position + skip));
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
    let left = length;
    for (let from = position - this.chunks.at(index)!.filePosition; left > 0; from = 0) {
      const chunk = this.chunks.at(index++)!;
      const count = Math.min(left, chunk.length - from);
      this.cache.copyOut(chunk.ringStart + from, count, target, at);
      at += count;
      left -= count;
    }
  }

  /** Forgets everything (the segment was truncated, closed or deleted). */
  clear(): void {
    // The cached range is contiguous, so its size is end - start.
    this.cache.released(this.end - this.start);
    this.chunks = new FifoQueue<Chunk>();
    this.start = this.end;
    this.generation++;
  }

  /** @internal Evicts this tail's first chunk (the ring evicts oldest first). */
  dropFirst(): void {
    const chunk = this.chunks.shift();
    if (chunk === undefined) return;
    this.cache.released(chunk.length);
    this.start = chunk.filePosition + chunk.length;
  }

  private restartAt(position: number): void {
    this.clear();
    this.start = position;
    this.end = position;
  }

  /** Index (from the oldest) of the chunk holding file position `position` (start <= position < end). */
  private chunkAt(position: number): number {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.chunks.at(middle)!.filePosition <= position) low = middle;
      else high = middle - 1;
    }
    return low;
  }
}
