/**
 * The producer's ProduceRequest, encoded by hand around a batch that is already in memory.
 *
 * protobufjs would copy the batch into a new message buffer (and grpc-js copies that once more
 * into its frame). Here the batch is built with headroom in front of it (`RecordBatchBuilder`),
 * and the other fields are written into that headroom: the request is the batch's own buffer.
 * Protobuf lets fields come in any order, so the batch (field 4) goes last:
 *
 *   topic (1, string) · partition (2, int32) · acks (5, enum) · correlation_id (6, uint64) · batch (4, bytes)
 *
 * The stream that carries these uses a pass-through serializer (`methods.produceStreamEncoded`).
 * A test decodes the result with the generated ProduceRequest to hold this to the proto.
 */
import type { RecordBatchBuilder } from '../storage/record-batch-builder.js';

const TOPIC_TAG = (1 << 3) | 2;
const PARTITION_TAG = (2 << 3) | 0;
const BATCH_TAG = (4 << 3) | 2;
const ACKS_TAG = (5 << 3) | 0;
const CORRELATION_ID_TAG = (6 << 3) | 0;

/** Headroom for every field but the batch: tags, the widest varints, the topic name. */
export function produceRequestHeadroom(topic: string): number {
  return 1 + 5 + Buffer.byteLength(topic, 'utf8') + (1 + 5) + (1 + 5) + (1 + 8) + (1 + 5);
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
 * `produceRequestHeadroom(topic)` of headroom) and returns the whole encoded request.
 */
export function encodeProduceRequest(builder: RecordBatchBuilder, fields: ProduceRequestFields): Buffer {
  const topicBytes = Buffer.byteLength(fields.topic, 'utf8');
  const batchBytes = builder.sizeBytes;
  const prefixBytes =
    1 + uvarintSize(topicBytes) + topicBytes +
    1 + uvarintSize(fields.partition) +
    1 + uvarintSize(fields.acks) +
    1 + uvarintSize(fields.correlationId) +
    1 + uvarintSize(batchBytes);
  const request = builder.withHeadroom(prefixBytes);
  let position = 0;
  request[position++] = TOPIC_TAG;
  position = writeUvarint(request, position, topicBytes);
  position += request.write(fields.topic, position, 'utf8');
  request[position++] = PARTITION_TAG;
  position = writeUvarint(request, position, fields.partition);
  request[position++] = ACKS_TAG;
  position = writeUvarint(request, position, fields.acks);
  request[position++] = CORRELATION_ID_TAG;
  position = writeUvarint(request, position, fields.correlationId);
  request[position++] = BATCH_TAG;
  position = writeUvarint(request, position, batchBytes);
  if (position !== prefixBytes) throw new Error(`ProduceRequest prefix is ${position} bytes, expected ${prefixBytes}`);
  return request;
}

/** Bytes of a protobuf (unsigned, not zig-zag) varint of a non-negative safe integer. */
function uvarintSize(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    bytes++;
  }
  return bytes;
}

function writeUvarint(buffer: Buffer, position: number, value: number): number {
  while (value >= 0x80) {
    buffer[position++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[position++] = value;
  return position;
}
