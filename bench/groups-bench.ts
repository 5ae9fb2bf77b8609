/**
 * Consumer-group benchmark against a real broker that it starts as a child process (`strata
 * serve` on a temporary data directory, ephemeral ports, the broker's V8 flags), driven by raw
 * heartbeats over gRPC from this process as real members would.
 *
 *   npm run build && node dist/bench/groups-bench.js
 *
 * Cases (heartbeat interval 1 s, session timeout 10 s):
 *   rebalance  3 members on a 12-partition topic, one leaves; the two others heartbeat on their
 *              interval at random phases (at once when acknowledging a revocation). Time from
 *              the leave to all 12 partitions owned by the two. 10 runs: median and max.
 *   large      100 members join a 1,000-partition topic over ~1 s, then heartbeat on their
 *              interval. Time from the last join to DescribeGroup state 'stable'.
 *   commits    one member owning 12 partitions commits 1 partition at a time, 64 commits in
 *              flight, for 5 s: commits per second, once with unary CommitOffsets calls and once
 *              over the client's CommitOffsetsStream (what the Consumer uses). The topic is
 *              empty, so every commit is offset 0 (an offset beyond the log end is refused).
 */
import { loadavg } from 'node:os';
import { type Client, type ServiceError, credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import Long from 'long';
import { strata } from '../src/generated/strata.js';
import { adminServiceDefinition, groupsServiceDefinition } from '../src/server/service-definitions.js';
import { startLocalBroker } from '../src/bench/local-broker.js';
import { StartedServers } from '../src/bench/started-servers.js';
import { exitWithFailureLine } from './failure-line.js';
import { Connection } from '../src/client/connection.js';
import { OffsetCommitStream } from '../src/client/offset-commit-stream.js';

const v1 = strata.v1;
type TP = strata.v1.TopicPartitions;
type HeartbeatResponse = strata.v1.HeartbeatResponse;
type DescribeGroupResponse = strata.v1.DescribeGroupResponse;

const HEARTBEAT_INTERVAL_MS = 1_000;
const SESSION_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// A small promise-based gRPC client.

type UnaryMethod = (request: unknown, options: { deadline: number }, callback: (error: ServiceError | null, response: unknown) => void) => void;

class BenchClient {
  readonly admin: Client;
  readonly groups: Client;
  constructor(address: string) {
    const AdminClient = makeGenericClientConstructor(adminServiceDefinition, 'strata.v1.Admin');
    const GroupsClient = makeGenericClientConstructor(groupsServiceDefinition, 'strata.v1.Groups');
    this.admin = new AdminClient(address, credentials.createInsecure());
    this.groups = new GroupsClient(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  }
  call<Response>(method: string, request: unknown, timeoutMs = 20_000): Promise<Response> {
    const [service, name] = method.split('.') as ['admin' | 'groups', string];
    const client = this[service] as unknown as Record<string, UnaryMethod>;
    return new Promise<Response>((resolve, reject) => {
      client[name]!.call(client, request, { deadline: Date.now() + timeoutMs }, (error, response) => (error ? reject(error) : resolve(response as Response)));
    });
  }
  close(): void {
    this.admin.close();
    this.groups.close();
  }
}

let client: BenchClient;
let address: string;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const count = (list: readonly TP[]): number => list.reduce((sum, entry) => sum + entry.partitions.length, 0);
const keys = (list: readonly TP[]): Set<string> => new Set(list.flatMap((e) => e.partitions.map((p) => `${e.topic}-${p}`)));
const describeGroup = (groupId: string): Promise<DescribeGroupResponse> => client.call<DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId }));

async function createTopic(name: string, partitions: number): Promise<void> {
  await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions }));
}

// ---------------------------------------------------------------------------------------------
// A raw, protocol-following member.

class Member {
  id = '';
  epoch = 0;
  owned: TP[] = [];
  intervalMs = HEARTBEAT_INTERVAL_MS;
  /** Called after every successful heartbeat of the background loop. */
  onBeat: (() => void) | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;

  constructor(
    readonly groupId: string,
    readonly topics: string[],
  ) {}

  async join(): Promise<this> {
    const response = await client.call<HeartbeatResponse>(
      'groups.heartbeat',
      v1.HeartbeatRequest.create({ groupId: this.groupId, memberEpoch: 0, subscribedTopicNames: this.topics, clientId: 'bench', sessionTimeoutMs: SESSION_TIMEOUT_MS }),
    );
    this.apply(response);
    return this;
  }

  /** One heartbeat; returns true when the answer revokes partitions (acknowledge at once). */
  async beat(): Promise<boolean> {
    const response = await client.call<HeartbeatResponse>(
      'groups.heartbeat',
      v1.HeartbeatRequest.create({ groupId: this.groupId, memberId: this.id, memberEpoch: this.epoch, keepSubscription: true, ownedPartitions: this.owned, clientId: 'bench', sessionTimeoutMs: SESSION_TIMEOUT_MS }),
    );
    const assigned = keys(response.assignment);
    const revoked = [...keys(this.owned)].some((k) => !assigned.has(k));
    this.apply(response);
    return revoked;
  }

  async leave(): Promise<void> {
    this.stop();
    await client.call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: this.groupId, memberId: this.id, memberEpoch: -1, keepSubscription: true }));
    this.owned = [];
  }

  /** Heartbeats in the background: first at a random phase within the interval, then every interval. */
  start(): void {
    this.stopped = false;
    this.loop = (async () => {
      await this.pause(Math.random() * this.intervalMs);
      while (!this.stopped) {
        let revoked: boolean;
        try {
          revoked = await this.beat();
        } catch (error) {
          if (!this.stopped) console.error(`member ${this.id}: heartbeat failed: ${(error as Error).message}`);
          return;
        }
        this.onBeat?.();
        if (!revoked) await this.pause(this.intervalMs);
      }
    })();
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    return this.loop ?? Promise.resolve();
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }

  private apply(response: HeartbeatResponse): void {
    this.id = response.memberId;
    this.epoch = response.memberEpoch;
    this.owned = response.assignment;
    if (response.heartbeatIntervalMs > 0) this.intervalMs = response.heartbeatIntervalMs;
  }
}

/** Beats every member in turn (no waiting) until the group is stable, then once more. */
async function settle(groupId: string, members: Member[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const member of members) await member.beat();
    if ((await describeGroup(groupId)).state === 'stable') {
      for (const member of members) await member.beat();
      return;
    }
    if (Date.now() > deadline) throw new Error(`group ${groupId} did not settle within ${timeoutMs} ms`);
  }
}

// ---------------------------------------------------------------------------------------------
// Cases.

async function rebalanceAfterLeave(runs: number): Promise<number[]> {
  await createTopic('bench-12', 12);
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const groupId = `bench-rebalance-${run}`;
    const [a, b, c] = [new Member(groupId, ['bench-12']), new Member(groupId, ['bench-12']), new Member(groupId, ['bench-12'])];
    for (const m of [a, b, c]) await m.join();
    await settle(groupId, [a, b, c]);
    if (count(a.owned) + count(b.owned) + count(c.owned) !== 12) throw new Error('not stable before the leave');
    a.start();
    c.start();
    await sleep(HEARTBEAT_INTERVAL_MS + Math.random() * HEARTBEAT_INTERVAL_MS);
    let leftAt = 0;
    const done = new Promise<number>((resolve, reject) => {
      const timeout = setTimeout(() => reject(new Error(`run ${run}: partitions not all owned after 20 s`)), 20_000);
      const check = () => {
        if (leftAt > 0 && new Set([...keys(a.owned), ...keys(c.owned)]).size === 12) {
          clearTimeout(timeout);
          resolve(performance.now() - leftAt);
        }
      };
      a.onBeat = check;
      c.onBeat = check;
    });
    leftAt = performance.now();
    await b.leave();
    times.push(await done);
    await Promise.all([a.stop(), c.stop()]);
    await Promise.all([a.leave(), c.leave()]);
  }
  return times;
}

async function largeGroup(memberCount: number, partitions: number, joinSpreadMs: number): Promise<number> {
  await createTopic('bench-1000', partitions);
  const groupId = 'bench-large';
  const members = Array.from({ length: memberCount }, () => new Member(groupId, ['bench-1000']));
  let lastJoin = 0;
  await Promise.all(
    members.map(async (member, i) => {
      await sleep((i * joinSpreadMs) / memberCount);
      await member.join();
      lastJoin = Math.max(lastJoin, performance.now());
      member.start();
    }),
  );
  const deadline = Date.now() + 60_000;
  let stableAt = 0;
  for (;;) {
    const d = await describeGroup(groupId);
    if (d.state === 'stable' && d.members.length === memberCount) {
      stableAt = performance.now();
      const unowned = d.partitions.filter((p) => !p.memberId).length;
      const assigned = d.members.reduce((sum, m) => sum + count(m.assignment), 0);
      if (unowned > 0 || assigned !== partitions) console.error(`warning: stable with ${unowned} unowned partitions, ${assigned} assigned`);
      break;
    }
    if (Date.now() > deadline) throw new Error(`large group not stable within 60 s (state ${d.state}, ${d.members.length} members)`);
    await sleep(20);
  }
  await Promise.all(members.map((m) => m.stop()));
  await Promise.all(members.map((m) => m.leave().catch(() => undefined)));
  return (stableAt - lastJoin) / 1000;
}

async function commitThroughput(via: 'unary' | 'stream', inFlight: number, durationMs: number): Promise<{ perSecond: number; errors: number }> {
  const groupId = `bench-commits-${via}`;
  const member = await new Member(groupId, ['bench-12']).join();
  await settle(groupId, [member]);
  if (count(member.owned) !== 12) throw new Error(`committer owns ${count(member.owned)} partitions, expected 12`);
  member.start();
  let next = 0;
  let done = 0;
  let errors = 0;
  let measuring = false;
  const connection = new Connection({ server: address });
  const stream = new OffsetCommitStream(connection);
  const commitOne = async (): Promise<void> => {
    const n = next++;
    try {
      if (via === 'stream') {
        await stream.commit(groupId, member.id, member.epoch, [{ topic: 'bench-12', partition: n % 12, offset: 0 }]);
      } else {
        await client.call(
          'groups.commitOffsets',
          v1.CommitOffsetsRequest.create({ groupId, memberId: member.id, memberEpoch: member.epoch, offsets: [v1.OffsetCommit.create({ topic: 'bench-12', partition: n % 12, offset: Long.ZERO })] }),
        );
      }
      if (measuring) done++;
    } catch (error) {
      if (errors++ < 3) console.error(`commit failed: ${(error as Error).message}`);
    }
  };
  // Warm-up, then the measured window.
  const warmUpEnd = Date.now() + 500;
  const end = warmUpEnd + durationMs;
  let startedAt = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < end) {
        if (!measuring && Date.now() >= warmUpEnd) {
          measuring = true;
          startedAt = performance.now();
        }
        await commitOne();
      }
    }),
  );
  const elapsed = (performance.now() - startedAt) / 1000;
  stream.close();
  connection.close();
  await member.stop();
  await member.leave();
  return { perSecond: done / elapsed, errors };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  // The broker is stopped (its data directory removed with it) however the run ends, Ctrl-C and
  // SIGTERM included, as in `strata bench --local`.
  const servers = new StartedServers();
  try {
    await servers.run(() => measure(servers));
  } finally {
    await servers.stopAll();
  }
}

async function measure(servers: StartedServers): Promise<void> {
  const broker = await servers.track(() =>
    startLocalBroker({
      serveArgs: ['--group-session-timeout-ms', String(SESSION_TIMEOUT_MS), '--group-heartbeat-interval-ms', String(HEARTBEAT_INTERVAL_MS)],
    }),
  );
  address = broker.server.address;
  client = new BenchClient(address);
  try {
    const loadBefore = loadavg();
    console.log('1/3 rebalance after a leave (10 runs)...');
    const times = (await rebalanceAfterLeave(10)).sort((x, y) => x - y);
    const median = (times[4]! + times[5]!) / 2;
    const max = times[times.length - 1]!;
    console.log(`    runs (ms): ${times.map((t) => t.toFixed(0)).join(' ')}`);
    console.log('2/3 100 members, 1,000 partitions...');
    const largeSeconds = await largeGroup(100, 1_000, 1_000);
    console.log('3/3 offset commits, 64 in flight, 5 s unary and 5 s streamed...');
    const unaryCommits = await commitThroughput('unary', 64, 5_000);
    const commits = await commitThroughput('stream', 64, 5_000);
    const loadAfter = loadavg();

    const target1 = HEARTBEAT_INTERVAL_MS + 100;
    const rows: [string, string, string, boolean | null][] = [
      ['rebalance after leave, median', `${median.toFixed(0)} ms`, `<= ${target1} ms`, median <= target1],
      ['rebalance after leave, max', `${max.toFixed(0)} ms`, `<= ${target1} ms`, max <= target1],
      ['100 members / 1,000 partitions: last join -> stable', `${largeSeconds.toFixed(2)} s`, '<= 5 s', largeSeconds <= 5],
      [`offset commits, unary calls (64 in flight${unaryCommits.errors ? `, ${unaryCommits.errors} errors` : ''})`, `${Math.round(unaryCommits.perSecond).toLocaleString('en-US')}/s`, '-', null],
      [`offset commits, CommitOffsetsStream (64 in flight${commits.errors ? `, ${commits.errors} errors` : ''})`, `${Math.round(commits.perSecond).toLocaleString('en-US')}/s`, '>= 20,000/s', commits.perSecond >= 20_000],
    ];
    const w = [Math.max(...rows.map((r) => r[0].length)), Math.max(...rows.map((r) => r[1].length)), Math.max(...rows.map((r) => r[2].length))];
    console.log('');
    console.log(`${'case'.padEnd(w[0]!)}  ${'result'.padStart(w[1]!)}  ${'target'.padEnd(w[2]!)}  verdict`);
    for (const [name, result, target, ok] of rows) console.log(`${name.padEnd(w[0]!)}  ${result.padStart(w[1]!)}  ${target.padEnd(w[2]!)}  ${ok === null ? '' : ok ? 'PASS' : 'MISS'}`);
    console.log('');
    console.log(`load average (1/5/15 min): before ${loadBefore.map((l) => l.toFixed(2)).join(' / ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' / ')}; node ${process.version}`);
  } finally {
    client.close();
  }
}

main().catch(exitWithFailureLine('groups-bench'));
