/**
 * FetchResponse and SubscribeResponse of decoded records (`raw = false`, what a client in any
 * language reads), encoded by hand straight from the batches read from the log: each record's
 * key, value and headers are copied from the batch into its `Record` message. There is no
 * protobufjs object, Long or encoder operation per record, which cost the broker about 1.5 µs
 * per 100-byte record and held such readers below a million records a second.
 *
 * Layout: one `records` field per record, then the response's varint fields (protobuf allows
 * fields in any order; they go last because next_offset is known only once the records are
 * written). A `Record` holds key (1) and value (2) unless null, its headers (3: key 1 unless
 * empty, value 2 unless null), timestamp (4) and offset (5) unless zero: the same fields
 * protobufjs wrote from the record objects before. A test decodes the result with the generated
 * classes and compares it with the records the codec decodes.
 *
 * Size: the log bounds the batches it reads by their stored bytes, but a gzip batch of 100 KB
 * may inflate to 128 MiB (INFLATED_BATCH_BYTES_MAX). So batches are inflated and written one at
 * a time, and no batch is added once the message passes `maxBytes`. The first batch always goes
 * in, as in Kafka, so a reader whose max_bytes is below one batch still makes progress. A gzip
 * batch's records go in one by one as they inflate (`forEachInflatedRecord`), and stop once the
 * message passes `maxBytes` (the first always goes in): a message is thus at most `maxBytes`
 * plus one stored batch's records or one record, never a whole inflated batch of up to 128 MiB
 * (more than most clients take in one message), and the broker inflates no further than that.
 * next_offset follows the last record written, not the last batch read. An inflation stopped
 * that way is kept (`StoppedInflations`), and the read from that next_offset goes on with it:
 * a reader going through such a batch costs one inflation of it, not one per message.
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
import { GRPC_FRAME_PREFIX_BYTES, markFramingRoom } from '../common/grpc-framing.js';
import { StoppedInflations } from '../storage/inflated-records.js';
import { type RecordVisitor, RECORDS_OFFSET, forEachBatch, forEachRecord, isCompressedBatch, readBatchSize, readLastOffset, readRecordCount } from '../storage/record-batch.js';
import { HEADER_KEY_TAG, HEADER_VALUE_TAG, RECORD_HEADERS_TAG, RECORD_KEY_TAG, RECORD_OFFSET_TAG, RECORD_TIMESTAMP_TAG, RECORD_VALUE_TAG } from './record-message.js';
import { type FetchResponseFields, type SubscribeResponseFields, fetchResponseFields, subscribeResponseFields } from './raw-responses.js';

const FETCH_RECORDS_TAG = fieldTag(1, LENGTH_DELIMITED);
const SUBSCRIBE_RECORDS_TAG = fieldTag(2, LENGTH_DELIMITED);

/**
 * Bytes a record's message takes beyond its batch bytes, in a first guess at the buffer's size:
 * the records tag and length, the key and value tags and lengths, a timestamp and an offset.
 */
const RECORD_OVERHEAD_GUESS = 32;

/** A response of decoded records, and which of the batches read it holds. */
export interface RecordsResponse {
  message: Buffer;
  /** The leading batches whose records are in `message` (for metrics; the last may be in part). */
  included: Buffer;
  /** The offset after the last record in `message` (the message's next_offset). */
  nextOffset: number;
}

/**
 * FetchResponse { records from `fromOffset`, high_watermark, log_start_offset, next_offset }, of
 * the leading batches that fit in `maxBytes` (at least one; a gzip batch's records up to the one
 * that passes it).
 */
export async function encodeRecordsFetchResponse(
  batches: Buffer,
  fromOffset: number,
  maxBytes: number,
  fields: Omit<FetchResponseFields, 'nextOffset'>,
): Promise<RecordsResponse> {
  const records = await encodeRecords(batches, fromOffset, maxBytes, FETCH_RECORDS_TAG);
  return finish(records, fetchResponseFields({ ...fields, nextOffset: records.nextOffset }));
}

/**
 * SubscribeResponse { partition, records from `fromOffset`, high_watermark, next_offset }, of the
 * leading batches that fit in `maxBytes` (at least one; a gzip batch's records up to the one
 * that passes it).
 */
export async function encodeRecordsSubscribeResponse(
  batches: Buffer,
  fromOffset: number,
  maxBytes: number,
  fields: Omit<SubscribeResponseFields, 'nextOffset'>,
): Promise<RecordsResponse> {
  const records = await encodeRecords(batches, fromOffset, maxBytes, SUBSCRIBE_RECORDS_TAG);
  return finish(records, subscribeResponseFields({ ...fields, nextOffset: records.nextOffset }));
}

/** Gzip batches whose decoded read stopped inside them, for the reads that go on from there. */
const stoppedInflations = new StoppedInflations();

/** The records of the batches, written as `recordsTag` fields, up to `maxBytes` (see the file comment). */
async function encodeRecords(batches: Buffer, fromOffset: number, maxBytes: number, recordsTag: number): Promise<{ writer: MessageWriter; included: Buffer; nextOffset: number }> {
  const positions: number[] = [];
  forEachBatch(batches, (position) => positions.push(position));
  const writer = new MessageWriter(Math.min(batches.length, maxBytes) + RECORD_OVERHEAD_GUESS);
  const visit = writer.recordVisitor(recordsTag);
  let end = 0;
  let nextOffset = fromOffset;
  for (const position of positions) {
    if (end > 0 && writer.messageBytes >= maxBytes) break;
    const size = readBatchSize(batches, position);
    end = position + size;
    nextOffset = readLastOffset(batches, position) + 1;
    if (!isCompressedBatch(batches, position)) {
      writer.reserve(size - RECORDS_OFFSET + readRecordCount(batches, position) * RECORD_OVERHEAD_GUESS);
      forEachRecord(batches, position, fromOffset, visit);
      continue;
    }
    // Inflated off the event loop, a chunk at a time, and only up to the record that passes max_bytes.
    const inflation = stoppedInflations.take(batches.subarray(position, end), fromOffset);
    let stopped = false;
    try {
      stopped = await inflation.read(fromOffset, (offset, timestamp, key, value, headers) => {
        visit(offset, timestamp, key, value, headers);
        if (writer.messageBytes < maxBytes) return true;
        nextOffset = offset + 1;
        return false;
      });
    } finally {
      if (stopped) stoppedInflations.keep(inflation);
      else inflation.close();
    }
  }
  return { writer, included: batches.subarray(0, end), nextOffset };
}

/**
 * A message whose buffer has more unused bytes than this (and than a quarter of the message) is
 * copied into one of its size: a Subscribe reader that stops reading holds its unsent messages,
 * and a buffer grown by doubling may be twice its message.
 */
const SLACK_KEPT_BYTES = 64 * 1024;

/**
 * The message: the records written, then the varint fields. It is framed for the wire in the
 * room kept in front of it, not copied by grpc-js (grpc-framing.ts); its buffer is its own.
 */
function finish(records: { writer: MessageWriter; included: Buffer; nextOffset: number }, fields: readonly VarintField[]): RecordsResponse {
  const writer = records.writer;
  writer.reserve(varintFieldsSize(fields));
  writer.position = writeVarintFields(writer.buffer, writer.position, fields);
  const slack = writer.buffer.length - writer.position;
  if (slack > SLACK_KEPT_BYTES && slack > writer.position / 4) {
    const fitted = Buffer.allocUnsafe(writer.position);
    writer.buffer.copy(fitted, GRPC_FRAME_PREFIX_BYTES, GRPC_FRAME_PREFIX_BYTES, writer.position);
    writer.buffer = fitted;
  }
  const message = markFramingRoom(writer.buffer.subarray(GRPC_FRAME_PREFIX_BYTES, writer.position));
  return { message, included: records.included, nextOffset: records.nextOffset };
}

/**
 * A growing buffer that records are written into as `Record` fields, after room for the gRPC
 * frame prefix.
 */
class MessageWriter {
  buffer: Buffer;
  position = GRPC_FRAME_PREFIX_BYTES;
  /** UTF-8 bytes of the current record's header keys (reused from record to record). */
  private readonly headerKeyBytes: number[] = [];

  constructor(capacity: number) {
    this.buffer = Buffer.allocUnsafe(GRPC_FRAME_PREFIX_BYTES + capacity);
  }

  /** The bytes of the message written so far. */
  get messageBytes(): number {
    return this.position - GRPC_FRAME_PREFIX_BYTES;
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
      this.reserve(1 + uvarintSize(size) + size);
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

  /** Makes room for `bytes` more after `position`, at least doubling when it grows. */
  reserve(bytes: number): void {
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
