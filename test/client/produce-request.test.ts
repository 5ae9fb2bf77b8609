// Goal: hold the producer's hand-encoded ProduceRequest to the proto: the generated decoder must
// read back every field, for topic names up to the longest allowed and ids up to 2^53; method:
// encode around a built batch, decode with the protobufjs class generated from proto/.
import { describe, expect, it } from 'vitest';
import { encodeProduceRequest, produceRequestHeadroom } from '../../src/client/produce-request.js';
import { strata } from '../../src/generated/strata.js';
import { RecordBatchBuilder } from '../../src/storage/record-batch-builder.js';

const v1 = strata.v1;

function request(topic: string, partition: number, acks: number, correlationId: number, values: number): { encoded: Buffer; batch: Buffer } {
  const builder = new RecordBatchBuilder({ headroom: produceRequestHeadroom(topic), initialCapacity: 64 });
  for (let index = 0; index < values; index++) builder.append(1_700_000_000_000 + index, null, Buffer.alloc(index * 10, index), null);
  const batch = Buffer.from(builder.finish({ producerId: 9, producerEpoch: 0, baseSequence: 0 }));
  return { encoded: encodeProduceRequest(builder, { topic, partition, acks, correlationId }), batch };
}

describe('encodeProduceRequest', () => {
  const cases: [string, string, number, number, number, number][] = [
    ['short topic, partition 0, acks ALL', 't', 0, v1.Acks.ACKS_ALL, 1, 1],
    ['longest topic name, large partition, acks LEADER', 'x'.repeat(249), 9_999, v1.Acks.ACKS_LEADER, 2 ** 53 - 1, 30],
    ['acks NONE (0), a batch over 16 KiB', 'orders.v2_eu-west', 127, v1.Acks.ACKS_NONE, 128, 60],
  ];
  it.each(cases)('%s: the generated decoder reads every field back', (_name, topic, partition, acks, correlationId, values) => {
    const { encoded, batch } = request(topic, partition, acks, correlationId, values);
    const decoded = v1.ProduceRequest.decode(encoded);
    expect(decoded.topic).toBe(topic);
    expect(decoded.partition).toBe(partition);
    expect(decoded.acks).toBe(acks);
    expect(decoded.correlationId.toString()).toBe(String(correlationId));
    expect(Buffer.from(decoded.batch).equals(batch)).toBe(true);
    expect(decoded.records).toEqual([]);
  });
});
