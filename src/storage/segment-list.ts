/**
 * The ordered segments of one partition log: base offset -> segment, oldest first. Segments are
 * only ever added at the end (roll) and removed from the front (retention), so a sorted array
 * with binary search is all that is needed.
 */
import { assert } from '../common/assert.js';
import type { LogSegment } from './segment.js';

export class SegmentList {
  private readonly segments: LogSegment[] = [];

  get count(): number {
    return this.segments.length;
  }

  first(): LogSegment {
    assert(this.segments.length > 0, 'a log always has a segment');
    return this.segments[0]!;
  }

  last(): LogSegment {
    assert(this.segments.length > 0, 'a log always has a segment');
    return this.segments[this.segments.length - 1]!;
  }

  at(index: number): LogSegment {
    return this.segments[index]!;
  }

  indexOf(segment: LogSegment): number {
    return this.segments.indexOf(segment);
  }

  append(segment: LogSegment): void {
    const previous = this.segments[this.segments.length - 1];
    assert(previous === undefined || previous.baseOffset < segment.baseOffset, () => `segment ${segment.baseOffset} appended after ${previous?.baseOffset}`);
    this.segments.push(segment);
  }

  removeFirst(): LogSegment {
    assert(this.segments.length > 1, 'the active segment is never removed');
    return this.segments.shift()!;
  }

  /** Drops every segment after `index` (repair only; the caller handles their files). */
  truncateAfter(index: number): void {
    this.segments.length = index + 1;
  }

  /** Index of the segment with the largest base offset <= `offset`, or -1. */
  floorIndex(offset: number): number {
    let low = 0;
    let high = this.segments.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (this.segments[middle]!.baseOffset <= offset) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }

  /**
   * Closes every segment, going on past one that fails (`onError` hears of it). Iterates over a
   * copy: retention may take segments out of the list meanwhile.
   */
  async closeAll(onError: (segment: LogSegment, error: unknown) => void): Promise<void> {
    for (const segment of [...this.segments]) {
      await segment.close().catch((error: unknown) => onError(segment, error));
    }
  }

  totalBytes(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.sizeBytes;
    return total;
  }

  [Symbol.iterator](): Iterator<LogSegment> {
    return this.segments[Symbol.iterator]();
  }
}
