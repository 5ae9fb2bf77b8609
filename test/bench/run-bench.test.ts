// Goal: a baseline's ratio compares what differs between the two servers, and is withheld when
// it would mislead: records/s for a produce or consume as fast as they go, the p99 latency for
// e2e and for a produce at a --rate (both servers meet the rate, so their records/s are equal by
// construction), and no figure, with the reason, when either side lost records; method:
// baselineRatio on result rows made for the purpose.
import { expect, it } from 'vitest';
import { baselineRatio } from '../../src/bench/run-bench.js';
import type { LatencySummary } from '../../src/bench/latency-recorder.js';
import type { ResultRow } from '../../src/bench/report.js';

function latency(p99Ms: number): LatencySummary {
  return { count: 1000, meanMs: p99Ms / 2, p50Ms: p99Ms / 2, p95Ms: p99Ms, p99Ms, p999Ms: p99Ms, maxMs: p99Ms };
}

function row(server: ResultRow['server'], recordsPerSecond: number, p99Ms: number, lost?: number): ResultRow {
  return {
    workload: 'e2e',
    server,
    records: 1000,
    bytes: 100_000,
    seconds: 1,
    recordsPerSecond,
    megabytesPerSecond: 0.1,
    latency: latency(p99Ms),
    latencyMeasures: 'from send()',
    ...(lost === undefined ? {} : { lost }),
    serverMemory: null,
    cpu: { clientSeconds: 0, clientMicrosPerRecord: 0, serverSeconds: null, serverMicrosPerRecord: null },
    brokerFsyncs: null,
    brokerWrites: null,
  };
}

it('compares records/s for a produce as fast as it goes, and the p99 latency for one at a rate', () => {
  expect(baselineRatio('produce', row('strata', 800, 4), row('no-op', 1000, 1), false)).toEqual({ value: 0.8, of: 'records/s', notGiven: null });
  // At a rate both send 1,000 records/s: the ratio of those would be 1 whatever the servers do.
  expect(baselineRatio('produce', row('strata', 1000, 3), row('no-op', 1000, 1.5), true)).toEqual({ value: 2, of: 'p99 latency', notGiven: null });
  expect(baselineRatio('consume', row('strata', 900, 0), row('no-op', 1000, 0), false)).toEqual({ value: 0.9, of: 'records/s', notGiven: null });
});

it('gives no e2e ratio when either side lost records, and says which', () => {
  expect(baselineRatio('e2e', row('strata', 1000, 2, 0), row('no-op', 1000, 1, 0), true)).toEqual({ value: 2, of: 'p99 latency', notGiven: null });
  expect(baselineRatio('e2e', row('strata', 1000, 10_000, 12), row('no-op', 1000, 1, 0), true)).toEqual({
    value: null,
    of: 'p99 latency',
    notGiven: 'Strata lost 12 of 1000 records: a p99 with records missing is not their latency',
  });
  expect(baselineRatio('e2e', row('strata', 1000, 2, 0), row('no-op', 1000, 10_000, 3), true)?.notGiven).toBe('the no-op server lost 3 of 1000 records: a p99 with records missing is not their latency');
});
