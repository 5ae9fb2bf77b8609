// Goal: the benchmark's counts of a local broker's log writes and fdatasyncs, and of the slow
// ones, agree with what the broker's histograms were given, each kind from its own histogram;
// method: the broker's own metrics registry (`BrokerMetrics`), observed with chosen durations
// and rendered in the Prometheus text format the /metrics endpoint serves, read twice and
// compared.
import { expect, it } from 'vitest';
import { diskCallsBetween, parseDiskCallHistograms } from '../../src/bench/broker-disk-calls.js';
import { BrokerMetrics } from '../../src/server/metrics.js';

it('counts the fdatasyncs and writes between two readings, and those over 1, 5, 10 and 100 ms', async () => {
  const metrics = new BrokerMetrics();
  for (const seconds of [0.00005, 0.0003]) metrics.fsyncSeconds.observe(seconds); // before the phase
  metrics.writeSeconds.observe(0.02);
  const before = parseDiskCallHistograms(await metrics.registry.metrics());
  expect(before.fdatasync!.count).toBe(2);
  expect(before.write!.count).toBe(1);

  const syncs = [0.00008, 0.0002, 0.0009, 0.001, 0.0011, 0.004, 0.0101, 0.02, 0.2];
  for (const seconds of syncs) metrics.fsyncSeconds.observe(seconds);
  const writes = [0.0001, 0.003, 0.006, 0.015];
  for (const seconds of writes) metrics.writeSeconds.observe(seconds);
  const after = parseDiskCallHistograms(await metrics.registry.metrics());

  const calls = diskCallsBetween(before, after);
  expect(calls.fdatasync!.count).toBe(syncs.length);
  // A bucket holds durations up to and including its bound: 1 ms is not over 1 ms.
  expect(calls.fdatasync!.over1Ms).toBe(5); // 1.1, 4, 10.1, 20 and 200 ms
  expect(calls.fdatasync!.over5Ms).toBe(3);
  expect(calls.fdatasync!.over10Ms).toBe(3);
  expect(calls.fdatasync!.over100Ms).toBe(1);
  const meanMs = (durations: number[]): number => (durations.reduce((sum, seconds) => sum + seconds, 0) / durations.length) * 1000;
  expect(calls.fdatasync!.meanMs).toBeCloseTo(meanMs(syncs), 3);
  // The writes are counted apart, from their own histogram.
  expect(calls.write).toEqual({ count: 4, meanMs: expect.closeTo(meanMs(writes), 3) as unknown as number, over1Ms: 3, over5Ms: 2, over10Ms: 1, over100Ms: 0 });
});

it('gives no mean when the broker made no disk call', async () => {
  const metrics = new BrokerMetrics();
  const reading = parseDiskCallHistograms(await metrics.registry.metrics());
  const none = { count: 0, meanMs: null, over1Ms: 0, over5Ms: 0, over10Ms: 0, over100Ms: 0 };
  expect(diskCallsBetween(reading, reading)).toEqual({ fdatasync: none, write: none });
});

it('refuses metrics with neither histogram: not a Strata broker\'s endpoint', () => {
  expect(() => parseDiskCallHistograms('# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 1\n')).toThrow(
    /neither strata_fsync_duration_seconds nor strata_log_write_duration_seconds: is this a Strata broker's --metrics-listen address\?/,
  );
});

it('keeps the fdatasyncs of a broker too old to time its writes', async () => {
  const metrics = new BrokerMetrics();
  const withoutWrites = async (): Promise<string> =>
    (await metrics.registry.metrics())
      .split('\n')
      .filter((line) => !line.includes('strata_log_write_duration_seconds'))
      .join('\n');
  const before = parseDiskCallHistograms(await withoutWrites());
  expect(before.write).toBeNull();
  metrics.fsyncSeconds.observe(0.002);
  const calls = diskCallsBetween(before, parseDiskCallHistograms(await withoutWrites()));
  expect(calls.write).toBeNull();
  expect(calls.fdatasync).toMatchObject({ count: 1, over1Ms: 1, over5Ms: 0 });
});

it('refuses a count that fell: the broker restarted between the readings', async () => {
  const metrics = new BrokerMetrics();
  metrics.writeSeconds.observe(0.001);
  const before = parseDiskCallHistograms(await metrics.registry.metrics());
  const restarted = parseDiskCallHistograms(await new BrokerMetrics().registry.metrics());
  expect(() => diskCallsBetween(before, restarted)).toThrow(/strata_log_write_duration_seconds count fell from 1 to 0: it restarted during the phase/);
});
