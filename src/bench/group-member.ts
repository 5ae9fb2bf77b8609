/**
 * The smallest consumer-group member the consume benchmark needs for `--group`: it joins with a
 * subscription to one topic, heartbeats until the broker assigns it partitions, keeps
 * heartbeating while the benchmark reads, commits the final positions and leaves (epoch -1).
 *
 * The benchmark is the group's only member, so its assignment does not change while it reads;
 * if the broker takes partitions away all the same (another member joined), the member reports
 * it rather than follow the two-phase protocol: the figures would not mean anything then.
 */
import type { MethodDefinition } from '@grpc/grpc-js';
import Long from 'long';
import type { Connection } from '../client/connection.js';
import { strata } from '../generated/strata.js';
import { groupsServiceDefinition } from '../server/service-definitions.js';
import { sleep } from './throttle.js';

const v1 = strata.v1;

const groups = {
  heartbeat: groupsServiceDefinition.heartbeat as MethodDefinition<strata.v1.HeartbeatRequest, strata.v1.HeartbeatResponse>,
  commitOffsets: groupsServiceDefinition.commitOffsets as MethodDefinition<strata.v1.CommitOffsetsRequest, strata.v1.CommitOffsetsResponse>,
  fetchOffsets: groupsServiceDefinition.fetchOffsets as MethodDefinition<strata.v1.FetchOffsetsRequest, strata.v1.FetchOffsetsResponse>,
};

/** Longest wait between heartbeats while waiting for an assignment. */
const JOIN_POLL_MAX_MS = 200;

export class BenchGroupMember {
  private memberId = '';
  private memberEpoch = 0;
  private heartbeatIntervalMs = 5_000;
  private owned: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private heartbeating: Promise<void> = Promise.resolve();
  /** Set when the broker revoked partitions while the benchmark read them. */
  revoked: number[] = [];

  private constructor(
    private readonly connection: Connection,
    readonly groupId: string,
    readonly topic: string,
  ) {}

  /** Joins and waits (up to `timeoutMs`) until the broker assigns partitions of `topic`. */
  static async join(connection: Connection, groupId: string, topic: string, timeoutMs: number): Promise<BenchGroupMember> {
    const member = new BenchGroupMember(connection, groupId, topic);
    const deadline = Date.now() + timeoutMs;
    await member.heartbeat(true);
    while (member.owned.length === 0) {
      if (Date.now() >= deadline) throw new Error(`group "${groupId}" assigned no partition of "${topic}" within ${timeoutMs} ms (other members may own them)`);
      await sleep(Math.min(member.heartbeatIntervalMs, JOIN_POLL_MAX_MS));
      await member.heartbeat(false);
    }
    member.schedule();
    return member;
  }

  get partitions(): readonly number[] {
    return this.owned;
  }

  /** Commits `positions` (partition → next offset), then leaves the group. */
  async commitAndLeave(positions: ReadonlyMap<number, number>): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.heartbeating;
    const offsets = [...positions].map(([partition, offset]) => v1.OffsetCommit.create({ topic: this.topic, partition, offset: Long.fromNumber(offset) }));
    try {
      if (offsets.length > 0) {
        await this.connection.unary(groups.commitOffsets, v1.CommitOffsetsRequest.create({ groupId: this.groupId, memberId: this.memberId, memberEpoch: this.memberEpoch, offsets }));
      }
    } finally {
      await this.connection.unary(groups.heartbeat, v1.HeartbeatRequest.create({ groupId: this.groupId, memberId: this.memberId, memberEpoch: -1 }));
    }
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.heartbeating = this.heartbeat(false).then(
        () => this.schedule(),
        () => this.schedule(), // a missed heartbeat is retried at the next interval
      );
    }, this.heartbeatIntervalMs);
    this.timer.unref();
  }

  private async heartbeat(joining: boolean): Promise<void> {
    const request = joining
      ? v1.HeartbeatRequest.create({ groupId: this.groupId, memberEpoch: 0, clientId: 'strata-bench', subscribedTopicNames: [this.topic] })
      : v1.HeartbeatRequest.create({
          groupId: this.groupId,
          memberId: this.memberId,
          memberEpoch: this.memberEpoch,
          keepSubscription: true,
          ownedPartitions: this.owned.length > 0 ? [v1.TopicPartitions.create({ topic: this.topic, partitions: this.owned })] : [],
        });
    const response = await this.connection.unary(groups.heartbeat, request);
    this.memberId = response.memberId;
    this.memberEpoch = response.memberEpoch;
    if (response.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = response.heartbeatIntervalMs;
    const assigned = response.assignment.filter((entry) => entry.topic === this.topic).flatMap((entry) => entry.partitions);
    if (this.owned.length === 0) {
      this.owned = [...assigned].sort((a, b) => a - b);
    } else {
      const lost = this.owned.filter((partition) => !assigned.includes(partition));
      if (lost.length > 0) this.revoked = lost;
    }
  }
}

/** `groupId`'s committed offsets of `topic`, by partition (no membership needed to read them). */
export async function committedOffsets(connection: Connection, groupId: string, topic: string): Promise<Map<number, number>> {
  const response = await connection.unary(groups.fetchOffsets, v1.FetchOffsetsRequest.create({ groupId, topics: [topic] }));
  return new Map(response.offsets.filter((entry) => entry.topic === topic).map((entry) => [entry.partition, Long.fromValue(entry.offset).toNumber()]));
}
