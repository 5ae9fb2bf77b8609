// Goal: show the sparse offset index maps offsets to the last indexed batch at or before them,
// truncates by log position, bounds its size and catches damaged contents; method: build small
// in-memory indexes (through `append` and from raw 8-byte entries) and check each operation.
import { describe, expect, it } from 'vitest';
import { AssertionError } from '../../src/common/assert.js';
import { OFFSET_INDEX_ENTRY_BYTES, OffsetIndex } from '../../src/storage/offset-index.js';

/** Raw index file contents from (relativeOffset, position) pairs. */
function rawEntries(entries: readonly [number, number][]): Buffer {
  const buffer = Buffer.alloc(entries.length * OFFSET_INDEX_ENTRY_BYTES);
  entries.forEach(([relativeOffset, position], index) => {
    buffer.writeUInt32BE(relativeOffset, index * OFFSET_INDEX_ENTRY_BYTES);
    buffer.writeUInt32BE(position, index * OFFSET_INDEX_ENTRY_BYTES + 4);
  });
  return buffer;
}

/** Base offset 1000, entries at offsets 1010, 1020, 1035 -> positions 400, 800, 1500. */
function sampleIndex(): OffsetIndex {
  const index = new OffsetIndex(1000, 100);
  index.append(1010, 400);
  index.append(1020, 800);
  index.append(1035, 1500);
  return index;
}

describe('OffsetIndex.lookup', () => {
  it('returns the segment start when the index is empty', () => {
    const index = new OffsetIndex(500, 10);
    expect(index.lookup(500)).toMatchObject({ offset: 500, position: 0 });
    expect(index.lookup(12345)).toMatchObject({ offset: 500, position: 0 });
    expect(index.lastEntry()).toMatchObject({ offset: 500, position: 0 });
  });

  it('returns the segment start for offsets before the first entry', () => {
    const index = sampleIndex();
    expect(index.lookup(1000)).toMatchObject({ offset: 1000, position: 0 });
    expect(index.lookup(1009)).toMatchObject({ offset: 1000, position: 0 });
    // Below the segment's base (a caller bug, but it must not find an entry).
    expect(index.lookup(3)).toMatchObject({ offset: 1000, position: 0 });
  });

  it('has floor semantics: the last entry at or before the offset', () => {
    const index = sampleIndex();
    expect(index.lookup(1010)).toMatchObject({ offset: 1010, position: 400 });
    expect(index.lookup(1011)).toMatchObject({ offset: 1010, position: 400 });
    expect(index.lookup(1019)).toMatchObject({ offset: 1010, position: 400 });
    expect(index.lookup(1020)).toMatchObject({ offset: 1020, position: 800 });
    expect(index.lookup(1034)).toMatchObject({ offset: 1020, position: 800 });
    expect(index.lookup(1035)).toMatchObject({ offset: 1035, position: 1500 });
    expect(index.lookup(99_999)).toMatchObject({ offset: 1035, position: 1500 });
    expect(index.lastEntry()).toMatchObject({ offset: 1035, position: 1500 });
  });

  it('gives where the next indexed batch starts, so one read covers the batch holding the offset', () => {
    const index = sampleIndex();
    expect(index.lookup(1005).nextPosition).toBe(400);
    expect(index.lookup(1010).nextPosition).toBe(800);
    expect(index.lookup(1034).nextPosition).toBe(1500);
    expect(index.lookup(1035).nextPosition).toBe(-1);
    expect(new OffsetIndex(0, 10).lookup(5).nextPosition).toBe(-1);
  });

  it('agrees with a linear scan on a large index', () => {
    const index = new OffsetIndex(0, 1000);
    const offsets: number[] = [];
    for (let entry = 0; entry < 700; entry++) {
      const offset = 3 + entry * 7 + (entry % 3);
      offsets.push(offset);
      index.append(offset, 100 + entry * 50);
    }
    for (let offset = 0; offset < offsets.at(-1)! + 10; offset++) {
      let expected = { offset: 0, position: 0 };
      offsets.forEach((entryOffset, entry) => {
        if (entryOffset <= offset) expected = { offset: entryOffset, position: 100 + entry * 50 };
      });
      expect(index.lookup(offset)).toMatchObject(expected);
    }
  });

  it('reads entries from file contents and writes them back byte for byte', () => {
    const contents = rawEntries([[10, 400], [20, 800]]);
    const index = new OffsetIndex(1000, 10, contents);
    expect(index.entryCount).toBe(2);
    expect(index.relativeOffsetAt(1)).toBe(20);
    expect(index.positionAt(1)).toBe(800);
    expect(index.lookup(1025)).toMatchObject({ offset: 1020, position: 800 });
    expect(Buffer.compare(index.contents(), contents)).toBe(0);
    expect(Buffer.compare(sampleIndex().contents(), rawEntries([[10, 400], [20, 800], [35, 1500]]))).toBe(0);
  });
});

describe('OffsetIndex.truncateToPosition', () => {
  it('drops the entries at or after the position and keeps the ones before', () => {
    const atEntry = sampleIndex();
    atEntry.truncateToPosition(800);
    expect(atEntry.entryCount).toBe(1);
    expect(atEntry.lookup(1030)).toMatchObject({ offset: 1010, position: 400 });

    const between = sampleIndex();
    between.truncateToPosition(801);
    expect(between.entryCount).toBe(2);
    expect(between.lastEntry()).toMatchObject({ offset: 1020, position: 800 });

    const past = sampleIndex();
    past.truncateToPosition(1_000_000);
    expect(past.entryCount).toBe(3);

    const all = sampleIndex();
    all.truncateToPosition(400);
    expect(all.entryCount).toBe(0);
    expect(all.lookup(1035)).toMatchObject({ offset: 1000, position: 0 });

    const zero = sampleIndex();
    zero.truncateToPosition(0);
    expect(zero.entryCount).toBe(0);
  });

  it('lets appends continue after the truncation point', () => {
    const index = sampleIndex();
    index.truncateToPosition(800);
    index.append(1018, 700);
    expect(index.lookup(1030)).toMatchObject({ offset: 1018, position: 700 });
    expect(index.sanityCheck(701)).toBeNull();
  });
});

describe('OffsetIndex.sanityCheck', () => {
  it('accepts a consistent index and an empty one', () => {
    expect(sampleIndex().sanityCheck(1501)).toBeNull();
    expect(new OffsetIndex(0, 10).sanityCheck(0)).toBeNull();
    expect(new OffsetIndex(0, 10, rawEntries([[1, 61]])).sanityCheck(62)).toBeNull();
  });

  it('catches an offset that does not increase', () => {
    expect(new OffsetIndex(0, 10, rawEntries([[10, 100], [10, 200]])).sanityCheck(1000)).toMatch(/entry 1 .*does not increase/);
    expect(new OffsetIndex(0, 10, rawEntries([[10, 100], [20, 200], [15, 300]])).sanityCheck(1000)).toMatch(/entry 2 .*does not increase/);
  });

  it('catches a position that does not increase', () => {
    expect(new OffsetIndex(0, 10, rawEntries([[10, 100], [20, 100]])).sanityCheck(1000)).toMatch(/entry 1 .*does not increase/);
    expect(new OffsetIndex(0, 10, rawEntries([[10, 300], [20, 200]])).sanityCheck(1000)).toMatch(/entry 1 .*does not increase/);
  });

  it('catches positions at or past the end of the log', () => {
    const index = sampleIndex();
    expect(index.sanityCheck(1500)).toMatch(/entry 2 points at 1500, past the log's 1500 bytes/);
    expect(index.sanityCheck(800)).toMatch(/entry 1 points at 800/);
    expect(index.sanityCheck(0)).toMatch(/entry 0 points at 400/);
  });
});

describe('OffsetIndex capacity', () => {
  it('is full at maxEntries and refuses further appends', () => {
    const index = new OffsetIndex(0, 3);
    expect(index.isFull()).toBe(false);
    index.append(1, 10);
    index.append(2, 20);
    expect(index.isFull()).toBe(false);
    index.append(3, 30);
    expect(index.isFull()).toBe(true);
    expect(() => index.append(4, 40)).toThrow(AssertionError);
    expect(index.entryCount).toBe(3);
    index.truncateToEntries(2);
    expect(index.isFull()).toBe(false);
  });

  it('grows past its initial buffer up to maxEntries', () => {
    const index = new OffsetIndex(0, 200);
    for (let entry = 0; entry < 200; entry++) index.append(entry + 1, (entry + 1) * 10);
    expect(index.isFull()).toBe(true);
    expect(index.contents().length).toBe(200 * OFFSET_INDEX_ENTRY_BYTES);
    expect(index.lookup(150)).toMatchObject({ offset: 150, position: 1500 });
    expect(index.sanityCheck(2001)).toBeNull();
  });
});
