// Goal: the GroupCoordinator keeps groups.proto's promises below the gRPC layer (heartbeat
// validation, sessions on its clock, fenced and validated commits, exact lag, offset resets,
// group administration, topic creation and deletion); method: a real Broker and coordinator on
// a temporary data directory sharing one ManualClock, so expiry and lag times are exact.
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { ManualClock } from '../../src/common/clock.js';
import { OffsetStore } from '../../src/groups/offset-store.js';
import { MembershipStore } from '../../src/groups/membership-store.js';
import { splitTp, tp } from '../../src/groups/assignors.js';
import { NameScope } from '../../src/common/name-scope.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { GroupCoordinator, type GroupCoordinatorOptions, SUBSCRIBED_TOPIC_NAMES_MAX, type HeartbeatRequest, type HeartbeatResult } from '../../src/groups/group-coordinator.js';
import { TestFileSystem } from '../helpers/test-file-system.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';
import { RecordRanges } from '../../src/storage/record-ranges.js';
import { waitUntil } from '../helpers/wait.js';

const T0 = 1_700_000_000_000;
const SESSION_MS = 1_000;

let dataDir: string;
let clock: ManualClock;
let broker: Broker;
let coordinator: GroupCoordinator;
let fs: TestFileSystem;

beforeEach(async () => {
  dataDir = temporaryDirectory('strata-groups-');
  clock = new ManualClock(T0);
  fs = new TestFileSystem();
  // Log calls on the thread pool (not the event loop), so that `fs` can hold an fdatasync.
  broker = await Broker.open({ dataDir, clock, fs, inlineIo: false });
  coordinator = newCoordinator();
});

/** A coordinator on `broker` with the tests' settings (sessions checked only when a test asks), and `options`. */
function newCoordinator(options: Partial<GroupCoordinatorOptions> = {}): GroupCoordinator {
  return new GroupCoordinator(broker, { clock, sessionTimeoutMs: SESSION_MS, heartbeatIntervalMs: 200, sessionCheckIntervalMs: 3_600_000, ...options });
}

afterEach(async () => {
  await coordinator.close();
  await broker.close();
  removeDirectory(dataDir);
});

// ---------------------------------------------------------------------------------------------
// Helpers.

type Pair = { topic: string; partition: number };

interface Client {
  groupId: string;
  memberId: string;
  epoch: number;
  owned: Pair[];
}

const label = (pairs: readonly Pair[]): string[] => pairs.map(({ topic, partition }) => `${topic}-${partition}`).sort();

function request(overrides: Partial<HeartbeatRequest> & { groupId: string }): HeartbeatRequest {
  return {
    memberId: '',
    memberEpoch: 0,
    instanceId: null,
    clientId: '', // keeps the client id given when joining
    host: '127.0.0.1:1',
    subscription: null,
    assignor: '',
    owned: [],
    sessionTimeoutMs: 0,
    ...overrides,
  };
}

function join(groupId: string, topics: string[] | { regex: string }, extra: Partial<HeartbeatRequest> = {}): Client {
  const subscription = Array.isArray(topics) ? { topicNames: topics, regex: '' } : { topicNames: [], regex: topics.regex };
  const result = coordinator.heartbeat(request({ groupId, subscription, clientId: 'client', ...extra }));
  return { groupId, memberId: result.memberId, epoch: result.memberEpoch, owned: result.assignment };
}

/** A heartbeat reporting what the client consumes; it then consumes its new assignment. */
function beat(client: Client): HeartbeatResult {
  const result = coordinator.heartbeat(request({ groupId: client.groupId, memberId: client.memberId, memberEpoch: client.epoch, owned: client.owned }));
  client.epoch = result.memberEpoch;
  client.owned = result.assignment;
  return result;
}

function leave(client: Client): void {
  coordinator.heartbeat(request({ groupId: client.groupId, memberId: client.memberId, memberEpoch: -1 }));
}

function settle(clients: Client[]): void {
  for (let round = 0; round < 10; round++) for (const client of clients) beat(client);
}

async function failure(call: () => unknown): Promise<{ code: string; message: string }> {
  try {
    await call();
  } catch (error) {
    if (error instanceof StrataError) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** Appends `count` records to a partition, record i stamped `timestamp(i)`. */
async function produce(topic: string, partition: number, count: number, timestamp: (i: number) => number, valueBytes = 10): Promise<void> {
  const records = Array.from({ length: count }, (_, i) => ({ value: Buffer.alloc(valueBytes, i), timestamp: timestamp(i) }));
  await broker.produceRecords(topic, partition, RecordRanges.of(records), 'all', null);
}

/** The one member of group `g`, owning t-0 and u-0, each holding 5 records. */
async function memberOfTwoTopics(): Promise<Client> {
  await broker.createTopic('t', 1, {});
  await broker.createTopic('u', 1, {});
  await produce('t', 0, 5, () => T0);
  await produce('u', 0, 5, () => T0);
  const member = join('g', ['t', 'u']);
  settle([member]);
  return member;
}

/**
 * `member` heartbeats at `epoch`, claiming `held` (which includes a partition it was told to
 * give up), before and after a session timeout passes: the session check then removes it.
 */
function expectRemovedWhileHolding(member: Client, epoch: number, held: Pair[]): void {
  let current = epoch;
  const claim = (): void => {
    current = coordinator.heartbeat(request({ groupId: member.groupId, memberId: member.memberId, memberEpoch: current, owned: held })).memberEpoch;
  };
  claim();
  clock.advance(SESSION_MS + 1);
  claim();
  coordinator.expireSessions();
  expect(coordinator.listGroups().find((group) => group.groupId === member.groupId)?.members ?? 0).toBe(0);
}

const offsetsOf = (groupId: string, topics: string[] = []) => coordinator.fetchOffsets(groupId, topics).map(({ topic, partition, offset }) => ({ topic, partition, offset }));

// ---------------------------------------------------------------------------------------------

describe('heartbeats', () => {
  it('answers a member with a session shorter than five heartbeat intervals with a fifth of its session', async () => {
    await broker.createTopic('t', 1, {});
    expect(coordinator.heartbeat(request({ groupId: 'short', subscription: { topicNames: ['t'], regex: '' }, sessionTimeoutMs: 300 })).heartbeatIntervalMs).toBe(60);
    expect(coordinator.heartbeat(request({ groupId: 'edge', subscription: { topicNames: ['t'], regex: '' }, sessionTimeoutMs: 999 })).heartbeatIntervalMs).toBe(199);
    expect(coordinator.heartbeat(request({ groupId: 'long', subscription: { topicNames: ['t'], regex: '' }, sessionTimeoutMs: 60_000 })).heartbeatIntervalMs).toBe(200);
    // The answer gives the member its session timeout: the one asked for, or the default.
    expect(coordinator.heartbeat(request({ groupId: 'default', subscription: { topicNames: ['t'], regex: '' }, sessionTimeoutMs: 0 })).sessionTimeoutMs).toBe(SESSION_MS);
  });

  it('three members of a 12-partition topic get 4 partitions each, and the heartbeat interval is the configured one', async () => {
    await broker.createTopic('t', 12, {});
    const members = [join('g', ['t']), join('g', ['t']), join('g', ['t'])];
    settle(members);
    expect(members.map((m) => m.owned.length)).toEqual([4, 4, 4]);
    expect(new Set(members.flatMap((m) => label(m.owned))).size).toBe(12);
    expect(beat(members[0]!).heartbeatIntervalMs).toBe(200);
    expect(coordinator.listGroups()).toEqual([{ groupId: 'g', state: 'stable', members: 3 }]);
  });

  it('refuses malformed heartbeats with INVALID_ARGUMENT and unknown groups with NOT_FOUND', async () => {
    await broker.createTopic('t', 1, {});
    const subscription = { topicNames: ['t'], regex: '' };
    const cases: [string, HeartbeatRequest][] = [
      ['empty group id', request({ groupId: '', subscription })],
      ['group id too long', request({ groupId: 'g'.repeat(256), subscription })],
      ['unknown assignor', request({ groupId: 'g', subscription, assignor: 'sticky' })],
      ['session timeout too short', request({ groupId: 'g', subscription, sessionTimeoutMs: 99 })],
      ['session timeout too long', request({ groupId: 'g', subscription, sessionTimeoutMs: 30 * 60 * 1000 + 1 })],
      ['epoch below -2', request({ groupId: 'g', subscription, memberId: 'm', memberEpoch: -3 })],
      ['join without a subscription', request({ groupId: 'g' })],
      ['join with an empty subscription', request({ groupId: 'g', subscription: { topicNames: [], regex: '' } })],
      ['invalid regex', request({ groupId: 'g', subscription: { topicNames: [], regex: '[' } })],
      ['regex with lookahead (not RE2)', request({ groupId: 'g', subscription: { topicNames: [], regex: '(?=t)t' } })],
      ['control character in the group id', request({ groupId: 'g\u001b', subscription })],
      ['chosen member id too long', request({ groupId: 'g', subscription, memberId: 'm'.repeat(101) })],
      ['control character in a chosen member id', request({ groupId: 'g', subscription, memberId: 'm\u0007' })],
      ['client id too long', request({ groupId: 'g', subscription, clientId: 'c'.repeat(256) })],
      ['instance id too long', request({ groupId: 'g', subscription, instanceId: 'i'.repeat(250) })],
      // A client that sets the optional field to "" would make every consumer one static member.
      ['empty instance id', request({ groupId: 'g', subscription, instanceId: '' })],
      ['a subscribed name no topic can have', request({ groupId: 'g', subscription: { topicNames: ['t', 'a b'], regex: '' } })],
      ['a subscribed name too long for a topic', request({ groupId: 'g', subscription: { topicNames: ['t'.repeat(250)], regex: '' } })],
    ];
    for (const [what, input] of cases) expect((await failure(() => coordinator.heartbeat(input))).code, what).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', subscription, instanceId: '' })))).message).toBe(
      'instance_id is set but empty: leave it unset for a dynamic member, or give a stable id of this consumer instance (its pod name)',
    );
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', subscription, memberId: 'm', memberEpoch: -3 })))).message).toBe(
      'member_epoch -3 is invalid; send 0 to join, the epoch of the last answer, -1 to leave, or -2 for a static member leaving for now',
    );
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', subscription: { topicNames: ['t', 'a b'], regex: '' } })))).message).toBe(
      'subscribed_topic_names[1]: topic name "a b" has characters outside [a-zA-Z0-9._-]',
    );
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', subscription: { topicNames: ['t', 't', 'a b'], regex: '' } })))).message).toMatch(/^subscribed_topic_names\[2\]:/);
    const manyNames = Array.from({ length: SUBSCRIBED_TOPIC_NAMES_MAX + 1 }, (_, index) => `t${index}`);
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', subscription: { topicNames: manyNames, regex: '' } })))).message).toBe(
      'subscribed_topic_names lists 10001 names; the limit is 10000: subscribe to more with subscribed_topic_regex',
    );
    expect(coordinator.heartbeat(request({ groupId: 'many', subscription: { topicNames: manyNames.slice(1), regex: '' } })).memberEpoch).toBeGreaterThan(0);
    // At the bounds, a member joins; a member that has joined is not refused for its ids later.
    const joined = coordinator.heartbeat(request({ groupId: 'g', subscription, clientId: 'c'.repeat(255), instanceId: 'i'.repeat(249) }));
    expect(joined.memberEpoch).toBeGreaterThan(0);
    const again = coordinator.heartbeat(request({ groupId: 'g', memberId: joined.memberId, memberEpoch: joined.memberEpoch, clientId: 'c'.repeat(300), instanceId: 'i'.repeat(249) }));
    expect(again.memberEpoch).toBe(joined.memberEpoch);
    expect((await coordinator.describeGroup('g')).members.map((member) => member.clientId)).toEqual(['c'.repeat(255)]); // the one given when joining
    const unknown = await failure(() => coordinator.heartbeat(request({ groupId: 'nobody', memberId: 'm', memberEpoch: 3 })));
    expect(unknown.code).toBe(ErrorCode.NOT_FOUND);
    expect(unknown.message).toMatch(/rejoin with member epoch 0/);
  });

  it('expires sessions on its clock: a silent member loses its partitions to the others', async () => {
    await broker.createTopic('t', 12, {});
    const quiet = join('g', ['t'], { sessionTimeoutMs: 500 });
    const busy = join('g', ['t']);
    settle([quiet, busy]);
    expect([quiet.owned.length, busy.owned.length]).toEqual([6, 6]);
    clock.advance(500);
    beat(busy);
    coordinator.expireSessions();
    expect(coordinator.listGroups()[0]!.members).toBe(2);
    clock.advance(1);
    coordinator.expireSessions();
    expect(coordinator.listGroups()[0]!.members).toBe(1);
    settle([busy]);
    expect(busy.owned.length).toBe(12);
    expect((await failure(() => beat(quiet))).code).toBe(ErrorCode.NOT_FOUND);
  });

  it('keeps the session a member joined with while its heartbeats send 0, and takes a new one when sent', async () => {
    await broker.createTopic('t', 1, {});
    const member = join('g', ['t'], { sessionTimeoutMs: 300 });
    const keep = (sessionTimeoutMs: number) => coordinator.heartbeat(request({ groupId: 'g', memberId: member.memberId, memberEpoch: member.epoch, owned: member.owned, sessionTimeoutMs }));
    expect(keep(0)).toMatchObject({ heartbeatIntervalMs: 60, sessionTimeoutMs: 300 }); // a fifth of its 300 ms session, not of the default
    clock.advance(301);
    coordinator.expireSessions();
    expect(coordinator.listGroups()).toEqual([]); // expired on the session it asked for
    const other = join('h', ['t'], { sessionTimeoutMs: 300 });
    expect(coordinator.heartbeat(request({ groupId: 'h', memberId: other.memberId, memberEpoch: other.epoch, owned: other.owned, sessionTimeoutMs: 900 })).heartbeatIntervalMs).toBe(180);
    clock.advance(800);
    coordinator.expireSessions();
    expect(coordinator.listGroups()[0]!.members).toBe(1); // on its new 900 ms session
  });

  it('times sessions on a monotonic clock: a step of the system time neither expires a live member nor keeps a dead one', async () => {
    await broker.createTopic('t', 2, {});
    const live = join('g', ['t']);
    settle([live]);
    clock.set(T0 + 3_600_000); // the system time jumps an hour ahead
    coordinator.expireSessions();
    expect(coordinator.listGroups()[0]!.members).toBe(1);
    expect(label(beat(live).assignment)).toEqual(['t-0', 't-1']);
    clock.set(T0 - 3_600_000); // and an hour back
    clock.advance(SESSION_MS + 1);
    coordinator.expireSessions();
    expect(coordinator.listGroups()).toEqual([]);
  });

  it('a regular-expression subscription picks up a topic created later', async () => {
    await broker.createTopic('orders.eu', 2, {});
    await broker.createTopic('payments', 2, {});
    const member = join('g', { regex: 'orders\\..*' });
    settle([member]);
    expect(label(member.owned)).toEqual(['orders.eu-0', 'orders.eu-1']);
    await broker.createTopic('orders.us', 2, {});
    expect(label(beat(member).assignment)).toEqual(['orders.eu-0', 'orders.eu-1', 'orders.us-0', 'orders.us-1']);
    await broker.addPartitions('orders.us', 3);
    expect(label(beat(member).assignment)).toContain('orders.us-2');
  });

  it('a subscription by name to a topic that does not exist yet is served once the topic is created', async () => {
    const member = join('g', ['later']);
    expect(member.owned).toEqual([]);
    await broker.createTopic('later', 2, {});
    expect(label(beat(member).assignment)).toEqual(['later-0', 'later-1']);
  });

  // Groups exist while they have members or committed offsets: a refused join creates none.
  it('a member id of up to 100 characters is accepted; a consumer back under its id in a group made again starts above its old epochs', async () => {
    await broker.createTopic('t', 2, {});
    const id = 'm'.repeat(100);
    const first = join('g', ['t'], { memberId: id });
    expect(first.memberId).toBe(id);
    settle([first]);
    const earlier = { ...first };
    // Fenced (a future epoch): the member is removed, and with no offsets the group is forgotten.
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', memberId: id, memberEpoch: first.epoch + 5, owned: first.owned })))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(coordinator.listGroups()).toEqual([]);
    const again = join('g', ['t'], { memberId: id });
    expect(again.epoch).toBeGreaterThan(earlier.epoch);
    settle([again]);
    const stale = await failure(() => coordinator.commit('g', id, earlier.epoch, earlier.owned.map((pair) => ({ ...pair, offset: 0, metadata: '' }))));
    expect(stale.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(offsetsOf('g')).toEqual([]);
  });

  it('a refused join leaves no group behind', async () => {
    await failure(() => coordinator.heartbeat(request({ groupId: 'ghost', subscription: { topicNames: [], regex: '(' } })));
    expect(coordinator.listGroups()).toEqual([]);
    expect((await failure(() => coordinator.describeGroup('ghost'))).code).toBe(ErrorCode.NOT_FOUND);
  });

  // ...and a group whose members all left without committing is gone.
  it('a group without members or committed offsets no longer exists', async () => {
    await broker.createTopic('t', 1, {});
    const member = join('g', ['t']);
    leave(member);
    expect(coordinator.listGroups()).toEqual([]);
    expect((await failure(() => coordinator.describeGroup('g'))).code).toBe(ErrorCode.NOT_FOUND);
  });
});

describe('offset commits', () => {
  it('validates partitions and offsets before anything else', async () => {
    await broker.createTopic('t', 2, {});
    await produce('t', 0, 5, () => T0);
    const commit = (topic: string, partition: number, offset: number) => coordinator.commit('g', '', 0, [{ topic, partition, offset, metadata: '' }]);
    expect((await failure(() => commit('nope', 0, 0))).code).toBe(ErrorCode.NOT_FOUND);
    expect((await failure(() => commit('t', 2, 0))).code).toBe(ErrorCode.NOT_FOUND);
    expect((await failure(() => commit('t', 0, -1))).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((await failure(() => commit('t', 0, 6))).code).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
    const tooMuchMetadata = await failure(() => coordinator.commit('g', '', 0, [{ topic: 't', partition: 0, offset: 1, metadata: 'm'.repeat(4097) }]));
    expect(tooMuchMetadata).toEqual({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringMatching(/metadata for t-0 is 4097 bytes; the limit is 4096/) as unknown as string });
    await coordinator.commit('g', '', 0, [{ topic: 't', partition: 1, offset: 0, metadata: 'm'.repeat(4096) }]);
    await commit('t', 0, 5); // the log end itself is fine
    expect(offsetsOf('g')).toEqual([{ topic: 't', partition: 0, offset: 5 }, { topic: 't', partition: 1, offset: 0 }]);
    await coordinator.commit('g', 'anyone', 1, []); // nothing to commit: a no-op
    const controlCharacter = await failure(() => coordinator.commit('g\n', '', 0, [{ topic: 't', partition: 0, offset: 1, metadata: '' }]));
    expect(controlCharacter).toEqual({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringMatching(/unprintable character U\+000A/) as unknown as string });
    expect(offsetsOf('g\n')).toEqual([]);
  });

  it('fences commits: stale epoch, not the owner, not a member; manual commits only while the group is empty', async () => {
    await broker.createTopic('t', 4, {});
    await produce('t', 0, 3, () => T0);
    await produce('t', 3, 3, () => T0);
    const a = join('g', ['t']);
    settle([a]);
    const staleEpoch = a.epoch;
    const b = join('g', ['t']);
    settle([a, b]);
    expect(a.epoch).not.toBe(staleEpoch);
    const mine = a.owned[0]!;
    const theirs = b.owned[0]!;
    const at = (pair: Pair) => [{ ...pair, offset: 0, metadata: '' }];

    const stale = await failure(() => coordinator.commit('g', a.memberId, staleEpoch, at(mine)));
    expect(stale).toMatchObject({ code: ErrorCode.FAILED_PRECONDITION });
    expect(stale.message).toMatch(/stale member epoch/);
    const notOwner = await failure(() => coordinator.commit('g', a.memberId, a.epoch, at(theirs)));
    expect(notOwner).toMatchObject({ code: ErrorCode.FAILED_PRECONDITION });
    expect(notOwner.message).toMatch(/not the owner/);
    expect((await failure(() => coordinator.commit('g', 'stranger', a.epoch, at(mine)))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect((await failure(() => coordinator.commit('other-group', a.memberId, a.epoch, at(mine)))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    // A stale or removed member is told to rejoin whatever its offsets name: an unknown topic,
    // or an offset past the high watermark, would otherwise answer NOT_FOUND or OUT_OF_RANGE.
    for (const offsets of [[{ topic: 'nope', partition: 0, offset: 0, metadata: '' }], [{ ...mine, offset: 1_000, metadata: '' }]]) {
      expect(await failure(() => coordinator.commit('g', a.memberId, staleEpoch, offsets))).toMatchObject({ code: ErrorCode.FAILED_PRECONDITION, message: expect.stringMatching(/stale member epoch/) });
      expect(await failure(() => coordinator.commit('g', 'stranger', a.epoch, offsets))).toMatchObject({ code: ErrorCode.FAILED_PRECONDITION, message: expect.stringMatching(/is not in group "g"; rejoin/) });
    }
    // A current member still hears what is wrong with its offsets.
    expect((await failure(() => coordinator.commit('g', a.memberId, a.epoch, [{ topic: 'nope', partition: 0, offset: 0, metadata: '' }]))).code).toBe(ErrorCode.NOT_FOUND);
    const manual = await failure(() => coordinator.commit('g', '', 0, at(mine)));
    expect(manual.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(manual.message).toBe(`group "g" has 2 members; only its members may commit: commit as a member, under another group id, or once the group has none`);
    expect(offsetsOf('g')).toEqual([]);

    clock.advance(1234);
    await coordinator.commit('g', a.memberId, a.epoch, [{ ...mine, offset: 0, metadata: 'by a' }]);
    expect(coordinator.fetchOffsets('g', [])).toEqual([{ ...mine, offset: 0, metadata: 'by a', commitTimeMs: T0 + 1234 }]);

    leave(a);
    leave(b);
    await coordinator.commit('g', '', 0, [{ topic: 't', partition: 3, offset: 3, metadata: 'manual' }]);
    expect(offsetsOf('g', ['t'])).toEqual([{ ...mine, offset: 0 }, { topic: 't', partition: 3, offset: 3 }].sort((x, y) => x.partition - y.partition));
    expect(offsetsOf('g', ['other'])).toEqual([]);
  });

  /** Topics t and u of one partition each, and a settled member of group g owning both partitions. */
  it("a member that never gives up a deleted topic's partition is removed once it has held it a session timeout", async () => {
    const member = await memberOfTwoTopics();
    const held = [...member.owned];
    await broker.deleteTopic('u');
    expectRemovedWhileHolding(member, member.epoch, held);
  });

  it("a member whose subscription left a topic is still told of its deletion: its commit of the old partition is left out, and it is removed if it never gives it up", async () => {
    const member = await memberOfTwoTopics();
    const held = [...member.owned];
    expect(label(held)).toEqual(['t-0', 'u-0']);
    // Its subscription moves away from u: u-0 is being revoked when u is deleted and created again.
    const epoch = coordinator.heartbeat(request({ groupId: 'g', memberId: member.memberId, memberEpoch: member.epoch, owned: held, subscription: { topicNames: ['t'], regex: '' } })).memberEpoch;
    await broker.deleteTopic('u');
    await broker.createTopic('u', 1, {});
    await produce('u', 0, 3, () => T0);
    // Its revocation commit of u-0 is left out: that position was read from the deleted topic.
    await coordinator.commit('g', member.memberId, epoch, [{ topic: 'u', partition: 0, offset: 2, metadata: '' }]);
    expect(offsetsOf('g', ['u'])).toEqual([]);
    // It heartbeats on, still claiming u-0: removed once it has held it past a session timeout.
    expectRemovedWhileHolding(member, epoch, held);
  });

  it('refuses an offset past the high watermark: records written but not yet durable cannot have been read', async () => {
    await broker.createTopic('t', 1, {});
    await produce('t', 0, 2, () => T0);
    const sync = fs.hold('fdatasync');
    try {
      const written = broker.produceRecords('t', 0, RecordRanges.of([{ value: Buffer.from('x'), timestamp: T0 }]), 'leader', null);
      await sync.reached;
      await written; // acks=leader: written, its fdatasync held
      const log = broker.partitionLog('t', 0);
      expect([log.highWatermark, log.logEndOffset]).toEqual([2, 3]);
      const past = await failure(() => coordinator.commit('g', '', 0, [{ topic: 't', partition: 0, offset: 3, metadata: '' }]));
      expect(past).toEqual({ code: ErrorCode.OFFSET_OUT_OF_RANGE, message: expect.stringMatching(/offset 3 for t-0 is beyond the high watermark 2/) as unknown as string });
      await coordinator.commit('g', '', 0, [{ topic: 't', partition: 0, offset: 2, metadata: '' }]);
    } finally {
      sync.release();
    }
    expect(offsetsOf('g')).toEqual([{ topic: 't', partition: 0, offset: 2 }]);
  });

  it("does not store a member's offsets of a partition whose topic was deleted while it owned it, even once a topic of that name is created again", async () => {
    const member = await memberOfTwoTopics();
    expect(label(member.owned)).toEqual(['t-0', 'u-0']);
    await broker.deleteTopic('u');
    await broker.createTopic('u', 1, {});
    await produce('u', 0, 10, () => T0);
    // The member still reads the old u-0 (it has not heartbeated): its position there is not the new topic's.
    await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 't', partition: 0, offset: 0, metadata: '' }, { topic: 'u', partition: 0, offset: 5, metadata: '' }]);
    expect(offsetsOf('g')).toEqual([{ topic: 't', partition: 0, offset: 0 }]);
    // Even alone, such a commit is still checked for the member's epoch.
    expect((await failure(() => coordinator.commit('g', member.memberId, member.epoch - 1, [{ topic: 'u', partition: 0, offset: 5, metadata: '' }]))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    // Once it gave the old u-0 up, it is assigned the new one, whose offsets it commits.
    expect(label(beat(member).assignment)).toEqual(['t-0']);
    expect(label(beat(member).assignment)).toEqual(['t-0', 'u-0']);
    await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 'u', partition: 0, offset: 7, metadata: '' }]);
    expect(offsetsOf('g')).toEqual([{ topic: 't', partition: 0, offset: 0 }, { topic: 'u', partition: 0, offset: 7 }]);
  });
});

describe('commits while a topic is being deleted', () => {
  it("stores the other partitions of a member's commit, not refusing it for the topic whose files are still being moved out", async () => {
    const member = await memberOfTwoTopics();
    const move = fs.hold('rename', '/deleted/'); // the move into the graveyard
    const deleted = broker.deleteTopic('u');
    try {
      await move.reached; // u is gone from the topics; its directory is being moved out
      await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 't', partition: 0, offset: 0, metadata: '' }, { topic: 'u', partition: 0, offset: 5, metadata: '' }]);
    } finally {
      move.release();
      await deleted;
    }
    expect(offsetsOf('g')).toEqual([{ topic: 't', partition: 0, offset: 0 }]);
  });

  it('refuses a commit naming its topic by another creation time (deleted and created again since), storing nothing; 0 or the right time is stored', async () => {
    await broker.createTopic('again', 1, {});
    const before = broker.topicCreatedAtMs('again');
    await broker.deleteTopic('again');
    await broker.createTopic('again', 1, {});
    await produce('again', 0, 5, () => T0);
    const now = broker.topicCreatedAtMs('again');
    const commit = (topicCreatedAtMs: number, offset: number) => coordinator.commit('manual', '', 0, [{ topic: 'again', partition: 0, offset, metadata: '', topicCreatedAtMs }]);
    const refused = await failure(() => commit(before, 3));
    expect(refused.code).toBe(ErrorCode.NOT_FOUND);
    expect(refused.message).toMatch(/^topic "again" created at .* is gone; the topic of that name now was created at/);
    expect(offsetsOf('manual')).toEqual([]);
    await commit(now, 2);
    expect(offsetsOf('manual')).toEqual([{ topic: 'again', partition: 0, offset: 2 }]);
    await commit(0, 4);
    expect(offsetsOf('manual')).toEqual([{ topic: 'again', partition: 0, offset: 4 }]);
  });

  it('a dry run answers the offsets a reset would set and stores nothing', async () => {
    await broker.createTopic('preview', 2, {});
    await produce('preview', 1, 4, () => T0);
    expect(await coordinator.resetOffsets('g', 'preview', [], { kind: 'latest' }, true)).toMatchObject([
      { topic: 'preview', partition: 0, offset: 0 },
      { topic: 'preview', partition: 1, offset: 4 },
    ]);
    expect(offsetsOf('g')).toEqual([]);
    expect(coordinator.listGroups()).toEqual([]);
    // Refused as a reset is while the group has members.
    settle([join('busy', ['preview'])]);
    expect((await failure(() => coordinator.resetOffsets('busy', 'preview', [], { kind: 'latest' }, true))).code).toBe(ErrorCode.FAILED_PRECONDITION);
  });

  it('stores nothing of a reset to a time whose lookup waits while the topic is deleted: a topic created again under the name starts with no offsets', async () => {
    await broker.createTopic('gone', 1, {});
    await produce('gone', 0, 5, (i) => T0 + i * 1_000);
    // Restarted, so that the lookup by time reads the files (not the tail cache), where a read can be held.
    coordinator.close();
    await broker.close();
    broker = await Broker.open({ dataDir, clock, fs, inlineIo: false });
    coordinator = newCoordinator();
    const read = fs.hold('read');
    const reset = failure(() => coordinator.resetOffsets('g', 'gone', [], { kind: 'timestamp', timestamp: T0 + 3_000 }));
    let deleted: Promise<void> | null = null;
    try {
      await read.reached;
      deleted = broker.deleteTopic('gone');
      await waitUntil(() => !broker.hasTopic('gone'), 'the topic to leave the broker');
    } finally {
      read.release();
    }
    await deleted;
    const refused = await reset;
    expect(refused).toEqual({ code: ErrorCode.NOT_FOUND, message: 'topic "gone" was deleted while the reset looked up its offsets; nothing was stored' });
    await broker.createTopic('gone', 1, {});
    expect(offsetsOf('g')).toEqual([]);
  });

  it('describes a group whose topic is deleted while the description reads a record for its lag time', async () => {
    const member = await memberOfTwoTopics();
    await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 't', partition: 0, offset: 0, metadata: '' }, { topic: 'u', partition: 0, offset: 0, metadata: '' }]);
    // Restarted, so that the lag times are read from the files (not the tail cache), where a read can be held.
    coordinator.close();
    await broker.close();
    broker = await Broker.open({ dataDir, clock, fs, inlineIo: false });
    coordinator = newCoordinator();
    const read = fs.hold('read');
    const described = coordinator.describeGroup('g');
    try {
      await read.reached; // t-0's oldest record; u-0 comes next
      await broker.deleteTopic('u');
    } finally {
      read.release();
    }
    const description = await described;
    expect(description.partitions.map(({ topic, partition, lag }) => ({ topic, partition, lag }))).toEqual([
      { topic: 't', partition: 0, lag: 5 },
      { topic: 'u', partition: 0, lag: 5 },
    ]);
    // u-0's oldest record could not be read (its log closed): its age is unknown (-1), not 0, which would read as fresh.
    expect(description.partitions.map(({ lagMs }) => lagMs)).toEqual([0, -1]); // t-0: its records are stamped with the clock's time
  });
});

describe('lag', () => {
  it('is exact: records past the committed offset (from the log start when nothing is committed), aged by record timestamps', async () => {
    await broker.createTopic('lag', 2, {});
    await produce('lag', 0, 10, (i) => T0 - 60_000 + i * 1_000);
    await produce('lag', 1, 5, (i) => T0 - 30_000 + i * 1_000);
    const member = join('g', ['lag'], { clientId: 'lag-client', instanceId: 'pod-1' });
    settle([member]);
    await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 'lag', partition: 0, offset: 4, metadata: '' }]);
    clock.advance(5_000);
    const now = T0 + 5_000;

    const description = await coordinator.describeGroup('g');
    expect(description.partitions).toEqual([
      { topic: 'lag', partition: 0, committedOffset: 4, logEndOffset: 10, lag: 6, lagMs: now - (T0 - 60_000 + 4_000), memberId: member.memberId },
      { topic: 'lag', partition: 1, committedOffset: -1, logEndOffset: 5, lag: 5, lagMs: now - (T0 - 30_000), memberId: member.memberId },
    ]);
    expect(description.totalLag).toBe(11);
    expect(description).toMatchObject({ groupId: 'g', state: 'stable', assignor: 'uniform' });
    expect(description.members).toEqual([
      {
        memberId: member.memberId,
        instanceId: 'pod-1',
        clientId: 'lag-client',
        host: '127.0.0.1:1',
        memberEpoch: member.epoch,
        assignment: [{ topic: 'lag', partition: 0 }, { topic: 'lag', partition: 1 }],
        subscribedTopicNames: ['lag'],
        subscribedTopicRegex: '',
      },
    ]);

    await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 'lag', partition: 0, offset: 10, metadata: '' }, { topic: 'lag', partition: 1, offset: 5, metadata: '' }]);
    const caughtUp = await coordinator.describeGroup('g');
    expect(caughtUp.partitions.map(({ lag, lagMs }) => ({ lag, lagMs }))).toEqual([{ lag: 0, lagMs: 0 }, { lag: 0, lagMs: 0 }]);
    expect(caughtUp.totalLag).toBe(0);
  });

  it('counts from the log start offset when retention removed what was committed', async () => {
    // One ~600-byte batch per 1 KiB segment; retention.bytes=1 deletes every sealed segment.
    await broker.createTopic('trim', 1, { 'segment.bytes': '1024', 'retention.bytes': '1' });
    for (let i = 0; i < 5; i++) await produce('trim', 0, 1, () => T0 - 10_000 + i, 600);
    await broker.applyRetention();
    const log = broker.partitionLog('trim', 0);
    expect(log.logStartOffset).toBe(4);
    await coordinator.commit('g', '', 0, [{ topic: 'trim', partition: 0, offset: 1, metadata: '' }]);
    const [entry] = (await coordinator.describeGroup('g')).partitions;
    expect(entry).toEqual({ topic: 'trim', partition: 0, committedOffset: 1, logEndOffset: 5, lag: 1, lagMs: T0 - (T0 - 10_000 + 4), memberId: '' });
    const reset = await coordinator.resetOffsets('g', 'trim', [], { kind: 'earliest' });
    expect(reset.map(({ offset }) => offset)).toEqual([4]);
  });
});

describe('administration', () => {
  async function resetScenario(): Promise<void> {
    await broker.createTopic('r', 2, {});
    await produce('r', 0, 10, (i) => T0 + i * 1_000);
    await produce('r', 1, 4, (i) => T0 + i * 1_000);
  }
  const reset = async (to: Parameters<GroupCoordinator['resetOffsets']>[3], partitions: number[] = []) =>
    (await coordinator.resetOffsets('g', 'r', partitions, to)).map(({ partition, offset }) => [partition, offset]);

  it('refuses a reset of every partition of an illegal topic name with INVALID_ARGUMENT, of an unknown one with NOT_FOUND', async () => {
    expect((await failure(() => coordinator.resetOffsets('g', '..', [], { kind: 'earliest' }))).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((await failure(() => coordinator.resetOffsets('g', 'no-such-topic', [], { kind: 'earliest' }))).code).toBe(ErrorCode.NOT_FOUND);
  });

  it('resets offsets of an empty group to earliest, latest, an offset, a timestamp, or by a shift (clamped to the log)', async () => {
    await resetScenario();
    expect(await reset({ kind: 'latest' })).toEqual([[0, 10], [1, 4]]);
    expect(await reset({ kind: 'earliest' })).toEqual([[0, 0], [1, 0]]);
    expect(await reset({ kind: 'offset', offset: 7 })).toEqual([[0, 7], [1, 4]]);
    expect(await reset({ kind: 'shiftBy', shift: -2 })).toEqual([[0, 5], [1, 2]]);
    expect(await reset({ kind: 'shiftBy', shift: 100 })).toEqual([[0, 10], [1, 4]]);
    expect(await reset({ kind: 'shiftBy', shift: -100 })).toEqual([[0, 0], [1, 0]]);
    expect(await reset({ kind: 'timestamp', timestamp: T0 + 2_500 })).toEqual([[0, 3], [1, 3]]);
    expect(await reset({ kind: 'timestamp', timestamp: T0 + 3_500 })).toEqual([[0, 4], [1, 4]]); // none later in p1: its end
    expect(await reset({ kind: 'offset', offset: 1 }, [1])).toEqual([[1, 1]]);
    expect(offsetsOf('g')).toEqual([{ topic: 'r', partition: 0, offset: 4 }, { topic: 'r', partition: 1, offset: 1 }]);
    expect((await failure(() => reset({ kind: 'earliest' }, [2]))).code).toBe(ErrorCode.NOT_FOUND);
    expect((await failure(() => coordinator.resetOffsets('g', 'nope', [], { kind: 'earliest' }))).code).toBe(ErrorCode.NOT_FOUND);
  });

  it('refuses a reset that names a fenced partition with the fence, and commits none of its partitions', async () => {
    await resetScenario();
    await reset({ kind: 'earliest' });
    fs.failFdatasync = true;
    expect((await failure(() => produce('r', 1, 1, () => T0))).code).toBe(ErrorCode.PARTITION_FENCED);
    fs.failFdatasync = false;
    for (const to of [{ kind: 'latest' }, { kind: 'offset', offset: 2 }, { kind: 'shiftBy', shift: 1 }] as const) {
      expect((await failure(() => reset(to))).code, to.kind).toBe(ErrorCode.PARTITION_FENCED);
    }
    expect(offsetsOf('g')).toEqual([{ topic: 'r', partition: 0, offset: 0 }, { topic: 'r', partition: 1, offset: 0 }]);
    expect(await reset({ kind: 'latest' }, [0])).toEqual([[0, 10]]);
  });

  it('shifts from the log start when nothing is committed yet', async () => {
    await resetScenario();
    expect(await reset({ kind: 'shiftBy', shift: 3 })).toEqual([[0, 3], [1, 3]]);
  });

  it('refuses resets, offset deletion and group deletion while the group has members, saying why', async () => {
    await resetScenario();
    const member = join('g', ['r']);
    for (const call of [() => reset({ kind: 'earliest' }), () => coordinator.deleteOffsets('g', ['r']), () => coordinator.deleteGroup('g')]) {
      const error = await failure(call);
      expect(error.code).toBe(ErrorCode.FAILED_PRECONDITION);
      expect(error.message).toMatch(/: it has 1 member; stop its consumers first \(.*: once they are stopped, try again within 1 s\)$/);
    }
    leave(member);
    await reset({ kind: 'earliest' });
  });

  // The usual steps (stop the consumers, then reset) meet a member that is gone but still counted:
  // a static member that left with epoch -2, or a consumer killed without leaving. The refusal
  // says so, and when the last such member goes.
  it('says, when refusing, that members which stopped heartbeating keep their place until their sessions end', async () => {
    await resetScenario();
    const live = join('g', ['r']);
    const refusal = async (): Promise<string> => (await failure(() => reset({ kind: 'earliest' }))).message;
    expect(await refusal()).toBe(
      'cannot reset offsets of group "g": it has 1 member; stop its consumers first (a static member that left, or a consumer stopped without leaving, keeps its place until its session ends: once they are stopped, try again within 1 s)',
    );
    leave(live);
    const parked = join('g', ['r'], { instanceId: 'pod-1' });
    coordinator.heartbeat(request({ groupId: 'g', memberId: parked.memberId, memberEpoch: -2 }));
    clock.advance(300);
    expect(await refusal()).toBe(
      'cannot reset offsets of group "g": it has 1 member whose session has not ended, none heartbeating (a static member that left, or a consumer stopped without leaving, keeps its place until its session ends); try again within 1 s',
    );
    // Beside a member that heartbeats, the advice is still to stop that one.
    const other = join('g', ['r']);
    expect(await refusal()).toBe(
      'cannot reset offsets of group "g": it has 2 members, 1 of them with no recent heartbeat; stop its consumers first (a static member that left, or a consumer stopped without leaving, keeps its place until its session ends: once they are stopped, try again within 1 s)',
    );
    leave(other);
    clock.advance(SESSION_MS);
    coordinator.expireSessions();
    await reset({ kind: 'earliest' });
  });

  // An operator who has just killed every consumer retries at once: the members' last heartbeats
  // are recent, so the broker cannot know they are stopped. It calls none of them active, and
  // says when the last session ends: counted from each member's last heartbeat, not from the
  // broker's default session, and from a static member's leave.
  it('refusing while members heartbeated moments ago, says when the last session ends rather than calling them active', async () => {
    await resetScenario();
    const first = join('g', ['r'], { sessionTimeoutMs: 3_000 });
    const parked = join('g', ['r'], { sessionTimeoutMs: 6_000, instanceId: 'pod-2' });
    clock.advance(2_800);
    beat(first); // its session now ends at 5.8 s
    coordinator.heartbeat(request({ groupId: 'g', memberId: parked.memberId, memberEpoch: -2 })); // away from 2.8 s: ends at 8.8 s
    clock.advance(300); // the first killed just after its heartbeat, 300 ms ago: less than two intervals (200 ms each)
    const message = (await failure(() => reset({ kind: 'earliest' }))).message;
    expect(message).not.toMatch(/active/);
    expect(message).toBe(
      'cannot reset offsets of group "g": it has 2 members, 1 of them with no recent heartbeat; stop its consumers first (a static member that left, or a consumer stopped without leaving, keeps its place until its session ends: once they are stopped, try again within 6 s)',
    );
    leave(first);
  });

  it('deletes offsets per topic and whole groups once empty; unknown groups are NOT_FOUND', async () => {
    await resetScenario();
    await broker.createTopic('s', 1, {});
    await coordinator.commit('g', '', 0, [{ topic: 'r', partition: 0, offset: 3, metadata: '' }, { topic: 's', partition: 0, offset: 0, metadata: '' }]);
    await coordinator.deleteOffsets('g', ['r']);
    expect(offsetsOf('g')).toEqual([{ topic: 's', partition: 0, offset: 0 }]);
    await coordinator.deleteGroup('g');
    expect(offsetsOf('g')).toEqual([]);
    expect(coordinator.listGroups()).toEqual([]);
    for (const call of [() => coordinator.describeGroup('g'), () => coordinator.deleteOffsets('g', []), () => coordinator.deleteGroup('g')]) {
      expect((await failure(call)).code).toBe(ErrorCode.NOT_FOUND);
    }
  });

  it('forgets a group whose last member left once its offsets are deleted, by DeleteOffsets or with their topic', async () => {
    await broker.createTopic('t', 1, {});
    await broker.createTopic('doomed', 1, {});
    for (const [groupId, topic] of [['by-delete-offsets', 't'], ['by-topic-deletion', 'doomed']] as const) {
      const member = join(groupId, [topic]);
      settle([member]);
      await coordinator.commit(groupId, member.memberId, member.epoch, [{ topic, partition: 0, offset: 0, metadata: '' }]);
      leave(member);
    }
    expect(coordinator.listGroups().map(({ groupId, members }) => [groupId, members])).toEqual([['by-delete-offsets', 0], ['by-topic-deletion', 0]]);
    await coordinator.deleteOffsets('by-delete-offsets', []);
    await broker.deleteTopic('doomed');
    await waitUntil(() => coordinator.fetchOffsets('by-topic-deletion', []).length === 0, 'offsets of the deleted topic to go');
    expect(coordinator.listGroups()).toEqual([]);
    for (const groupId of ['by-delete-offsets', 'by-topic-deletion']) expect((await failure(() => coordinator.describeGroup(groupId))).code).toBe(ErrorCode.NOT_FOUND);
  });

  it("logs the groups whose offsets a topic's deletion removed, and those of them it left with nothing", async () => {
    const lines: { msg: string; topic?: string; groups?: string[]; groupCount?: number; groupsGone?: string[]; groupsGoneCount?: number }[] = [];
    void coordinator.close();
    coordinator = newCoordinator({ logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) }) });
    await broker.createTopic('t', 1, {});
    await broker.createTopic('doomed', 1, {});
    await coordinator.commit('only-doomed', '', 0, [{ topic: 'doomed', partition: 0, offset: 0, metadata: '' }]);
    await coordinator.commit('both', '', 0, [
      { topic: 'doomed', partition: 0, offset: 0, metadata: '' },
      { topic: 't', partition: 0, offset: 0, metadata: '' },
    ]);
    await coordinator.commit('only-t', '', 0, [{ topic: 't', partition: 0, offset: 0, metadata: '' }]);
    await broker.deleteTopic('doomed');
    const removed = (): (typeof lines)[number] | undefined => lines.find((line) => line.msg.startsWith("removed the deleted topic's committed offsets"));
    await waitUntil(() => removed() !== undefined, 'the line about the removed offsets');
    expect(removed()).toMatchObject({ topic: 'doomed', groupCount: 2, groupsGone: ['only-doomed'], groupsGoneCount: 1 });
    expect([...removed()!.groups!].sort()).toEqual(['both', 'only-doomed']);
  });

  it('gives the first member of an emptied group that names no assignor the default, as after a restart', async () => {
    await broker.createTopic('t', 1, {});
    const first = join('g', ['t'], { assignor: 'range' });
    settle([first]);
    await coordinator.commit('g', first.memberId, first.epoch, [{ topic: 't', partition: 0, offset: 0, metadata: '' }]);
    expect((await coordinator.describeGroup('g')).assignor).toBe('range');
    leave(first); // the group stays: it has offsets
    join('g', ['t']);
    expect((await coordinator.describeGroup('g')).assignor).toBe('uniform');
  });

  it('lists groups with their state: empty (offsets only), stable, reconciling while a revocation is pending', async () => {
    await broker.createTopic('t', 4, {});
    await coordinator.commit('a-offsets-only', '', 0, [{ topic: 't', partition: 0, offset: 0, metadata: '' }]);
    settle([join('b-stable', ['t'])]);
    const first = join('c-moving', ['t']);
    settle([first]);
    const second = join('c-moving', ['t']);
    beat(first); // told to give up two partitions, has not acknowledged yet
    expect(coordinator.listGroups()).toEqual([
      { groupId: 'a-offsets-only', state: 'empty', members: 0 },
      { groupId: 'b-stable', state: 'stable', members: 1 },
      { groupId: 'c-moving', state: 'reconciling', members: 2 },
    ]);
    settle([first, second]);
    expect(coordinator.listGroups()[2]!.state).toBe('stable');
  });

  it('deleting a topic deletes its committed offsets and releases its partitions', async () => {
    await broker.createTopic('keep', 2, {});
    await broker.createTopic('doomed', 2, {});
    const member = join('g', ['keep', 'doomed']);
    settle([member]);
    await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 'keep', partition: 0, offset: 0, metadata: '' }, { topic: 'doomed', partition: 1, offset: 0, metadata: '' }]);
    await coordinator.commit('other', '', 0, [{ topic: 'doomed', partition: 0, offset: 0, metadata: '' }]);
    await broker.deleteTopic('doomed');
    await waitUntil(() => coordinator.fetchOffsets('g', ['doomed']).length === 0 && coordinator.fetchOffsets('other', []).length === 0, 'offsets of the deleted topic to go');
    expect(offsetsOf('g')).toEqual([{ topic: 'keep', partition: 0, offset: 0 }]);
    expect(label(beat(member).assignment)).toEqual(['keep-0', 'keep-1']);
    expect((await coordinator.describeGroup('g')).partitions.map(({ topic }) => topic)).toEqual(['keep', 'keep']);
  });

  it('refuses a join while a group deletion or a reset to a timestamp waits on LMDB, so no member is left in a deleted group', async () => {
    await resetScenario();
    await reset({ kind: 'earliest' }); // the group exists through its offsets
    const deleting = coordinator.deleteGroup('g');
    const refused = await failure(() => join('g', ['r']));
    expect(refused.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(refused.message).toMatch(/being changed by an administrative call/);
    await deleting;
    expect(coordinator.listGroups()).toEqual([]);
    const resetting = reset({ kind: 'timestamp', timestamp: T0 });
    expect((await failure(() => join('g', ['r']))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    await resetting;
    const member = join('g', ['r']); // once it is over, joins go through
    expect(member.memberId).not.toBe('');
  });

  it('refuses a commit without a member while a reset or a deletion of the group is under way, so neither is undone', async () => {
    await resetScenario();
    const commit = (offset: number) => coordinator.commit('g', '', 0, [{ topic: 'r', partition: 0, offset, metadata: '' }]);
    const resetting = coordinator.resetOffsets('g', 'r', [0], { kind: 'offset', offset: 2 });
    const refused = await failure(() => commit(7));
    expect(refused.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(refused.message).toBe('group "g" is being changed by an administrative call (offsets reset, deleted or expired); commit again once it has finished');
    expect((await resetting).map(({ offset }) => offset)).toEqual([2]);
    expect(offsetsOf('g')).toEqual([{ topic: 'r', partition: 0, offset: 2 }]);
    const deleting = coordinator.deleteGroup('g');
    expect((await failure(() => commit(7))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    await deleting;
    expect(coordinator.listGroups()).toEqual([]);
  });

  it('removes the offsets a failed deletion left before a topic of that name is created again, and refuses the creation while it cannot', async () => {
    await broker.createTopic('doomed', 1, {});
    await coordinator.commit('g', '', 0, [{ topic: 'doomed', partition: 0, offset: 0, metadata: '' }]);
    // The store's deletion fails (a full disk, say) twice: at the topic's deletion, and at the first re-creation.
    const offsets = (coordinator as unknown as { offsets: { deleteTopic(topic: string): Promise<void> } }).offsets;
    const deleteTopic = offsets.deleteTopic.bind(offsets);
    let failures = 2;
    offsets.deleteTopic = async (topic) => {
      if (failures-- > 0) throw Object.assign(new Error('MDB_MAP_FULL: Environment mapsize limit reached'), { code: 'MDB_MAP_FULL' });
      return deleteTopic(topic);
    };
    // The topic is deleted all the same, and the answer says so.
    const deleted = await failure(() => broker.deleteTopic('doomed'));
    expect(deleted.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(deleted.message).toBe(
      'topic "doomed" is deleted, but removing its committed offsets failed (MDB_MAP_FULL): they are removed before a topic of this name is created again (which is refused while they cannot be), or at the next start',
    );
    expect(offsetsOf('g')).toEqual([{ topic: 'doomed', partition: 0, offset: 0 }]);
    const refused = await failure(() => broker.createTopic('doomed', 1, {}));
    expect(refused.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(refused.message).toMatch(/^the committed offsets of the deleted topic "doomed" could not be removed \(.*MDB_MAP_FULL.*\), and a topic of that name would start from them: it is not created; retry$/);
    expect(broker.listTopics().map((topic) => topic.name)).not.toContain('doomed');
    await broker.createTopic('doomed', 1, {});
    expect(offsetsOf('g')).toEqual([]);
  });

  it('removes, at start, committed offsets of a topic whose deletion a crash interrupted', async () => {
    await broker.createTopic('kept', 1, {});
    await broker.createTopic('gone', 1, {});
    await coordinator.commit('g', '', 0, [{ topic: 'kept', partition: 0, offset: 0, metadata: '' }, { topic: 'gone', partition: 0, offset: 0, metadata: '' }]);
    // The crash: the topic record is gone, its offsets are not.
    await broker.metadataStore.deleteTopic('gone', clock.nowMs());
    coordinator.close();
    await broker.close();
    broker = await Broker.open({ dataDir, clock });
    coordinator = newCoordinator();
    expect(offsetsOf('g')).toEqual([{ topic: 'gone', partition: 0, offset: 0 }, { topic: 'kept', partition: 0, offset: 0 }]);
    await coordinator.removeOrphanOffsets();
    expect(offsetsOf('g')).toEqual([{ topic: 'kept', partition: 0, offset: 0 }]);
  });

  // A commit is checked against the high watermark, but a crash can take the records it passed
  // (flush=interval, or a repair that cut a damaged log): the offsets are given out again, and a
  // group resuming from its old commit would skip the records written there.
  it('lowers, at start, committed offsets past their partition\'s end to it, keeping the others and their metadata', async () => {
    await broker.createTopic('t', 2, {});
    await produce('t', 0, 3, () => T0);
    await produce('t', 1, 5, () => T0);
    await coordinator.commit('g', '', 0, [{ topic: 't', partition: 0, offset: 3, metadata: 'kept' }, { topic: 't', partition: 1, offset: 2, metadata: '' }]);
    await coordinator.commit('h', '', 0, [{ topic: 't', partition: 1, offset: 5, metadata: '' }]);
    // What the crash leaves: commits past records that are gone.
    await new OffsetStore(broker.metadataStore.root).commit('g', [{ topic: 't', partition: 0, offset: 9, metadata: 'kept', commitTimeMs: T0 }]);
    await new OffsetStore(broker.metadataStore.root).commit('h', [{ topic: 't', partition: 1, offset: 7, metadata: '', commitTimeMs: T0 }]);
    await coordinator.lowerOffsetsPastLogEnds();
    expect(offsetsOf('g')).toEqual([{ topic: 't', partition: 0, offset: 3 }, { topic: 't', partition: 1, offset: 2 }]);
    expect(offsetsOf('h')).toEqual([{ topic: 't', partition: 1, offset: 5 }]);
    expect(coordinator.fetchOffsets('g', [])[0]).toMatchObject({ metadata: 'kept', commitTimeMs: T0 });
    // New records take the offsets again, and the group reads them: its lag counts them.
    await produce('t', 0, 4, () => T0);
    expect((await coordinator.describeGroup('g')).partitions.find((entry) => entry.partition === 0)).toMatchObject({ committedOffset: 3, logEndOffset: 7, lag: 4 });
  });
});

describe('offsets retention', () => {
  const RETENTION_MS = 24 * 60 * 60 * 1000;

  /**
   * A coordinator on the same broker with `offsetsRetentionMs`, as after a restart (nothing seen
   * empty yet); returns the groups it reports forgotten (for the metrics), in order.
   */
  function coordinatorWithRetention(offsetsRetentionMs: number): string[] {
    const forgotten: string[] = [];
    void coordinator.close();
    coordinator = newCoordinator({ offsetsRetentionMs, events: { rebalanced: () => undefined, forgotten: (groupId) => forgotten.push(groupId) } });
    return forgotten;
  }

  it('deletes the offsets of a group once it has had no members and no commit for the retention, timed from when it was first seen empty', async () => {
    const forgotten = coordinatorWithRetention(RETENTION_MS);
    await broker.createTopic('t', 1, {});
    await produce('t', 0, 3, () => T0);
    const member = join('g', ['t']);
    settle([member]);
    await coordinator.commit('g', member.memberId, member.epoch, [{ topic: 't', partition: 0, offset: 2, metadata: '' }]);
    clock.advance(2 * RETENTION_MS);
    expect(await coordinator.expireOffsets()).toEqual([]); // a member: kept, however old its commit
    leave(member);
    expect(await coordinator.expireOffsets()).toEqual([]); // empty from now on
    clock.advance(RETENTION_MS);
    expect(await coordinator.expireOffsets()).toEqual([]); // exactly the retention: kept
    expect(offsetsOf('g')).toEqual([{ topic: 't', partition: 0, offset: 2 }]);
    clock.advance(1);
    expect(await coordinator.expireOffsets()).toEqual(['g']);
    expect(offsetsOf('g')).toEqual([]);
    expect(coordinator.listGroups().map((group) => group.groupId)).not.toContain('g');
    expect(coordinator.lagByTopic().filter((entry) => entry.groupId === 'g')).toEqual([]);
    expect(forgotten).toEqual(['g']); // its metric series go with it
  });

  it('decides inside the expiry\'s transaction: a commit after the cutoff keeps all of the group\'s offsets', async () => {
    await broker.createTopic('t', 2, {});
    await produce('t', 0, 3, () => T0);
    const store = new OffsetStore(broker.metadataStore.root);
    await store.commit('g', [{ topic: 't', partition: 0, offset: 1, metadata: '', commitTimeMs: T0 }]);
    await store.commit('g', [{ topic: 't', partition: 1, offset: 0, metadata: '', commitTimeMs: T0 + 10 }]);
    expect(await store.expireGroupOffsets('g', T0 + 9)).toBe(false); // the second is newer than the cutoff
    expect(store.list('g')).toHaveLength(2);
    expect(await store.expireGroupOffsets('g', T0 + 10)).toBe(true);
    expect(store.list('g')).toEqual([]);
    expect(await store.expireGroupOffsets('g', T0 + 10)).toBe(false); // nothing left to expire
  });

  it('starts the time without members again after a member came and went between two checks, and ignores jumps of the wall clock', async () => {
    coordinatorWithRetention(RETENTION_MS);
    await broker.createTopic('t', 1, {});
    await produce('t', 0, 3, () => T0);
    await coordinator.commit('g', '', 0, [{ topic: 't', partition: 0, offset: 1, metadata: '' }]);
    expect(await coordinator.expireOffsets()).toEqual([]);
    clock.advance(RETENTION_MS - 1);
    leave(join('g', ['t'])); // between two checks: no check saw it
    clock.advance(2);
    expect(await coordinator.expireOffsets()).toEqual([]); // empty again only from this check
    clock.set(clock.nowMs() + 10 * RETENTION_MS); // the system time jumps: no time without members passed
    expect(await coordinator.expireOffsets()).toEqual([]);
    clock.advance(RETENTION_MS + 1);
    expect(await coordinator.expireOffsets()).toEqual(['g']);
  });

  it('keeps the offsets of an empty group while member-less commits keep coming, and of every group when retention is -1', async () => {
    coordinatorWithRetention(RETENTION_MS);
    await broker.createTopic('t', 2, {});
    await produce('t', 0, 3, () => T0);
    const commit = (groupId: string, partition: number, offset: number) => coordinator.commit(groupId, '', 0, [{ topic: 't', partition, offset, metadata: '' }]);
    await commit('standalone', 0, 1);
    await commit('other', 0, 1);
    expect(await coordinator.expireOffsets()).toEqual([]);
    clock.advance(RETENTION_MS);
    await commit('standalone', 1, 0); // one recent commit keeps all of the group's offsets
    clock.advance(1);
    expect(await coordinator.expireOffsets()).toEqual(['other']);
    expect(offsetsOf('standalone')).toEqual([{ topic: 't', partition: 0, offset: 1 }, { topic: 't', partition: 1, offset: 0 }]);
    clock.advance(RETENTION_MS);
    expect(await coordinator.expireOffsets()).toEqual(['standalone']);

    coordinatorWithRetention(-1);
    await commit('forever', 0, 1);
    expect(await coordinator.expireOffsets()).toEqual([]);
    clock.advance(100 * RETENTION_MS);
    expect(await coordinator.expireOffsets()).toEqual([]);
    expect(offsetsOf('forever')).toEqual([{ topic: 't', partition: 0, offset: 1 }]);
  });

  it('after a restart gives an empty group the whole retention again, and never expires a group a member joins meanwhile', async () => {
    coordinatorWithRetention(RETENTION_MS);
    await broker.createTopic('t', 1, {});
    await produce('t', 0, 3, () => T0);
    await coordinator.commit('g', '', 0, [{ topic: 't', partition: 0, offset: 1, metadata: '' }]);
    await coordinator.commit('h', '', 0, [{ topic: 't', partition: 0, offset: 1, metadata: '' }]);
    clock.advance(10 * RETENTION_MS);
    coordinatorWithRetention(RETENTION_MS); // as after a restart: commits long past, but emptiness not yet seen
    expect(await coordinator.expireOffsets()).toEqual([]);
    clock.advance(RETENTION_MS + 1);
    const member = join('h', ['t']);
    expect(await coordinator.expireOffsets()).toEqual(['g']);
    expect(offsetsOf('h')).toEqual([{ topic: 't', partition: 0, offset: 1 }]);
    leave(member);
    expect(await coordinator.expireOffsets()).toEqual([]); // empty again from now
  });
});

describe('events for the metrics', () => {
  /** A coordinator on the same broker that records its events in order. */
  function recordingCoordinator(): string[] {
    const events: string[] = [];
    void coordinator.close();
    coordinator = newCoordinator({ events: { rebalanced: (groupId) => events.push(`rebalanced ${groupId}`), forgotten: (groupId) => events.push(`forgotten ${groupId}`) } });
    return events;
  }

  it('reports each rebalance as it happens and the group when it is forgotten, also when the same id comes back', async () => {
    const events = recordingCoordinator();
    await broker.createTopic('t', 2, {});
    const first = join('g', ['t']);
    const second = join('g', ['t']);
    expect(events).toEqual(['rebalanced g', 'rebalanced g']);
    leave(second); // its partition moves back to the first
    leave(first); // the last member: the group goes (no committed offsets)
    expect(events.slice(2)).toEqual(['rebalanced g', 'forgotten g']);
    join('g', ['t']); // a new group under the old id: its rebalances are its own
    expect(events.slice(4)).toEqual(['rebalanced g']);
  });

  it('logs joins, leaves and rebalances at info, and nothing for heartbeats that change no membership', async () => {
    const lines: { msg: string; group?: string; memberId?: string; clientId?: string; members?: number }[] = [];
    void coordinator.close();
    coordinator = newCoordinator({ logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) }) });
    await broker.createTopic('t', 2, {});
    const first = join('g', ['t']);
    const second = join('g', ['t']);
    settle([first, second]);
    const seen = (): unknown[] => lines.map(({ msg, memberId, members }) => ({ msg, memberId, members }));
    // Each join's rebalance is logged as the join computes it, just before the join's line.
    expect(seen()).toEqual([
      { msg: 'group rebalancing: partitions move between members', memberId: undefined, members: 1 },
      { msg: 'group member joined', memberId: first.memberId, members: 1 },
      { msg: 'group rebalancing: partitions move between members', memberId: undefined, members: 2 },
      { msg: 'group member joined', memberId: second.memberId, members: 2 },
    ]);
    expect(lines[1]).toMatchObject({ group: 'g', clientId: 'client' });
    // Each rebalance names the partitions it moves, from whom to whom ("-": no member).
    expect(lines[0]).toMatchObject({ moved: 2, moves: [`t-0: - -> ${first.memberId}`, `t-1: - -> ${first.memberId}`] });
    const movedToSecond = (lines[2] as { moves?: string[] }).moves;
    expect(movedToSecond).toHaveLength(1);
    expect(movedToSecond![0]).toMatch(new RegExp(`^t-[01]: ${first.memberId} -> ${second.memberId}$`));
    lines.length = 0;
    leave(second);
    expect(seen()).toEqual([
      { msg: 'group rebalancing: partitions move between members', memberId: undefined, members: 1 },
      { msg: 'group member left', memberId: second.memberId, members: 1 },
    ]);
    expect(lines[0]).toMatchObject({ moved: 1, moves: [expect.stringMatching(new RegExp(`^t-[01]: ${second.memberId} -> ${first.memberId}$`))] });
    // A session that ends says whose it was, as the join did.
    lines.length = 0;
    clock.advance(SESSION_MS + 1);
    coordinator.expireSessions();
    expect(lines.find((line) => line.msg.startsWith('member session expired'))).toMatchObject({ group: 'g', memberId: first.memberId, clientId: 'client', host: expect.any(String), members: 0 });
  });

  it('reports a group forgotten when it is deleted, or when its session expires with nothing committed', async () => {
    const events = recordingCoordinator();
    await broker.createTopic('t', 1, {});
    const member = join('kept', ['t']);
    settle([member]);
    await coordinator.commit('kept', member.memberId, member.epoch, [{ topic: 't', partition: 0, offset: 0, metadata: '' }]);
    leave(member);
    expect(events).not.toContain('forgotten kept'); // its offsets keep it
    await coordinator.deleteGroup('kept');
    expect(events.at(-1)).toBe('forgotten kept');
    join('silent', ['t']);
    clock.advance(SESSION_MS + 1);
    coordinator.expireSessions();
    expect(events.at(-1)).toBe('forgotten silent');
  });
});

describe('membership across a restart', () => {
  /** A coordinator started again on the same metadata, as a broker restart makes one. */
  async function restart(): Promise<void> {
    await coordinator.close();
    coordinator = newCoordinator();
  }

  const membersOf = async (groupId: string) =>
    (await coordinator.describeGroup(groupId)).members.map(({ memberId, instanceId, memberEpoch, assignment, subscribedTopicNames }) => ({ memberId, instanceId, memberEpoch, assignment: label(assignment), subscribedTopicNames })).sort((a, b) => a.memberId.localeCompare(b.memberId));

  it('keeps every member with its epoch and partitions: heartbeats go on as before and nothing moves', async () => {
    await broker.createTopic('t', 4, {});
    const a = join('g', ['t']);
    const b = join('g', ['t']);
    settle([a, b]);
    const before = await membersOf('g');
    const groupEpoch = (await coordinator.describeGroup('g')).groupEpoch;
    await coordinator.membershipDurable('g');
    await restart();
    expect(await membersOf('g')).toEqual(before);
    expect((await coordinator.describeGroup('g')).groupEpoch).toBe(groupEpoch);
    for (const client of [a, b]) {
      const epoch = client.epoch;
      const owned = label(client.owned);
      beat(client);
      expect([client.epoch, label(client.owned)]).toEqual([epoch, owned]);
    }
    expect(coordinator.listGroups()).toEqual([{ groupId: 'g', state: 'stable', members: 2 }]);
  });

  it('takes a join under a kept member\'s id as that consumer joining again (it gave its membership up while the broker was down), until the member heartbeats', async () => {
    await broker.createTopic('t', 2, {});
    const a = join('g', ['t'], { memberId: 'consumer-a' });
    settle([a]);
    beat(a);
    // Before a restart, a join under the id of a member that has heartbeated is another consumer's.
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', memberId: 'consumer-a', subscription: { topicNames: ['t'], regex: '' } })))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    await coordinator.membershipDurable('g');
    await restart();
    const again = join('g', ['t'], { memberId: 'consumer-a' });
    expect(again.memberId).toBe('consumer-a');
    settle([again]);
    expect(label(again.owned)).toEqual(['t-0', 't-1']);
    expect((await membersOf('g')).map(({ memberId }) => memberId)).toEqual(['consumer-a']);
    // Once it has heartbeated here, a join under its id is refused again.
    beat(again);
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', memberId: 'consumer-a', subscription: { topicNames: ['t'], regex: '' } })))).code).toBe(ErrorCode.FAILED_PRECONDITION);
  });

  it('does not hand a member that joins after it a partition a kept member still owns, until that member gives it up', async () => {
    await broker.createTopic('t', 2, {});
    const a = join('g', ['t']);
    settle([a]);
    expect(label(a.owned)).toEqual(['t-0', 't-1']);
    await restart();
    const b = join('g', ['t']);
    expect(b.owned).toEqual([]);
    beat(a); // told to give one up; still holds both
    beat(b);
    expect(b.owned).toEqual([]);
    beat(a); // gives it up
    beat(b);
    expect(label([...a.owned, ...b.owned])).toEqual(['t-0', 't-1']);
    expect(a.owned).toHaveLength(1);
  });

  // A crash took records some group had committed past, so any reader may have read past the
  // recovered end: a kept member's consumer, running on across the restart, would fetch from
  // there and skip the records written at those offsets again.
  it('removes, at start, every kept member owning a partition a group had committed past the end of, and keeps the others', async () => {
    await broker.createTopic('t', 2, {});
    await broker.createTopic('u', 1, {});
    await produce('t', 0, 3, () => T0);
    const a = join('g', ['t']);
    const b = join('h', ['t']);
    const c = join('k', ['u', 't']);
    const d = join('k', ['u', 't']);
    settle([a, b, c, d]);
    const cOwnsCut = c.owned.some(({ topic, partition }) => topic === 't' && partition === 0);
    const [holder, bystander] = cOwnsCut ? [c, d] : [d, c];
    expect(label(bystander.owned)).not.toContain('t-0');
    // What the crash leaves: g's commit past records that are gone.
    await new OffsetStore(broker.metadataStore.root).commit('g', [{ topic: 't', partition: 0, offset: 9, metadata: '', commitTimeMs: T0 }]);
    for (const group of ['g', 'h', 'k']) await coordinator.membershipDurable(group);
    await restart();
    await coordinator.checkAgainstRecoveredLogs();
    expect(coordinator.fetchOffsets('g', []).map(({ offset }) => offset)).toEqual([3]);
    for (const removed of [a, b, holder]) expect((await failure(() => beat(removed))).code).toBe(ErrorCode.NOT_FOUND);
    // The other member of k is kept, with what it owned (and, in time, the holder's share).
    const owned = label(bystander.owned);
    beat(bystander);
    expect(owned.filter((key) => !label(bystander.owned).includes(key))).toEqual([]);
    // The removal was made durable before serving: another restart does not bring them back.
    await restart();
    expect(await membersOf('g')).toEqual([]); // kept for its offsets
    expect(coordinator.listGroups().map(({ groupId }) => groupId)).not.toContain('h'); // nothing left of it
    expect((await membersOf('k')).map(({ memberId }) => memberId)).toEqual([bystander.memberId]);
    // The removed consumer joins again and is given its partitions, to read from the lowered commit.
    const again = join('g', ['t']);
    settle([again]);
    expect(label(again.owned)).toEqual(['t-0', 't-1']);
  });

  it('keeps every member across a restart that cut nothing, whatever the topics\' flush', async () => {
    await broker.createTopic('t', 1, { flush: 'interval' });
    await produce('t', 0, 3, () => T0);
    const a = join('g', ['t']);
    settle([a]);
    await coordinator.commit('g', a.memberId, a.epoch, [{ topic: 't', partition: 0, offset: 3, metadata: '' }]);
    await coordinator.membershipDurable('g');
    await restart();
    await coordinator.checkAgainstRecoveredLogs();
    const epoch = a.epoch;
    beat(a);
    expect([a.epoch, label(a.owned)]).toEqual([epoch, ['t-0']]);
  });

  it('gives a kept member a whole session from the restart, and removes it once that has passed without a heartbeat', async () => {
    await broker.createTopic('t', 1, {});
    settle([join('g', ['t'])]);
    clock.advance(SESSION_MS - 100); // its session would end 100 ms from now
    await restart();
    clock.advance(200);
    coordinator.expireSessions();
    expect(coordinator.listGroups()).toEqual([{ groupId: 'g', state: 'stable', members: 1 }]);
    clock.advance(SESSION_MS);
    coordinator.expireSessions();
    expect(coordinator.listGroups()).toEqual([]); // no offsets: the group went with its member
    await restart();
    expect(coordinator.listGroups()).toEqual([]);
  });

  it('keeps gone what left, was fenced or was replaced before it; a static member away keeps its place and takes it back', async () => {
    await broker.createTopic('t', 6, {});
    const left = join('g', ['t']);
    const fenced = join('g', ['t']);
    const away = join('g', ['t'], { instanceId: 'pod-away' });
    const replaced = join('g', ['t'], { instanceId: 'pod-replaced' });
    const stays = join('g', ['t']);
    settle([left, fenced, away, replaced, stays]);
    leave(left);
    expect((await failure(() => coordinator.heartbeat(request({ groupId: 'g', memberId: fenced.memberId, memberEpoch: fenced.epoch + 5 })))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    coordinator.heartbeat(request({ groupId: 'g', memberId: away.memberId, memberEpoch: -2 }));
    coordinator.heartbeat(request({ groupId: 'g', memberId: replaced.memberId, memberEpoch: -2 }));
    const replacement = join('g', ['t'], { instanceId: 'pod-replaced' });
    await restart();
    expect((await membersOf('g')).map(({ memberId }) => memberId).sort()).toEqual([away.memberId, replacement.memberId, stays.memberId].sort());
    for (const gone of [left, fenced, replaced]) expect((await failure(() => beat(gone))).code).toBe(ErrorCode.NOT_FOUND);
    // Still away: its instance id is taken over by the next incarnation, which gets its partitions
    // (and what of its target has come free since: the partitions of those gone).
    const back = join('g', ['t'], { instanceId: 'pod-away' });
    expect(label(back.owned)).toEqual(expect.arrayContaining(label(away.owned)));
    settle([back, replacement, stays]);
    expect(label([...back.owned, ...replacement.owned, ...stays.owned])).toEqual(['t-0', 't-1', 't-2', 't-3', 't-4', 't-5']);
  });

  it("keeps a member bound to its token and within its token's topics", async () => {
    await broker.createTopic('t', 1, {});
    await broker.createTopic('u', 3, {});
    const asToken = (client: Client, tokenName: string, scope: NameScope | null): void => {
      const result = coordinator.heartbeat(request({ groupId: 'g', memberId: client.memberId, memberEpoch: client.epoch, owned: client.owned, tokenName, topicScope: scope }));
      client.epoch = result.memberEpoch;
      client.owned = result.assignment;
    };
    const scoped = join('g', { regex: '.*' }, { tokenName: 'reader', topicScope: new NameScope(['t']) });
    asToken(scoped, 'reader', new NameScope(['t']));
    expect(label(scoped.owned)).toEqual(['t-0']);
    await restart();
    const other = join('g', { regex: '.*' }, { tokenName: 'other' });
    const refused = await failure(() => coordinator.heartbeat(request({ groupId: 'g', memberId: scoped.memberId, memberEpoch: scoped.epoch, tokenName: 'other' })));
    expect(refused.code).toBe(ErrorCode.PERMISSION_DENIED);
    // The targets computed again at the restart and at the join still give it none of u: the
    // other member's target is all of u (were the scope lost, each would have two partitions).
    asToken(other, 'other', null);
    expect(label(other.owned)).toEqual(['u-0', 'u-1', 'u-2']);
    asToken(scoped, 'reader', new NameScope(['t']));
    expect(label(scoped.owned)).toEqual(['t-0']);
  });

  /** The only member of group `g` (of a 2-partition topic `t`), under the id `consumer-1`, after several epochs. */
  async function memberThroughEpochs(): Promise<Client> {
    await broker.createTopic('t', 2, {});
    const first = join('g', ['t'], { memberId: 'consumer-1' });
    const second = join('g', ['t']);
    settle([first, second]);
    leave(second);
    settle([first]);
    return first;
  }

  it('starts a group forgotten before it above every epoch it had, for a consumer that joins again under its member id', async () => {
    const first = await memberThroughEpochs();
    const lastEpoch = first.epoch;
    leave(first); // the group goes: no offsets
    expect(coordinator.listGroups()).toEqual([]);
    await restart();
    expect(join('g', ['t'], { memberId: 'consumer-1' }).epoch).toBeGreaterThan(lastEpoch);
  });

  it('revokes the partitions of a topic deleted while it was stopped, as at any deletion', async () => {
    await broker.createTopic('t', 1, {});
    await broker.createTopic('u', 1, {});
    const member = join('g', ['t', 'u']);
    settle([member]);
    await coordinator.close();
    broker.onPartitionsChanged = null;
    broker.onTopicDeleted = null;
    await broker.deleteTopic('u');
    coordinator = newCoordinator();
    const epoch = member.epoch;
    beat(member);
    expect(label(member.owned)).toEqual(['t-0']);
    expect(member.epoch).toBeGreaterThan(epoch);
  });

  it('leaves out a kept member it cannot take back, frees its partitions and removes its record', async () => {
    await broker.createTopic('t', 2, {});
    const member = join('g', ['t']);
    settle([member]);
    await coordinator.close();
    // As a later version refusing a regex an earlier one took would find it.
    const records = broker.metadataStore.root.openDB<{ regex: string }, [string, string]>({ name: 'group-members', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    await records.put(['g', member.memberId], { ...records.get(['g', member.memberId])!, regex: '(' });
    coordinator = newCoordinator();
    expect(coordinator.listGroups()).toEqual([]); // its only member left out: no members, no offsets
    expect((await failure(() => beat(member))).code).toBe(ErrorCode.NOT_FOUND);
    const again = join('g', ['t']);
    expect(label(again.owned)).toEqual(['t-0', 't-1']);
    await coordinator.membershipDurable('g');
    expect(records.get(['g', member.memberId])).toBeUndefined();
  });

  /** The group-members database, as a broker started again would read it. */
  const keptRecords = () => broker.metadataStore.root.openDB<{ epoch?: number; assigned?: string[]; revoking?: string[] }, [string, string]>({ name: 'group-members', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
  const keptIdsOf = (groupId: string): string[] => [...keptRecords().getKeys()].filter((key) => key[0] === groupId).map((key) => key[1]);

  /**
   * Makes the next `count` membership writes of `methods` fail as lmdb-js fails a commit (all of
   * them with Infinity), 50 ms after they are made: writes made meanwhile land first. A transaction's
   * callback runs, as lmdb-js runs it before the commit fails, with its writes dropped.
   */
  function failMembershipWrites(count: number, methods: readonly ('batch' | 'transaction')[] = ['batch', 'transaction']): void {
    type Db = Record<'batch' | 'transaction', (callback: () => unknown) => Promise<unknown>> & Record<'put' | 'remove', (...args: unknown[]) => unknown>;
    const db = (coordinator as unknown as { membership: { db: Db } }).membership.db;
    for (const method of methods) {
      const real = db[method].bind(db);
      db[method] = (callback) => {
        if (count <= 0) return real(callback);
        count--;
        const failed = Object.assign(new Error('Commit failed (see commitError for details)'), { commitError: Promise.reject(new Error('EIO: i/o error')) });
        failed.commitError.catch(() => undefined);
        return new Promise((_, reject) =>
          setTimeout(() => {
            if (method === 'transaction') {
              const { put, remove } = db;
              db.put = db.remove = () => true;
              try {
                callback();
              } finally {
                db.put = put;
                db.remove = remove;
              }
            }
            reject(failed);
          }, 50),
        );
      };
    }
  }

  it('keeps the epoch floor of a group whose forgetting failed and was retried: a consumer joining again starts above its epochs', async () => {
    const first = await memberThroughEpochs();
    const lastEpoch = first.epoch;
    await coordinator.membershipDurable('g');
    expect(keptIdsOf('g')).toEqual(['', 'consumer-1']);
    failMembershipWrites(1, ['transaction']);
    leave(first); // the group goes; the transaction that removes it fails, and is retried a second later
    await waitUntil(() => keptIdsOf('g').length === 0, 'the retry to remove the group', 5_000);
    await restart();
    const again = join('g', ['t'], { memberId: 'consumer-1' });
    console.log('EPOCHS', lastEpoch, again.epoch);
    expect(again.epoch).toBeGreaterThan(lastEpoch);
  });

  it('does not answer on top of a failed write: the group is written whole first, so a restart finds no partition claimed twice', async () => {
    await broker.createTopic('t', 2, {});
    const a = join('g', ['t'], { memberId: 'a' });
    settle([a]);
    const b = join('g', ['t'], { memberId: 'b' });
    beat(a); // told to give one up
    await coordinator.membershipDurable('g');
    failMembershipWrites(1);
    beat(a); // gives it up: this write fails
    const answeredA = coordinator.membershipDurable('g');
    beat(b); // is handed it: this write lands
    // What a crash the moment b is answered would leave: each partition claimed once.
    const claimsAtAnswer = coordinator.membershipDurable('g').then(() =>
      [...keptRecords().getRange()].filter(({ key }) => key[0] === 'g' && key[1] !== '').flatMap(({ value }) => [...(value.assigned ?? []), ...(value.revoking ?? [])]).sort(),
    );
    await answeredA;
    expect(await claimsAtAnswer).toEqual([tp('t', 0), tp('t', 1)].sort());
    expect(label([...a.owned, ...b.owned])).toEqual(['t-0', 't-1']);
    await restart();
    const described = await coordinator.describeGroup('g');
    expect(described.members.map((member) => [member.memberId, label(member.assignment)])).toEqual([['a', label(a.owned)], ['b', label(b.owned)]]);
    beat(a);
    beat(b);
    expect(label([...a.owned, ...b.owned])).toEqual(['t-0', 't-1']);
  });

  it('answers STORAGE_ERROR while membership cannot be written, then writes the group whole without waiting for a heartbeat', async () => {
    await broker.createTopic('t', 2, {});
    const a = join('g', ['t']);
    settle([a]);
    await coordinator.membershipDurable('g');
    failMembershipWrites(Infinity);
    leave(a);
    const refused = await failure(() => coordinator.membershipDurable('g'));
    expect(refused.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(refused.message).toMatch(/^the membership of group "g" could not be stored \(.*EIO.*\); heartbeat again$/);
    expect(keptIdsOf('g')).toContain(a.memberId); // the leave is not on disk yet
    failMembershipWrites(0);
    const db = (coordinator as unknown as { membership: { db: Record<'batch' | 'transaction', unknown> } }).membership.db;
    delete db.batch; // the instance's own methods go: the prototype's are the real ones
    delete db.transaction;
    await waitUntil(() => keptIdsOf('g').length === 0, 'the forgotten group written whole by the retry', 5_000);
    await restart();
    expect(coordinator.listGroups()).toEqual([]);
  });

  it('leaves no record of a group made and forgotten in one heartbeat', async () => {
    await broker.createTopic('t', 1, {});
    await failure(() => coordinator.heartbeat(request({ groupId: 'ghost', subscription: { topicNames: [], regex: '(' } })));
    const fenced = join('brief', ['t']);
    await failure(() => coordinator.heartbeat(request({ groupId: 'brief', memberId: fenced.memberId, memberEpoch: fenced.epoch + 5 })));
    await Promise.all([coordinator.membershipDurable('ghost'), coordinator.membershipDurable('brief')]);
    expect([keptIdsOf('ghost'), keptIdsOf('brief')]).toEqual([[], []]);
  });

  it('unbinds kept members from tokens on a broker started without them, and leaves out those kept without one on a broker that takes them', async () => {
    await broker.createTopic('t', 2, {});
    const bound = join('with-token', ['t'], { tokenName: 'reader' });
    const unbound = join('without-token', ['t']);
    await coordinator.close();
    coordinator = newCoordinator({ tokens: false });
    beat(bound); // no token now: it is no longer bound to one
    expect(bound.owned).toHaveLength(2);
    await coordinator.close();
    coordinator = newCoordinator({ tokens: true });
    expect((await failure(() => beat(unbound))).code).toBe(ErrorCode.NOT_FOUND);
    await coordinator.membershipDurable('without-token');
    expect(keptIdsOf('without-token')).toEqual([]);
  });

  it('writes each change before the heartbeat that made it is answered: a store opened afresh reads it', async () => {
    await broker.createTopic('t', 3, {});
    const a = join('g', ['t']);
    const b = join('g', ['t']);
    for (let round = 0; round < 4; round++) {
      for (const client of [a, b]) {
        beat(client);
        await coordinator.membershipDurable('g');
        const kept = new MembershipStore(broker.metadataStore.root, { groupOf: () => undefined, epochFloor: () => 0, writeFailed: () => undefined }).load(0).groups.find((group) => group.groupId === 'g')!;
        const keptClient = kept.members.find((member) => member.memberId === client.memberId)!;
        expect([keptClient.epoch, label([...keptClient.assigned].map(splitTp))]).toEqual([client.epoch, label(client.owned)]);
      }
    }
  });
});
