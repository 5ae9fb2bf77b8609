// Goal: show the time index only grows in timestamp, tells a timestamp search where to start
// (the offset of the last entry whose timestamp is strictly below the target, else the segment
// start), truncates by offset and catches damaged contents; method: small in-memory indexes
// built with `maybeAppend` and from raw 12-byte entries.
import { describe, expect, it } from 'vitest';
import { TIME_INDEX_ENTRY_BYTES, TimeIndex } from '../../src/storage/time-index.js';

const T0 = 1_700_000_000_000;

/** Raw index file contents from (timestamp, relativeOffset) pairs. */
function rawEntries(entries: readonly [number, number][]): Buffer {
  const buffer = Buffer.alloc(entries.length * TIME_INDEX_ENTRY_BYTES);
  entries.forEach(([timestamp, relativeOffset], index) => {
    buffer.writeBigInt64BE(BigInt(timestamp), index * TIME_INDEX_ENTRY_BYTES);
    buffer.writeUInt32BE(relativeOffset, index * TIME_INDEX_ENTRY_BYTES + 8);
  });
  return buffer;
}

/** Base offset 100, entries (T0+10 -> 110), (T0+20 -> 125), (T0+40 -> 160). */
function sampleIndex(): TimeIndex {
  const index = new TimeIndex(100, 50);
  index.maybeAppend(T0 + 10, 110);
  index.maybeAppend(T0 + 20, 125);
  index.maybeAppend(T0 + 40, 160);
  return index;
}

describe('TimeIndex.maybeAppend', () => {
  it('adds an entry only when the timestamp grows', () => {
    const index = new TimeIndex(0, 10);
    index.maybeAppend(T0, 5);
    expect(index.entryCount).toBe(1);
    index.maybeAppend(T0, 6); // equal: no entry
    index.maybeAppend(T0 - 1, 7); // smaller: no entry
    expect(index.entryCount).toBe(1);
    index.maybeAppend(T0 + 1, 8);
    expect(index.entryCount).toBe(2);
    expect(index.timestampAt(1)).toBe(T0 + 1);
    expect(index.relativeOffsetAt(1)).toBe(8);
    expect(index.lastTimestamp()).toBe(T0 + 1);
  });

  it('ignores unknown (-1) timestamps on an empty index', () => {
    const index = new TimeIndex(0, 10);
    expect(index.lastTimestamp()).toBe(-1);
    index.maybeAppend(-1, 3);
    expect(index.entryCount).toBe(0);
    index.maybeAppend(0, 3);
    expect(index.entryCount).toBe(1);
  });

  it('stores offsets relative to the base and 64-bit timestamps exactly', () => {
    const index = new TimeIndex(7_000_000_000, 10);
    const big = 2 ** 52 + 12345; // high word well above 2^32
    index.maybeAppend(T0, 7_000_000_003);
    index.maybeAppend(big, 7_000_000_009);
    expect(index.relativeOffsetAt(0)).toBe(3);
    expect(index.timestampAt(0)).toBe(T0);
    expect(index.timestampAt(1)).toBe(big);
    expect(Buffer.compare(index.contents(), rawEntries([[T0, 3], [big, 9]]))).toBe(0);
    const reloaded = new TimeIndex(7_000_000_000, 10, index.contents());
    expect(reloaded.timestampAt(1)).toBe(big);
    expect(reloaded.lookup(big)).toBe(7_000_000_003);
  });

  it('stops adding silently when full', () => {
    const index = new TimeIndex(0, 2);
    index.maybeAppend(T0, 1);
    index.maybeAppend(T0 + 1, 2);
    expect(index.isFull()).toBe(true);
    index.maybeAppend(T0 + 2, 3);
    expect(index.entryCount).toBe(2);
    expect(index.lastTimestamp()).toBe(T0 + 1);
  });
});

describe('TimeIndex.lookup', () => {
  it('returns the base offset when the index is empty', () => {
    expect(new TimeIndex(42, 10).lookup(T0)).toBe(42);
  });

  it('returns the offset of the last entry with a timestamp strictly below the target', () => {
    const index = sampleIndex();
    expect(index.lookup(0)).toBe(100);
    expect(index.lookup(T0 + 10)).toBe(100); // equal is not strictly below
    expect(index.lookup(T0 + 11)).toBe(110);
    expect(index.lookup(T0 + 20)).toBe(110);
    expect(index.lookup(T0 + 21)).toBe(125);
    expect(index.lookup(T0 + 40)).toBe(125);
    expect(index.lookup(T0 + 41)).toBe(160);
    expect(index.lookup(Number.MAX_SAFE_INTEGER)).toBe(160);
  });

  it('agrees with a linear scan on a large index', () => {
    const index = new TimeIndex(0, 1000);
    const entries: [number, number][] = [];
    for (let entry = 0; entry < 600; entry++) {
      const timestamp = T0 + entry * 5 + (entry % 4);
      entries.push([timestamp, entry * 3 + 1]);
      index.maybeAppend(timestamp, entry * 3 + 1);
    }
    for (let timestamp = T0 - 2; timestamp < T0 + 3010; timestamp += 1) {
      let expected = 0;
      for (const [entryTimestamp, offset] of entries) if (entryTimestamp < timestamp) expected = offset;
      expect(index.lookup(timestamp)).toBe(expected);
    }
  });
});

describe('TimeIndex.truncateToOffset', () => {
  it('drops the entries whose offset is above the given one', () => {
    const keepAll = sampleIndex();
    keepAll.truncateToOffset(160);
    expect(keepAll.entryCount).toBe(3);

    const dropLast = sampleIndex();
    dropLast.truncateToOffset(159);
    expect(dropLast.entryCount).toBe(2);
    expect(dropLast.lastTimestamp()).toBe(T0 + 20);
    expect(dropLast.lookup(T0 + 1000)).toBe(125);

    const keepFirst = sampleIndex();
    keepFirst.truncateToOffset(110);
    expect(keepFirst.entryCount).toBe(1);

    const dropAll = sampleIndex();
    dropAll.truncateToOffset(109);
    expect(dropAll.entryCount).toBe(0);
    expect(dropAll.lookup(T0 + 1000)).toBe(100);
    expect(dropAll.lastTimestamp()).toBe(-1);
  });

  it('lets a smaller timestamp be appended again after truncation', () => {
    const index = sampleIndex();
    index.truncateToOffset(124);
    index.maybeAppend(T0 + 15, 130);
    expect(index.entryCount).toBe(2);
    expect(index.lookup(T0 + 16)).toBe(130);
  });
});

describe('TimeIndex.sanityCheck', () => {
  it('accepts a consistent index, including a final entry at the next offset', () => {
    expect(sampleIndex().sanityCheck(161)).toBeNull();
    expect(sampleIndex().sanityCheck(160)).toBeNull(); // the seal entry (maxTimestamp, nextOffset)
    expect(new TimeIndex(0, 10).sanityCheck(0)).toBeNull();
  });

  it('catches timestamps that do not strictly increase', () => {
    expect(new TimeIndex(0, 10, rawEntries([[T0, 1], [T0, 2]])).sanityCheck(10)).toMatch(/entry 1 .*does not increase/);
    expect(new TimeIndex(0, 10, rawEntries([[T0, 1], [T0 + 5, 2], [T0 + 4, 3]])).sanityCheck(10)).toMatch(/entry 2 .*does not increase/);
  });

  it('catches offsets that go backwards', () => {
    expect(new TimeIndex(0, 10, rawEntries([[T0, 5], [T0 + 1, 4]])).sanityCheck(10)).toMatch(/entry 1 .*does not increase/);
  });

  it('catches an offset past the end of the segment', () => {
    expect(sampleIndex().sanityCheck(159)).toMatch(/entry 2 points at offset 160, past the segment's end 159/);
    expect(new TimeIndex(100, 10, rawEntries([[T0, 50]])).sanityCheck(120)).toMatch(/entry 0 points at offset 150/);
  });

  it('catches timestamps outside the safe integer range', () => {
    const contents = rawEntries([[T0, 1]]);
    contents.writeBigInt64BE(2n ** 62n, 0);
    expect(new TimeIndex(0, 10, contents).sanityCheck(10)).toMatch(/entry 0 has an impossible timestamp/);
  });
});
