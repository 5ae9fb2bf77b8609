// Goal: the Admin service creates, lists, describes, alters, grows and deletes topics as
// admin.proto promises, and topics, configs, data and producer state survive a broker restart;
// method: in-process brokers over real gRPC, checking every effect through the public API
// (DescribeTopic, Produce, Fetch) rather than the broker's internals.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import Long from 'long';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { TOPIC_NAME_LENGTH_MAX } from '../../src/common/topic-name.js';
import { DEFAULT_LOG_CONFIG, KAFKA_NAMES } from '../../src/storage/log-config.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { acrossRestart } from '../helpers/restart.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

type TopicDescription = strata.v1.TopicDescription;

const DEFAULT_PARTITIONS = 3;
const long = (value: number): Long => Long.fromNumber(value);
const text = (bytes: Uint8Array | null | undefined): string | null => (bytes === null || bytes === undefined ? null : Buffer.from(bytes).toString('utf8'));

/** The effective configs of a topic without overrides, as DescribeTopic reports them. */
const DEFAULT_CONFIGS: Record<string, string> = Object.fromEntries(Object.entries(KAFKA_NAMES).map(([name, key]) => [name, String(DEFAULT_LOG_CONFIG[key])]));

/** Admin and log calls on one client. */
function api(client: TestClient) {
  return {
    create: (name: string, partitions = 0, configs: Record<string, string> = {}) =>
      client.call<TopicDescription>('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions, configs })),
    describe: (name: string) => client.call<TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name })),
    list: async () => (await client.call<strata.v1.ListTopicsResponse>('admin.listTopics', v1.ListTopicsRequest.create())).topics.map((topic) => ({ name: topic.name, partitions: topic.partitions })),
    alter: (name: string, configs: Record<string, string>) => client.call<TopicDescription>('admin.alterTopicConfigs', v1.AlterTopicConfigsRequest.create({ name, configs })),
    addPartitions: (name: string, partitions: number) => client.call<TopicDescription>('admin.addPartitions', v1.AddPartitionsRequest.create({ name, partitions })),
    remove: (name: string) => client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name })),
    produce: (request: strata.v1.ProduceRequest.$Properties) => client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create(request)),
    fetch: (topic: string, partition: number, offset: number) =>
      client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic, partition, offset: long(offset) })),
    /** Every record value of a partition, by repeated fetches. */
    async values(topic: string, partition: number): Promise<(string | null)[]> {
      const values: (string | null)[] = [];
      let offset = 0;
      for (;;) {
        const response = await this.fetch(topic, partition, offset);
        values.push(...response.records.map((record) => text(record.value)));
        if (response.nextOffset.toNumber() === offset || response.nextOffset.toNumber() >= response.highWatermark.toNumber()) return values;
        offset = response.nextOffset.toNumber();
      }
    },
  };
}

/** A partition's state as plain numbers. */
function partitionState(partition: strata.v1.PartitionDescription) {
  return {
    partition: partition.partition,
    logStartOffset: partition.logStartOffset.toNumber(),
    highWatermark: partition.highWatermark.toNumber(),
    logEndOffset: partition.logEndOffset.toNumber(),
    sizeBytes: partition.sizeBytes.toNumber(),
    segmentCount: partition.segmentCount,
    error: partition.error,
  };
}

const value = (size: number, fill: string): Buffer => Buffer.alloc(size, fill);

describe('admin', () => {
  let broker: TestBroker;
  let client: TestClient;
  let admin: ReturnType<typeof api>;
  beforeAll(async () => {
    broker = await startTestBroker({ defaultPartitions: DEFAULT_PARTITIONS });
    client = new TestClient(broker.address);
    admin = api(client);
  });
  afterAll(async () => {
    client?.close();
    await broker?.dispose();
  });

  describe('CreateTopic', () => {
    it('creates a topic with the given partitions and configs; the answer describes it', async () => {
      const before = Date.now();
      const created = await admin.create('orders', 4, { 'retention.ms': '86400000', 'segment.bytes': '1048576' });
      const after = Date.now();
      expect(created.name).toBe('orders');
      expect(created.partitions.map(partitionState)).toEqual([0, 1, 2, 3].map((partition) => ({
        partition, logStartOffset: 0, highWatermark: 0, logEndOffset: 0, sizeBytes: 0, segmentCount: 1, error: '',
      })));
      expect(created.configs).toEqual({ ...DEFAULT_CONFIGS, 'retention.ms': '86400000', 'segment.bytes': '1048576' });
      expect(created.createdAtMs.toNumber()).toBeGreaterThanOrEqual(before);
      expect(created.createdAtMs.toNumber()).toBeLessThanOrEqual(after);
      const described = await admin.describe('orders');
      expect(described.configs).toEqual(created.configs);
      expect(described.createdAtMs.toNumber()).toBe(created.createdAtMs.toNumber());
    });

    it('takes the broker default partition count when partitions is 0, and default configs when none are given', async () => {
      const created = await admin.create('defaulted');
      expect(created.partitions).toHaveLength(DEFAULT_PARTITIONS);
      expect(created.configs).toEqual(DEFAULT_CONFIGS);
    });

    it('reports every known config, and flush.ms alone selects interval flushing', async () => {
      const created = await admin.create('interval-flush', 1, { 'flush.ms': '250' });
      expect(Object.keys(created.configs).sort()).toEqual(Object.keys(KAFKA_NAMES).sort());
      expect(created.configs['flush.ms']).toBe('250');
      expect(created.configs.flush).toBe('interval');
    });

    it('ALREADY_EXISTS for a duplicate, whatever its partitions and configs; the first one is untouched', async () => {
      await admin.create('twice', 2, { 'retention.ms': '1000' });
      await admin.produce({ topic: 'twice', partition: 1, records: [v1.Record.create({ value: Buffer.from('kept') })] });
      for (const attempt of [() => admin.create('twice', 2), () => admin.create('twice', 5, { 'retention.ms': '5' }), () => admin.create('twice')]) {
        const error = await grpcError(attempt());
        expect(error.code).toBe(status.ALREADY_EXISTS);
        expect(error.details).toContain('twice');
      }
      const described = await admin.describe('twice');
      expect(described.partitions).toHaveLength(2);
      expect(described.configs['retention.ms']).toBe('1000');
      expect(await admin.values('twice', 1)).toEqual(['kept']);
    });

    it('of concurrent creates of one name exactly one succeeds', async () => {
      const results = await Promise.allSettled(Array.from({ length: 6 }, (_, index) => admin.create('race', index + 1)));
      const succeeded = results.filter((result) => result.status === 'fulfilled');
      expect(succeeded).toHaveLength(1);
      for (const result of results) {
        if (result.status === 'rejected') expect((result.reason as { code: number }).code).toBe(status.ALREADY_EXISTS);
      }
      const winner = (succeeded[0] as PromiseFulfilledResult<TopicDescription>).value;
      expect((await admin.describe('race')).partitions).toHaveLength(winner.partitions.length);
    });

    it('INVALID_ARGUMENT for bad names, partition counts and configs; nothing is created', async () => {
      const cases: [string, () => Promise<unknown>, RegExp | null][] = [
        ['empty name', () => admin.create('', 1), null],
        ['"."', () => admin.create('.', 1), null],
        ['".."', () => admin.create('..', 1), null],
        ['slash', () => admin.create('a/b', 1), null],
        ['space', () => admin.create('a b', 1), null],
        ['250 characters', () => admin.create('x'.repeat(250), 1), null],
        ['negative partitions', () => admin.create('bad-partitions', -1), null],
        ['10001 partitions', () => admin.create('bad-partitions', 10_001), /10000/],
        ['unknown config', () => admin.create('bad-config', 1, { 'no.such.config': '1' }), /no\.such\.config/],
        ['non-numeric config', () => admin.create('bad-config', 1, { 'retention.ms': 'soon' }), /retention\.ms/],
        ['config out of range', () => admin.create('bad-config', 1, { 'segment.bytes': '10' }), /segment\.bytes/],
        ['bad flush mode', () => admin.create('bad-config', 1, { flush: 'sometimes' }), /flush/],
      ];
      for (const [what, attempt, message] of cases) {
        const error = await grpcError(attempt());
        expect(error.code, what).toBe(status.INVALID_ARGUMENT);
        if (message !== null) expect(error.details, what).toMatch(message);
      }
      const names = (await admin.list()).map((topic) => topic.name);
      expect(names).not.toContain('bad-partitions');
      expect(names).not.toContain('bad-config');
      // The longest legal name works.
      const longest = 'y'.repeat(249);
      expect((await admin.create(longest, 1)).name).toBe(longest);
    });
  });

  describe('ListTopics and DescribeTopic', () => {
    it('lists every topic with its partition count', async () => {
      await admin.create('list-a', 1);
      await admin.create('list-c', 7);
      await admin.create('list-b');
      const listed = (await admin.list()).filter((topic) => topic.name.startsWith('list-'));
      expect(listed.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
        { name: 'list-a', partitions: 1 },
        { name: 'list-b', partitions: DEFAULT_PARTITIONS },
        { name: 'list-c', partitions: 7 },
      ]);
    });

    it('describes per partition the log start offset, high watermark, log end offset, size and segment count', async () => {
      await admin.create('described', 3);
      const first = buildBatch([{ value: value(100, 'a') }, { value: value(100, 'b') }]);
      const second = buildBatch([{ value: value(50, 'c') }]);
      await admin.produce({ topic: 'described', partition: 0, batch: first });
      await admin.produce({ topic: 'described', partition: 0, batch: second });
      await admin.produce({ topic: 'described', partition: 2, batch: buildBatch([{ value: value(10, 'd') }]) });
      const described = await admin.describe('described');
      expect(described.partitions.map(partitionState)).toEqual([
        { partition: 0, logStartOffset: 0, highWatermark: 3, logEndOffset: 3, sizeBytes: first.length + second.length, segmentCount: 1, error: '' },
        { partition: 1, logStartOffset: 0, highWatermark: 0, logEndOffset: 0, sizeBytes: 0, segmentCount: 1, error: '' },
        { partition: 2, logStartOffset: 0, highWatermark: 1, logEndOffset: 1, sizeBytes: buildBatch([{ value: value(10, 'd') }]).length, segmentCount: 1, error: '' },
      ]);
    });

    it('takes over a partition directory without records, as a create that a crash cut off leaves it', async () => {
      // Directories made, an empty segment each, and no metadata: the crash came before the commit.
      const cutOff = (name: string, partition: number): string => {
        const directory = join(broker.dataDir, 'topics', name, String(partition));
        mkdirSync(directory, { recursive: true });
        writeFileSync(join(directory, '00000000000000000000.log'), '');
        writeFileSync(join(directory, '00000000000000000000.index'), Buffer.alloc(64, 7));
        writeFileSync(join(directory, 'recovery-point.checkpoint'), 'stale');
        return directory;
      };
      cutOff('interrupted', 0);
      cutOff('interrupted', 1);
      expect((await admin.create('interrupted', 2)).partitions).toHaveLength(2);
      await admin.produce({ topic: 'interrupted', partition: 1, records: ['a', 'b'].map((value) => v1.Record.create({ value: Buffer.from(value) })) });
      expect(await admin.values('interrupted', 0)).toEqual([]);
      expect(await admin.values('interrupted', 1)).toEqual(['a', 'b']);
      // The same for a partition added later; a file the broker does not know counts as records.
      cutOff('interrupted', 2);
      expect((await admin.addPartitions('interrupted', 3)).partitions).toHaveLength(3);
      expect(await admin.values('interrupted', 2)).toEqual([]);
      const kept = join(cutOff('interrupted', 3), 'notes.txt');
      writeFileSync(kept, 'kept');
      expect((await grpcError(admin.addPartitions('interrupted', 4))).code).toBe(status.FAILED_PRECONDITION);
      expect((await admin.describe('interrupted')).partitions).toHaveLength(3);
      expect(existsSync(kept)).toBe(true);
    });

    it('NOT_FOUND for an unknown topic, INVALID_ARGUMENT for an illegal name', async () => {
      expect((await grpcError(admin.describe('no-such-topic'))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(admin.describe('a/b'))).code).toBe(status.INVALID_ARGUMENT);
    });
  });

  describe('AlterTopicConfigs', () => {
    it('changes only the given configs, and the change is effective: a small segment.bytes rolls segments', async () => {
      const created = await admin.create('altered', 1, { 'retention.ms': '3600000' });
      const batches = Array.from({ length: 12 }, (_, index) => buildBatch([{ value: value(300, String.fromCharCode(97 + index)) }]));
      for (const batch of batches.slice(0, 2)) await admin.produce({ topic: 'altered', partition: 0, batch });
      expect((await admin.describe('altered')).partitions[0]!.segmentCount).toBe(1);

      const altered = await admin.alter('altered', { 'segment.bytes': '1024', 'max.message.bytes': '4096' });
      expect(altered.configs).toEqual({ ...created.configs, 'segment.bytes': '1024', 'max.message.bytes': '4096' });
      expect((await admin.describe('altered')).configs).toEqual(altered.configs);

      for (const batch of batches.slice(2)) await admin.produce({ topic: 'altered', partition: 0, batch });
      const described = (await admin.describe('altered')).partitions[0]!;
      // 12 batches of ~370 bytes hold at most two per 1 KiB segment.
      expect(described.segmentCount).toBeGreaterThanOrEqual(5);
      expect(described.sizeBytes.toNumber()).toBe(batches.reduce((sum, batch) => sum + batch.length, 0));
      expect(described.highWatermark.toNumber()).toBe(12);
      expect(await admin.values('altered', 0)).toEqual(batches.map((_, index) => String.fromCharCode(97 + index).repeat(300)));

      // The new max.message.bytes is enforced too.
      const tooBig = await grpcError(admin.produce({ topic: 'altered', partition: 0, batch: buildBatch([{ value: value(5000, 'z') }]) }));
      expect(tooBig.code).toBe(status.RESOURCE_EXHAUSTED);
    });

    it('refuses unknown names and bad values (INVALID_ARGUMENT) without changing anything; NOT_FOUND for an unknown topic', async () => {
      const created = await admin.create('alter-refused', 1, { 'retention.ms': '3600000' });
      const refused: Record<string, string>[] = [{ 'no.such.config': '1' }, { 'retention.ms': 'never' }, { 'segment.bytes': '1' }, { 'retention.ms': '5', 'no.such.config': '1' }, {}];
      for (const configs of refused) {
        const error = await grpcError(admin.alter('alter-refused', configs));
        expect(error.code, JSON.stringify(configs)).toBe(status.INVALID_ARGUMENT);
      }
      expect((await admin.describe('alter-refused')).configs).toEqual(created.configs);
      expect((await grpcError(admin.alter('no-such-topic', { 'retention.ms': '5' }))).code).toBe(status.NOT_FOUND);
    });
  });

  describe('AddPartitions', () => {
    it('raises the partition count; old partitions keep their data, new ones start empty and take records', async () => {
      await admin.create('growing', 2);
      await admin.produce({ topic: 'growing', partition: 1, records: [v1.Record.create({ value: Buffer.from('before') })] });
      const grown = await admin.addPartitions('growing', 5);
      expect(grown.partitions.map((partition) => partition.partition)).toEqual([0, 1, 2, 3, 4]);
      expect(grown.partitions.slice(2).map(partitionState)).toEqual([2, 3, 4].map((partition) => ({
        partition, logStartOffset: 0, highWatermark: 0, logEndOffset: 0, sizeBytes: 0, segmentCount: 1, error: '',
      })));
      expect((await admin.list()).find((topic) => topic.name === 'growing')).toEqual({ name: 'growing', partitions: 5 });
      expect(await admin.values('growing', 1)).toEqual(['before']);
      const produced = await admin.produce({ topic: 'growing', partition: 4, records: [v1.Record.create({ value: Buffer.from('after') })] });
      expect(produced.batches.map((b) => [b.partition, b.baseOffset.toNumber()])).toEqual([[4, 0]]);
      expect(await admin.values('growing', 4)).toEqual(['after']);
    });

    it('INVALID_ARGUMENT unless the count grows (or when it is over the limit); NOT_FOUND for an unknown topic', async () => {
      await admin.create('not-growing', 3);
      for (const partitions of [3, 2, 0, -1, 10_001]) {
        const error = await grpcError(admin.addPartitions('not-growing', partitions));
        expect(error.code, String(partitions)).toBe(status.INVALID_ARGUMENT);
      }
      expect((await grpcError(admin.addPartitions('not-growing', 2))).details).toMatch(/3/);
      expect((await admin.describe('not-growing')).partitions).toHaveLength(3);
      expect((await grpcError(admin.addPartitions('no-such-topic', 4))).code).toBe(status.NOT_FOUND);
    });
  });

  describe('DeleteTopic', () => {
    it('removes the topic and its data: NOT_FOUND afterwards, and a re-created topic of that name starts empty', async () => {
      await admin.create('doomed', 2, { 'retention.ms': '1000', 'segment.bytes': '1024' });
      for (let index = 0; index < 5; index++) {
        await admin.produce({ topic: 'doomed', partition: 0, records: [v1.Record.create({ value: value(400, 'x') })] });
      }
      expect((await admin.describe('doomed')).partitions[0]!.segmentCount).toBeGreaterThan(1);
      await admin.remove('doomed');

      expect((await grpcError(admin.describe('doomed'))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(admin.fetch('doomed', 0, 0))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(admin.produce({ topic: 'doomed', partition: 0, records: [v1.Record.create({ value: Buffer.from('late') })] }))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(admin.alter('doomed', { 'retention.ms': '5' }))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(admin.addPartitions('doomed', 3))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(admin.remove('doomed'))).code).toBe(status.NOT_FOUND);
      expect((await admin.list()).map((topic) => topic.name)).not.toContain('doomed');

      const recreated = await admin.create('doomed', 1);
      expect(recreated.configs).toEqual(DEFAULT_CONFIGS); // the old overrides are gone
      expect(recreated.partitions.map(partitionState)).toEqual([{ partition: 0, logStartOffset: 0, highWatermark: 0, logEndOffset: 0, sizeBytes: 0, segmentCount: 1, error: '' }]);
      expect((await admin.fetch('doomed', 0, 0)).records).toEqual([]);
      const produced = await admin.produce({ topic: 'doomed', partition: 0, records: [v1.Record.create({ value: Buffer.from('fresh') })] });
      expect(produced.batches[0]!.baseOffset.toNumber()).toBe(0);
      expect(await admin.values('doomed', 0)).toEqual(['fresh']);
    });

    it('deletes a topic whose name has the longest length allowed; created again, it starts empty', async () => {
      const name = 'l'.repeat(TOPIC_NAME_LENGTH_MAX);
      await admin.create(name, 1);
      await admin.produce({ topic: name, partition: 0, records: [v1.Record.create({ value: Buffer.from('old') })] });
      await admin.remove(name);
      await admin.create(name, 1);
      expect(await admin.values(name, 0)).toEqual([]);
    });

    it('a partition directory that no topic refers to is never taken over by a new topic or partition: FAILED_PRECONDITION', async () => {
      // As a topic deleted while the broker crashed would leave it.
      const leftover = (name: string, partition: number): void => {
        mkdirSync(join(broker.dataDir, 'topics', name, String(partition)), { recursive: true });
        writeFileSync(join(broker.dataDir, 'topics', name, String(partition), '00000000000000000000.log'), 'old records');
      };
      leftover('haunted', 0);
      const refused = await grpcError(admin.create('haunted', 1));
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      expect(refused.details).toMatch(/directory topics\/haunted\/0 of the data directory holds records, but no topic refers to it .*move it out of the data directory or remove it/);
      expect((await admin.list()).map((topic) => topic.name)).not.toContain('haunted');
      await admin.create('haunted-growing', 1);
      leftover('haunted-growing', 1);
      expect((await grpcError(admin.addPartitions('haunted-growing', 2))).code).toBe(status.FAILED_PRECONDITION);
      expect((await admin.describe('haunted-growing')).partitions).toHaveLength(1);
      rmSync(join(broker.dataDir, 'topics', 'haunted'), { recursive: true });
      expect((await admin.create('haunted', 1)).partitions).toHaveLength(1);
    });

    it('NOT_FOUND for an unknown topic, INVALID_ARGUMENT for an illegal name', async () => {
      expect((await grpcError(admin.remove('never-existed'))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(admin.remove('..'))).code).toBe(status.INVALID_ARGUMENT);
    });
  });
});

describe('restart', () => {
  it('keeps topics, configs, partition counts, data and producer state; offsets continue', async () => {
    await acrossRestart(async (client) => {
      const admin = api(client);
      await admin.create('persist-a', 3, { 'segment.bytes': '1024', 'retention.ms': '3600000' });
      await admin.create('persist-b', 0, { 'flush.ms': '100' });
      await admin.alter('persist-b', { 'max.message.bytes': '2048' });
      await admin.addPartitions('persist-b', 2);
      for (let index = 0; index < 8; index++) {
        await admin.produce({ topic: 'persist-a', partition: 0, records: [v1.Record.create({ key: Buffer.from(`k${index}`), value: Buffer.from(`a0-${index}-`.padEnd(300, '.')) })] });
      }
      await admin.produce({ topic: 'persist-a', partition: 1, records: [v1.Record.create({ value: Buffer.from('a1'), headers: [v1.Header.create({ key: 'h' })] })] });
      await admin.produce({ topic: 'persist-b', partition: 1, records: [v1.Record.create({ value: Buffer.from('b1'), timestamp: long(1234) })] });
      const { producerId } = await client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create());
      const idempotent = buildBatch([{ value: Buffer.from('once') }], { producerId: producerId.toNumber(), producerEpoch: 0, baseSequence: 0 });
      const original = await admin.produce({ topic: 'persist-a', partition: 2, batch: idempotent });

      const topicsBefore = await admin.list();
      const describedBefore = { a: await admin.describe('persist-a'), b: await admin.describe('persist-b') };
      expect(describedBefore.a.partitions[0]!.segmentCount).toBeGreaterThan(1);
      const valuesBefore = {
        a: await Promise.all([0, 1, 2].map((partition) => admin.values('persist-a', partition))),
        b: await Promise.all([0, 1].map((partition) => admin.values('persist-b', partition))),
      };
      const recordsBefore = (await admin.fetch('persist-a', 1, 0)).records;
      return { producerId, idempotent, original, topicsBefore, describedBefore, valuesBefore, recordsBefore };
    }, async (client, { producerId, idempotent, original, topicsBefore, describedBefore, valuesBefore, recordsBefore }) => {
      const admin = api(client);

      expect(await admin.list()).toEqual(topicsBefore);
      for (const [name, before] of [['persist-a', describedBefore.a], ['persist-b', describedBefore.b]] as const) {
        const after = await admin.describe(name);
        expect(after.configs).toEqual(before.configs);
        expect(after.createdAtMs.toNumber()).toBe(before.createdAtMs.toNumber());
        expect(after.partitions.map(partitionState)).toEqual(before.partitions.map(partitionState));
      }
      expect(describedBefore.a.configs['segment.bytes']).toBe('1024');
      expect(describedBefore.b.configs).toMatchObject({ 'flush.ms': '100', flush: 'interval', 'max.message.bytes': '2048' });
      expect(await Promise.all([0, 1, 2].map((partition) => admin.values('persist-a', partition)))).toEqual(valuesBefore.a);
      expect(await Promise.all([0, 1].map((partition) => admin.values('persist-b', partition)))).toEqual(valuesBefore.b);
      const recordsAfter = (await admin.fetch('persist-a', 1, 0)).records;
      expect(recordsAfter).toEqual(recordsBefore);

      // Offsets continue where they were.
      const next = await admin.produce({ topic: 'persist-a', partition: 0, records: [v1.Record.create({ value: Buffer.from('after restart') })] });
      expect(next.batches[0]!.baseOffset.toNumber()).toBe(8);
      const nextB = await admin.produce({ topic: 'persist-b', partition: 1, records: [v1.Record.create({ value: Buffer.from('b2') })] });
      expect(nextB.batches[0]!.baseOffset.toNumber()).toBe(1);
      // The restored max.message.bytes is enforced.
      expect((await grpcError(admin.produce({ topic: 'persist-b', partition: 0, batch: buildBatch([{ value: value(3000, 'z') }]) }))).code).toBe(status.RESOURCE_EXHAUSTED);

      // The idempotent producer's last batch is still known: a retry is a duplicate.
      const retry = await admin.produce({ topic: 'persist-a', partition: 2, batch: idempotent });
      expect(retry.batches.map((b) => [b.baseOffset.toNumber(), b.duplicate])).toEqual([[original.batches[0]!.baseOffset.toNumber(), true]]);
      const following = await admin.produce({ topic: 'persist-a', partition: 2, batch: buildBatch([{ value: Buffer.from('twice') }], { producerId: producerId.toNumber(), producerEpoch: 0, baseSequence: 1 }) });
      expect(following.batches.map((b) => [b.baseOffset.toNumber(), b.duplicate])).toEqual([[1, false]]);
      expect(await admin.values('persist-a', 2)).toEqual(['once', 'twice']);

      // A new producer id is not one handed out before the restart.
      const { producerId: newId } = await client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create());
      expect(newId.toNumber()).not.toBe(producerId.toNumber());
    });
  });
});
