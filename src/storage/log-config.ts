/**
 * Per-log settings (a topic's configs as storage sees them), their defaults and their checks.
 * Names follow Kafka's topic configs; `KAFKA_NAMES` maps them for the server and the CLI.
 */
import { ErrorCode, StrataError } from '../common/errors.js';
import { BATCH_BYTES_MAX } from '../common/request-limits.js';
import { checkIntegerRange, isDecimalInteger } from '../common/integer-range.js';

export type FlushMode = 'always' | 'interval';

export interface LogConfig {
  /** `segment.bytes`: roll when an append would grow the active segment past this (a larger batch gets a segment of its own). */
  segmentBytes: number;
  /** `segment.ms`: roll at an append when the active segment's first batch is older than this (an idle partition does not roll). */
  segmentMs: number;
  /** `segment.index.bytes`: size bound of each index; a full index rolls the segment. */
  segmentIndexBytes: number;
  /** `index.interval.bytes`: log bytes between two offset-index entries. */
  indexIntervalBytes: number;
  /**
   * `flush`: `always` acknowledges an append only after an fdatasync that covers it (group
   * commit shares one fdatasync among concurrent appends); `interval` acknowledges once the
   * bytes are written to the OS and fdatasyncs every `flushMs`, so a power loss (not a process
   * crash) can lose up to `flushMs` of acknowledged records.
   */
  flush: FlushMode;
  /** `flush.ms`: fdatasync period in `interval` mode. */
  flushMs: number;
  /**
   * `retention.ms`: delete the oldest segment while its newest record is older than this, the
   * active one too unless empty (the log rolls first). A segment whose age is unknown (its time
   * index could not be loaded) is not deleted by this rule, nor are the ones after it
   * (`retention.bytes` still applies to them). -1 = never.
   */
  retentionMs: number;
  /**
   * `retention.bytes`: delete the oldest segments while the log without the next one would still
   * be at least this size (it never goes below it by deleting), the active one too unless empty
   * (the log rolls first). -1 = unlimited.
   */
  retentionBytes: number;
  /** `max.message.bytes`: largest record batch accepted. */
  maxMessageBytes: number;
  /**
   * `message.timestamp.after.max.ms`: how far ahead of the broker's clock a record's own
   * (create-time) timestamp may be. One record far in the future would keep its segment, and
   * every later one, from ever expiring by `retention.ms`; timestamps in micro- or nanoseconds
   * are the usual cause.
   */
  messageTimestampAfterMaxMs: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export const DEFAULT_LOG_CONFIG: Readonly<LogConfig> = Object.freeze({
  segmentBytes: 1024 * 1024 * 1024,
  segmentMs: 7 * DAY_MS,
  segmentIndexBytes: 10 * 1024 * 1024,
  indexIntervalBytes: 4096,
  flush: 'always',
  flushMs: 1000,
  retentionMs: 7 * DAY_MS,
  retentionBytes: -1,
  maxMessageBytes: 1024 * 1024,
  messageTimestampAfterMaxMs: 60 * 60 * 1000, // Kafka 4's default
});

/** Kafka-style config names, as users write them (`--config segment.bytes=1048576`). */
export const KAFKA_NAMES: Readonly<Record<string, keyof LogConfig>> = Object.freeze({
  'segment.bytes': 'segmentBytes',
  'segment.ms': 'segmentMs',
  'segment.index.bytes': 'segmentIndexBytes',
  'index.interval.bytes': 'indexIntervalBytes',
  flush: 'flush',
  'flush.ms': 'flushMs',
  'retention.ms': 'retentionMs',
  'retention.bytes': 'retentionBytes',
  'max.message.bytes': 'maxMessageBytes',
  'message.timestamp.after.max.ms': 'messageTimestampAfterMaxMs',
});

/** Positions in a segment are uint32 in the index; keep a margin below 4 GiB. */
const SEGMENT_BYTES_LIMIT = 2 * 1024 * 1024 * 1024;

function invalid(message: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message);
}

/**
 * Fills defaults and checks every value; throws INVALID_ARGUMENT naming the bad setting, by its
 * Kafka name or as `nameOf` calls it (the broker's options name the defaults by their flags).
 */
export function resolveLogConfig(overrides: Partial<LogConfig> = {}, base: Readonly<LogConfig> = DEFAULT_LOG_CONFIG, nameOf: (kafkaName: string) => string = (name) => name): LogConfig {
  const config: LogConfig = { ...base, ...overrides };
  const checkInteger = (name: string, value: number, minimum: number, maximum = Number.MAX_SAFE_INTEGER): void => {
    // NaN comes only from a flag (yargs' number of a value that is none); a topic config's text is checked first.
    checkIntegerRange(nameOf(name), value, minimum, maximum);
  };
  checkInteger('segment.bytes', config.segmentBytes, 1024, SEGMENT_BYTES_LIMIT);
  checkInteger('segment.ms', config.segmentMs, 1);
  checkInteger('segment.index.bytes', config.segmentIndexBytes, 1024, 1024 * 1024 * 1024);
  checkInteger('index.interval.bytes', config.indexIntervalBytes, 0, SEGMENT_BYTES_LIMIT);
  if (config.flush !== 'always' && config.flush !== 'interval') {
    throw invalid(`${nameOf('flush')} must be "always" or "interval", got ${JSON.stringify(config.flush)}`);
  }
  checkInteger('flush.ms', config.flushMs, 1);
  checkInteger('retention.ms', config.retentionMs, -1);
  checkInteger('retention.bytes', config.retentionBytes, -1);
  checkInteger('max.message.bytes', config.maxMessageBytes, 64, BATCH_BYTES_MAX);
  checkInteger('message.timestamp.after.max.ms', config.messageTimestampAfterMaxMs, 0);
  return config;
}

/**
 * Refuses a number config a person or a client sends that is not an integer in decimal digits.
 * `parseKafkaConfig` reads numbers as JavaScript does, so `0x10` would be 16 and `1e3` 1000: a
 * slip of a hex or exponent form in `retention.ms` would quietly delete the topic's records at
 * the next retention check. Checked on creates and alters only, not on configs already stored,
 * which the broker must still start with.
 */
export function checkConfigSpelling(entries: Readonly<Record<string, string>>): void {
  for (const [name, raw] of Object.entries(entries)) {
    const key = Object.hasOwn(KAFKA_NAMES, name) ? KAFKA_NAMES[name] : undefined;
    if (key === undefined || key === 'flush') continue; // parseKafkaConfig names what is wrong with these
    if (!isDecimalInteger(raw)) throw invalid(`${name} must be an integer in decimal digits, got ${JSON.stringify(raw)}`);
  }
}

/** Parses `name=value` settings with Kafka names into a partial config. */
export function parseKafkaConfig(entries: Readonly<Record<string, string>>): Partial<LogConfig> {
  const result: Partial<LogConfig> = {};
  for (const [name, raw] of Object.entries(entries)) {
    // Own names only: `toString` or `constructor` would find Object.prototype's members.
    const key = Object.hasOwn(KAFKA_NAMES, name) ? KAFKA_NAMES[name] : undefined;
    if (key === undefined) {
      throw invalid(`unknown topic config "${name}"; known: ${Object.keys(KAFKA_NAMES).join(', ')}`);
    }
    if (key === 'flush') {
      result.flush = raw as FlushMode;
    } else {
      const value = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(value)) throw invalid(`${name} must be a number, got "${raw}"`);
      (result as Record<string, number>)[key] = value;
    }
  }
  // An alter merges a topic's stored configs first, so an explicit `flush=always` stays.
  if (flushMsSelectsInterval(entries)) result.flush = 'interval';
  return result;
}

/**
 * Whether configs that set `flush.ms` and not `flush` select interval flushing by that alone,
 * as the docs promise: the topic then flushes on interval whatever the broker's `--flush`.
 */
export function flushMsSelectsInterval(configs: Readonly<Record<string, string | undefined>>): boolean {
  return configs['flush.ms'] !== undefined && configs.flush === undefined;
}
