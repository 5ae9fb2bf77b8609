// Goal: the Groups service keeps groups.proto's promises end to end over real gRPC (membership
// and reconciliation, session timeouts, fenced commits, durable offsets across a restart, lag,
// ListGroups/DescribeGroup, offset resets and deletions, topic changes, regex subscriptions,
// concurrent commits); method: in-process brokers on ephemeral ports driven by raw heartbeats
// with short session timeouts, polling with deadlines instead of fixed sleeps.
import { readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { type ClientDuplexStream, status } from '@grpc/grpc-js';
import Long from 'long';
import { describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { useSharedBroker } from '../helpers/shared-broker.js';
import { acrossRestart } from '../helpers/restart.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';
import { CLEAN_SHUTDOWN_FILE, LOG_SUFFIX, RECOVERY_CHECKPOINT_FILE, partitionDirectory } from '../../src/storage/file-names.js';
import { waitUntil } from '../helpers/wait.js';

type HeartbeatResponse = strata.v1.HeartbeatResponse;
type DescribeGroupResponse = strata.v1.DescribeGroupResponse;

const shared = useSharedBroker();

// ---------------------------------------------------------------------------------------------
// Helpers.

const long = (value: number): Long => Long.fromNumber(value);
const num = (value: Long | number | null | undefined): number => (value === null || value === undefined ? 0 : typeof value === 'number' ? value : value.toNumber());

/** "topic-partition" labels, sorted. */
const labels = (list: readonly strata.v1.TopicPartitions[]): string[] => list.flatMap((entry) => entry.partitions.map((partition) => `${entry.topic}-${partition}`)).sort();
const count = (list: readonly strata.v1.TopicPartitions[]): number => list.reduce((sum, entry) => sum + entry.partitions.length, 0);

async function createTopic(name: string, partitions: number): Promise<void> {
  await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions }));
}

async function produce(topic: string, partition: number, count: number, timestamp: (i: number) => number): Promise<void> {
  const records = Array.from({ length: count }, (_, i) => v1.Record.create({ value: Buffer.from(`r${i}`), timestamp: long(timestamp(i)) }));
  await shared.client.call('log.produce', v1.ProduceRequest.create({ topic, partition, records }));
}

/** The same records as `produce`, sent as one gzip batch. */
async function produceGzip(topic: string, partition: number, count: number, timestamp: (i: number) => number): Promise<void> {
  const batch = buildBatch(Array.from({ length: count }, (_, i) => ({ value: Buffer.from(`r${i}`), timestamp: timestamp(i) })), { compression: 'gzip' });
  await shared.client.call('log.produce', v1.ProduceRequest.create({ topic, partition, batch }));
}

const heartbeat = (request: strata.v1.HeartbeatRequest.$Properties): Promise<HeartbeatResponse> =>
  shared.client.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create(request));

/** A raw, protocol-following member. */
class Member {
  id = '';
  epoch = 0;
  /** What it consumes, reported in the next heartbeat. */
  owned: strata.v1.TopicPartitions[] = [];

  constructor(
    readonly groupId: string,
    readonly options: { topics?: string[]; regex?: string; instanceId?: string; clientId?: string; sessionTimeoutMs?: number; memberId?: string } = {},
  ) {}

  async join(): Promise<this> {
    const response = await heartbeat({
      groupId: this.groupId,
      memberId: this.options.memberId ?? '',
      memberEpoch: 0,
      subscribedTopicNames: this.options.topics ?? [],
      subscribedTopicRegex: this.options.regex ?? '',
      clientId: this.options.clientId ?? 'test-client',
      sessionTimeoutMs: this.options.sessionTimeoutMs ?? 0,
      ...(this.options.instanceId !== undefined ? { instanceId: this.options.instanceId } : {}),
    });
    this.apply(response);
    return this;
  }

  async beat(): Promise<HeartbeatResponse> {
    const response = await heartbeat({
      groupId: this.groupId,
      memberId: this.id,
      memberEpoch: this.epoch,
      keepSubscription: true,
      ownedPartitions: this.owned,
      clientId: this.options.clientId ?? 'test-client',
      sessionTimeoutMs: this.options.sessionTimeoutMs ?? 0,
    });
    this.apply(response);
    return response;
  }

  async leave(epoch = -1): Promise<HeartbeatResponse> {
    const response = await heartbeat({ groupId: this.groupId, memberId: this.id, memberEpoch: epoch, keepSubscription: true });
    this.owned = [];
    return response;
  }

  private apply(response: HeartbeatResponse): void {
    this.id = response.memberId;
    this.epoch = response.memberEpoch;
    this.owned = response.assignment;
  }

  get size(): number {
    return count(this.owned);
  }
}

async function joinAll(groupId: string, n: number, options: ConstructorParameters<typeof Member>[1]): Promise<Member[]> {
  const members: Member[] = [];
  for (let i = 0; i < n; i++) members.push(await new Member(groupId, options).join());
  return members;
}

/** Heartbeats every member in turn until the group is stable (deadline-bounded). */
async function settle(groupId: string, members: Member[], timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const member of members) await member.beat();
    if ((await describeGroup(groupId)).state === 'stable') {
      for (const member of members) await member.beat(); // pick up the last assignments
      return;
    }
    if (Date.now() > deadline) throw new Error(`group ${groupId} did not become stable within ${timeoutMs} ms`);
  }
}

const describeGroup = (groupId: string): Promise<DescribeGroupResponse> => shared.client.call<DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId }));

const commit = (groupId: string, memberId: string, memberEpoch: number, offsets: { topic: string; partition: number; offset: number; metadata?: string }[]) =>
  shared.client.call('groups.commitOffsets', v1.CommitOffsetsRequest.create({ groupId, memberId, memberEpoch, offsets: offsets.map((o) => v1.OffsetCommit.create({ ...o, offset: long(o.offset) })) }));

async function fetchOffsets(groupId: string, topics: string[] = [], on: TestClient = shared.client) {
  const response = await on.call<strata.v1.FetchOffsetsResponse>('groups.fetchOffsets', v1.FetchOffsetsRequest.create({ groupId, topics }));
  return response.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: num(o.offset), metadata: o.metadata, commitTimeMs: num(o.commitTimeMs) }));
}

const plainOffsets = async (groupId: string, topics: string[] = []) => (await fetchOffsets(groupId, topics)).map(({ topic, partition, offset }) => ({ topic, partition, offset }));

async function listGroups(): Promise<Map<string, { state: string; members: number }>> {
  const response = await shared.client.call<strata.v1.ListGroupsResponse>('groups.listGroups', v1.ListGroupsRequest.create());
  return new Map(response.groups.map((g) => [g.groupId, { state: g.state, members: g.members }]));
}

async function resetOffsets(request: strata.v1.ResetOffsetsRequest.$Properties): Promise<[number, number][]> {
  const response = await shared.client.call<strata.v1.ResetOffsetsResponse>('groups.resetOffsets', v1.ResetOffsetsRequest.create(request));
  return response.offsets.map((o) => [o.partition, num(o.offset)]);
}

const deleteOffsets = (groupId: string, topics: string[]) => shared.client.call('groups.deleteOffsets', v1.DeleteOffsetsRequest.create({ groupId, topics }));
const deleteGroup = (groupId: string) => shared.client.call('groups.deleteGroup', v1.DeleteGroupRequest.create({ groupId }));

// ---------------------------------------------------------------------------------------------

describe('membership', () => {
  it('three members of a 12-partition topic get 4 each; when one leaves the others keep theirs and take its partitions', async () => {
    await createTopic('m12', 12);
    const members = await joinAll('g-3x12', 3, { topics: ['m12'] });
    await settle('g-3x12', members);
    expect(members.map((m) => m.size)).toEqual([4, 4, 4]);
    expect(new Set(members.flatMap((m) => labels(m.owned))).size).toBe(12);

    const [a, b, c] = members as [Member, Member, Member];
    const kept = [labels(a.owned), labels(c.owned)];
    const left = await b.leave();
    expect(left.memberEpoch).toBe(-1);
    await settle('g-3x12', [a, c]);
    expect([a.size, c.size]).toEqual([6, 6]);
    for (const label of kept[0]!) expect(labels(a.owned)).toContain(label);
    for (const label of kept[1]!) expect(labels(c.owned)).toContain(label);
    const d = await describeGroup('g-3x12');
    expect(d.members.map((m) => m.memberId).sort()).toEqual([a.id, c.id].sort());
    for (const p of d.partitions) expect([a.id, c.id]).toContain(p.memberId);
    expect((await grpcError(b.beat())).code).toBe(status.NOT_FOUND);
  });

  it('a member that stops heartbeating loses its partitions once its session times out', async () => {
    await createTopic('sess', 12);
    const silent = await new Member('g-sess', { topics: ['sess'], sessionTimeoutMs: 300 }).join();
    const alive = await new Member('g-sess', { topics: ['sess'], sessionTimeoutMs: 5_000 }).join();
    await settle('g-sess', [silent, alive]);
    expect([silent.size, alive.size]).toEqual([6, 6]);
    // Only `alive` heartbeats from now on (every 50 ms).
    await waitUntil(async () => (await alive.beat()).assignment.length > 0 && alive.size === 12, 'the survivor to own all 12 partitions');
    const error = await grpcError(silent.beat());
    expect(error.code).toBe(status.NOT_FOUND);
    expect(error.details).toMatch(/rejoin with member epoch 0/);
    expect((await describeGroup('g-sess')).members.map((m) => m.memberId)).toEqual([alive.id]);
  });

  it('tells each member its session timeout in every heartbeat answer: the one it asked for, or the broker default', async () => {
    await createTopic('sess-told', 1);
    const asked = await heartbeat({ groupId: 'g-sess-told', memberEpoch: 0, subscribedTopicNames: ['sess-told'], sessionTimeoutMs: 1_234 });
    expect(asked.sessionTimeoutMs).toBe(1_234);
    const again = await heartbeat({ groupId: 'g-sess-told', memberId: asked.memberId, memberEpoch: asked.memberEpoch, keepSubscription: true, ownedPartitions: asked.assignment });
    expect(again.sessionTimeoutMs).toBe(1_234);
    const defaulted = await heartbeat({ groupId: 'g-sess-default', memberEpoch: 0, subscribedTopicNames: ['sess-told'] });
    expect(defaulted.sessionTimeoutMs).toBe(45_000);
  });

  it('a static member that leaves with epoch -2 and comes back with its instance id gets its partitions back without a rebalance', async () => {
    await createTopic('static', 6);
    const pod = await new Member('g-static', { topics: ['static'], instanceId: 'pod-0', sessionTimeoutMs: 5_000 }).join();
    const other = await new Member('g-static', { topics: ['static'] }).join();
    await settle('g-static', [pod, other]);
    const mine = labels(pod.owned);
    const groupEpoch = (await describeGroup('g-static')).groupEpoch;
    expect((await pod.leave(-2)).memberEpoch).toBe(-2);
    const back = await new Member('g-static', { topics: ['static'], instanceId: 'pod-0', sessionTimeoutMs: 5_000 }).join();
    expect(back.id).not.toBe(pod.id);
    expect(labels(back.owned)).toEqual(mine);
    const description = await describeGroup('g-static');
    expect(description.groupEpoch).toBe(groupEpoch);
    expect(description.members.find((m) => m.memberId === back.id)?.instanceId).toBe('pod-0');
    await back.leave();
    await other.leave();
  });

  it('a join retried with the member id the consumer chose, after its answer was lost, finds the member it made', async () => {
    await createTopic('chosen', 4);
    const first = await new Member('g-chosen', { topics: ['chosen'], memberId: 'consumer-1' }).join();
    expect(first.id).toBe('consumer-1');
    await settle('g-chosen', [first]);
    await new Member('g-chosen', { topics: ['chosen'], memberId: 'consumer-2' }).join(); // the answer is lost
    const retried = await new Member('g-chosen', { topics: ['chosen'], memberId: 'consumer-2' }).join();
    expect(retried.id).toBe('consumer-2');
    expect((await describeGroup('g-chosen')).members.map((m) => m.memberId).sort()).toEqual(['consumer-1', 'consumer-2']);
    await settle('g-chosen', [first, retried]);
    expect([first.size, retried.size]).toEqual([2, 2]);
    const taken = await grpcError(new Member('g-chosen', { topics: ['chosen'], memberId: 'consumer-1', instanceId: 'pod-9' }).join());
    expect(taken.code).toBe(status.INVALID_ARGUMENT);
    expect(taken.details).toMatch(/member id consumer-1 is in use in group "g-chosen"/);
    await first.leave();
    await retried.leave();
  });

  it('a regular-expression subscription picks up a topic created after the member joined', async () => {
    await createTopic('orders.eu', 2);
    await createTopic('ordersXeu', 1);
    const member = await new Member('g-regex', { regex: 'orders\\..*' }).join();
    await settle('g-regex', [member]);
    expect(labels(member.owned)).toEqual(['orders.eu-0', 'orders.eu-1']);
    await createTopic('orders.us', 3);
    const response = await member.beat();
    expect(labels(response.assignment)).toEqual(['orders.eu-0', 'orders.eu-1', 'orders.us-0', 'orders.us-1', 'orders.us-2']);
    const description = await describeGroup('g-regex');
    expect(description.members[0]!.subscribedTopicRegex).toBe('orders\\..*');
    await member.leave();
  });

  it('refuses an invalid regular expression with INVALID_ARGUMENT', async () => {
    const error = await grpcError(new Member('g-bad-regex', { regex: 'orders(' }).join());
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/regular expression/);
  });
});

describe('offsets', () => {
  it('fences commits with a stale epoch or from a non-owner; a manual commit is allowed only while the group has no members', async () => {
    await createTopic('fence', 4);
    for (let partition = 0; partition < 4; partition++) await produce('fence', partition, 5, () => 0);
    const a = await new Member('g-fence', { topics: ['fence'] }).join();
    await settle('g-fence', [a]);
    const staleEpoch = a.epoch;
    const b = await new Member('g-fence', { topics: ['fence'] }).join();
    await settle('g-fence', [a, b]);
    expect(a.epoch).not.toBe(staleEpoch);
    const mine = { topic: 'fence', partition: a.owned[0]!.partitions[0]!, offset: 2 };
    const theirs = { topic: 'fence', partition: b.owned[0]!.partitions[0]!, offset: 2 };

    const stale = await grpcError(commit('g-fence', a.id, staleEpoch, [mine]));
    expect(stale.code).toBe(status.FAILED_PRECONDITION);
    expect(stale.details).toMatch(/stale member epoch/);
    const notOwner = await grpcError(commit('g-fence', a.id, a.epoch, [theirs]));
    expect(notOwner.code).toBe(status.FAILED_PRECONDITION);
    expect(notOwner.details).toMatch(/not the owner/);
    const manual = await grpcError(commit('g-fence', '', 0, [mine]));
    expect(manual.code).toBe(status.FAILED_PRECONDITION);
    expect((await grpcError(commit('g-fence', a.id, a.epoch, [{ ...mine, offset: 6 }]))).code).toBe(status.OUT_OF_RANGE);
    expect(await plainOffsets('g-fence')).toEqual([]);

    await commit('g-fence', a.id, a.epoch, [mine]);
    await commit('g-fence', b.id, b.epoch, [theirs]);
    await a.leave();
    await b.leave();
    await commit('g-fence', '', 0, [{ topic: 'fence', partition: 3, offset: 5, metadata: 'manual' }]);
    const offsets = await fetchOffsets('g-fence');
    const expected = new Map([[mine.partition, 2], [theirs.partition, 2], [3, 5]]); // later entries win, as later commits do
    expect(offsets.map(({ partition, offset }) => [partition, offset])).toEqual([...expected].sort((x, y) => x[0]! - y[0]!));
    expect(offsets.find((o) => o.partition === 3)?.metadata).toBe('manual');
  });

  it('CommitOffsetsStream answers pipelined commits by correlation id, refuses bad ones with an item error and stays open', async () => {
    await createTopic('streamed', 3);
    for (let partition = 0; partition < 3; partition++) await produce('streamed', partition, 10, () => 0);
    const member = await new Member('g-streamed', { topics: ['streamed'] }).join();
    await settle('g-streamed', [member]);
    const call = (shared.client.groups as unknown as { commitOffsetsStream(options: object): ClientDuplexStream<strata.v1.CommitOffsetsRequest, strata.v1.CommitOffsetsResponse> }).commitOffsetsStream({ deadline: Date.now() + 20_000 });
    const responses: strata.v1.CommitOffsetsResponse[] = [];
    const finished = new Promise<void>((resolve, reject) => {
      call.on('data', (response: strata.v1.CommitOffsetsResponse) => responses.push(response));
      call.on('end', resolve);
      call.on('error', reject);
    });
    const count = 1_500;
    const refused = new Map<number, { code: status; message: RegExp }>([
      [100, { code: status.FAILED_PRECONDITION, message: /stale member epoch/ }],
      [200, { code: status.NOT_FOUND, message: /no-such-topic/ }],
      [300, { code: status.OUT_OF_RANGE, message: /beyond the high watermark/ }],
      [400, { code: status.INVALID_ARGUMENT, message: /partition/ }],
    ]);
    const lastGood = [0, 0, 0];
    for (let index = 1; index <= count; index++) {
      const partition = index % 3;
      const offset = index % 11 === 10 ? 10 : index % 10;
      const correlationId = index === count ? Long.MAX_UNSIGNED_VALUE : Long.fromNumber(index, true);
      let entry = v1.OffsetCommit.create({ topic: 'streamed', partition, offset: long(offset), metadata: `c${index}` });
      let epoch = member.epoch;
      if (index === 100) epoch = member.epoch - 1;
      if (index === 200) entry = v1.OffsetCommit.create({ topic: 'no-such-topic', partition: 0, offset: long(0) });
      if (index === 300) entry = v1.OffsetCommit.create({ topic: 'streamed', partition, offset: long(11) });
      if (index === 400) entry = v1.OffsetCommit.create({ topic: 'streamed', partition: -1, offset: long(0) });
      call.write(v1.CommitOffsetsRequest.create({ groupId: 'g-streamed', memberId: member.id, memberEpoch: epoch, offsets: [entry], correlationId }));
      if (!refused.has(index)) lastGood[partition] = offset;
    }
    call.end();
    await finished;

    expect(responses).toHaveLength(count);
    const byId = new Map(responses.map((response) => [Long.fromValue(response.correlationId).toString(), response]));
    expect(byId.size).toBe(count);
    expect(byId.get(Long.MAX_UNSIGNED_VALUE.toString())).toBeDefined(); // uint64 echoed exactly
    for (let index = 1; index <= count; index++) {
      const response = byId.get(String(index === count ? Long.MAX_UNSIGNED_VALUE.toString() : index))!;
      const refusal = refused.get(index);
      if (refusal === undefined) {
        expect(response.error, `commit ${index}`).toBeFalsy();
      } else {
        expect(response.error?.code, `commit ${index}`).toBe(refusal.code);
        expect(response.error?.message).toMatch(refusal.message);
      }
    }
    // Commits on one partition were written in the order they were sent: the last one stands.
    expect(await plainOffsets('g-streamed')).toEqual(lastGood.map((offset, partition) => ({ topic: 'streamed', partition, offset })));
    await member.leave();
  });

  it('FetchOffsets returns every committed offset, or those of the topics asked for', async () => {
    await createTopic('fo-a', 2);
    await createTopic('fo-b', 1);
    await produce('fo-a', 0, 3, () => 0);
    await produce('fo-a', 1, 3, () => 0);
    await produce('fo-b', 0, 3, () => 0);
    const before = Date.now();
    await commit('g-fetch', '', 0, [
      { topic: 'fo-a', partition: 1, offset: 2, metadata: 'x' },
      { topic: 'fo-b', partition: 0, offset: 3 },
      { topic: 'fo-a', partition: 0, offset: 1 },
    ]);
    const after = Date.now();
    const all = await fetchOffsets('g-fetch');
    expect(all.map(({ topic, partition, offset, metadata }) => ({ topic, partition, offset, metadata }))).toEqual([
      { topic: 'fo-a', partition: 0, offset: 1, metadata: '' },
      { topic: 'fo-a', partition: 1, offset: 2, metadata: 'x' },
      { topic: 'fo-b', partition: 0, offset: 3, metadata: '' },
    ]);
    for (const entry of all) {
      expect(entry.commitTimeMs).toBeGreaterThanOrEqual(before);
      expect(entry.commitTimeMs).toBeLessThanOrEqual(after);
    }
    expect(await plainOffsets('g-fetch', ['fo-b'])).toEqual([{ topic: 'fo-b', partition: 0, offset: 3 }]);
  });

  it('many concurrent commits all succeed and the last ones stick', async () => {
    await createTopic('busy', 12);
    for (let partition = 0; partition < 12; partition++) await produce('busy', partition, 50, () => 0);
    const member = await new Member('g-busy', { topics: ['busy'] }).join();
    await settle('g-busy', [member]);
    expect(member.size).toBe(12);
    const commits = Array.from({ length: 600 }, (_, i) => commit('g-busy', member.id, member.epoch, [{ topic: 'busy', partition: i % 12, offset: 1 + (i % 49) }, { topic: 'busy', partition: (i + 5) % 12, offset: 1 + (i % 37) }]));
    const results = await Promise.allSettled(commits);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    await commit('g-busy', member.id, member.epoch, Array.from({ length: 12 }, (_, partition) => ({ topic: 'busy', partition, offset: 50 - partition })));
    expect((await plainOffsets('g-busy')).map((o) => o.offset)).toEqual(Array.from({ length: 12 }, (_, partition) => 50 - partition));
    await member.leave();
  });

  it('committed offsets and membership survive a broker restart: the member heartbeats on at its epoch and keeps its partitions', async () => {
    await acrossRestart(async (one) => {
      await one.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'durable', partitions: 2 }));
      await one.call('log.produce', v1.ProduceRequest.create({ topic: 'durable', partition: 0, records: [v1.Record.create({ value: Buffer.from('a') }), v1.Record.create({ value: Buffer.from('b') })] }));
      const joined = await one.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g-durable', memberEpoch: 0, subscribedTopicNames: ['durable'] }));
      await one.call('groups.commitOffsets', v1.CommitOffsetsRequest.create({ groupId: 'g-durable', memberId: joined.memberId, memberEpoch: joined.memberEpoch, offsets: [v1.OffsetCommit.create({ topic: 'durable', partition: 0, offset: long(2), metadata: 'kept' })] }));
      return { joined, before: await fetchOffsets('g-durable', [], one) };
    }, async (two, { joined, before }) => {
      expect(await fetchOffsets('g-durable', [], two)).toEqual(before);
      expect(before).toMatchObject([{ topic: 'durable', partition: 0, offset: 2, metadata: 'kept' }]);
      const groups = await two.call<strata.v1.ListGroupsResponse>('groups.listGroups', v1.ListGroupsRequest.create());
      expect(groups.groups.map((g) => ({ groupId: g.groupId, state: g.state, members: g.members }))).toEqual([{ groupId: 'g-durable', state: 'stable', members: 1 }]);
      // A second consumer joining now gets a share only once the kept member gives it up.
      const second = await two.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g-durable', memberEpoch: 0, subscribedTopicNames: ['durable'] }));
      expect(second.assignment).toEqual([]);
      const kept = await two.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g-durable', memberId: joined.memberId, memberEpoch: joined.memberEpoch, keepSubscription: true, ownedPartitions: joined.assignment }));
      expect(kept.memberId).toBe(joined.memberId);
      expect(kept.assignment).toHaveLength(1); // told to give the other partition up
      expect(kept.memberEpoch).toBeGreaterThan(joined.memberEpoch);
      // A commit at the epoch it had before the restart is refused now only because the epoch moved on.
      const stale = await grpcError(two.call('groups.commitOffsets', v1.CommitOffsetsRequest.create({ groupId: 'g-durable', memberId: joined.memberId, memberEpoch: joined.memberEpoch, offsets: [v1.OffsetCommit.create({ topic: 'durable', partition: 0, offset: long(2) })] })));
      expect(stale.details).toMatch(/stale member epoch/);
    });
  });

  // Power loss under flush=interval: the records a group committed past are gone, and their offsets
  // are given out again. The broker lowers the commit to the recovered end at start, so the group
  // reads the records written there instead of skipping them.
  it('a commit past the records a power loss took is lowered to the recovered end at start', async () => {
    const firstRun = await startTestBroker();
    const dataDir = firstRun.dataDir;
    const partitionDir = partitionDirectory(dataDir, 'lossy', 0);
    const logFile = (): string => join(partitionDir, readdirSync(partitionDir).find((name) => name.endsWith(LOG_SUFFIX))!);
    let client = new TestClient(firstRun.address);
    let running: TestBroker = firstRun;
    try {
      await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'lossy', partitions: 1, configs: { flush: 'interval', 'flush.ms': '3600000' } }));
      await client.call('log.produce', v1.ProduceRequest.create({ topic: 'lossy', partition: 0, records: [v1.Record.create({ value: Buffer.from('synced') })] }));
      client.close();
      await running.stop(); // a clean stop syncs: this record survives
      const syncedBytes = statSync(logFile()).size;

      running = await startTestBroker({ dataDir });
      client = new TestClient(running.address);
      await client.call('log.produce', v1.ProduceRequest.create({ topic: 'lossy', partition: 0, records: [v1.Record.create({ value: Buffer.from('lost 1') }), v1.Record.create({ value: Buffer.from('lost 2') })] }));
      await client.call('groups.commitOffsets', v1.CommitOffsetsRequest.create({ groupId: 'g-lossy', offsets: [v1.OffsetCommit.create({ topic: 'lossy', partition: 0, offset: long(3) })] }));
      client.close();
      await running.stop();
      // The power loss: the unsynced bytes never reached the disk, and no clean stop was recorded.
      truncateSync(logFile(), syncedBytes);
      for (const marker of [CLEAN_SHUTDOWN_FILE, RECOVERY_CHECKPOINT_FILE]) rmSync(join(partitionDir, marker), { force: true });

      running = await startTestBroker({ dataDir });
      client = new TestClient(running.address);
      const after = await client.call<strata.v1.FetchOffsetsResponse>('groups.fetchOffsets', v1.FetchOffsetsRequest.create({ groupId: 'g-lossy' }));
      expect(after.offsets.map((entry) => num(entry.offset))).toEqual([1]);
      await client.call('log.produce', v1.ProduceRequest.create({ topic: 'lossy', partition: 0, records: [v1.Record.create({ value: Buffer.from('new') })] }));
      const described = await client.call<strata.v1.DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId: 'g-lossy' }));
      expect(described.partitions.map((entry) => [num(entry.committedOffset), num(entry.logEndOffset), num(entry.lag)])).toEqual([[1, 2, 1]]);
    } finally {
      client.close();
      await running.dispose();
    }
  });

  it('deleting a topic deletes the committed offsets of every group on it', async () => {
    await createTopic('doomed', 2);
    await createTopic('spared', 1);
    await produce('doomed', 0, 2, () => 0);
    await commit('g-doomed-1', '', 0, [{ topic: 'doomed', partition: 0, offset: 1 }, { topic: 'spared', partition: 0, offset: 0 }]);
    await commit('g-doomed-2', '', 0, [{ topic: 'doomed', partition: 1, offset: 0 }]);
    await shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'doomed' }));
    await waitUntil(async () => (await fetchOffsets('g-doomed-1', ['doomed'])).length === 0 && (await fetchOffsets('g-doomed-2')).length === 0, 'the offsets of the deleted topic to go');
    expect(await plainOffsets('g-doomed-1')).toEqual([{ topic: 'spared', partition: 0, offset: 0 }]);
  });
});

describe('lag', () => {
  it('is exact: end offset minus committed (from the log start when nothing is committed), aged by the record timestamps', async () => {
    await createTopic('lagging', 2);
    const base = Date.now() - 600_000; // ten minutes ago
    await produce('lagging', 0, 10, (i) => base + i * 1_000);
    await produceGzip('lagging', 1, 5, (i) => base + 100_000 + i * 1_000); // aged from a compressed batch
    const member = await new Member('g-lag', { topics: ['lagging'] }).join();
    await settle('g-lag', [member]);
    await commit('g-lag', member.id, member.epoch, [{ topic: 'lagging', partition: 0, offset: 4 }]);

    const before = Date.now();
    const description = await describeGroup('g-lag');
    const after = Date.now();
    const [p0, p1] = description.partitions;
    expect({ committed: num(p0!.committedOffset), end: num(p0!.logEndOffset), lag: num(p0!.lag), member: p0!.memberId }).toEqual({ committed: 4, end: 10, lag: 6, member: member.id });
    expect({ committed: num(p1!.committedOffset), end: num(p1!.logEndOffset), lag: num(p1!.lag), member: p1!.memberId }).toEqual({ committed: -1, end: 5, lag: 5, member: member.id });
    // Age of the oldest uncommitted record: offset 4 of p0, offset 0 of p1.
    expect(num(p0!.lagMs)).toBeGreaterThanOrEqual(before - (base + 4_000));
    expect(num(p0!.lagMs)).toBeLessThanOrEqual(after - (base + 4_000));
    expect(num(p1!.lagMs)).toBeGreaterThanOrEqual(before - (base + 100_000));
    expect(num(p1!.lagMs)).toBeLessThanOrEqual(after - (base + 100_000));
    expect(num(description.totalLag)).toBe(11);

    await commit('g-lag', member.id, member.epoch, [{ topic: 'lagging', partition: 0, offset: 10 }, { topic: 'lagging', partition: 1, offset: 5 }]);
    const caughtUp = await describeGroup('g-lag');
    expect(caughtUp.partitions.map((p) => [num(p.lag), num(p.lagMs)])).toEqual([[0, 0], [0, 0]]);
    expect(num(caughtUp.totalLag)).toBe(0);
    await member.leave();
  });
});

describe('administration', () => {
  it('ListGroups reports empty, stable and reconciling (a revocation pending) groups', async () => {
    await createTopic('states', 4);
    await commit('g-state-empty', '', 0, [{ topic: 'states', partition: 0, offset: 0 }]);
    const solo = await new Member('g-state-stable', { topics: ['states'] }).join();
    await settle('g-state-stable', [solo]);
    const first = await new Member('g-state-moving', { topics: ['states'] }).join();
    await settle('g-state-moving', [first]);
    const second = await new Member('g-state-moving', { topics: ['states'] }).join();
    await first.beat(); // told to give up 2 partitions; it has not acknowledged yet
    expect(first.size).toBe(2);

    const groups = await listGroups();
    expect(groups.get('g-state-empty')).toEqual({ state: 'empty', members: 0 });
    expect(groups.get('g-state-stable')).toEqual({ state: 'stable', members: 1 });
    expect(groups.get('g-state-moving')).toEqual({ state: 'reconciling', members: 2 });
    expect(second.size).toBe(0);

    await settle('g-state-moving', [first, second]);
    expect((await listGroups()).get('g-state-moving')).toEqual({ state: 'stable', members: 2 });
    for (const member of [solo, first, second]) await member.leave();
    // Nobody committed: once the last member leaves, the group no longer exists.
    expect((await listGroups()).get('g-state-moving')).toBeUndefined();
  });

  it('ListGroups pages through the groups in id order, and refuses a negative page_size', async () => {
    await createTopic('paged', 1);
    const ids = Array.from({ length: 12 }, (_, index) => `g-paged-${String(index).padStart(2, '0')}`);
    for (const groupId of [...ids].reverse()) await commit(groupId, '', 0, [{ topic: 'paged', partition: 0, offset: 0 }]);
    const everything = await shared.client.call<strata.v1.ListGroupsResponse>('groups.listGroups', v1.ListGroupsRequest.create());
    expect(everything.nextPageToken).toBe('');
    const paged: string[] = [];
    let pageToken = '';
    do {
      const page = await shared.client.call<strata.v1.ListGroupsResponse>('groups.listGroups', v1.ListGroupsRequest.create({ pageSize: 5, pageToken }));
      expect(page.groups.length).toBeLessThanOrEqual(5);
      paged.push(...page.groups.map((group) => group.groupId));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    // Groups of earlier tests may expire between the calls (a session ending empties one): the
    // pages hold the groups of the whole listing still there, in the same order, each once.
    const listed = everything.groups.map((group) => group.groupId);
    expect(paged).toEqual(listed.filter((groupId) => paged.includes(groupId)));
    expect(new Set(paged).size).toBe(paged.length);
    expect(paged.filter((groupId) => groupId.startsWith('g-paged-'))).toEqual(ids);
    const refused = await grpcError(shared.client.call('groups.listGroups', v1.ListGroupsRequest.create({ pageSize: -1 })));
    expect({ code: refused.code, details: refused.details }).toEqual({ code: status.INVALID_ARGUMENT, details: 'page_size must be 0 (every group) or a positive number of groups, got -1' });
  });

  it('DescribeGroup shows each member: client id, instance id, host, epoch, assignment and subscription', async () => {
    await createTopic('described', 4);
    // A name listed twice counts once.
    const a = await new Member('g-describe', { topics: ['described', 'described'], clientId: 'billing-1', instanceId: 'pod-a' }).join();
    const b = await new Member('g-describe', { regex: 'describ.*', clientId: 'billing-2' }).join();
    await settle('g-describe', [a, b]);
    const description = await describeGroup('g-describe');
    expect(description).toMatchObject({ groupId: 'g-describe', state: 'stable', assignor: 'uniform' });
    expect(description.groupEpoch).toBeGreaterThan(0);
    const byId = new Map(description.members.map((m) => [m.memberId, m]));
    const da = byId.get(a.id)!;
    const db = byId.get(b.id)!;
    expect({ clientId: da.clientId, instanceId: da.instanceId, epoch: da.memberEpoch, assignment: labels(da.assignment), names: da.subscribedTopicNames, regex: da.subscribedTopicRegex }).toEqual({
      clientId: 'billing-1',
      instanceId: 'pod-a',
      epoch: a.epoch,
      assignment: labels(a.owned),
      names: ['described'],
      regex: '',
    });
    expect({ clientId: db.clientId, epoch: db.memberEpoch, assignment: labels(db.assignment), names: db.subscribedTopicNames, regex: db.subscribedTopicRegex }).toEqual({
      clientId: 'billing-2',
      epoch: b.epoch,
      assignment: labels(b.owned),
      names: [],
      regex: 'describ.*',
    });
    expect(db.instanceId ?? null).toBeNull();
    for (const m of [da, db]) expect(m.host).toMatch(/127\.0\.0\.1/);
    expect(labels([...da.assignment, ...db.assignment])).toEqual(['described-0', 'described-1', 'described-2', 'described-3']);
    await a.leave();
    await b.leave();
  });

  it('ResetOffsets moves the offsets of an empty group to earliest, latest, an offset, a timestamp or by a shift', async () => {
    await createTopic('rewind', 2);
    const base = Date.now() - 100_000;
    await produce('rewind', 0, 10, (i) => base + i * 1_000);
    await produce('rewind', 1, 4, (i) => base + i * 1_000);
    const to = (extra: strata.v1.ResetOffsetsRequest.$Properties) => resetOffsets({ groupId: 'g-reset', topic: 'rewind', ...extra });
    expect(await to({ latest: true })).toEqual([[0, 10], [1, 4]]);
    expect(await to({ earliest: true })).toEqual([[0, 0], [1, 0]]);
    expect(await to({ offset: long(6) })).toEqual([[0, 6], [1, 4]]);
    expect(await to({ shiftBy: long(-3) })).toEqual([[0, 3], [1, 1]]);
    expect(await to({ shiftBy: long(50) })).toEqual([[0, 10], [1, 4]]);
    expect(await to({ timestamp: long(base + 2_500) })).toEqual([[0, 3], [1, 3]]);
    expect(await to({ partitions: [1], earliest: true })).toEqual([[1, 0]]);
    expect(await plainOffsets('g-reset')).toEqual([{ topic: 'rewind', partition: 0, offset: 3 }, { topic: 'rewind', partition: 1, offset: 0 }]);
    const missing = await grpcError(to({}));
    expect(missing.code).toBe(status.INVALID_ARGUMENT);
    // Kafka's -1 for latest would reset to the oldest record here: refused, naming the fields to set.
    const negative = await grpcError(to({ timestamp: long(-1) }));
    expect([negative.code, negative.details]).toEqual([status.INVALID_ARGUMENT, 'timestamp must be a time in ms since the epoch, not negative, got -1 (set latest or earliest to reset to the newest or oldest records)']);
    expect(await plainOffsets('g-reset')).toEqual([{ topic: 'rewind', partition: 0, offset: 3 }, { topic: 'rewind', partition: 1, offset: 0 }]);

    const member = await new Member('g-reset', { topics: ['rewind'] }).join();
    const refused = await grpcError(to({ earliest: true }));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toMatch(/: it has 1 member; stop its consumers first \(.*: once they are stopped, try again within \d+ s\)$/);
    await member.leave();
  });

  it('DeleteOffsets and DeleteGroup work on empty groups, are refused on groups with members, and unknown groups are NOT_FOUND', async () => {
    await createTopic('del-a', 1);
    await createTopic('del-b', 1);
    await commit('g-del', '', 0, [{ topic: 'del-a', partition: 0, offset: 0 }, { topic: 'del-b', partition: 0, offset: 0 }]);
    const member = await new Member('g-del', { topics: ['del-a'] }).join();
    for (const call of [() => deleteOffsets('g-del', ['del-a']), () => deleteGroup('g-del')]) {
      const error = await grpcError(call());
      expect(error.code).toBe(status.FAILED_PRECONDITION);
      expect(error.details).toMatch(/: it has 1 member; stop its consumers first \(.*: once they are stopped, try again within \d+ s\)$/);
    }
    await member.leave();
    // A topic it has no offsets for (misspelt, say): NOT_FOUND, and the other named topic keeps its offsets.
    const misspelt = await grpcError(deleteOffsets('g-del', ['del-a', 'del-c']));
    expect([misspelt.code, misspelt.details]).toEqual([status.NOT_FOUND, 'group "g-del" has no committed offsets for topic "del-c"; nothing was deleted']);
    expect((await plainOffsets('g-del')).map((entry) => entry.topic)).toEqual(['del-a', 'del-b']);
    await deleteOffsets('g-del', ['del-a']);
    expect(await plainOffsets('g-del')).toEqual([{ topic: 'del-b', partition: 0, offset: 0 }]);
    await deleteGroup('g-del');
    expect(await plainOffsets('g-del')).toEqual([]);
    expect((await listGroups()).has('g-del')).toBe(false);

    for (const call of [() => describeGroup('g-del'), () => deleteOffsets('g-del', []), () => deleteGroup('g-del'), () => describeGroup('g-never-existed')]) {
      expect((await grpcError(call())).code).toBe(status.NOT_FOUND);
    }
    const heartbeatError = await grpcError(heartbeat({ groupId: 'g-never-existed', memberId: 'someone', memberEpoch: 4, keepSubscription: true }));
    expect(heartbeatError.code).toBe(status.NOT_FOUND);
  });
});
