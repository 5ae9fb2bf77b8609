// Goal: a Consumer with a groupId and a subscription is a correct member of a KIP-848-style
// group: members split a topic's partitions (disjoint, complete), take over a leaver's
// partitions from its committed offsets without losing records, commit before giving a
// partition up, auto-commit and commit manually, follow regex subscriptions, survive expiry and
// fencing by rejoining, and a static member gets its partitions back without disturbing others;
// method: a real in-process broker (100 ms heartbeat interval), records written with the client
// Producer, every processed record logged per member and ownership period, committed offsets
// read over the wire with the Groups FetchOffsets call, and polling with deadlines (no sleeps).
import { readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { type Interceptor, InterceptingCall, status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { Consumer, type ConsumerOptions, type TopicPartitionOffset } from '../../src/client/consumer.js';
import { Connection } from '../../src/client/connection.js';
import { StrataClientError } from '../../src/client/errors.js';
import { OffsetCommitStream } from '../../src/client/offset-commit-stream.js';
import { type GroupErrorEvent, type PartitionsEvent, type PartitionsLostEvent, normalizeSubscription } from '../../src/client/group-member.js';
import { Producer } from '../../src/client/producer.js';
import type { strata } from '../../src/generated/strata.js';
import { type Processed, Runner, duplicatesAfterLastCommit } from '../helpers/group-runner.js';
import { plateau } from '../helpers/plateau.js';
import { waitUntil } from '../helpers/wait.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { failFirstCallAfter, holdCalls, refuseFirstCall } from '../helpers/interceptors.js';
import { type TestBroker, removeDirectory, startTestBroker, unusedPort } from '../helpers/test-server.js';
import { CLEAN_SHUTDOWN_FILE, LOG_SUFFIX, RECOVERY_CHECKPOINT_FILE, partitionDirectory } from '../../src/storage/file-names.js';

let broker: TestBroker;
let admin: Admin;
let producer: Producer;
let wire: TestClient;
const opened: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  broker = await startTestBroker({ groupHeartbeatIntervalMs: 100, groupSessionTimeoutMs: 5_000 });
  admin = new Admin({ server: broker.address });
  producer = new Producer({ server: broker.address, lingerMs: 1 });
  wire = new TestClient(broker.address);
});
afterAll(async () => {
  await Promise.all(opened.map((item) => item.close()));
  await producer?.close();
  await admin?.close();
  wire?.close();
  await broker?.dispose();
});

let counter = 0;
const unique = (prefix: string): string => `${prefix}-${++counter}`;

async function topic(partitions: number, name = unique('gc')): Promise<string> {
  await admin.createTopic(name, { partitions });
  return name;
}

/** Writes `count` records to every partition of a topic and waits for them. */
async function produceEach(name: string, partitions: number, count: number): Promise<void> {
  const sends: Promise<unknown>[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    for (let index = 0; index < count; index++) sends.push(producer.send({ topic: name, partition, value: `${partition}-${index}` }));
  }
  await producer.flush();
  await Promise.all(sends);
}

function options(groupId: string, extra: Partial<ConsumerOptions> = {}): ConsumerOptions {
  return { server: broker.address, deadlineMs: 5_000, resetPolicy: 'earliest', groupId, autoCommitIntervalMs: 60_000, ...extra } as ConsumerOptions;
}

function runner(name: string, groupId: string, log: Processed[], extra: Partial<ConsumerOptions>): Runner {
  const created = new Runner(name, options(groupId, extra), log);
  opened.push(created);
  return created;
}

function consumer(groupId: string, extra: Partial<ConsumerOptions> = {}): Consumer {
  const created = new Consumer(options(groupId, extra));
  opened.push(created);
  return created;
}

const all = (name: string, partitions: number): string[] => Array.from({ length: partitions }, (_, partition) => `${name}/${partition}`).sort();

/** The group as the coordinator sees it; null once it is forgotten (no members, no offsets). */
async function describeOrNull(groupId: string): Promise<Awaited<ReturnType<typeof broker.groups.describeGroup>> | null> {
  try {
    return await broker.groups.describeGroup(groupId);
  } catch (error) {
    if (/not found/.test((error as Error).message)) return null;
    throw error;
  }
}

/** True once every runner is a member, their assignments are disjoint and cover `expected`, and the group is stable. */
async function splitsExactly(groupId: string, runners: readonly Runner[], expected: readonly string[]): Promise<boolean> {
  const owned = runners.flatMap((member) => member.assignment());
  if (owned.length !== expected.length || new Set(owned).size !== owned.length) return false;
  if (JSON.stringify([...owned].sort()) !== JSON.stringify(expected)) return false;
  const description = await describeOrNull(groupId);
  const ids = new Set(runners.map((member) => member.consumer.memberId));
  return description !== null && description.state === 'stable' && description.members.length === runners.length && description.members.every((entry) => ids.has(entry.memberId));
}

async function fetchOffsets(groupId: string, name: string): Promise<Map<number, number>> {
  const response = await wire.call<strata.v1.FetchOffsetsResponse>('groups.fetchOffsets', v1.FetchOffsetsRequest.create({ groupId, topics: [name] }));
  return new Map(response.offsets.map((entry) => [entry.partition, Number(entry.offset.toString())]));
}

/** Offsets processed per partition of `name`, as sorted unique lists. */
function coverage(log: readonly Processed[], name: string): Map<number, Set<number>> {
  const result = new Map<number, Set<number>>();
  for (const entry of log) {
    if (entry.topic !== name) continue;
    let set = result.get(entry.partition);
    if (set === undefined) result.set(entry.partition, (set = new Set()));
    set.add(entry.offset);
  }
  return result;
}

const processedCount = (log: readonly Processed[], name: string): number => [...coverage(log, name).values()].reduce((sum, set) => sum + set.size, 0);

describe('assignment', () => {
  it('two and then three members split a topic: disjoint and complete, agreeing with the broker', async () => {
    const name = await topic(6);
    const groupId = unique('split');
    const log: Processed[] = [];
    const a = runner('a', groupId, log, { subscribe: [name] });
    const b = runner('b', groupId, log, { subscribe: [name] });
    await waitUntil(() => splitsExactly(groupId, [a, b], all(name, 6)), () => `a 2-way split, have ${a.assignment()} | ${b.assignment()}`);
    expect([a.assignment().length, b.assignment().length]).toEqual([3, 3]);

    const c = runner('c', groupId, log, { subscribe: [name] });
    await waitUntil(() => splitsExactly(groupId, [a, b, c], all(name, 6)), () => `a 3-way split, have ${a.assignment()} | ${b.assignment()} | ${c.assignment()}`);
    expect([a, b, c].map((member) => member.assignment().length)).toEqual([2, 2, 2]);

    // The broker's view is the clients' view.
    const description = await broker.groups.describeGroup(groupId);
    for (const member of [a, b, c]) {
      const described = description.members.find((entry) => entry.memberId === member.consumer.memberId);
      expect(described?.assignment.map(({ topic: t, partition }) => `${t}/${partition}`).sort()).toEqual(member.assignment());
      expect(described?.memberEpoch).toBe(member.consumer.memberEpoch);
      expect(described?.clientId).toBe('strata-js');
    }
    await Promise.all([a.close(), b.close(), c.close()]);
    // All left at once (no session timeout): the group is empty, with the offsets they committed on close.
    expect(await describeOrNull(groupId)).toMatchObject({ state: 'empty', members: [] });
  });

  it('when a member closes, the others take over its partitions from its committed offsets: nothing lost, nothing twice', async () => {
    const name = await topic(6);
    const groupId = unique('takeover');
    const log: Processed[] = [];
    const runners = new Map<string, Runner>();
    for (const id of ['a', 'b', 'c']) runners.set(id, runner(id, groupId, log, { subscribe: [name] }));
    const [a, b, c] = [...runners.values()] as [Runner, Runner, Runner];
    await waitUntil(() => splitsExactly(groupId, [a, b, c], all(name, 6)), '3-way split');

    await produceEach(name, 6, 50);
    await waitUntil(() => processedCount(log, name) === 300, () => `300 records processed, have ${processedCount(log, name)}`);
    const cPartitions = c.consumer.assignment();
    const started: TopicPartitionOffset[] = [];
    for (const member of [a, b]) member.consumer.on('partitionStarted', (event: TopicPartitionOffset) => started.push(event));

    await c.close();
    // Its final positions are committed (auto-commit is at 60 s here: these come from close).
    const committed = await fetchOffsets(groupId, name);
    for (const { partition } of cPartitions) expect(committed.get(partition)).toBe(50);

    await waitUntil(() => splitsExactly(groupId, [a, b], all(name, 6)), '2-way split after c left');
    await produceEach(name, 6, 50);
    await waitUntil(() => processedCount(log, name) === 600, () => `600 records processed, have ${processedCount(log, name)}`);
    // a and b started c's partitions where c had committed.
    expect(started.filter(({ topic: t }) => t === name).sort((x, y) => x.partition - y.partition)).toEqual(cPartitions.map(({ partition }) => ({ topic: name, partition, offset: 50 })).sort((x, y) => x.partition - y.partition));
    for (const [partition, offsets] of coverage(log, name)) expect(offsets.size, `partition ${partition}`).toBe(100);
    expect(duplicatesAfterLastCommit(log, runners)).toEqual([]);
    await Promise.all([a.close(), b.close()]);
  });

  it('regex subscription: matching topics, including ones created after joining; others are ignored', async () => {
    const prefix = unique('rx');
    const first = await topic(2, `${prefix}.alpha`);
    const ignored = await topic(1, `${prefix}-other`);
    const groupId = unique('regex');
    const log: Processed[] = [];
    const member = runner('a', groupId, log, { subscribe: { regex: `${prefix.replace(/[-]/g, '\\-')}\\.[a-z]+` } });
    await waitUntil(() => member.assignment().length === 2, 'the first topic assigned');
    const second = await topic(3, `${prefix}.beta`);
    await waitUntil(() => member.assignment().length === 5, () => `the second topic assigned, have ${member.assignment()}`);
    await produceEach(first, 2, 5);
    await produceEach(second, 3, 5);
    await produceEach(ignored, 1, 5);
    await waitUntil(() => processedCount(log, first) + processedCount(log, second) === 25, 'records of both matching topics');
    expect(processedCount(log, ignored)).toBe(0);
    expect(member.assignment()).toEqual([...all(first, 2), ...all(second, 3)].sort());
    expect((await broker.groups.describeGroup(groupId)).members[0]?.subscribedTopicRegex).toContain('\\.[a-z]+');
    await member.close();
  });
});

describe('subscription changes', () => {
  it('subscribe() again moves the member to the new topics: the old ones are revoked (committed first), the new ones assigned; close() revokes those', async () => {
    const before = await topic(2);
    const after = await topic(3);
    const groupId = unique('resubscribe');
    const log: Processed[] = [];
    const member = runner('a', groupId, log, { subscribe: [before] });
    await waitUntil(() => member.assignment().length === 2, 'the first topic');
    await produceEach(before, 2, 4);
    await waitUntil(() => log.length === 8, 'records of the first topic');
    const revoked: PartitionsEvent[] = [];
    member.consumer.on('partitionsRevoked', (event: PartitionsEvent) => revoked.push(event));

    member.consumer.subscribe({ topics: [after] });
    await waitUntil(() => JSON.stringify(member.assignment()) === JSON.stringify(all(after, 3)), () => `only the new topic, have ${member.assignment()}`);
    expect(revoked.flatMap((event) => event.partitions.map(({ topic: t, partition }) => `${t}/${partition}`)).sort()).toEqual(all(before, 2));
    expect(Object.fromEntries(await fetchOffsets(groupId, before))).toEqual({ 0: 4, 1: 4 });
    const description = await broker.groups.describeGroup(groupId);
    expect(description.members[0]?.subscribedTopicNames).toEqual([after]);
    expect(() => member.consumer.subscribe([])).toThrow(/topic names and\/or a regex/);
    expect(() => member.consumer.subscribe(['orders', 'a b'])).toThrow('subscribed topic name "a b" has characters outside [a-zA-Z0-9._-]');
    expect(() => member.consumer.subscribe({ regex: '(' })).toThrow(/not a valid regular expression/);
    expect(() => member.consumer.subscribe([{ regex: 'orders\\..*' }] as unknown as string[])).toThrow(/^a regex subscription is \{ regex \} \(or \{ topics, regex \}\), not an element of the list of topic names/);
    // From JavaScript: a string would be one-letter topics o, r, d...
    expect(() => member.consumer.subscribe({ topics: 'orders' as unknown as string[] })).toThrow(`a subscription's topics are a list of topic names, got "orders"`);
    expect(() => member.consumer.subscribe({ regex: /(?!x)y/ })).toThrow(/no lookaround/);
    expect(normalizeSubscription({ regex: /orders\..*/dgmsuy })).toEqual({ topics: [], regex: 'orders\\..*' }); // flags that change nothing for a topic name
    expect(() => member.consumer.subscribe({ regex: /orders/i })).toThrow(/regex flags \(i\) are not sent to the broker; write case-insensitivity inline, e\.g\. \(\?i\)/);
    expect(() => new Consumer({ server: broker.address, groupId: 'g\u0007', subscribe: [after] })).toThrow(/unprintable character U\+0007/);
    // Ids the broker would refuse to join with are refused here, before any heartbeat.
    expect(() => new Consumer({ server: broker.address, groupId: 'g', subscribe: [after], clientId: 'c'.repeat(256) })).toThrow('clientId is 256 characters long; the limit is 255');
    expect(() => new Consumer({ server: broker.address, groupId: 'g', subscribe: [after], instanceId: 'i'.repeat(250) })).toThrow('instanceId is 250 characters long; the limit is 249');
    expect(() => new Consumer({ server: broker.address, subscribe: [after] })).toThrow(/needs a groupId/);
    // close() gives up the partitions as a rebalance does, and says so.
    revoked.length = 0;
    await member.close();
    expect(revoked.flatMap((event) => event.partitions.map(({ topic: t, partition }) => `${t}/${partition}`)).sort()).toEqual(all(after, 3));
  });
});

describe('a subscribed topic deleted and created again', () => {
  it('reads the new topic once: nothing of it under the deleted topic\'s ownership, all of it from its first record once the group assigns it again', async () => {
    const name = await topic(1);
    await produceEach(name, 1, 3);
    const groupId = unique('recreated');
    // Heartbeats are held while the topic is deleted and created again: the answer that revokes
    // the deleted topic's partition comes only when the test lets it.
    const gate: { held: Promise<void> | null } = { held: null };
    const member = consumer(groupId, { subscribe: [name], retryBackoffMs: 5, retryBackoffMaxMs: 5, interceptors: [holdCalls(['/strata.v1.Groups/Heartbeat'], gate)] });
    const values: string[] = [];
    const reading = (async () => {
      for await (const record of member) values.push(record.value!.toString('utf8'));
    })();
    await waitUntil(() => values.length === 3, () => `the first topic's records, have ${values}`);
    let release = (): void => undefined;
    gate.held = new Promise<void>((resolve) => (release = resolve));
    const gone = new Promise<void>((resolve) => {
      member.on('fetchError', (event) => {
        if (event.error.code === 'NOT_FOUND') resolve();
      });
    });
    await admin.deleteTopic(name);
    await gone;
    await admin.createTopic(name, { partitions: 1 });
    const again = (from: number, count: number): Promise<unknown> => Promise.all(Array.from({ length: count }, (_, index) => producer.send({ topic: name, partition: 0, value: `new-${from + index}` })));
    await again(0, 5);
    // Read now, the new topic would be read again from its start once the group assigns it
    // (the commits of a partition deleted under its owner are not stored).
    expect(await plateau(() => values.length, 300)).toBe(3);
    gate.held = null;
    release();
    await waitUntil(() => values.includes('new-4'), () => `the new topic's records, have ${values}`);
    await again(5, 1);
    await waitUntil(() => values.includes('new-5'), () => `the last record, have ${values}`);
    expect(values).toEqual(['0-0', '0-1', '0-2', 'new-0', 'new-1', 'new-2', 'new-3', 'new-4', 'new-5']);
    await member.close();
    await reading;
  });
});

describe('commits', () => {
  it('revocation commits before release: the committed offsets are there when the new owner gets the partitions', async () => {
    const name = await topic(4);
    const groupId = unique('revoke');
    const log: Processed[] = [];
    const a = runner('a', groupId, log, { subscribe: [name] });
    await waitUntil(() => a.assignment().length === 4, 'a owns everything');
    await produceEach(name, 4, 10);
    await waitUntil(() => processedCount(log, name) === 40, 'a processed everything');
    expect((await fetchOffsets(groupId, name)).size).toBe(0); // auto-commit is at 60 s: nothing yet

    const order: string[] = [];
    a.consumer.on('partitionsRevoked', ({ partitions }: PartitionsEvent) => order.push(`a revoked ${partitions.length}`));
    const seen: Promise<{ partitions: number[]; committed: Map<number, number> }> = new Promise((resolve, reject) => {
      const b = runner('b', groupId, log, { subscribe: [name] });
      b.consumer.once('partitionsAssigned', ({ partitions }: PartitionsEvent) => {
        order.push(`b assigned ${partitions.length}`);
        // Right when b gets them, over the wire.
        fetchOffsets(groupId, name).then((committed) => resolve({ partitions: partitions.map(({ partition }) => partition), committed }), reject);
      });
    });
    const { partitions, committed } = await seen;
    expect(partitions).toHaveLength(2);
    for (const partition of partitions) expect(committed.get(partition), `partition ${partition}`).toBe(10);
    expect(order).toEqual(['a revoked 2', 'b assigned 2']);
    // b reads on from there: only new records.
    await produceEach(name, 4, 1);
    await waitUntil(() => processedCount(log, name) === 44, 'the new records');
    expect(log.filter((entry) => entry.runner === 'b').every((entry) => entry.offset === 10)).toBe(true);
    expect(log).toHaveLength(44);
  });

  it('a beforeRevoke hook that outlasts the time the broker gives a revocation makes the member leave and join again: the partitions move, nobody reads beside their new owner', async () => {
    const name = await topic(2);
    const groupId = unique('hung-hook');
    let release = (): void => undefined;
    const hung = new Promise<void>((resolve) => (release = resolve));
    const log: Processed[] = [];
    // A 1 s session and 100 ms heartbeats: the revocation has 800 ms.
    /** The partitions a still read when each of its leaves was sent. */
    const readingAtLeave: number[] = [];
    const holder: { a?: Runner } = {};
    const countLeaves: Interceptor = (callOptions, nextCall) =>
      new InterceptingCall(nextCall(callOptions), {
        sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
          if (callOptions.method_definition.path.endsWith('/Heartbeat') && message.memberEpoch === -1) readingAtLeave.push(holder.a!.assignment().length);
          next(message);
        },
      });
    // The hook, once it returns, commits the positions it was given, as a hook may.
    let hookCommit: Promise<string> | null = null;
    let hooks = 0;
    const beforeRevoke = async (positions: TopicPartitionOffset[]): Promise<void> => {
      if (++hooks > 1) return; // later revocations (as a joins again) pass at once
      await hung;
      hookCommit = holder.a!.consumer.commit(positions).then(
        () => 'committed',
        (error: Error) => error.message,
      );
    };
    const a = runner('a', groupId, log, { subscribe: [name], sessionTimeoutMs: 1_000, beforeRevoke, interceptors: [countLeaves] });
    holder.a = a;
    const lost: PartitionsLostEvent[] = [];
    a.consumer.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    const failedCommits: string[] = [];
    a.consumer.on('commitFailed', ({ error }: { error: StrataClientError }) => failedCommits.push(error.message));
    try {
      await waitUntil(() => a.assignment().length === 2, 'a owns both');
      await produceEach(name, 2, 3);
      await waitUntil(() => log.length === 6, 'a read them');
      const b = runner('b', groupId, log, { subscribe: [name] });
      await waitUntil(() => lost.length === 1, 'a gives the revocation up');
      expect(lost[0]!.error).toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(new RegExp(`^the revocation of ${name}-[01] did not finish within 800 ms`)) });
      // a stopped reading both before its leave moved them, so it never read beside their next
      // owner; it left at once (the broker did not wait out its session), so b had them; now one each.
      await waitUntil(() => readingAtLeave.length === 1, 'a to leave');
      expect(readingAtLeave).toEqual([0]);
      await waitUntil(() => a.assignment().length === 1 && b.assignment().length === 1, 'one partition each after a joined again');
      expect(new Set([...a.assignment(), ...b.assignment()])).toEqual(new Set(all(name, 2)));
      const description = await broker.groups.describeGroup(groupId);
      expect(description.members.map((member) => member.memberId).sort()).toEqual([a.consumer.memberId, b.consumer.memberId].sort());
      // The hook returns now: its positions are of the membership a lost, and are refused.
      release();
      await waitUntil(() => hookCommit !== null, 'the hook to commit');
      expect(await hookCommit).toMatch(/^this consumer lost its membership of group .*, and with it the partitions, after these positions were taken; nothing committed$/);
      // So is the revocation's own automatic commit, which follows the hook.
      await waitUntil(() => failedCommits.length > 0, 'the revocation commit');
      expect(failedCommits[0]).toMatch(/^this consumer lost its membership of group /);
    } finally {
      release();
    }
  });

  it('counts the time a revocation has from the heartbeat the broker answered, not from a late answer: the member gives up before the broker would move its partitions', async () => {
    const name = await topic(2);
    const groupId = unique('late-revocation');
    let release = (): void => undefined;
    const hung = new Promise<void>((resolve) => (release = resolve));
    const log: Processed[] = [];
    const holder: { a?: Runner } = {};
    let delayed = 0;
    // A 1 s session and 100 ms heartbeats: the revocation has 800 ms from the heartbeat that
    // asked for it. Its answer comes 500 ms late (within the call's deadline): 300 ms are left.
    const lateRevocation: Interceptor = (callOptions, nextCall) =>
      new InterceptingCall(nextCall(callOptions), {
        start: (metadata, _listener, next) =>
          next(metadata, {
            // null when a unary call fails (grpc-js), as this consumer's calls may while a later test freezes the process.
            onReceiveMessage: (message: strata.v1.HeartbeatResponse | null, nextMessage: (message: unknown) => void) => {
              const assigned = message?.assignment?.reduce((count, entry) => count + entry.partitions.length, 0);
              const revokes = callOptions.method_definition.path.endsWith('/Heartbeat') && holder.a!.assignment().length === 2 && assigned === 1;
              if (revokes && delayed++ === 0) setTimeout(() => nextMessage(message), 500);
              else nextMessage(message);
            },
          }),
      });
    const a = runner('a', groupId, log, { subscribe: [name], sessionTimeoutMs: 1_000, beforeRevoke: () => hung, interceptors: [lateRevocation] });
    holder.a = a;
    const lost: PartitionsLostEvent[] = [];
    a.consumer.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    /** Partitions b was given while a still read them. */
    const readByBoth: string[] = [];
    try {
      await waitUntil(() => a.assignment().length === 2, 'a owns both');
      const b = runner('b', groupId, log, { subscribe: [name] });
      b.consumer.on('partitionsAssigned', ({ partitions }: PartitionsEvent) => {
        const reading = new Set(a.assignment());
        for (const { topic: assignedTopic, partition } of partitions) if (reading.has(`${assignedTopic}/${partition}`)) readByBoth.push(`${assignedTopic}/${partition}`);
      });
      await waitUntil(() => lost.length === 1, 'a gives the revocation up');
      expect(delayed, 'the revoking answer was delayed').toBeGreaterThan(0);
      expect(lost[0]!.error.message).toMatch(/did not finish within 800 ms/);
      await waitUntil(() => b.assignment().length >= 1 && a.assignment().length + b.assignment().length === 2, 'the partitions settle');
      expect(readByBoth, 'b was given a partition a still read').toEqual([]);
    } finally {
      release();
    }
  });

  it('a beforeRevoke hook that throws does not keep the revocation from committing the positions', async () => {
    const name = await topic(1);
    const groupId = unique('throwing-hook');
    await produceEach(name, 1, 3);
    const reader = consumer(groupId, {
      subscribe: [name],
      beforeRevoke: () => {
        throw new Error('a bug in the hook');
      },
    });
    await waitUntil(() => reader.assignment().length === 1, 'assignment');
    expect((await reader.nextBatch({ timeoutMs: 5_000 }))?.records).toHaveLength(3);
    await reader.close();
    expect((await fetchOffsets(groupId, name)).get(0)).toBe(3);
  });

  it('auto-commit commits processed positions at the interval, never the batch the application still holds', async () => {
    const name = await topic(2);
    const groupId = unique('auto');
    await produceEach(name, 2, 10); // before joining: each partition's first fetch returns all 10
    const reader = consumer(groupId, { subscribe: [name], autoCommitIntervalMs: 50 });
    await waitUntil(() => reader.assignment().length === 2, 'assignment');
    const commits: TopicPartitionOffset[][] = [];
    reader.on('offsetsCommitted', ({ offsets }: { offsets: TopicPartitionOffset[] }) => commits.push(offsets));

    const held = await reader.nextBatch({ timeoutMs: 5_000 });
    expect(held?.records).toHaveLength(10);
    // Taking the next batch marks the first processed and holds the second.
    const second = await reader.nextBatch({ timeoutMs: 5_000 });
    expect(second?.records).toHaveLength(10);
    expect(second!.partition).toBe(1 - held!.partition);
    const firstDone = (): TopicPartitionOffset[] | undefined => commits.find((offsets) => offsets.some(({ partition, offset }) => partition === held!.partition && offset === 10));
    await waitUntil(() => firstDone() !== undefined, 'the first batch committed');
    // That commit and the broker leave the held batch's partition at its start.
    expect(firstDone()!.filter(({ partition }) => partition === second!.partition).every(({ offset }) => offset === 0)).toBe(true);
    expect((await fetchOffsets(groupId, name)).get(second!.partition) ?? 0).toBe(0);
    // Asking again (nothing more comes) marks the second processed.
    expect(await reader.nextBatch({ timeoutMs: 0 })).toBeNull();
    await waitUntil(async () => {
      const offsets = await fetchOffsets(groupId, name);
      return offsets.get(0) === 10 && offsets.get(1) === 10;
    }, 'both partitions committed at 10');
    expect(await reader.committed()).toMatchObject([
      { topic: name, partition: 0, offset: 10 },
      { topic: name, partition: 1, offset: 10 },
    ]);
  });

  it('leaving a batches() loop marks the last batch processed: auto-commit commits past it while the consumer stays open', async () => {
    const name = await topic(1);
    const groupId = unique('batches-loop');
    await produceEach(name, 1, 10);
    const reader = consumer(groupId, { subscribe: [name], autoCommitIntervalMs: 50 });
    for await (const batch of reader.batches()) {
      expect(batch.records).toHaveLength(10);
      break;
    }
    await waitUntil(async () => (await fetchOffsets(groupId, name)).get(0) === 10, 'the batch left in the loop to be committed');
  });

  it('manual commit: nothing is committed until commit(), and close() without auto-commit commits nothing more', async () => {
    const name = await topic(2);
    const groupId = unique('manual');
    const log: Processed[] = [];
    const member = runner('a', groupId, log, { subscribe: [name], autoCommit: false, autoCommitIntervalMs: 20 });
    await waitUntil(() => member.assignment().length === 2, 'assignment');
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 10, 'first records');
    expect(await member.consumer.committed()).toEqual([]);
    await member.consumer.commit();
    expect((await member.consumer.committed()).map(({ partition, offset }) => [partition, offset])).toEqual([
      [0, 5],
      [1, 5],
    ]);
    // Explicit offsets.
    await member.consumer.commit([{ topic: name, partition: 0, offset: 3 }]);
    expect((await fetchOffsets(groupId, name)).get(0)).toBe(3);
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 20, 'more records');
    await member.close();
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({ 0: 3, 1: 5 });
  });

  it('a manually assigned consumer with a groupId commits with an empty member id, resumes from it, and is refused while the group has members', async () => {
    const name = await topic(1);
    const groupId = unique('assigned');
    await produceEach(name, 1, 8);
    const first = consumer(groupId, { autoCommit: false });
    await first.assign([{ topic: name, partition: 0 }]);
    const batch = await first.nextBatch({ timeoutMs: 5_000 });
    expect(batch?.records).toHaveLength(8);
    await first.commit([{ topic: name, partition: 0, offset: 6 }]);
    expect(first.memberId).toBeNull();
    await first.close();

    const second = consumer(groupId);
    await second.assign([{ topic: name, partition: 0 }]);
    const rest = await second.nextBatch({ timeoutMs: 5_000 });
    expect(rest?.records.map((record) => record.offset)).toEqual([6, 7]);

    const other = await topic(1);
    const member = consumer(groupId, { subscribe: [other] });
    await waitUntil(() => member.assignment().length === 1, 'a member in the group');
    const refused = await second.commit().then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(StrataClientError);
    expect((refused as StrataClientError).code).toBe('FAILED_PRECONDITION');
    expect(() => second.subscribe([name])).toThrow(/either/);
    expect(() => member.assign([{ topic: name, partition: 0 }])).toThrow(/either/);
  });
});

describe('failures and static membership', () => {
  it('a member retries UNAVAILABLE heartbeats; near its session timeout without an answer it drops its partitions without committing, before the broker gives them away, and rejoins', async () => {
    const name = await topic(2);
    const groupId = unique('expire');
    let blocked = false;
    // While blocked, heartbeats look UNAVAILABLE to the client and never count on the broker
    // (they go out with an invalid group id, which the broker refuses), so the session runs out.
    const interceptor: Interceptor = (callOptions, nextCall) => {
      const heartbeat = callOptions.method_definition.path.endsWith('/Heartbeat');
      return new InterceptingCall(nextCall(callOptions), {
        start: (metadata, _listener, next) => {
          next(metadata, {
            onReceiveStatus: (received, nextStatus) => nextStatus(blocked && heartbeat ? { ...received, code: status.UNAVAILABLE, details: 'injected: broker unreachable' } : received),
          });
        },
        sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
          if (blocked && heartbeat) next(v1.HeartbeatRequest.create({ ...message, groupId: '' }));
          else next(message);
        },
      });
    };
    const reader = consumer(groupId, { subscribe: [name], sessionTimeoutMs: 500, interceptors: [interceptor] });
    const errors: GroupErrorEvent[] = [];
    const lost: PartitionsLostEvent[] = [];
    /** Members the broker had in the group when the client gave its partitions up. */
    const membersWhenLost: number[] = [];
    reader.on('groupError', (event: GroupErrorEvent) => errors.push(event));
    reader.on('partitionsLost', (event: PartitionsLostEvent) => {
      lost.push(event);
      membersWhenLost.push(broker.groups.listGroups().find((group) => group.groupId === groupId)?.members ?? 0);
    });
    await waitUntil(() => reader.assignment().length === 2, 'assignment');
    const firstId = reader.memberId;

    blocked = true;
    // The client gives its partitions up first (after 300 ms without an answer: the 500 ms
    // session less two 100 ms intervals), the broker removes the member after 500 ms.
    await waitUntil(() => lost.length === 1, 'the client to give its partitions up');
    expect(membersWhenLost).toEqual([1]);
    expect(reader.assignment()).toEqual([]);
    expect(lost[0]!.error.code).toBe('UNAVAILABLE');
    expect(lost[0]!.error.message).toMatch(/^no heartbeat of this member was answered for \d+ ms, near its session timeout of 500 ms \(the last: .*injected: broker unreachable\): the broker removes it then/);
    expect(lost[0]!.partitions).toHaveLength(2);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((event) => event.error.code === 'UNAVAILABLE')).toBe(true); // retried with backoff
    await waitUntil(async () => (await describeOrNull(groupId)) === null, 'the session to expire');
    blocked = false;
    await waitUntil(() => reader.assignment().length === 2, 'assigned again');
    expect(lost).toHaveLength(1);
    expect(reader.memberId).toBe(firstId); // a new member under the id the consumer keeps for its life
    expect((await describeOrNull(groupId))?.members.map((member) => member.memberId)).toEqual([firstId]);
    expect(await reader.committed()).toEqual([]);
  });

  it('a member that gave its membership up without its leave being heard leaves again before it joins: the join is not refused as another consumer\'s', async () => {
    const name = await topic(2);
    const groupId = unique('unheard-leave');
    let lossy = false;
    let lostLeaves = 0;
    // While lossy, as with a broker that hangs and takes in the queued calls when it wakes: its
    // heartbeats reach the broker (the session goes on) but no answer comes back, and its leave
    // is lost (sent with an invalid group id, which the broker refuses).
    const interceptor: Interceptor = (callOptions, nextCall) => {
      const heartbeat = callOptions.method_definition.path.endsWith('/Heartbeat');
      return new InterceptingCall(nextCall(callOptions), {
        start: (metadata, _listener, next) => {
          const losing = lossy && heartbeat;
          next(metadata, {
            onReceiveStatus: (received, nextStatus) => nextStatus(losing ? { ...received, code: status.UNAVAILABLE, details: 'injected: answer lost' } : received),
          });
        },
        sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
          if (lossy && heartbeat && message.memberEpoch === -1) {
            lostLeaves++;
            next(v1.HeartbeatRequest.create({ ...message, groupId: '' }));
          } else next(message);
        },
      });
    };
    const reader = consumer(groupId, { subscribe: [name], sessionTimeoutMs: 3_000, interceptors: [interceptor] });
    const errors: GroupErrorEvent[] = [];
    reader.on('groupError', (event: GroupErrorEvent) => errors.push(event));
    reader.on('partitionsLost', () => {
      lossy = false; // the broker answers again from here on
    });
    await waitUntil(() => reader.assignment().length === 2, 'assignment');
    lossy = true;
    await waitUntil(() => !lossy, 'the client to give its partitions up', 20_000);
    // The broker kept the member (its heartbeats came): the client leaves again, then joins.
    await waitUntil(() => reader.assignment().length === 2, 'assigned again', 20_000);
    expect(lostLeaves).toBe(1); // the leave given with the partitions was lost: the one before the join went through
    expect(errors.filter((event) => event.joinRefused === true)).toEqual([]);
    expect((await describeOrNull(groupId))?.members.map((member) => member.memberId)).toEqual([reader.memberId]);
  });

  it('a member whose session is under five of the broker\'s intervals rides out a failed heartbeat: it keeps its partitions', async () => {
    // The broker's 5 s interval is cut to a fifth of the 3 s session: 600 ms. The member gives
    // its partitions up only after 1.8 s without an answer (the session less two intervals);
    // with a third of the session (1 s), it did after 1 s, so one failed heartbeat was enough.
    const slow = await startTestBroker({ groupHeartbeatIntervalMs: 5_000, groupSessionTimeoutMs: 45_000 });
    try {
      const slowAdmin = new Admin({ server: slow.address });
      await slowAdmin.createTopic('one-failure', { partitions: 2 });
      await slowAdmin.close();
      let failNext = false;
      const heartbeats = { failed: 0, answered: 0 };
      const interceptor: Interceptor = (callOptions, nextCall) => {
        const heartbeat = callOptions.method_definition.path.endsWith('/Heartbeat');
        const fail = heartbeat && failNext;
        if (fail) failNext = false;
        return new InterceptingCall(nextCall(callOptions), {
          start: (metadata, _listener, next) => {
            next(metadata, {
              onReceiveStatus: (received, nextStatus) => {
                if (fail) heartbeats.failed++;
                else if (heartbeat && received.code === status.OK) heartbeats.answered++;
                nextStatus(fail ? { ...received, code: status.UNAVAILABLE, details: 'injected: connection reset' } : received);
              },
            });
          },
        });
      };
      const reader = new Consumer({ server: slow.address, deadlineMs: 5_000, groupId: 'one-failure', subscribe: ['one-failure'], sessionTimeoutMs: 3_000, autoCommitIntervalMs: 60_000, interceptors: [interceptor] } as ConsumerOptions);
      const lost: PartitionsLostEvent[] = [];
      reader.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
      try {
        await waitUntil(() => reader.assignment().length === 2, 'assignment');
        const answeredBefore = heartbeats.answered;
        failNext = true;
        await waitUntil(() => heartbeats.failed === 1 && heartbeats.answered >= answeredBefore + 2, 'a failed heartbeat, then two answered ones', 15_000);
        expect(lost).toEqual([]);
        expect(reader.assignment()).toHaveLength(2);
      } finally {
        await reader.close();
      }
    } finally {
      await slow.dispose();
    }
  });

  it('a heartbeat that hangs (its request never reaches the broker) fails by its deadline in time for the member to drop its partitions before the broker gives them away', async () => {
    const name = await topic(2);
    const groupId = unique('hang');
    let hanging = false;
    /** How each heartbeat the interceptor held back ended. */
    const held: { code: number | null }[] = [];
    // While hanging, a heartbeat's request is never sent (nor its end), so the call waits for
    // its deadline; the broker sees nothing and the member's session runs out there.
    const interceptor: Interceptor = (callOptions, nextCall) => {
      const hold = hanging && callOptions.method_definition.path.endsWith('/Heartbeat');
      const entry = { code: null as number | null };
      if (hold) held.push(entry);
      return new InterceptingCall(nextCall(callOptions), {
        start: (metadata, _listener, next) => {
          next(metadata, {
            onReceiveStatus: (received, nextStatus) => {
              if (hold) entry.code = received.code;
              nextStatus(received);
            },
          });
        },
        sendMessage: (message, next) => {
          if (!hold) next(message);
        },
        halfClose: (next) => {
          if (!hold) next();
        },
      });
    };
    const reader = consumer(groupId, { subscribe: [name], sessionTimeoutMs: 500, interceptors: [interceptor] });
    const lost: PartitionsLostEvent[] = [];
    const membersWhenLost: number[] = [];
    reader.on('partitionsLost', (event: PartitionsLostEvent) => {
      lost.push(event);
      membersWhenLost.push(broker.groups.listGroups().find((group) => group.groupId === groupId)?.members ?? 0);
    });
    await waitUntil(() => reader.assignment().length === 2, 'assignment');

    hanging = true;
    await waitUntil(() => lost.length === 1, 'the client to give its partitions up');
    expect(membersWhenLost).toEqual([1]); // the broker had not removed the member yet
    expect(lost[0]!.error.code).toBe('DEADLINE_EXCEEDED');
    expect(lost[0]!.error.message).toMatch(/^no heartbeat of this member was answered for \d+ ms, near its session timeout of 500 ms/);
    expect(reader.assignment()).toEqual([]);
    expect(held[0]!.code).toBe(status.DEADLINE_EXCEEDED); // the held call failed by its own deadline

    hanging = false;
    await waitUntil(() => reader.assignment().length === 2, 'assigned again');
    expect(lost).toHaveLength(1);
  });

  it('a member whose join answer was lost joins again under the same member id: no ghost member holds the partitions until its session ends', async () => {
    const name = await topic(2);
    const groupId = unique('lost-join');
    let lose = true;
    // The first join reaches the broker, which makes the member; the client sees UNAVAILABLE
    // instead of the answer (a unary call that ends with an error status drops its message).
    const interceptor: Interceptor = (callOptions, nextCall) => {
      let dropping = false;
      return new InterceptingCall(nextCall(callOptions), {
        start: (metadata, _listener, next) => {
          next(metadata, {
            onReceiveStatus: (received, nextStatus) => nextStatus(dropping ? { ...received, code: status.UNAVAILABLE, details: 'injected: answer lost' } : received),
          });
        },
        sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
          if (lose && callOptions.method_definition.path.endsWith('/Heartbeat') && message.memberEpoch === 0) {
            lose = false;
            dropping = true;
          }
          next(message);
        },
      });
    };
    // A session far longer than the wait below: a ghost member would hold both partitions throughout.
    const reader = consumer(groupId, { subscribe: [name], sessionTimeoutMs: 60_000, interceptors: [interceptor] });
    const errors: GroupErrorEvent[] = [];
    reader.on('groupError', (event: GroupErrorEvent) => errors.push(event));
    await waitUntil(() => reader.assignment().length === 2, 'assignment');
    expect(lose).toBe(false);
    expect(errors.map((event) => event.error.code)).toEqual(['UNAVAILABLE']);
    const description = await broker.groups.describeGroup(groupId);
    expect(description.members.map((member) => member.memberId)).toEqual([reader.memberId]);
    expect(description.members[0]!.assignment.map((entry) => entry.partition).sort()).toEqual([0, 1]);
  });

  it('a consumer closed while its join answer is lost leaves under the id it joined with: no ghost member holds the partitions', async () => {
    const name = await topic(2);
    const groupId = unique('lost-join-close');
    const joins = { sent: 0, lost: 0 };
    // Every join reaches the broker, which makes the member; the client sees UNAVAILABLE instead
    // of each answer, and backs off between tries.
    const interceptor: Interceptor = (callOptions, nextCall) => {
      let dropping = false;
      return new InterceptingCall(nextCall(callOptions), {
        start: (metadata, _listener, next) => {
          next(metadata, {
            onReceiveStatus: (received, nextStatus) => {
              if (dropping) joins.lost++;
              nextStatus(dropping ? { ...received, code: status.UNAVAILABLE, details: 'injected: answer lost' } : received);
            },
          });
        },
        sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
          if (callOptions.method_definition.path.endsWith('/Heartbeat') && message.memberEpoch === 0) {
            joins.sent++;
            dropping = true;
          }
          next(message);
        },
      });
    };
    // A session far longer than the test: a ghost member would hold both partitions throughout.
    const reader = new Consumer(options(groupId, { subscribe: [name], sessionTimeoutMs: 60_000, retryBackoffMs: 5_000, retryBackoffMaxMs: 5_000, interceptors: [interceptor] }));
    await waitUntil(() => joins.lost === 1, 'a join whose answer is lost');
    expect((await broker.groups.describeGroup(groupId)).members).toHaveLength(1); // made on the broker
    await reader.close();
    expect(joins.sent).toBe(1);
    expect(await describeOrNull(groupId)).toBeNull(); // left: no members, no offsets
  });

  it('a fenced member drops its partitions without committing, is removed at once, and rejoins under its member id', async () => {
    const name = await topic(2);
    const groupId = unique('fence');
    let fence = false;
    const interceptor: Interceptor = (callOptions, nextCall) =>
      new InterceptingCall(nextCall(callOptions), {
        sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
          if (fence && callOptions.method_definition.path.endsWith('/Heartbeat') && message.memberEpoch > 0) {
            fence = false;
            next(v1.HeartbeatRequest.create({ ...message, memberEpoch: message.memberEpoch + 100 }));
          } else next(message);
        },
      });
    const log: Processed[] = [];
    const member = runner('a', groupId, log, { subscribe: [name], interceptors: [interceptor] });
    const lost: PartitionsLostEvent[] = [];
    member.consumer.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    await waitUntil(() => member.assignment().length === 2, 'assignment');
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 10, 'records');
    const firstId = member.consumer.memberId;

    fence = true;
    await waitUntil(() => lost.length === 1 && member.assignment().length === 2, 'fenced and assigned again');
    expect(lost[0]!.error.code).toBe('FAILED_PRECONDITION');
    expect(member.consumer.memberId).toBe(firstId);
    // The fenced member was removed (well before the 5 s session timeout), so the partitions came back at once.
    const description = await broker.groups.describeGroup(groupId);
    expect(description.members.map((entry) => entry.memberId)).toEqual([member.consumer.memberId]);
    // Nothing was committed when the partitions were lost, so they are read again from the start.
    await waitUntil(() => log.length === 20, 'records read again');
    expect((await fetchOffsets(groupId, name)).size).toBe(0);
  });

  it('a commit refused for a stale epoch (a heartbeat answer was lost) heartbeats at once and is sent again with the new epoch', async () => {
    const name = await topic(2);
    const groupId = unique('stale-epoch');
    // While `loseAnswers`, a's heartbeats reach the broker but their answers are lost (UNAVAILABLE):
    // the broker moves a's epoch, a does not learn it. The first refused commit ends that.
    let loseAnswers = false;
    let refusedCommits = 0;
    const interceptor: Interceptor = (callOptions, nextCall) => {
      const path = callOptions.method_definition.path;
      return new InterceptingCall(nextCall(callOptions), {
        start: (metadata, _listener, next) => {
          let lost = false;
          next(metadata, {
            onReceiveMessage: (message: { error?: { code?: number } | null }, nextMessage: (message: unknown) => void) => {
              if (path.endsWith('/CommitOffsetsStream') && message.error?.code === status.FAILED_PRECONDITION && loseAnswers) {
                refusedCommits++;
                loseAnswers = false;
              }
              if (path.endsWith('/Heartbeat') && loseAnswers) lost = true;
              nextMessage(message);
            },
            // The answer goes through (grpc-js holds the status until it has), then the status fails the call.
            onReceiveStatus: (received, nextStatus) => nextStatus(lost ? { ...received, code: status.UNAVAILABLE, details: 'injected: answer lost' } : received),
          });
        },
      });
    };
    const log: Processed[] = [];
    // The revocation the refreshed heartbeat brings waits for the commit, as an application's
    // hook would: acknowledged first, the revoked partition's retried commit would be refused.
    let committing: Promise<unknown> = Promise.resolve();
    const a = runner('a', groupId, log, { subscribe: [name], autoCommit: false, interceptors: [interceptor], beforeRevoke: () => committing.then(() => undefined) });
    await waitUntil(() => a.assignment().length === 2, 'assignment');
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 10, 'records');

    loseAnswers = true;
    runner('b', groupId, [], { subscribe: [name], autoCommit: false });
    const knownEpoch = a.consumer.memberEpoch!;
    await waitUntil(async () => {
      const member = (await broker.groups.describeGroup(groupId)).members.find((entry) => entry.memberId === a.consumer.memberId);
      return member !== undefined && member.memberEpoch > knownEpoch;
    }, 'the broker moved the epoch a has not heard of');
    expect(a.consumer.memberEpoch).toBe(knownEpoch);

    // a still owns both partitions (one of them is being revoked), so both can be committed.
    const commit = a.consumer.commit([
      { topic: name, partition: 0, offset: 5 },
      { topic: name, partition: 1, offset: 5 },
    ]);
    committing = commit.catch(() => undefined);
    await commit;
    expect(refusedCommits).toBe(1);
    expect(a.consumer.memberEpoch).toBeGreaterThan(knownEpoch);
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({ 0: 5, 1: 5 });
  });

  it('a commit that a rebalance crosses commits the partitions the member still owns, and names the one it gave up meanwhile', async () => {
    const name = await topic(2);
    const groupId = unique('crossed');
    // Holds a's commits until `release` resolves: the rebalance happens while one is on its way.
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let hold = false;
    const holdCommits: Interceptor = (callOptions, nextCall) =>
      new InterceptingCall(nextCall(callOptions), {
        sendMessage: (message: unknown, next: (message: unknown) => void) => {
          if (hold && callOptions.method_definition.path.includes('CommitOffsets')) void released.then(() => next(message));
          else next(message);
        },
      });
    const log: Processed[] = [];
    const a = runner('a', groupId, log, { subscribe: [name], autoCommit: false, interceptors: [holdCommits] });
    await waitUntil(() => a.assignment().length === 2, 'a owns both');
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 10, 'records');
    hold = true;
    const committing = a.consumer.commit([0, 1].map((partition) => ({ topic: name, partition, offset: 5 }))).then(
      () => null,
      (failure: unknown) => failure,
    );
    const b = runner('b', groupId, [], { subscribe: [name], autoCommit: false });
    await waitUntil(() => a.assignment().length === 1 && b.assignment().length === 1, 'one partition each');
    const kept = a.consumer.assignment()[0]!.partition;
    hold = false;
    release();
    expect(await committing).toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: `not committed: ${name}-${1 - kept}, which this consumer gave up in a rebalance before the commit reached the broker (their new owner goes on from the group's last committed offset); the others were committed`,
    });
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({ [kept]: 5 });
  });

  it('a commit naming a partition the member does not own (given up in an earlier rebalance) commits the others, and names it', async () => {
    const name = await topic(2);
    const groupId = unique('given-up');
    const log: Processed[] = [];
    const a = runner('a', groupId, log, { subscribe: [name], autoCommit: false });
    await waitUntil(() => a.assignment().length === 2, 'assignment');
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 10, 'records');
    const b = runner('b', groupId, [], { subscribe: [name], autoCommit: false });
    await waitUntil(() => a.assignment().length === 1 && b.assignment().length === 1, 'one partition each');
    const kept = a.consumer.assignment()[0]!.partition;
    const error = await a.consumer.commit([0, 1].map((partition) => ({ topic: name, partition, offset: 4 }))).then(
      () => null,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(StrataClientError);
    expect(error).toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: `not committed: ${name}-${1 - kept}, which this consumer does not own; the others were committed`,
    });
    expect((await fetchOffsets(groupId, name)).get(kept)).toBe(4);
    expect((await fetchOffsets(groupId, name)).has(1 - kept)).toBe(false);
  });

  it('a commit begun before the member was fenced, or queued behind it, is not sent once it has joined again under the same id', async () => {
    const name = await topic(1);
    const groupId = unique('crossing');
    let fence = false;
    let holdCommit = true;
    let rejoined!: () => void;
    const rejoinedNow = new Promise<void>((resolve) => {
      rejoined = resolve;
    });
    const interceptor: Interceptor = (callOptions, nextCall) => {
      const call = nextCall(callOptions);
      const path = callOptions.method_definition.path;
      if (path === '/strata.v1.Groups/CommitOffsetsStream' && holdCommit) {
        holdCommit = false;
        // The first commit never reaches the broker; its stream breaks once the member is back.
        return new InterceptingCall(call, {
          sendMessage() {
            void rejoinedNow.then(() => call.cancelWithStatus(status.UNAVAILABLE, 'injected: stream broken'));
          },
        });
      }
      return new InterceptingCall(call, {
        sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
          if (fence && path.endsWith('/Heartbeat') && message.memberEpoch > 0) {
            fence = false;
            next(v1.HeartbeatRequest.create({ ...message, memberEpoch: message.memberEpoch + 100 }));
          } else next(message);
        },
      });
    };
    const reader = consumer(groupId, { subscribe: [name], autoCommit: false, interceptors: [interceptor] });
    const lost: PartitionsLostEvent[] = [];
    reader.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    await waitUntil(() => reader.assignment().length === 1, 'assignment');
    const firstId = reader.memberId;
    const settled = (commit: Promise<void>): Promise<unknown> => commit.then(
      () => null,
      (error: unknown) => error,
    );
    const pending = settled(reader.commit([{ topic: name, partition: 0, offset: 0 }]));
    // Its positions were taken in the first membership too; it waits behind the first commit.
    const queued = settled(reader.commit([{ topic: name, partition: 0, offset: 0 }]));
    fence = true;
    await waitUntil(() => lost.length === 1 && reader.assignment().length === 1, 'fenced and assigned again');
    expect(reader.memberId).toBe(firstId);
    rejoined();
    for (const failed of (await Promise.all([pending, queued])) as StrataClientError[]) {
      expect(failed.code).toBe('FAILED_PRECONDITION');
      expect(failed.message).toMatch(/lost its membership of group "crossing-\d+", and with it the partitions, after these positions were taken/);
    }
    expect((await fetchOffsets(groupId, name)).size).toBe(0);
  });

  it('a static member that restarts gets its partitions back; the other members keep their epochs and partitions', async () => {
    const name = await topic(6);
    const groupId = unique('static');
    const log: Processed[] = [];
    const a = runner('a', groupId, log, { subscribe: [name], instanceId: 'pod-a' });
    const b = runner('b', groupId, log, { subscribe: [name] });
    const c = runner('c', groupId, log, { subscribe: [name] });
    await waitUntil(() => splitsExactly(groupId, [a, b, c], all(name, 6)), '3-way split');
    await produceEach(name, 6, 10);
    await waitUntil(() => log.length === 60, 'records');
    const before = await broker.groups.describeGroup(groupId);
    const others = before.members.filter((entry) => entry.instanceId === null).map(({ memberId, memberEpoch, assignment }) => ({ memberId, memberEpoch, assignment }));
    const aPartitions = a.assignment();
    const bEvents: string[] = [];
    const cEvents: string[] = [];
    for (const [member, events] of [[b, bEvents], [c, cEvents]] as const) {
      member.consumer.on('partitionsAssigned', () => events.push('assigned'));
      member.consumer.on('partitionsRevoked', () => events.push('revoked'));
    }

    await a.close(); // leaves with epoch -2: keeps its partitions for its session
    const away = await broker.groups.describeGroup(groupId);
    expect(away.members).toHaveLength(3);
    expect(away.groupEpoch).toBe(before.groupEpoch);

    await produceEach(name, 6, 10);
    const restarted = runner('a2', groupId, log, { subscribe: [name], instanceId: 'pod-a' });
    await waitUntil(() => restarted.assignment().length === aPartitions.length && log.length === 120, () => `a2 assigned and all records processed (${log.length})`);
    expect(restarted.assignment()).toEqual(aPartitions);
    const after = await broker.groups.describeGroup(groupId);
    expect(after.groupEpoch).toBe(before.groupEpoch);
    expect(after.members.filter((entry) => entry.instanceId === null).map(({ memberId, memberEpoch, assignment }) => ({ memberId, memberEpoch, assignment }))).toEqual(others);
    expect([...bEvents, ...cEvents]).toEqual([]);
    // a2 continued from a's committed offsets: nothing twice.
    const runners = new Map([a, b, c, restarted].map((member) => [member.name, member] as const));
    expect(duplicatesAfterLastCommit(log, runners)).toEqual([]);
    expect(new Set(log.map((entry) => `${entry.partition}/${entry.offset}`)).size).toBe(120);
    await Promise.all([restarted.close(), b.close(), c.close()]);
  });

  it('a join the broker refuses (an instance id still held by a member that did not leave) is a groupError with the broker\'s reason, logged as a refusal, not as partitions lost', async () => {
    const name = await topic(2);
    const groupId = unique('refused');
    const holder = consumer(groupId, { subscribe: [name], instanceId: 'pod-x' });
    await waitUntil(() => holder.assignment().length === 2, 'the first instance to own the partitions');
    const warnings: { msg: string; reason?: string; lost?: unknown }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line) as { msg: string }) });
    const second = consumer(groupId, { subscribe: [name], instanceId: 'pod-x', logger });
    const errors: GroupErrorEvent[] = [];
    const lost: PartitionsLostEvent[] = [];
    second.on('groupError', (event: GroupErrorEvent) => errors.push(event));
    second.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    await waitUntil(() => errors.length >= 2, 'the refused join to be reported, and tried again');
    expect(errors[0]!.error.code).toBe('FAILED_PRECONDITION');
    expect(errors[0]!.joinRefused).toBe(true);
    expect(errors[0]!.error.message).toMatch(new RegExp(`^instance id "pod-x" is in use by member ${holder.memberId} of group "${groupId}"; stop that instance`));
    expect(lost).toEqual([]);
    expect(second.memberId).toBeNull();
    const refusals = warnings.filter((entry) => entry.msg === 'the broker refused the join; joining again after a backoff');
    expect(refusals.length).toBeGreaterThanOrEqual(2);
    expect(refusals[0]!.reason).toBe(errors[0]!.error.message);
    expect(warnings.filter((entry) => /partitions lost/.test(entry.msg))).toEqual([]);
    // Retried until it goes through: the holder closes (epoch -2), and the second takes its place.
    await holder.close();
    await waitUntil(() => second.assignment().length === 2, 'the second instance to take over');
  });
});

describe('records of a membership the member may have lost without knowing it', () => {
  const HEARTBEAT = '/strata.v1.Groups/Heartbeat';

  /** The offset a group consumer's fetcher of `topic`-`partition` asks for next (the records fetched end there). */
  const fetchOffset = (reader: Consumer, name: string, partition: number): number | null =>
    (reader as unknown as { fetchers: Map<string, { fetchOffset: number | null }> }).fetchers.get(`${partition}:${name}`)?.fetchOffset ?? null;

  // UNAVAILABLE for a dropped connection or a broker stopping; INTERNAL for a stream cut by a
  // broker forced to stop (an HTTP/2 reset grpc-js sees before the connection drop).
  it.each([
    ['UNAVAILABLE', status.UNAVAILABLE],
    ['INTERNAL', status.INTERNAL],
  ] as const)('a Subscribe stream that fails %s holds the fetched records back until a heartbeat, sent at once, is answered; then they come, nothing lost', async (_name, code) => {
    // Heartbeats every 30 s: only one sent at once answers within the test.
    const slow = await startTestBroker({ groupHeartbeatIntervalMs: 30_000, groupSessionTimeoutMs: 300_000 });
    const slowAdmin = new Admin({ server: slow.address });
    const slowProducer = new Producer({ server: slow.address, lingerMs: 1 });
    await slowAdmin.createTopic('broken-stream', { partitions: 1 });
    const stream = { failed: 0 };
    let subscribes = 0;
    const countSubscribes: Interceptor = (callOptions, nextCall) => {
      if (callOptions.method_definition.path === '/strata.v1.Log/Subscribe') subscribes++;
      return new InterceptingCall(nextCall(callOptions));
    };
    /** Heartbeats held back while set: the test lets them go once it has looked. */
    const heartbeats: { held: Promise<void> | null } = { held: null };
    let release: () => void = () => undefined;
    const reader = new Consumer({
      server: slow.address,
      deadlineMs: 5_000,
      resetPolicy: 'earliest',
      groupId: 'broken-stream',
      subscribe: ['broken-stream'],
      autoCommitIntervalMs: 60_000,
      retryBackoffMs: 10,
      // The first stream delivers one message, then fails as a dropped connection would.
      interceptors: [countSubscribes, holdCalls([HEARTBEAT], heartbeats), failFirstCallAfter('/strata.v1.Log/Subscribe', 1, code, stream)],
    } as ConsumerOptions);
    const groupErrors: GroupErrorEvent[] = [];
    reader.on('groupError', (event: GroupErrorEvent) => groupErrors.push(event));
    try {
      await waitUntil(() => reader.assignment().length === 1, 'assignment');
      heartbeats.held = new Promise<void>((resolve) => (release = resolve));
      await slowProducer.send({ topic: 'broken-stream', partition: 0, value: 'first' });
      // Fetched, then the stream failed and the partition was subscribed again.
      await waitUntil(() => stream.failed === 1 && subscribes === 2 && fetchOffset(reader, 'broken-stream', 0) === 1, 'the record fetched, the stream failed and subscribed again');
      expect(await reader.nextBatch({ timeoutMs: 0 })).toBeNull(); // held: no heartbeat answered since
      heartbeats.held = null;
      release(); // the heartbeat the failure sent at once goes out
      const first = await reader.nextBatch({ timeoutMs: 10_000 });
      expect(first?.records.map((record) => [record.offset, record.value?.toString()])).toEqual([[0, 'first']]);
      await slowProducer.send({ topic: 'broken-stream', partition: 0, value: 'second' });
      expect((await reader.nextBatch({ timeoutMs: 10_000 }))?.records.map((record) => record.offset)).toEqual([1]);
      expect(groupErrors).toEqual([]);
      expect(reader.assignment()).toHaveLength(1);
    } finally {
      heartbeats.held = null;
      release();
      await reader.close();
      await slowProducer.close();
      await slowAdmin.close();
      await slow.dispose();
    }
  });

  it('after a broker restart, a member keeps its partitions and hands out records again once a heartbeat answers; a member joining meanwhile gets a share only once it is given up', async () => {
    // A broker of its own, restarted on its address and data directory. It keeps the group's
    // members, so a heartbeats on at its epoch and keeps its partitions. a's heartbeats are held
    // back after the restart while its fetchers read the records written since and b joins:
    // until a heartbeat answers, a cannot know the broker kept it (one whose data directory was
    // replaced would not have), so it hands out nothing, and b is given nothing a still owns.
    const settings = { groupHeartbeatIntervalMs: 5_000, groupSessionTimeoutMs: 45_000 };
    const first = await startTestBroker(settings);
    let second: TestBroker | null = null;
    const name = 'restart-overlap';
    const log: Processed[] = [];
    const memberOptions: ConsumerOptions = {
      server: first.address,
      deadlineMs: 5_000,
      resetPolicy: 'earliest',
      groupId: 'restart-overlap',
      subscribe: [name],
      autoCommitIntervalMs: 60_000,
      // Fetchers subscribe again within 100 ms of the broker's return.
      retryBackoffMs: 20,
      retryBackoffMaxMs: 100,
      initialReconnectBackoffMs: 20,
      maxReconnectBackoffMs: 100,
    } as ConsumerOptions;
    const firstAdmin = new Admin({ server: first.address });
    await firstAdmin.createTopic(name, { partitions: 2 });
    await firstAdmin.close();
    const heartbeats: { held: Promise<void> | null } = { held: null };
    let release: () => void = () => undefined;
    const a = new Runner('a', { ...memberOptions, interceptors: [holdCalls([HEARTBEAT], heartbeats)] }, log);
    let b: Runner | null = null;
    const writer = new Producer({ server: first.address, lingerMs: 1, initialReconnectBackoffMs: 20, maxReconnectBackoffMs: 100 });
    const writeEach = async (from: number): Promise<void> => {
      await Promise.all([0, 1].flatMap((partition) => Array.from({ length: 5 }, (_, index) => writer.send({ topic: name, partition, value: `${partition}-${from + index}` }))));
    };
    try {
      await waitUntil(() => a.assignment().length === 2, 'a to own both partitions');
      await writeEach(0);
      await waitUntil(() => log.length === 10, 'the records written before the restart');
      const processedAtStop = log.length;
      const openAtStop = [0, 1].map((partition) => a.current(name, partition)!);
      heartbeats.held = new Promise<void>((resolve) => (release = resolve));
      await first.stop();
      second = await startTestBroker({ ...settings, dataDir: first.dataDir, listen: first.address });
      const restarted = second;
      expect((await restarted.groups.describeGroup('restart-overlap')).members.map((member) => member.memberId)).toEqual([a.consumer.memberId]);
      b = new Runner('b', memberOptions, log);
      await waitUntil(async () => (await restarted.groups.describeGroup('restart-overlap')).members.length === 2, 'b to join');
      await writeEach(5);
      // a's fetchers have the records written since the restart.
      await waitUntil(() => fetchOffset(a.consumer, name, 0) === 10 && fetchOffset(a.consumer, name, 1) === 10, "a's fetchers to read on");
      expect(log.slice(processedAtStop)).toEqual([]);
      expect(b.assignment()).toEqual([]);
      heartbeats.held = null;
      release();
      const joined = b;
      await waitUntil(() => a.assignment().length === 1 && joined.assignment().length === 1, () => `a split, have ${a.assignment()} | ${joined.assignment()}`);
      await waitUntil(() => coverage(log, name).get(0)?.size === 10 && coverage(log, name).get(1)?.size === 10, () => `every record, have ${processedCount(log, name)}`);
      // a kept one partition throughout and gave the other up, committing first: nothing was
      // lost, and each record written since the restart was handed out once.
      expect(openAtStop.map((period) => period.end).sort()).toEqual([null, 'revoked']);
      expect(log.slice(processedAtStop)).toHaveLength(10);
    } finally {
      heartbeats.held = null;
      release();
      await Promise.all([a.close(), b?.close()]);
      await writer.close();
      if (second !== null) await second.dispose();
      else await first.dispose();
    }
  });

  // A power loss under flush=interval took records the member had read (and committed past),
  // and the restarted broker gives their offsets out again. The member, running on, knew a
  // position past the new end: it repeated the records before it (reset policy) or, once new
  // records reached that position, skipped those written at the lost offsets, and committed
  // past them. The broker now removes such a member at start, so it rejoins and reads from the
  // group's commit, lowered to the end.
  it('after a restart that lost records it had read (flush=interval, a power loss), a member drops its partitions without committing and reads the records written again at those offsets, none skipped or repeated', async () => {
    const listen = `127.0.0.1:${await unusedPort()}`;
    const settings = { listen, groupHeartbeatIntervalMs: 200 };
    let running: TestBroker | null = await startTestBroker(settings);
    const dataDir = running.dataDir;
    const name = 'cut-by-power-loss';
    const partitionDir = partitionDirectory(dataDir, name, 0);
    const logFile = (): string => join(partitionDir, readdirSync(partitionDir).find((file) => file.endsWith(LOG_SUFFIX))!);
    const setup = new Admin({ server: listen });
    await setup.createTopic(name, { partitions: 1, configs: { flush: 'interval', 'flush.ms': '3600000' } });
    await setup.close();
    const reader = new Consumer({ server: listen, deadlineMs: 5_000, resetPolicy: 'earliest', groupId: name, subscribe: [name], autoCommit: false, retryBackoffMs: 20, retryBackoffMaxMs: 100 });
    const lost: PartitionsLostEvent[] = [];
    reader.on('partitionsLost', (event) => lost.push(event));
    const read = async (count: number): Promise<string[]> => {
      const values: string[] = [];
      const deadline = Date.now() + 20_000;
      while (values.length < count && Date.now() < deadline) {
        const batch = await reader.nextBatch({ timeoutMs: 1_000 });
        for (const record of batch?.records ?? []) values.push(`${record.offset}:${record.value?.toString()}`);
      }
      return values;
    };
    try {
      let producer = new Producer({ server: listen, lingerMs: 0 });
      for (const value of ['kept-0', 'kept-1', 'kept-2']) await producer.send({ topic: name, value });
      const keptBytes = statSync(logFile()).size; // what the power loss leaves on disk
      for (const value of ['lost-3', 'lost-4', 'lost-5']) await producer.send({ topic: name, value });
      await producer.close();
      expect(await read(6)).toEqual(['0:kept-0', '1:kept-1', '2:kept-2', '3:lost-3', '4:lost-4', '5:lost-5']);
      await reader.commit();

      await running.stop();
      running = null;
      truncateSync(logFile(), keptBytes);
      for (const marker of [CLEAN_SHUTDOWN_FILE, RECOVERY_CHECKPOINT_FILE]) rmSync(join(partitionDir, marker), { force: true });
      running = await startTestBroker({ ...settings, dataDir });
      // The lost offsets are given out again, and past the member's old position too.
      producer = new Producer({ server: listen, lingerMs: 0 });
      for (const value of ['new-3', 'new-4', 'new-5', 'new-6', 'new-7']) await producer.send({ topic: name, value });
      await producer.close();

      expect(await read(5)).toEqual(['3:new-3', '4:new-4', '5:new-5', '6:new-6', '7:new-7']);
      expect(lost.map((event) => [event.partitions, event.error.code])).toEqual([[[{ topic: name, partition: 0 }], 'NOT_FOUND']]);
      await reader.commit();
      const admin = new Admin({ server: listen });
      const offsets = await admin.fetchOffsets(name);
      await admin.close();
      expect(offsets.map(({ offset }) => offset)).toEqual([8]);
    } finally {
      await reader.close();
      if (running !== null) await running.stop();
      removeDirectory(dataDir);
    }
  });

  it('a member frozen past its session hands out none of the records it had fetched before a heartbeat answers: they go with the partitions the broker took meanwhile', async () => {
    const name = await topic(1);
    const groupId = unique('frozen');
    // One batch per chunk, two of them waiting in the consumer when it freezes.
    const reader = consumer(groupId, { subscribe: [name], sessionTimeoutMs: 500, maxBytesPerPartition: 1, prefetchBatches: 2 });
    const lost: PartitionsLostEvent[] = [];
    reader.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    await waitUntil(() => reader.assignment().length === 1, 'assignment');
    for (let index = 0; index < 3; index++) await producer.send({ topic: name, partition: 0, value: `${index}` });
    expect((await reader.nextBatch({ timeoutMs: 10_000 }))?.records.map((record) => record.offset)).toEqual([0]);
    const waiting = (): number => (reader as unknown as { fetchers: Map<string, { waitingChunks: number }> }).fetchers.get(`0:${name}`)!.waitingChunks;
    await waitUntil(() => waiting() === 2, 'two chunks fetched and waiting');

    // Frozen (a blocked event loop stands for SIGSTOP or a long GC pause) past its 500 ms
    // session; the broker, which shares this process, then removes it at its next check.
    const frozenUntil = performance.now() + 700;
    while (performance.now() < frozenUntil) {
      // the freeze
    }
    broker.groups.expireSessions();
    // Awake: the chunks that waited are not handed out before a heartbeat has answered (asked
    // before this test yields to the event loop, where the member's timers would run first).
    const taken = reader.nextBatch({ timeoutMs: 0 });
    expect(await taken).toBeNull();
    expect(await describeOrNull(groupId)).toBeNull(); // nobody owned the partition then
    // NOT_FOUND, or DEADLINE_EXCEEDED for a heartbeat that was under way when it froze.
    await waitUntil(() => lost.length === 1, 'the member to learn that the partition was lost');
    // It joins again and reads from the group's committed offset (none: the reset policy), so nothing is skipped.
    expect((await reader.nextBatch({ timeoutMs: 10_000 }))?.records[0]?.offset).toBe(0);
  });

  it('a member frozen in the middle of a fetched chunk, past its session, yields a few dozen more of its records at most, not the rest of the chunk', async () => {
    const name = await topic(1);
    const groupId = unique('frozen-mid-chunk');
    // Written first, so that the member's first fetch brings all 500 in one chunk.
    const sends = Array.from({ length: 500 }, (_, index) => producer.send({ topic: name, partition: 0, value: `${index}` }));
    await producer.flush();
    await Promise.all(sends);
    const reader = consumer(groupId, { subscribe: [name], sessionTimeoutMs: 500 });
    const lost: PartitionsLostEvent[] = [];
    reader.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    const records = reader[Symbol.asyncIterator]();
    try {
      expect((await records.next()).value?.offset).toBe(0);
      const started = (reader as unknown as { current: { chunk: { records: unknown[] } } | null }).current;
      expect(started?.chunk.records.length).toBeGreaterThanOrEqual(200); // all 500, unless the broker split them

      const frozenUntil = performance.now() + 700; // past the 500 ms session, as in the test above
      while (performance.now() < frozenUntil) {
        // the freeze
      }
      broker.groups.expireSessions();
      const yieldedAfterFreeze: number[] = [];
      for (;;) {
        const next = await records.next();
        if (lost.length > 0) {
          // The member learnt it had lost the partition, joined again and read it from the start.
          expect(next.value?.offset).toBe(0);
          break;
        }
        yieldedAfterFreeze.push(next.value!.offset);
      }
      expect(yieldedAfterFreeze.length).toBeLessThan(64);
    } finally {
      await records.return(undefined);
    }
  });
});

describe('commits over CommitOffsetsStream', () => {
  const COMMIT_STREAM = '/strata.v1.Groups/CommitOffsetsStream';
  const COMMIT_UNARY = '/strata.v1.Groups/CommitOffsets';

  /** Counts the calls of each method the consumer opens; `refuse` answers CommitOffsetsStream with that status itself. */
  function callCounter(calls: Map<string, number>, refuse?: { code: status; times: number }): Interceptor {
    return (callOptions, nextCall) => {
      const path = callOptions.method_definition.path;
      calls.set(path, (calls.get(path) ?? 0) + 1);
      const call = nextCall(callOptions);
      if (path !== COMMIT_STREAM || refuse === undefined || refuse.times === 0) return new InterceptingCall(call);
      refuse.times--;
      const code = refuse.code;
      let refused = false;
      return new InterceptingCall(call, {
        sendMessage(_message, _next) {
          if (!refused) {
            refused = true;
            // A turn later, as a broker's answer would come (see producer.test.ts).
            setImmediate(() => call.cancelWithStatus(code, 'injected: refused'));
          }
        },
      });
    };
  }

  it('every commit of a consumer, its group member and revocation included, goes over one stream', async () => {
    const name = await topic(2);
    const groupId = unique('streamed');
    const calls = new Map<string, number>();
    const log: Processed[] = [];
    // Auto-commit on, at 60 s: only the revocation in close() commits automatically here.
    const member = runner('a', groupId, log, { subscribe: [name], interceptors: [callCounter(calls)] });
    await waitUntil(() => member.assignment().length === 2, 'assignment');
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 10, 'records');
    for (let offset = 1; offset <= 5; offset++) await member.consumer.commit([{ topic: name, partition: 0, offset }]);
    await member.consumer.commit([{ topic: name, partition: 1, offset: 2 }]);
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({ 0: 5, 1: 2 });
    await produceEach(name, 2, 3);
    await waitUntil(() => log.length === 16, 'more records');
    await member.close(); // revocation commits the final positions
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({ 0: 8, 1: 8 });
    expect(calls.get(COMMIT_STREAM)).toBe(1);
    expect(calls.get(COMMIT_UNARY)).toBeUndefined();
  });

  it.each([
    { path: 'the stream', interceptors: (calls: Map<string, number>) => [callCounter(calls, { code: status.INTERNAL, times: 1 })], method: COMMIT_STREAM },
    {
      path: 'the unary fallback (a broker without the stream)',
      interceptors: (calls: Map<string, number>) => [callCounter(calls, { code: status.UNIMPLEMENTED, times: 1 }), refuseFirstCall(COMMIT_UNARY, status.INTERNAL, { refused: 0 })],
      method: COMMIT_UNARY,
    },
  ])("a member's commit on $path reset under way with INTERNAL (an HTTP/2 reset) is retried and lands", async ({ interceptors, method }) => {
    const name = await topic(1);
    const groupId = unique('reset');
    const calls = new Map<string, number>();
    const member = runner('a', groupId, [], { subscribe: [name], interceptors: interceptors(calls) });
    await waitUntil(() => member.assignment().length === 1, 'assignment');
    await member.consumer.commit([{ topic: name, partition: 0, offset: 0 }]);
    expect((await fetchOffsets(groupId, name)).get(0)).toBe(0);
    expect(calls.get(method)).toBe(2);
  });

  it('a broker without CommitOffsetsStream (UNIMPLEMENTED) gets unary commits, and the commit under way still lands', async () => {
    const name = await topic(1);
    const groupId = unique('unary');
    await produceEach(name, 1, 4);
    const calls = new Map<string, number>();
    const reader = consumer(groupId, { autoCommit: false, interceptors: [callCounter(calls, { code: status.UNIMPLEMENTED, times: 1 })] });
    await reader.assign([{ topic: name, partition: 0 }]);
    await reader.commit([{ topic: name, partition: 0, offset: 2 }]);
    await reader.commit([{ topic: name, partition: 0, offset: 3 }]);
    expect((await fetchOffsets(groupId, name)).get(0)).toBe(3);
    expect(calls.get(COMMIT_STREAM)).toBe(1);
    expect(calls.get(COMMIT_UNARY)).toBe(2);
  });

  it('after falling back to unary commits, a commit made meanwhile waits for those the stream held: none is overwritten by an older one', async () => {
    const name = await topic(1);
    const groupId = unique('unary-order');
    await produceEach(name, 1, 4);
    const calls = new Map<string, number>();
    // The first unary commit (the stream's first commit, sent again) is held until released.
    let releaseFirst: () => void = () => undefined;
    let firstUnaryStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (firstUnaryStarted = resolve));
    let unaryCalls = 0;
    const holdFirstUnary: Interceptor = (callOptions, nextCall) => {
      const call = nextCall(callOptions);
      if (callOptions.method_definition.path !== COMMIT_UNARY || ++unaryCalls > 1) return new InterceptingCall(call);
      return new InterceptingCall(call, {
        sendMessage(message, next) {
          firstUnaryStarted();
          new Promise<void>((resolve) => (releaseFirst = resolve)).then(() => next(message), () => undefined);
        },
      });
    };
    const connection = new Connection({ server: broker.address, interceptors: [callCounter(calls, { code: status.UNIMPLEMENTED, times: 1 }), holdFirstUnary] });
    const commits = new OffsetCommitStream(connection);
    try {
      const commit = (offset: number): Promise<void> => commits.commit(groupId, '', 0, [{ topic: name, partition: 0, offset }]);
      const first = commit(1);
      const second = commit(2);
      await started; // the stream was refused: its commits go again as unary calls
      const third = commit(3);
      releaseFirst();
      await Promise.all([first, second, third]);
      expect((await fetchOffsets(groupId, name)).get(0)).toBe(3);
      expect(calls.get(COMMIT_UNARY)).toBe(3);
    } finally {
      commits.close();
      connection.close();
    }
  });

  it('a commit the broker does not answer within the deadline fails with DEADLINE_EXCEEDED; the next one goes on a new stream', async () => {
    const name = await topic(1);
    const groupId = unique('silent');
    await produceEach(name, 1, 4);
    let streams = 0;
    // The first stream's answers are swallowed: its commits reach the broker but never return.
    const swallowFirstStream: Interceptor = (callOptions, nextCall) => {
      const call = nextCall(callOptions);
      if (callOptions.method_definition.path !== COMMIT_STREAM || ++streams > 1) return new InterceptingCall(call);
      return new InterceptingCall(call, {
        start(metadata, _listener, next) {
          next(metadata, { onReceiveMessage: () => undefined });
        },
      });
    };
    const reader = consumer(groupId, { autoCommit: false, deadlineMs: 1_000, interceptors: [swallowFirstStream] });
    await reader.assign([{ topic: name, partition: 0 }]);
    const failed = await reader.commit([{ topic: name, partition: 0, offset: 1 }]).then(
      () => null,
      (error: unknown) => error,
    );
    expect((failed as StrataClientError).code).toBe('DEADLINE_EXCEEDED');
    await reader.commit([{ topic: name, partition: 0, offset: 3 }]);
    expect((await fetchOffsets(groupId, name)).get(0)).toBe(3);
    expect(streams).toBe(2);
  });

  it('a broken stream fails its commits with UNAVAILABLE; a group member retries on a new stream', async () => {
    const name = await topic(1);
    const groupId = unique('broken');
    await produceEach(name, 1, 4);
    const calls = new Map<string, number>();
    const manual = consumer(groupId, { autoCommit: false, interceptors: [callCounter(calls, { code: status.UNAVAILABLE, times: 1 })] });
    await manual.assign([{ topic: name, partition: 0 }]);
    const failed = await manual.commit([{ topic: name, partition: 0, offset: 1 }]).then(
      () => null,
      (error: unknown) => error,
    );
    expect((failed as StrataClientError).code).toBe('UNAVAILABLE');
    await manual.commit([{ topic: name, partition: 0, offset: 2 }]); // a new stream
    expect((await fetchOffsets(groupId, name)).get(0)).toBe(2);
    expect(calls.get(COMMIT_STREAM)).toBe(2);
    await manual.close();

    const memberCalls = new Map<string, number>();
    const member = consumer(groupId, { subscribe: [name], autoCommit: false, interceptors: [callCounter(memberCalls, { code: status.UNAVAILABLE, times: 1 })] });
    await waitUntil(() => member.assignment().length === 1, 'assignment');
    await member.commit([{ topic: name, partition: 0, offset: 4 }]); // fails once, retried by the member
    expect((await fetchOffsets(groupId, name)).get(0)).toBe(4);
    expect(memberCalls.get(COMMIT_STREAM)).toBe(2);
  });

  it('a revocation retries its commit past the usual few attempts, for as long as the broker waits for it', async () => {
    const name = await topic(2);
    const groupId = unique('revocation-retries');
    const log: Processed[] = [];
    const refuse = { code: status.UNAVAILABLE, times: 0 };
    const calls = new Map<string, number>();
    // A 5 s session: the revocation may take up to 4.8 s (two 100 ms heartbeat intervals less).
    const a = runner('a', groupId, log, { subscribe: [name], sessionTimeoutMs: 5_000, interceptors: [callCounter(calls, refuse)] });
    await waitUntil(() => a.assignment().length === 2, 'a owns both');
    await produceEach(name, 2, 5);
    await waitUntil(() => log.length === 10, 'a processed everything');
    const failures: string[] = [];
    a.consumer.on('commitFailed', ({ error }: { error: StrataClientError }) => failures.push(error.code));
    refuse.times = 7; // the next 7 commit streams fail their commit, at 100 ms apart
    const seen = new Promise<{ partition: number; committed: Map<number, number> }>((resolve, reject) => {
      const b = runner('b', groupId, log, { subscribe: [name] });
      b.consumer.once('partitionsAssigned', ({ partitions }: PartitionsEvent) => {
        fetchOffsets(groupId, name).then((committed) => resolve({ partition: partitions[0]!.partition, committed }), reject);
      });
    });
    const { partition, committed } = await seen;
    expect(committed.get(partition)).toBe(5);
    expect(refuse.times).toBe(0);
    expect(calls.get(COMMIT_STREAM)).toBe(8);
    expect(failures).toEqual([]);
  });
});

describe('closing', () => {
  /** Counts a consumer's heartbeats (not its leave) while `counting` is set, and hands each answer's assignment size to `onAnswer`. */
  function heartbeatWatch(): { interceptor: Interceptor; counting: boolean; sent: number; onAnswer: (assigned: number) => void } {
    const watch = {
      counting: false,
      sent: 0,
      onAnswer: (_assigned: number): void => undefined,
      interceptor: ((callOptions, nextCall) => {
        const heartbeat = callOptions.method_definition.path.endsWith('/Heartbeat');
        return new InterceptingCall(nextCall(callOptions), {
          start: (metadata, _listener, next) =>
            next(metadata, {
              onReceiveMessage: (message: strata.v1.HeartbeatResponse, nextMessage: (message: unknown) => void) => {
                if (heartbeat && watch.counting && message !== null) watch.onAnswer(message.assignment.reduce((count, entry) => count + entry.partitions.length, 0));
                nextMessage(message);
              },
            }),
          sendMessage: (message: strata.v1.HeartbeatRequest, next: (message: unknown) => void) => {
            if (heartbeat && watch.counting && message.memberEpoch > 0) watch.sent++;
            next(message);
          },
        });
      }) as Interceptor,
    };
    return watch;
  }

  it('close() heartbeats on while its beforeRevoke hook takes longer than a session: the member is kept, and the final positions are committed', async () => {
    const name = await topic(2);
    const groupId = unique('long-close');
    await produceEach(name, 2, 3);
    const watch = heartbeatWatch();
    let aliveAfterHook: boolean | null = null;
    const memberAlive = async (memberId: string): Promise<boolean> => (await describeOrNull(groupId))?.members.some((member) => member.memberId === memberId) ?? false;
    // A 1 s session with 100 ms heartbeats: fifteen heartbeats in the hook span one and a half sessions.
    const reader = consumer(groupId, {
      subscribe: [name],
      sessionTimeoutMs: 1_000,
      interceptors: [watch.interceptor],
      beforeRevoke: async () => {
        if (!watch.counting) return;
        const memberId = reader.memberId ?? '';
        await waitUntil(async () => watch.sent >= 15 || !(await memberAlive(memberId)), 'fifteen heartbeats, or the member removed');
        aliveAfterHook = await memberAlive(memberId);
      },
    });
    const failed: string[] = [];
    reader.on('commitFailed', ({ error }: { error: StrataClientError }) => failed.push(error.message));
    await waitUntil(() => reader.assignment().length === 2, 'assignment');
    let read = 0;
    while (read < 6) read += (await reader.nextBatch({ timeoutMs: 5_000 }))?.records.length ?? 0;
    watch.counting = true;
    await reader.close();
    expect(watch.sent).toBeGreaterThanOrEqual(15);
    expect(aliveAfterHook).toBe(true);
    expect(failed).toEqual([]);
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({ 0: 3, 1: 3 });
    expect(await describeOrNull(groupId)).toMatchObject({ state: 'empty', members: [] });
  });

  it('a rebalance while close() runs its beforeRevoke hook moves no partition before the leave: all final positions are committed, and the next owner goes on from them', async () => {
    const name = await topic(2);
    const groupId = unique('rebalance-close');
    const log: Processed[] = [];
    const watch = heartbeatWatch();
    let askedToRevoke = false;
    watch.onAnswer = (assigned) => {
      if (assigned < 2) askedToRevoke = true;
    };
    const a = runner('a', groupId, log, {
      subscribe: [name],
      interceptors: [watch.interceptor],
      beforeRevoke: async () => {
        if (watch.counting) await waitUntil(() => askedToRevoke, 'the broker to ask a for a partition');
      },
    });
    const lost: PartitionsLostEvent[] = [];
    const moved: PartitionsEvent[] = [];
    const failed: string[] = [];
    a.consumer.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    a.consumer.on('partitionsAssigned', (event: PartitionsEvent) => moved.push(event));
    a.consumer.on('partitionsRevoked', (event: PartitionsEvent) => moved.push(event));
    a.consumer.on('commitFailed', ({ error }: { error: StrataClientError }) => failed.push(error.message));
    await waitUntil(() => a.assignment().length === 2, 'a owns both');
    await produceEach(name, 2, 3);
    await waitUntil(() => log.length === 6, 'a read them');
    moved.length = 0;
    watch.counting = true;
    const closing = a.close();
    const b = runner('b', groupId, log, { subscribe: [name] });
    await closing;
    expect(askedToRevoke).toBe(true);
    // Only close()'s own revocation of both: the rebalance moved none.
    expect(moved).toHaveLength(1);
    expect(moved[0]!.partitions.map(({ partition }) => partition).sort()).toEqual([0, 1]);
    expect(lost).toEqual([]);
    expect(failed).toEqual([]);
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({ 0: 3, 1: 3 });
    await waitUntil(() => b.assignment().length === 2, 'b owns both');
    await produceEach(name, 2, 2);
    await waitUntil(() => log.length === 10, 'b read the new ones');
    expect(log.filter((entry) => entry.runner === 'b').map(({ partition, offset }) => `${partition}:${offset}`).sort()).toEqual(['0:3', '0:4', '1:3', '1:4']);
  });

  it('a partition freed while close() runs its hook is handed to the closing member by the broker, but not taken: it waits for the leave', async () => {
    const name = await topic(2);
    const groupId = unique('freed-close');
    const log: Processed[] = [];
    const watch = heartbeatWatch();
    let handedBoth = false;
    watch.onAnswer = (assigned) => {
      if (assigned === 2) handedBoth = true;
    };
    const a = runner('a', groupId, log, {
      subscribe: [name],
      interceptors: [watch.interceptor],
      beforeRevoke: async () => {
        if (watch.counting) await waitUntil(() => handedBoth, 'the broker to hand a the freed partition');
      },
    });
    const c = runner('c', groupId, log, { subscribe: [name] });
    await waitUntil(() => splitsExactly(groupId, [a, c], all(name, 2)), 'one partition each');
    const assigned: PartitionsEvent[] = [];
    const failed: string[] = [];
    a.consumer.on('partitionsAssigned', (event: PartitionsEvent) => assigned.push(event));
    a.consumer.on('commitFailed', ({ error }: { error: StrataClientError }) => failed.push(error.message));
    watch.counting = true;
    const closing = a.close();
    await c.close(); // frees c's partition while a's hook runs
    await closing;
    expect(handedBoth).toBe(true);
    expect(assigned).toEqual([]);
    expect(failed).toEqual([]);
    expect(await describeOrNull(groupId)).toMatchObject({ members: [] });
  });

  it('a close() whose hook holds a partition a rebalance asked for past the session timeout loses the membership: nothing is committed, and the partitions move', async () => {
    const name = await topic(2);
    const groupId = unique('lost-close');
    const log: Processed[] = [];
    const watch = heartbeatWatch();
    const lost: PartitionsLostEvent[] = [];
    // A 1 s session: the broker removes the member 1 s after it asked for a partition back.
    const a = runner('a', groupId, log, {
      subscribe: [name],
      sessionTimeoutMs: 1_000,
      interceptors: [watch.interceptor],
      beforeRevoke: async () => {
        if (watch.counting) await waitUntil(() => lost.length > 0, 'the membership to be lost');
      },
    });
    const failed: string[] = [];
    a.consumer.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    a.consumer.on('commitFailed', ({ error }: { error: StrataClientError }) => failed.push(error.message));
    await waitUntil(() => a.assignment().length === 2, 'a owns both');
    await produceEach(name, 2, 3);
    await waitUntil(() => log.length === 6, 'a read them');
    watch.counting = true;
    const closing = a.close();
    const b = runner('b', groupId, log, { subscribe: [name] });
    await closing;
    expect(lost).toHaveLength(1);
    expect(lost[0]!.error.code).toMatch(/^(NOT_FOUND|FAILED_PRECONDITION)$/);
    expect(lost[0]!.partitions.map(({ partition }) => partition).sort()).toEqual([0, 1]);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatch(/^this consumer lost its membership of group /);
    expect(await fetchOffsets(groupId, name)).toEqual(new Map());
    // b has them, and reads them again from the start: at least once.
    await waitUntil(() => b.assignment().length === 2, 'b owns both');
    await waitUntil(() => log.filter((entry) => entry.runner === 'b').length === 6, 'b to read them again');
  });

  it('close() during a rebalance whose revocation outlasts its budget: the partitions are lost, and the close does not hand them to the hook again', async () => {
    const name = await topic(2);
    const groupId = unique('close-in-rebalance');
    const log: Processed[] = [];
    const lost: PartitionsLostEvent[] = [];
    const hooked: number[][] = [];
    // A 1 s session and 100 ms heartbeats: the rebalance's revocation has 800 ms.
    const a = runner('a', groupId, log, {
      subscribe: [name],
      sessionTimeoutMs: 1_000,
      beforeRevoke: async (positions) => {
        hooked.push(positions.map(({ partition }) => partition));
        if (hooked.length === 1) await waitUntil(() => lost.length > 0, 'the revocation to be given up');
      },
    });
    a.consumer.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    await waitUntil(() => a.assignment().length === 2, 'a owns both');
    const b = runner('b', groupId, log, { subscribe: [name] });
    await waitUntil(() => hooked.length === 1, 'the rebalance to ask a for a partition');
    // The close waits for the revocation under way, which is given up: a loses both.
    await a.close();
    expect(lost).toHaveLength(1);
    expect(lost[0]!.error.message).toMatch(/did not finish within 800 ms/);
    expect(lost[0]!.partitions).toHaveLength(2);
    expect(hooked).toHaveLength(1);
    await waitUntil(() => b.assignment().length === 2, 'b owns both');
    expect((await describeOrNull(groupId))?.members.map((member) => member.memberId)).toEqual([b.consumer.memberId]);
  });

  it('close() leaves without its revocation once closeTimeoutMs has passed: a hook that never settles does not keep the partitions', async () => {
    const name = await topic(2);
    const groupId = unique('close-timeout');
    let closing = false;
    const reader = consumer(groupId, {
      subscribe: [name],
      closeTimeoutMs: 300,
      beforeRevoke: () => (closing ? new Promise<void>(() => undefined) : undefined),
    });
    await waitUntil(() => reader.assignment().length === 2, 'assignment');
    closing = true;
    let closed = false;
    void reader.close().then(() => (closed = true));
    await waitUntil(() => closed, 'close() to give up its revocation');
    // It left: the group (without offsets, forgotten) has no member at once, not after its 5 s session.
    expect((await describeOrNull(groupId))?.members ?? []).toEqual([]);
    expect(Object.fromEntries(await fetchOffsets(groupId, name))).toEqual({});
  });

  it('close() that times out while a rebalance\'s revocation runs stops every fetcher and starts no hook after it has returned', async () => {
    const name = await topic(2);
    const groupId = unique('close-timeout-rebalance');
    const log: Processed[] = [];
    let release = (): void => undefined;
    const hung = new Promise<void>((resolve) => (release = resolve));
    const hooked: number[][] = [];
    const a = runner('a', groupId, log, {
      subscribe: [name],
      closeTimeoutMs: 300,
      beforeRevoke: async (positions) => {
        hooked.push(positions.map(({ partition }) => partition));
        if (hooked.length === 1) await hung;
      },
    });
    const revoked: PartitionsEvent[] = [];
    a.consumer.on('partitionsRevoked', (event: PartitionsEvent) => revoked.push(event));
    try {
      await waitUntil(() => a.assignment().length === 2, 'a owns both');
      const b = runner('b', groupId, log, { subscribe: [name] });
      await waitUntil(() => hooked.length === 1, 'the rebalance to ask a for a partition');
      // The close waits for that revocation (its budget is 4.8 s) only until closeTimeoutMs.
      await a.close();
      expect(a.consumer.assignment()).toEqual([]);
      await waitUntil(() => b.assignment().length === 2, 'b owns both');
      release();
      await waitUntil(() => revoked.length === 1, 'the rebalance\'s revocation to end');
      await new Promise((resolve) => setImmediate(resolve));
      expect(hooked).toHaveLength(1);
    } finally {
      release();
    }
  });

  it("close() called from the hook of a rebalance's revocation does not wait for that revocation: the member leaves at once, and the partitions move", async () => {
    const name = await topic(2);
    const groupId = unique('close-in-hook');
    const log: Processed[] = [];
    const holder: { a?: Runner } = {};
    let closing: Promise<void> | null = null;
    const a = runner('a', groupId, log, {
      subscribe: [name],
      beforeRevoke: async () => {
        if (closing !== null) return; // close()'s own revocation
        closing = holder.a!.consumer.close();
        await closing;
      },
    });
    holder.a = a;
    const lost: PartitionsLostEvent[] = [];
    const failed: string[] = [];
    a.consumer.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    a.consumer.on('commitFailed', ({ error }: { error: StrataClientError }) => failed.push(error.message));
    await waitUntil(() => a.assignment().length === 2, 'a owns both');
    const b = runner('b', groupId, log, { subscribe: [name] });
    await waitUntil(() => closing !== null, 'the rebalance to call the hook');
    await closing;
    // Not given up after the revocation's budget (4.8 s here): it left, so b has both.
    expect(lost).toEqual([]);
    // The hook's revocation commits after the leave, too late, and says so.
    await waitUntil(() => failed.length > 0, 'the revocation to commit');
    expect(failed).toEqual([`this consumer is not a member of group "${groupId}" right now (it left the group, closing); nothing committed`]);
    await waitUntil(() => b.assignment().length === 2, 'b owns both');
    expect((await describeOrNull(groupId))?.members.map((member) => member.memberId)).toEqual([b.consumer.memberId]);
  });
});
