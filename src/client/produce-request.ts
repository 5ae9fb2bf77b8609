/**
 * The producer's ProduceRequest, encoded by hand around a batch that is already in memory.
 *
 * protobufjs would copy the batch into a new message buffer (and grpc-js copies that once more
 * into its frame). Here the batch is built with headroom in front of it (`RecordBatchBuilder`),
 * and the other fields are written into that headroom: the request is the batch's own buffer,
 * and grpc-js writes its frame prefix into the five bytes left before it (`grpc-framing.ts`).
 * Protobuf lets fields come in any order, so the batch (field 4) goes last:
 *
 *   topic (1, string) · partition (2, int32) · acks (5, enum) · correlation_id (6, uint64) · batch (4, bytes)
 *
 * The stream that carries these uses a pass-through serializer (`methods.produceStreamEncoded`).
 * A test decodes the result with the generated ProduceRequest to hold this to the proto.
 */
import { GRPC_FRAME_PREFIX_BYTES, markFramingRoom } from '../common/grpc-framing.js';
import { LENGTH_DELIMITED, VARINT, type VarintField, fieldTag, uvarintSize, varintFieldsSize, writeUvarint, writeVarintFields } from '../common/protobuf-wire.js';
import type { RecordBatchBuilder } from '../storage/record-batch-builder.js';

const TOPIC_TAG = fieldTag(1, LENGTH_DELIMITED);
const PARTITION_TAG = fieldTag(2, VARINT);
const BATCH_TAG = fieldTag(4, LENGTH_DELIMITED);
const ACKS_TAG = fieldTag(5, VARINT);
const CORRELATION_ID_TAG = fieldTag(6, VARINT);

/**
 * Headroom for every field but the batch (tags, the widest varints, the topic name), and for
 * grpc-js's frame prefix (see grpc-framing.ts).
 */
export function produceRequestHeadroom(topic: string): number {
  return GRPC_FRAME_PREFIX_BYTES + 1 + 5 + Buffer.byteLength(topic, 'utf8') + (1 + 5) + (1 + 5) + (1 + 8) + (1 + 5);
}

export interface ProduceRequestFields {
  topic: string;
  partition: number;
  acks: number;
  /** Below 2^53. */
  correlationId: number;
}

/**
 * Writes the request's other fields in front of the finished batch in `builder` (built with
 * `produceRequestHeadroom(topic)` of headroom) and returns the whole encoded request, marked so
 * that grpc-js frames it in the headroom left in front of it instead of copying it. Its memory
 * must then stay as it is until the broker has answered the request.
 */
export function encodeProduceRequest(builder: RecordBatchBuilder, fields: ProduceRequestFields): Buffer {
  const topicBytes = Buffer.byteLength(fields.topic, 'utf8');
  const varints: VarintField[] = [
    [PARTITION_TAG, fields.partition],
    [ACKS_TAG, fields.acks],
    [CORRELATION_ID_TAG, fields.correlationId],
    [BATCH_TAG, builder.sizeBytes], // the batch's tag and length: its bytes follow
  ];
  const prefixBytes = 1 + uvarintSize(topicBytes) + topicBytes + varintFieldsSize(varints);
  const request = builder.withHeadroom(GRPC_FRAME_PREFIX_BYTES + prefixBytes).subarray(GRPC_FRAME_PREFIX_BYTES);
  let position = 0;
  request[position++] = TOPIC_TAG;
  position = writeUvarint(request, position, topicBytes);
  position += request.write(fields.topic, position, 'utf8');
  position = writeVarintFields(request, position, varints);
  if (position !== prefixBytes) throw new Error(`ProduceRequest prefix is ${position} bytes, expected ${prefixBytes}`);
  return markFramingRoom(request);
}
