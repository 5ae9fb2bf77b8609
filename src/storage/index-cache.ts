/**
 * A bound on the memory that sealed segments' indexes take, shared by all partitions.
 *
 * Why: a sealed segment's `.index` and `.timeindex` are read into memory the first time a read,
 * a lookup by time or a retention pass needs them (see `segment.ts`). Without a bound they
 * stay there until the segment is deleted, so a consumer replaying a long history would leave
 * the broker holding the indexes of every segment it passed: about 5 MiB per GiB of small
 * batches under the default `index.interval.bytes`. Kafka maps its index files into memory,
 * where the page cache holds them and can drop them; here they are heap buffers, so the broker
 * drops them itself.
 *
 * How: the segments whose indexes are loaded, least recently used first. Each use moves a
 * segment to the end; when the total is over `bytesMax`, the least recently used segments are
 * asked to unload (`unloadIndexes`) until it is not. A segment that a read holds, or whose
 * indexes are being loaded or rebuilt, refuses and stays, so the bound can be exceeded while
 * that many are in use at once. An unloaded segment reads its index files again on its next use.
 * The active segment of each partition is never here: its indexes change with every append and
 * are on disk only once it is sealed.
 */

/** A segment whose loaded indexes the cache may ask to drop. */
export interface UnloadableIndexes {
  /** Drops the indexes unless something uses them now; returns whether it did. */
  unloadIndexes(): boolean;
}

/** The broker's default bound: the indexes of about 25 full segments of small batches. */
export const DEFAULT_INDEX_CACHE_BYTES = 128 * 1024 * 1024;

export class IndexCache {
  /** Bytes held per segment; a Map keeps insertion order, so the first entry is the least recently used. */
  private readonly held = new Map<UnloadableIndexes, number>();
  private heldBytes = 0;
  /** Segments whose indexes were loaded, and unloaded under the bound, since start (for metrics). */
  loads = 0;
  unloads = 0;

  constructor(readonly bytesMax: number) {
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 0) throw new RangeError(`index cache size must be a whole number of bytes, 0 or more, got ${bytesMax}`);
  }

  /** Bytes of sealed segments' indexes in memory. */
  get bytes(): number {
    return this.heldBytes;
  }

  /** Sealed segments whose indexes are in memory. */
  get segments(): number {
    return this.held.size;
  }

  /**
   * Records a use of `segment`'s loaded indexes (`bytes` of memory), then unloads the least
   * recently used others while over the bound. `loaded`: they were just read from disk.
   */
  used(segment: UnloadableIndexes, bytes: number, loaded: boolean): void {
    const before = this.held.get(segment);
    if (before !== undefined) {
      this.held.delete(segment);
      this.heldBytes -= before;
    }
    this.held.set(segment, bytes);
    this.heldBytes += bytes;
    if (loaded) this.loads++;
    if (this.heldBytes > this.bytesMax) this.unloadLeastRecent(segment);
  }

  /** Stops counting `segment` (closed, deleted, or its indexes dropped by other means). */
  forget(segment: UnloadableIndexes): void {
    const bytes = this.held.get(segment);
    if (bytes === undefined) return;
    this.held.delete(segment);
    this.heldBytes -= bytes;
  }

  private unloadLeastRecent(keep: UnloadableIndexes): void {
    // Deleting the entry being visited is safe in a Map iteration.
    for (const [segment, bytes] of this.held) {
      if (this.heldBytes <= this.bytesMax) return;
      if (segment === keep || !segment.unloadIndexes()) continue;
      this.held.delete(segment);
      this.heldBytes -= bytes;
      this.unloads++;
    }
  }
}
