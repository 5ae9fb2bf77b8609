// Goal: the table says what its figures are: how many e2e records were consumed and lost (and
// that lost ones are in the latency at a lower bound), whether the sender's lag is in the
// latency (produce at a rate) or apart from it (e2e, and why), the warm-up before the measured
// phase, and why a baseline gives no ratio; method: formatReport on reports made for the purpose.
import { expect, it } from 'vitest';
import type { LatencySummary } from '../../src/bench/latency-recorder.js';
import { type BenchReport, type ResultRow, formatReport, machineInfo } from '../../src/bench/report.js';

const LATENCY: LatencySummary = { count: 1000, meanMs: 0.5, p50Ms: 0.4, p95Ms: 0.6, p99Ms: 0.8, p999Ms: 1.2, maxMs: 2 };

function row(workload: string, server: ResultRow['server'], extra: Partial<ResultRow> = {}): ResultRow {
  return {
    workload,
    server,
    records: 1000,
    bytes: 100_000,
    seconds: 1,
    recordsPerSecond: 1000,
    megabytesPerSecond: 0.1,
    latency: LATENCY,
    latencyMeasures: 'from somewhere',
    serverMemory: null,
    cpu: { clientSeconds: 0, clientMicrosPerRecord: 0, serverSeconds: null, serverMicrosPerRecord: null },
    brokerFsyncs: null,
    brokerWrites: null,
    ...extra,
  };
}

function report(workload: string, results: ResultRow[], extra: Partial<BenchReport> = {}): BenchReport {
  return {
    tool: 'strata bench',
    version: '0.0.0',
    command: 'strata bench',
    startedAt: '2024-01-01T00:00:00.000Z',
    workload,
    parameters: {},
    topic: { name: 'strata-bench', partitions: 1, configs: {}, created: true },
    machine: machineInfo(),
    loadAverage: { start: [0, 0, 0], end: [0, 0, 0] },
    results,
    ratioToBaseline: null,
    ratioOf: null,
    ratioNotGiven: null,
    warmupRecords: null,
    ...extra,
  };
}

it('e2e: the records consumed and lost, the lost ones in the latency at a lower bound, and the lag apart from it', () => {
  const e2e = row('e2e', 'strata', { consumedRecords: 988, consumedRecordsPerSecond: 988, lost: 12, senderLag: LATENCY, acknowledgementLatency: LATENCY });
  const text = formatReport(report('e2e', [e2e]));
  expect(text).toContain(
    '\ne2e consumed: 988 of 1,000 records (988 records/s); lost: 12, counted in its latency at the time waited for them after the last send (a lower bound: they never came)\n',
  );
  expect(text).toMatch(/^e2e sender lag behind schedule \(not counted in latency, which starts at send\(\): a 1 ms timer's lag would dominate a sub-millisecond figure\): p50 0\.40/m);
  expect(formatReport(report('e2e', [{ ...e2e, consumedRecords: 1000, consumedRecordsPerSecond: 1000, lost: 0 }]))).toContain('\ne2e consumed: 1,000 of 1,000 records (1,000 records/s); lost: 0\n');
});

it('produce at a rate: the lag is in the latency, which starts at the schedule', () => {
  const text = formatReport(report('produce', [row('produce', 'strata', { senderLag: LATENCY })], { warmupRecords: 10_000 }));
  expect(text).toMatch(/^produce sender lag behind schedule \(counted in latency, which starts at each send's scheduled time\): p50 0\.40/m);
  expect(text).toContain('\nwarm-up: 10,000 records sent unmeasured by the same producers, and acknowledged before the measured records\n');
});

it('names the warm-up of a consume, and why a baseline gives no ratio', () => {
  const consume = formatReport(report('baseline consume', [row('consume', 'no-op'), row('consume', 'strata')], { warmupRecords: 10_000, ratioOf: 'records/s', ratioToBaseline: 0.9 }));
  expect(consume).toContain('\nwarm-up: an unmeasured fill and read of 10,000 records (topic strata-bench-warmup) on each server before the measured phase\n');
  expect(consume).toContain('\nStrata / no-op server (records/s): 0.90\n');
  const lost = formatReport(report('baseline e2e', [row('e2e', 'no-op'), row('e2e', 'strata', { lost: 3 })], { ratioOf: 'p99 latency', ratioNotGiven: 'Strata lost 3 of 1000 records: a p99 with records missing is not their latency' }));
  expect(lost).toContain('\nStrata / no-op server (p99 latency): not given: Strata lost 3 of 1000 records: a p99 with records missing is not their latency\n');
});
