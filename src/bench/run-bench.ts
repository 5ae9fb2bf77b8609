/**
 * One `strata bench` run: picks the server (the broker at --server, or one started on a
 * temporary directory with --local), runs the workload's phases and assembles the report.
 *
 * `baseline` runs the same workload twice in one run: first against the no-op server (see
 * noop-server.ts), then against Strata, and reports how close the broker comes to what the
 * transport alone allows on this machine: for produce and consume, Strata's records/s as a
 * fraction of the no-op server's; for e2e, Strata's p99 latency as a multiple of the no-op
 * server's (which relays each batch to the reader as it arrives, storing and syncing nothing).
 * Both servers run as child processes of this one, with the same client code and settings, one
 * at a time, the no-op server first, each after an unmeasured warm-up (see baselineWarmupRecords).
 *
 * Ctrl-C or SIGTERM during a run stops the servers it started and removes a local broker's
 * data directory before the process exits (see started-servers.ts).
 */
import type { Logger } from '../common/logger.js';
import { readDiskCallHistograms } from './broker-disk-calls.js';
import { startLocalBroker } from './local-broker.js';
import { startNoopServerProcess } from './noop-server.js';
import { type BenchSettings, type PhaseContext, type PhaseOutcome, type Workload, runPhase } from './phases.js';
import type { Progress } from './progress.js';
import { StartedServers } from './started-servers.js';
import { type BaselineRatio, type BenchReport, type ResultRow, loadAverage, machineInfo, packageVersion } from './report.js';

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
 * Records of the warm-up run against each server in a baseline of produce or consume. The no-op
 * server is measured first, in the same client process as Strata after it: without a warm-up
 * its phase would pay for V8 compiling the client's hot paths and Strata's would find them
 * compiled, which biased the ratio in Strata's favour (0.94 against 0.78–0.79 for 100 B
 * records on the project's 2-core machine). Each server is a fresh process too, whose own hot
 * paths V8 compiles during the first moments of its phase, and a phase of a few seconds is
 * then measured partly cold. So before each measured phase an unmeasured run of the same
 * workload (same settings, another topic) goes to the same server, and both are compared warm:
 * a tenth of the records, at least WARMUP_RECORDS_MIN (enough for V8 to optimise the send and
 * receive paths), at most WARMUP_RECORDS_MAX (a bound on its time). e2e needs none: each of
 * its phases warms up before it measures (--warmup-seconds).
 */
export function baselineWarmupRecords(records: number): number {
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
    return await body({ ...base, connection: { server: broker.server.address }, server: broker.server, metricsAddress: broker.metricsAddress });
  } catch (error) {
    if (error instanceof Error && broker.server.child.exitCode !== null) error.message += `\nlast broker output:\n${broker.server.recentOutput}`;
    throw error;
  } finally {
    await broker.stop();
  }
}

async function withNoop(run: BenchRun, servers: StartedServers, body: (context: PhaseContext) => Promise<PhaseOutcome>): Promise<PhaseOutcome> {
  const noop = await servers.track(() => startNoopServerProcess());
  try {
    return await body({ settings: run.settings, connection: { server: noop.address }, server: noop, metricsAddress: null, serverKind: 'no-op', logger: run.logger, progress: run.progress });
  } finally {
    await noop.stop();
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
  let warmupRecords: number | null = null;
  if (run.workload === 'baseline') {
    const workload = run.baselineWorkload;
    if (workload !== 'e2e') warmupRecords = baselineWarmupRecords(run.settings.records);
    const warmedUp = async (context: PhaseContext): Promise<PhaseOutcome> => {
      if (warmupRecords !== null) await runPhase(workload, { ...context, settings: { ...context.settings, topic: `${context.settings.topic}-warmup`, records: warmupRecords } });
      return runPhase(workload, context);
    };
    const baseline = await withNoop(run, servers, warmedUp);
    const strata = await withStrata(run, servers, warmedUp);
    const measured = (rows: ResultRow[]): ResultRow => rows.find((row) => row.workload === workload)!;
    ratio = baselineRatio(workload, measured(strata.rows), measured(baseline.rows));
    outcome = { rows: [...baseline.rows, ...strata.rows], topic: strata.topic };
  } else {
    const workload = run.workload;
    outcome = await withStrata(run, servers, (context) => runPhase(workload, context));
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
    baselineWarmupRecords: warmupRecords,
  };
}

/**
 * Strata's figure against the no-op server's: records/s, or for e2e the p99 latency; null when
 * a side has no latency (no measured record arrived).
 */
export function baselineRatio(workload: Workload, strata: ResultRow, noop: ResultRow): BaselineRatio | null {
  const rounded = (value: number): number => Math.round(value * 1000) / 1000;
  if (workload === 'e2e') return strata.latency === null || noop.latency === null ? null : { value: rounded(strata.latency.p99Ms / noop.latency.p99Ms), of: 'p99 latency' };
  return { value: rounded(strata.recordsPerSecond / noop.recordsPerSecond), of: 'records/s' };
}
