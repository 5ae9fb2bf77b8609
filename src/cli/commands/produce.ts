/**
 * `strata produce TOPIC [VALUE ...]`: writes records with the client Producer (idempotent,
 * batching, one ProduceStream), one record per VALUE, or without values one per line of stdin.
 *
 * Streaming with bounded memory: stdin is read as lines (input-lines.ts), and reading pauses
 * while the records sent and not yet acknowledged hold more than half the producer's buffer
 * (`bufferBytes`), so a file of any size goes through a window of at most that many bytes (plus
 * one input chunk). A line is held only up to what any record could be (`lineBytesMax`): a longer
 * one, even endless, stops the input there. Lines become records in order, so the records of one
 * partition keep the input's order.
 *
 * Input forms: text (the line is the value; with `--key-separator SEP` the line is
 * `key SEP value`, split at the first SEP) or json (`{"key","value","headers","partition",
 * "timestamp"}`, bytes as strings or {"base64": ...}, as `consume --format json` prints them;
 * `topic` and `offset` are ignored, other fields refused). `--key`, `--partition` and
 * `--header` apply to every record unless a JSON line says otherwise; a `--header` key given
 * twice is refused (records' headers are one value per key here, as `consume --format json`
 * prints them).
 *
 * At the end one summary line goes to stderr (records, partitions, time, rate); on a terminal a
 * progress line is redrawn meanwhile, unless stdin is that terminal too, where it would be
 * drawn over the line being typed. The first failed record (or malformed input line) stops
 * the input; the records already sent are still flushed, and the command exits 1 with one line:
 * the broker's message (or the input problem) and how many records got through: for a record
 * not sent, its input line and the records produced before and after it (later lines may have
 * been sent before the failure was known), and a malformed line read meanwhile. Stdin that cannot be read (a directory, a read error)
 * fails the same way. Ctrl-C stops reading, flushes what was read, prints the summary and exits
 * 0, or 130 if stdin had not ended (not all of the input was produced). A broker lost meanwhile
 * is said once on stderr, and again once it takes records again.
 */
import { fstatSync } from 'node:fs';
import type { Argv } from 'yargs';
import { describeTopic } from '../../client/admin.js';
import { DEFAULT_DELIVERY_TIMEOUT_MS, Producer, type Acks, type ProducerRecord, type ProducerRetryEvent } from '../../client/producer.js';
import { EXIT_INTERRUPTED, UsageError } from '../cli-errors.js';
import { ACKS_OPTION, clientLogger, connectionOptions, describeFailure, onInterrupt, transportReason, withClientOptions, withConnectionTo } from '../client-options.js';
import { LineTooLongError, readLines } from '../input-lines.js';
import { bytesFromJson, formatCount, parsePairs, partitionFlag } from '../output.js';
import { systemErrorText } from '../../common/errors.js';
import { plural } from '../../common/plural.js';
import { BATCH_BYTES_MAX } from '../../common/request-limits.js';

/** Option names of this command, for the environment check in main.ts. */
export const PRODUCE_OPTION_NAMES = ['key', 'key-separator', 'partition', 'header', 'acks', 'format'];

/** Bytes of unacknowledged records before reading pauses. */
const WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * The producer's buffer: the largest record batch any broker takes (`BATCH_BYTES_MAX`), so no
 * record larger than it can be sent, which makes it the longest a text line can usefully be.
 */
const PRODUCER_BUFFER_BYTES = BATCH_BYTES_MAX;
/** JSON spells a byte in at most six (`\u0000`): a JSON line may be that much longer than its record. */
const JSON_BYTES_PER_RECORD_BYTE_MAX = 6;
/** Unacknowledged records before reading pauses (each costs about 1 KiB of JavaScript heap). */
const WINDOW_RECORDS = 16_384;
/** Reading resumes once the window has drained to this. */
const WINDOW_RESUME_BYTES = WINDOW_BYTES * 0.75;
const WINDOW_RESUME_RECORDS = WINDOW_RECORDS * 0.75;
const PROGRESS_INTERVAL_MS = 250;
/**
 * Batch size: four times the producer's default halves the CPU per record on both sides for
 * small records, and stays under the topic's max.message.bytes (1 MiB by default).
 */
const BATCH_BYTES = 256 * 1024;
const BATCH_BYTES_MIN = 16 * 1024;
/** Estimated framing per record and per header (as the producer estimates). */
const RECORD_OVERHEAD_BYTES = 21;
const HEADER_OVERHEAD_BYTES = 10;

interface ProduceArgs {
  server: string;
  topic: string;
  values?: string[];
  key?: string;
  'key-separator'?: string;
  partition?: number;
  header?: string[];
  acks: Acks;
  format: 'text' | 'json';
}

export function produceCommand(yargs: Argv): Argv {
  return yargs.command(
    'produce <topic> [values..]',
    'Write records: each VALUE, or each line of stdin',
    (command) =>
      withClientOptions(command)
        .positional('topic', { type: 'string', demandOption: true, describe: 'Topic to write to' })
        .positional('values', { type: 'string', array: true, describe: 'Record values; without any, stdin is read, one record per line' })
        .option('key', { type: 'string', describe: 'Key of every record (murmur2 picks the partition)', requiresArg: true })
        .option('key-separator', { type: 'string', describe: 'Each line is KEY<SEP>VALUE, split at the first SEP', requiresArg: true })
        .option('partition', { type: 'number', describe: 'Write every record to this partition', requiresArg: true })
        .option('header', { type: 'string', array: true, nargs: 1, describe: 'A header KEY=VALUE on every record; repeatable', requiresArg: true })
        .option('acks', ACKS_OPTION)
        .option('format', { choices: ['text', 'json'] as const, default: 'text' as const, describe: 'Input lines: text values, or JSON objects {"key","value","headers","partition","timestamp"} (consume --format json prints them; other fields are refused)', requiresArg: true })
        .conflicts('key', 'key-separator')
        .example('strata produce orders hello world', 'two records')
        .example('strata produce orders -- -1 --literal', 'values that start with a dash: after --, nothing is an option')
        .example('seq 1000000 | strata produce orders', 'a million records from a pipe')
        .example("printf 'k1:v1\\nk2:v2\\n' | strata produce orders --key-separator :", 'keyed lines')
        .example('strata consume orders --format json | strata produce copy --format json', 'copy a topic'),
    async (argv) => produce(argv as unknown as ProduceArgs),
  );
}

/** What the failures of sends tell of the broker: it answered the topic's description first. */
const REACHED = { reached: true } as const;

/** Turns one input line (or VALUE) into a record. */
type LineParser = (line: string, lineNumber: number) => ProducerRecord | null;

function lineParser(argv: ProduceArgs): LineParser {
  const topic = argv.topic;
  const partition = partitionFlag(argv.partition, '--partition');
  const headerPairs = parsePairs(argv.header, '--header');
  const headers = Object.keys(headerPairs).length > 0 ? headerPairs : undefined;
  const key = argv.key ?? null;
  const separator = argv['key-separator'];
  if (separator === '') throw new UsageError('--key-separator must not be empty');
  if (argv.format === 'json') {
    if (separator !== undefined) throw new UsageError('--key-separator is for --format text; JSON lines carry their key');
    return (line, lineNumber) => {
      if (line.trim() === '') return null;
      return jsonRecord(topic, line, lineNumber, { key, partition, headers });
    };
  }
  if (separator !== undefined) {
    return (line, lineNumber) => {
      const at = line.indexOf(separator);
      if (at < 0) throw new Error(`input line ${lineNumber} has no key separator ${JSON.stringify(separator)}`);
      return { topic, key: line.slice(0, at), value: line.slice(at + separator.length), headers, partition };
    };
  }
  return (line) => ({ topic, key, value: line, headers, partition });
}

/** The fields of a `--format json` line: consume's output, of which topic and offset are ignored. */
const JSON_RECORD_FIELDS = new Set(['key', 'value', 'headers', 'partition', 'timestamp', 'topic', 'offset']);

function jsonRecord(
  topic: string,
  line: string,
  lineNumber: number,
  defaults: { key: string | null; partition: number | undefined; headers: Record<string, string> | undefined },
): ProducerRecord {
  const where = `input line ${lineNumber}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    throw new Error(`${where} is not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${where} must be a JSON object`);
  const object = parsed as Record<string, unknown>;
  for (const name of Object.keys(object)) {
    if (!JSON_RECORD_FIELDS.has(name)) throw new Error(`${where}: unknown field ${JSON.stringify(name)}; a record has key, value, headers, partition and timestamp (topic and offset, as consume prints them, are ignored)`);
  }
  let headers: Record<string, Buffer | string | null> | undefined = defaults.headers;
  if (object.headers !== undefined && object.headers !== null) {
    if (typeof object.headers !== 'object' || Array.isArray(object.headers)) throw new Error(`${where}: headers must be an object`);
    // Without a prototype: a header named __proto__ set here would otherwise replace the object's prototype.
    const given = Object.create(null) as Record<string, Buffer | string | null>;
    Object.assign(given, defaults.headers);
    for (const [name, value] of Object.entries(object.headers as Record<string, unknown>)) given[name] = bytesFromJson(value, `${where}: header "${name}"`);
    headers = given;
  }
  const partition = object.partition ?? defaults.partition;
  if (partition !== undefined && partition !== null && (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0)) {
    throw new Error(`${where}: partition must be a non-negative integer`);
  }
  const timestamp = object.timestamp;
  if (timestamp !== undefined && timestamp !== null && (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp < 0)) {
    throw new Error(`${where}: timestamp must be ms since the epoch`);
  }
  return {
    topic,
    key: 'key' in object ? bytesFromJson(object.key, `${where}: key`) : defaults.key,
    value: bytesFromJson(object.value, `${where}: value`),
    ...(headers !== undefined ? { headers } : {}),
    ...(partition !== undefined && partition !== null ? { partition: partition as number } : {}),
    ...(typeof timestamp === 'number' ? { timestamp } : {}),
  };
}

function batchBytesFor(configs: Record<string, string>): number {
  const limit = Number(configs['max.message.bytes']);
  if (!Number.isSafeInteger(limit) || limit <= 0) return BATCH_BYTES;
  return Math.max(Math.min(BATCH_BYTES, Math.floor(limit / 2)), Math.min(BATCH_BYTES_MIN, limit));
}

function estimatedBytes(record: ProducerRecord): number {
  let size = RECORD_OVERHEAD_BYTES + byteLength(record.key) + byteLength(record.value);
  if (record.headers !== undefined) {
    for (const [name, value] of Object.entries(record.headers)) size += HEADER_OVERHEAD_BYTES + name.length + byteLength(value as string | Buffer | null);
  }
  return size;
}

function byteLength(bytes: string | Uint8Array | null | undefined): number {
  if (bytes === null || bytes === undefined) return 0;
  return typeof bytes === 'string' ? Buffer.byteLength(bytes, 'utf8') : bytes.length;
}

async function produce(argv: ProduceArgs): Promise<void> {
  const parse = lineParser(argv);
  const options = connectionOptions(argv);
  const readsStdin = argv.values === undefined || argv.values.length === 0;
  if (readsStdin) checkReadableInput(process.stdin.fd);
  // Fail fast, before reading any input, on an unknown topic or partition.
  const description = await withConnectionTo(options, (connection) => describeTopic(connection, argv.topic));
  const partitionCount = description.partitions.length;
  if (argv.partition !== undefined && argv.partition >= partitionCount) {
    throw new Error(`partition ${argv.partition} of topic "${argv.topic}" not found: it has ${plural(partitionCount, 'partition')}`);
  }
  const producer = new Producer({ ...options, acks: argv.acks, idempotent: argv.acks !== 'none', bufferBytes: PRODUCER_BUFFER_BYTES, batchBytes: batchBytesFor(description.configs), logger: clientLogger() });
  const startedAt = performance.now();
  const perPartition = new Array<number>(partitionCount).fill(0);
  let acknowledged = 0;
  let sent = 0;
  /** Records sent and not yet settled, and their estimated bytes. */
  let outstanding = 0;
  let windowBytes = 0;
  /** The input problem (a malformed line, a read error) reading stopped at, if any. */
  let inputFailure: unknown = null;
  /** The send that failed at the earliest input line, and how many sends failed in all. */
  const failedSends: { earliest: FailedSend | null; count: number } = { earliest: null, count: 0 };
  /** A send failed or the input did: nothing more is read or sent. */
  const failed = (): boolean => inputFailure !== null || failedSends.count > 0;
  let interrupted = false;
  /** Whether stdin (if read) has ended; an interrupt before then leaves input unsent. */
  let inputEnded = !readsStdin;
  let inputCutShort = false;
  let pauseInput: (() => void) | null = null;
  let resumeInput: (() => void) | null = null;
  let paused = false;

  const progress = showsProgress(process.stderr.isTTY === true, readsStdin && process.stdin.isTTY === true) ? setInterval(() => drawProgress(sent, acknowledged, startedAt), PROGRESS_INTERVAL_MS) : null;
  progress?.unref();

  // The producer resends on its own while the broker is away (or cannot take records for now: a
  // failed disk write); said once each way on stderr, so that a wait of up to the delivery
  // timeout is not a silent hang. A progress line is cleared first, so the line is not drawn onto it.
  const notice = (line: string): void => {
    process.stderr.write(`${progress === null ? '' : '\r\x1b[2K'}strata: ${line}\n`);
  };
  /** What the first failed attempt since records last went through said: null while they go through. */
  let retrying: 'refused' | 'lost' | null = null;
  producer.on('retrying', (event: ProducerRetryEvent) => {
    if (retrying !== null) return;
    retrying = event.fromBroker ? 'refused' : 'lost';
    const giveUp = `each is given up ${DEFAULT_DELIVERY_TIMEOUT_MS / 1000} s after it was read`;
    if (event.fromBroker) notice(`the broker at ${options.server} cannot take records for now (${event.reason}); sending the records not yet acknowledged again (${giveUp})`);
    else notice(`lost the broker at ${options.server} (${transportReason(event.reason)}); sending the records not yet acknowledged again once it is back (${giveUp})`);
  });
  producer.on('recovered', () => {
    if (retrying === null) return;
    notice(retrying === 'lost' ? 'the broker is back; producing again' : 'the broker takes records again; producing again');
    retrying = null;
  });

  // Settled records give back the average size of what is outstanding rather than their own:
  // exact in total (the window is empty when nothing is outstanding). Each send has a closure
  // for its failure, which names the record's input line (it holds the line until the send settles).
  const onAcknowledged = (result: { partition: number }): void => {
    acknowledged++;
    perPartition[result.partition] = (perPartition[result.partition] ?? 0) + 1;
    settled();
  };
  const onFailed = (send: FailedSend): void => {
    failedSends.count++;
    if (failedSends.earliest === null || send.lineNumber < failedSends.earliest.lineNumber) failedSends.earliest = send;
    settled();
    stopInput();
  };
  function settled(): void {
    windowBytes -= windowBytes / outstanding;
    outstanding--;
    if (paused && windowBytes <= WINDOW_RESUME_BYTES && outstanding <= WINDOW_RESUME_RECORDS && !failed() && !interrupted) {
      paused = false;
      resumeInput?.();
    }
  }
  let stopInput = (): void => {};
  const send = (line: string, lineNumber: number): void => {
    if (failed() || interrupted) return;
    let record: ProducerRecord | null;
    try {
      record = parse(line, lineNumber);
    } catch (error) {
      inputFailure = error;
      stopInput();
      return;
    }
    if (record === null) return;
    windowBytes += estimatedBytes(record);
    outstanding++;
    const recordNumber = ++sent;
    producer.send(record).then(onAcknowledged, (error: unknown) => onFailed({ lineNumber, line, recordNumber, error }));
    if ((windowBytes > WINDOW_BYTES || outstanding > WINDOW_RECORDS) && !paused) {
      paused = true;
      pauseInput?.();
    }
  };

  const removeInterrupt = onInterrupt(() => {
    interrupted = true;
    if (!inputEnded) inputCutShort = true;
    stopInput();
  });
  try {
    if (!readsStdin) {
      argv.values!.forEach((value, index) => send(String(value), index + 1));
    } else {
      if (process.stdin.isTTY) process.stderr.write('reading records from stdin, one per line; end with Ctrl-D\n');
      const lines = readLines(process.stdin, lineBytesMax(argv.format), send, (error) => {
        inputFailure ??= error instanceof LineTooLongError ? error : new Error(`cannot read stdin: ${systemErrorText(error as NodeJS.ErrnoException)}`);
        stopInput();
      });
      pauseInput = () => lines.pause();
      resumeInput = () => lines.resume();
      stopInput = () => {
        lines.close();
        process.stdin.destroy();
      };
      await lines.ended;
      inputEnded = true;
    }
    await producer.flush();
  } finally {
    removeInterrupt();
    if (progress !== null) clearInterval(progress);
    await producer.close();
  }
  const elapsedMs = performance.now() - startedAt;
  if (progress !== null) process.stderr.write('\r\x1b[2K');
  if (failedSends.earliest !== null) {
    const { error } = failedSends.earliest;
    // A malformed line read before the failure was known stopped the input too: said after it.
    const stoppedAt = inputFailure === null ? '' : `; reading then stopped: ${inputFailure instanceof Error ? inputFailure.message : String(inputFailure)}`;
    throw new Error(sendFailureLine(describeFailure(error, options, REACHED), failedSends.earliest, failedSends.count, acknowledged) + stoppedAt, { cause: error });
  }
  if (inputFailure !== null) {
    // One line on failure: the input problem, and how much got through before it (reading
    // stopped at it, so every record produced came before it).
    const error = describeFailure(inputFailure, options, REACHED);
    if (acknowledged > 0 && error instanceof Error) {
      error.message += ` (${formatCount(acknowledged)} record${acknowledged === 1 ? ' was' : 's were'} produced before it)`;
    }
    throw error;
  }
  const partitions = perPartition.filter((count) => count > 0).length;
  const rate = acknowledged / Math.max(elapsedMs / 1000, 0.001);
  // Stopped before the end of its input, the command did not do all it was given: a script
  // (`strata produce t < file && ...`, or a supervisor's SIGTERM) must not take it for done.
  if (inputCutShort) process.exitCode = EXIT_INTERRUPTED;
  process.stderr.write(
    `${inputCutShort ? 'interrupted before the end of the input: ' : interrupted ? 'interrupted: ' : ''}produced ${formatCount(acknowledged)} record${acknowledged === 1 ? '' : 's'} to ${plural(partitions, 'partition')} of "${argv.topic}" in ${(elapsedMs / 1000).toFixed(2)} s (${formatCount(rate)} records/s)\n`,
  );
}

/**
 * Refuses input that cannot be read as lines before anything is sent. Node.js reads a directory
 * on stdin (`strata produce t < /tmp`) as empty input, which would "produce 0 records" and exit 0.
 */
export function checkReadableInput(fd: number): void {
  let isDirectory: boolean;
  try {
    isDirectory = fstatSync(fd).isDirectory();
  } catch (error) {
    throw new Error(`cannot read stdin: ${systemErrorText(error as NodeJS.ErrnoException)}`);
  }
  // Worded as systemErrorText words the EISDIR a read would have given.
  if (isDirectory) throw new Error('cannot read stdin: EISDIR (illegal operation on a directory)');
}

/** A record the producer failed to send, where it came from, and why. */
export interface FailedSend {
  lineNumber: number;
  line: string;
  /** Its place among the records sent (1 for the first): the records before it in the input. */
  recordNumber: number;
  error: unknown;
}

/**
 * The one line for a failed send: which input line was not sent (the earliest, when several
 * were), why, and how many other records were produced before and after it in the input. Sends
 * fail independently (a record too large is refused alone), so later lines may have gone
 * through; every record before the earliest failed one was produced.
 */
export function sendFailureLine(cause: unknown, send: FailedSend, failedSends: number, acknowledged: number): string {
  // The producer's own message may end by saying so; the line says it once, up front.
  const reason = (cause instanceof Error ? cause.message : String(cause)).replace(/; it was not sent$/, '');
  const others = failedSends > 1 ? ` and ${formatCount(failedSends - 1)} other record${failedSends === 2 ? '' : 's'}` : '';
  const lineBytes = Buffer.byteLength(send.line, 'utf8');
  const what = `input line ${send.lineNumber} (${lineBytes === 1 ? '1 byte' : `${formatCount(lineBytes)} bytes`})${others}`;
  const before = send.recordNumber - 1;
  const after = acknowledged - before;
  const produced =
    acknowledged === 0
      ? 'no other record was produced'
      : `${formatCount(acknowledged)} other record${acknowledged === 1 ? ' was' : 's were'} produced (${formatCount(before)} before it, ${formatCount(after)} after it)`;
  return `${what} ${failedSends > 1 ? 'were' : 'was'} not sent: ${reason}; ${produced}`;
}

/**
 * The longest input line read: longer than any record could be in `format` (see
 * `PRODUCER_BUFFER_BYTES`), it is refused as soon as that much of it has come.
 */
export function lineBytesMax(format: 'text' | 'json'): number {
  return format === 'json' ? PRODUCER_BUFFER_BYTES * JSON_BYTES_PER_RECORD_BYTE_MAX : PRODUCER_BUFFER_BYTES;
}

/**
 * Whether the progress line is drawn: on a terminal, unless stdin is read from that terminal,
 * where redrawing the line every PROGRESS_INTERVAL_MS would write over the line being typed.
 */
export function showsProgress(stderrIsTerminal: boolean, readsTerminal: boolean): boolean {
  return stderrIsTerminal && !readsTerminal;
}

function drawProgress(sent: number, acknowledged: number, startedAt: number): void {
  const seconds = (performance.now() - startedAt) / 1000;
  if (seconds < 1) return;
  process.stderr.write(`\r\x1b[2K${progressLine(sent, acknowledged, seconds)}`);
}

/** `1 record acknowledged, 5 in flight (1 records/s)`. */
export function progressLine(sent: number, acknowledged: number, seconds: number): string {
  return `${formatCount(acknowledged)} ${acknowledged === 1 ? 'record' : 'records'} acknowledged, ${formatCount(sent - acknowledged)} in flight (${formatCount(acknowledged / seconds)} records/s)`;
}
