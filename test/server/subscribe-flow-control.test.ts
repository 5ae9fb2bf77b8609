// Goal: Subscribe keeps log.proto's promise that a slow reader slows the stream instead of
// making the broker buffer: while the reader reads nothing, the bytes the broker has pushed stay
// near max_bytes plus what HTTP/2 windows hold, and once it reads it gets every record in order;
// following many partitions adds no listener per partition to the call or its abort signal
// (Node's MaxListenersExceededWarning). Method: a real in-process broker and a raw Node http2
// client (grpc-js's client buffers every message of a call it has never read from, which would
// hide the broker's side) that pauses its stream; a counting wrapper on the partition log's
// `read` tells how many messages the broker has made. Also that a partition whose turn to read
// comes after retention moved its log start past the earliest offset the call started from
// goes on from the new log start instead of failing the whole call, and that the bytes a call
// holds unsent are counted in strata_subscribe_unsent_bytes until it ends.
import { describe, expect, it } from 'vitest';
import { strata } from '../../src/generated/strata.js';
import type { PartitionLog } from '../../src/storage/partition-log.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { useSharedBroker } from '../helpers/shared-broker.js';
import { waitUntil } from '../helpers/wait.js';
import { PausedSubscription } from '../helpers/paused-subscription.js';
import { plateau } from '../helpers/plateau.js';

const v1 = strata.v1;

const shared = useSharedBroker();

/** Makes `count` batches of one `valueBytes` record each in every partition of a new topic. */
async function topicWithData(topic: string, partitions: number, count: number, valueBytes: number): Promise<void> {
  await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions }));
  for (let partition = 0; partition < partitions; partition++) {
    for (let index = 0; index < count; index++) {
      const value = Buffer.alloc(valueBytes, `${partition}:${index};`);
      await shared.client.call('log.produce', v1.ProduceRequest.create({ topic, partition, batch: buildBatch([{ value }]) }));
    }
  }
}

/** Counts the reads of `log` that returned batches: the messages the broker made from it. */
function countReadsWithData(log: PartitionLog): { readonly count: number } {
  const counter = { count: 0 };
  const read = log.read.bind(log);
  log.read = async (offset, maxBytes) => {
    const result = await read(offset, maxBytes);
    if (result.batches.length > 0) counter.count++;
    return result;
  };
  return counter;
}

const expectedValues = (partition: number, count: number): string[] => Array.from({ length: count }, (_, index) => `${partition}:${index}`);

describe('Subscribe with a reader that does not read', () => {
  it('stops pushing at about max_bytes beyond what HTTP/2 holds, then delivers everything in order once read', async () => {
    // 64 batches of 16 KiB, 32 KiB per message: 32 messages, 1 MiB. The client's 64 KiB
    // windows and its 16 KiB read buffer take about two and a half; the broker may hold about
    // max_bytes more. grpc-js alone would buffer 16 messages more before `write` said wait.
    const topic = 'slow-reader';
    const batches = 64;
    await topicWithData(topic, 1, batches, 16 * 1024);
    const reads = countReadsWithData(shared.broker.broker.partitionLog(topic, 0));
    const subscription = new PausedSubscription(shared.broker.address, { topic, partitions: [0], start: v1.StartPosition.create({ earliest: true }), raw: true, maxBytes: 32 * 1024 });
    try {
      await waitUntil(() => reads.count > 0, 'the first push');
      const pushedWhileUnread = await plateau(() => reads.count, 200);
      expect(pushedWhileUnread).toBeLessThanOrEqual(8);
      subscription.read();
      await waitUntil(() => subscription.values(0).length === batches, 'every batch');
      expect(subscription.values(0)).toEqual(expectedValues(0, batches));
    } finally {
      subscription.close();
    }
  });

  it('counts what it holds unsent in strata_subscribe_unsent_bytes, and nothing once the call has ended', async () => {
    const topic = 'slow-reader-gauge';
    await topicWithData(topic, 1, 64, 16 * 1024);
    const unsent = async (): Promise<number> => {
      const text = await (await globalThis.fetch(`http://${shared.broker.metricsAddress!}/metrics`)).text();
      return Number(/^strata_subscribe_unsent_bytes (\d+)$/m.exec(text)?.[1]);
    };
    expect(await unsent()).toBe(0);
    // Decoded: each message is built in a buffer of its own, which the broker holds until sent.
    const subscription = new PausedSubscription(shared.broker.address, { topic, partitions: [0], start: v1.StartPosition.create({ earliest: true }), raw: false, maxBytes: 32 * 1024 });
    try {
      await waitUntil(async () => (await unsent()) > 0, 'bytes held unsent');
      // At most the call's room and the message that took it past it.
      expect(await unsent()).toBeLessThanOrEqual(2 * 32 * 1024 + 16 * 1024 + 1024);
    } finally {
      subscription.close();
    }
    await waitUntil(async () => (await unsent()) === 0, 'the gauge back at 0 once the call ended');
  });

  it('holds about max_bytes beyond what HTTP/2 holds however many partitions have a backlog, not a message per partition', async () => {
    // 32 partitions of four 16 KiB batches, 16 KiB per message. Read all at once when the call
    // started, every partition would have a message waiting in the broker.
    const topic = 'slow-reader-wide';
    const partitions = 32;
    await topicWithData(topic, partitions, 4, 16 * 1024);
    const reads = Array.from({ length: partitions }, (_, partition) => countReadsWithData(shared.broker.broker.partitionLog(topic, partition)));
    const totalReads = (): number => reads.reduce((sum, counter) => sum + counter.count, 0);
    const subscription = new PausedSubscription(shared.broker.address, { topic, start: v1.StartPosition.create({ earliest: true }), raw: true, maxBytes: 16 * 1024 });
    try {
      await waitUntil(() => totalReads() > 0, 'the first push');
      expect(await plateau(totalReads, 200)).toBeLessThanOrEqual(8);
      subscription.read();
      await waitUntil(() => Array.from({ length: partitions }, (_, partition) => subscription.values(partition).length).every((count) => count === 4), 'four records of every partition');
      for (let partition = 0; partition < partitions; partition++) expect(subscription.values(partition)).toEqual(expectedValues(partition, 4));
    } finally {
      subscription.close();
    }
  });

  it('following more than 10 partitions, waiting for room and then for new records, raises no MaxListenersExceededWarning', async () => {
    const topic = 'slow-reader-many';
    const partitions = 12;
    await topicWithData(topic, partitions, 4, 16 * 1024);
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => {
      if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning);
    };
    process.on('warning', onWarning);
    const logs = Array.from({ length: partitions }, (_, partition) => shared.broker.broker.partitionLog(topic, partition));
    const reads = logs.map(countReadsWithData);
    const totalReads = (): number => reads.reduce((sum, counter) => sum + counter.count, 0);
    const subscription = new PausedSubscription(shared.broker.address, { topic, start: v1.StartPosition.create({ earliest: true }), raw: true, maxBytes: 16 * 1024 });
    try {
      // Every partition has more than the window's worth to send, so all of them wait for room:
      // the reads stop.
      await waitUntil(() => totalReads() > 0, 'the first push');
      await plateau(totalReads, 200);
      subscription.read();
      await waitUntil(() => Array.from({ length: partitions }, (_, partition) => subscription.values(partition).length).every((count) => count === 4), 'four records of every partition');
      // Then all twelve wait for new records.
      const waitingForRecords = (log: PartitionLog): boolean => (log as unknown as { highWatermarkListeners: Set<unknown> }).highWatermarkListeners.size > 0;
      await waitUntil(() => logs.every(waitingForRecords), 'every partition to wait for new records');
      for (let partition = 0; partition < partitions; partition++) expect(subscription.values(partition)).toEqual(expectedValues(partition, 4));
      expect(warnings.map((warning) => warning.message)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      subscription.close();
    }
  });

  it('starts a partition from its log start when retention moved it while the partition waited for its first turn', async () => {
    const topic = 'slow-reader-overtaken';
    // 1 KiB segments in partition 1, of which retention keeps about four.
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions: 2, configs: { 'segment.bytes': '1024', 'retention.bytes': '4096' } }));
    // Partition 0: one batch larger than max_bytes and than the client's HTTP/2 window, so its
    // first message stays unsent while the reader is paused, and partition 1 waits for room.
    await shared.client.call('log.produce', v1.ProduceRequest.create({ topic, partition: 0, batch: buildBatch([{ value: Buffer.alloc(100 * 1024, '0:0;') }]) }));
    const count = 32;
    for (let index = 0; index < count; index++) {
      await shared.client.call('log.produce', v1.ProduceRequest.create({ topic, partition: 1, batch: buildBatch([{ value: Buffer.alloc(900, `1:${index};`) }]) }));
    }
    const logs = [0, 1].map((partition) => shared.broker.broker.partitionLog(topic, partition));
    const reads = logs.map(countReadsWithData);
    const subscription = new PausedSubscription(shared.broker.address, { topic, partitions: [0, 1], start: v1.StartPosition.create({ earliest: true }), raw: true, maxBytes: 64 * 1024 });
    try {
      await waitUntil(() => reads[0]!.count > 0, 'the first push');
      expect(await plateau(() => reads[0]!.count + reads[1]!.count, 200)).toBe(1); // partition 1 waits for its turn
      expect(await logs[1]!.applyRetention()).toBeGreaterThan(0);
      const logStart = logs[1]!.logStartOffset;
      expect(logStart).toBeGreaterThan(0);
      subscription.read();
      await waitUntil(() => subscription.values(1).length === count - logStart, 'the records retention kept');
      expect(subscription.values(0)).toEqual(['0:0']);
      expect(subscription.values(1)).toEqual(expectedValues(1, count).slice(logStart));
    } finally {
      subscription.close();
    }
  });
});
