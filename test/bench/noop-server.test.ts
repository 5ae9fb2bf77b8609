// Goal: the no-op server states the broker's window of batches in flight (so the client keeps as
// many in flight against it); it relays every batch produced after a subscriber caught up (or,
// started past the end, once the end reaches it), with the producer's own records in order and
// offsets as the broker would assign them, so that
// `strata bench baseline --workload e2e` measures the transport alone; a cancelled
// subscription is no longer relayed to; and a catch-up read gets copies of a full batch of the
// fill, not of its last, short one. Method: the no-op server in this process, the real client
// Producer and Consumer over gRPC.
import { once } from 'node:events';
import { expect, it } from 'vitest';
import { runE2eLoad } from '../../src/bench/e2e-load.js';
import { NoopState } from '../../src/bench/noop-server.js';
import { useNoopServer } from '../helpers/noop-server.js';
import { Admin } from '../../src/client/admin.js';
import { Consumer, type ConsumerOptions, type ConsumerRecord } from '../../src/client/consumer.js';
import { Producer } from '../../src/client/producer.js';
import { rootLogger } from '../../src/common/logger.js';
import { strata } from '../../src/generated/strata.js';
import { PRODUCER_BATCH_WINDOW } from '../../src/storage/producer-state.js';
import { forEachBatch, readRecordCount } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { e2eLoadOptions } from '../helpers/e2e-load-options.js';
import { TestClient } from '../helpers/grpc-client.js';
import { waitUntil } from '../helpers/wait.js';

const noop = useNoopServer(() => new NoopState());

async function createTopic(name: string): Promise<void> {
  const admin = new Admin({ server: noop.server.address });
  try {
    await admin.createTopic(name);
  } finally {
    await admin.close();
  }
}

/** Runs `body` with a Producer and a Consumer (with `consumerOptions`) on the no-op server, closing both after. */
async function withClients(consumerOptions: Partial<ConsumerOptions>, body: (producer: Producer, consumer: Consumer) => Promise<void>): Promise<void> {
  const producer = new Producer({ server: noop.server.address, lingerMs: 0 });
  const consumer = new Consumer({ server: noop.server.address, logger: rootLogger, ...consumerOptions });
  try {
    await body(producer, consumer);
  } finally {
    await producer.close();
    await consumer.close();
  }
}

/** The next `count` records, batch by batch; fails after 10 s. */
async function take(consumer: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  const deadline = Date.now() + 10_000;
  while (records.length < count && Date.now() < deadline) {
    const batch = await consumer.nextBatch({ timeoutMs: 100 });
    if (batch !== null) records.push(...batch.records);
  }
  return records;
}

it("states the broker's window of batches in flight, so the client keeps as many in flight as against the broker", async () => {
  const wire = new TestClient(noop.server.address);
  try {
    const answer = await wire.call<strata.v1.InitProducerResponse>('log.initProducer', strata.v1.InitProducerRequest.create());
    expect(answer.maxInFlightBatches).toBe(PRODUCER_BATCH_WINDOW);
  } finally {
    wire.close();
  }
});

it('relays each batch produced after the subscriber caught up: the records sent, in order, offsets from the end', async () => {
  await createTopic('relay');
  await withClients({ resetPolicy: 'latest' }, async (producer, consumer) => {
    await producer.send({ topic: 'relay', value: 'before' });
    const started = once(consumer, 'partitionStarted');
    await consumer.assign([{ topic: 'relay', partition: 0 }]);
    expect((await started)[0]).toMatchObject({ offset: 1 });
    // Three requests of different sizes: copies of the last batch would repeat its values.
    for (const count of [1, 4, 2]) {
      const sends = Array.from({ length: count }, (_, index) => producer.send({ topic: 'relay', value: `${count}-${index}` }));
      await Promise.all(sends);
    }
    const records = await take(consumer, 7);
    expect(records.map((record) => [record.offset, record.value!.toString()])).toEqual([
      [1, '1-0'],
      [2, '4-0'],
      [3, '4-1'],
      [4, '4-2'],
      [5, '4-3'],
      [6, '2-0'],
      [7, '2-1'],
    ]);
  });
});

it('relays to a subscriber that starts past the end once the end reaches its offset', async () => {
  await createTopic('relay-ahead');
  await withClients({}, async (producer, consumer) => {
    await consumer.assign([{ topic: 'relay-ahead', partition: 0 }]);
    consumer.seek('relay-ahead', 0, 2);
    const taking = take(consumer, 2);
    // One batch a send: offsets 0 and 1 lie before the start, 2 and 3 are read.
    for (const value of ['a', 'b', 'c', 'd']) await producer.send({ topic: 'relay-ahead', value });
    expect((await taking).map((record) => [record.offset, record.value!.toString()])).toEqual([
      [2, 'c'],
      [3, 'd'],
    ]);
  });
});

it('stops relaying to a subscription once it is cancelled', async () => {
  await createTopic('relay-cancel');
  const consumer = new Consumer({ server: noop.server.address, resetPolicy: 'latest', logger: rootLogger });
  const started = once(consumer, 'partitionStarted');
  await consumer.assign([{ topic: 'relay-cancel', partition: 0 }]);
  await started;
  const partition = noop.state.partition('relay-cancel', 0);
  await waitUntil(() => partition.live.size > 0, 'a live subscription on the no-op partition');
  expect(partition.live.size).toBe(1);
  await consumer.close();
  await waitUntil(() => partition.live.size === 0, 'the no-op partition to have no live subscription');
  expect(partition.live.size).toBe(0);
});

it('carries the e2e workload: every record sent arrives', async () => {
  await createTopic('relay-e2e');
  const figures = await runE2eLoad(e2eLoadOptions(noop.server.address, 'relay-e2e', { durationSeconds: 0.3, warmupSeconds: 0.1 }));
  expect(figures).toMatchObject({ records: 300, lost: 0 });
  expect(figures.latency.count).toBe(300);
});

it('serves a catch-up read copies of a full batch, not of the short one that ended the fill', () => {
  const produce = (count: number): void => {
    const batch = buildBatch(Array.from({ length: count }, (_, index) => ({ value: Buffer.from(`value-${index}`) })));
    noop.state.produce(strata.v1.ProduceRequest.create({ topic: 'template', partition: 0, batch }));
  };
  produce(4);
  produce(4);
  produce(1); // the fill's remainder
  const { batches, nextOffset } = noop.state.fetch('template', 0, 0, 1 << 20);
  const counts: number[] = [];
  forEachBatch(batches, (position) => counts.push(readRecordCount(batches, position)));
  expect(counts).toEqual([4, 4, 4]);
  expect(nextOffset).toBe(12);
});
