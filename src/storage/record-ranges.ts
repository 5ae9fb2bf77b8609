/**
 * Records held as byte ranges of one buffer, with no object per record. This is how the broker
 * holds the plain records of a produce request: their keys, values and header fields stay where
 * the request's bytes put them until `RecordBatchBuilder.appendRange` copies them into a batch.
 * A request of 5,000 records so costs three typed arrays instead of some 30,000 objects.
 *
 * Layout:
 * - per record (`RECORD_FIELDS` int32s): key start, key length, value start, value length,
 *   index of its first header, header count; plus its timestamp in a float64 array (0: none
 *   given, the batch's default applies);
 * - per header (`HEADER_FIELDS` int32s): key start, key length, value start, value length.
 *
 * Starts are offsets into `source`. A length of `NULL_LENGTH` (-1) is a null key or value; a
 * header key is never null (Kafka's header keys are strings: these are their UTF-8 bytes).
 */
import type { RecordInput } from './record-batch.js';

export const NULL_LENGTH = -1;
const INT32_MAX = 2 ** 31 - 1;

const RECORD_FIELDS = 6;
const KEY_START = 0;
const KEY_LENGTH = 1;
const VALUE_START = 2;
const VALUE_LENGTH = 3;
const FIRST_HEADER = 4;
const HEADER_COUNT = 5;

const HEADER_FIELDS = 4;
const HEADER_KEY_START = 0;
const HEADER_KEY_LENGTH = 1;
const HEADER_VALUE_START = 2;
const HEADER_VALUE_LENGTH = 3;

export class RecordRanges {
  private records: Int32Array;
  private timestamps: Float64Array;
  private headers: Int32Array;
  private recordCount = 0;
  private headerTotal = 0;
  /** Bytes of all keys and values (for the bytes-in metric). */
  private payload = 0;

  /** `expectedRecords` sizes the arrays; more records still fit (they grow). */
  constructor(
    readonly source: Buffer,
    expectedRecords: number,
  ) {
    if (source.length > INT32_MAX) throw new RangeError(`record ranges are int32s; a source of ${source.length} bytes is too large`);
    const capacity = Math.max(1, expectedRecords);
    this.records = new Int32Array(capacity * RECORD_FIELDS);
    this.timestamps = new Float64Array(capacity);
    this.headers = new Int32Array(0);
  }

  /** Copies plain record objects into one buffer (for callers that hold objects, such as tests). */
  static of(inputs: readonly RecordInput[]): RecordRanges {
    let bytes = 0;
    for (const input of inputs) {
      bytes += (input.key?.length ?? 0) + (input.value?.length ?? 0);
      for (const header of input.headers ?? []) bytes += Buffer.byteLength(header.key, 'utf8') + (header.value?.length ?? 0);
    }
    const source = Buffer.allocUnsafe(bytes);
    const ranges = new RecordRanges(source, inputs.length);
    let position = 0;
    const put = (bytes: Buffer | null | undefined): [number, number] => {
      if (bytes == null) return [0, NULL_LENGTH];
      source.set(bytes, position);
      position += bytes.length;
      return [position - bytes.length, bytes.length];
    };
    for (const input of inputs) {
      const firstHeader = ranges.headerCountTotal;
      for (const header of input.headers ?? []) {
        const [keyStart, keyLength] = put(Buffer.from(header.key, 'utf8'));
        const [valueStart, valueLength] = put(header.value);
        ranges.addHeader(keyStart, keyLength, valueStart, valueLength);
      }
      const [keyStart, keyLength] = put(input.key);
      const [valueStart, valueLength] = put(input.value);
      ranges.addRecord(input.timestamp ?? 0, keyStart, keyLength, valueStart, valueLength, firstHeader);
    }
    return ranges;
  }

  get count(): number {
    return this.recordCount;
  }

  /** Headers added so far, of all records: the `firstHeader` of the next record to add. */
  get headerCountTotal(): number {
    return this.headerTotal;
  }

  /** Bytes of all keys and values. */
  get payloadBytes(): number {
    return this.payload;
  }

  /** Adds a header to the record that the next `addRecord` adds. */
  addHeader(keyStart: number, keyLength: number, valueStart: number, valueLength: number): void {
    if ((this.headerTotal + 1) * HEADER_FIELDS > this.headers.length) {
      const grown = new Int32Array(Math.max(4 * HEADER_FIELDS, 2 * this.headers.length));
      grown.set(this.headers);
      this.headers = grown;
    }
    const at = this.headerTotal * HEADER_FIELDS;
    this.headers[at + HEADER_KEY_START] = keyStart;
    this.headers[at + HEADER_KEY_LENGTH] = keyLength;
    this.headers[at + HEADER_VALUE_START] = valueStart;
    this.headers[at + HEADER_VALUE_LENGTH] = valueLength;
    this.headerTotal++;
  }

  /**
   * Adds a record whose headers are those added since `firstHeader` (the `headerCountTotal`
   * before they were added). `timestamp` 0 means none was given.
   */
  addRecord(timestamp: number, keyStart: number, keyLength: number, valueStart: number, valueLength: number, firstHeader: number): void {
    if (this.recordCount === this.timestamps.length) this.grow();
    const at = this.recordCount * RECORD_FIELDS;
    const records = this.records;
    records[at + KEY_START] = keyStart;
    records[at + KEY_LENGTH] = keyLength;
    records[at + VALUE_START] = valueStart;
    records[at + VALUE_LENGTH] = valueLength;
    records[at + FIRST_HEADER] = firstHeader;
    records[at + HEADER_COUNT] = this.headerTotal - firstHeader;
    this.timestamps[this.recordCount] = timestamp;
    this.recordCount++;
    this.payload += Math.max(0, keyLength) + Math.max(0, valueLength);
  }

  timestamp(record: number): number {
    return this.timestamps[record]!;
  }

  keyStart(record: number): number {
    return this.records[record * RECORD_FIELDS + KEY_START]!;
  }

  /** `NULL_LENGTH` for a null key. */
  keyLength(record: number): number {
    return this.records[record * RECORD_FIELDS + KEY_LENGTH]!;
  }

  valueStart(record: number): number {
    return this.records[record * RECORD_FIELDS + VALUE_START]!;
  }

  /** `NULL_LENGTH` for a null value. */
  valueLength(record: number): number {
    return this.records[record * RECORD_FIELDS + VALUE_LENGTH]!;
  }

  /** Index (among all headers) of the record's first header. */
  firstHeader(record: number): number {
    return this.records[record * RECORD_FIELDS + FIRST_HEADER]!;
  }

  headerCount(record: number): number {
    return this.records[record * RECORD_FIELDS + HEADER_COUNT]!;
  }

  headerKeyStart(header: number): number {
    return this.headers[header * HEADER_FIELDS + HEADER_KEY_START]!;
  }

  headerKeyLength(header: number): number {
    return this.headers[header * HEADER_FIELDS + HEADER_KEY_LENGTH]!;
  }

  headerValueStart(header: number): number {
    return this.headers[header * HEADER_FIELDS + HEADER_VALUE_START]!;
  }

  /** `NULL_LENGTH` for a null header value. */
  headerValueLength(header: number): number {
    return this.headers[header * HEADER_FIELDS + HEADER_VALUE_LENGTH]!;
  }

  private grow(): void {
    const records = new Int32Array(2 * this.records.length);
    records.set(this.records);
    this.records = records;
    const timestamps = new Float64Array(2 * this.timestamps.length);
    timestamps.set(this.timestamps);
    this.timestamps = timestamps;
  }
}
