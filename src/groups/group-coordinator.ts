/**
 * The group coordinator: every consumer group of the broker, their heartbeats and session
 * timeouts, committed offsets (LMDB, see `offset-store.ts`) and group administration with lag.
 *
 * Membership is kept in LMDB too (`membership-store.ts`): a restarted broker has every member it
 * had, with its epoch and partitions, and gives each a whole session from its start. A heartbeat
 * is answered once the changes it made are on disk (`membershipDurable`). Groups exist while
 * they have members or committed offsets.
 *
 * Sessions are checked every `sessionCheckIntervalMs`; topic creation, deletion and partition
 * changes recompute the targets of the groups that subscribe to the topic (regular-expression
 * subscriptions pick up new topics this way). Offsets of a deleted topic are deleted, and so are
 * those of a group that has had no members and no commit for `offsetsRetentionMs` (checked
 * every `offsetsRetentionCheckIntervalMs`).
 */
import {
  DEFAULT_OFFSETS_RETENTION_MS,
  MEMBER_CLIENT_ID_LENGTH_MAX,
  MEMBER_INSTANCE_ID_LENGTH_MAX,
  SESSION_TIMEOUT_MAX_MS,
  SESSION_TIMEOUT_MIN_MS,
} from '../common/broker-limits.js';
import { randomUUID } from 'node:crypto';
import { type Clock, systemClock } from '../common/clock.js';
import { ErrorCode, StrataError, errnoOrMessage } from '../common/errors.js';
import { groupIdProblem, newGroupIdProblem } from '../common/group-id.js';
import { rootLogger, type Logger } from '../common/logger.js';
import { UNPRINTABLE_CHARACTER, escapeUnprintable } from '../common/printable.js';
import type { Broker } from '../broker/broker.js';
import { topicNameProblem } from '../common/topic-name.js';
import type { PartitionLog } from '../storage/partition-log.js';
import { firstRecordFrom } from '../storage/inflated-records.js';
import { type AssignorName, ASSIGNORS, type TopicPartition, splitTp, tp } from './assignors.js';
import { ConsumerGroup, type GroupState, type HeartbeatOutput, LEAVE_EPOCH, type PartitionMove, STATIC_LEAVE_EPOCH, type Subscription, type TopicScope } from './consumer-group.js';
import { type CommittedOffset, OffsetStore } from './offset-store.js';
import { MembershipStore } from './membership-store.js';
import { plural } from '../common/plural.js';
import { ThrottledWarning } from '../common/throttled-warning.js';

export interface GroupCoordinatorOptions {
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  sessionCheckIntervalMs?: number;
  /** Kafka's offsets.retention.minutes, in ms (default 7 days); -1 keeps offsets for ever. */
  offsetsRetentionMs?: number;
  offsetsRetentionCheckIntervalMs?: number;
  clock?: Clock;
  logger?: Logger;
  events?: GroupEvents;
  /**
   * Whether the broker takes tokens, for the members it kept: without tokens, a member kept
   * with the name of the token that joined it is no longer bound to it; with tokens, one kept
   * without a name is left out (it joins again with its token). Undefined keeps them as they are.
   */
  tokens?: boolean;
}

/**
 * What the coordinator reports as it happens, for the metrics: a group's target assignment
 * changed (a rebalance), and a group was forgotten (no members and no committed offsets left,
 * or deleted), so that per-group series can go with it. A group recreated later under the same
 * id starts again from nothing.
 */
export interface GroupEvents {
  rebalanced(groupId: string): void;
  forgotten(groupId: string): void;
}

/**
 * A member's session holds at least this many heartbeat intervals: a shorter session is told to
 * heartbeat every fifth of it. The client gives its partitions up when no heartbeat has been
 * answered for its session less two intervals (it cannot know the broker's count exactly), so
 * with five a transient failure or two are retried first; with three, one failed heartbeat made
 * a member drop its partitions.
 */
export const SESSION_HEARTBEAT_INTERVALS = 5;

const NO_GROUP_EVENTS: GroupEvents = { rebalanced: () => undefined, forgotten: () => undefined };

/** One offset of a commit. */
export interface OffsetToCommit {
  topic: string;
  partition: number;
  offset: number;
  metadata: string;
  /** The creation time of the topic the offset was read from (0 or absent: any). */
  topicCreatedAtMs?: number;
}

export interface HeartbeatRequest {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  instanceId: string | null;
  clientId: string;
  host: string;
  subscription: Subscription | null;
  assignor: string;
  owned: { topic: string; partition: number }[];
  sessionTimeoutMs: number;
  /** The topics the call's token may use (null or absent: every topic); the member is assigned no others. */
  topicScope?: TopicScope | null;
  /** The name of the call's token (null or absent: a broker without tokens); a member is bound to the one that joined it. */
  tokenName?: string | null;
}

export interface HeartbeatResult {
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  assignment: { topic: string; partition: number }[];
  /** The member's session timeout: the one it asked for, or the broker's default. */
  sessionTimeoutMs: number;
}

/** A partition a group's lag covers (`lagPartitions`). */
interface LagPartition {
  topic: string;
  partition: number;
  log: PartitionLog;
  committedOffset: number;
  from: number;
  lag: number;
}

export interface PartitionLag {
  topic: string;
  partition: number;
  committedOffset: number;
  logEndOffset: number;
  lag: number;
  lagMs: number;
  memberId: string;
}

export interface GroupDescription {
  groupId: string;
  state: GroupState;
  groupEpoch: number;
  assignor: AssignorName;
  members: {
    memberId: string;
    instanceId: string | null;
    clientId: string;
    host: string;
    memberEpoch: number;
    assignment: { topic: string; partition: number }[];
    subscribedTopicNames: string[];
    subscribedTopicRegex: string;
  }[];
  partitions: PartitionLag[];
  totalLag: number;
}

export type ResetTarget =
  | { kind: 'earliest' }
  | { kind: 'latest' }
  | { kind: 'offset'; offset: number }
  | { kind: 'timestamp'; timestamp: number }
  | { kind: 'shiftBy'; shift: number };

const OFFSET_METADATA_BYTES_MAX = 4096;

/** Groups named in a line about many (the rest are counted). */
const GROUPS_NAMED = 20;

/** A member's partitions named in a line about them (the rest are counted). */
const PARTITIONS_NAMED = 20;

/** Partition moves named in a rebalance's log line; the rest are counted (a 1,000-partition group moves hundreds at once). */
const REBALANCE_MOVES_LOGGED = 20;

function checkGroupId(groupId: string): void {
  const problem = groupIdProblem(groupId);
  if (problem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, problem);
}

/** For calls that join a group or give it offsets: also refuses ids that only older versions accepted. */
function checkNewGroupId(groupId: string): void {
  const problem = newGroupIdProblem(groupId);
  if (problem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, problem);
}

/** The longest member id a joining consumer may choose (a UUID is 36 characters). */
const MEMBER_ID_LENGTH_MAX = 100;

/** A member id a joining consumer chose: printable, and short enough to show in a table. */
function checkChosenMemberId(memberId: string): void {
  if (memberId.length > MEMBER_ID_LENGTH_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member id is ${memberId.length} characters long; the limit is ${MEMBER_ID_LENGTH_MAX} (a UUID is 36)`);
  }
  if (UNPRINTABLE_CHARACTER.test(memberId)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member id "${escapeUnprintable(memberId)}" contains an unprintable character; use printable characters (a UUID, say)`);
  }
}

/**
 * The most topic names a subscription may list (a member keeps them for as long as it is in
 * the group, and every rebalance and DescribeGroup goes through them); a regex covers more.
 */
export const SUBSCRIBED_TOPIC_NAMES_MAX = 10_000;

/**
 * Bounds on what a member says of itself, kept for as long as it is a member: its client id and
 * instance id when it joins (a heartbeat of a member that joined is not refused for them; the
 * client refuses such ids before it joins), and the topic names of any subscription it sends.
 */
function checkMemberFields(request: HeartbeatRequest): void {
  if (request.memberEpoch === 0 && request.clientId.length > MEMBER_CLIENT_ID_LENGTH_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `client_id is ${request.clientId.length} characters long; the limit is ${MEMBER_CLIENT_ID_LENGTH_MAX}`);
  }
  if (request.memberEpoch === 0 && request.instanceId === '') {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'instance_id is set but empty: leave it unset for a dynamic member, or give a stable id of this consumer instance (its pod name)');
  }
  if (request.memberEpoch === 0 && request.instanceId !== null && request.instanceId.length > MEMBER_INSTANCE_ID_LENGTH_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `instance_id is ${request.instanceId.length} characters long; the limit is ${MEMBER_INSTANCE_ID_LENGTH_MAX}`);
  }
  const names = request.subscription?.topicNames.length ?? 0;
  if (names > SUBSCRIBED_TOPIC_NAMES_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `subscribed_topic_names lists ${names} names; the limit is ${SUBSCRIBED_TOPIC_NAMES_MAX}: subscribe to more with subscribed_topic_regex`);
  }
  // A name no topic can have would never match: refused, as a mistake.
  request.subscription?.topicNames.forEach((name, index) => {
    const problem = topicNameProblem(name);
    if (problem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `subscribed_topic_names[${index}]: ${problem}`);
  });
}

/**
 * A group's lag on one topic (see `lagByTopic`): over every partition of `logs` when the group
 * subscribes to the topic, else over those it has committed offsets for that exist; null when
 * that leaves none.
 */
function topicLag(logs: readonly PartitionLog[], committed: ReadonlyMap<number, number> | undefined, subscribed: boolean): number | null {
  if (subscribed) {
    let lag = 0;
    for (let partition = 0; partition < logs.length; partition++) lag += partitionLag(logs[partition]!, committed?.get(partition) ?? -1).lag;
    return logs.length > 0 ? lag : null;
  }
  let lag: number | null = null;
  for (const [partition, offset] of committed ?? []) {
    const log = logs[partition];
    if (log !== undefined) lag = (lag ?? 0) + partitionLag(log, offset).lag;
  }
  return lag;
}

/**
 * Where a group reads a partition from, and the records from there to the high watermark: from
 * its committed offset (-1: none, so the log start), or the log start if retention passed it.
 */
function partitionLag(log: PartitionLog, committedOffset: number): { from: number; lag: number } {
  const from = Math.max(committedOffset < 0 ? log.logStartOffset : committedOffset, log.logStartOffset);
  return { from, lag: Math.max(0, log.highWatermark - from) };
}

function sortedPairs(keys: Iterable<TopicPartition>): { topic: string; partition: number }[] {
  return [...keys].map(splitTp).sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
}

export class GroupCoordinator {
  private readonly groups = new Map<string, ConsumerGroup>();
  /**
   * The highest epoch of any group forgotten: a group made again starts there, so a consumer
   * that joins it under the member id it had before starts above every epoch it had then.
   */
  private epochFloor = 0;
  /** Deleted topics whose committed offsets could not be removed then (see `onTopicDeleted`). */
  private readonly offsetsLeftOf = new Set<string>();
  /** Groups under an administrative call (reset, delete) that needs them to stay empty. */
  private readonly administered = new Set<string>();
  private readonly offsets: OffsetStore;
  private readonly membership: MembershipStore;
  private readonly membershipWriteFailure: ThrottledWarning;
  private readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly events: GroupEvents;
  private readonly timer: NodeJS.Timeout;
  private readonly offsetsRetentionMs: number;
  private readonly offsetsTimer: NodeJS.Timeout;
  /**
   * Since when (monotonic clock, so a jump of the wall clock does not expire a group early)
   * each group with offsets has been seen without members; a heartbeat in the group clears it.
   */
  private readonly emptySinceMs = new Map<string, number>();
  private expiring: Promise<string[]> | null = null;
  private closed = false;

  constructor(
    private readonly broker: Broker,
    options: GroupCoordinatorOptions = {},
  ) {
    this.offsets = new OffsetStore(broker.metadataStore.root);
    this.membership = new MembershipStore(broker.metadataStore.root, {
      groupOf: (groupId) => this.groups.get(groupId),
      epochFloor: () => this.epochFloor,
      writeFailed: (groupId, error) => this.membershipWriteFailure.note({ group: groupId, err: error }),
    });
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 45_000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 5_000;
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? rootLogger).child({ subsystem: 'groups' });
    this.events = options.events ?? NO_GROUP_EVENTS;
    this.membershipWriteFailure = new ThrottledWarning(this.logger, 'a membership write failed: heartbeats in the group are answered STORAGE_ERROR until the group is written whole (tried at its next heartbeat, and every second)', {
      intervalMs: 10_000,
      countField: 'failuresSinceLastLine',
      clock: this.clock,
    });
    this.restoreMembership(options.tokens);
    this.timer = setInterval(() => this.expireSessions(), options.sessionCheckIntervalMs ?? 100);
    this.timer.unref();
    this.offsetsRetentionMs = options.offsetsRetentionMs ?? DEFAULT_OFFSETS_RETENTION_MS;
    this.offsetsTimer = setInterval(() => {
      this.expireOffsets().catch((error: unknown) => this.logger.warn({ err: error }, 'expiring the offsets of empty groups failed; the next check tries again'));
    }, options.offsetsRetentionCheckIntervalMs ?? 10 * 60 * 1000);
    this.offsetsTimer.unref();
    broker.onPartitionsChanged = (topic) => this.topicsChanged(topic);
    // A deleted topic's partitions were reassigned when it left the broker's topics
    // (onPartitionsChanged); its offsets go once its files are retired.
    broker.onTopicDeleted = async (topic) => {
      let groups: Set<string>;
      try {
        groups = await this.offsets.deleteTopic(topic);
      } catch (error) {
        // Removed before a topic of this name is created again (or at the next start).
        this.offsetsLeftOf.add(topic);
        throw error;
      }
      for (const group of [...this.groups.values()]) this.forgetIfUnused(group);
      if (groups.size > 0) this.logTopicOffsetsRemoved(topic, [...groups]);
    };
    broker.beforeTopicCreated = async (topic) => {
      if (!this.offsetsLeftOf.has(topic)) return;
      try {
        await this.offsets.deleteTopic(topic);
      } catch (error) {
        throw new StrataError(
          ErrorCode.STORAGE_ERROR,
          `the committed offsets of the deleted topic "${topic}" could not be removed (${errnoOrMessage(error)}), and a topic of that name would start from them: it is not created; retry`,
          { cause: error },
        );
      }
      this.offsetsLeftOf.delete(topic);
      this.logger.info({ topic }, 'removed the committed offsets a failed deletion of the topic left, before creating it again');
    };
  }

  /**
   * Takes the groups and members the membership store kept. A partition a member held whose
   * topic is gone (a deletion a crash interrupted) is revoked as at any deletion.
   */
  private restoreMembership(tokens: boolean | undefined): void {
    const nowMs = this.clock.monotonicMs();
    const { floor, groups, skipped } = this.membership.load(nowMs);
    this.epochFloor = floor;
    for (const { groupId, memberId, reason } of skipped) {
      this.logger.warn({ group: groupId, memberId, reason }, 'a kept group member could not be restored; it is left out, its partitions are free, and it joins again at its next heartbeat');
    }
    const withSkipped = new Set(skipped.map(({ groupId }) => groupId));
    if (groups.length === 0) return;
    const topics = this.topicCounts();
    let members = 0;
    for (const loaded of groups) {
      const { groupId } = loaded;
      const group = new ConsumerGroup(groupId, randomUUID, (moves) => this.rebalanced(groupId, moves));
      let kept = loaded.members;
      const unbound = tokens === false && kept.some((member) => member.tokenName !== null);
      if (unbound) for (const member of kept) member.tokenName = null;
      if (tokens === true && kept.some((member) => member.tokenName === null)) {
        kept = kept.filter((member) => member.tokenName !== null);
        this.logger.warn({ group: groupId, left: loaded.members.length - kept.length }, 'kept group members that joined without a token are left out now that the broker takes tokens; they join again with theirs');
      }
      const claimedTwice = group.restore(loaded.groupEpoch, loaded.assignor, kept, topics);
      if (claimedTwice.length > 0) this.logger.error({ group: groupId, partitions: sortedPairs(claimedTwice) }, 'kept group members claimed the same partitions; each goes to one of them, and the others are told at their next heartbeat');
      this.groups.set(groupId, group);
      members += kept.length;
      const vanished = kept.some((member) => [...member.assigned, ...member.revoking].some((key) => {
        const { topic, partition } = splitTp(key);
        return partition >= (topics.get(topic) ?? 0);
      }));
      if (vanished) group.topicsChanged(topics, nowMs);
      // What was left out or changed above is written now (a forgotten group's records go).
      const changed = vanished || claimedTwice.length > 0 || unbound || kept.length < loaded.members.length || withSkipped.has(groupId);
      if (changed) this.membership.writeWhole(groupId);
      this.forgetIfUnused(group);
    }
    this.logger.info({ groups: groups.length, members }, 'consumer groups restored: each member has a whole session from now to heartbeat');
  }

  /**
   * Resolves once every change to the group's membership made so far is on disk: a heartbeat is
   * answered only then, so no member hears of an epoch or a partition a crash could take back.
   */
  async membershipDurable(groupId: string): Promise<void> {
    try {
      await this.membership.durable(groupId);
    } catch (error) {
      const code = error instanceof StrataError ? error.code : ErrorCode.STORAGE_ERROR;
      throw new StrataError(code, `the membership of group "${groupId}" could not be stored (${errnoOrMessage(error)}); heartbeat again`, { cause: error });
    }
  }

  private topicCounts(): Map<string, number> {
    return this.broker.partitionCounts();
  }

  /** Runs the session check now (the timer does this periodically). */
  expireSessions(): void {
    const nowMs = this.clock.monotonicMs();
    let topics: Map<string, number> | null = null;
    for (const group of this.groups.values()) {
      if (group.members.size === 0) continue;
      topics ??= this.topicCounts();
      const expired = group.expire(nowMs, topics);
      for (const { memberId, clientId, host, reason } of expired) {
        const what = reason === 'session' ? 'member session expired' : 'member kept partitions it was told to give up for longer than its session timeout; fenced';
        this.logger.info({ group: group.groupId, memberId, clientId, host, members: group.members.size, groupEpoch: group.groupEpoch }, `${what}; its partitions are reassigned`);
      }
      if (expired.length > 0) this.membership.save(group, []);
      this.forgetIfUnused(group);
    }
  }

  private topicsChanged(topic: string): void {
    const topics = this.topicCounts();
    for (const group of this.groups.values()) {
      if (group.members.size === 0) continue;
      // A group concerned: one that subscribes to the topic, or whose member still holds one of
      // its partitions (being revoked after a change of subscription).
      const concerned = [...group.members.values()].some(
        (member) => member.subscription.topicNames.includes(topic) || member.regex?.matches(topic) || [...member.assigned, ...member.revoking].some((key) => splitTp(key).topic === topic),
      );
      // Sessions and revocations are timed on the monotonic clock, as the heartbeats are.
      if (concerned) {
        group.topicsChanged(topics, this.clock.monotonicMs());
        this.membership.save(group, null);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Membership.

  heartbeat(request: HeartbeatRequest): HeartbeatResult {
    checkNewGroupId(request.groupId);
    let assignor: AssignorName | null = null;
    if (request.assignor !== '') {
      if (!ASSIGNORS.includes(request.assignor as AssignorName)) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `assignor "${request.assignor}" is unknown; use ${ASSIGNORS.join(' or ')}`);
      }
      assignor = request.assignor as AssignorName;
    }
    let sessionTimeoutMs: number | null = request.sessionTimeoutMs;
    // 0: the broker default for a joining member; a member that has joined keeps its own.
    if (sessionTimeoutMs === 0) sessionTimeoutMs = request.memberEpoch === 0 ? this.sessionTimeoutMs : null;
    if (sessionTimeoutMs !== null && (!Number.isInteger(sessionTimeoutMs) || sessionTimeoutMs < SESSION_TIMEOUT_MIN_MS || sessionTimeoutMs > SESSION_TIMEOUT_MAX_MS)) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `session_timeout_ms must be from ${SESSION_TIMEOUT_MIN_MS} to ${SESSION_TIMEOUT_MAX_MS}, got ${sessionTimeoutMs}`);
    }
    if (request.memberEpoch < -2) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member_epoch ${request.memberEpoch} is invalid; send 0 to join, the epoch of the last answer, -1 to leave, or -2 for a static member leaving for now`);
    if (request.memberEpoch === 0 && request.memberId !== '') checkChosenMemberId(request.memberId);
    checkMemberFields(request);
    if (request.memberEpoch === 0 && (request.subscription === null || (request.subscription.topicNames.length === 0 && request.subscription.regex === ''))) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a joining member must send its subscription (topic names and/or a regex)');
    }
    if (request.memberEpoch === 0 && this.administered.has(request.groupId)) {
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `group "${request.groupId}" is being changed by an administrative call (offsets reset, deleted or expired); join again once it has finished`);
    }
    let group = this.groups.get(request.groupId);
    if (group === undefined) {
      if (request.memberEpoch !== 0) {
        throw new StrataError(ErrorCode.NOT_FOUND, `member ${request.memberId} is not in group "${request.groupId}"; rejoin with member epoch 0`);
      }
      const groupId = request.groupId;
      group = new ConsumerGroup(groupId, randomUUID, (moves) => this.rebalanced(groupId, moves));
      group.groupEpoch = this.epochFloor;
      this.groups.set(request.groupId, group);
    }
    let answeredId = '';
    try {
      this.emptySinceMs.delete(request.groupId); // it has (or just had) a member: not idle
      const result = this.heartbeatIn(group, request, sessionTimeoutMs, assignor);
      answeredId = result.memberId;
      this.logMembershipChange(group, request, result);
      return result;
    } finally {
      // The member heartbeating is the only one a heartbeat changes; members it removed (a
      // fenced one, the old incarnation of a static member) the group hands `save` itself.
      this.membership.save(group, answeredId === request.memberId ? [answeredId] : [request.memberId, answeredId]);
      this.forgetIfUnused(group);
    }
  }

  /**
   * Joins and leaves at `info`, as Kafka's coordinator logs them: what an operator looks for
   * first when partitions move. Heartbeats that keep a membership are not logged.
   */
  private logMembershipChange(group: ConsumerGroup, request: HeartbeatRequest, result: HeartbeatResult): void {
    if (request.memberEpoch === 0) {
      this.logger.info(
        { group: group.groupId, memberId: result.memberId, instanceId: request.instanceId, clientId: request.clientId, host: request.host, members: group.members.size, groupEpoch: group.groupEpoch },
        'group member joined',
      );
    } else if (request.memberEpoch === LEAVE_EPOCH || request.memberEpoch === STATIC_LEAVE_EPOCH) {
      const away = request.memberEpoch === STATIC_LEAVE_EPOCH;
      this.logger.info({ group: group.groupId, memberId: request.memberId, members: group.members.size, groupEpoch: group.groupEpoch }, away ? 'static group member left for now; it keeps its partitions until its session ends' : 'group member left');
    }
  }

  /**
   * A deleted topic's committed offsets went: the groups that had some, and those of them that
   * went with them (no members and no other offsets left), which `groups list` no longer shows.
   */
  private logTopicOffsetsRemoved(topic: string, groups: readonly string[]): void {
    const gone = groups.filter((groupId) => (this.groups.get(groupId)?.members.size ?? 0) === 0 && this.offsets.list(groupId).length === 0);
    this.logger.info(
      { topic, groupCount: groups.length, groups: groups.slice(0, GROUPS_NAMED), groupsGoneCount: gone.length, groupsGone: gone.slice(0, GROUPS_NAMED) },
      gone.length > 0 ? "removed the deleted topic's committed offsets; groups that had nothing else are gone" : "removed the deleted topic's committed offsets",
    );
  }

  /**
   * The target assignment of `groupId` moved partitions between its members: logged with the
   * moves (the first REBALANCE_MOVES_LOGGED, as `topic-partition: from -> to`, `-` for no member)
   * and their count.
   */
  private rebalanced(groupId: string, moves: readonly PartitionMove[]): void {
    const group = this.groups.get(groupId);
    const named = moves.slice(0, REBALANCE_MOVES_LOGGED).map(({ partition, from, to }) => {
      const { topic, partition: number } = splitTp(partition);
      return `${topic}-${number}: ${from ?? '-'} -> ${to}`;
    });
    const message = moves.length > 0 ? 'group rebalancing: partitions move between members' : 'group rebalancing: partitions taken out of the assignment (their topic was deleted)';
    this.logger.info({ group: groupId, groupEpoch: group?.groupEpoch, members: group?.members.size, moved: moves.length, moves: named }, message);
    this.events.rebalanced(groupId);
  }

  /** A group with no members and no committed offsets does not exist any more. */
  private forgetIfUnused(group: ConsumerGroup): void {
    if (group.members.size === 0 && this.groups.get(group.groupId) === group && this.offsets.list(group.groupId).length === 0) {
      this.forget(group.groupId);
    }
  }

  private forget(groupId: string): void {
    this.epochFloor = Math.max(this.epochFloor, this.groups.get(groupId)?.groupEpoch ?? 0);
    this.groups.delete(groupId);
    this.membership.writeWhole(groupId);
    this.events.forgotten(groupId);
  }

  private heartbeatIn(group: ConsumerGroup, request: HeartbeatRequest, sessionTimeoutMs: number | null, assignor: AssignorName | null): HeartbeatResult {
    const output: HeartbeatOutput = group.heartbeat(
      {
        memberId: request.memberId,
        memberEpoch: request.memberEpoch,
        instanceId: request.instanceId,
        clientId: request.clientId,
        host: request.host,
        // A name listed twice counts once (checked first, so an error names its place in the request).
        subscription: request.subscription === null ? null : { ...request.subscription, topicNames: [...new Set(request.subscription.topicNames)] },
        assignor,
        owned: new Set(request.owned.map(({ topic, partition }) => tp(topic, partition))),
        sessionTimeoutMs,
        topicScope: request.topicScope ?? null,
        tokenName: request.tokenName ?? null,
      },
      this.clock.monotonicMs(),
      this.topicCounts(),
    );
    return {
      memberId: output.memberId,
      memberEpoch: output.memberEpoch,
      heartbeatIntervalMs: Math.min(this.heartbeatIntervalMs, Math.floor(output.sessionTimeoutMs / SESSION_HEARTBEAT_INTERVALS)),
      assignment: sortedPairs(output.assignment),
      sessionTimeoutMs: output.sessionTimeoutMs,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Offsets.

  /**
   * Stores `offsets` for `groupId`, as its member `memberId` at `memberEpoch` ('' and 0: a commit
   * of no member, taken only while the group has none). `tokenName` is the call's token (null: a
   * broker without tokens): a member commits only with the token that joined it.
   */
  async commit(groupId: string, memberId: string, memberEpoch: number, offsets: OffsetToCommit[], tokenName: string | null = null): Promise<void> {
    checkNewGroupId(groupId);
    if (offsets.length === 0) return;
    const group = this.groups.get(groupId);
    // Positions a member read from a topic deleted while it owned the partition are dropped:
    // stored, they would be where a consumer of a recreated topic of that name starts.
    const vanished = memberId === '' ? undefined : group?.vanishedPartitions(memberId);
    const kept = vanished === undefined || vanished.size === 0 ? offsets : offsets.filter(({ topic, partition }) => !vanished.has(tp(topic, partition)));
    if (kept.length < offsets.length) {
      this.logger.info({ group: groupId, memberId, skipped: offsets.length - kept.length }, 'commit: offsets of partitions whose topic was deleted while the member owned them are not stored');
    }
    // First: a member removed or fenced is told to rejoin, whatever its offsets name.
    const memberOf = memberId === '' ? null : (group ?? null);
    if (memberId !== '') {
      if (memberOf === null) throw new StrataError(ErrorCode.FAILED_PRECONDITION, `member ${memberId} is not in group "${groupId}"; rejoin before committing`);
      memberOf.checkCommitter(memberId, memberEpoch, tokenName);
    }
    // Each topic as it is now: a commit that waits below is stored only if none was deleted meanwhile.
    const incarnations = new Map<string, number>();
    for (const entry of kept) {
      const log = this.broker.partitionLog(entry.topic, entry.partition); // NOT_FOUND for unknown ones
      incarnations.set(entry.topic, this.broker.checkTopicIncarnation(entry.topic, entry.topicCreatedAtMs ?? 0));
      if (!Number.isSafeInteger(entry.offset) || entry.offset < 0) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `offset for ${entry.topic}-${entry.partition} must be a non-negative integer, got ${entry.offset}`);
      }
      // The high watermark, not the log end: a consumer reads only durable records, and an
      // offset past them could outlive the records after a crash (flush=interval).
      if (entry.offset > log.highWatermark) {
        throw new StrataError(ErrorCode.OFFSET_OUT_OF_RANGE, `offset ${entry.offset} for ${entry.topic}-${entry.partition} is beyond the high watermark ${log.highWatermark} (the end of what a consumer can have read)`);
      }
      if (Buffer.byteLength(entry.metadata, 'utf8') > OFFSET_METADATA_BYTES_MAX) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `metadata for ${entry.topic}-${entry.partition} is ${Buffer.byteLength(entry.metadata, 'utf8')} bytes; the limit is ${OFFSET_METADATA_BYTES_MAX} (Kafka's offset.metadata.max.bytes)`);
      }
    }
    if (memberOf === null) {
      // Taken only once the group's last member is gone on disk too, as an answer would be;
      // looked up again after that wait, in which a group made again may have been joined.
      if (group !== undefined) await this.membershipDurable(groupId);
      const current = this.groups.get(groupId);
      if (current !== undefined && current.members.size > 0) {
        throw new StrataError(ErrorCode.FAILED_PRECONDITION, `group "${groupId}" has ${plural(current.members.size, 'member')}; only its members may commit: commit as a member, under another group id, or once the group has none`);
      }
      // Written during a reset, it would replace offsets the reset answered with; during a
      // delete, it would bring the group back.
      if (this.administered.has(groupId)) {
        throw new StrataError(ErrorCode.FAILED_PRECONDITION, `group "${groupId}" is being changed by an administrative call (offsets reset, deleted or expired); commit again once it has finished`);
      }
      for (const [topic, createdAtMs] of incarnations) this.checkTopicUnchanged(topic, createdAtMs, 'the commit waited');
    } else {
      memberOf.checkCommitOwnership(memberId, kept.map(({ topic, partition }) => tp(topic, partition)));
    }
    if (kept.length === 0) return;
    const nowMs = this.clock.nowMs();
    await this.offsets.commit(groupId, kept.map(({ topic, partition, offset, metadata }) => ({ topic, partition, offset, metadata, commitTimeMs: nowMs })));
  }

  /**
   * NOT_FOUND unless `topic` is still the one created at `createdAtMs`. Checked in the same turn
   * as the write it guards is queued: a deletion that removed the topic's offsets before would
   * otherwise leave this write's for a topic created again under the name, whose consumers
   * would start there; one that comes later removes them with the rest.
   */
  private checkTopicUnchanged(topic: string, createdAtMs: number, while_: string): void {
    if (this.broker.hasTopic(topic) && this.broker.topicCreatedAtMs(topic) === createdAtMs) return;
    throw new StrataError(ErrorCode.NOT_FOUND, `topic "${topic}" was deleted while ${while_}; nothing was stored`);
  }

  fetchOffsets(groupId: string, topics: readonly string[]): CommittedOffset[] {
    checkGroupId(groupId);
    return this.offsets.list(groupId, topics.length > 0 ? new Set(topics) : undefined);
  }

  // -------------------------------------------------------------------------------------------
  // Administration.

  listGroups(): { groupId: string; state: GroupState; members: number }[] {
    const ids = new Set([...this.groups.keys(), ...this.offsets.groups()]);
    return [...ids].sort().map((groupId) => {
      const group = this.groups.get(groupId);
      return { groupId, state: group?.state ?? 'empty', members: group?.members.size ?? 0 };
    });
  }

  /** The group's membership state (null when it exists only through committed offsets). */
  private requireGroup(groupId: string): ConsumerGroup | null {
    checkGroupId(groupId);
    const group = this.groups.get(groupId) ?? null;
    if (group === null && this.offsets.list(groupId).length === 0) {
      throw new StrataError(ErrorCode.NOT_FOUND, `group "${groupId}" not found`);
    }
    return group;
  }

  /**
   * The partitions a group's lag covers, with their logs: those it has committed offsets for and
   * those its members subscribe to (of their tokens' topics, which alone they may be assigned),
   * that exist. Each is lagging from its committed offset, or
   * from the log start when it has none (or the log start passed it).
   */
  private lagPartitions(groupId: string, group: ConsumerGroup | null, topics: ReadonlyMap<string, number>): LagPartition[] {
    const committed = this.offsets.list(groupId);
    const keys = new Set<TopicPartition>();
    for (const entry of committed) keys.add(tp(entry.topic, entry.partition));
    if (group !== null) {
      for (const topic of group.subscribedTopics(topics)) for (let partition = 0; partition < topics.get(topic)!; partition++) keys.add(tp(topic, partition));
    }
    const committedByKey = new Map(committed.map((entry) => [tp(entry.topic, entry.partition), entry.offset]));
    return sortedPairs(keys)
      .filter(({ topic, partition }) => topics.has(topic) && partition < topics.get(topic)!)
      .map(({ topic, partition }) => {
        const log = this.broker.partitionLog(topic, partition);
        const committedOffset = committedByKey.get(tp(topic, partition)) ?? -1;
        return { topic, partition, log, committedOffset, ...partitionLag(log, committedOffset) };
      });
  }

  async describeGroup(groupId: string): Promise<GroupDescription> {
    const group = this.requireGroup(groupId);
    // Every log looked up before the first wait: a topic deleted meanwhile is described as it
    // was (its lag time unknown), rather than failing the description with NOT_FOUND.
    const lagging = this.lagPartitions(groupId, group, this.topicCounts());
    const partitions: PartitionLag[] = [];
    for (const { topic, partition, log, committedOffset, from, lag } of lagging) {
      partitions.push({
        topic,
        partition,
        committedOffset,
        logEndOffset: log.highWatermark,
        lag,
        lagMs: lag > 0 ? await this.recordAgeMs(log, from) : 0,
        memberId: group?.owners.get(tp(topic, partition)) ?? '',
      });
    }
    return {
      groupId,
      state: group?.state ?? 'empty',
      groupEpoch: group?.groupEpoch ?? 0,
      assignor: group?.assignor ?? 'uniform',
      members: group === null ? [] : [...group.members.values()].map((member) => ({
        memberId: member.memberId,
        instanceId: member.instanceId,
        clientId: member.clientId,
        host: member.host,
        memberEpoch: member.epoch,
        assignment: sortedPairs(member.assigned),
        subscribedTopicNames: [...member.subscription.topicNames],
        subscribedTopicRegex: member.subscription.regex,
      })),
      partitions,
      totalLag: partitions.reduce((sum, entry) => sum + entry.lag, 0),
    };
  }

  /**
   * How old the record at `offset` is: the age of the oldest record not yet committed; -1 when
   * it cannot be read (a fenced partition, a failed read), which a reader must not take for new.
   */
  private async recordAgeMs(log: PartitionLog, offset: number): Promise<number> {
    try {
      const { batches } = await log.read(offset, 1);
      const record = await firstRecordFrom(batches, offset);
      return record === null ? 0 : Math.max(0, this.clock.nowMs() - record.timestamp);
    } catch (error) {
      this.logger.debug({ err: error, partition: log.name }, 'could not read a record to measure lag time');
      return -1;
    }
  }

  private requireEmpty(groupId: string, action: string): void {
    const group = this.groups.get(groupId);
    if (group !== undefined && group.members.size > 0) {
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `cannot ${action} group "${groupId}": ${this.membersProblem(group)}`);
    }
  }

  /**
   * Why a group still has members, for an operator who may have stopped its consumers already.
   * The broker cannot tell a running consumer from one killed a moment ago (it sent its last
   * heartbeat less than an interval before): it knows only when each session ends, if no
   * heartbeat comes. A static member that left with epoch -2 keeps its place until then too. So
   * no member is called active: the message says how many there are, how many sent no recent
   * heartbeat, and when the last session ends, which is when to try again once they are stopped.
   */
  private membersProblem(group: ConsumerGroup): string {
    const nowMs = this.clock.monotonicMs();
    const members = [...group.members.values()];
    const lastEndMs = Math.max(...members.map((member) => member.lastHeartbeatMs + member.sessionTimeoutMs));
    const seconds = Math.ceil(Math.max(0, lastEndMs - nowMs) / 1000);
    const silent = members.filter((member) => member.away || nowMs - member.lastHeartbeatMs > 2 * this.heartbeatIntervalMs).length;
    const why = 'a static member that left, or a consumer stopped without leaving, keeps its place until its session ends';
    // Nothing left to stop: the advice is to wait.
    if (silent === members.length) return `it has ${plural(silent, 'member')} whose session has not ended, none heartbeating (${why}); try again within ${seconds} s`;
    const quiet = silent === 0 ? '' : `, ${silent} of them with no recent heartbeat`;
    return `it has ${plural(members.length, 'member')}${quiet}; stop its consumers first (${why}: once they are stopped, try again within ${seconds} s)`;
  }

  /** With `dryRun`, answers the offsets the reset would set, after the same checks, and stores nothing. */
  async resetOffsets(groupId: string, topic: string, partitions: readonly number[], to: ResetTarget, dryRun = false): Promise<CommittedOffset[]> {
    checkNewGroupId(groupId); // a group known only by name may be given offsets, as in Kafka
    if (dryRun) {
      // Changes nothing, so it holds no joins or commits back while it looks the offsets up.
      this.requireEmpty(groupId, 'reset offsets of');
      return this.resetOffsetsOfEmpty(groupId, topic, partitions, to, true);
    }
    return this.whileEmpty(groupId, 'reset offsets of', () => this.resetOffsetsOfEmpty(groupId, topic, partitions, to, false));
  }

  private async resetOffsetsOfEmpty(groupId: string, topic: string, partitions: readonly number[], to: ResetTarget, dryRun: boolean): Promise<CommittedOffset[]> {
    const count = this.broker.partitionCount(topic);
    const createdAtMs = this.broker.topicCreatedAtMs(topic);
    const chosen = partitions.length > 0 ? [...new Set(partitions)] : [...Array(count).keys()];
    const nowMs = this.clock.nowMs();
    const result: CommittedOffset[] = [];
    for (const partition of chosen) {
      const log = this.broker.partitionLog(topic, partition);
      // A fenced partition's offsets are not to be trusted nor read past: the reset is refused
      // with its fence (FAILED_PRECONDITION), as ListOffsets is, before anything is committed.
      log.checkUsable();
      const clamp = (offset: number): number => Math.min(Math.max(offset, log.logStartOffset), log.highWatermark);
      let offset: number;
      switch (to.kind) {
        case 'earliest':
          offset = log.logStartOffset;
          break;
        case 'latest':
          offset = log.highWatermark;
          break;
        case 'offset':
          offset = clamp(to.offset);
          break;
        case 'timestamp':
          offset = (await log.offsetForTimestamp(to.timestamp)) ?? log.highWatermark;
          break;
        case 'shiftBy':
          offset = clamp((this.offsets.get(groupId, topic, partition)?.offset ?? log.logStartOffset) + to.shift);
          break;
      }
      result.push({ topic, partition, offset, metadata: '', commitTimeMs: nowMs });
    }
    // A lookup by time may wait on the disk or an inflation, during which the topic may go.
    this.checkTopicUnchanged(topic, createdAtMs, 'the reset looked up its offsets');
    if (dryRun) return result;
    await this.offsets.commit(groupId, result);
    this.logger.info({ group: groupId, topic, to, partitions: result.length }, 'offsets reset');
    return result;
  }

  async deleteOffsets(groupId: string, topics: readonly string[]): Promise<void> {
    this.requireGroup(groupId);
    await this.whileEmpty(groupId, 'delete offsets of', async () => {
      // A misspelt topic would otherwise delete nothing and succeed.
      for (const topic of new Set(topics)) {
        if (this.offsets.list(groupId, new Set([topic])).length === 0) {
          throw new StrataError(ErrorCode.NOT_FOUND, `group "${groupId}" has no committed offsets for topic "${topic}"; nothing was deleted`);
        }
      }
      await this.offsets.deleteGroupOffsets(groupId, topics.length > 0 ? new Set(topics) : undefined);
    });
    const group = this.groups.get(groupId);
    if (group !== undefined) this.forgetIfUnused(group);
  }

  async deleteGroup(groupId: string): Promise<void> {
    this.requireGroup(groupId);
    await this.whileEmpty(groupId, 'delete', () => this.offsets.deleteGroupOffsets(groupId));
    const group = this.groups.get(groupId);
    if (group !== undefined && group.members.size === 0) this.forget(groupId);
    this.logger.info({ group: groupId }, 'group deleted');
  }

  /**
   * Runs an administrative `work` on a group that must stay empty meanwhile: joins are refused
   * until it finishes (its LMDB write is awaited, and a member joining in between would be
   * assigned partitions of a group being deleted, or have its commits overwritten by a reset).
   */
  private async whileEmpty<T>(groupId: string, action: string, work: () => Promise<T>): Promise<T> {
    this.requireEmpty(groupId, action);
    if (this.administered.has(groupId)) {
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `cannot ${action} group "${groupId}": another administrative call on it is under way`);
    }
    this.administered.add(groupId);
    try {
      // Empty on disk too: a crash must not bring back members the call was answered without.
      await this.membershipDurable(groupId);
      return await work();
    } finally {
      this.administered.delete(groupId);
    }
  }

  /**
   * Deletes the committed offsets of every group that has had no members and no commit for
   * `offsetsRetentionMs` (Kafka's `offsets.retention.minutes`): a group whose consumers are
   * gone for good does not keep its offsets, and its lag series, for ever. Time without members
   * counts from when this coordinator first saw the group empty, so after a restart such a group
   * has the whole period again. Returns the groups whose offsets went. One check at a time.
   */
  expireOffsets(): Promise<string[]> {
    this.expiring ??= this.expireOffsetsOnce().finally(() => (this.expiring = null));
    return this.expiring;
  }

  private async expireOffsetsOnce(): Promise<string[]> {
    if (this.offsetsRetentionMs < 0 || this.closed) return [];
    const cutoffMs = this.clock.nowMs() - this.offsetsRetentionMs;
    const nowMonotonicMs = this.clock.monotonicMs();
    const withOffsets = new Set(this.offsets.groups());
    for (const groupId of this.emptySinceMs.keys()) if (!withOffsets.has(groupId)) this.emptySinceMs.delete(groupId);
    const candidates: string[] = [];
    for (const groupId of withOffsets) {
      if ((this.groups.get(groupId)?.members.size ?? 0) > 0) {
        this.emptySinceMs.delete(groupId);
        continue;
      }
      const emptySinceMs = this.emptySinceMs.get(groupId) ?? nowMonotonicMs;
      this.emptySinceMs.set(groupId, emptySinceMs);
      if (nowMonotonicMs - emptySinceMs > this.offsetsRetentionMs && this.offsets.list(groupId).every((entry) => entry.commitTimeMs <= cutoffMs)) candidates.push(groupId);
    }
    const expired: string[] = [];
    for (const groupId of candidates) {
      if (this.closed) break;
      // Skipped if a heartbeat in the group cleared its entry meanwhile, or an administrative
      // call is under way. Joins and member-less commits wait for the expiry (rarely: the group
      // has been idle for the whole retention); a commit that landed after the cutoff keeps the offsets.
      if (this.administered.has(groupId) || !this.emptySinceMs.has(groupId)) continue;
      if (!(await this.whileEmpty(groupId, 'expire the offsets of', () => this.offsets.expireGroupOffsets(groupId, cutoffMs)))) continue;
      this.emptySinceMs.delete(groupId);
      const group = this.groups.get(groupId);
      if (group !== undefined) this.forgetIfUnused(group);
      else this.events.forgotten(groupId);
      expired.push(groupId);
      this.logger.info({ group: groupId, offsetsRetentionMs: this.offsetsRetentionMs }, 'committed offsets expired: the group has had no members and no commit for offsets retention');
    }
    return expired;
  }

  /**
   * Removes committed offsets of topics that no longer exist: a crash between a topic's deletion
   * and its offsets' leaves them behind, and a topic created later under the same name would
   * inherit them. Run at start, before serving.
   */
  async removeOrphanOffsets(): Promise<void> {
    const existing = new Set(this.broker.listTopics().map((topic) => topic.name));
    const orphans = this.offsets.topics().filter((topic) => !existing.has(topic));
    for (const topic of orphans) await this.offsets.deleteTopic(topic);
    if (orphans.length > 0) this.logger.warn({ topics: orphans }, 'removed committed offsets of topics deleted before a crash');
  }

  /**
   * Lowers committed offsets above their partition's high watermark to it. A commit is never
   * above the high watermark when made, but a crash can take the records it passed with it
   * (`flush=interval` loses the last unsynced writes; `strata repair` cuts a damaged log): the
   * offsets those records had are then given out again, and a group resuming from its old
   * commit would skip the new records there without a word. Fenced partitions are left alone
   * (their end is not known until repaired). Run at start, before serving.
   */
  async lowerOffsetsPastLogEnds(): Promise<TopicPartition[]> {
    const topics = this.topicCounts();
    const lowered = await this.offsets.lowerPastEnds((topic, partition) => {
      if (!topics.has(topic) || partition >= topics.get(topic)!) return null;
      const log = this.broker.partitionLog(topic, partition);
      return log.usable ? log.highWatermark : null;
    });
    for (const { group, topic, partition, committed, end } of lowered) {
      this.logger.warn(
        { group, topic, partition, committed, end },
        `group "${group}" had committed offset ${committed} for ${topic}-${partition}, past its end ${end} (records lost in a crash or cut by a repair): lowered to ${end}, so that the group reads the records written there from now on`,
      );
    }
    return lowered.map(({ topic, partition }) => tp(topic, partition));
  }

  /**
   * Lowers committed offsets past their logs' ends (`lowerOffsetsPastLogEnds`), then removes the
   * kept members that own a partition whose log may have lost records they had read
   * (`dropMembersOfCutLogs`). Run at start, before serving.
   */
  async checkAgainstRecoveredLogs(): Promise<void> {
    await this.dropMembersOfCutLogs(await this.lowerOffsetsPastLogEnds());
  }

  /**
   * A kept member's consumer may have run on across the restart, its position in memory. Where
   * the log lost records that member could have read, that position may lie past the new end:
   * its next fetch would be out of range (and its reset policy repeat records), or, once new
   * records reach it, it would skip those written at the offsets the lost ones had, and commit
   * past them. So every member that owns such a partition is removed, as a fenced one is: its
   * next heartbeat is told it is not a member, its consumer drops its partitions without
   * committing and joins again, and it reads from the group's committed offsets (lowered to the
   * end where they were past it). Such partitions are those of `lowered` (a group had committed
   * past the end) and those of a `flush=interval` topic whose log was recovered after an
   * unclean stop: its readers see records before they are synced, so a power loss can take
   * records they read without leaving a trace. Under `flush=always` a reader sees only synced
   * records, and a kill -9 loses none: those members are kept.
   */
  private async dropMembersOfCutLogs(lowered: readonly TopicPartition[]): Promise<void> {
    const topics = this.topicCounts();
    const cut = new Set(lowered);
    for (const [topic, count] of topics) {
      for (let partition = 0; partition < count; partition++) {
        const log = this.broker.partitionLog(topic, partition);
        if (log.recovery !== null && log.usable && log.logConfig.flush === 'interval') cut.add(tp(topic, partition));
      }
    }
    if (cut.size === 0) return;
    for (const group of [...this.groups.values()]) {
      const removed = group.removeOwnersOf(cut, topics);
      if (removed.length === 0) continue;
      for (const { memberId, clientId, host, partitions } of removed) {
        const names = sortedPairs(partitions)
          .slice(0, PARTITIONS_NAMED)
          .map(({ topic, partition }) => `${topic}-${partition}`);
        const more = partitions.length > names.length ? ` and ${partitions.length - names.length} more` : '';
        this.logger.warn(
          { group: group.groupId, memberId, clientId, host, partitions: names, partitionCount: partitions.length },
          `group "${group.groupId}": removed member ${memberId}, which owned ${names.join(', ')}${more}, whose logs may have lost records it had read (an unclean stop under flush=interval, or a log cut below a commit): it joins again and reads from the group's committed offsets, rather than from a position past the log's end`,
        );
      }
      this.membership.save(group, []);
      // Durable before serving: a crash now must not bring these members back at the next start.
      await this.membershipDurable(group.groupId);
      this.forgetIfUnused(group);
    }
  }

  /**
   * Records not yet committed per group and topic (for metrics), over the partitions
   * `describeGroup` shows: a subscribed partition with no committed offset lags from the log
   * start there too, so a group that never commits has lag to alert on. A partition lags by its
   * high watermark less its committed offset or its log start, whichever is higher, and never
   * below 0. Read at every scrape, so from the offset store's copy in memory, not from LMDB, and
   * without `lagPartitions`'s sorted list of every partition of every group.
   */
  lagByTopic(): { groupId: string; topic: string; lag: number }[] {
    const topics = this.topicCounts();
    // Each topic's logs looked up once per call, not once per group.
    const logsOf = new Map<string, PartitionLog[]>();
    const logs = (topic: string): PartitionLog[] => {
      let found = logsOf.get(topic);
      if (found === undefined) logsOf.set(topic, (found = Array.from({ length: topics.get(topic)! }, (_, partition) => this.broker.partitionLog(topic, partition))));
      return found;
    };
    const result: { groupId: string; topic: string; lag: number }[] = [];
    for (const groupId of new Set([...this.groups.keys(), ...this.offsets.groups()])) {
      const committed = this.offsets.committedOffsets(groupId);
      const subscribed = this.groups.get(groupId)?.subscribedTopics(topics) ?? new Set<string>();
      for (const topic of new Set([...committed.keys(), ...subscribed])) {
        if (!topics.has(topic)) continue; // deleted: its offsets go with it
        const lag = topicLag(logs(topic), committed.get(topic), subscribed.has(topic));
        if (lag !== null) result.push({ groupId, topic, lag });
      }
    }
    return result;
  }

  /** Stops the timers; resolves once an expiry of offsets and the membership writes under way have finished. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.offsetsTimer);
    this.membershipWriteFailure.dispose();
    await this.expiring?.catch(() => undefined);
    await this.membership.close();
  }
}
