/**
 * The sparse offset index (`.index`): maps offsets to byte positions in the segment's `.log`.
 *
 * Entry (8 bytes, big-endian): relativeOffset uint32 (batch base offset - segment base offset),
 * position uint32 (where that batch starts in the .log).
 *
 * An entry is added for a batch when at least `index.interval.bytes` of log were written since
 * the previous entry, so a lookup lands at most that many bytes (plus one batch) before the
 * target. Invariants: relative offsets and positions strictly increase; every position is the
 * start of a batch and lies below the log's size. The first batch (position 0) is implicit.
 */
import { IndexFile } from './index-file.js';

export const OFFSET_INDEX_ENTRY_BYTES = 8;

export interface IndexPosition {
  offset: number;
  position: number;
  /**
   * Where the next indexed batch starts (-1 when there is none). The batch holding the looked-up
   * offset ends at or before it, so one read of [position, nextPosition) finds it.
   */
  nextPosition: number;
}

export class OffsetIndex extends IndexFile {
  constructor(
    readonly baseOffset: number,
    maxEntries: number,
    contents?: Buffer,
  ) {
    super(OFFSET_INDEX_ENTRY_BYTES, maxEntries, contents);
  }

  append(offset: number, position: number): void {
    const slot = this.appendSlot();
    this.buffer().writeUInt32BE(offset - this.baseOffset, slot);
    this.buffer().writeUInt32BE(position, slot + 4);
  }

  relativeOffsetAt(entry: number): number {
    return this.buffer().readUInt32BE(entry * OFFSET_INDEX_ENTRY_BYTES);
  }

  positionAt(entry: number): number {
    return this.buffer().readUInt32BE(entry * OFFSET_INDEX_ENTRY_BYTES + 4);
  }

  /** The last indexed batch starting at or before `offset`; the segment start when none. */
  lookup(offset: number): IndexPosition {
    const entry = this.floorEntry(offset - this.baseOffset, (index) => this.relativeOffsetAt(index), false);
    const nextPosition = entry + 1 < this.entryCount ? this.positionAt(entry + 1) : -1;
    if (entry < 0) return { offset: this.baseOffset, position: 0, nextPosition };
    return { offset: this.baseOffset + this.relativeOffsetAt(entry), position: this.positionAt(entry), nextPosition };
  }

  /**
   * The entry `back` entries before the one `lookup(offset)` finds (its next position left
   * unknown), or the segment start when there is none: where to try next when that entry is
   * found wrong.
   */
  lookupBefore(offset: number, back: number): IndexPosition {
    const entry = this.floorEntry(offset - this.baseOffset, (index) => this.relativeOffsetAt(index), false) - back;
    if (entry < 0) return { offset: this.baseOffset, position: 0, nextPosition: -1 };
    return { offset: this.baseOffset + this.relativeOffsetAt(entry), position: this.positionAt(entry), nextPosition: -1 };
  }

  /** The last entry, or the segment start when the index is empty. */
  lastEntry(): IndexPosition {
    if (this.entryCount === 0) return { offset: this.baseOffset, position: 0, nextPosition: -1 };
    const entry = this.entryCount - 1;
    return { offset: this.baseOffset + this.relativeOffsetAt(entry), position: this.positionAt(entry), nextPosition: -1 };
  }

  /** Drops entries at or after `position` (used when the log is truncated there). */
  truncateToPosition(position: number): void {
    const keep = this.floorEntry(position, (index) => this.positionAt(index), true);
    this.truncateToEntries(keep + 1);
  }

  /** Null when the index is consistent with a log of `logSizeBytes`, else what is wrong. */
  sanityCheck(logSizeBytes: number): string | null {
    let previousOffset = 0;
    let previousPosition = 0;
    for (let entry = 0; entry < this.entryCount; entry++) {
      const relativeOffset = this.relativeOffsetAt(entry);
      const position = this.positionAt(entry);
      if (entry > 0 && (relativeOffset <= previousOffset || position <= previousPosition)) {
        return `entry ${entry} (${relativeOffset}, ${position}) does not increase`;
      }
      if (position >= logSizeBytes) return `entry ${entry} points at ${position}, past the log's ${logSizeBytes} bytes`;
      previousOffset = relativeOffset;
      previousPosition = position;
    }
    return null;
  }
}
