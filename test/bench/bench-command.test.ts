// Goal: every `strata bench` workload runs end to end against a real broker and reports the
// documented figures, so the benchmark stays usable as the code changes; method: the compiled CLI
// (dist/, built by `npm test`) as a child process with --local (its own broker on a temporary
// directory) and small numbers, then the --json report is checked field by field. No speed is
// asserted: the machine running the tests may be busy. Interrupted runs (a second Ctrl-C while
// the local broker is still starting too), and runs whose broker dies under them, are checked
// for what they leave behind: the local broker's process and its data directory (TMPDIR points
// the run at a directory of the test's own; a broker held at its start is one whose process a
// module preloaded through NODE_OPTIONS blocks before it loads anything).
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { BrokerCalls } from '../../src/bench/broker-disk-calls.js';
import { processScheduling, type Scheduling } from '../../src/bench/scheduling.js';
import { SERVER_START_TIMEOUT_MS } from '../../src/bench/server-process.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { runCli, startCli } from '../helpers/cli.js';
import { removeDirectory, startTestBroker, temporaryDirectory, unusedPort } from '../helpers/test-server.js';
import { waitUntil } from '../helpers/wait.js';
import { processesMentioning } from '../helpers/processes.js';

const run = promisify(execFile);
const directory = temporaryDirectory('strata-bench-test-');
afterAll(() => removeDirectory(directory));

interface Report {
  tool: string;
  version: string;
  command: string;
  workload: string;
  parameters: Record<string, unknown>;
  topic: { name: string; partitions: number; configs: Record<string, string>; created: boolean };
  machine: { cpuModel: string; cores: number; memoryGiB: number; node: string; clientScheduling: Scheduling | null };
  loadAverage: { start: number[]; end: number[] };
  results: Result[];
  ratioToBaseline: number | null;
  ratioOf: string | null;
  ratioNotGiven: string | null;
  warmupRecords: number | null;
}

interface Latency {
  count: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

interface Result {
  workload: string;
  server: string;
  records: number;
  bytes: number;
  seconds: number;
  recordsPerSecond: number;
  megabytesPerSecond: number;
  latency: Latency | null;
  latencyMeasures: string | null;
  acknowledgementLatency?: Latency | null;
  consumedRecords?: number;
  consumedRecordsPerSecond?: number;
  lost?: number;
  warmupRecords?: number;
  senderLag?: Latency | null;
  startOffsets?: Record<string, number>;
  serverMemory: { rssMiB: number | null; rssPeakSampledMiB: number | null; rssPeakMiB: number | null; rssPeakPhaseMiB: number | null } | null;
  brokerFsyncs: BrokerCalls | null;
  brokerWrites: BrokerCalls | null;
}

/**
 * Runs `strata bench ARGS --local --json FILE` (without --local when `local` is false: `args`
 * then name the broker with --server); resolves with the report and the table.
 */
async function bench(name: string, args: string[], local = true): Promise<{ report: Report; stdout: string; stderr: string }> {
  const json = join(directory, `${name}.json`);
  const { stdout, stderr } = await run(process.execPath, [join(PACKAGE_ROOT, 'bin', 'strata.js'), 'bench', ...args, ...(local ? ['--local'] : []), '--json', json], {
    timeout: 120_000,
    // Set for other commands, ignored by --local, whose broker serves plaintext (read, the file would be refused).
    env: { ...process.env, STRATA_LOG_LEVEL: 'warn', ...(local ? { STRATA_TLS_CA_FILE: join(directory, 'no-such-ca.pem') } : {}) },
  });
  return { report: JSON.parse(readFileSync(json, 'utf8')) as Report, stdout, stderr };
}

function expectCommonFields(report: Report, workload: string): void {
  expect(report.tool).toBe('strata bench');
  expect(report.version).toMatch(/^\d+\.\d+\.\d+/);
  expect(report.command).toContain('strata bench');
  expect(report.workload).toBe(workload);
  expect(report.machine.cores).toBeGreaterThan(0);
  expect(report.machine.cpuModel).not.toBe('');
  expect(report.machine.node).toBe(process.version);
  // The bench process inherits this one's CPU scheduling, and names it.
  expect(report.machine.clientScheduling).toEqual(processScheduling());
  expect(report.loadAverage.start).toHaveLength(3);
  expect(report.loadAverage.end).toHaveLength(3);
  expect(report.topic.name).toBe('strata-bench');
  expect(report.topic.created).toBe(true);
  expect(report.parameters.local).toBe(true);
}

function expectThroughput(result: Result, records: number, recordSize: number): void {
  expect(result.records).toBeGreaterThanOrEqual(records);
  expect(result.bytes).toBe(result.records * recordSize);
  expect(result.seconds).toBeGreaterThan(0);
  expect(result.recordsPerSecond).toBeGreaterThan(0);
  expect(result.megabytesPerSecond).toBeGreaterThanOrEqual(0);
}

function expectLatency(latency: Latency | null | undefined, count: number): void {
  expect(latency).toBeTruthy();
  expect(latency!.count).toBe(count);
  expect(latency!.p50Ms).toBeGreaterThan(0);
  expect(latency!.p50Ms).toBeLessThanOrEqual(latency!.p95Ms);
  expect(latency!.p95Ms).toBeLessThanOrEqual(latency!.p99Ms);
  expect(latency!.p99Ms).toBeLessThanOrEqual(latency!.p999Ms);
  // The histogram keeps 3 significant digits; the maximum is exact.
  expect(latency!.p999Ms).toBeLessThanOrEqual(latency!.maxMs * 1.001 + 0.001);
  expect(latency!.meanMs).toBeGreaterThan(0);
}

/**
 * The broker's log writes and fdatasyncs in the phase, from its metrics: at least `atLeast` of
 * each with flush=always (every acknowledged group was written, then synced).
 */
function expectBrokerDiskCalls(result: Result, atLeast: number): void {
  for (const calls of [result.brokerWrites, result.brokerFsyncs]) {
    expect(calls).not.toBeNull();
    expect(calls!.count).toBeGreaterThanOrEqual(atLeast);
    expect(calls!.meanMs).toBeGreaterThan(0);
    expect(calls!.over1Ms).toBeLessThanOrEqual(calls!.count);
    expect(calls!.over5Ms).toBeLessThanOrEqual(calls!.over1Ms);
    expect(calls!.over10Ms).toBeLessThanOrEqual(calls!.over5Ms);
    expect(calls!.over100Ms).toBeLessThanOrEqual(calls!.over10Ms);
  }
}

function expectLocalServerMemory(result: Result): void {
  expect(result.serverMemory).not.toBeNull();
  expect(result.serverMemory!.rssPeakSampledMiB).toBeGreaterThan(10);
  expect(result.serverMemory!.rssPeakMiB).toBeGreaterThanOrEqual(result.serverMemory!.rssPeakSampledMiB! - 1);
  // The table's figure: the larger of the two where the kernel's peak was reset for the phase.
  expect(result.serverMemory!.rssPeakPhaseMiB).toBeGreaterThanOrEqual(result.serverMemory!.rssPeakSampledMiB!);
}

describe('strata bench', () => {
  it('produce: throughput, send-to-acknowledgement latency and the local broker memory', async () => {
    const { report, stdout, stderr } = await bench('produce', ['produce', '--records', '20000', '--partitions', '2']);
    expectCommonFields(report, 'produce');
    expect(report.topic.partitions).toBe(2);
    expect(report.topic.configs.flush).toBe('always');
    // batch-bytes is reported with the size used: the client's default here.
    expect(report.parameters).toMatchObject({ records: 20000, 'record-size': 100, acks: 'all', path: 'raw', producers: 1, 'batch-bytes': 1024 * 1024 });
    expect(report.results).toHaveLength(1);
    const [produce] = report.results;
    expect(produce).toMatchObject({ workload: 'produce', server: 'strata' });
    expectThroughput(produce!, 20000, 100);
    expectLatency(produce!.latency, 20000);
    expect(produce!.latencyMeasures).toContain('acknowledgement');
    expectLocalServerMemory(produce!);
    // flush=always: every acknowledged batch waited for an fdatasync.
    expectBrokerDiskCalls(produce!, 1);
    expect(stdout).toMatch(/^produce broker log writes \(warm-up included\): [\d,]+, mean \d+\.\d{3} ms; over 1 ms: [\d,]+, over 5 ms: [\d,]+, over 10 ms: [\d,]+, over 100 ms: [\d,]+$/m);
    expect(stdout).toMatch(/^produce broker fdatasyncs \(warm-up included\): [\d,]+, mean \d+\.\d{3} ms; over 1 ms: [\d,]+, over 5 ms: [\d,]+, over 10 ms: [\d,]+, over 100 ms: [\d,]+$/m);
    expect(report.ratioToBaseline).toBeNull();
    // Measured after an unmeasured warm-up over the same producer (its floor: 10,000 records).
    expect(report.warmupRecords).toBe(10000);
    expect(stdout).toContain('\nwarm-up: 10,000 records sent unmeasured by the same producers, and acknowledged before the measured records\n');
    // The table names every column; not a terminal, so no live line.
    for (const column of ['records/s', 'MB/s', 'p50', 'p95', 'p99', 'p99.9', 'max', 'server RSS']) expect(stdout).toContain(column);
    expect(stdout).toMatch(/^client scheduling: SCHED_\w+, (nice -?\d+|priority \d+) \(servers this run starts inherit it\)$/m);
    expect(stderr).not.toContain('records/s now');
  });

  it('produce over the plain-records path with two producers', async () => {
    const { report } = await bench('records', ['produce', '--records', '20000', '--path', 'records', '--producers', '2']);
    expect(report.parameters['batch-bytes']).toBe(512 * 1024); // the records path's own default
    const [produce] = report.results;
    expectThroughput(produce!, 20000, 100);
    expectLatency(produce!.latency, 20000);
    expect(produce!.latencyMeasures).toContain('request');
    expect(produce!.senderLag).toBeUndefined(); // no rate, no schedule
    // No Producer on this path: no linger, no buffer to report.
    expect(report.parameters).not.toHaveProperty('linger-ms');
    expect(report.parameters).not.toHaveProperty('buffer-bytes');
  });

  it('produce at a rate: latency from the schedule, the sender\'s lag in it and on a line of its own', async () => {
    const { report, stdout } = await bench('paced', ['produce', '--records', '2000', '--rate', '10000']);
    const [produce] = report.results;
    expectLatency(produce!.latency, 2000);
    expect(produce!.latencyMeasures).toContain("each chunk's scheduled send time (--rate)");
    expect(produce!.senderLag!.count).toBeGreaterThanOrEqual(200); // a chunk of at most 10 records a millisecond
    expect(stdout).toMatch(/^produce sender lag behind schedule \(counted in latency, which starts at each send's scheduled time\): p50 \d+\.\d\d, p99 \d+\.\d\d, p99\.9 \d+\.\d\d, max \d+\.\d\d ms$/m);
  });

  it('consume: fills the topic, then reads it from the earliest offset', async () => {
    const { report, stdout } = await bench('consume', ['consume', '--records', '20000', '--record-size', '200']);
    expectCommonFields(report, 'consume');
    // Measured after an unmeasured fill and read of another topic.
    expect(report.warmupRecords).toBe(10000);
    expect(stdout).toContain('\nwarm-up: an unmeasured fill and read of 10,000 records (topic strata-bench-warmup) before the measured phase\n');
    expect(report.results.map((result) => result.workload)).toEqual(['fill', 'consume']);
    const consume = report.results[1]!;
    expect(consume.server).toBe('strata');
    expectThroughput(consume, 20000, 200);
    expect(consume.records).toBe(20000);
    expect(consume.latency).toBeNull();
    expectLocalServerMemory(consume);
  });

  it('consume as a member of a consumer group', async () => {
    const { report } = await bench('consume-group', ['consume', '--records', '5000', '--group', 'bench-group']);
    expect(report.parameters.group).toBe('bench-group');
    expect(report.results.at(-1)!.records).toBe(5000);
    // Where the read started, per partition; no produce-only option in the parameters.
    expect(report.results.at(-1)!.startOffsets).toEqual({ '0': expect.any(Number) as unknown as number });
    for (const unused of ['acks', 'linger-ms', 'producers', 'rate', 'duration']) expect(report.parameters).not.toHaveProperty(unused);
  });

  it('e2e: every record is consumed, with send-to-consumption latency and the sender\'s lag', async () => {
    const { report, stdout } = await bench('e2e', ['e2e', '--duration', '1', '--rate', '1000', '--warmup-seconds', '0.2']);
    expectCommonFields(report, 'e2e');
    const [e2e] = report.results;
    expect(e2e).toMatchObject({ workload: 'e2e', server: 'strata', records: 1000, consumedRecords: 1000, lost: 0 });
    expect(e2e!.consumedRecordsPerSecond).toBeGreaterThan(0);
    expect(stdout).toMatch(/^e2e consumed: 1,000 of 1,000 records \([\d,]+ records\/s\); lost: 0$/m);
    expect(report.warmupRecords).toBeNull(); // its own, in the row
    // Timed over the schedule's span of the measured records (1,000 at 1,000/s), not from the first one's send to the last one's.
    expect(e2e!.seconds).toBeGreaterThanOrEqual(1 - 1e-9);
    expectLatency(e2e!.latency, 1000);
    expectLatency(e2e!.acknowledgementLatency, 1000);
    expect(e2e!.latencyMeasures).toContain('Consumer');
    expect(report.parameters).toMatchObject({ rate: 1000, duration: 1, 'linger-ms': 0, reader: 'consumer', 'buffer-bytes': 32 * 1024 * 1024 });
    expect(e2e!.warmupRecords).toBe(200); // 0.2 s at 1,000 records/s
    // How late the sender was against its schedule, per record: apart from the latency.
    expect(e2e!.senderLag!.count).toBeGreaterThan(0);
    expect(e2e!.senderLag!.p99Ms).toBeLessThanOrEqual(e2e!.senderLag!.maxMs * 1.001 + 0.001);
    expect(stdout).toMatch(
      /^e2e sender lag behind schedule \(not counted in latency, which starts at send\(\): a 1 ms timer's lag would dominate a sub-millisecond figure\): p50 \d+\.\d\d, p99 \d+\.\d\d, p99\.9 \d+\.\d\d, max \d+\.\d\d ms$/m,
    );
    // At 1,000 records/s with linger 0 the records go in many small batches, each synced.
    expectBrokerDiskCalls(e2e!, 10);
    expect(stdout).toMatch(/^e2e broker log writes \(warm-up included\): [\d,]+, mean \d+\.\d{3} ms; over 1 ms/m);
    expect(stdout).toMatch(/^e2e broker fdatasyncs \(warm-up included\): [\d,]+, mean \d+\.\d{3} ms; over 1 ms/m);
  });

  it('e2e warms up for 5 s unless told otherwise', async () => {
    const help = await runCli(['bench', 'e2e', '--help']);
    expect(help.code).toBe(0);
    const warmup = help.stdout.slice(help.stdout.indexOf('--warmup-seconds'), help.stdout.indexOf('--linger-ms'));
    expect(warmup.replace(/\s+/g, ' ')).toContain('[default: 5]');
  });

  it('e2e read with Subscribe (server push)', async () => {
    const { report } = await bench('e2e-subscribe', ['e2e', '--duration', '1', '--rate', '500', '--warmup-seconds', '0', '--reader', 'subscribe', '--partitions', '2']);
    const [e2e] = report.results;
    expect(e2e).toMatchObject({ records: 500, lost: 0 });
    expectLatency(e2e!.latency, 500);
    expect(e2e!.latencyMeasures).toContain('Subscribe');
  });

  it('baseline: the same produce load against the no-op server and Strata, and the ratio', async () => {
    const { report, stdout } = await bench('baseline', ['baseline', '--records', '20000']);
    expectCommonFields(report, 'baseline produce');
    expect(report.results.map((result) => [result.workload, result.server])).toEqual([
      ['produce', 'no-op'],
      ['produce', 'strata'],
    ]);
    for (const result of report.results) {
      expectThroughput(result, 20000, 100);
      expectLatency(result.latency, 20000);
      expectLocalServerMemory(result);
    }
    const [noop, strata] = report.results;
    // Only a broker has disk calls to report.
    expect(noop!.brokerFsyncs).toBeNull();
    expect(noop!.brokerWrites).toBeNull();
    expectBrokerDiskCalls(strata!, 1);
    expect(report.ratioToBaseline).toBeCloseTo(strata!.recordsPerSecond / noop!.recordsPerSecond, 2);
    expect(report.ratioOf).toBe('records/s');
    // Produce runs as fast as it can, lingering 5 ms, unless told otherwise.
    expect(report.parameters['linger-ms']).toBe(5);
    expect(report.parameters).not.toHaveProperty('rate');
    expect(report.parameters.workload).toBe('produce');
    for (const unused of ['group', 'duration', 'warmup-seconds', 'reader']) expect(report.parameters).not.toHaveProperty(unused);
    expect(stdout).toContain('Strata / no-op server (records/s)');
    expect(report.ratioNotGiven).toBeNull();
    // Each server had an unmeasured warm-up first (its floor: 10,000 records).
    expect(report.warmupRecords).toBe(10000);
    expect(stdout).toContain('\nwarm-up: 10,000 records sent unmeasured on each server by the same producers, and acknowledged before the measured records\n');
  });

  it('baseline of a produce at a rate: the p99 latency is compared, both servers sending the rate', async () => {
    const { report, stdout } = await bench('baseline-rate', ['baseline', '--records', '2000', '--rate', '10000']);
    const [noop, strata] = report.results;
    expect(report.ratioOf).toBe('p99 latency');
    expect(report.ratioToBaseline).toBeCloseTo(strata!.latency!.p99Ms / noop!.latency!.p99Ms, 2);
    expect(stdout).toContain('Strata / no-op server (p99 latency)');
  });

  it('baseline of the catch-up read', async () => {
    const { report } = await bench('baseline-consume', ['baseline', '--workload', 'consume', '--records', '20000']);
    expect(report.workload).toBe('baseline consume');
    expect(report.results.map((result) => [result.workload, result.server])).toEqual([
      ['fill', 'no-op'],
      ['consume', 'no-op'],
      ['fill', 'strata'],
      ['consume', 'strata'],
    ]);
    expect(report.ratioToBaseline).toBeGreaterThan(0);
    expect(report.warmupRecords).toBe(10000);
  });

  it('baseline of e2e latency: the no-op server relays each batch, nothing stored or synced', async () => {
    const { report, stdout } = await bench('baseline-e2e', ['baseline', '--workload', 'e2e', '--duration', '0.2', '--warmup-seconds', '0.1']);
    expectCommonFields(report, 'baseline e2e');
    // The e2e defaults, not the produce ones: 10,000 records/s, no linger.
    expect(report.parameters).toMatchObject({ rate: 10000, duration: 0.2, 'linger-ms': 0, reader: 'consumer' });
    expect(report.results.map((result) => [result.workload, result.server])).toEqual([
      ['e2e', 'no-op'],
      ['e2e', 'strata'],
    ]);
    for (const result of report.results) {
      expect(result).toMatchObject({ records: 2000, lost: 0 });
      expectLatency(result.latency, 2000);
    }
    const [noop, strata] = report.results;
    expect(report.ratioOf).toBe('p99 latency');
    expect(report.ratioToBaseline).toBeCloseTo(strata!.latency!.p99Ms / noop!.latency!.p99Ms, 2);
    expect(stdout).toContain('Strata / no-op server (p99 latency)');
    expect(stdout).toContain('e2e (no-op) sender lag behind schedule');
    expect(report.warmupRecords).toBeNull(); // each e2e phase warms up itself
  });

  it('reports the disk calls of a broker at --server when given its metrics address', async () => {
    const broker = await startTestBroker();
    try {
      const server = ['--server', broker.address, '--records', '5000'];
      const withMetrics = await bench('server-metrics', ['produce', ...server, '--topic', 'metered', '--server-metrics', broker.metricsAddress!], false);
      const [produce] = withMetrics.report.results;
      expect(withMetrics.report.parameters.local).toBe(false);
      expect(produce!.serverMemory).toBeNull(); // not a process this run started
      expectBrokerDiskCalls(produce!, 1);
      expect(withMetrics.stdout).toMatch(/^produce broker log writes \(warm-up included\): [\d,]+, mean/m);
      // The counts are the phase's alone: the writes of the run before are not in them.
      const writesBefore = await brokerWriteCount(broker.metricsAddress!);
      const again = await bench('server-metrics-again', ['produce', ...server, '--topic', 'metered', '--server-metrics', broker.metricsAddress!], false);
      const writesAgain = again.report.results[0]!.brokerWrites!.count;
      expect(writesAgain).toBeGreaterThanOrEqual(1);
      expect(writesAgain).toBeLessThanOrEqual((await brokerWriteCount(broker.metricsAddress!)) - writesBefore);
      // Without the metrics address there is nothing to read them from.
      const without = await bench('server-no-metrics', ['produce', ...server, '--topic', 'unmetered'], false);
      expect(without.report.results[0]!.brokerWrites).toBeNull();
      expect(without.report.results[0]!.brokerFsyncs).toBeNull();
      expect(without.stdout).not.toContain('broker log writes');
      // A metrics address that does not answer stops the run before any load, in one line.
      const closed = `127.0.0.1:${await unusedPort()}`;
      const unreachable = await runCli(['bench', 'produce', ...server, '--topic', 'unread', '--server-metrics', closed]);
      expect(unreachable.code).toBe(1);
      expect(unreachable.stderr).toBe(`strata: cannot read the broker's metrics at ${closed} (--server-metrics): fetch failed: connect ECONNREFUSED ${closed}\n`);
      expect(unreachable.stdout).toBe('');
    } finally {
      await broker.dispose();
    }
  });

  // A test each: run one after another in a single test, they took 30-60 s on a slow machine,
  // against its 60 s timeout.
  const refusals: [string[], string][] = [
    [['e2e', '--rate', '1', '--duration', '0.4'], '--rate × --duration must give at least 1 measured record for e2e, got 1 × 0.4'],
    [['baseline', '--workload', 'e2e', '--rate', '2', '--duration', '0.2'], '--rate × --duration must give at least 1 measured record for e2e, got 2 × 0.2'],
    [['baseline', '--workload', 'consume', '--path', 'records'], 'baseline --workload consume cannot fill with --path records: the no-op server keeps no plain records to read back'],
    [['baseline', '--workload', 'consume', '--group', 'g'], 'baseline --workload consume cannot read with --group: the no-op server has no consumer groups'],
    // A baseline runs with its workload's options only: another would be ignored, or reported as if it applied.
    [['baseline', '--workload', 'consume', '--rate', '5000'], '--rate is not used by baseline --workload consume, which takes the options of strata bench consume'],
    [['baseline', '--workload', 'e2e', '--records', '5'], '--records is not used by baseline --workload e2e, which takes the options of strata bench e2e'],
    [['baseline', '--duration', '5'], '--duration is not used by baseline --workload produce, which takes the options of strata bench produce'],
    // What yargs makes of a number option given something else (NaN) reads as the other commands say it.
    [['produce', '--records', 'abc'], '--records must be a positive integer, got a non-number'],
    [['e2e', '--rate', 'fast'], '--rate must be a positive number, got a non-number'],
    [['e2e', '--warmup-seconds', 'none'], '--warmup-seconds must be a non-negative number, got a non-number'],
    [['produce', '--record-size', '100000000'], '--record-size must be at most 1048448 (a record in a batch of the default max.message.bytes), got 100000000'],
    [['produce', '--server-metrics', '127.0.0.1:9464'], '--server-metrics is for a broker at --server; with --local the benchmark reads its own broker\'s metrics'],
    [['produce', '--server-metrics', 'metrics'], '--server-metrics must be HOST:PORT, got "metrics"'],
    [['produce', '--server-metrics', '127.0.0.1:1', '--server-metrics', '127.0.0.1:2'], '--server-metrics was given 2 times; it takes one value'],
    // The broker --local starts serves plaintext and asks for no token.
    [['produce', '--token', 'secret'], '--token is for a broker at --server: the broker --local starts serves plaintext and asks for no token'],
    [['e2e', '--tls-ca-file=ca.pem'], '--tls-ca-file is for a broker at --server: the broker --local starts serves plaintext and asks for no token'],
    [['consume', '--tlsCaFile', 'ca.pem'], '--tls-ca-file is for a broker at --server: the broker --local starts serves plaintext and asks for no token'],
    // Given, yet the run would not use them (options with a default too: what counts is the command line).
    [['produce', '--server', '127.0.0.1:50051'], '--server does not go with --local, which starts a broker of its own: give one of them'],
    [['e2e', '--server=127.0.0.1:50051'], '--server does not go with --local, which starts a broker of its own: give one of them'],
    [['consume', '--acks', 'none'], '--acks none does not apply to consume: its fill always sends with acks=all, so that every record is readable when the read starts'],
    [['baseline', '--workload', 'consume', '--acks', 'leader'], '--acks leader does not apply to baseline --workload consume: its fill always sends with acks=all, so that every record is readable when the read starts'],
    [['produce', '--path', 'records', '--linger-ms', '5'], '--linger-ms is not used by --path records, which sends plain-records requests itself (no Producer): its bound is the requests in flight'],
    [['baseline', '--path', 'records', '--bufferBytes', '1048576'], '--buffer-bytes is not used by --path records, which sends plain-records requests itself (no Producer): its bound is the requests in flight'],
  ];

  it('refuses options that do not fit together: --profile-server without --local, e2e records too small for their timestamp', async () => {
    await expect(run(process.execPath, [join(PACKAGE_ROOT, 'bin', 'strata.js'), 'bench', 'produce', '--profile-server', directory])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--profile-server needs --local'),
    });
    await expect(run(process.execPath, [join(PACKAGE_ROOT, 'bin', 'strata.js'), 'bench', 'e2e', '--local', '--record-size', '4'])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('at least 8'),
    });
  });

  it.each(refusals)('refuses bench %j with one line (exit 2)', async (args, message) => {
    const result = await runCli(['bench', ...args, '--local']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`strata: ${message}\n`);
  });

  it('refuses a baseline at a broker on another machine, and a --json file it cannot write', async () => {
    // Refused before any run: the ratio would measure the network; the figures would be lost.
    const elsewhere = await runCli(['bench', 'baseline', '--server', '192.0.2.1:50051']);
    expect([elsewhere.code, elsewhere.stderr]).toEqual([
      2,
      "strata: baseline compares with a no-op server on this machine's loopback: run it with --local, or with --server at a broker on this machine (a 127.x.x.x address, ::1 or localhost), not 192.0.2.1:50051\n",
    ]);
    const missing = join(directory, 'no-such-directory', 'figures.json');
    const unwritable = await runCli(['bench', 'produce', '--local', '--json', missing]);
    expect([unwritable.code, unwritable.stderr]).toEqual([2, `strata: --json ${missing}: cannot write there: ENOENT (no such file or directory)\n`]);
    const aDirectory = await runCli(['bench', 'produce', '--local', '--json', directory]);
    expect([aDirectory.code, aDirectory.stderr]).toEqual([2, `strata: --json ${directory}: it is a directory; give a file name\n`]);
  });
});

/** How many log writes the broker has timed since it started, from its /metrics. */
async function brokerWriteCount(metricsAddress: string): Promise<number> {
  const body = await (await fetch(`http://${metricsAddress}/metrics`)).text();
  const count = /^strata_log_write_duration_seconds_count (\d+)$/m.exec(body)?.[1];
  expect(count).toBeDefined();
  return Number(count);
}


describe.skipIf(!existsSync('/proc/self/cmdline'))('strata bench whose local broker dies', () => {
  it('fails at once, in one line with how the broker ended and its last output, and removes its data directory', { timeout: 60_000 }, async () => {
    const parent = temporaryDirectory('strata-bench-dies-');
    // A slow load (1,000 records/s for 1,000 s) that is still running when the broker dies.
    const cli = startCli(['bench', 'produce', '--local', '--records', '1000000', '--rate', '1000'], { env: { TMPDIR: parent } });
    try {
      await waitUntil(() => processesMentioning(parent).length > 0, 'the local broker to start', 30_000);
      const firstSegment = join(parent, readdirSync(parent)[0]!, 'topics', 'strata-bench', '0', '00000000000000000000.log');
      await waitUntil(() => existsSync(firstSegment) && statSync(firstSegment).size > 0, 'records in the first segment', 30_000);
      for (const pid of processesMentioning(parent)) process.kill(pid, 'SIGKILL');
      // The producer alone would retry for its delivery timeout (120 s) before giving up.
      const exit = await Promise.race([cli.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 20_000))]);
      expect(exit).toEqual({ code: 1, signal: null });
      expect(cli.stderr).toMatch(/^strata: the local broker exited during the run \(signal SIGKILL\)\nlast broker output:\n/);
      expect(cli.lines).toEqual([]); // no figures
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      cli.kill();
      for (const pid of processesMentioning(parent)) process.kill(pid, 'SIGKILL');
      removeDirectory(parent);
    }
  });
});

describe.skipIf(!existsSync('/proc/self/cmdline'))('strata bench interrupted', () => {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal}: stops the local broker, removes its data directory and exits ${code}`, { timeout: 60_000 }, async () => {
      const parent = temporaryDirectory(`strata-bench-${signal}-`);
      // A slow load (1,000 records/s for 1,000 s) that is still running when the signal comes.
      const cli = startCli(['bench', 'produce', '--local', '--records', '1000000', '--rate', '1000'], { env: { TMPDIR: parent } });
      try {
        await waitUntil(() => processesMentioning(parent).length > 0, 'the local broker to start', 30_000);
        expect(processesMentioning(parent)).toHaveLength(1); // the broker, on a data directory under `parent`
        expect(readdirSync(parent)).toHaveLength(1);
        // The load under way: records in the topic's first segment.
        const firstSegment = join(parent, readdirSync(parent)[0]!, 'topics', 'strata-bench', '0', '00000000000000000000.log');
        const written = (): boolean => existsSync(firstSegment) && statSync(firstSegment).size > 0;
        await waitUntil(written, 'records in the first segment', 30_000);
        cli.child.kill(signal);
        const exit = await Promise.race([cli.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 30_000))]);
        expect(exit).toEqual({ code, signal: null });
        expect(processesMentioning(parent)).toEqual([]);
        expect(readdirSync(parent)).toEqual([]);
      } finally {
        cli.kill();
        for (const pid of processesMentioning(parent)) process.kill(pid, 'SIGKILL');
        removeDirectory(parent);
      }
    });
  }

  it('a second SIGINT while the local broker is still starting: kills it, removes its data directory and exits 130', { timeout: 60_000 }, async () => {
    const parent = temporaryDirectory('strata-bench-second-SIGINT-');
    // Preloaded into every process of the run: holds `strata serve` (the local broker) at its
    // start for good, so that the broker never gets ready and the run never holds it.
    const holdBroker = join(directory, 'hold-broker-start.cjs');
    writeFileSync(holdBroker, "if (process.argv.includes('serve')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);\n");
    const cli = startCli(['bench', 'produce', '--local', '--records', '1000'], { env: { TMPDIR: parent, NODE_OPTIONS: `--require "${holdBroker}"` } });
    try {
      // The broker's process runs on its data directory under `parent`: the run handles signals.
      await waitUntil(() => processesMentioning(parent).length > 0, 'the local broker to be starting', 30_000);
      expect(readdirSync(parent)).toEqual([expect.stringMatching(/^strata-bench-/)]);
      // The first waits for the start (until its bound, SERVER_START_TIMEOUT_MS), then stops the
      // broker; the second, sent once the first has been delivered (two signals pending at once
      // would be one), does not wait.
      cli.child.kill('SIGINT');
      await waitUntil(() => !signalPending(cli.child.pid!, 'SIGINT'), 'the first SIGINT to be delivered');
      cli.child.kill('SIGINT');
      const exit = await Promise.race([cli.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), SERVER_START_TIMEOUT_MS / 2))]);
      expect(exit).toEqual({ code: 130, signal: null });
      expect(readdirSync(parent)).toEqual([]);
      await waitUntil(() => processesMentioning(parent).length === 0, 'the local broker to be gone');
      expect(cli.lines).toEqual([]);
    } finally {
      cli.kill();
      for (const pid of processesMentioning(parent)) process.kill(pid, 'SIGKILL');
      removeDirectory(parent);
    }
  });
});

/** Whether `signal` was sent to `pid` and not yet delivered (its bit in SigPnd or ShdPnd of /proc/PID/status). */
function signalPending(pid: number, signal: NodeJS.Signals): boolean {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const bit = 1n << BigInt(constants.signals[signal] - 1);
  return ['SigPnd', 'ShdPnd'].some((field) => (BigInt(`0x${new RegExp(`^${field}:\\s+([0-9a-f]+)$`, 'm').exec(status)![1]}`) & bit) !== 0n);
}
