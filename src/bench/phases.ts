/**
 * The measured phases of `strata bench`, each against one server (Strata or the no-op server)
 * at a known address: set up the topic, run the load, and turn its figures into result rows.
 * `server` is the child process when the benchmark started the server itself (its memory is
 * reported), null for a broker given with --server; `metricsAddress` is the broker's metrics
 * endpoint (a local broker's, or --server-metrics), from which its log writes and fdatasyncs
 * during each phase are reported.
 *
 * Warm-up (`runPhase`'s `warmupRecords`, none for e2e, whose load warms up for --warmup-seconds):
 * a produce phase sends that many records first, unmeasured, over the producers it then measures
 * (see produce-load.ts); a consume phase first runs an unmeasured consume phase of that many
 * records on the topic `<topic>-warmup` (a read's set-up is part of a catch-up read, but V8
 * compiling the read path is not).
 */
import type { Logger } from '../common/logger.js';
import { Admin } from '../client/admin.js';
import type { ConnectionOptions } from '../client/connection.js';
import type { Acks } from '../client/producer.js';
import { type BenchTopic, describe, ensureTopic } from './bench-topic.js';
import { type BrokerDiskCalls, diskCallsBetween, readDiskCallHistograms } from './broker-disk-calls.js';
import { readableRecords, runConsumeLoad } from './consume-load.js';
import { E2E_RATE_DEFAULT, type E2eReaderKind, runE2eLoad } from './e2e-load.js';
import { type ProducePath, runProduceLoad } from './produce-load.js';
import type { Progress } from './progress.js';
import { type CpuUse, type ResultRow, cpuUse, resultRow } from './report.js';
import type { ServerProcess } from './server-process.js';

export type Workload = 'produce' | 'consume' | 'e2e';

export interface BenchSettings {
  /** Broker address; ignored with `local`. */
  server: string;
  /** The token and TLS options of the broker at `server` (none with `local`). */
  access: Pick<ConnectionOptions, 'token' | 'tls'>;
  /** The metrics endpoint (HOST:PORT) of the broker at `server`, to read its disk calls; null if not given. */
  serverMetrics: string | null;
  local: boolean;
  topic: string;
  /** null: the existing topic's count (1 for a topic this creates). */
  partitions: number | null;
  /** Topic config `flush`: set on a topic this creates, required of one that exists. */
  flush: 'always' | 'interval';
  records: number;
  recordSize: number;
  /** Records/s; null: as fast as possible (produce). */
  rate: number | null;
  producers: number;
  acks: Acks;
  batchBytes: number;
  lingerMs: number;
  bufferBytes: number;
  path: ProducePath;
  group: string | null;
  fetchBytes: number | null;
  durationSeconds: number;
  warmupSeconds: number;
  /** e2e: how the records are read. */
  reader: E2eReaderKind;
  profileServer: string | null;
  /** With --local: the broker's --write-mode; null for its default. */
  writeMode: 'buffered' | 'direct' | null;
  /** With --local: the broker's --small-io; null for its default. */
  smallIo: 'event-loop' | 'thread-pool' | null;
}

/** What a phase reads of a server the run started: its CPU time and memory (tests give a stand-in). */
export type MeasuredServer = Pick<ServerProcess, 'cpuSeconds' | 'memory' | 'resetPeaks'>;

export interface PhaseContext {
  settings: BenchSettings;
  /** How the loads connect to the server: its address, and the broker's token and TLS if it asks for them. */
  connection: ConnectionOptions;
  server: MeasuredServer | null;
  /** The broker's metrics endpoint (HOST:PORT): a local broker's, or --server-metrics; null for the no-op server. */
  metricsAddress: string | null;
  serverKind: ResultRow['server'];
  logger: Logger;
  progress: Progress;
}

export interface PhaseOutcome {
  rows: ResultRow[];
  topic: BenchTopic;
}

const SEND_TO_ACK = 'from send() to the acknowledgement (includes the wait in the producer buffer)';
const REQUEST_TO_ANSWER = 'from the request being written to its answer (each of its records)';
const SCHEDULE_TO_ACK = "from each chunk's scheduled send time (--rate) to the acknowledgement (includes the sender's lag and the wait in the producer buffer)";
const SCHEDULE_TO_ANSWER = "from each request's scheduled send time (--rate) to its answer (each of its records; includes the sender's lag)";
const SEND_TO_CONSUMED = {
  consumer: 'from send() to the record being handed to the application by the client Consumer',
  subscribe: 'from send() to the record being decoded from a Subscribe stream (server push)',
} as const;

async function prepareTopic(context: PhaseContext): Promise<BenchTopic> {
  const admin = new Admin(context.connection);
  try {
    return await ensureTopic(admin, { name: context.settings.topic, partitions: context.settings.partitions, configs: { flush: context.settings.flush } });
  } finally {
    await admin.close();
  }
}

/**
 * Runs `load`, measuring the CPU time this process and a local server used meanwhile: from the
 * start, or from when `load` calls `startMeasuring` (the end of a warm-up). The broker's log
 * writes and fdatasyncs, where its metrics address is known, are counted from before `load` to
 * after it (warm-up included: reading the metrics costs the broker a millisecond or two, which
 * must not land in a measured window).
 */
async function measured<T extends { records: number }>(context: PhaseContext, load: (startMeasuring: () => void) => Promise<T>): Promise<{ figures: T; cpu: CpuUse; disk: BrokerDiskCalls | null }> {
  const diskBefore = await fromDiskMetrics(context, readDiskCallHistograms);
  let clientBefore = process.cpuUsage();
  let serverBefore = context.server?.cpuSeconds() ?? null;
  const startMeasuring = (): void => {
    clientBefore = process.cpuUsage();
    serverBefore = context.server?.cpuSeconds() ?? null;
  };
  const figures = await load(startMeasuring);
  const client = process.cpuUsage(clientBefore);
  const serverAfter = context.server?.cpuSeconds() ?? null;
  const disk = diskBefore === null ? null : await fromDiskMetrics(context, async (address) => diskCallsBetween(diskBefore, await readDiskCallHistograms(address)));
  return {
    figures,
    cpu: cpuUse(figures.records, (client.user + client.system) / 1e6, serverBefore === null || serverAfter === null ? null : serverAfter - serverBefore),
    disk,
  };
}

/**
 * `read` applied to the broker's metrics endpoint; null without one, or (with a warning on
 * stderr, which the CLI's default log level would hide) if the metrics cannot be read or lack
 * what the report needs: the phase's figures stand without it.
 */
async function fromDiskMetrics<T>(context: PhaseContext, read: (metricsAddress: string) => Promise<T>): Promise<T | null> {
  if (context.metricsAddress === null) return null;
  try {
    return await read(context.metricsAddress);
  } catch (error) {
    process.stderr.write(`strata: warning: the report leaves out the broker's disk calls: ${error instanceof Error ? error.message : String(error)}\n`);
    return null;
  }
}

function label(context: PhaseContext, workload: string): string {
  return context.serverKind === 'no-op' ? `${workload} (no-op server)` : workload;
}

export async function producePhase(context: PhaseContext, records = context.settings.records, workload = 'produce', warmupRecords = 0): Promise<PhaseOutcome> {
  const { settings } = context;
  const topic = await prepareTopic(context);
  const { figures, cpu, disk } = await measured(context, (startMeasuring) => runProduceLoad({
    connection: context.connection,
    topic: settings.topic,
    partitions: topic.description.partitions.length,
    records,
    recordSize: settings.recordSize,
    rate: settings.rate,
    producers: settings.producers,
    acks: settings.acks,
    batchBytes: settings.batchBytes,
    lingerMs: settings.lingerMs,
    bufferBytes: settings.bufferBytes,
    path: settings.path,
    warmupRecords,
    // CPU time and the RSS peak count from the first measured send, the warm-up left out.
    onMeasurementStart: () => {
      startMeasuring();
      context.server?.resetPeaks();
    },
    logger: context.logger,
    progress: context.progress,
    label: label(context, workload),
  }));
  const latencyMeasures = settings.rate === null ? (settings.path === 'raw' ? SEND_TO_ACK : REQUEST_TO_ANSWER) : settings.path === 'raw' ? SCHEDULE_TO_ACK : SCHEDULE_TO_ANSWER;
  const row = resultRow(workload, context.serverKind, figures, latencyMeasures, context.server?.memory() ?? null, cpu, disk);
  if (figures.senderLag) row.senderLag = figures.senderLag.summary();
  return { rows: [row], topic };
}

/**
 * Fills the topic until `records` records lie after where the read starts (the log start, or a
 * group's committed offsets: a second run with the same group reads on from where the first
 * stopped), then reads them.
 */
export async function consumePhase(context: PhaseContext, warmupRecords = 0): Promise<PhaseOutcome> {
  const { settings } = context;
  // Without the group: its members and commits are the measured topic's business.
  if (warmupRecords > 0) await consumePhase({ ...context, settings: { ...settings, topic: `${settings.topic}-warmup`, records: warmupRecords, group: null } });
  let topic = await prepareTopic(context);
  const rows: ResultRow[] = [];
  const missing = settings.records - (await readableRecords(context.connection, settings.topic, settings.group));
  if (missing > 0) {
    // acks=all whatever --acks says: with less the last records may not be readable yet (not
    // durable, or still queued) when the read starts, and the read would come up short.
    const filled = await producePhase({ ...context, settings: { ...settings, rate: null, acks: 'all' } }, missing, 'fill');
    rows.push(...filled.rows);
    topic = { ...topic, description: await describe(context.connection, settings.topic) };
  }
  context.server?.resetPeaks();
  const { figures, cpu, disk } = await measured(context, () => runConsumeLoad({
    connection: context.connection,
    topic: settings.topic,
    records: settings.records,
    group: settings.group,
    fetchBytes: settings.fetchBytes,
    logger: context.logger,
    progress: context.progress,
    label: label(context, 'consume'),
  }));
  const row = resultRow('consume', context.serverKind, figures, null, context.server?.memory() ?? null, cpu, disk);
  row.startOffsets = figures.startOffsets;
  rows.push(row);
  return { rows, topic };
}

export async function e2ePhase(context: PhaseContext): Promise<PhaseOutcome> {
  const { settings } = context;
  const topic = await prepareTopic(context);
  context.server?.resetPeaks();
  const { figures, cpu, disk } = await measured(context, (startMeasuring) => runE2eLoad({
    connection: context.connection,
    topic: settings.topic,
    rate: settings.rate ?? E2E_RATE_DEFAULT,
    durationSeconds: settings.durationSeconds,
    warmupSeconds: settings.warmupSeconds,
    recordSize: settings.recordSize,
    acks: settings.acks,
    lingerMs: settings.lingerMs,
    batchBytes: settings.batchBytes,
    bufferBytes: settings.bufferBytes,
    reader: settings.reader,
    logger: context.logger,
    progress: context.progress,
    label: label(context, 'e2e'),
    onMeasurementStart: startMeasuring,
  }));
  const row = resultRow('e2e', context.serverKind, figures, SEND_TO_CONSUMED[settings.reader], context.server?.memory() ?? null, cpu, disk);
  row.acknowledgementLatency = figures.acknowledgementLatency.summary();
  row.senderLag = figures.senderLag.summary();
  row.consumedRecords = figures.consumed;
  row.consumedRecordsPerSecond = figures.seconds > 0 ? Math.round(figures.consumed / figures.seconds) : 0;
  row.lost = figures.lost;
  row.warmupRecords = figures.warmupRecords;
  return { rows: [row], topic };
}

/** Runs the workload's phase, after an unmeasured warm-up of `warmupRecords` (produce and consume). */
export function runPhase(workload: Workload, context: PhaseContext, warmupRecords = 0): Promise<PhaseOutcome> {
  switch (workload) {
    case 'produce':
      return producePhase(context, context.settings.records, 'produce', warmupRecords);
    case 'consume':
      return consumePhase(context, warmupRecords);
    case 'e2e':
      return e2ePhase(context);
  }
}
