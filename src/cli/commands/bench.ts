/**
 * `strata bench produce|consume|e2e|baseline`: load benchmarks that drive the real client
 * against a real broker (after Kafka's kafka-producer-perf-test, kafka-consumer-perf-test and
 * end-to-end latency tools). The broker is the one at --server, or with --local one this command
 * starts itself (`strata serve` as a child process on a temporary directory, removed afterwards),
 * whose memory it then reports.
 *
 * The workloads live in src/bench/ (one module each); this file only reads the options, runs
 * them, prints the table on stdout and writes the JSON report (--json FILE, fields listed in
 * src/bench/report.ts). On a terminal a live line on stderr shows records so far and the current
 * rate; otherwise nothing but the table is printed.
 */
import { accessSync, constants, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Argv, Options } from 'yargs';
import { type Acks, DEFAULT_BATCH_BYTES } from '../../client/producer.js';
import type { BenchSettings, Workload } from '../../bench/phases.js';
import { type ProducePath, RECORDS_PATH_REQUEST_BYTES } from '../../bench/produce-load.js';
import { Progress } from '../../bench/progress.js';
import { formatReport } from '../../bench/report.js';
import { type BenchWorkload, runBench } from '../../bench/run-bench.js';
import { E2E_RATE_DEFAULT, E2E_WARMUP_SECONDS_DEFAULT, SEND_TIME_BYTES, recordsInSeconds } from '../../bench/e2e-load.js';
import { UsageError } from '../cli-errors.js';
import { ACCESS_OPTIONS, ACKS_OPTION, clientLogger, connectionOptions, describeFailure, serverAddress } from '../client-options.js';
import type { ConnectionOptions } from '../../client/connection.js';
import { shownNumber } from '../../common/integer-range.js';
import { printText } from '../output.js';
import { systemErrorText } from '../../common/errors.js';
import { isLoopbackHost, parseListenAddress } from '../../common/listen-address.js';
import { flagNames } from '../environment.js';
import { optionGiven } from '../option-spellings.js';

const MIB = 1024 * 1024;
const PRODUCE_LINGER_MS_DEFAULT = 5;
/**
 * How long a process whose run failed may go on after printing the failure: a load's clients may
 * still be retrying against a server that went away (a producer gives up after its delivery
 * timeout, 120 s), and nothing is left for them to do.
 */
const FAILED_RUN_EXIT_DELAY_MS = 1_000;
/** The largest --record-size: its record, framed, in a batch of 1 MiB (the default max.message.bytes). */
const RECORD_SIZE_MAX = 1024 * 1024 - 128;

/** Options of every workload. */
const COMMON_OPTIONS = {
  server: { type: 'string', default: '127.0.0.1:50051', describe: 'Broker address HOST:PORT (env STRATA_SERVER)', requiresArg: true },
  local: { type: 'boolean', default: false, describe: 'Start a broker on a temporary directory for this run instead of using --server (its memory and disk calls are reported)' },
  topic: { type: 'string', default: 'strata-bench', describe: 'Topic; created when missing, refused when its partition count or flush differs (consume, baseline or not, warms up on <topic>-warmup)', requiresArg: true },
  partitions: { type: 'number', describe: 'Partitions of the topic (default: the existing topic\'s, 1 for a new one)', requiresArg: true },
  flush: { choices: ['always', 'interval'], default: 'always', requiresArg: true, describe: 'flush config of the topic (set on a topic this creates, required of one that exists): fdatasync before every acknowledgement, or every flush.ms' },
  'record-size': { type: 'number', default: 100, describe: 'Bytes of each record value', requiresArg: true },
  acks: ACKS_OPTION,
  'batch-bytes': { type: 'number', describe: `Producer batch size (bytes; default: the client's, ${DEFAULT_BATCH_BYTES}; ${RECORDS_PATH_REQUEST_BYTES} worth of records per request on the records path)`, requiresArg: true },
  'buffer-bytes': { type: 'number', default: 32 * MIB, describe: 'Producer buffer: bytes sent and not yet acknowledged, per producer (e2e: also a bound on its backlog, past which the run fails)', requiresArg: true },
  json: { type: 'string', describe: 'Also write every figure and parameter to this JSON file', requiresArg: true },
  'profile-server': { type: 'string', describe: 'With --local: write a V8 CPU profile of the broker into this directory', requiresArg: true },
  'write-mode': { choices: ['buffered', 'direct'], requiresArg: true, describe: 'With --local: the broker\'s --write-mode (default: the broker\'s, direct)' },
  'small-io': { choices: ['event-loop', 'thread-pool'], requiresArg: true, describe: 'With --local: the broker\'s --small-io (default: the broker\'s, event-loop)' },
  'server-metrics': {
    type: 'string',
    describe: 'With --server: the broker\'s --metrics-listen address (HOST:PORT), to report its log writes and fdatasyncs in each phase, as --local does',
    requiresArg: true,
  },
} as const satisfies Record<string, Options>;

const PRODUCE_OPTIONS = {
  records: { type: 'number', default: 1_000_000, describe: 'Records to send', requiresArg: true },
  rate: { type: 'number', describe: 'Records per second over all producers (default: as fast as possible)', requiresArg: true },
  producers: { type: 'number', default: 1, describe: 'Producers, each with its own produce stream (grpc-js carries them on one connection, as it does the Producers of one application)', requiresArg: true },
  'linger-ms': { type: 'number', default: PRODUCE_LINGER_MS_DEFAULT, describe: 'Producer linger (ms)', requiresArg: true },
  path: { choices: ['raw', 'records'], default: 'raw', requiresArg: true, describe: 'raw: the client Producer (RecordBatch v2); records: plain protobuf records on ProduceStream' },
} as const satisfies Record<string, Options>;

const CONSUME_OPTIONS = {
  records: { type: 'number', default: 1_000_000, describe: 'Records to read (first the topic is filled until this many lie after where the read starts: the earliest offset, or the --group\'s committed offsets)', requiresArg: true },
  group: { type: 'string', describe: 'Read as a member of this consumer group (commits where it stops)', requiresArg: true },
  'fetch-bytes': { type: 'number', describe: 'Consumer maxBytesPerPartition (default: the client\'s, 1 MiB)', requiresArg: true },
} as const satisfies Record<string, Options>;

const E2E_OPTIONS = {
  rate: { type: 'number', default: E2E_RATE_DEFAULT, describe: 'Records per second', requiresArg: true },
  duration: { type: 'number', default: 30, describe: 'Seconds of measured sending', requiresArg: true },
  'warmup-seconds': { type: 'number', default: E2E_WARMUP_SECONDS_DEFAULT, describe: 'Seconds of sending before the measurement starts (JIT compilation of client and broker)', requiresArg: true },
  'linger-ms': { type: 'number', default: 0, describe: 'Producer linger (ms)', requiresArg: true },
  reader: { choices: ['consumer', 'subscribe'], default: 'consumer', requiresArg: true, describe: 'consumer: the client Consumer (application API: positions, commits); subscribe: a bare Subscribe stream' },
} as const satisfies Record<string, Options>;

const BASELINE_OPTIONS = {
  ...PRODUCE_OPTIONS,
  ...CONSUME_OPTIONS,
  ...E2E_OPTIONS,
  // Their defaults depend on --workload (see benchSettings).
  rate: { type: 'number', describe: `Records per second over all producers (default: as fast as possible; ${E2E_RATE_DEFAULT} for e2e)`, requiresArg: true },
  'linger-ms': { type: 'number', describe: `Producer linger (ms; default ${PRODUCE_LINGER_MS_DEFAULT}; 0 for e2e)`, requiresArg: true },
  workload: { choices: ['produce', 'consume', 'e2e'], default: 'produce', requiresArg: true, describe: 'The workload run against the no-op server and against Strata' },
} as const satisfies Record<string, Options>;

/**
 * The options each workload uses, so that a report lists those and no others (a baseline takes
 * every workload's options). A consume's fill always uses acks=all.
 */
const OPTIONS_OF: Record<Workload, ReadonlySet<string>> = {
  produce: new Set([...Object.keys(COMMON_OPTIONS), ...Object.keys(PRODUCE_OPTIONS)]),
  consume: new Set([...Object.keys(COMMON_OPTIONS), ...Object.keys(CONSUME_OPTIONS)].filter((name) => name !== 'acks')),
  e2e: new Set([...Object.keys(COMMON_OPTIONS), ...Object.keys(E2E_OPTIONS)]),
};

/** Option names of this command, for the environment check in main.ts. */
export const BENCH_OPTION_NAMES = [...new Set([...Object.keys(COMMON_OPTIONS), ...Object.keys(ACCESS_OPTIONS), ...Object.keys(BASELINE_OPTIONS), ...Object.keys(E2E_OPTIONS)])];

/** The options of this command that take no value (their STRATA_* variables are read as flags). */
export const BENCH_FLAG_NAMES = flagNames({ ...COMMON_OPTIONS, ...ACCESS_OPTIONS, ...BASELINE_OPTIONS, ...E2E_OPTIONS });

export function benchCommand(yargs: Argv): Argv {
  return yargs.command('bench', 'Load benchmarks with the real client: produce, consume, e2e, baseline', (bench) =>
    bench
      .command(
        'produce',
        'Producer throughput and latency (kafka-producer-perf-test)',
        (command) =>
          command
            .options({ ...COMMON_OPTIONS, ...ACCESS_OPTIONS, ...PRODUCE_OPTIONS })
            .example('strata bench produce --local --records 5000000', '100-byte records, 1 producer, 1 partition, acks=all')
            .example('strata bench produce --local --producers 4 --partitions 16', '4 producers over 16 partitions'),
        (argv) => runBenchCommand(argv, 'produce'),
      )
      .command(
        'consume',
        'Catch-up read throughput from the earliest offset (kafka-consumer-perf-test)',
        (command) => command.options({ ...COMMON_OPTIONS, ...ACCESS_OPTIONS, ...CONSUME_OPTIONS }).example('strata bench consume --local --records 5000000', 'fill, then read 5M records'),
        (argv) => runBenchCommand(argv, 'consume'),
      )
      .command(
        'e2e',
        'End-to-end latency at a fixed rate: send time to consumption',
        (command) =>
          command
            .options({ ...COMMON_OPTIONS, ...ACCESS_OPTIONS, ...E2E_OPTIONS })
            .example('strata bench e2e --local --rate 10000 --duration 30', '10,000 records/s for 30 s, read with the client Consumer')
            .example('strata bench e2e --local --reader subscribe', 'the same, read with Subscribe (server push)'),
        (argv) => runBenchCommand(argv, 'e2e'),
      )
      .command(
        'baseline',
        'The same workload against a no-op gRPC server (the transport ceiling) and against Strata',
        (command) =>
          command
            .options({ ...COMMON_OPTIONS, ...ACCESS_OPTIONS, ...BASELINE_OPTIONS })
            .example('strata bench baseline --local --records 5000000', 'produce: Strata as a fraction of the no-op server')
            .example('strata bench baseline --local --workload e2e --record-size 1024', 'e2e latency: Strata against the transport alone'),
        (argv) => runBenchCommand(argv, 'baseline'),
      )
      .demandCommand(1, 'give a workload: produce, consume, e2e or baseline'),
  );
}

type BenchArgs = Record<string, unknown>;

async function runBenchCommand(argv: BenchArgs, workload: BenchWorkload): Promise<void> {
  const settings = benchSettings(argv, workload);
  if (typeof argv.json === 'string') checkWritableFile(argv.json);
  const measured = workload === 'baseline' ? baselineWorkload(argv) : workload;
  const used = OPTIONS_OF[measured];
  // The records path has no Producer: neither a linger nor a buffer.
  const recordsPath = measured === 'produce' && settings.path === 'records';
  const unused = (name: string): boolean => (settings.local && name === 'server') || (recordsPath && (name === 'buffer-bytes' || name === 'linger-ms'));
  // Every option the workload uses once (yargs adds camelCase aliases), without --server when --local replaces it.
  const parameters = {
    ...Object.fromEntries(Object.entries(argv).filter(([name]) => (used.has(name) || (workload === 'baseline' && name === 'workload')) && !unused(name))),
    // Their defaults depend on --path or --workload: report the values used.
    'batch-bytes': settings.batchBytes,
    ...(measured === 'consume' || recordsPath ? {} : { 'linger-ms': settings.lingerMs }),
    ...(settings.rate === null ? {} : { rate: settings.rate }),
  };
  let report;
  try {
    report = await runBench({
      workload,
      baselineWorkload: baselineWorkload(argv),
      settings,
      parameters,
      // Options may come before `bench` too (strata --token T bench produce ...).
      command: ['strata', ...withoutToken(process.argv.slice(2))].join(' '),
      logger: clientLogger(),
      progress: new Progress(),
    });
  } catch (error) {
    // Once the failure is printed (by main), the process ends even if the run's clients are still there.
    setTimeout(() => process.exit(), FAILED_RUN_EXIT_DELAY_MS).unref();
    throw settings.local ? error : describeFailure(error, { server: settings.server, ...settings.access });
  }
  await printText(formatReport(report));
  if (typeof argv.json === 'string') writeFileSync(argv.json, `${JSON.stringify(report, null, 2)}\n`);
}

/** The command line as the report shows it: a token given with --token is not written out. */
function withoutToken(args: readonly string[]): string[] {
  return args.map((arg, index) => (args[index - 1] === '--token' ? '***' : arg.startsWith('--token=') ? '--token=***' : arg));
}

/** Refuses a --json file that could not be written, before a run whose figures it would lose. */
function checkWritableFile(path: string): void {
  const directory = dirname(resolve(path));
  try {
    if (!statSync(directory).isDirectory()) throw new UsageError(`--json ${path}: ${directory} is not a directory`);
    accessSync(directory, constants.W_OK);
    const existing = statSync(path, { throwIfNoEntry: false });
    if (existing?.isDirectory()) throw new UsageError(`--json ${path}: it is a directory; give a file name`);
    if (existing !== undefined) accessSync(path, constants.W_OK);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--json ${path}: cannot write there: ${systemErrorText(error as NodeJS.ErrnoException)}`);
  }
}

function baselineWorkload(argv: BenchArgs): Workload {
  return argv.workload === 'consume' || argv.workload === 'e2e' ? argv.workload : 'produce';
}

function benchSettings(argv: BenchArgs, workload: BenchWorkload): BenchSettings {
  // The workload measured: baseline runs its --workload.
  const measured = workload === 'baseline' ? baselineWorkload(argv) : workload;
  const local = argv.local === true;
  refuseIdleOptions(argv, workload, measured, local);
  const profileServer = typeof argv['profile-server'] === 'string' ? argv['profile-server'] : null;
  if (profileServer !== null && !local) throw new UsageError('--profile-server needs --local (the broker must be started by this command)');
  const writeMode = argv['write-mode'] === 'direct' || argv['write-mode'] === 'buffered' ? argv['write-mode'] : null;
  if (writeMode !== null && !local) throw new UsageError('--write-mode needs --local (start the broker at --server with `strata serve --write-mode`)');
  const smallIo = argv['small-io'] === 'event-loop' || argv['small-io'] === 'thread-pool' ? argv['small-io'] : null;
  if (smallIo !== null && !local) throw new UsageError('--small-io needs --local (start the broker at --server with `strata serve --small-io`)');
  const serverMetrics = argv['server-metrics'] === undefined ? null : serverAddress({ server: argv['server-metrics'] }, '--server-metrics');
  if (serverMetrics !== null && local) throw new UsageError('--server-metrics is for a broker at --server; with --local the benchmark reads its own broker\'s metrics');
  const rate = argv.rate === undefined ? (measured === 'e2e' ? E2E_RATE_DEFAULT : null) : positiveNumber(argv.rate, '--rate');
  const recordSize = positiveInteger(argv['record-size'], '--record-size');
  // A larger record does not fit in a batch of the topic this creates (max.message.bytes 1 MiB),
  // and the loads keep a pool of values of this size: a typo of 100000000 would take gigabytes.
  if (recordSize > RECORD_SIZE_MAX) throw new UsageError(`--record-size must be at most ${RECORD_SIZE_MAX} (a record in a batch of the default max.message.bytes), got ${recordSize}`);
  if (measured === 'e2e' && recordSize < SEND_TIME_BYTES) throw new UsageError(`--record-size must be at least ${SEND_TIME_BYTES} for e2e (the value carries the send time)`);
  const durationSeconds = argv.duration === undefined ? 0 : positiveNumber(argv.duration, '--duration');
  // Fewer would measure nothing: no latency, and a sending time of nothing.
  if (measured === 'e2e' && recordsInSeconds(rate!, durationSeconds) < 1) throw new UsageError(`--rate × --duration must give at least 1 measured record for e2e, got ${rate} × ${durationSeconds}`);
  const group = typeof argv.group === 'string' && argv.group !== '' ? argv.group : null;
  const server = local ? '' : serverAddress(argv);
  const access = brokerAccess(argv, local, workload);
  if (workload === 'baseline' && !local && !isLoopbackHost(parseListenAddress(server).host)) {
    // The no-op server always runs here, on loopback: against a broker across a network the
    // ratio would measure the network, not what Strata adds to the transport.
    throw new UsageError(`baseline compares with a no-op server on this machine's loopback: run it with --local, or with --server at a broker on this machine (a 127.x.x.x address, ::1 or localhost), not ${server}`);
  }
  if (workload === 'baseline' && measured === 'consume') {
    // The no-op server serves Fetch from raw batches it kept, and no Groups service.
    if (argv.path === 'records') throw new UsageError('baseline --workload consume cannot fill with --path records: the no-op server keeps no plain records to read back');
    if (group !== null) throw new UsageError('baseline --workload consume cannot read with --group: the no-op server has no consumer groups');
  }
  if (workload === 'baseline') refuseUnusedOptions(argv, measured);
  return {
    server,
    access,
    serverMetrics,
    local,
    topic: nonEmpty(argv.topic, '--topic'),
    partitions: argv.partitions === undefined ? null : positiveInteger(argv.partitions, '--partitions'),
    flush: argv.flush as 'always' | 'interval',
    records: argv.records === undefined ? 0 : positiveInteger(argv.records, '--records'),
    recordSize,
    rate,
    producers: argv.producers === undefined ? 1 : positiveInteger(argv.producers, '--producers'),
    acks: argv.acks as Acks,
    batchBytes: argv['batch-bytes'] !== undefined ? positiveInteger(argv['batch-bytes'], '--batch-bytes') : argv.path === 'records' ? RECORDS_PATH_REQUEST_BYTES : DEFAULT_BATCH_BYTES,
    // Not given: baseline of produce or consume lingers as produce does; e2e and a consume
    // workload's fill send at once (produce itself gets its default from yargs).
    lingerMs: argv['linger-ms'] === undefined ? (workload === 'baseline' && measured !== 'e2e' ? PRODUCE_LINGER_MS_DEFAULT : 0) : nonNegativeNumber(argv['linger-ms'], '--linger-ms'),
    bufferBytes: positiveInteger(argv['buffer-bytes'], '--buffer-bytes'),
    path: (argv.path ?? 'raw') as ProducePath,
    group,
    fetchBytes: argv['fetch-bytes'] === undefined ? null : positiveInteger(argv['fetch-bytes'], '--fetch-bytes'),
    durationSeconds,
    warmupSeconds: argv['warmup-seconds'] === undefined ? 0 : nonNegativeNumber(argv['warmup-seconds'], '--warmup-seconds'),
    reader: argv.reader === 'subscribe' ? 'subscribe' : 'consumer',
    profileServer,
    writeMode,
    smallIo,
  };
}

/**
 * The token and TLS options (`--token`, `--tls`, `--tls-*-file`) of a broker at --server, which
 * the loads connect with (the no-op server of a baseline gets neither). With --local, whose
 * broker serves plaintext and asks for no token, they are refused on the command line and
 * ignored in the environment (as STRATA_SERVER is), where STRATA_TOKEN may be set for other
 * commands. A baseline refuses TLS: its no-op server is plaintext, so the ratio would count TLS.
 */
function brokerAccess(argv: BenchArgs, local: boolean, workload: BenchWorkload): Pick<ConnectionOptions, 'token' | 'tls'> {
  if (local) {
    const given = Object.keys(ACCESS_OPTIONS).find((name) => optionGiven(process.argv.slice(2), name));
    if (given !== undefined) throw new UsageError(`--${given} is for a broker at --server: the broker --local starts serves plaintext and asks for no token`);
    return {};
  }
  const { token, tls } = connectionOptions(argv);
  if (workload === 'baseline' && tls !== undefined) {
    throw new UsageError('baseline compares with a plaintext no-op server, so against a broker serving TLS its ratio would count TLS too: run produce, consume or e2e against it instead');
  }
  return { ...(token !== undefined ? { token } : {}), ...(tls !== undefined ? { tls } : {}) };
}

/**
 * Options given on the command line that the run would not use, although its workload takes
 * them (or has them by default: whether one was given is read from the command line, as
 * brokerAccess does, so that a STRATA_* variable set for other commands refuses nothing):
 * --server beside --local, which starts a broker of its own; an --acks other than all for a
 * consume, whose fill always uses acks=all; --linger-ms and --buffer-bytes on the records path,
 * which has no Producer.
 */
function refuseIdleOptions(argv: BenchArgs, workload: BenchWorkload, measured: Workload, local: boolean): void {
  const given = (name: string): boolean => optionGiven(process.argv.slice(2), name);
  if (local && given('server')) throw new UsageError('--server does not go with --local, which starts a broker of its own: give one of them');
  const command = workload === 'baseline' ? `baseline --workload ${measured}` : measured;
  if (measured === 'consume' && given('acks') && argv.acks !== 'all') {
    throw new UsageError(`--acks ${String(argv.acks)} does not apply to ${command}: its fill always sends with acks=all, so that every record is readable when the read starts`);
  }
  if (measured === 'produce' && argv.path === 'records') {
    for (const name of ['linger-ms', 'buffer-bytes']) {
      if (given(name)) throw new UsageError(`--${name} is not used by --path records, which sends plain-records requests itself (no Producer): its bound is the requests in flight`);
    }
  }
}

/**
 * A baseline takes every workload's options, but runs with those of its --workload only: one
 * given another value than its default would be silently ignored, or reported in the JSON as
 * if it applied (a --rate of a catch-up read), so it is refused.
 */
function refuseUnusedOptions(argv: BenchArgs, measured: Workload): void {
  const options: Record<string, Options> = BASELINE_OPTIONS;
  for (const [name, option] of Object.entries(options)) {
    if (name === 'workload' || OPTIONS_OF[measured].has(name)) continue;
    if (argv[name] !== undefined && argv[name] !== option.default) {
      throw new UsageError(`--${name} is not used by baseline --workload ${measured}, which takes the options of strata bench ${measured}`);
    }
  }
}

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new UsageError(`${name} must be a positive integer, got ${shownNumber(value)}`);
  return value;
}

function positiveNumber(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new UsageError(`${name} must be a positive number, got ${shownNumber(value)}`);
  return value;
}

function nonNegativeNumber(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new UsageError(`${name} must be a non-negative number, got ${shownNumber(value)}`);
  return value;
}

function nonEmpty(value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${name} must not be empty`);
  return value;
}

