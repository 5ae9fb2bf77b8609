// Goal: on a broker with tokens, a consumer-group member acts only with the token that joined
// it: another token allowed on the group that knows the member's id and epoch (DescribeGroup
// shows them) is refused with PERMISSION_DENIED when it heartbeats, leaves, joins or commits as
// that member, or takes over its static instance id, and the member's epoch, assignment and
// committed offsets are as they were; the joining token itself is served as before, and a
// narrowed token's member is answered with its topics alone. Method: an in-process broker with a
// tokens file, driven by raw heartbeats and commits (unary and streamed) over real gRPC.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ClientDuplexStream, type ServiceError, status } from '@grpc/grpc-js';
import Long from 'long';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { Consumer } from '../../src/client/consumer.js';
import { TokenAuthenticator } from '../../src/server/token-auth.js';
import { waitUntil } from '../helpers/wait.js';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { type TestBroker, removeDirectory, startTestBroker, temporaryDirectory } from '../helpers/test-server.js';

type HeartbeatResponse = strata.v1.HeartbeatResponse;
type DescribeGroupResponse = strata.v1.DescribeGroupResponse;
type FetchOffsetsResponse = strata.v1.FetchOffsetsResponse;

const sha256 = (token: string): string => createHash('sha256').update(token).digest('hex');
const SECRETS = { alice: 'alice-secret', bob: 'bob-secret', operator: 'operator-secret' };

/** Alice may read orders and payments, Bob only orders; both may use the groups "shared-*". */
function writeTokens(file: string, aliceTopics: string[]): void {
  const tokens = [
    { name: 'alice', sha256: sha256(SECRETS.alice), permissions: ['read'], topics: aliceTopics, groups: ['shared-*'] },
    { name: 'bob', sha256: sha256(SECRETS.bob), permissions: ['read'], topics: ['orders'], groups: ['shared-*'] },
    { name: 'operator', sha256: sha256(SECRETS.operator), permissions: ['admin'] },
  ];
  writeFileSync(file, JSON.stringify({ tokens }));
}

/** "topic-partition" labels, sorted. */
const labels = (list: readonly strata.v1.TopicPartitions[]): string[] => list.flatMap((entry) => entry.partitions.map((partition) => `${entry.topic}-${partition}`)).sort();

/** A broker with the tokens file above, the topics orders (2 partitions) and payments (1), and a record in each partition. */
async function brokerWithTokens(): Promise<{ broker: TestBroker; tokensFile: string; authenticator: TokenAuthenticator; as: Record<keyof typeof SECRETS, TestClient>; dispose(): Promise<void> }> {
  const tokensDirectory = temporaryDirectory('strata-tokens-');
  const tokensFile = join(tokensDirectory, 'tokens.json');
  writeTokens(tokensFile, ['orders', 'payments']);
  const authenticator = TokenAuthenticator.fromFile(tokensFile);
  const broker = await startTestBroker({ authenticator });
  const as = { alice: new TestClient(broker.address, SECRETS.alice), bob: new TestClient(broker.address, SECRETS.bob), operator: new TestClient(broker.address, SECRETS.operator) };
  for (const [name, partitions] of [['orders', 2], ['payments', 1]] as const) {
    await as.operator.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions }));
    for (let partition = 0; partition < partitions; partition++) {
      await as.operator.call('log.produce', v1.ProduceRequest.create({ topic: name, partition, records: [v1.Record.create({ value: Buffer.from('r') })] }));
    }
  }
  return {
    broker,
    tokensFile,
    authenticator,
    as,
    dispose: async () => {
      for (const client of Object.values(as)) client.close();
      await broker.dispose();
      removeDirectory(tokensDirectory);
    },
  };
}

/** The item errors a CommitOffsetsStream answers `requests` with, in order (null for a commit taken). */
async function streamedCommitErrors(client: TestClient, requests: readonly strata.v1.CommitOffsetsRequest[]): Promise<(strata.v1.IItemError | null)[]> {
  const call = (client.groups as unknown as { commitOffsetsStream(options: object): ClientDuplexStream<strata.v1.CommitOffsetsRequest, strata.v1.CommitOffsetsResponse> }).commitOffsetsStream({ deadline: Date.now() + 20_000 });
  const responses: strata.v1.CommitOffsetsResponse[] = [];
  const finished = new Promise<void>((resolve, reject) => {
    call.on('data', (response: strata.v1.CommitOffsetsResponse) => responses.push(response));
    call.on('end', resolve);
    call.on('error', reject);
  });
  requests.forEach((request, index) => call.write(v1.CommitOffsetsRequest.create({ ...request, correlationId: Long.fromNumber(index + 1, true) })));
  call.end();
  await finished;
  const byId = new Map(responses.map((response) => [Long.fromValue(response.correlationId).toNumber(), response.error ?? null]));
  return requests.map((_, index) => byId.get(index + 1) ?? null);
}

describe('a consumer-group member on a broker with tokens', () => {
  let setup: Awaited<ReturnType<typeof brokerWithTokens>>;
  beforeAll(async () => {
    setup = await brokerWithTokens();
  });
  afterAll(async () => {
    await setup?.dispose();
  });

  const describeGroup = (groupId: string): Promise<DescribeGroupResponse> => setup.as.operator.call<DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId }));
  const committed = async (groupId: string): Promise<string[]> =>
    (await setup.as.operator.call<FetchOffsetsResponse>('groups.fetchOffsets', v1.FetchOffsetsRequest.create({ groupId }))).offsets.map((entry) => `${entry.topic}-${entry.partition}@${Long.fromValue(entry.offset!).toNumber()}`).sort();
  /** Each member's id, epoch and assignment, as the operator sees them. */
  const members = async (groupId: string): Promise<[string, number, string[]][]> => (await describeGroup(groupId)).members.map((member) => [member.memberId, member.memberEpoch, labels(member.assignment)]);
  const commitRequest = (groupId: string, memberId: string, memberEpoch: number, partition: number, offset: number): strata.v1.CommitOffsetsRequest =>
    v1.CommitOffsetsRequest.create({ groupId, memberId, memberEpoch, offsets: [v1.OffsetCommit.create({ topic: 'orders', partition, offset: Long.fromNumber(offset) })] });
  const refusedAs = (action: string, memberId: string, groupId: string): string =>
    `token "bob" may not ${action} member ${memberId} of group "${groupId}": another token joined that member; join with this token (member epoch 0) to get a member of its own`;

  it("refuses another token's heartbeats, leaves, joins and commits as the member, and changes none of its epoch, assignment or offsets", async () => {
    const groupId = 'shared-orders';
    const { alice, bob } = setup.as;
    const joined = await alice.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberEpoch: 0, subscribedTopicNames: ['orders', 'payments'], clientId: 'alice' }));
    const memberId = joined.memberId;
    const epoch = joined.memberEpoch;
    expect(labels(joined.assignment)).toEqual(['orders-0', 'orders-1', 'payments-0']);
    await alice.call('groups.commitOffsets', commitRequest(groupId, memberId, epoch, 0, 1));
    const before = await members(groupId);
    expect(before).toEqual([[memberId, epoch, ['orders-0', 'orders-1', 'payments-0']]]);
    expect(await committed(groupId)).toEqual(['orders-0@1']);

    // Bob reads the member's id and epoch from a description, as anyone allowed on the group can.
    const shown = (await bob.call<DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId }))).members[0]!;
    expect([shown.memberId, shown.memberEpoch]).toEqual([memberId, epoch]);
    const heartbeatAs = (fields: Partial<strata.v1.HeartbeatRequest.$Properties>) => (): Promise<ServiceError> =>
      grpcError(bob.call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberId, memberEpoch: epoch, keepSubscription: true, ...fields })));
    // One at a time, each refused before the next is sent.
    const attempts: [string, () => Promise<ServiceError>, string][] = [
      // Before, this narrowed the member to Bob's topics and took payments-0 from it.
      ['heartbeat at its epoch', heartbeatAs({}), refusedAs('heartbeat as', memberId, groupId)],
      ['heartbeat with a subscription', heartbeatAs({ keepSubscription: false, subscribedTopicNames: ['orders'] }), refusedAs('heartbeat as', memberId, groupId)],
      // Before, a wrong epoch fenced the member, and Alice's next heartbeat found it gone.
      ['heartbeat at a wrong epoch', heartbeatAs({ memberEpoch: epoch + 5 }), refusedAs('heartbeat as', memberId, groupId)],
      ['leave', heartbeatAs({ memberEpoch: -1 }), refusedAs('leave as', memberId, groupId)],
      ['leave for now', heartbeatAs({ memberEpoch: -2 }), refusedAs('leave as', memberId, groupId)],
      ['join under its id', heartbeatAs({ memberEpoch: 0, keepSubscription: false, subscribedTopicNames: ['orders'], clientId: 'bob' }), refusedAs('join as', memberId, groupId)],
      ['commit', () => grpcError(bob.call('groups.commitOffsets', commitRequest(groupId, memberId, epoch, 0, 0))), refusedAs('commit as', memberId, groupId)],
    ];
    for (const [what, attempt, message] of attempts) {
      const error = await attempt();
      expect([what, error.code, error.details]).toEqual([what, status.PERMISSION_DENIED, message]);
    }
    const streamed = await streamedCommitErrors(bob, [commitRequest(groupId, memberId, epoch, 0, 0), commitRequest(groupId, memberId, epoch, 1, 1)]);
    expect(streamed.map((error) => [error?.code, error?.message])).toEqual([
      [status.PERMISSION_DENIED, refusedAs('commit as', memberId, groupId)],
      [status.PERMISSION_DENIED, refusedAs('commit as', memberId, groupId)],
    ]);

    expect(await members(groupId)).toEqual(before);
    expect(await committed(groupId)).toEqual(['orders-0@1']);
    // Alice is served as before: her heartbeat at her epoch keeps everything, her commits are
    // taken (unary and streamed), and she leaves.
    const owned = joined.assignment;
    const again = await alice.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberId, memberEpoch: epoch, keepSubscription: true, ownedPartitions: owned }));
    expect([again.memberEpoch, labels(again.assignment)]).toEqual([epoch, ['orders-0', 'orders-1', 'payments-0']]);
    await alice.call('groups.commitOffsets', commitRequest(groupId, memberId, epoch, 0, 0));
    expect(await streamedCommitErrors(alice, [commitRequest(groupId, memberId, epoch, 1, 1)])).toEqual([null]);
    expect(await committed(groupId)).toEqual(['orders-0@0', 'orders-1@1']);
    const left = await alice.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberId, memberEpoch: -1 }));
    expect(left.memberEpoch).toBe(-1);
    expect(await members(groupId)).toEqual([]);
  });

  it("refuses another token's join under a static member's instance id, whether the member is there or away, and lets its own token take it over", async () => {
    const groupId = 'shared-static';
    const { alice, bob } = setup.as;
    const join = (client: TestClient, clientId: string): Promise<HeartbeatResponse> =>
      client.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberEpoch: 0, instanceId: 'pod-1', subscribedTopicNames: ['orders'], clientId }));
    const first = await join(alice, 'alice');
    const refusal = (memberId: string): string =>
      `token "bob" may not take over instance id "pod-1" in group "${groupId}": member ${memberId}, which another token joined, holds it until it leaves with epoch -1 or its session ends; give this consumer an instance id of its own`;
    const whileThere = await grpcError(join(bob, 'bob'));
    expect([whileThere.code, whileThere.details]).toEqual([status.PERMISSION_DENIED, refusal(first.memberId)]);
    // Away after epoch -2, it keeps its partitions for its own return.
    await alice.call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberId: first.memberId, memberEpoch: -2 }));
    const whileAway = await grpcError(join(bob, 'bob'));
    expect([whileAway.code, whileAway.details]).toEqual([status.PERMISSION_DENIED, refusal(first.memberId)]);
    expect(await members(groupId)).toEqual([[first.memberId, first.memberEpoch, ['orders-0', 'orders-1']]]);
    const back = await join(alice, 'alice');
    expect([back.memberId === first.memberId, labels(back.assignment)]).toEqual([false, ['orders-0', 'orders-1']]);
    expect((await members(groupId)).map(([memberId]) => memberId)).toEqual([back.memberId]);
  });
});

describe("a member whose token's topics are narrowed while it is in a group", () => {
  it('is answered with its topics alone, a heartbeat of its previous epoch too, and gives the others up', async () => {
    const setup = await brokerWithTokens();
    try {
      const { alice } = setup.as;
      const groupId = 'shared-narrowed';
      const joined = await alice.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberEpoch: 0, subscribedTopicNames: ['orders', 'payments'], clientId: 'alice' }));
      expect(labels(joined.assignment)).toEqual(['orders-0', 'orders-1', 'payments-0']);
      writeTokens(setup.tokensFile, ['orders']);
      setup.authenticator.reload(); // what SIGHUP does
      // A heartbeat of the previous epoch (it joined alone: one move, one epoch) moves nothing
      // and would be answered with what the member holds, payments too: payments is left out.
      const heartbeat = (memberEpoch: number): Promise<HeartbeatResponse> =>
        alice.call<HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId, memberId: joined.memberId, memberEpoch, keepSubscription: true, ownedPartitions: joined.assignment }));
      const previous = await heartbeat(joined.memberEpoch - 1);
      expect(labels(previous.assignment)).toEqual(['orders-0', 'orders-1']);
      const current = await heartbeat(joined.memberEpoch);
      expect(labels(current.assignment)).toEqual(['orders-0', 'orders-1']);
      expect(current.memberEpoch).toBeGreaterThan(joined.memberEpoch);
    } finally {
      await setup.dispose();
    }
  });

  it('lets a client Consumer whose token was renamed join again under a new member id, and take its partitions once the old member expires', async () => {
    const rename = (file: string): void => {
      const tokens = [
        { name: 'alice-renamed', sha256: sha256(SECRETS.alice), permissions: ['read'], topics: ['orders', 'payments'], groups: ['shared-*'] },
        { name: 'operator', sha256: sha256(SECRETS.operator), permissions: ['admin'] },
      ];
      writeFileSync(file, JSON.stringify({ tokens }));
    };
    const setup = await brokerWithTokens();
    const as = setup.as;
    const members = async (): Promise<{ id: string; partitions: number }[]> =>
      (await as.operator.call<DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId: 'shared-renamed' })).catch(() => ({ members: [] }))).members.map((member: strata.v1.IMemberDescription) => ({ id: member.memberId!, partitions: labels((member.assignment ?? []) as strata.v1.TopicPartitions[]).length }));
    const consumer = new Consumer({ server: setup.broker.address, token: SECRETS.alice, groupId: 'shared-renamed', subscribe: ['orders'], sessionTimeoutMs: 1_000 });
    try {
      // Until the consumer's first heartbeat the group is unknown (NOT_FOUND): no members.
      await waitUntil(async () => (await members()).some((member) => member.partitions === 2), 'the consumer to hold both partitions of orders');
      const [first] = await members();
      rename(setup.tokensFile);
      setup.authenticator.reload();
      // The broker's state moves before its answer reaches the consumer (sent once on disk).
      await waitUntil(async () => {
        const now = await members();
        return now.length === 1 && now[0]!.id !== first!.id && now[0]!.partitions === 2 && consumer.assignment().length === 2;
      }, 'a member of a new id to hold both partitions, the old one gone, and the consumer to know it');
      expect(consumer.memberId).toBe((await members())[0]!.id);
    } finally {
      await consumer.close();
      await setup.dispose();
    }
  });
});
