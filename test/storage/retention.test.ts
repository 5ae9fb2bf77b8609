// Goal: show the pure retention policy picks exactly the oldest sealed segments Kafka would
// delete (by age, by size, the active one too unless empty, -1 disables, unknown timestamps are kept);
// method: call `segmentsToDelete` on hand-made segment lists with a fixed "now".
import { describe, expect, it } from 'vitest';
import { segmentsToDelete, type RetentionCandidate } from '../../src/storage/retention.js';

const NOW = 1_700_000_000_000;
const HOUR = 60 * 60 * 1000;

const seg = (sizeBytes: number, ageMs: number | null): RetentionCandidate => ({
  sizeBytes,
  maxTimestamp: ageMs === null ? -1 : NOW - ageMs,
});

const timeOnly = (retentionMs: number) => ({ retentionMs, retentionBytes: -1 });
const sizeOnly = (retentionBytes: number) => ({ retentionMs: -1, retentionBytes });

describe('segmentsToDelete by time', () => {
  it('deletes segments strictly older than retention.ms, oldest first', () => {
    const segments = [seg(100, 5 * HOUR), seg(100, 3 * HOUR), seg(100, 1 * HOUR), seg(100, 0)];
    expect(segmentsToDelete(segments, timeOnly(2 * HOUR), NOW)).toBe(2);
    expect(segmentsToDelete(segments, timeOnly(4 * HOUR), NOW)).toBe(1);
    expect(segmentsToDelete(segments, timeOnly(6 * HOUR), NOW)).toBe(0);
  });

  it('keeps a segment exactly retention.ms old', () => {
    expect(segmentsToDelete([seg(100, HOUR), seg(100, 0)], timeOnly(HOUR), NOW)).toBe(0);
    expect(segmentsToDelete([seg(100, HOUR + 1), seg(100, 0)], timeOnly(HOUR), NOW)).toBe(1);
  });

  it('stops at the first young segment even if older ones follow (whole prefix only)', () => {
    const segments = [seg(100, 5 * HOUR), seg(100, 0), seg(100, 5 * HOUR), seg(100, 0)];
    expect(segmentsToDelete(segments, timeOnly(HOUR), NOW)).toBe(1);
  });

  it('deletes the active (last) segment too once it is expired, unless it is empty', () => {
    expect(segmentsToDelete([seg(100, 10 * HOUR)], timeOnly(HOUR), NOW)).toBe(1);
    expect(segmentsToDelete([seg(100, 10 * HOUR), seg(100, 10 * HOUR), seg(100, 10 * HOUR)], timeOnly(HOUR), NOW)).toBe(3);
    expect(segmentsToDelete([seg(100, 10 * HOUR), seg(100, 10 * HOUR), seg(100, 0)], timeOnly(HOUR), NOW)).toBe(2);
    expect(segmentsToDelete([seg(100, 10 * HOUR), seg(0, null)], timeOnly(0), NOW)).toBe(1);
    expect(segmentsToDelete([seg(0, null)], timeOnly(0), NOW)).toBe(0);
  });

  it('retention.ms of -1 disables deletion by time', () => {
    expect(segmentsToDelete([seg(100, 1000 * HOUR), seg(100, 1000 * HOUR)], timeOnly(-1), NOW)).toBe(0);
  });

  it('retention.ms of 0 deletes every sealed segment with a past timestamp', () => {
    expect(segmentsToDelete([seg(100, 1), seg(100, 1), seg(100, 1)], timeOnly(0), NOW)).toBe(3);
    expect(segmentsToDelete([seg(100, 0), seg(100, 0)], timeOnly(0), NOW)).toBe(0);
  });

  it('keeps segments whose timestamp is unknown (-1)', () => {
    expect(segmentsToDelete([seg(100, null), seg(100, 10 * HOUR), seg(100, 0)], timeOnly(HOUR), NOW)).toBe(0);
    expect(segmentsToDelete([seg(100, 10 * HOUR), seg(100, null), seg(100, 0)], timeOnly(HOUR), NOW)).toBe(1);
  });

  it('keeps segments with timestamps in the future', () => {
    expect(segmentsToDelete([seg(100, -HOUR), seg(100, 0)], timeOnly(HOUR), NOW)).toBe(0);
  });
});

describe('segmentsToDelete by size (Kafka rule)', () => {
  it('deletes the oldest while the rest is still at least retention.bytes', () => {
    const segments = [seg(100, 0), seg(100, 0), seg(100, 0), seg(50, 0)]; // 350 in total
    expect(segmentsToDelete(segments, sizeOnly(350), NOW)).toBe(0);
    expect(segmentsToDelete(segments, sizeOnly(250), NOW)).toBe(1); // 350-100 = 250 >= 250
    expect(segmentsToDelete(segments, sizeOnly(249), NOW)).toBe(1); // 150 < 249 after the second
    expect(segmentsToDelete(segments, sizeOnly(150), NOW)).toBe(2);
    expect(segmentsToDelete(segments, sizeOnly(51), NOW)).toBe(2); // deleting a third leaves 50 < 51
    expect(segmentsToDelete(segments, sizeOnly(50), NOW)).toBe(3);
  });

  it('never goes below retention.bytes by deleting', () => {
    const sizes = [70, 30, 120, 10, 60, 40];
    const segments = sizes.map((size) => seg(size, 0));
    const total = sizes.reduce((a, b) => a + b, 0);
    for (let limit = 0; limit <= total + 10; limit++) {
      const count = segmentsToDelete(segments, sizeOnly(limit), NOW);
      const remaining = sizes.slice(count).reduce((a, b) => a + b, 0);
      expect(remaining).toBeGreaterThanOrEqual(Math.min(limit, total));
      // Maximal: one more deletion (if allowed at all) would go below the limit.
      if (count < sizes.length) expect(remaining - sizes[count]!).toBeLessThan(limit);
      expect(count).toBeLessThanOrEqual(sizes.length);
    }
  });

  it('retention.bytes 0 deletes every segment, the active one too unless it is empty', () => {
    expect(segmentsToDelete([seg(100, 0), seg(100, 0), seg(100, 0)], sizeOnly(0), NOW)).toBe(3);
    expect(segmentsToDelete([seg(1000, 0)], sizeOnly(0), NOW)).toBe(1);
    expect(segmentsToDelete([seg(100, 0), seg(0, null)], sizeOnly(0), NOW)).toBe(1);
    expect(segmentsToDelete([], sizeOnly(0), NOW)).toBe(0);
  });

  it('retention.bytes of -1 disables deletion by size', () => {
    expect(segmentsToDelete([seg(1e9, 0), seg(1e9, 0)], sizeOnly(-1), NOW)).toBe(0);
  });

  it('deletes by size even when timestamps are unknown', () => {
    expect(segmentsToDelete([seg(100, null), seg(100, null), seg(100, null)], sizeOnly(100), NOW)).toBe(2);
  });
});

describe('segmentsToDelete with both limits', () => {
  it('deletes a segment that breaks either rule, stopping at the first that breaks neither', () => {
    const segments = [seg(100, 10 * HOUR), seg(100, 0), seg(100, 0), seg(100, 0)];
    // Time alone deletes 1; size alone (200) deletes 2; together: 2.
    expect(segmentsToDelete(segments, { retentionMs: HOUR, retentionBytes: 200 }, NOW)).toBe(2);
    // Time deletes the first; then the log is 300 >= 300 so size keeps the rest.
    expect(segmentsToDelete(segments, { retentionMs: HOUR, retentionBytes: 300 }, NOW)).toBe(1);
    expect(segmentsToDelete(segments, { retentionMs: -1, retentionBytes: -1 }, NOW)).toBe(0);
  });

  it('is pure: the input is not changed', () => {
    const segments = [seg(100, 10 * HOUR), seg(100, 0)];
    const copy = structuredClone(segments);
    segmentsToDelete(segments, { retentionMs: 0, retentionBytes: 0 }, NOW);
    expect(segments).toEqual(copy);
  });
});
