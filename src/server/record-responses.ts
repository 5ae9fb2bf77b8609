/**
 * FetchResponse and SubscribeResponse of decoded records (`raw = false`, what a client in any
 * language reads), encoded by hand straight from the batches read from the log: each record's
 * key, value and headers are copied from the batch into its `Record` message. There is no
 * protobufjs object, Long or encoder operation per record, which cost the broker about 1.5 µs
 * per 100-byte record and held such readers below a million records a second.
 *
 * Layout: the response's varint fields first, then one `records` field per record (protobuf
 * allows fields in any order). A `Record` holds key (1) and value (2) unless null, its headers
 * (3: key 1 unless empty, value 2 unless null), timestamp (4) and offset (5) unless zero: the
 * same fields protobufjs wrote from the record objects before. A test decodes the result with
 * the generated classes and compares it with the records the codec decodes.
 */
import {
  LENGTH_DELIMITED,
  type VarintField,
  fieldTag,
  int64VarintSize,
  uvarintSize,
  varintFieldsSize,
  writeInt64Varint,
  writeUvarint,
  writeVarintFields,
} from '../common/protobuf-wire.js';
import { type RecordVisitor, forEachBatch, forEachRecord, inflateBatches, readRecordCount } from '../storage/record-batch.js';
import { HEADER_KEY_TAG, HEADER_VALUE_TAG, RECORD_HEADERS_TAG, RECORD_KEY_TAG, RECORD_OFFSET_TAG, RECORD_TIMESTAMP_TAG, RECORD_VALUE_TAG } from './record-message.js';
import { type FetchResponseFields, type SubscribeResponseFields, fetchResponseFields, subscribeResponseFields } from './raw-responses.js';

const FETCH_RECORDS_TAG = fieldTag(1, LENGTH_DELIMITED);
const SUBSCRIBE_RECORDS_TAG = fieldTag(2, LENGTH_DELIMITED);

/**
 * Bytes a record's message takes beyond its batch bytes, in a first guess at the buffer's size:
 * the records tag and length, the key and value tags and lengths, a timestamp and an offset.
 */
const RECORD_OVERHEAD_GUESS = 32;

/** FetchResponse { high_watermark, log_start_offset, next_offset, records from `fromOffset` }. */
export async function encodeRecordsFetchResponse(batches: Buffer, fromOffset: number, fields: FetchResponseFields): Promise<Buffer> {
  return encodeWithRecords(batches, await inflateBatches(batches), fromOffset, FETCH_RECORDS_TAG, fetchResponseFields(fields));
}

/** SubscribeResponse { partition, high_watermark, next_offset, records from `fromOffset` }. */
export async function encodeRecordsSubscribeResponse(batches: Buffer, fromOffset: number, fields: SubscribeResponseFields): Promise<Buffer> {
  return encodeWithRecords(batches, await inflateBatches(batches), fromOffset, SUBSCRIBE_RECORDS_TAG, subscribeResponseFields(fields));
}

/** Writes the response; compressed batches' records come from `inflated` (inflated off the event loop). */
function encodeWithRecords(batches: Buffer, inflated: Map<number, Buffer> | null, fromOffset: number, recordsTag: number, fields: readonly VarintField[]): Buffer {
  let recordCount = 0;
  forEachBatch(batches, (position) => (recordCount += readRecordCount(batches, position)));
  let inflatedBytes = 0;
  for (const records of inflated?.values() ?? []) inflatedBytes += records.length;
  const writer = new MessageWriter(varintFieldsSize(fields) + batches.length + inflatedBytes + recordCount * RECORD_OVERHEAD_GUESS);
  writer.position = writeVarintFields(writer.buffer, 0, fields);
  const visit = writer.recordVisitor(recordsTag);
  forEachBatch(batches, (position) => forEachRecord(batches, position, fromOffset, visit, inflated?.get(position)));
  return writer.buffer.subarray(0, writer.position);
}

/** A growing buffer that records are written into as `Record` fields. */
class MessageWriter {
  buffer: Buffer;
  position = 0;
  /** UTF-8 bytes of the current record's header keys (reused from record to record). */
  private readonly headerKeyBytes: number[] = [];

  constructor(capacity: number) {
    this.buffer = Buffer.allocUnsafe(capacity);
  }

  /** The visitor that writes each record it is handed as a `tag` field. */
  recordVisitor(tag: number): RecordVisitor {
    const keyBytes = this.headerKeyBytes;
    return (offset, timestamp, key, value, headers) => {
      let size = bytesFieldSize(key) + bytesFieldSize(value);
      for (let index = 0; index < headers.length; index++) {
        const header = headers[index]!;
        keyBytes[index] = Buffer.byteLength(header.key, 'utf8');
        const headerSize = headerMessageSize(keyBytes[index]!, header.value);
        size += 1 + uvarintSize(headerSize) + headerSize;
      }
      if (timestamp !== 0) size += 1 + int64VarintSize(timestamp);
      if (offset !== 0) size += 1 + int64VarintSize(offset);
      this.ensure(1 + uvarintSize(size) + size);
      const buffer = this.buffer;
      let position = this.position;
      buffer[position++] = tag;
      position = writeUvarint(buffer, position, size);
      position = writeBytesField(buffer, position, RECORD_KEY_TAG, key);
      position = writeBytesField(buffer, position, RECORD_VALUE_TAG, value);
      for (let index = 0; index < headers.length; index++) {
        const header = headers[index]!;
        buffer[position++] = RECORD_HEADERS_TAG;
        position = writeUvarint(buffer, position, headerMessageSize(keyBytes[index]!, header.value));
        if (keyBytes[index]! > 0) {
          buffer[position++] = HEADER_KEY_TAG;
          position = writeUvarint(buffer, position, keyBytes[index]!);
          position += buffer.write(header.key, position, 'utf8');
        }
        position = writeBytesField(buffer, position, HEADER_VALUE_TAG, header.value);
      }
      if (timestamp !== 0) {
        buffer[position++] = RECORD_TIMESTAMP_TAG;
        position = writeInt64Varint(buffer, position, timestamp);
      }
      if (offset !== 0) {
        buffer[position++] = RECORD_OFFSET_TAG;
        position = writeInt64Varint(buffer, position, offset);
      }
      this.position = position;
    };
  }

  private ensure(bytes: number): void {
    if (this.position + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.position + bytes, 2 * this.buffer.length));
    this.buffer.copy(grown, 0, 0, this.position);
    this.buffer = grown;
  }
}

/** A `Header` message's bytes: the key unless empty, the value unless null. */
function headerMessageSize(keyBytes: number, value: Buffer | null): number {
  return (keyBytes > 0 ? 1 + uvarintSize(keyBytes) + keyBytes : 0) + bytesFieldSize(value);
}

/** An optional bytes field's bytes: nothing for null. */
function bytesFieldSize(bytes: Buffer | null): number {
  return bytes === null ? 0 : 1 + uvarintSize(bytes.length) + bytes.length;
}

function writeBytesField(buffer: Buffer, position: number, tag: number, bytes: Buffer | null): number {
  if (bytes === null) return position;
  buffer[position++] = tag;
  position = writeUvarint(buffer, position, bytes.length);
  buffer.set(bytes, position);
  return position + bytes.length;
}
