/**
 * The common part of the two index files: an array of fixed-width entries kept in memory and
 * written to disk whole when a segment is sealed or the log closes cleanly.
 *
 * Why in memory: the active segment's index changes on every few KiB of appends, and writing it
 * on every append would double the syscalls of the hot path. After an unclean stop the active
 * segment's indexes are rebuilt from its log. A file ends with a trailer (a format mark and the
 * CRC32C of the entries), and a sealed segment's index is checked on load against it and for
 * sense (order, bounds), and rebuilt when either check fails: without the checksum, a flipped
 * time-index entry that stays in order would send a timestamp search past its records, or let
 * retention by time delete the segment early. A read that lands on a position where no valid
 * batch starts also triggers a rebuild, so a damaged index can slow a read but never return
 * wrong data.
 *
 * Memory is bounded by `maxEntries` (from `segment.index.bytes`); a full index rolls the segment.
 */
import { crc32c } from '@node-rs/crc32';
import { assert } from '../common/assert.js';

/** The trailer every index file ends with: `INDEX_FILE_MARK`, then the CRC32C of the entries (both uint32). */
export const INDEX_TRAILER_BYTES = 8;
/** "SIX1": a Strata index file, version 1 (files from before the trailer lack it and are rebuilt). */
const INDEX_FILE_MARK = 0x53495831;

/** The file an index's entries are written as: the entries, then the trailer. */
export function indexFileBytes(entries: Buffer): Buffer {
  const file = Buffer.allocUnsafe(entries.length + INDEX_TRAILER_BYTES);
  entries.copy(file, 0);
  file.writeUInt32BE(INDEX_FILE_MARK, entries.length);
  file.writeUInt32BE(crc32c(entries), entries.length + 4);
  return file;
}

/** The entries of an index file read back (a view), or what is wrong with it. */
export function indexFileEntries(file: Buffer, entryBytes: number): Buffer | string {
  const length = file.length - INDEX_TRAILER_BYTES;
  if (length < 0 || file.readUInt32BE(length) !== INDEX_FILE_MARK) return 'index file lacks its checksum trailer (damaged, or written by a version before it)';
  if (length % entryBytes !== 0) return 'index file size is not a whole number of entries';
  const entries = file.subarray(0, length);
  if (crc32c(entries) !== file.readUInt32BE(length + 4)) return 'index file checksum does not match its entries';
  return entries;
}

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
