// Goal: smoke-check consumer-group membership over gRPC; method: in-process broker, raw heartbeats.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

let broker: TestBroker;
let client: TestClient;
beforeAll(async () => {
  broker = await startTestBroker();
  client = new TestClient(broker.address);
});
afterAll(async () => {
  client.close();
  await broker.dispose();
});

it('three members of a 12-partition topic get 4 each', async () => {
  await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'g12', partitions: 12 }));
  const members: { id: string; epoch: number; owned: strata.v1.TopicPartitions[] }[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await client.call<strata.v1.HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g', memberEpoch: 0, subscribedTopicNames: ['g12'] }));
    members.push({ id: r.memberId, epoch: r.memberEpoch, owned: r.assignment });
  }
  for (let round = 0; round < 4; round++) {
    for (const m of members) {
      const r = await client.call<strata.v1.HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g', memberId: m.id, memberEpoch: m.epoch, keepSubscription: true, ownedPartitions: m.owned }));
      m.epoch = r.memberEpoch;
      m.owned = r.assignment;
    }
  }
  const counts = members.map((m) => m.owned.reduce((n, t) => n + t.partitions.length, 0));
  expect(counts).toEqual([4, 4, 4]);
  const d = await client.call<strata.v1.DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId: 'g' }));
  expect(d.state).toBe('stable');
});
