// Goal: Log requests whose fields are out of their domain are refused with INVALID_ARGUMENT and a
// message naming the field and what it may be, never taken as something else (a producer id
// below -1 as "not idempotent", an illegal topic name as an unknown topic); method: each sent
// over real gRPC to an in-process broker, with a check that nothing was appended. (The broad
// table of bad requests is bad-requests.test.ts.)
import { type ServiceError, status } from '@grpc/grpc-js';
import Long from 'long';
import { describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { grpcError, v1 } from '../helpers/grpc-client.js';
import { useSharedBroker } from '../helpers/shared-broker.js';

const shared = useSharedBroker();

const record = (value: string): strata.v1.Record => v1.Record.create({ value: Buffer.from(value) });

function produce(fields: strata.v1.IProduceRequest): Promise<strata.v1.ProduceResponse> {
  return shared.client.call('log.produce', v1.ProduceRequest.create(fields));
}

/** The status a Subscribe of `fields` ends with (it must end with an error, not data). */
function subscribeError(fields: strata.v1.ISubscribeRequest): Promise<ServiceError> {
  return shared.client.subscribeError(v1.SubscribeRequest.create(fields));
}

const outcome = (error: ServiceError): { code: string | undefined; details: string } => ({ code: status[error.code], details: error.details });

describe('Produce: producer_id', () => {
  it('refuses a negative producer_id other than -1 with INVALID_ARGUMENT naming the allowed values, and appends nothing', async () => {
    const topic = 'producer-id-domain';
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions: 1 }));
    for (const producerId of [-2, -9_000_000_000]) {
      const error = await grpcError(produce({ topic, partition: 0, records: [record('x')], producerId: Long.fromNumber(producerId), producerEpoch: 0, baseSequence: 0 }));
      expect(outcome(error)).toEqual({
        code: 'INVALID_ARGUMENT',
        details: `producer_id ${producerId} is not valid: use an id from InitProducer (1 or more), or -1 or no producer_id for a producer that is not idempotent`,
      });
    }
    // -1, like no producer_id, is a producer that is not idempotent: appended, the first record.
    const appended = await produce({ topic, partition: 0, records: [record('plain')], producerId: Long.fromNumber(-1) });
    expect(appended.batches.map((batch) => batch.baseOffset.toNumber())).toEqual([0]);
    // So with a raw batch, whose header carries the producer fields: -1 is taken, as log.proto says.
    const raw = await produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('raw') }]), producerId: Long.fromNumber(-1) });
    expect(raw.batches.map((batch) => batch.baseOffset.toNumber())).toEqual([1]);
  });
});

describe('Produce: a producer id InitProducer never handed out', () => {
  // A client written from the proto alone that leaves the batch header's producer fields zero
  // would otherwise have its second batch (sequence 0 again) answered as a retry and dropped.
  it('is refused with INVALID_ARGUMENT on both paths, and nothing is appended; an issued id works', async () => {
    const topic = 'producer-id-issued';
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions: 1 }));
    const issued = (await shared.client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create({}))).producerId.toNumber();
    const zeroed = (value: string): Buffer => buildBatch([{ value: Buffer.from(value) }], { producerId: 0, producerEpoch: 0, baseSequence: 0 });
    for (const request of [
      { topic, partition: 0, batch: zeroed('a') },
      { topic, partition: 0, batch: buildBatch([{ value: Buffer.from('b') }], { producerId: issued + 1000, producerEpoch: 0, baseSequence: 0 }) },
      { topic, partition: 0, records: [record('c')], producerId: Long.fromNumber(issued + 1000), producerEpoch: 0, baseSequence: 0 },
    ]) {
      const error = await grpcError(produce(request));
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toMatch(/^producer id \d+ was never handed out by this broker's InitProducer \(it has issued 1 to \d+\): call InitProducer for an id, or send -1/);
    }
    const listed = await shared.client.call<strata.v1.ListOffsetsResponse>('log.listOffsets', v1.ListOffsetsRequest.create({ topic, partition: 0, position: { latest: true } }));
    expect(listed.offset.toNumber()).toBe(0);
    const appended = await produce({ topic, partition: 0, records: [record('kept')], producerId: Long.fromNumber(issued), producerEpoch: 0, baseSequence: 0 });
    expect(appended.batches.map((batch) => batch.baseOffset.toNumber())).toEqual([0]);
  });
});

describe('Produce: an idempotent raw batch without a partition', () => {
  // The broker would pick the partition by the first key (or in turn for none), so the
  // producer's per-partition sequence numbers could not match it, and a retry could land on
  // another partition and be written twice.
  it('is refused with INVALID_ARGUMENT, and nothing is appended; with a partition it is taken', async () => {
    const topic = 'idempotent-no-partition';
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions: 3 }));
    const issued = (await shared.client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create({}))).producerId.toNumber();
    const batch = buildBatch([{ key: Buffer.from('k'), value: Buffer.from('v') }], { producerId: issued, producerEpoch: 0, baseSequence: 0 });
    const error = await grpcError(produce({ topic, batch }));
    expect(outcome(error)).toEqual({
      code: 'INVALID_ARGUMENT',
      details: `an idempotent batch (producer id ${issued}) needs an explicit partition: its sequence numbers count per partition; set partition`,
    });
    for (let partition = 0; partition < 3; partition++) {
      const listed = await shared.client.call<strata.v1.ListOffsetsResponse>('log.listOffsets', v1.ListOffsetsRequest.create({ topic, partition, position: { latest: true } }));
      expect(listed.offset.toNumber()).toBe(0);
    }
    const appended = await produce({ topic, partition: 2, batch });
    expect(appended.batches.map(({ partition, baseOffset }) => [partition, baseOffset.toNumber()])).toEqual([[2, 0]]);
  });
});

describe('Produce: a negative producer id other than -1', () => {
  // Taken as "not idempotent", a client's retries would be appended twice without a word.
  it('is refused with INVALID_ARGUMENT in a raw batch header, as on the records path, and nothing is appended', async () => {
    const topic = 'producer-id-negative';
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions: 1 }));
    const raw = await grpcError(produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('a') }], { producerId: -5, producerEpoch: 0, baseSequence: 0 }) }));
    expect({ code: status[raw.code], details: raw.details }).toEqual({
      code: 'INVALID_ARGUMENT',
      details: "a batch's producer id -5 is not valid: use an id from InitProducer (1 or more), or -1 for a producer that is not idempotent",
    });
    const records = await grpcError(produce({ topic, partition: 0, records: [record('b')], producerId: Long.fromNumber(-5), producerEpoch: 0, baseSequence: 0 }));
    expect({ code: status[records.code], details: records.details }).toEqual({
      code: 'INVALID_ARGUMENT',
      details: 'producer_id -5 is not valid: use an id from InitProducer (1 or more), or -1 or no producer_id for a producer that is not idempotent',
    });
    const listed = await shared.client.call<strata.v1.ListOffsetsResponse>('log.listOffsets', v1.ListOffsetsRequest.create({ topic, partition: 0, position: { latest: true } }));
    expect(listed.offset.toNumber()).toBe(0);
  });
});

describe('Subscribe: topic names', () => {
  it('refuses an illegal topic name with INVALID_ARGUMENT when no partitions are named, as when some are', async () => {
    for (const partitions of [[], [0]]) {
      expect(outcome(await subscribeError({ topic: 'a/b', partitions, start: { earliest: true } }))).toEqual({ code: 'INVALID_ARGUMENT', details: 'topic name "a/b" has characters outside [a-zA-Z0-9._-]' });
      expect(outcome(await subscribeError({ topic: '..', partitions }))).toEqual({ code: 'INVALID_ARGUMENT', details: 'topic name ".." is not allowed' });
    }
    // A legal name that no topic has is NOT_FOUND.
    expect(outcome(await subscribeError({ topic: 'no-such-topic' }))).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('Subscribe: topic_created_at_ms', () => {
  it('refuses, with NOT_FOUND naming both creation times, a topic created again since the one meant; 0 and the right time are followed', async () => {
    const name = 'incarnations';
    const describe = (): Promise<strata.v1.TopicDescription> => shared.client.call('admin.describeTopic', v1.DescribeTopicRequest.create({ name }));
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions: 1 }));
    const first = (await describe()).createdAtMs;
    // Deleted and created again at once: within the same millisecond, maybe, yet another creation time.
    await shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name }));
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions: 1 }));
    const second = (await describe()).createdAtMs;
    expect(second.toNumber()).toBeGreaterThan(first.toNumber());
    const refused = outcome(await subscribeError({ topic: name, topicCreatedAtMs: first }));
    expect(refused.code).toBe('NOT_FOUND');
    expect(refused.details).toMatch(new RegExp(`^topic "${name}" created at \\S+ \\(topic_created_at_ms ${first.toString()}\\) is gone; the topic of that name now was created at \\S+ \\(${second.toString()}\\): start afresh in it`));
    // A negative time is a client's mistake, not a topic created again.
    expect(outcome(await subscribeError({ topic: name, topicCreatedAtMs: Long.fromNumber(-1) }))).toEqual({ code: 'INVALID_ARGUMENT', details: 'topic_created_at_ms must be a non-negative integer, got -1' });
    // Past any date: the number is named as it is.
    expect(outcome(await subscribeError({ topic: name, topicCreatedAtMs: Long.fromNumber(Number.MAX_SAFE_INTEGER) })).details).toContain(`created at ${Number.MAX_SAFE_INTEGER} ms (topic_created_at_ms`);
    // The time of the topic that exists, or none: followed (an explicit offset past the end is the error then).
    for (const topicCreatedAtMs of [second, Long.ZERO]) {
      expect(outcome(await subscribeError({ topic: name, topicCreatedAtMs, start: { offset: Long.fromNumber(5) } })).code).toBe('OUT_OF_RANGE');
    }
  });
});
