/**
 * One `strata bench` run: picks the server (the broker at --server, or one started on a
 * temporary directory with --local), runs the workload's phases and assembles the report.
 *
 * `baseline` runs the same workload twice in one run: first against the no-op server (see
 * noop-server.ts), then against Strata, and reports how close the broker comes to what the
 * transport alone allows on this machine: for produce and consume, Strata's records/s as a
 * fraction of the no-op server's; for e2e, and for produce at a --rate (which both servers
 * meet, so their records/s are the same by construction), Strata's p99 latency as a multiple of
 * the no-op server's (which relays each batch to the reader as it arrives, storing and syncing
 * nothing). No ratio is given when either side lost records: its p99 would not be a latency.
 * Both servers run as child processes of this one, with the same client code and settings, one
 * at a time, the no-op server first. Every produce or consume phase, baseline or not, follows an
 * unmeasured warm-up (see warmupRecordsFor).
 *
 * Ctrl-C or SIGTERM during a run stops the servers it started and removes a local broker's
 * data directory before the process exits (see started-servers.ts). A server this run started
 * that exits while the run uses it (a broker that crashed, or was killed) fails the run at once,
 * with its exit code or signal and its last output, rather than when the client gives up on it.
 */
import type { Logger } from '../common/logger.js';
import { readDiskCallHistograms } from './broker-disk-calls.js';
import { startLocalBroker } from './local-broker.js';
import { startNoopServerProcess } from './noop-server.js';
import { type BenchSettings, type PhaseContext, type PhaseOutcome, type Workload, runPhase } from './phases.js';
import type { Progress } from './progress.js';
import type { ServerProcess } from './server-process.js';
import { StartedServers } from './started-servers.js';
import { type BaselineRatio, type BenchReport, type ResultRow, loadAverage, machineInfo } from './report.js';
import { packageVersion } from '../common/package-root.js';

export type BenchWorkload = Workload | 'baseline';

export interface BenchRun {
  workload: BenchWorkload;
  /** For baseline: the workload compared. */
  baselineWorkload: Workload;
  settings: BenchSettings;
  /** Every option as given (for the report). */
  parameters: Record<string, unknown>;
  command: string;
  logger: Logger;
  progress: Progress;
}

const WARMUP_RECORDS_MIN = 10_000;
const WARMUP_RECORDS_MAX = 200_000;

/**
 * Records of the unmeasured warm-up before each produce or consume phase. In a baseline the
 * no-op server is measured first, in the same client process as Strata after it: without a
 * warm-up its phase would pay for V8 compiling the client's hot paths and Strata's would find
 * them compiled, which biased the ratio in Strata's favour (0.94 against 0.78–0.79 for 100 B
 * records on the project's 2-core machine). Each server is a fresh process too, whose own hot
 * paths V8 compiles during the first moments of its phase, and a phase of a few seconds is
 * then measured partly cold; a stand-alone produce or consume is no different. So before each
 * measured phase the same workload runs unmeasured against the same server (see phases.ts:
 * produce sends over the producers it then measures, so their connection, InitProducer and
 * metadata are set up too; consume reads another topic): a tenth of the records, at least
 * WARMUP_RECORDS_MIN (enough for V8 to optimise the send and receive paths), at most
 * WARMUP_RECORDS_MAX (a bound on its time). e2e needs none: each of its phases warms up before
 * it measures (--warmup-seconds).
 */
export function warmupRecordsFor(records: number): number {
  return Math.min(WARMUP_RECORDS_MAX, Math.max(WARMUP_RECORDS_MIN, Math.round(records / 10)));
}

/** Runs `body` against Strata: the local broker (started and stopped here) or --server. */
async function withStrata(run: BenchRun, servers: StartedServers, body: (context: PhaseContext) => Promise<PhaseOutcome>): Promise<PhaseOutcome> {
  const base = { settings: run.settings, serverKind: 'strata' as const, logger: run.logger, progress: run.progress };
  if (!run.settings.local) return body({ ...base, connection: { server: run.settings.server, ...run.settings.access }, server: null, metricsAddress: run.settings.serverMetrics });
  const serveArgs = [
    ...(run.settings.writeMode === null ? [] : ['--write-mode', run.settings.writeMode]),
    ...(run.settings.smallIo === null ? [] : ['--small-io', run.settings.smallIo]),
  ];
  const broker = await servers.track(() => startLocalBroker({ profileDirectory: run.settings.profileServer, serveArgs }));
  try {
    return await whileServerRuns(broker.server, 'broker', body({ ...base, connection: { server: broker.server.address }, server: broker.server, metricsAddress: broker.metricsAddress }));
  } finally {
    await broker.stop();
  }
}

async function withNoop(run: BenchRun, servers: StartedServers, body: (context: PhaseContext) => Promise<PhaseOutcome>): Promise<PhaseOutcome> {
  const noop = await servers.track(() => startNoopServerProcess());
  try {
    return await whileServerRuns(noop, 'no-op server', body({ settings: run.settings, connection: { server: noop.address }, server: noop, metricsAddress: null, serverKind: 'no-op', logger: run.logger, progress: run.progress }));
  } finally {
    await noop.stop();
  }
}

/**
 * `phases`, failed at once if `server` exits under them: the loads' clients would notice only
 * when they give up on it (a producer after its delivery timeout, 120 s). The failure of a
 * server that exited carries its last output.
 */
async function whileServerRuns(server: ServerProcess, name: string, phases: Promise<PhaseOutcome>): Promise<PhaseOutcome> {
  // Once the server's exit has failed the run, the phases' own failure comes later and is nobody's to report.
  phases.catch(() => undefined);
  try {
    return await Promise.race([phases, server.unexpectedExit]);
  } catch (error) {
    if (error instanceof Error && server.hasExited) error.message += `\nlast ${name} output:\n${server.recentOutput}`;
    throw error;
  }
}

export async function runBench(run: BenchRun): Promise<BenchReport> {
  if (run.settings.serverMetrics !== null) await checkServerMetrics(run.settings.serverMetrics);
  const servers = new StartedServers();
  return servers.run(() => runWorkload(run, servers));
}

/**
 * Reads --server-metrics once before any load, so that a wrong address stops the run with its
 * reason instead of leaving the disk calls out of every phase.
 */
async function checkServerMetrics(address: string): Promise<void> {
  try {
    await readDiskCallHistograms(address);
  } catch (error) {
    throw new Error(`cannot read the broker's metrics at ${address} (--server-metrics): ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

async function runWorkload(run: BenchRun, servers: StartedServers): Promise<BenchReport> {
  const startedAt = new Date().toISOString();
  const loadAtStart = loadAverage();
  let outcome: PhaseOutcome;
  let ratio: BaselineRatio | null = null;
  const workload = run.workload === 'baseline' ? run.baselineWorkload : run.workload;
  const warmupRecords = workload === 'e2e' ? null : warmupRecordsFor(run.settings.records);
  const warmedUp = (context: PhaseContext): Promise<PhaseOutcome> => runPhase(workload, context, warmupRecords ?? 0);
  if (run.workload === 'baseline') {
    const baseline = await withNoop(run, servers, warmedUp);
    const strata = await withStrata(run, servers, warmedUp);
    const measured = (rows: ResultRow[]): ResultRow => rows.find((row) => row.workload === workload)!;
    ratio = baselineRatio(workload, measured(strata.rows), measured(baseline.rows), run.settings.rate !== null);
    outcome = { rows: [...baseline.rows, ...strata.rows], topic: strata.topic };
  } else {
    outcome = await withStrata(run, servers, warmedUp);
  }
  const { description, created } = outcome.topic;
  return {
    tool: 'strata bench',
    version: packageVersion(),
    command: run.command,
    startedAt,
    workload: run.workload === 'baseline' ? `baseline ${run.baselineWorkload}` : run.workload,
    parameters: run.parameters,
    topic: { name: description.name, partitions: description.partitions.length, configs: description.configs, created },
    machine: machineInfo(),
    loadAverage: { start: loadAtStart, end: loadAverage() },
    results: outcome.rows,
    ratioToBaseline: ratio?.value ?? null,
    ratioOf: ratio?.of ?? null,
    ratioNotGiven: ratio?.notGiven ?? null,
    warmupRecords,
  };
}

/**
 * Strata's figure against the no-op server's: records/s, or the p99 latency for e2e and for
 * produce at a rate (`rated`: both servers then send the rate, so their records/s are equal by
 * construction). Not given (`value` null, `notGiven` says why) when a side lost records, whose
 * percentiles then count them at a lower bound, or has no latency.
 */
export function baselineRatio(workload: Workload, strata: ResultRow, noop: ResultRow, rated: boolean): BaselineRatio {
  const rounded = (value: number): number => Math.round(value * 1000) / 1000;
  if (workload === 'consume' || (workload === 'produce' && !rated)) return { value: rounded(strata.recordsPerSecond / noop.recordsPerSecond), of: 'records/s', notGiven: null };
  const of = 'p99 latency';
  const losses = [[strata, 'Strata'], [noop, 'the no-op server']] as const;
  const lost = losses.filter(([row]) => (row.lost ?? 0) > 0).map(([row, name]) => `${name} lost ${row.lost} of ${row.records} records`);
  if (lost.length > 0) return { value: null, of, notGiven: `${lost.join(' and ')}: a p99 with records missing is not their latency` };
  if (strata.latency === null || noop.latency === null) return { value: null, of, notGiven: 'a side has no latency' };
  return { value: rounded(strata.latency.p99Ms / noop.latency.p99Ms), of, notGiven: null };
}
