/**
 * The membership and assignment state of one consumer group, and the reconciliation rules of
 * the heartbeat protocol (see proto/strata/v1/groups.proto). No I/O, no timers: the coordinator
 * feeds it heartbeats, the time and topic metadata.
 *
 * Ownership invariant: `owners` maps each partition to at most one member, and a member may
 * consume a partition only while `owners` names it. A partition enters a member's `assigned`
 * set (and `owners`) only when it is free; when the target moves it elsewhere it goes to the
 * member's `revoking` set and stays owned until the member acknowledges (a heartbeat whose
 * owned partitions leave it out) or leaves or expires. Hence a partition is never owned by two
 * members at once, whatever order heartbeats arrive in.
 *
 * Epochs: the group epoch grows whenever membership, a subscription or topic metadata changes
 * (the target is then recomputed). A member's epoch grows whenever its assignment changes;
 * offset commits must carry the member's current epoch. A heartbeat carries it too, or the
 * previous one (the answer that moved it was lost), which is told the current state and moves
 * no partition; any other epoch fences the member.
 *
 * Member ids: a consumer may choose its own and keep it for its life (KIP-1082), so one id can
 * name several memberships in turn (joined, removed, joined again). Epochs tell them apart: a
 * removed member raises the group epoch to its own (and the coordinator starts a group made
 * again above its forgotten epochs, a floor it keeps across restarts), so the next membership
 * under its id starts above every epoch of the last. A join under the id of
 * a member that exists is that consumer sending its join again, and is accepted only while the
 * member has not heartbeated since its join, or is a static member away after epoch -2. A
 * member that got its join's answer but has not heartbeated yet looks the same, so a second
 * consumer with its id would take its place; ids are UUIDs so that none does.
 *
 * Tokens: on a broker with tokens a member is bound to the token that joined it (by the token's
 * name, kept with the member). Its id and epoch are shown to any token that may
 * describe the group, so they must not be enough to act as it: a heartbeat (a leave included),
 * a join under its id or instance id, or a commit as it from another token is refused with
 * PERMISSION_DENIED before anything else is looked at, and changes nothing (`checkToken`). Once
 * the member is gone (left, expired, fenced) its id and instance id are free to any token.
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, StrataError } from '../common/errors.js';
import { type TopicRegex, compileTopicRegex } from '../common/topic-regex.js';
import { type Assignment, type AssignorName, type TopicPartition, assign, splitTp } from './assignors.js';

export type GroupState = 'empty' | 'assigning' | 'reconciling' | 'stable';

export interface Subscription {
  topicNames: readonly string[];
  /** Source of the regular expression ('' for none). */
  regex: string;
}

/**
 * The topics a member's token may use (the server's token scopes): the member is assigned only
 * partitions of those, whatever its subscription matches. Two scopes with the same patterns are the same.
 */
export interface TopicScope {
  readonly patterns: readonly string[];
  allows(topic: string): boolean;
}

export interface HeartbeatInput {
  memberId: string;
  memberEpoch: number;
  instanceId: string | null;
  clientId: string;
  host: string;
  /** Null keeps the member's current subscription. */
  subscription: Subscription | null;
  assignor: AssignorName | null;
  owned: ReadonlySet<TopicPartition>;
  /** The session the member asks for; null keeps the one it has (never null on a join). */
  sessionTimeoutMs: number | null;
  /** The topics this heartbeat's token may use; null for every topic. */
  topicScope: TopicScope | null;
  /** The name of this heartbeat's token; null or absent on a broker without tokens. */
  tokenName?: string | null;
}

export interface HeartbeatOutput {
  memberId: string;
  memberEpoch: number;
  assignment: ReadonlySet<TopicPartition>;
  /** The member's session timeout, which its heartbeat interval must fit. */
  sessionTimeoutMs: number;
}

export interface Member {
  memberId: string;
  instanceId: string | null;
  clientId: string;
  host: string;
  epoch: number;
  /** The epoch before the last change (-1 for none): a heartbeat of it is taken (`checkEpoch`). */
  previousEpoch: number;
  subscription: Subscription;
  regex: TopicRegex | null;
  /** The topics its last heartbeat's token may use (null: every topic); it is assigned no others. */
  topicScope: TopicScope | null;
  /** The name of the token that joined it (null on a broker without tokens): no other may act as it. */
  tokenName: string | null;
  sessionTimeoutMs: number;
  lastHeartbeatMs: number;
  /** Partitions the member was told it may own. */
  assigned: Set<TopicPartition>;
  /** Partitions taken from the member that it has not yet acknowledged giving up. */
  revoking: Set<TopicPartition>;
  /** When `revoking` last became non-empty (-1 while it is empty). */
  revokingSinceMs: number;
  /**
   * Partitions in `revoking` whose topic was deleted (or recreated with fewer partitions) while
   * the member owned them: it still owns them until it gives them up, but may not commit them.
   */
  vanished: Set<TopicPartition>;
  /**
   * Partitions were taken from `assigned` between its heartbeats (their topic was deleted): the
   * next answer gives a smaller assignment, so it comes with a new epoch, as every change does.
   */
  shrunkSinceAnswer: boolean;
  /** A static member that left with epoch -2: it keeps its partitions until its session ends. */
  away: boolean;
  /** It has heartbeated since it joined, so it knows its assignment: a join under its id is another consumer's (unless it is away). */
  heartbeated: boolean;
}

/** A member taken out by the session check, and why. */
export interface ExpiredMember {
  memberId: string;
  clientId: string;
  host: string;
  reason: 'session' | 'revocation';
}

/** A partition a rebalance gives to member `to`, from member `from` (null: it had no member). */
export interface PartitionMove {
  partition: TopicPartition;
  from: string | null;
  to: string;
}

const NONE_REMOVED: readonly string[] = Object.freeze([]);

export const LEAVE_EPOCH = -1;
export const STATIC_LEAVE_EPOCH = -2;

export function compileSubscriptionRegex(source: string): TopicRegex | null {
  if (source === '') return null;
  try {
    return compileTopicRegex(source);
  } catch (error) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `subscribed_topic_regex is not a valid regular expression: ${(error as Error).message}`);
  }
}

/** Topic metadata the group needs: which topics exist and their partition counts. */
export type TopicCounts = ReadonlyMap<string, number>;

export class ConsumerGroup {
  readonly members = new Map<string, Member>();
  readonly owners = new Map<TopicPartition, string>();
  groupEpoch = 0;
  assignor: AssignorName = 'uniform';
  private target: Assignment = new Map();
  /** Members taken out since `takeRemoved` was last called (left, fenced, expired, replaced). */
  private removed: string[] = [];
  /**
   * `newMemberId` is injectable so simulations replay exactly from their seed. `onRebalance`
   * runs at each rebalance, as it happens (the metrics count there: a count read later would
   * miss the rebalances of a group forgotten in between).
   */
  constructor(
    readonly groupId: string,
    private readonly newMemberId: () => string = randomUUID,
    private readonly onRebalance: (moves: readonly PartitionMove[]) => void = () => undefined,
  ) {}

  get state(): GroupState {
    if (this.members.size === 0) return 'empty';
    let assigning = false;
    for (const member of this.members.values()) {
      if (member.revoking.size > 0) return 'reconciling';
      const target = this.target.get(member.memberId) ?? new Set();
      if (target.size !== member.assigned.size || [...target].some((key) => !member.assigned.has(key))) assigning = true;
    }
    return assigning ? 'assigning' : 'stable';
  }

  targetOf(memberId: string): ReadonlySet<TopicPartition> {
    return this.target.get(memberId) ?? new Set();
  }

  /** Topics any member subscribes to and may be assigned (its token's topics), given the topics that exist. */
  subscribedTopics(topics: TopicCounts): Set<string> {
    const subscribed = new Set<string>();
    for (const member of this.members.values()) for (const topic of topicsOf(member, topics)) subscribed.add(topic);
    return subscribed;
  }

  heartbeat(input: HeartbeatInput, nowMs: number, topics: TopicCounts): HeartbeatOutput {
    if (input.memberEpoch === 0) return this.join(input, nowMs, topics);
    const member = this.members.get(input.memberId);
    if (member === undefined) {
      throw new StrataError(ErrorCode.NOT_FOUND, `member ${input.memberId || '(none)'} is not in group "${this.groupId}" (its session may have expired); rejoin with member epoch 0`);
    }
    // First: another token's heartbeat of the wrong epoch would fence the member, and one of
    // the right epoch would replace its topic scope.
    this.checkToken(member, input.tokenName ?? null, input.memberEpoch < 0 ? 'leave as' : 'heartbeat as');
    if (input.memberEpoch === LEAVE_EPOCH || input.memberEpoch === STATIC_LEAVE_EPOCH) return this.leave(member, input.memberEpoch, nowMs, topics);
    const previousEpoch = this.checkEpoch(member, input, topics);
    // Checked before the member is touched: a refused heartbeat renews no session.
    if (input.subscription !== null && input.subscription.regex !== member.subscription.regex) compileSubscriptionRegex(input.subscription.regex);
    member.lastHeartbeatMs = nowMs;
    if (input.sessionTimeoutMs !== null) member.sessionTimeoutMs = input.sessionTimeoutMs;
    member.away = false;
    member.heartbeated = true;
    member.host = input.host;
    // The client id is the one given when joining (checked then): a heartbeat does not change it.
    this.resubscribe(member, input.subscription, input.topicScope, topics);
    // A heartbeat of the previous epoch (the answer that moved it was lost) is told the current
    // state and moves no partition: a revoked partition it leaves out, the member may hold
    // still, and a new epoch the member does not hear of would make its next retry a zombie's.
    if (previousEpoch) {
      // Its current epoch is new to it (the answer that gave it was lost), so a smaller
      // assignment since (a topic deleted) reaches it with a new epoch here too.
      member.shrunkSinceAnswer = false;
      return this.answer(member);
    }
    return this.reconcile(member, input.owned, nowMs);
  }

  /**
   * Whether the heartbeat is of the member's previous epoch, which is taken when it owns nothing
   * it should not (the answer that moved the epoch was lost); the current epoch is taken as is.
   * Anything else (an older epoch, a later one, or foreign partitions) is a zombie, a heartbeat
   * delayed past later ones, or a confused client: fence it. Like KIP-848 the fenced member is
   * removed, so its partitions are free at once; it must rejoin with epoch 0.
   */
  private checkEpoch(member: Member, input: HeartbeatInput, topics: TopicCounts): boolean {
    if (input.memberEpoch === member.epoch) return false;
    const previous = input.memberEpoch === member.previousEpoch && [...input.owned].every((key) => member.assigned.has(key) || member.revoking.has(key));
    if (!previous) {
      this.remove(member, topics);
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `fenced: member ${member.memberId} of group "${this.groupId}" sent member epoch ${input.memberEpoch}, current is ${member.epoch}; rejoin with epoch 0`);
    }
    return true;
  }

  private join(input: HeartbeatInput, nowMs: number, topics: TopicCounts): HeartbeatOutput {
    const sessionTimeoutMs = input.sessionTimeoutMs;
    if (sessionTimeoutMs === null) throw new Error('a joining member needs a session timeout');
    const subscription = input.subscription ?? { topicNames: [], regex: '' };
    const regex = compileSubscriptionRegex(subscription.regex);
    // The first member chooses; one that names none gets the default, as after a restart.
    if (this.members.size === 0) this.assignor = input.assignor ?? 'uniform';
    const known = input.memberId === '' ? undefined : this.members.get(input.memberId);
    if (known !== undefined) return this.rejoin(known, input, subscription, sessionTimeoutMs, nowMs, topics);
    if (input.instanceId !== null) {
      const previous = [...this.members.values()].find((member) => member.instanceId === input.instanceId);
      if (previous !== undefined) {
        if (previous.tokenName !== (input.tokenName ?? null)) {
          throw this.tokenRefusal(
            input.tokenName ?? null,
            `take over instance id "${input.instanceId}" in group "${this.groupId}"`,
            `member ${previous.memberId}, which another token joined, holds it until it leaves with epoch -1 or its session ends; give this consumer an instance id of its own`,
          );
        }
        // Only an instance that left with epoch -2 can be taken over: otherwise two live
        // processes would own the same partitions (Kafka's UNRELEASED_INSTANCE_ID).
        if (!previous.away) {
          throw new StrataError(
            ErrorCode.FAILED_PRECONDITION,
            `instance id "${input.instanceId}" is in use by member ${previous.memberId} of group "${this.groupId}"; ` +
              'stop that instance (it leaves with epoch -2) or wait for its session to expire',
          );
        }
        return this.takeOver(previous, this.idFor(input), input, subscription, sessionTimeoutMs, nowMs, topics);
      }
    }
    const member: Member = {
      memberId: this.idFor(input),
      instanceId: input.instanceId,
      clientId: input.clientId,
      host: input.host,
      epoch: 0,
      previousEpoch: -1,
      subscription,
      regex,
      topicScope: input.topicScope,
      tokenName: input.tokenName ?? null,
      sessionTimeoutMs,
      lastHeartbeatMs: nowMs,
      assigned: new Set(),
      revoking: new Set(),
      revokingSinceMs: -1,
      vanished: new Set(),
      shrunkSinceAnswer: false,
      away: false,
      heartbeated: false,
    };
    this.members.set(member.memberId, member);
    this.bumpAndReassign(topics);
    // Epoch 0 means "joining": a member always leaves the join with a real epoch.
    member.epoch = this.groupEpoch;
    return this.reconcile(member, new Set(), nowMs);
  }

  /** The id a joining member chose, or a new one from the broker. */
  private idFor(input: HeartbeatInput): string {
    return input.memberId === '' ? this.newMemberId() : input.memberId;
  }

  /**
   * A join with the id of a member the group has: the same consumer joining again, because the
   * answer to its earlier join was lost (KIP-1082's client-chosen member ids), or a static
   * member back from leaving with epoch -2 under the same id. It owns nothing, so whatever it
   * holds outside its target is released at once, and it is told its whole assignment.
   * Answering with a second member instead would leave the first holding partitions that
   * nobody consumes until its session ends. No rebalance unless the subscription changed.
   * A member that has heartbeated since its join knows its assignment and may be consuming:
   * a join under its id comes from another consumer, and is refused.
   */
  private rejoin(member: Member, input: HeartbeatInput, subscription: Subscription, sessionTimeoutMs: number, nowMs: number, topics: TopicCounts): HeartbeatOutput {
    this.checkToken(member, input.tokenName ?? null, 'join as');
    if (member.instanceId !== input.instanceId) {
      const holder = member.instanceId === null ? 'a member without an instance id' : `instance id "${member.instanceId}"`;
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `member id ${member.memberId} is in use in group "${this.groupId}" by ${holder}; every consumer needs a member id of its own`);
    }
    if (member.heartbeated && !member.away) {
      throw new StrataError(
        ErrorCode.FAILED_PRECONDITION,
        `member id ${member.memberId} is in use in group "${this.groupId}" by a member that has heartbeated since it joined; ` +
          'every consumer needs a member id of its own (a join is sent again under the same id only when its answer was lost)',
      );
    }
    member.clientId = input.clientId;
    member.host = input.host;
    member.sessionTimeoutMs = sessionTimeoutMs;
    member.lastHeartbeatMs = nowMs;
    member.away = false;
    member.heartbeated = false;
    this.resubscribe(member, subscription, input.topicScope, topics);
    return this.startOver(member, nowMs);
  }

  /**
   * Answers a member that holds nothing yet (a join sent again, a static member's new
   * incarnation): what it was given outside its target is released rather than revoked, and
   * `reconcile`, told it owns nothing, frees what it was giving up and hands it its free target.
   */
  private startOver(member: Member, nowMs: number): HeartbeatOutput {
    const target = this.targetOf(member.memberId);
    for (const key of [...member.assigned]) {
      if (target.has(key)) continue;
      member.assigned.delete(key);
      if (this.owners.get(key) === member.memberId) this.owners.delete(key);
    }
    return this.reconcile(member, new Set(), nowMs);
  }

  /**
   * Throws PERMISSION_DENIED unless `tokenName` is the token that joined `member`; `action` says
   * what was refused ("heartbeat as", "commit as").
   */
  private checkToken(member: Member, tokenName: string | null, action: string): void {
    if (member.tokenName === tokenName) return;
    throw this.tokenRefusal(tokenName, `${action} member ${member.memberId} of group "${this.groupId}"`, 'another token joined that member; join with this token (member epoch 0) to get a member of its own');
  }

  /** The refusal of an `action` the call's token may not take, naming the token as token-scope.ts does (not the other one). */
  private tokenRefusal(tokenName: string | null, action: string, reason: string): StrataError {
    const caller = tokenName === null ? 'a call without a token' : `token "${tokenName}"`;
    return new StrataError(ErrorCode.PERMISSION_DENIED, `${caller} may not ${action}: ${reason}`);
  }

  /** The answer to a member's heartbeat: its epoch and assignment as they are now. */
  private answer(member: Member): HeartbeatOutput {
    return { memberId: member.memberId, memberEpoch: member.epoch, assignment: new Set(member.assigned), sessionTimeoutMs: member.sessionTimeoutMs };
  }

  /**
   * Takes a member's subscription (null keeps it) and its token's topic scope, and rebalances if
   * either changed: a token narrowed while the member is in the group takes those partitions
   * from it (revoked as usual), one widened lets it have more.
   */
  private resubscribe(member: Member, subscription: Subscription | null, topicScope: TopicScope | null, topics: TopicCounts): void {
    const newSubscription = subscription !== null && !sameSubscription(member.subscription, subscription);
    const newScope = !sameScope(member.topicScope, topicScope);
    if (!newSubscription && !newScope) return;
    if (newSubscription) {
      member.regex = compileSubscriptionRegex(subscription.regex);
      member.subscription = subscription;
    }
    member.topicScope = topicScope;
    this.bumpAndReassign(topics);
  }

  /**
   * A static member came back (same instance id): the new incarnation inherits the old one's
   * target, and the partitions of it the old one held, under its new member id; the old id is
   * fenced. No rebalance unless the subscription changed.
   */
  private takeOver(previous: Member, memberId: string, input: HeartbeatInput, subscription: Subscription, sessionTimeoutMs: number, nowMs: number, topics: TopicCounts): HeartbeatOutput {
    const member: Member = {
      ...previous,
      memberId,
      clientId: input.clientId,
      host: input.host,
      epoch: previous.epoch + 1,
      // A new incarnation never had the old one's epochs.
      previousEpoch: -1,
      sessionTimeoutMs,
      lastHeartbeatMs: nowMs,
      shrunkSinceAnswer: false,
      away: false,
      heartbeated: false,
    };
    this.members.delete(previous.memberId);
    this.removed.push(previous.memberId);
    this.members.set(member.memberId, member);
    for (const key of [...member.assigned, ...member.revoking]) this.owners.set(key, member.memberId);
    this.target.set(member.memberId, this.target.get(previous.memberId) ?? new Set());
    this.target.delete(previous.memberId);
    this.resubscribe(member, subscription, input.topicScope, topics);
    // The new process holds nothing: what the old one was giving up is free at once, what has
    // left the target since is not handed to it, and it is told its full assignment again.
    return this.startOver(member, nowMs);
  }

  private leave(member: Member, epoch: number, nowMs: number, topics: TopicCounts): HeartbeatOutput {
    if (epoch === STATIC_LEAVE_EPOCH && member.instanceId !== null) {
      member.away = true; // keeps its partitions until it returns or its session expires
      // Its session runs from the leave, as documented ("returns within its session timeout"),
      // not from its last heartbeat, up to an interval earlier.
      member.lastHeartbeatMs = nowMs;
      return { memberId: member.memberId, memberEpoch: STATIC_LEAVE_EPOCH, assignment: new Set(), sessionTimeoutMs: member.sessionTimeoutMs };
    }
    this.remove(member, topics);
    return { memberId: member.memberId, memberEpoch: LEAVE_EPOCH, assignment: new Set(), sessionTimeoutMs: member.sessionTimeoutMs };
  }

  /**
   * Removes members whose session expired, and members that have kept a partition they were
   * told to give up for longer than their session timeout (KIP-848's rebalance timeout): a
   * member that heartbeats but never acknowledges a revocation would otherwise hold the
   * partition from its new owner for good. Returns them with the reason.
   */
  expire(nowMs: number, topics: TopicCounts): ExpiredMember[] {
    const expired: ExpiredMember[] = [];
    for (const member of [...this.members.values()]) {
      const silent = nowMs - member.lastHeartbeatMs > member.sessionTimeoutMs;
      const holding = member.revokingSinceMs >= 0 && nowMs - member.revokingSinceMs > member.sessionTimeoutMs;
      if (silent || holding) {
        expired.push({ memberId: member.memberId, clientId: member.clientId, host: member.host, reason: silent ? 'session' : 'revocation' });
        this.remove(member, topics);
      }
    }
    return expired;
  }

  /**
   * Removes the members that own (or are giving up) one of `partitions`, as a fence would, and
   * returns them with those partitions. For partitions whose log may have lost records a member
   * had read (see `GroupCoordinator.dropMembersOfCutLogs`): such a member's position may lie past
   * the log's end, and its next reads would skip or repeat records.
   */
  removeOwnersOf(partitions: ReadonlySet<TopicPartition>, topics: TopicCounts): { memberId: string; clientId: string; host: string; partitions: TopicPartition[] }[] {
    const removed: { memberId: string; clientId: string; host: string; partitions: TopicPartition[] }[] = [];
    for (const member of [...this.members.values()]) {
      const owned = [...member.assigned, ...member.revoking].filter((key) => partitions.has(key));
      if (owned.length === 0) continue;
      removed.push({ memberId: member.memberId, clientId: member.clientId, host: member.host, partitions: owned });
      this.remove(member, topics);
    }
    return removed;
  }

  private remove(member: Member, topics: TopicCounts): void {
    // A member epoch can run ahead of the group's: a consumer that joins again under the same
    // id must start above every epoch its earlier membership had.
    this.groupEpoch = Math.max(this.groupEpoch, member.epoch);
    this.members.delete(member.memberId);
    this.removed.push(member.memberId);
    const previous = new Map(this.target); // its partitions move from it, for the rebalance's moves
    this.target.delete(member.memberId);
    for (const key of [...member.assigned, ...member.revoking]) {
      if (this.owners.get(key) === member.memberId) this.owners.delete(key);
    }
    this.bumpAndReassign(topics, previous);
  }

  /** Topic metadata changed (created, deleted, partitions added): recompute the target. */
  topicsChanged(topics: TopicCounts, nowMs: number): void {
    // A partition of a deleted topic (or beyond a count) is revoked like any other: its owner
    // may still be reading it, and a topic of the same name may be created before it stops, so
    // it stays the owner until it says it gave the partition up (or leaves, or expires).
    // Freeing it at once would let a member assigned the new topic's partition read it
    // beside the old owner.
    for (const member of this.members.values()) {
      for (const key of [...member.assigned, ...member.revoking]) {
        const { topic, partition } = splitTp(key);
        const count = topics.get(topic);
        if (count !== undefined && partition < count) continue;
        if (member.assigned.delete(key)) member.shrunkSinceAnswer = true;
        member.revoking.add(key);
        member.vanished.add(key);
        if (member.revokingSinceMs < 0) member.revokingSinceMs = nowMs;
      }
    }
    if (this.members.size > 0) this.bumpAndReassign(topics);
  }

  /** `previous`: the target before the change that calls this, when it already took a member out of it (whose partitions then move from it). */
  private bumpAndReassign(topics: TopicCounts, previous: Assignment = this.target): void {
    this.groupEpoch++;
    const next = this.nextTarget(topics, this.target);
    const moved = !sameAssignment(this.target, next);
    this.target = next;
    if (moved) this.onRebalance(partitionMoves(previous, next)); // a rebalance: the target moved something
  }

  private nextTarget(topics: TopicCounts, current: Assignment): Assignment {
    const counts = new Map<string, number>();
    for (const topic of this.subscribedTopics(topics)) counts.set(topic, topics.get(topic)!);
    const members = [...this.members.values()].map((member) => ({ memberId: member.memberId, topics: new Set(topicsOf(member, topics)) }));
    return assign(this.assignor, members, counts, current);
  }

  /**
   * Takes the members a broker kept (`membership-store.ts`) when it starts again: each owns what
   * it owned, at the epochs it had. The target is not kept: it is computed again from what each
   * member was assigned, which the sticky assignor keeps where balance allows. Nothing moved, so
   * no rebalance is reported. For a group that has no members yet.
   */
  restore(groupEpoch: number, assignor: AssignorName, members: readonly Member[], topics: TopicCounts): TopicPartition[] {
    this.groupEpoch = groupEpoch;
    this.assignor = assignor;
    // Kept writes never give a partition to two members; should they (a bug), the first keeps
    // it and the others are told at their next heartbeat, with a new epoch, that they have not.
    const claimedTwice: TopicPartition[] = [];
    for (const member of members) {
      this.members.set(member.memberId, member);
      for (const key of [...member.assigned, ...member.revoking]) {
        if (!this.owners.has(key)) {
          this.owners.set(key, member.memberId);
          continue;
        }
        claimedTwice.push(key);
        member.assigned.delete(key);
        member.revoking.delete(key);
        member.vanished.delete(key);
        member.shrunkSinceAnswer = true;
      }
    }
    this.target = this.nextTarget(topics, new Map(members.map((member) => [member.memberId, new Set(member.assigned)])));
    return claimedTwice;
  }

  /** The ids of the members taken out since the last call (for the membership store to remove). */
  takeRemoved(): readonly string[] {
    if (this.removed.length === 0) return NONE_REMOVED;
    const removed = this.removed;
    this.removed = [];
    return removed;
  }

  /**
   * Moves a member towards its target: releases the partitions it acknowledged giving up,
   * asks it to revoke those no longer in its target, and hands it free target partitions.
   */
  private reconcile(member: Member, reported: ReadonlySet<TopicPartition>, nowMs: number): HeartbeatOutput {
    for (const key of [...member.revoking]) {
      if (!reported.has(key)) {
        member.revoking.delete(key);
        member.vanished.delete(key);
        if (this.owners.get(key) === member.memberId) this.owners.delete(key);
      }
    }
    // Every revocation acknowledged: a new one below is timed from now, not from the old one.
    if (member.revoking.size === 0) member.revokingSinceMs = -1;
    const target = this.target.get(member.memberId) ?? new Set<TopicPartition>();
    let changed = false;
    for (const key of [...member.assigned]) {
      if (!target.has(key)) {
        member.assigned.delete(key);
        member.revoking.add(key);
        changed = true;
      }
    }
    for (const key of target) {
      if (member.assigned.has(key) || this.owners.has(key)) continue;
      member.assigned.add(key);
      this.owners.set(key, member.memberId);
      changed = true;
    }
    if (changed || member.shrunkSinceAnswer) {
      member.shrunkSinceAnswer = false;
      member.previousEpoch = member.epoch;
      member.epoch = Math.max(member.epoch + 1, this.groupEpoch);
    }
    if (member.revoking.size > 0 && member.revokingSinceMs < 0) member.revokingSinceMs = nowMs;
    return this.answer(member);
  }

  /**
   * The partitions of `memberId` whose topic was deleted while it owned them (see `Member`):
   * offsets it commits for them were read from a topic that is gone, and are not stored.
   */
  vanishedPartitions(memberId: string): ReadonlySet<TopicPartition> {
    return this.members.get(memberId)?.vanished ?? new Set();
  }

  /** Checks that `memberId` at `memberEpoch` may commit offsets of `keys` (on a broker without tokens). */
  checkCommit(memberId: string, memberEpoch: number, keys: readonly TopicPartition[]): void {
    this.checkCommitter(memberId, memberEpoch, null);
    this.checkCommitOwnership(memberId, keys);
  }

  /**
   * Checks that `memberId` at `memberEpoch` may commit at all (a member joined by the call's
   * token `tokenName`, not away, at its current epoch): checked before the offsets are, so that a
   * member fenced or removed is told to rejoin whatever its offsets name.
   */
  checkCommitter(memberId: string, memberEpoch: number, tokenName: string | null): void {
    const member = this.members.get(memberId);
    if (member === undefined) {
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `member ${memberId} is not in group "${this.groupId}"; rejoin before committing`);
    }
    this.checkToken(member, tokenName, 'commit as');
    // A static member away after epoch -2 keeps its partitions for its return, not to commit.
    if (member.away) {
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `member ${memberId} of group "${this.groupId}" left (epoch -2); commit before leaving, or after joining again`);
    }
    if (memberEpoch !== member.epoch) {
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `stale member epoch ${memberEpoch} for member ${memberId} of group "${this.groupId}" (current ${member.epoch}); commit refused`);
    }
  }

  /** Checks that `memberId` owns each of `keys`, whose offsets it commits (after `checkCommitter`). */
  checkCommitOwnership(memberId: string, keys: readonly TopicPartition[]): void {
    for (const key of keys) {
      if (this.owners.get(key) !== memberId) {
        const { topic, partition } = splitTp(key);
        throw new StrataError(ErrorCode.FAILED_PRECONDITION, `member ${memberId} is not the owner of ${topic}-${partition} in group "${this.groupId}"; commit refused`);
      }
    }
  }
}

function topicsOf(member: Member, topics: TopicCounts): string[] {
  const allowed = (topic: string): boolean => member.topicScope === null || member.topicScope.allows(topic);
  const result: string[] = [];
  const regex = member.regex;
  if (regex === null) {
    // Names alone: each looked up, not every topic of the broker against every name.
    for (const topic of member.subscription.topicNames) if (topics.has(topic) && allowed(topic)) result.push(topic);
    return result;
  }
  const named = new Set(member.subscription.topicNames);
  for (const topic of topics.keys()) if (allowed(topic) && (named.has(topic) || regex.matches(topic))) result.push(topic);
  return result;
}

function sameScope(a: TopicScope | null, b: TopicScope | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return a.patterns.length === b.patterns.length && a.patterns.every((pattern, index) => pattern === b.patterns[index]);
}

function sameSubscription(a: Subscription, b: Subscription): boolean {
  if (a.regex !== b.regex) return false;
  const left = new Set(a.topicNames);
  const right = new Set(b.topicNames);
  return left.size === right.size && [...left].every((name) => right.has(name));
}

/** The partitions `next` gives a member `previous` did not give it, each with its former member (null: none). */
function partitionMoves(previous: Assignment, next: Assignment): PartitionMove[] {
  const formerOwners = new Map<TopicPartition, string>();
  for (const [memberId, partitions] of previous) for (const key of partitions) formerOwners.set(key, memberId);
  const moves: PartitionMove[] = [];
  for (const [memberId, partitions] of next) {
    for (const key of partitions) {
      const from = formerOwners.get(key) ?? null;
      if (from !== memberId) moves.push({ partition: key, from, to: memberId });
    }
  }
  return moves;
}

function sameAssignment(a: Assignment, b: Assignment): boolean {
  if (a.size !== b.size) return false;
  for (const [memberId, partitions] of a) {
    const other = b.get(memberId);
    if (other === undefined || other.size !== partitions.size) return false;
    for (const key of partitions) if (!other.has(key)) return false;
  }
  return true;
}
