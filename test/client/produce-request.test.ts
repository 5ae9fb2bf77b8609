// Goal: hold the producer's hand-encoded ProduceRequest to the proto: the generated decoder must
// read back every field, for topic names up to the longest allowed and ids up to 2^53; method:
// encode around a built batch, decode with the protobufjs class generated from proto/. The
// request also leaves room in its batch's headroom for grpc-js to frame it in place.
import { describe, expect, it } from 'vitest';
import { encodeProduceRequest, produceRequestHeadroom } from '../../src/client/produce-request.js';
import { GRPC_FRAME_PREFIX_BYTES, hasFramingRoom } from '../../src/common/grpc-framing.js';
import { strata } from '../../src/generated/strata.js';
import { RecordBatchBuilder } from '../../src/storage/record-batch-builder.js';

const v1 = strata.v1;

function request(topic: string, partition: number, acks: number, correlationId: number, values: number): { encoded: Buffer; batch: Buffer; roomBefore: number } {
  const builder = new RecordBatchBuilder({ headroom: produceRequestHeadroom(topic), initialCapacity: 64 });
  for (let index = 0; index < values; index++) builder.append(1_700_000_000_000 + index, null, Buffer.alloc(index * 10, index), null);
  const batch = Buffer.from(builder.finish({ producerId: 9, producerEpoch: 0, baseSequence: 0 }));
  const encoded = encodeProduceRequest(builder, { topic, partition, acks, correlationId });
  // The builder's buffer from the start of its headroom: the room before the request is in it.
  const whole = builder.withHeadroom(produceRequestHeadroom(topic));
  return { encoded, batch, roomBefore: encoded.byteOffset - whole.byteOffset };
}

describe('encodeProduceRequest', () => {
  const cases: [string, string, number, number, number, number][] = [
    ['short topic, partition 0, acks ALL', 't', 0, v1.Acks.ACKS_ALL, 1, 1],
    ['longest topic name, large partition, acks LEADER', 'x'.repeat(249), 9_999, v1.Acks.ACKS_LEADER, 2 ** 53 - 1, 30],
    ['acks NONE (0), a batch over 16 KiB', 'orders.v2_eu-west', 127, v1.Acks.ACKS_NONE, 128, 60],
  ];
  it.each(cases)('%s: the generated decoder reads every field back', (_name, topic, partition, acks, correlationId, values) => {
    const { encoded, batch, roomBefore } = request(topic, partition, acks, correlationId, values);
    expect(hasFramingRoom(encoded)).toBe(true);
    expect(roomBefore).toBeGreaterThanOrEqual(GRPC_FRAME_PREFIX_BYTES);
    const decoded = v1.ProduceRequest.decode(encoded);
    expect(decoded.topic).toBe(topic);
    expect(decoded.partition).toBe(partition);
    expect(decoded.acks).toBe(acks);
    expect(decoded.correlationId.toString()).toBe(String(correlationId));
    expect(Buffer.from(decoded.batch).equals(batch)).toBe(true);
    expect(decoded.records).toEqual([]);
  });
});
