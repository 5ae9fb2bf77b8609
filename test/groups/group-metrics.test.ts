// Goal: the group figures a scrape reads (`lagByTopic`, `listGroups`), which come from the offset
// store's copy of the committed offsets in memory, stay what LMDB says after commits, offset and
// group deletion, topic deletion, expiry and a restart, and that copy is what LMDB holds once
// concurrent writes have settled; method: a real Broker and coordinator on a temporary data
// directory with a ManualClock, each figure checked by value and against DescribeGroup (which
// reads LMDB), and the copy against a store opened afresh, after seeded random concurrent writes.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { MetadataStore } from '../../src/broker/metadata-store.js';
import { ManualClock } from '../../src/common/clock.js';
import { GroupCoordinator, type GroupCoordinatorOptions, type HeartbeatRequest } from '../../src/groups/group-coordinator.js';
import { type CommittedOffset, OffsetStore } from '../../src/groups/offset-store.js';
import { RecordRanges } from '../../src/storage/record-ranges.js';
import { seedMessage, streamFor, testSeed } from '../helpers/seeded-random.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

const T0 = 1_700_000_000_000;
const RETENTION_MS = 24 * 60 * 60 * 1000;

describe('group figures of a scrape', () => {
  let dataDir: string;
  let clock: ManualClock;
  let broker: Broker;
  let coordinator: GroupCoordinator;

  beforeEach(async () => {
    dataDir = temporaryDirectory('strata-group-metrics-');
    clock = new ManualClock(T0);
    broker = await Broker.open({ dataDir, clock });
    coordinator = newCoordinator();
  });

  afterEach(async () => {
    await coordinator.close();
    await broker.close();
    removeDirectory(dataDir);
  });

  function newCoordinator(options: Partial<GroupCoordinatorOptions> = {}): GroupCoordinator {
    return new GroupCoordinator(broker, { clock, sessionTimeoutMs: 1_000, heartbeatIntervalMs: 200, sessionCheckIntervalMs: 3_600_000, ...options });
  }

  async function produce(topic: string, partition: number, count: number, valueBytes = 10): Promise<void> {
    const records = Array.from({ length: count }, (_, i) => ({ value: Buffer.alloc(valueBytes, i), timestamp: T0 }));
    await broker.produceRecords(topic, partition, RecordRanges.of(records), 'all', null);
  }

  function heartbeat(overrides: Partial<HeartbeatRequest> & { groupId: string }): { memberId: string; memberEpoch: number } {
    return coordinator.heartbeat({ memberId: '', memberEpoch: 0, instanceId: null, clientId: 'c', host: 'h', subscription: null, assignor: '', owned: [], sessionTimeoutMs: 0, ...overrides });
  }

  const commit = (groupId: string, topic: string, partition: number, offset: number): Promise<void> => coordinator.commit(groupId, '', 0, [{ topic, partition, offset, metadata: '' }]);

  /** `lagByTopic` as `group/topic` → lag, and `listGroups` as `group` → members. */
  function figures(): { lag: Record<string, number>; members: Record<string, number> } {
    const lag = Object.fromEntries(coordinator.lagByTopic().map(({ groupId, topic, lag }) => [`${groupId}/${topic}`, lag]));
    const members = Object.fromEntries(coordinator.listGroups().map(({ groupId, members }) => [groupId, members]));
    return { lag, members };
  }

  /** Every group's lag per topic as DescribeGroup reads it, from LMDB. */
  async function describedLag(): Promise<Record<string, number>> {
    const lag: Record<string, number> = {};
    for (const { groupId } of coordinator.listGroups()) {
      for (const { topic, lag: partitionLag } of (await coordinator.describeGroup(groupId)).partitions) lag[`${groupId}/${topic}`] = (lag[`${groupId}/${topic}`] ?? 0) + partitionLag;
    }
    return lag;
  }

  /** The figures, after checking the lag against DescribeGroup's and the groups against LMDB's. */
  async function checkedFigures(): Promise<{ lag: Record<string, number>; members: Record<string, number> }> {
    const read = figures();
    expect(read.lag).toEqual(await describedLag());
    const withOffsets = new OffsetStore(broker.metadataStore.root).groups();
    for (const groupId of withOffsets) expect(read.members).toHaveProperty([groupId]);
    return read;
  }

  it('follow commits, a member joining and leaving, offset deletion and group deletion', async () => {
    await broker.createTopic('t', 2, {});
    await broker.createTopic('u', 1, {});
    await produce('t', 0, 5);
    await produce('t', 1, 3);
    await produce('u', 0, 4);
    expect(await checkedFigures()).toEqual({ lag: {}, members: {} });

    // A member that has not committed: its subscribed partitions lag from the log start.
    const member = heartbeat({ groupId: 'g', subscription: { topicNames: ['t'], regex: '' } });
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 8 }, members: { g: 1 } });
    await coordinator.commit('g', member.memberId, member.memberEpoch, [{ topic: 't', partition: 0, offset: 2, metadata: '' }]);
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 6 }, members: { g: 1 } });

    // A group of committed offsets only: lag over the partitions it committed.
    await commit('solo', 'u', 0, 1);
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 6, 'solo/u': 3 }, members: { g: 1, solo: 0 } });
    await commit('solo', 't', 1, 3);
    await commit('solo', 'u', 0, 4);
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 6, 'solo/t': 0, 'solo/u': 0 }, members: { g: 1, solo: 0 } });

    // The member leaves: the group keeps its committed partition only.
    heartbeat({ groupId: 'g', memberId: member.memberId, memberEpoch: -1 });
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 3, 'solo/t': 0, 'solo/u': 0 }, members: { g: 0, solo: 0 } });

    await coordinator.deleteOffsets('solo', ['u']);
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 3, 'solo/t': 0 }, members: { g: 0, solo: 0 } });
    await coordinator.deleteOffsets('g', []);
    expect(await checkedFigures()).toEqual({ lag: { 'solo/t': 0 }, members: { solo: 0 } });
    await coordinator.deleteGroup('solo');
    expect(await checkedFigures()).toEqual({ lag: {}, members: {} });

    // Committed again after its deletion: the group is back, from its new offsets only.
    await commit('solo', 'u', 0, 2);
    expect(await checkedFigures()).toEqual({ lag: { 'solo/u': 2 }, members: { solo: 0 } });
  });

  it('count from the log start when retention removed the committed records', async () => {
    // One ~600-byte batch per 1 KiB segment; retention.bytes=1 deletes every sealed segment.
    await broker.createTopic('trim', 1, { 'segment.bytes': '1024', 'retention.bytes': '1' });
    for (let i = 0; i < 5; i++) await produce('trim', 0, 1, 600);
    await commit('g', 'trim', 0, 1);
    expect(await checkedFigures()).toEqual({ lag: { 'g/trim': 4 }, members: { g: 0 } });
    await broker.applyRetention();
    expect(broker.partitionLog('trim', 0).logStartOffset).toBe(4);
    expect(await checkedFigures()).toEqual({ lag: { 'g/trim': 1 }, members: { g: 0 } });
  });

  it("lose a deleted topic's lag, and keep the group's other topics", async () => {
    await broker.createTopic('t', 1, {});
    await broker.createTopic('doomed', 2, {});
    await produce('t', 0, 3);
    await produce('doomed', 1, 3);
    await commit('g', 't', 0, 1);
    await commit('g', 'doomed', 1, 1);
    await commit('only-doomed', 'doomed', 0, 0);
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 2, 'g/doomed': 2, 'only-doomed/doomed': 0 }, members: { g: 0, 'only-doomed': 0 } });
    await broker.deleteTopic('doomed');
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 2 }, members: { g: 0 } });
    // Created again, the topic starts with no committed offsets.
    await broker.createTopic('doomed', 2, {});
    await produce('doomed', 1, 1);
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 2 }, members: { g: 0 } });
  });

  it("lose an expired group's lag and member count", async () => {
    await coordinator.close();
    coordinator = newCoordinator({ offsetsRetentionMs: RETENTION_MS });
    await broker.createTopic('t', 1, {});
    await produce('t', 0, 3);
    await commit('idle', 't', 0, 1);
    await commit('busy', 't', 0, 2);
    expect(await coordinator.expireOffsets()).toEqual([]); // both seen empty from now
    clock.advance(RETENTION_MS);
    await commit('busy', 't', 0, 3); // a commit within the retention keeps a group
    clock.advance(1);
    expect(await coordinator.expireOffsets()).toEqual(['idle']);
    expect(await checkedFigures()).toEqual({ lag: { 'busy/t': 0 }, members: { busy: 0 } });
  });

  it('are read again from LMDB after a restart, with the members kept until their sessions end', async () => {
    await broker.createTopic('t', 2, {});
    await produce('t', 0, 5);
    await produce('t', 1, 5);
    const member = heartbeat({ groupId: 'g', subscription: { topicNames: ['t'], regex: '' } });
    await coordinator.commit('g', member.memberId, member.memberEpoch, [{ topic: 't', partition: 1, offset: 4, metadata: '' }]);
    await commit('solo', 't', 0, 2);
    await coordinator.deleteOffsets('solo', ['t']);
    await commit('solo', 't', 0, 3);
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 6, 'solo/t': 2 }, members: { g: 1, solo: 0 } });
    await coordinator.close();
    await broker.close();
    broker = await Broker.open({ dataDir, clock });
    coordinator = newCoordinator();
    // Its member is kept, with a whole session from the restart: g still lags on both partitions.
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 6, 'solo/t': 2 }, members: { g: 1, solo: 0 } });
    clock.advance(1_001);
    coordinator.expireSessions();
    // Without its member, g lags on the partition it committed only.
    expect(await checkedFigures()).toEqual({ lag: { 'g/t': 1, 'solo/t': 2 }, members: { g: 0, solo: 0 } });
  });
});

describe("the offset store's copy in memory", () => {
  let directory: string;
  let metadata: MetadataStore;

  beforeEach(() => {
    directory = temporaryDirectory('strata-offsets-copy-');
    metadata = MetadataStore.open(directory);
  });

  afterEach(async () => {
    await metadata.close();
    removeDirectory(directory);
  });

  /** What `store` has in memory, as sorted `group/topic/partition=offset` lines. */
  function copied(store: OffsetStore): string[] {
    return store.groups().flatMap((group) => [...store.committedOffsets(group)].flatMap(([topic, partitions]) => [...partitions].map(([partition, offset]) => `${group}/${topic}/${partition}=${offset}`))).sort();
  }

  /** What LMDB holds, read with `list`, in the same form. */
  function stored(): string[] {
    const fresh = new OffsetStore(metadata.root);
    return fresh.groups().flatMap((group) => fresh.list(group).map(({ topic, partition, offset }) => `${group}/${topic}/${partition}=${offset}`)).sort();
  }

  it('takes the last of many commits of the same partitions made at once, as LMDB does', async () => {
    const store = new OffsetStore(metadata.root);
    // lmdb-js writes so many puts in more than one transaction, and resolved the later one's
    // first: copying them in the order they resolve would keep older offsets.
    const commits = Array.from({ length: 1_000 }, (_, offset) => Array.from({ length: 10 }, (_, partition) => ({ topic: 't', partition, offset, metadata: '', commitTimeMs: T0 })));
    await Promise.all(commits.map((offsets) => store.commit('g', offsets)));
    expect(stored()).toEqual(Array.from({ length: 10 }, (_, partition) => `g/t/${partition}=999`).sort());
    expect(copied(store)).toEqual(stored());
  });

  /** Makes the next commit of `store` land only once the returned function is called. */
  function holdNextCommit(store: OffsetStore): () => void {
    const db = (store as unknown as { db: { batch(callback: () => void): Promise<boolean> } }).db;
    const batch = db.batch.bind(db);
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    db.batch = (callback) => {
      db.batch = batch;
      return batch(callback).then(async (result) => {
        await held;
        return result;
      });
    };
    return release;
  }

  it('copies commits in the order they were made, whatever order lmdb-js reports them in, and reads back one a deletion may have overtaken', async () => {
    const store = new OffsetStore(metadata.root);
    const offset = (partition: number, value: number): CommittedOffset[] => [{ topic: 't', partition, offset: value, metadata: '', commitTimeMs: T0 }];
    const release = holdNextCommit(store);
    const late = store.commit('g', offset(0, 1)); // stored, but reported late
    await store.commit('h', offset(0, 2)); // its copy waits for the late one's
    const overtaken = store.commit('g', offset(1, 3));
    await store.deleteGroupOffsets('g'); // made while the last commit was under way: deletes it too
    await overtaken;
    release();
    await late;
    expect(stored()).toEqual(['h/t/0=2']);
    expect(copied(store)).toEqual(stored());
  });

  it('reads back the keys of a commit LMDB refused', async () => {
    const store = new OffsetStore(metadata.root);
    await store.commit('g', [{ topic: 't', partition: 0, offset: 1, metadata: '', commitTimeMs: T0 }]);
    const db = (store as unknown as { db: { batch(callback: () => void): Promise<boolean> } }).db;
    const batch = db.batch.bind(db);
    db.batch = () => Promise.reject(new Error('MDB_MAP_FULL: Environment mapsize limit reached'));
    await expect(store.commit('g', [{ topic: 't', partition: 0, offset: 2, metadata: '', commitTimeMs: T0 }])).rejects.toThrow(/MDB_MAP_FULL/);
    db.batch = batch;
    expect(copied(store)).toEqual(['g/t/0=1']);
  });

  it('is what LMDB holds once random concurrent commits, deletions, expiries and lowerings have settled', async () => {
    const seed = testSeed('group-metrics offsets copy');
    const random = streamFor(seed, 'offsets copy');
    const message = seedMessage(seed);
    const pick = <T>(choices: readonly T[]): T => choices[Math.floor(random() * choices.length)]!;
    const groups = ['a', 'b', 'c'];
    const topics = ['t', 'u'];
    const store = new OffsetStore(metadata.root);
    const offsets = (count: number, commitTimeMs: number): CommittedOffset[] =>
      Array.from({ length: count }, () => ({ topic: pick(topics), partition: Math.floor(random() * 4), offset: Math.floor(random() * 100), metadata: '', commitTimeMs }));
    const operations: ((round: number) => Promise<unknown>)[] = [
      (round) => store.commit(pick(groups), offsets(1 + Math.floor(random() * 10), round)),
      (round) => store.commit(pick(groups), offsets(1 + Math.floor(random() * 10), round)),
      (round) => store.commit(pick(groups), offsets(1 + Math.floor(random() * 10), round)),
      () => store.deleteGroupOffsets(pick(groups), random() < 0.5 ? undefined : new Set([pick(topics)])),
      () => store.deleteTopic(pick(topics)),
      (round) => store.expireGroupOffsets(pick(groups), round - 1),
      () => {
        const end = Math.floor(random() * 100);
        const topic = pick(topics);
        return store.lowerPastEnds((candidate) => (candidate === topic ? end : null));
      },
    ];
    for (let round = 1; round <= 40; round++) {
      // Up to hundreds at once, which lmdb-js spreads over more than one transaction.
      const writes = Array.from({ length: 1 + Math.floor(random() * 400) }, () => pick(operations)(round));
      await Promise.all(writes);
      expect(copied(store), message(`round ${round}`)).toEqual(stored());
    }
  });
});
