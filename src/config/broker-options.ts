/**
 * The options of `strata serve`, in one place: names, defaults and help text. They are read by
 * yargs from flags, `STRATA_*` environment variables and an optional JSON config file (in that
 * order of precedence), and turned into the broker's and the server's settings here.
 */
import type { Options } from 'yargs';
import type { BrokerOptions } from '../broker/broker.js';
import { TIMER_DELAY_MAX_MS } from '../common/clock.js';
import { ErrorCode, StrataError } from '../common/errors.js';
import { checkIntegerRange } from '../common/integer-range.js';
import { DEFAULT_OFFSETS_RETENTION_MS, DEFAULT_RECOVERY_CHECKPOINT_INTERVAL_MS, DEFAULT_RETENTION_CHECK_INTERVAL_MS, PARTITION_COUNT_MAX, SESSION_TIMEOUT_MAX_MS, SESSION_TIMEOUT_MIN_MS, SHUTDOWN_GUARD_MS } from '../common/broker-limits.js';
import { parseListenAddress } from '../common/listen-address.js';
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PRODUCE_MEMORY_BYTES, defaultBatchRoomProblem } from '../common/request-limits.js';
import { DEFAULT_LOG_CONFIG, type LogConfig, resolveLogConfig } from '../storage/log-config.js';
import { TokenAuthenticator } from '../server/token-auth.js';
import { ServerTls } from '../server/tls-material.js';
import { DEFAULT_INDEX_CACHE_BYTES } from '../storage/index-cache.js';
import { DEFAULT_TAIL_CACHE_BYTES, TAIL_CACHE_BYTES_MAX } from '../storage/tail-cache.js';

export const SERVE_OPTIONS = {
  'data-dir': { type: 'string', default: './data', describe: 'Directory for topics, logs and metadata' },
  listen: { type: 'string', default: '127.0.0.1:50051', describe: 'gRPC address (host:port); 0.0.0.0 to listen on all interfaces' },
  'metrics-listen': { type: 'string', default: '127.0.0.1:9464', describe: 'HTTP address of /metrics, /healthz and /readyz ("" to disable)' },
  'log-level': { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], describe: 'Log level' },
  'default-partitions': { type: 'number', default: 1, describe: 'Partitions of a topic created without a count' },
  'segment-bytes': { type: 'number', default: DEFAULT_LOG_CONFIG.segmentBytes, describe: 'Default segment.bytes: roll size of a segment' },
  'segment-ms': { type: 'number', default: DEFAULT_LOG_CONFIG.segmentMs, describe: 'Default segment.ms: roll age of a segment' },
  'retention-ms': { type: 'number', default: DEFAULT_LOG_CONFIG.retentionMs, describe: 'Default retention.ms (-1 keeps forever)' },
  'retention-bytes': { type: 'number', default: DEFAULT_LOG_CONFIG.retentionBytes, describe: 'Default retention.bytes per partition (-1 unlimited)' },
  flush: { type: 'string', default: DEFAULT_LOG_CONFIG.flush, choices: ['always', 'interval'], describe: 'Default flush policy: fdatasync before acknowledging, or every flush.ms' },
  'flush-ms': { type: 'number', default: DEFAULT_LOG_CONFIG.flushMs, describe: 'Default flush.ms for flush=interval' },
  'max-message-bytes': { type: 'number', default: DEFAULT_LOG_CONFIG.maxMessageBytes, describe: 'Default max.message.bytes: largest record batch' },
  'index-interval-bytes': { type: 'number', default: DEFAULT_LOG_CONFIG.indexIntervalBytes, describe: 'Default index.interval.bytes' },
  'segment-index-bytes': { type: 'number', default: DEFAULT_LOG_CONFIG.segmentIndexBytes, describe: 'Default segment.index.bytes: size bound of a segment\'s offset index (a full index rolls the segment)' },
  'message-timestamp-after-max-ms': {
    type: 'number',
    default: DEFAULT_LOG_CONFIG.messageTimestampAfterMaxMs,
    describe: "Default message.timestamp.after.max.ms: how far ahead of the broker's clock a record's timestamp may be",
  },
  'write-mode': {
    type: 'string',
    default: 'direct',
    choices: ['buffered', 'direct'],
    describe: 'direct: write large appends (256 KiB+) with O_DIRECT, bypassing the page cache (less CPU per byte; the tail cache serves consumers that keep up, others read the disk); buffered: write everything through the page cache',
  },
  'small-io': {
    type: 'string',
    default: 'event-loop',
    choices: ['event-loop', 'thread-pool'],
    describe: 'Where small log writes and fdatasyncs (up to 32 KiB) run: event-loop (lower latency; only while one partition is busy, such calls average 1 ms or less, and within half the loop\'s time) or thread-pool (the loop never waits on the disk)',
  },
  'tail-cache-bytes': {
    type: 'number',
    default: DEFAULT_TAIL_CACHE_BYTES,
    describe: 'Memory for the newest written bytes of all partitions, so consumers that keep up read from memory (0: read everything from the files)',
  },
  'index-cache-bytes': {
    type: 'number',
    default: DEFAULT_INDEX_CACHE_BYTES,
    describe: "Memory for the loaded indexes of sealed segments, all partitions together: past it, the least recently used are dropped and read from their files again when next needed",
  },
  'max-request-bytes': { type: 'number', default: DEFAULT_MAX_REQUEST_BYTES, describe: 'Largest gRPC request accepted (RESOURCE_EXHAUSTED above); must exceed every topic\'s max.message.bytes by 1 KiB' },
  'produce-memory-bytes': {
    type: 'number',
    default: DEFAULT_PRODUCE_MEMORY_BYTES,
    describe: 'Bytes of produce requests read and not yet answered, across all connections, at which the broker stops reading produce streams until half is free (Kafka\'s queued.max.request.bytes); at least --max-request-bytes',
  },
  'retention-check-interval-ms': { type: 'number', default: DEFAULT_RETENTION_CHECK_INTERVAL_MS, describe: 'How often retention runs, for the logs and for the committed offsets of empty groups' },
  'recovery-checkpoint-interval-ms': {
    type: 'number',
    default: DEFAULT_RECOVERY_CHECKPOINT_INTERVAL_MS,
    describe: "How often each partition's recovery checkpoint moves up to what its last fdatasync covered: after a crash, damage to the records it covers is fenced as corruption, not cut as an unfinished write",
  },
  'shutdown-timeout-ms': { type: 'number', default: 10_000, describe: 'Bound on a graceful shutdown (SIGTERM/SIGINT)' },
  'group-session-timeout-ms': { type: 'number', default: 45_000, describe: 'Default consumer-group session timeout (members may ask for their own)' },
  'group-heartbeat-interval-ms': { type: 'number', default: 5_000, describe: 'Heartbeat interval the broker asks consumer-group members for' },
  'offsets-retention-ms': {
    type: 'number',
    default: DEFAULT_OFFSETS_RETENTION_MS,
    describe:
      'How long a consumer group with no members keeps its committed offsets after its last commit (checked every --retention-check-interval-ms; -1 keeps them for ever). Keep it above an hour: a running client consumer that assigned its own partitions commits unmoved positions again only that often',
  },
  // '' stands for "not given" (an empty path given is refused: PROTECTING_FILE_OPTIONS); --help
  // shows what that means instead.
  'tls-cert-file': { type: 'string', default: '', defaultDescription: 'none: plaintext', describe: "PEM certificate chain of the broker: gRPC is served over TLS (with --tls-key-file)" },
  'tls-key-file': { type: 'string', default: '', defaultDescription: 'none: plaintext', describe: 'PEM private key of --tls-cert-file' },
  'tls-client-ca-file': { type: 'string', default: '', defaultDescription: 'none: no client certificate asked for', describe: 'PEM CA certificates: clients must present a certificate they signed (mutual TLS)' },
  'auth-tokens-file': {
    type: 'string',
    default: '',
    defaultDescription: 'none: no token asked for',
    describe: 'JSON file of the tokens clients must send ("authorization: Bearer <token>"), each by its SHA-256 with a name and its permissions (read, write, admin); unset: no token is asked for',
  },
} as const satisfies Record<string, Options>;

/**
 * The file options whose absence turns a protection off, with what serving without each means.
 * Given but empty (an unset shell variable, a blank ConfigMap value) they are refused, not read
 * as absent: a broker must not start open when it was meant to ask for tokens or certificates.
 */
export const PROTECTING_FILE_OPTIONS: Readonly<Record<string, string>> = {
  'tls-cert-file': 'gRPC is served in plaintext',
  'tls-key-file': 'gRPC is served in plaintext',
  'tls-client-ca-file': 'no client certificate is asked for',
  'auth-tokens-file': 'no token is asked for',
};

export interface ServeSettings {
  dataDir: string;
  listen: string;
  /** host:port of the probe and metrics HTTP server; '' disables it. */
  metricsListen: string;
  logLevel: string;
  defaultPartitions: number;
  topicDefaults: Partial<LogConfig>;
  /** Write large appends with O_DIRECT (`--write-mode direct`, the default). */
  directWrites: boolean;
  /** Small writes and fdatasyncs may run on the event loop (`--small-io event-loop`, the default). */
  inlineIo: boolean;
  /** Bound on the tail cache (`--tail-cache-bytes`). */
  tailCacheBytes: number;
  /** Bound on sealed segments' loaded indexes (`--index-cache-bytes`). */
  indexCacheBytes: number;
  maxRequestBytes: number;
  /** Bound on the bytes of produce requests read and not yet answered, across all connections. */
  produceMemoryBytes: number;
  retentionCheckIntervalMs: number;
  recoveryCheckpointIntervalMs: number;
  shutdownTimeoutMs: number;
  groupSessionTimeoutMs: number;
  groupHeartbeatIntervalMs: number;
  /** -1: committed offsets never expire. */
  offsetsRetentionMs: number;
  /** The gRPC listener's TLS (its files are read again on SIGHUP); null: plaintext. */
  tls: ServerTls | null;
  /** The tokens calls must carry; null: none is asked for. */
  authenticator: TokenAuthenticator | null;
}

type ParsedServeOptions = { [K in keyof typeof SERVE_OPTIONS]: (typeof SERVE_OPTIONS)[K]['default'] extends number ? number : string };

/** How a number a flag was given reads in a message: yargs makes NaN of a value that is none. */
function shown(value: number): string {
  return Number.isNaN(value) ? 'a non-number' : String(value);
}

function positive(named: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${named} must be a positive integer, got ${shown(value)}`);
  return value;
}

/** -1 (for ever) or a positive number of ms. */
function offsetsRetention(named: string, value: number): number {
  if (value === -1 || (Number.isSafeInteger(value) && value > 0)) return value;
  throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${named} must be a positive integer, or -1 to keep offsets for ever, got ${shown(value)}`);
}

/** The port of `address` (host:port, digits checked already) is one a socket can have; 0 picks a free one. */
function checkPort(flag: string, address: string): void {
  if (parseListenAddress(address).port > 65535) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${flag} must have a port from 0 to 65535, got "${address}"`);
}

/**
 * Whether two listeners on these addresses would take one socket address: the same port (not 0,
 * which picks a free one) on the same host, or with one on every interface (`0.0.0.0` takes
 * every IPv4 address; `::` every address, as Node.js listens on it dual-stack).
 */
function addressesOverlap(first: string, second: string): boolean {
  const a = parseListenAddress(first);
  const b = parseListenAddress(second);
  if (a.port === 0 || a.port !== b.port) return false;
  const everyIpv4 = (host: string, other: string): boolean => host === '0.0.0.0' && !other.includes(':');
  return a.host === b.host || a.host === '::' || b.host === '::' || everyIpv4(a.host, b.host) || everyIpv4(b.host, a.host);
}

/**
 * The broker-wide topic defaults, checked here as a topic's configs are checked, so that a bad
 * one is refused before the broker opens anything, named as `nameOf` names its option (each
 * option is its config's Kafka name with dashes: `retention-ms` for `retention.ms`).
 */
function topicDefaults(defaults: Partial<LogConfig>, nameOf: (option: string) => string): Partial<LogConfig> {
  resolveLogConfig(defaults, DEFAULT_LOG_CONFIG, (kafkaName) => nameOf(kafkaName.replaceAll('.', '-')));
  return defaults;
}

/**
 * How a message names an option of serve (`retention-ms`): by its flag, by default; the CLI
 * names it where its value came from instead (its STRATA_* variable, or the config file's key),
 * so that a bad value is blamed on the place that gave it.
 */
export interface OptionNames {
  /** At the start of a message about the option alone: `--retention-ms`, `config file P: "retentionMs"`. */
  subject(option: string): string;
  /** Within a message about several: `--retention-ms`, `"retentionMs" of config file P`. */
  mention(option: string): string;
}

const FLAG_NAMES: OptionNames = { subject: (option) => `--${option}`, mention: (option) => `--${option}` };

/**
 * Checks every option's value and makes the broker's settings of them; a problem is an
 * INVALID_ARGUMENT naming the options as `names` does.
 */
export function serveSettings(argv: ParsedServeOptions, names: OptionNames = FLAG_NAMES): ServeSettings {
  if (argv['data-dir'].trim() === '') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${names.subject('data-dir')} must not be empty (an unset shell variable?): the broker would keep its data in the current directory`);
  }
  if (!/^.+:\d+$/.test(argv.listen)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${names.subject('listen')} must be host:port, got "${argv.listen}"`);
  checkPort(names.subject('listen'), argv.listen);
  const metricsListen = argv['metrics-listen'];
  if (metricsListen !== '' && !/^.+:\d+$/.test(metricsListen)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${names.subject('metrics-listen')} must be host:port (an IPv6 host in brackets: [::]:9464) or "", got "${metricsListen}"`);
  }
  if (metricsListen !== '') checkPort(names.subject('metrics-listen'), metricsListen);
  if (metricsListen !== '' && addressesOverlap(argv.listen, metricsListen)) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `${names.mention('listen')} (${argv.listen}) and ${names.mention('metrics-listen')} (${metricsListen}) take the same port: the gRPC and the HTTP listener each need their own; give one of them another port`,
    );
  }
  const integerFrom = (name: string, value: number, minimum: number, maximum: number): number => checkIntegerRange(names.subject(name), value, minimum, maximum);
  const maxRequestBytes = positive(names.subject('max-request-bytes'), argv['max-request-bytes']);
  const defaults = topicDefaults({
    segmentBytes: argv['segment-bytes'],
    segmentMs: argv['segment-ms'],
    retentionMs: argv['retention-ms'],
    retentionBytes: argv['retention-bytes'],
    flush: argv.flush as LogConfig['flush'],
    flushMs: argv['flush-ms'],
    maxMessageBytes: argv['max-message-bytes'],
    indexIntervalBytes: argv['index-interval-bytes'],
    segmentIndexBytes: argv['segment-index-bytes'],
    messageTimestampAfterMaxMs: argv['message-timestamp-after-max-ms'],
  }, names.subject);
  // Checked again by the broker's start, but here before anything in the data directory is opened.
  const batchProblem = defaultBatchRoomProblem(argv['max-message-bytes'], maxRequestBytes);
  if (batchProblem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, batchProblem);
  const produceMemoryBytes = positive(names.subject('produce-memory-bytes'), argv['produce-memory-bytes']);
  if (produceMemoryBytes < maxRequestBytes) {
    throw new StrataError(
      ErrorCode.INVALID_ARGUMENT,
      `${names.mention('produce-memory-bytes')} (${produceMemoryBytes}) is below ${names.mention('max-request-bytes')} (${maxRequestBytes}): a request of the largest size would overfill it on its own; raise --produce-memory-bytes or lower --max-request-bytes`,
    );
  }
  return {
    dataDir: argv['data-dir'],
    listen: argv.listen,
    metricsListen,
    logLevel: argv['log-level'],
    defaultPartitions: integerFrom('default-partitions', argv['default-partitions'], 1, PARTITION_COUNT_MAX),
    topicDefaults: defaults,
    directWrites: argv['write-mode'] === 'direct',
    inlineIo: argv['small-io'] === 'event-loop',
    tailCacheBytes: integerFrom('tail-cache-bytes', argv['tail-cache-bytes'], 0, TAIL_CACHE_BYTES_MAX),
    indexCacheBytes: integerFrom('index-cache-bytes', argv['index-cache-bytes'], 0, Number.MAX_SAFE_INTEGER),
    maxRequestBytes,
    produceMemoryBytes,
    // A timer's longest delay (setInterval takes a longer one as 1 ms: a sweep of every partition each millisecond).
    retentionCheckIntervalMs: integerFrom('retention-check-interval-ms', argv['retention-check-interval-ms'], 1, TIMER_DELAY_MAX_MS),
    recoveryCheckpointIntervalMs: integerFrom('recovery-checkpoint-interval-ms', argv['recovery-checkpoint-interval-ms'], 1, TIMER_DELAY_MAX_MS),
    // serve's guard waits SHUTDOWN_GUARD_MS more, on a timer too.
    shutdownTimeoutMs: integerFrom('shutdown-timeout-ms', argv['shutdown-timeout-ms'], 1, TIMER_DELAY_MAX_MS - SHUTDOWN_GUARD_MS),
    groupSessionTimeoutMs: integerFrom('group-session-timeout-ms', argv['group-session-timeout-ms'], SESSION_TIMEOUT_MIN_MS, SESSION_TIMEOUT_MAX_MS),
    groupHeartbeatIntervalMs: positive(names.subject('group-heartbeat-interval-ms'), argv['group-heartbeat-interval-ms']),
    offsetsRetentionMs: offsetsRetention(names.subject('offsets-retention-ms'), argv['offsets-retention-ms']),
    tls: ServerTls.fromFiles({ certFile: argv['tls-cert-file'], keyFile: argv['tls-key-file'], clientCaFile: argv['tls-client-ca-file'] }, Date.now()),
    authenticator: argv['auth-tokens-file'] === '' ? null : TokenAuthenticator.fromFile(argv['auth-tokens-file']),
  };
}

export function brokerOptions(settings: ServeSettings): BrokerOptions {
  return {
    dataDir: settings.dataDir,
    defaultPartitions: settings.defaultPartitions,
    topicDefaults: settings.topicDefaults,
    retentionCheckIntervalMs: settings.retentionCheckIntervalMs,
    recoveryCheckpointIntervalMs: settings.recoveryCheckpointIntervalMs,
    directWrites: settings.directWrites,
    inlineIo: settings.inlineIo,
    tailCacheBytes: settings.tailCacheBytes,
    indexCacheBytes: settings.indexCacheBytes,
    maxRequestBytes: settings.maxRequestBytes,
  };
}
