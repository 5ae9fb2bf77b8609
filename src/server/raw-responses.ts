/**
 * FetchResponse and SubscribeResponse of raw batches, encoded by hand in front of the batches
 * read from the log.
 *
 * The log reads batches into a buffer with headroom before them (`ReadResult.headroom`), so the
 * other fields and the length of `batches` are written there and the whole message is the read
 * buffer: no protobufjs encode (which copies the batches, growing its buffer on the way). The
 * service definitions pass such Buffers to grpc-js unchanged. Batches go last; protobuf allows
 * fields in any order. A test decodes the result with the generated classes.
 */
import { GRPC_FRAME_PREFIX_BYTES, markFramingRoom } from '../common/grpc-framing.js';
import { LENGTH_DELIMITED, VARINT, type VarintField, fieldTag, varintFieldsSize, writeVarintFields } from '../common/protobuf-wire.js';

const FETCH_BATCHES_TAG = fieldTag(2, LENGTH_DELIMITED);
const FETCH_HIGH_WATERMARK_TAG = fieldTag(3, VARINT);
const FETCH_LOG_START_OFFSET_TAG = fieldTag(4, VARINT);
const FETCH_NEXT_OFFSET_TAG = fieldTag(5, VARINT);

const SUBSCRIBE_PARTITION_TAG = fieldTag(1, VARINT);
const SUBSCRIBE_BATCHES_TAG = fieldTag(3, LENGTH_DELIMITED);
const SUBSCRIBE_HIGH_WATERMARK_TAG = fieldTag(4, VARINT);
const SUBSCRIBE_NEXT_OFFSET_TAG = fieldTag(5, VARINT);

/** The most any prefix below takes: four tags, three 64-bit varints, one 32-bit one, a length. */
export const RAW_RESPONSE_PREFIX_MAX = 4 + 3 * 10 + 5 + 5;

export interface FetchResponseFields {
  highWatermark: number;
  logStartOffset: number;
  nextOffset: number;
}

/** FetchResponse { batches, high_watermark, log_start_offset, next_offset }. */
export function encodeRawFetchResponse(batches: Buffer, headroom: number, fields: FetchResponseFields): Buffer {
  return encodeAroundBatches(batches, headroom, FETCH_BATCHES_TAG, fetchResponseFields(fields));
}

/** A FetchResponse's varint fields (record-responses.ts writes them too). */
export function fetchResponseFields(fields: FetchResponseFields): VarintField[] {
  return [
    [FETCH_HIGH_WATERMARK_TAG, fields.highWatermark],
    [FETCH_LOG_START_OFFSET_TAG, fields.logStartOffset],
    [FETCH_NEXT_OFFSET_TAG, fields.nextOffset],
  ];
}

export interface SubscribeResponseFields {
  partition: number;
  highWatermark: number;
  nextOffset: number;
}

/** SubscribeResponse { partition, batches, high_watermark, next_offset }. */
export function encodeRawSubscribeResponse(batches: Buffer, headroom: number, fields: SubscribeResponseFields): Buffer {
  return encodeAroundBatches(batches, headroom, SUBSCRIBE_BATCHES_TAG, subscribeResponseFields(fields));
}

/** A SubscribeResponse's varint fields (record-responses.ts writes them too). */
export function subscribeResponseFields(fields: SubscribeResponseFields): VarintField[] {
  return [
    [SUBSCRIBE_PARTITION_TAG, fields.partition],
    [SUBSCRIBE_HIGH_WATERMARK_TAG, fields.highWatermark],
    [SUBSCRIBE_NEXT_OFFSET_TAG, fields.nextOffset],
  ];
}

/** The varint fields, then the batches field (tag, length, bytes). */
function encodeAroundBatches(batches: Buffer, headroom: number, batchesTag: number, fields: readonly VarintField[]): Buffer {
  const lengthField: VarintField = [batchesTag, batches.length];
  const message = messageAround(batches, headroom, varintFieldsSize(fields) + varintFieldsSize([lengthField]));
  writeVarintFields(message, writeVarintFields(message, 0, fields), [lengthField]);
  return message;
}

/**
 * A buffer of `prefix` bytes followed by `batches`: the batches' own memory when `headroom` (bytes
 * before them that belong to them alone) allows, else a copy. When the headroom also holds
 * grpc-js's frame prefix, the message is marked for grpc-js to frame it there (grpc-framing.ts).
 */
function messageAround(batches: Buffer, headroom: number, prefix: number): Buffer {
  if (prefix <= headroom && prefix <= batches.byteOffset) {
    const message = Buffer.from(batches.buffer, batches.byteOffset - prefix, prefix + batches.length);
    return prefix + GRPC_FRAME_PREFIX_BYTES <= headroom ? markFramingRoom(message) : message;
  }
  const message = Buffer.allocUnsafe(prefix + batches.length);
  message.set(batches, prefix);
  return message;
}
