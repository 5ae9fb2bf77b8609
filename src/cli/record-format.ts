/**
 * How `consume` and `tail` print records, one per line:
 * - text: the value's bytes as they are (a null value prints as an empty line); with
 *   `--print-key`, the key's bytes, a TAB, then the value;
 * - json: `{"topic","partition","offset","timestamp","key","value","headers"}` with keys, values
 *   and header values as UTF-8 strings when valid, else `{"base64": "..."}` (see output.ts);
 *   `timestamp` is ms since the epoch. `produce --format json` reads these lines back.
 *
 * Printing appends to an OutputWriter (no write per record), which is what keeps `consume` fast.
 * `printBatch` applies the limits of a `consume` run (`--count`, and without `--follow` the high
 * watermarks captured at start) to each fetched batch.
 */
import { isUtf8 } from 'node:buffer';
import type { ConsumerBatch, ConsumerRecord } from '../client/consumer.js';
import type { OutputWriter } from './output.js';

export type RecordFormat = 'text' | 'json';

export const RECORD_FORMATS: readonly RecordFormat[] = ['text', 'json'];

export class RecordPrinter {
  private topicJson = '';
  private topicName: string | null = null;

  constructor(
    private readonly writer: OutputWriter,
    private readonly format: RecordFormat,
    private readonly printKey: boolean,
  ) {}

  print(record: ConsumerRecord): void {
    const writer = this.writer;
    if (this.format === 'json') {
      this.printJson(record);
      return;
    }
    if (this.printKey) {
      if (record.key !== null) writer.bytes(record.key);
      writer.tab();
    }
    if (record.value !== null) writer.bytes(record.value);
    writer.newline();
  }

  private printJson(record: ConsumerRecord): void {
    const writer = this.writer;
    if (record.topic !== this.topicName) {
      this.topicName = record.topic;
      this.topicJson = JSON.stringify(record.topic); // topic names are ASCII
    }
    writer.ascii(`{"topic":${this.topicJson},"partition":${record.partition},"offset":${record.offset},"timestamp":${record.timestamp},"key":`);
    writeJsonBytes(writer, record.key);
    writer.bytes(VALUE_FIELD);
    writeJsonBytes(writer, record.value);
    writer.bytes(HEADERS_FIELD);
    for (let index = 0; index < record.headers.length; index++) {
      const header = record.headers[index]!;
      writer.text(`${index === 0 ? '' : ','}${JSON.stringify(header.key)}:`);
      writeJsonBytes(writer, header.value);
    }
    writer.bytes(RECORD_END);
  }
}

const VALUE_FIELD = Buffer.from(',"value":');
const HEADERS_FIELD = Buffer.from(',"headers":{');
const RECORD_END = Buffer.from('}}\n');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Writes bytes as JSON: a string when valid UTF-8, else {"base64": ...}; null is null. Text
 * that needs no escaping (the common case) is copied as it is, without making a string.
 */
export function writeJsonBytes(writer: OutputWriter, bytes: Buffer | null): void {
  if (bytes === null) {
    writer.ascii('null');
    return;
  }
  let escape = false;
  let ascii = true;
  for (let index = 0; index < bytes.length; index++) {
    const byte = bytes[index]!;
    if (byte < 0x20 || byte === QUOTE || byte === BACKSLASH) {
      escape = true;
      break;
    }
    if (byte >= 0x80) ascii = false;
  }
  if (!escape && (ascii || isUtf8(bytes))) {
    writer.byte(QUOTE);
    writer.bytes(bytes);
    writer.byte(QUOTE);
  } else {
    writer.text(jsonBytes(bytes));
  }
}

/** The JSON text of bytes: a string when valid UTF-8, else {"base64": ...}; null is null. */
export function jsonBytes(bytes: Buffer | null): string {
  if (bytes === null) return 'null';
  if (isUtf8(bytes)) return JSON.stringify(bytes.toString('utf8'));
  return `{"base64":"${bytes.toString('base64')}"}`;
}

// ---------------------------------------------------------------------------------------------
// What `consume` prints of each fetched batch.

/** The limits of one `consume` run. */
export interface ReadState {
  remaining: number;
  /** With --follow there is no end offset. */
  follow: boolean;
  /** High watermark per partition when the command started: the end without --follow. */
  endOffsets: Map<number, number>;
}

/**
 * Prints the records of `batch` that belong to this run, calling `afterEach` (if given) after
 * each one. Returns the offset after the last printed record when it stopped inside the batch
 * (count reached, or the partition's end), so the caller can move the partition back there;
 * null when the whole batch was printed.
 */
export function printBatch(batch: ConsumerBatch, printer: RecordPrinter, state: ReadState, afterEach?: () => void): number | null {
  const end = state.follow ? Number.POSITIVE_INFINITY : (state.endOffsets.get(batch.partition) ?? 0);
  const records = batch.records;
  for (let index = 0; index < records.length; index++) {
    const record = records[index]!;
    if (record.offset >= end || state.remaining <= 0) return record.offset;
    printer.print(record);
    afterEach?.();
    state.remaining--;
  }
  return null;
}

/** True when `partition` has nothing left to print in this run (not following). */
export function reachedEnd(state: ReadState, partition: number, nextOffset: number): boolean {
  return !state.follow && nextOffset >= (state.endOffsets.get(partition) ?? 0);
}
