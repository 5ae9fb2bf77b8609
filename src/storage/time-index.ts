/**
 * The time index (`.timeindex`): finds where to start looking for the first record at or after
 * a timestamp.
 *
 * Entry (12 bytes, big-endian): timestamp int64, relativeOffset uint32. An entry (T, o) promises
 * that every record of the segment with an offset below o has a timestamp <= T: T is the maximum
 * timestamp seen before the batch at o. Entries are added alongside offset-index entries, only
 * when T grows, so timestamps strictly increase and a binary search works. When a segment is
 * sealed a closing entry (maxTimestamp, nextOffset) ends the index (see `seal`), so the segment's
 * largest timestamp is known after a restart without scanning its log, and an index that lost
 * its tail is recognised and rebuilt.
 *
 * Lookup(t): the last entry with T < t says the answer is at offset o or later; the caller scans
 * the log from there for the first record with timestamp >= t.
 */
import { IndexFile } from './index-file.js';

export const TIME_INDEX_ENTRY_BYTES = 12;

export class TimeIndex extends IndexFile {
  constructor(
    readonly baseOffset: number,
    maxEntries: number,
    contents?: Buffer,
  ) {
    super(TIME_INDEX_ENTRY_BYTES, maxEntries, contents);
  }

  timestampAt(entry: number): number {
    const high = this.buffer().readInt32BE(entry * TIME_INDEX_ENTRY_BYTES);
    const low = this.buffer().readUInt32BE(entry * TIME_INDEX_ENTRY_BYTES + 4);
    return high * 0x1_0000_0000 + low;
  }

  relativeOffsetAt(entry: number): number {
    return this.buffer().readUInt32BE(entry * TIME_INDEX_ENTRY_BYTES + 8);
  }

  lastTimestamp(): number {
    return this.entryCount === 0 ? -1 : this.timestampAt(this.entryCount - 1);
  }

  /** Adds (timestamp, offset) if the timestamp is larger than the last entry's. */
  maybeAppend(timestamp: number, offset: number): void {
    if (timestamp <= this.lastTimestamp() || this.isFull()) return;
    this.writeEntry(this.appendSlot(), timestamp, offset);
  }

  /**
   * Writes the closing entry (maxTimestamp, nextOffset) of a sealed segment. It always ends the
   * index, so a load can tell a complete index from one that lost entries: when the last entry
   * already holds maxTimestamp its offset is moved to nextOffset (still a true promise, as no
   * record of the segment is newer than maxTimestamp).
   */
  seal(maxTimestamp: number, nextOffset: number): void {
    if (maxTimestamp < 0) return;
    const last = this.entryCount - 1;
    if (last >= 0 && this.timestampAt(last) >= maxTimestamp) {
      this.buffer().writeUInt32BE(nextOffset - this.baseOffset, last * TIME_INDEX_ENTRY_BYTES + 8);
    } else {
      this.writeEntry(this.appendSlot(true), maxTimestamp, nextOffset);
    }
  }

  /** Whether the index ends with the closing entry written by `seal` for `nextOffset`. */
  isSealedAt(nextOffset: number): boolean {
    return this.entryCount > 0 && this.baseOffset + this.relativeOffsetAt(this.entryCount - 1) === nextOffset;
  }

  private writeEntry(slot: number, timestamp: number, offset: number): void {
    const high = Math.floor(timestamp / 0x1_0000_0000);
    this.buffer().writeInt32BE(high, slot);
    this.buffer().writeUInt32BE(timestamp - high * 0x1_0000_0000, slot + 4);
    this.buffer().writeUInt32BE(offset - this.baseOffset, slot + 8);
  }

  /** The offset to start scanning from for the first record with timestamp >= `timestamp`. */
  lookup(timestamp: number): number {
    const entry = this.floorEntry(timestamp, (index) => this.timestampAt(index), true);
    return entry < 0 ? this.baseOffset : this.baseOffset + this.relativeOffsetAt(entry);
  }

  /** Drops entries whose offset is above `offset` (used when the log is truncated). */
  truncateToOffset(offset: number): void {
    let keep = this.entryCount;
    while (keep > 0 && this.baseOffset + this.relativeOffsetAt(keep - 1) > offset) keep--;
    this.truncateToEntries(keep);
  }

  /** Null when consistent with a segment whose offsets end before `nextOffset`, else what is wrong. */
  sanityCheck(nextOffset: number): string | null {
    let previousTimestamp = Number.NEGATIVE_INFINITY;
    let previousOffset = -1;
    for (let entry = 0; entry < this.entryCount; entry++) {
      const timestamp = this.timestampAt(entry);
      const relativeOffset = this.relativeOffsetAt(entry);
      if (!Number.isSafeInteger(timestamp)) return `entry ${entry} has an impossible timestamp`;
      if (timestamp <= previousTimestamp || relativeOffset < previousOffset) {
        return `entry ${entry} (${timestamp}, ${relativeOffset}) does not increase`;
      }
      if (this.baseOffset + relativeOffset > nextOffset) {
        return `entry ${entry} points at offset ${this.baseOffset + relativeOffset}, past the segment's end ${nextOffset}`;
      }
      previousTimestamp = timestamp;
      previousOffset = relativeOffset;
    }
    return null;
  }
}
