// Goal: show that consumer-group membership survives SIGKILL: every member a heartbeat answer
// admitted before the kill is still a member after it, at the epoch it was answered, and no
// partition is ever held by two members, across kills that land mid-rebalance; method: run the
// real CLI (`strata serve`, spawnBroker) on one data directory, drive members over raw gRPC
// heartbeats with seeded-random joins, heartbeats and leaves, SIGKILL the broker right after a
// seeded-random number of answers (4 kills; in every other round a heartbeat is sent up to a
// few milliseconds before the kill and its answer, if any, not taken), restart it on the same
// directory, and have every member heartbeat at the epoch of its last answer. A member gives up
// what an answer leaves out at once (before saying so), as a client must, so what the members
// hold must stay disjoint.
import { afterAll, describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { mulberry32, seedMessage, testSeed } from '../helpers/seeded-random.js';
import { type BrokerProcess, removeDirectory, spawnBroker, temporaryDirectory } from '../helpers/test-server.js';

const SEED = testSeed('group-membership-kill9.test.ts');
const at = seedMessage(SEED);
const TOPIC = 'members';
const PARTITIONS = 6;
const GROUP = 'kill9-group';
const KILLS = 4;

/** When, after a heartbeat is sent, the broker is killed. */
const KILL_MOMENTS: { name: string; wait: () => Promise<unknown> }[] = [
  { name: 'at once', wait: () => Promise.resolve() },
  { name: 'next turn', wait: () => new Promise((resolve) => setImmediate(resolve)) },
  { name: 'two turns', wait: () => new Promise((resolve) => setImmediate(() => setImmediate(resolve))) },
  { name: 'after 1 ms', wait: () => new Promise((resolve) => setTimeout(resolve, 1)) },
  { name: 'after 3 ms', wait: () => new Promise((resolve) => setTimeout(resolve, 3)) },
];

interface Member {
  name: string;
  memberId: string;
  epoch: number;
  /** What it consumes: its last answer's assignment. */
  held: Set<number>;
}

/** The partitions of TOPIC an answer's assignment lists. */
const partitionsOf = (assignment: readonly strata.v1.ITopicPartitions[]): Set<number> => new Set(assignment.flatMap((entry) => entry.partitions ?? []));
const owned = (held: Set<number>) => (held.size === 0 ? [] : [v1.TopicPartitions.create({ topic: TOPIC, partitions: [...held] })]);

describe('consumer-group membership across SIGKILL', () => {
  const dataDir = temporaryDirectory('strata-group-kill9-');
  let broker: BrokerProcess | null = null;
  let client: TestClient | null = null;

  afterAll(async () => {
    client?.close();
    if (broker !== null) {
      broker.child.kill('SIGKILL');
      await broker.exited;
    }
    removeDirectory(dataDir);
  });

  async function start(): Promise<void> {
    broker = await spawnBroker(dataDir);
    client = new TestClient(broker.address);
  }

  async function kill(): Promise<void> {
    client!.close();
    broker!.child.kill('SIGKILL');
    await broker!.exited;
    broker = null;
  }

  it('every member answered before a kill -9 is a member after it, at its epoch, and no partition has two holders', async () => {
    const random = mulberry32(SEED);
    await start();
    await client!.call('admin.createTopic', v1.CreateTopicRequest.create({ name: TOPIC, partitions: PARTITIONS }));
    const members: Member[] = [];
    let joined = 0;
    const checkDisjoint = (context: string): void => {
      const holders = new Map<number, string>();
      for (const member of members) {
        for (const partition of member.held) {
          expect(holders.get(partition), `${context}: ${partition} held by ${holders.get(partition)} and ${member.name} ${at('')}`).toBeUndefined();
          holders.set(partition, member.name);
        }
      }
    };
    const heartbeat = async (member: Member, context: string): Promise<void> => {
      const answer = await client!.call<strata.v1.HeartbeatResponse>(
        'groups.heartbeat',
        v1.HeartbeatRequest.create({ groupId: GROUP, memberId: member.memberId, memberEpoch: member.epoch, keepSubscription: true, ownedPartitions: owned(member.held) }),
      );
      expect(answer.memberId, context).toBe(member.memberId);
      member.epoch = answer.memberEpoch;
      member.held = partitionsOf(answer.assignment);
      checkDisjoint(context);
    };
    const join = async (): Promise<void> => {
      const name = `m${joined++}`;
      const answer = await client!.call<strata.v1.HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: GROUP, memberEpoch: 0, subscribedTopicNames: [TOPIC] }));
      members.push({ name, memberId: answer.memberId, epoch: answer.memberEpoch, held: partitionsOf(answer.assignment) });
      checkDisjoint(`${name} joined`);
    };

    await join();
    await join();
    let rebalancedAtKill = 0;
    const outcomes: string[] = [];
    for (let round = 0; round < KILLS; round++) {
      const answers = 3 + Math.floor(random() * 12);
      for (let step = 0; step < answers; step++) {
        const choice = random();
        if (choice < 0.2 && members.length < 4) {
          await join();
        } else if (choice < 0.3 && members.length > 1) {
          const [gone] = members.splice(Math.floor(random() * members.length), 1);
          await client!.call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: GROUP, memberId: gone!.memberId, memberEpoch: -1 }));
        } else {
          const member = members[Math.floor(random() * members.length)]!;
          await heartbeat(member, `round ${round} step ${step}: ${member.name}`);
        }
      }
      const described = await client!.call<strata.v1.DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId: GROUP }));
      if (described.state !== 'stable') rebalancedAtKill++;
      const before = described.members.map((member) => [member.memberId, member.memberEpoch]).sort();
      // Every other round, a heartbeat is sent just before the kill (seeded): it may be
      // answered, cut while the broker writes its change, or not reach it. Its member does not
      // take the answer, and heartbeats next at the epoch it had (the broker may have kept the
      // change, and takes the previous epoch then).
      if (round % 2 === 1) {
        const member = members[Math.floor(random() * members.length)]!;
        const sent = client!
          .call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: GROUP, memberId: member.memberId, memberEpoch: member.epoch, keepSubscription: true, ownedPartitions: owned(member.held) }))
          .then(() => 'answered', () => 'cut');
        // Not a wait for an event: it places the kill at a seeded moment of the heartbeat's life
        // (a heartbeat is answered in about a millisecond: the later moments usually find it answered).
        const moment = KILL_MOMENTS[Math.floor(random() * KILL_MOMENTS.length)]!;
        await moment.wait();
        broker!.child.kill('SIGKILL');
        outcomes.push(`${moment.name}: ${await sent}`);
      }
      await kill();
      await start();
      const after = await client!.call<strata.v1.DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId: GROUP }));
      const ids = (list: readonly strata.v1.IMemberDescription[]) => list.map((member) => member.memberId).sort();
      expect(ids(after.members), `round ${round} ${at('')}`).toEqual(ids(described.members));
      if (round % 2 === 0) expect(after.members.map((member) => [member.memberId, member.memberEpoch]).sort(), `round ${round} ${at('')}`).toEqual(before);
      // Each member heartbeats at the epoch of its last answer: it is still a member.
      for (const member of members) await heartbeat(member, `round ${round} after the restart: ${member.name}`);
    }
    // Then the group settles: its members hold every partition, once.
    for (let pass = 0; pass < 4; pass++) for (const member of members) await heartbeat(member, `settling, pass ${pass}: ${member.name}`);
    expect(members.flatMap((member) => [...member.held]).sort((x, y) => x - y)).toEqual(Array.from({ length: PARTITIONS }, (_, partition) => partition));
    console.log(`group kill -9: ${KILLS} kills, ${rebalancedAtKill} of them mid-rebalance, heartbeats sent just before a kill: ${outcomes.join(', ')}; ${joined} members joined ${at('')}`);
  });
});
