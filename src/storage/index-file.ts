/**
 * The common part of the two index files: an array of fixed-width entries kept in memory and
 * written to disk whole when a segment is sealed or the log closes cleanly.
 *
 * Why in memory: the active segment's index changes on every few KiB of appends, and writing it
 * on every append would double the syscalls of the hot path. The indexes are derived data, so
 * they are not checksummed: after an unclean stop the active segment's indexes are rebuilt from
 * its log, and a sealed segment's index is sanity-checked on load (size, order, bounds) and
 * rebuilt when the check fails. A read that lands on a position where no valid batch starts also
 * triggers a rebuild, so a damaged index can slow a read but never return wrong data.
 *
 * Memory is bounded by `maxEntries` (from `segment.index.bytes`); a full index rolls the segment.
 */
import { assert } from '../common/assert.js';

const INITIAL_CAPACITY_ENTRIES = 64;

export abstract class IndexFile {
  private entries: Buffer;
  private count = 0;

  protected constructor(
    readonly entryBytes: number,
    private entriesMax: number,
    contents?: Buffer,
  ) {
    if (contents !== undefined) {
      assert(contents.length % entryBytes === 0, 'index contents must be whole entries');
      this.entries = Buffer.from(contents);
      this.count = contents.length / entryBytes;
    } else {
      this.entries = Buffer.allocUnsafe(Math.min(entriesMax, INITIAL_CAPACITY_ENTRIES) * entryBytes);
    }
  }

  get entryCount(): number {
    return this.count;
  }

  /** Memory the entries take, room for more included. */
  get memoryBytes(): number {
    return this.entries.length;
  }

  /** Entries the index may hold (besides a closing entry). */
  get maxEntries(): number {
    return this.entriesMax;
  }

  /**
   * Lowers the bound to `maxEntries`, or to the entries already held when there are more: an
   * index rebuilt with room for a segment written under roomier settings then counts as full.
   */
  limitTo(maxEntries: number): void {
    this.entriesMax = Math.max(this.count, Math.min(this.entriesMax, maxEntries));
  }

  isFull(): boolean {
    return this.count >= this.maxEntries;
  }

  /** The entries as they are written to the file. A view: copy before keeping it. */
  contents(): Buffer {
    return this.entries.subarray(0, this.count * this.entryBytes);
  }

  /** Gives back the room for entries not used (for an index that takes no more). */
  shrinkToEntries(): void {
    const used = this.count * this.entryBytes;
    if (this.entries.length > used) this.entries = Buffer.from(this.entries.subarray(0, used));
  }

  truncateToEntries(count: number): void {
    assert(count >= 0 && count <= this.count, () => `cannot truncate ${this.count} entries to ${count}`);
    this.count = count;
  }

  /**
   * Reserves the slot of a new entry and returns its byte position in `buffer()`. `final`
   * allows one entry beyond `maxEntries`: the closing entry written when a segment is sealed.
   */
  protected appendSlot(final = false): number {
    assert(final ? this.count <= this.maxEntries : !this.isFull(), 'append to a full index');
    const needed = (this.count + 1) * this.entryBytes;
    if (needed > this.entries.length) {
      const capacity = Math.min(this.maxEntries + 1, Math.max(this.count * 2, INITIAL_CAPACITY_ENTRIES));
      const grown = Buffer.allocUnsafe(capacity * this.entryBytes);
      this.entries.copy(grown, 0, 0, this.count * this.entryBytes);
      this.entries = grown;
    }
    return this.count++ * this.entryBytes;
  }

  protected buffer(): Buffer {
    return this.entries;
  }

  /**
   * Binary search: the largest entry index whose key is <= `target` (`strict`: < `target`), or
   * -1 when there is none. Keys must be non-decreasing, which `sanityCheck` guarantees.
   */
  protected floorEntry(target: number, keyAt: (entry: number) => number, strict: boolean): number {
    let low = 0;
    let high = this.count - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const key = keyAt(middle);
      if (key < target || (!strict && key === target)) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }
}
