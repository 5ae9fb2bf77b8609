// Goal: a latency summary never gives a percentile above the maximum it reports, nor a
// percentile below the one before it, although the histogram answers a percentile with the top
// of its bucket (3 significant digits) while the maximum is exact; method: the recorder alone,
// fed chosen values and seeded random ones.
import { expect, it } from 'vitest';
import { LatencyRecorder, SAMPLES_MAX } from '../../src/bench/latency-recorder.js';
import { mulberry32 } from '../helpers/seeded-random.js';

it('gives no percentile above the exact maximum: 1,000 values of 12.345 ms are 12.345 ms at every percentile', () => {
  const recorder = new LatencyRecorder(1000);
  for (let index = 0; index < 1000; index++) recorder.record(12.345);
  expect(recorder.summary()).toEqual({ count: 1000, meanMs: 12.345, p50Ms: 12.345, p95Ms: 12.345, p99Ms: 12.345, p999Ms: 12.345, maxMs: 12.345 });
});

it('keeps the percentiles in order, each at most the maximum', () => {
  const random = mulberry32(20_240_611);
  for (let run = 0; run < 50; run++) {
    const recorder = new LatencyRecorder(200);
    const values = 1 + Math.floor(random() * 200);
    // Values a few buckets wide, where the top of a bucket is most often above the largest value.
    for (let index = 0; index < values; index++) recorder.record(10 + random() * 0.05);
    const { p50Ms, p95Ms, p99Ms, p999Ms, maxMs } = recorder.summary()!;
    expect([p50Ms, p95Ms, p99Ms, p999Ms, maxMs]).toEqual([p50Ms, p95Ms, p99Ms, p999Ms, maxMs].sort((a, b) => a - b));
    expect(p999Ms).toBeLessThanOrEqual(maxMs);
  }
});

it('keeps a bulk recorded apart from the sampling at its own weight, however many values the phase samples', () => {
  // Twice SAMPLES_MAX expected: every second value is kept, standing for two.
  const recorder = new LatencyRecorder(2 * SAMPLES_MAX);
  for (let index = 0; index < 990; index++) recorder.record(1);
  recorder.recordUnsampled(10_000, 10);
  const summary = recorder.summary()!;
  expect(summary.count).toBe(1000);
  // 10 of 1,000 values at 10 s: p99.9 is one of them, p99 is not.
  expect(summary.p99Ms).toBe(1);
  expect(summary.p999Ms).toBeGreaterThanOrEqual(10_000);
  // Sampled as one value, the bulk would have been skipped (an odd count of values before it),
  // or have stood for 20 values and moved p99 to 10 s.
});
