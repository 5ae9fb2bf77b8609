// Goal: the client's Admin covers every topic operation of the broker API, consumer-group
// administration and offset lookups,
// returning plain objects with numbers, and maps broker failures to StrataClientError with the
// gRPC status name and the broker's own message; method: a real in-process broker over gRPC,
// with records written through the wire-level test client.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import Long from 'long';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { Connection } from '../../src/client/connection.js';
import { StrataClientError } from '../../src/client/errors.js';
import type { strata } from '../../src/generated/strata.js';
import { groupsServiceDefinition } from '../../src/server/service-definitions.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';
import { rejectedWith } from '../helpers/rejected-with.js';

let broker: TestBroker;
let admin: Admin;
let wire: TestClient;

beforeAll(async () => {
  broker = await startTestBroker();
  admin = new Admin({ server: broker.address, deadlineMs: 10_000 });
  wire = new TestClient(broker.address);
});
afterAll(async () => {
  await admin?.close();
  wire?.close();
  await broker?.dispose();
});

const rejection = (promise: Promise<unknown>): Promise<StrataClientError> => rejectedWith(promise, StrataClientError);

async function produceRecords(topic: string, partition: number, timestamps: number[]): Promise<void> {
  const records = timestamps.map((timestamp, index) => v1.Record.create({ value: Buffer.from(`v${index}`), timestamp: Long.fromNumber(timestamp) }));
  await wire.call('log.produce', v1.ProduceRequest.create({ topic, partition, records }));
}

describe('topic operations', () => {
  it('creates, lists, describes, alters, adds partitions and deletes a topic', async () => {
    const created = await admin.createTopic('admin-life', { partitions: 2, configs: { 'retention.ms': '86400000' } });
    expect(created.name).toBe('admin-life');
    expect(created.partitions.map((partition) => partition.partition)).toEqual([0, 1]);
    expect(created.configs['retention.ms']).toBe('86400000');
    expect(typeof created.createdAtMs).toBe('number');
    expect(created.createdAtMs).toBeGreaterThan(0);
    expect(created.partitions[0]).toEqual({ partition: 0, logStartOffset: 0, highWatermark: 0, logEndOffset: 0, sizeBytes: 0, segmentCount: 1, error: '' });

    expect(await admin.listTopics()).toContainEqual({ name: 'admin-life', partitions: 2 });

    await produceRecords('admin-life', 1, [1000, 2000, 3000]);
    const described = await admin.describeTopic('admin-life');
    expect(described.partitions[1]!.highWatermark).toBe(3);
    expect(described.partitions[1]!.logEndOffset).toBe(3);
    expect(described.partitions[1]!.sizeBytes).toBeGreaterThan(0);

    const altered = await admin.alterTopicConfigs('admin-life', { 'retention.ms': '3600000', flush: 'interval' });
    expect(altered.configs['retention.ms']).toBe('3600000');
    expect(altered.configs.flush).toBe('interval');
    expect(altered.overriddenConfigs).toEqual(['flush', 'retention.ms']);

    // Reset: back to the broker default, which an untouched topic shows.
    const defaults = (await admin.createTopic('admin-defaults')).configs;
    const reset = await admin.alterTopicConfigs('admin-life', {}, ['retention.ms']);
    expect(reset.configs['retention.ms']).toBe(defaults['retention.ms']);
    expect(reset.configs.flush).toBe('interval');
    expect(reset.overriddenConfigs).toEqual(['flush']);
    expect((await admin.describeTopic('admin-life')).overriddenConfigs).toEqual(['flush']);
    // Set and reset in one request; resetting a config the topic does not set changes nothing.
    const both = await admin.alterTopicConfigs('admin-life', { 'retention.ms': '60000' }, ['flush', 'segment.ms']);
    expect(both.overriddenConfigs).toEqual(['retention.ms']);
    expect(both.configs.flush).toBe(defaults.flush);
    expect(both.configs['retention.ms']).toBe('60000');
    // flush.ms alone selects interval: flush counts as the topic's own, and resetting flush alone would leave interval on.
    const timedAlone = await admin.alterTopicConfigs('admin-life', { 'flush.ms': '500' });
    expect([timedAlone.configs.flush, timedAlone.overriddenConfigs]).toEqual(['interval', ['flush', 'flush.ms', 'retention.ms']]);
    const timed = await admin.alterTopicConfigs('admin-life', { flush: 'always' });
    expect(timed.overriddenConfigs).toEqual(['flush', 'flush.ms', 'retention.ms']);
    const keptInterval = await rejection(admin.alterTopicConfigs('admin-life', {}, ['flush']));
    expect([keptInterval.code, keptInterval.message]).toEqual(['INVALID_ARGUMENT', 'topic "admin-life" sets flush.ms, which alone selects flush=interval: resetting flush would keep it on interval, not the broker default; reset flush.ms too, or set flush']);
    expect((await admin.describeTopic('admin-life')).configs.flush).toBe('always');
    const bothFlush = await admin.alterTopicConfigs('admin-life', {}, ['flush', 'flush.ms']);
    expect([bothFlush.configs.flush, bothFlush.overriddenConfigs]).toEqual([defaults.flush, ['retention.ms']]);

    const grown = await admin.addPartitions('admin-life', 4);
    expect(grown.partitions).toHaveLength(4);
    expect(await admin.listTopics()).toContainEqual({ name: 'admin-life', partitions: 4 });

    await admin.deleteTopic('admin-life');
    await admin.deleteTopic('admin-defaults');
    expect((await admin.listTopics()).map((topic) => topic.name)).not.toContain('admin-life');
  });

  it('creates with the broker default partition count when none is given', async () => {
    const created = await admin.createTopic('admin-default');
    expect(created.partitions).toHaveLength(1);
  });
});

describe('offset lookups', () => {
  beforeAll(async () => {
    await admin.createTopic('admin-offsets', { partitions: 1 });
    await produceRecords('admin-offsets', 0, [1000, 2000, 3000, 4000]);
  });

  it('answers earliest, latest, by timestamp and by explicit offset', async () => {
    expect(await admin.listOffsets('admin-offsets', 0, 'earliest')).toEqual({ offset: 0, logStartOffset: 0, highWatermark: 4 });
    expect(await admin.listOffsets('admin-offsets', 0, 'latest')).toEqual({ offset: 4, logStartOffset: 0, highWatermark: 4 });
    expect((await admin.listOffsets('admin-offsets', 0, { timestamp: 2500 })).offset).toBe(2);
    expect((await admin.listOffsets('admin-offsets', 0, { timestamp: 9999 })).offset).toBe(4);
    expect((await admin.listOffsets('admin-offsets', 0, { offset: 3 })).offset).toBe(3);
  });

  it('maps an offset outside the log to OUT_OF_RANGE with the valid range', async () => {
    const error = await rejection(admin.listOffsets('admin-offsets', 0, { offset: 99 }));
    expect(error.code).toBe('OUT_OF_RANGE');
    expect(error.message).toContain('valid offsets are 0 to 4');
  });

  it('refuses a partition the wire would carry as another one (2^32 as 0, 0.5 as 0) before sending', async () => {
    for (const partition of [2 ** 32, 0.5, -1, Number.NaN]) {
      expect(await rejection(admin.listOffsets('admin-offsets', partition, 'earliest'))).toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: `partition must be an integer from 0 to 2147483647, got ${partition}`,
      });
    }
  });
});

describe('error mapping', () => {
  it('NOT_FOUND carries the broker message for every call on a missing topic', async () => {
    for (const call of [
      () => admin.describeTopic('admin-missing'),
      () => admin.deleteTopic('admin-missing'),
      () => admin.alterTopicConfigs('admin-missing', { 'retention.ms': '1' }),
      () => admin.addPartitions('admin-missing', 3),
      () => admin.listOffsets('admin-missing', 0, 'earliest'),
    ]) {
      const error = await rejection(call());
      expect(error.code).toBe('NOT_FOUND');
      expect(error.grpcCode).toBe(5);
      expect(error.message).toBe('topic "admin-missing" not found');
    }
  });

  it('ALREADY_EXISTS carries the broker message', async () => {
    await admin.createTopic('admin-twice');
    const error = await rejection(admin.createTopic('admin-twice', { partitions: 3 }));
    expect(error.code).toBe('ALREADY_EXISTS');
    expect(error.message).toBe('topic "admin-twice" already exists');
  });

  it('INVALID_ARGUMENT for bad names, counts and configs', async () => {
    expect((await rejection(admin.createTopic('bad/name'))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(admin.createTopic('admin-bad-config', { configs: { 'no.such.config': '1' } }))).code).toBe('INVALID_ARGUMENT');
    await admin.createTopic('admin-shrink', { partitions: 2 });
    const error = await rejection(admin.addPartitions('admin-shrink', 1));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('the new count must be larger');
    // Counts the wire's int32 would carry as another number: 2^32 + 3 as 3, 6.5 as 6.
    for (const count of [2 ** 32 + 3, 6.5, Number.NaN, 2 ** 31, 10_001, -1]) {
      const refused = await rejection(admin.createTopic('admin-odd-count', { partitions: count }));
      expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', message: `partitions must be an integer from 1 to 10000 (or 0 for the broker's --default-partitions), got ${count}` });
      const notAdded = await rejection(admin.addPartitions('admin-shrink', count));
      expect(notAdded).toMatchObject({ code: 'INVALID_ARGUMENT', message: `partitions must be an integer from 1 to 10000, got ${count}` });
    }
    expect((await rejection(admin.describeTopic('admin-odd-count'))).code).toBe('NOT_FOUND');
    expect((await admin.describeTopic('admin-shrink')).partitions).toHaveLength(2);
  });

  it('configs: an integer is sent as its decimal spelling; other non-strings, and a reset that is not a list, are INVALID_ARGUMENT saying what was given', async () => {
    const created = await admin.createTopic('admin-number-config', { configs: { 'retention.ms': 1000 } as unknown as Record<string, string> });
    expect(created.configs['retention.ms']).toBe('1000');
    const nullValue = await rejection(admin.createTopic('admin-null-config', { configs: { 'retention.ms': null } as unknown as Record<string, string> }));
    expect(nullValue).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'config retention.ms must be a string (or an integer), got null' });
    const text = await rejection(admin.createTopic('admin-text-configs', { configs: 'retention.ms=1' as unknown as Record<string, string> }));
    expect(text).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'configs must be an object of config names to string values' });
    const reset = await rejection(admin.alterTopicConfigs('admin-number-config', {}, 'retention.ms' as unknown as string[]));
    expect(reset).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'reset must be an array of config names' });
    expect(() => new Admin(undefined as unknown as { server: string })).toThrow('options are required: { server } (host:port), or { connection } to share one');
    const offsets = await rejection(admin.deleteOffsets('some-group', 'a-topic' as unknown as string[]));
    expect(offsets.code).toBe('INVALID_ARGUMENT');
    expect((await rejection(admin.describeTopic('admin-null-config'))).code).toBe('NOT_FOUND');
  });

  it('UNAVAILABLE when no broker listens, saying so in words, within the deadline', async () => {
    const unreachable = new Admin({ server: '127.0.0.1:1', deadlineMs: 10_000 });
    const error = await rejection(unreachable.listTopics());
    expect({ code: error.code, message: error.message }).toEqual({ code: 'UNAVAILABLE', message: 'cannot reach the broker (connect ECONNREFUSED 127.0.0.1:1)' });
    await unreachable.close();
  });
});

describe('lifecycle', () => {
  it('close is idempotent and later calls fail with FAILED_PRECONDITION', async () => {
    const short = new Admin({ server: broker.address });
    await short.close();
    await short.close();
    const error = await rejection(short.listTopics());
    expect(error.code).toBe('FAILED_PRECONDITION');
  });

  it('a shared connection is left open by the admin that borrowed it', async () => {
    const connection = new Connection({ server: broker.address });
    const borrowed = new Admin({ connection });
    await borrowed.close();
    expect(connection.isClosed).toBe(false);
    const again = new Admin({ connection });
    expect(Array.isArray(await again.listTopics())).toBe(true);
    connection.close();
  });
});

describe('consumer-group administration', () => {
  /** Commits offsets as a consumer without members would (empty member id), over the wire. */
  async function commit(groupId: string, topic: string, offsets: number[]): Promise<void> {
    await wire.call(
      'groups.commitOffsets',
      v1.CommitOffsetsRequest.create({ groupId, memberId: '', memberEpoch: 0, offsets: offsets.map((offset, partition) => v1.OffsetCommit.create({ topic, partition, offset: Long.fromNumber(offset) })) }),
    );
  }

  it('lists, describes, fetches, resets, deletes offsets of and deletes a group, as plain numbers', async () => {
    await admin.createTopic('admin-groups', { partitions: 2 });
    const now = Date.now();
    await produceRecords('admin-groups', 0, [now - 5000, now - 4000, now - 3000, now - 2000]);
    await produceRecords('admin-groups', 1, [now - 1000, now - 500]);
    await commit('admin-g1', 'admin-groups', [1, 2]);

    expect(await admin.listGroups()).toContainEqual({ groupId: 'admin-g1', state: 'empty', members: 0 });
    expect(await admin.listGroups({ pageSize: 1 })).toEqual(await admin.listGroups()); // a page at a time, the same list
    await expect(admin.listGroups({ pageSize: 4001 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'pageSize must be an integer from 0 to 4000, got 4001' });
    await expect(admin.listGroups({ pageSize: 1.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const description = await admin.describeGroup('admin-g1');
    expect(description).toMatchObject({ groupId: 'admin-g1', state: 'empty', members: [], totalLag: 3 });
    expect(description.partitions).toEqual([
      { topic: 'admin-groups', partition: 0, committedOffset: 1, logEndOffset: 4, lag: 3, lagMs: expect.any(Number), memberId: '' },
      { topic: 'admin-groups', partition: 1, committedOffset: 2, logEndOffset: 2, lag: 0, lagMs: 0, memberId: '' },
    ]);
    expect(description.partitions[0]!.lagMs).toBeGreaterThanOrEqual(3000); // the record at offset 1 is 4 s old

    const fetched = await admin.fetchOffsets('admin-g1');
    expect(fetched.map(({ topic, partition, offset }) => ({ topic, partition, offset }))).toEqual([
      { topic: 'admin-groups', partition: 0, offset: 1 },
      { topic: 'admin-groups', partition: 1, offset: 2 },
    ]);
    expect(fetched[0]!.commitTimeMs).toBeGreaterThan(0);
    expect(await admin.fetchOffsets('admin-g1', ['other-topic'])).toEqual([]);

    const reset = await admin.resetOffsets('admin-g1', 'admin-groups', 'earliest', [0]);
    expect(reset.map(({ partition, offset }) => ({ partition, offset }))).toEqual([{ partition: 0, offset: 0 }]);
    expect((await admin.resetOffsets('admin-g1', 'admin-groups', { shiftBy: 2 })).map(({ offset }) => offset)).toEqual([2, 2]);
    expect((await admin.resetOffsets('admin-g1', 'admin-groups', 'latest')).map(({ offset }) => offset)).toEqual([4, 2]);
    expect((await admin.resetOffsets('admin-g1', 'admin-groups', { offset: 3 }, [0])).map(({ offset }) => offset)).toEqual([3]);
    expect((await admin.resetOffsets('admin-g1', 'admin-groups', { timestamp: now - 4500 }, [0])).map(({ offset }) => offset)).toEqual([1]);

    await admin.deleteOffsets('admin-g1', ['admin-groups']);
    expect(await admin.fetchOffsets('admin-g1')).toEqual([]);
    await commit('admin-g2', 'admin-groups', [4, 2]);
    await admin.deleteGroup('admin-g2');
    expect((await admin.listGroups()).map((group) => group.groupId)).not.toContain('admin-g2');
  });

  it('NOT_FOUND for an unknown group, INVALID_ARGUMENT for bad arguments', async () => {
    const missing = await rejection(admin.describeGroup('no-such-group'));
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.message).toBe('group "no-such-group" not found');
    expect((await rejection(admin.deleteGroup('no-such-group'))).code).toBe('NOT_FOUND');
    expect((await rejection(admin.resetOffsets('g', 'admin-groups', 'earliest', [-1]))).code).toBe('INVALID_ARGUMENT');
    // Partition 2^32 + 1 would reach the broker as partition 1.
    expect(await rejection(admin.resetOffsets('g', 'admin-groups', 'earliest', [2 ** 32 + 1]))).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'partition must be an integer from 0 to 2147483647, got 4294967297' });
    // The wire's empty list means every topic.
    expect(await rejection(admin.deleteOffsets('g', []))).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'deleteOffsets needs an array of at least one topic; to delete every offset of the group, use deleteGroup' });
    expect((await rejection(admin.resetOffsets('g', 'admin-groups', { bogus: 1 } as never))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(admin.describeGroup(''))).code).toBe('INVALID_ARGUMENT');
  });
});

describe('listGroups against a server whose page token does not move on', () => {
  it('throws instead of asking for the same page for ever', async () => {
    const stuck = new Server();
    stuck.addService(groupsServiceDefinition, {
      listGroups: (_call: unknown, callback: (error: null, response: strata.v1.ListGroupsResponse) => void) =>
        callback(null, v1.ListGroupsResponse.create({ groups: [], nextPageToken: 'again' })),
    });
    const port = await new Promise<number>((resolve, reject) => stuck.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
    const client = new Admin({ server: `127.0.0.1:${port}` });
    try {
      await expect(client.listGroups()).rejects.toMatchObject({ code: 'INTERNAL', message: 'ListGroups answered a page token that does not move on ("again" after "", 0 groups)' });
    } finally {
      await client.close();
      stuck.forceShutdown();
    }
  });
});

