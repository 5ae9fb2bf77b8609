// Goal: the benchmark's count of a local broker's fdatasyncs, and of the slow ones, agrees with
// what the broker's histogram was given; method: the broker's own metrics registry
// (`BrokerMetrics`), observed with chosen durations and rendered in the Prometheus text format
// the /metrics endpoint serves, read twice and compared.
import { expect, it } from 'vitest';
import { fsyncsBetween, parseFsyncHistogram } from '../../src/bench/broker-fsyncs.js';
import { BrokerMetrics } from '../../src/server/metrics.js';

it('counts the fdatasyncs between two readings, and those over 1, 10 and 100 ms', async () => {
  const metrics = new BrokerMetrics();
  for (const seconds of [0.00005, 0.0003]) metrics.fsyncSeconds.observe(seconds); // before the phase
  const before = parseFsyncHistogram(await metrics.registry.metrics());
  expect(before.count).toBe(2);

  const phase = [0.00008, 0.0002, 0.0009, 0.001, 0.0011, 0.004, 0.0101, 0.02, 0.2];
  for (const seconds of phase) metrics.fsyncSeconds.observe(seconds);
  const after = parseFsyncHistogram(await metrics.registry.metrics());

  const fsyncs = fsyncsBetween(before, after);
  expect(fsyncs.count).toBe(phase.length);
  // A bucket holds durations up to and including its bound: 1 ms is not over 1 ms.
  expect(fsyncs.over1Ms).toBe(5); // 1.1, 4, 10.1, 20 and 200 ms
  expect(fsyncs.over10Ms).toBe(3);
  expect(fsyncs.over100Ms).toBe(1);
  const meanMs = (phase.reduce((sum, seconds) => sum + seconds, 0) / phase.length) * 1000;
  expect(fsyncs.meanMs).toBeCloseTo(meanMs, 3);
});

it('gives no mean when the broker made no fdatasync', async () => {
  const metrics = new BrokerMetrics();
  const reading = parseFsyncHistogram(await metrics.registry.metrics());
  expect(fsyncsBetween(reading, reading)).toEqual({ count: 0, meanMs: null, over1Ms: 0, over10Ms: 0, over100Ms: 0 });
});

it('says so when the metrics have no fdatasync histogram', () => {
  expect(() => parseFsyncHistogram('# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 1\n')).toThrow(/no strata_fsync_duration_seconds histogram/);
});
