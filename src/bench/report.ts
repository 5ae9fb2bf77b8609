/**
 * What a benchmark run reports: a table for people and, with `--json FILE`, every figure and
 * every parameter in one JSON document. The JSON fields (all durations in ms unless the name
 * says otherwise; MB = 10^6 bytes):
 *
 *   tool, version, command          "strata bench", the package version, the argv of the run
 *   startedAt                       ISO time
 *   workload                        produce | consume | e2e | baseline produce | baseline consume | baseline e2e
 *   parameters                      every option of the workload run, given or defaulted (the topic's partitions under
 *                                   topic; --fetch-bytes, --write-mode and --small-io only when given)
 *   topic                           { name, partitions, configs, created }
 *   machine                         { cpuModel, cores, memoryGiB, platform, release, node, clientNodeFlags,
 *                                     clientScheduling: { policy, nice, realtimePriority } or null }
 *   loadAverage                     { start: [1, 5, 15 min], end: [...] }
 *   results[]                       one per measured phase:
 *     workload, server              e.g. "produce", "strata" | "no-op"
 *     records, bytes, seconds       what was measured (bytes: keys and values)
 *     recordsPerSecond, megabytesPerSecond
 *     latency                       { count, meanMs, p50Ms, p95Ms, p99Ms, p999Ms, maxMs } or null; no
 *                                   percentile above maxMs; e2e: lost records counted (see lost)
 *     latencyMeasures               what the latency is the time of
 *     acknowledgementLatency        e2e only: send to the producer's acknowledgement
 *     consumedRecords               e2e only: measured records that arrived
 *     consumedRecordsPerSecond      e2e only: consumedRecords over the measured time (records/s counts
 *                                   those sent)
 *     lost                          e2e only: measured records that never arrived, counted in latency at
 *                                   the time waited for them after the last send (a lower bound)
 *     warmupRecords                 e2e only: records sent before the measurement (read, not counted)
 *     startOffsets                  consume only: { partition: offset } where the read started
 *     senderLag                     e2e, and produce with --rate: { count, meanMs, p50Ms, ... maxMs } of how
 *                                   late the sender sent each measured record (produce: each chunk of sends,
 *                                   or request) against its schedule; produce counts it in the latency too
 *                                   (which starts at the schedule), e2e does not (its latency starts at send())
 *     serverMemory                  { rssMiB, rssPeakSampledMiB, rssPeakMiB, rssPeakPhaseMiB } of a local
 *                                   server (see server-process.ts), else null
 *     cpu                           { clientSeconds, clientMicrosPerRecord, serverSeconds, serverMicrosPerRecord }
 *                                   (server: local servers only, else null)
 *     brokerFsyncs                  { count, meanMs, over1Ms, over5Ms, over10Ms, over100Ms }: the broker's fdatasyncs
 *                                   from before the phase's load to after it (e2e, produce: warm-up included), from its
 *                                   metrics (see broker-disk-calls.ts): a local broker's, or --server-metrics;
 *                                   null for --server without --server-metrics, for the no-op server, and
 *                                   when a reading failed (a warning on stderr says why)
 *     brokerWrites                  the same for the broker's log writes (also null for a broker too old to
 *                                   time them)
 *   ratioToBaseline                 baseline only: Strata's figure ÷ the no-op server's (see ratioOf); null
 *                                   when not given (see ratioNotGiven)
 *   ratioOf                         baseline only: "records/s" (produce, consume) or "p99 latency" (e2e, and
 *                                   produce with --rate, at which both servers send the same records/s)
 *   ratioNotGiven                   baseline only: why there is no ratio (a side lost records, or has no
 *                                   latency); else null
 *   warmupRecords                   produce or consume (baseline or not): records of the unmeasured warm-up
 *                                   before each measured phase (produce: over the same producers; consume:
 *                                   a phase of its own on <topic>-warmup); null for e2e (see its rows)
 */
import { plural } from '../common/plural.js';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { BROKER_NODE_FLAGS } from '../config/node-flags.js';
import type { BrokerCalls, BrokerDiskCalls } from './broker-disk-calls.js';
import type { LatencyRecorder, LatencySummary } from './latency-recorder.js';
import { formatInteger } from './progress.js';
import { formatScheduling, processScheduling, type Scheduling } from './scheduling.js';
import type { ServerMemory } from './server-process.js';

export interface ResultRow {
  workload: string;
  server: 'strata' | 'no-op';
  records: number;
  bytes: number;
  seconds: number;
  recordsPerSecond: number;
  megabytesPerSecond: number;
  latency: LatencySummary | null;
  latencyMeasures: string | null;
  acknowledgementLatency?: LatencySummary | null;
  /** e2e: measured records that arrived, and how many a second over the measured time. */
  consumedRecords?: number;
  consumedRecordsPerSecond?: number;
  /** e2e: measured records that never arrived (counted in the latency at a lower bound). */
  lost?: number;
  /** e2e: records sent before the measurement started (read, not counted). */
  warmupRecords?: number;
  senderLag?: LatencySummary | null;
  /** consume: where the read started, by partition. */
  startOffsets?: Record<string, number>;
  serverMemory: ServerMemory | null;
  cpu: CpuUse;
  brokerFsyncs: BrokerCalls | null;
  brokerWrites: BrokerCalls | null;
}

/**
 * CPU time used during the phase: by this process (the client) and by a local server. On a
 * busy machine these move less than wall-clock throughput, so they tell where the time goes.
 */
export interface CpuUse {
  clientSeconds: number;
  clientMicrosPerRecord: number;
  serverSeconds: number | null;
  serverMicrosPerRecord: number | null;
}

export function cpuUse(records: number, clientSeconds: number, serverSeconds: number | null): CpuUse {
  const perRecord = (seconds: number): number => (records > 0 ? round((seconds * 1e6) / records, 3) : 0);
  return {
    clientSeconds: round(clientSeconds, 3),
    clientMicrosPerRecord: perRecord(clientSeconds),
    serverSeconds: serverSeconds === null ? null : round(serverSeconds, 2),
    serverMicrosPerRecord: serverSeconds === null ? null : perRecord(serverSeconds),
  };
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  release: string;
  node: string;
  /** V8/Node flags of this (the client's) process; a local broker gets BROKER_NODE_FLAGS. */
  clientNodeFlags: string[];
  /** CPU scheduling of this process, which a local broker inherits; null where unknown. */
  clientScheduling: Scheduling | null;
}

export interface BenchReport {
  tool: 'strata bench';
  version: string;
  command: string;
  startedAt: string;
  workload: string;
  parameters: Record<string, unknown>;
  topic: { name: string; partitions: number; configs: Record<string, string>; created: boolean } | null;
  machine: MachineInfo;
  loadAverage: { start: number[]; end: number[] };
  results: ResultRow[];
  ratioToBaseline: number | null;
  ratioOf: BaselineRatio['of'] | null;
  ratioNotGiven: string | null;
  warmupRecords: number | null;
}

/**
 * Strata against the no-op server: for throughput a fraction (1 = as fast as the transport
 * alone), for latency a multiple (1 = no slower than the transport alone).
 */
export interface BaselineRatio {
  /** null when there is no honest figure to give (see `notGiven`). */
  value: number | null;
  of: 'records/s' | 'p99 latency';
  /** Why `value` is null. */
  notGiven: string | null;
}

export function machineInfo(): MachineInfo {
  const processors = cpus();
  return {
    cpuModel: processors[0]?.model.trim() ?? 'unknown',
    cores: processors.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    platform: process.platform,
    release: release(),
    node: process.version,
    clientNodeFlags: [...process.execArgv],
    clientScheduling: processScheduling(),
  };
}

export function loadAverage(): number[] {
  return loadavg().map((value) => Math.round(value * 100) / 100);
}

export function resultRow(
  workload: string,
  server: ResultRow['server'],
  figures: { records: number; bytes: number; seconds: number; latency: LatencyRecorder | null },
  latencyMeasures: string | null,
  serverMemory: ServerMemory | null,
  cpu: CpuUse,
  brokerDiskCalls: BrokerDiskCalls | null,
): ResultRow {
  const seconds = figures.seconds > 0 ? figures.seconds : Number.NaN;
  const latency = figures.latency?.summary() ?? null;
  return {
    workload,
    server,
    records: figures.records,
    bytes: figures.bytes,
    seconds: round(figures.seconds, 3),
    recordsPerSecond: Math.round(figures.records / seconds),
    megabytesPerSecond: round(figures.bytes / seconds / 1e6, 1),
    latency,
    latencyMeasures: latency === null ? null : latencyMeasures,
    serverMemory,
    cpu,
    brokerFsyncs: brokerDiskCalls?.fdatasync ?? null,
    brokerWrites: brokerDiskCalls?.write ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// The table.

const COLUMNS = ['workload', 'server', 'records', 's', 'records/s', 'MB/s', 'p50', 'p95', 'p99', 'p99.9', 'max', 'server RSS', 'CPU µs/rec'] as const;

export function formatReport(report: BenchReport): string {
  const lines: string[] = [];
  const { machine } = report;
  lines.push(`strata bench ${report.workload} (strata ${report.version})`);
  lines.push(`parameters: ${Object.entries(report.parameters).filter(([, value]) => value !== null && value !== undefined && value !== false).map(([name, value]) => `${name}=${String(value)}`).join(' ')}`);
  if (report.topic !== null) {
    const { flush } = report.topic.configs;
    const configs = flush === undefined ? '' : flush === 'interval' ? `flush=interval flush.ms=${report.topic.configs['flush.ms']}` : `flush=${flush}`;
    lines.push(`topic: ${report.topic.name}, ${plural(report.topic.partitions, 'partition')}${configs ? `, ${configs}` : ''}${report.topic.created ? ' (created)' : ''}`);
  }
  lines.push(`machine: ${machine.cpuModel} x ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform} ${machine.release}, node ${machine.node}`);
  lines.push(`client node flags: ${machine.clientNodeFlags.length > 0 ? machine.clientNodeFlags.join(' ') : 'none'} (npm run bench passes ${BROKER_NODE_FLAGS.join(' ')}, as the broker uses)`);
  lines.push(`client scheduling: ${formatScheduling(machine.clientScheduling)} (servers this run starts inherit it)`);
  lines.push(`load average (1/5/15 min): ${report.loadAverage.start.join(' ')} at start, ${report.loadAverage.end.join(' ')} at end`);
  lines.push('');
  const rows: string[][] = [[...COLUMNS]];
  for (const result of report.results) {
    rows.push(tableRow(result.workload, result, result.latency));
    if (result.acknowledgementLatency !== undefined) rows.push(tableRow('  (acked)', result, result.acknowledgementLatency, true));
  }
  const widths = COLUMNS.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const row of rows) lines.push(row.map((cell, column) => (column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd());
  lines.push('latency in ms (HDR histogram); MB = 10^6 bytes of keys and values; server RSS: peak of a local server during the phase;');
  lines.push('CPU µs/rec: CPU time per record of this process (the client) + of a local server');
  const explained = new Set<string>();
  for (const result of report.results) {
    if (result.latencyMeasures !== null && !explained.has(result.workload)) lines.push(`${result.workload} latency: ${result.latencyMeasures}`);
    explained.add(result.workload);
  }
  if (report.results.some((result) => result.acknowledgementLatency !== undefined)) lines.push('(acked): latency from send() to the producer\'s acknowledgement');
  const baseline = report.results.some((result) => result.server === 'no-op');
  const named = (result: ResultRow): string => `${result.workload}${baseline ? ` (${result.server})` : ''}`;
  for (const result of report.results) {
    if (result.consumedRecords === undefined || result.consumedRecordsPerSecond === undefined) continue;
    const lost = result.lost ?? 0;
    const counted = lost > 0 ? ', counted in its latency at the time waited for them after the last send (a lower bound: they never came)' : '';
    lines.push(`${named(result)} consumed: ${formatInteger(result.consumedRecords)} of ${formatInteger(result.records)} records (${formatInteger(result.consumedRecordsPerSecond)} records/s); lost: ${formatInteger(lost)}${counted}`);
  }
  for (const result of report.results) {
    if (result.senderLag === undefined || result.senderLag === null) continue;
    const lag = result.senderLag;
    // produce --rate starts each latency at the schedule (so the lag is in it); e2e at send(),
    // since its 1 ms sending timer's own lag would swamp a latency under a millisecond.
    const counted = result.workload === 'e2e' ? "not counted in latency, which starts at send(): a 1 ms timer's lag would dominate a sub-millisecond figure" : "counted in latency, which starts at each send's scheduled time";
    lines.push(`${named(result)} sender lag behind schedule (${counted}): p50 ${lag.p50Ms.toFixed(2)}, p99 ${lag.p99Ms.toFixed(2)}, p99.9 ${lag.p999Ms.toFixed(2)}, max ${lag.maxMs.toFixed(2)} ms`);
  }
  for (const result of report.results) {
    // Read from the broker's metrics before the load and after it: a read between the warm-up
    // and the measured records would cost the broker in the measured window.
    const warmup = result.workload === 'e2e' || (result.workload === 'produce' && (report.warmupRecords ?? 0) > 0) ? ' (warm-up included)' : '';
    if (result.brokerWrites !== null) lines.push(`${result.workload} broker log writes${warmup}: ${formatCalls(result.brokerWrites)}`);
    if (result.brokerFsyncs !== null) lines.push(`${result.workload} broker fdatasyncs${warmup}: ${formatCalls(result.brokerFsyncs)}`);
  }
  if (report.warmupRecords !== null) lines.push(warmupLine(report, report.warmupRecords, baseline));
  if (report.ratioOf !== null) lines.push(`Strata / no-op server (${report.ratioOf}): ${report.ratioToBaseline !== null ? report.ratioToBaseline.toFixed(2) : `not given: ${report.ratioNotGiven}`}`);
  return `${lines.join('\n')}\n`;
}

function warmupLine(report: BenchReport, records: number, baseline: boolean): string {
  const where = baseline ? ' on each server' : '';
  if (report.workload.endsWith('consume')) return `warm-up: an unmeasured fill and read of ${formatInteger(records)} records (topic ${report.topic?.name ?? ''}-warmup)${where} before the measured phase`;
  return `warm-up: ${formatInteger(records)} records sent unmeasured${where} by the same producers, and acknowledged before the measured records`;
}

function tableRow(label: string, result: ResultRow, latency: LatencySummary | null | undefined, latencyOnly = false): string[] {
  const ms = (value: number | undefined): string => (value === undefined ? '-' : value < 10 ? value.toFixed(2) : value < 1000 ? value.toFixed(1) : formatInteger(value));
  const rss = result.serverMemory?.rssPeakPhaseMiB ?? null;
  return [
    label,
    latencyOnly ? '' : result.server,
    latencyOnly ? '' : formatInteger(result.records),
    latencyOnly ? '' : result.seconds.toFixed(2),
    latencyOnly ? '' : formatInteger(result.recordsPerSecond),
    latencyOnly ? '' : result.megabytesPerSecond.toFixed(1),
    ms(latency?.p50Ms),
    ms(latency?.p95Ms),
    ms(latency?.p99Ms),
    ms(latency?.p999Ms),
    ms(latency?.maxMs),
    latencyOnly || rss === null ? '' : `${rss.toFixed(0)} MiB`,
    latencyOnly ? '' : `${result.cpu.clientMicrosPerRecord.toFixed(2)}${result.cpu.serverMicrosPerRecord === null ? '' : ` + ${result.cpu.serverMicrosPerRecord.toFixed(2)}`}`,
  ];
}

function formatCalls(calls: BrokerCalls): string {
  const mean = calls.meanMs === null ? '' : `, mean ${calls.meanMs.toFixed(3)} ms`;
  return `${formatInteger(calls.count)}${mean}; over 1 ms: ${formatInteger(calls.over1Ms)}, over 5 ms: ${formatInteger(calls.over5Ms)}, over 10 ms: ${formatInteger(calls.over10Ms)}, over 100 ms: ${formatInteger(calls.over100Ms)}`;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
