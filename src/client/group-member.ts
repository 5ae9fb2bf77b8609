/**
 * Consumer-group membership for the client `Consumer`: one member of one group, driven by the
 * Groups service's heartbeat protocol (KIP-848 style, see proto/strata/v1/groups.proto). The
 * broker computes the assignment; this class only follows it.
 *
 * The loop: join with member epoch 0 (a member id chosen once per consumer, subscription,
 * optional static instance id, assignor, client id, session timeout), then heartbeat every
 * `heartbeat_interval_ms` with the partitions the consumer owns. Each answer's `assignment` is
 * what the member may own from now on:
 * - partitions that left it are revoked through `consumer.revokeAssignment`, whose
 *   `beforeRevoke` commits their positions; only then is the next heartbeat sent, at once, with
 *   the smaller owned set, which is what lets the broker hand them to someone else;
 * - partitions new to it are added with `consumer.addAssignment`; their start offsets come from
 *   one FetchOffsets call for the batch (`startOffset`), else the consumer's reset policy.
 * Heartbeats are strictly sequential and a revocation completes before the next one, so the
 * owned set the broker hears about is always what the consumer really fetches.
 *
 * Failures:
 * - NOT_FOUND (the broker does not know the member: its session expired, or the broker lost
 *   its data) and FAILED_PRECONDITION (fenced: stale member epoch): the member no longer owns
 *   its partitions, so they are dropped WITHOUT committing (`revokeAssignment(..., { lost: true })`,
 *   event 'partitionsLost'), and it rejoins with epoch 0 and its member id. The broker has
 *   removed a fenced member already, so its partitions are free at once.
 * - a revocation (the application's `beforeRevoke` hook and its commit) that outlasts the time
 *   the broker gives it (`revocationBudgetMs`): the member leaves, drops every partition
 *   uncommitted and rejoins, rather than read on beside the partitions' next owners
 *   (`abandonRevocation`).
 * - anything else (UNAVAILABLE, DEADLINE_EXCEEDED...): retried with doubling backoff, capped at
 *   the heartbeat interval; each failure is emitted as 'groupError'. Partitions stay owned until
 *   the member has gone its session timeout (which each answer gives) less two intervals without
 *   an answer: the broker removes it then, so it drops them uncommitted first and rejoins
 *   (`sessionOverdue`; a heartbeat's deadline ends by then, `heartbeatDeadlineMs`).
 * - a join the broker refuses (NOT_FOUND, FAILED_PRECONDITION: its instance id or member id is
 *   held by a live member, the group is under an administrative call): nothing was owned, so
 *   nothing is lost; it is emitted as 'groupError' with the broker's reason and tried again with
 *   backoff, until, say, the killed instance's session ends.
 * Delivery (`mayDeliver`, asked by the consumer once per chunk, or run of records of one, it
 * hands out): records of the member's partitions wait while the member may have lost them
 * without knowing, until a heartbeat answers normally (or says they are lost, which drops them):
 * - after the connection to the broker broke (a heartbeat, or one of the consumer's Subscribe
 *   streams, failed UNAVAILABLE: `connectionLost`). A broker restarted on its data directory
 *   keeps its members, but the one reached again may have removed this member meanwhile (its
 *   session ended) or lost its data, and given its partitions to others: the member learns that
 *   only from its next heartbeat, sent at once then;
 * - once the session is overdue (`overdueAtMs`) with no answer yet: a process frozen past its
 *   session (SIGSTOP, a long GC pause, a blocked event loop) wakes with fetched chunks that the
 *   broker may have given to others meanwhile, before the heartbeat failure that would drop them.
 * While closing (below) none of these rejoins: a lost membership drops the partitions the
 * close has not released yet and ends the loop, and heartbeats that fail are retried, without
 * the session check, until the close leaves (its consumer reads nothing more by then).
 *
 * Commits (`commit`) carry the member id and current epoch. The epoch grows whenever the
 * assignment changes, so a commit can cross a heartbeat that bumps it, or follow one whose
 * answer was lost, and be refused as stale; the member then heartbeats at once and retries with
 * the new epoch what it still owns (a few times). Closing, `holdForClose` turns the loop into a
 * keep-alive: it heartbeats at the interval with the partitions the member owns, adopting the
 * epoch but moving no partition, while the consumer revokes and commits everything, which may
 * take longer than a session (Kafka's consumer heartbeats through its close the same way; the
 * consumer's `closeTimeoutMs` bounds it). `leave` ends the loop and sends epoch -1 (or -2 for a static member, which keeps its
 * partitions until its session times out), and `kill` stops at once without leaving (crash
 * simulation).
 */
import { SESSION_TIMEOUT_MAX_MS, SESSION_TIMEOUT_MIN_MS } from '../common/broker-limits.js';
import { randomUUID } from 'node:crypto';
import type { MethodDefinition } from '@grpc/grpc-js';
import { newGroupIdProblem } from '../common/group-id.js';
import { defaultClientLogger, type Logger } from '../common/logger.js';
import { topicNameProblem } from '../common/topic-name.js';
import { compileTopicRegex } from '../common/topic-regex.js';
import { strata } from '../generated/strata.js';
import { groupsServiceDefinition } from '../server/service-definitions.js';
import { type Connection, longToNumber } from './connection.js';
import type { TopicPartition, TopicPartitionOffset } from './consumer.js';
import { StrataClientError, invalidArgument, isBrokenStream, isRetriable, toClientError } from './errors.js';
import { OffsetCommitStream } from './offset-commit-stream.js';
import { integerRangeProblem } from '../common/integer-range.js';
import { settlesWithin } from '../common/settles-within.js';

const v1 = strata.v1;

/** Typed like `methods` in connection.ts: the generated decoders return full message classes. */
function typed<Request, Response>(definition: object): MethodDefinition<Request, Response> {
  return definition as MethodDefinition<Request, Response>;
}

const groupMethods = {
  heartbeat: typed<strata.v1.HeartbeatRequest, strata.v1.HeartbeatResponse>(groupsServiceDefinition.heartbeat),
  fetchOffsets: typed<strata.v1.FetchOffsetsRequest, strata.v1.FetchOffsetsResponse>(groupsServiceDefinition.fetchOffsets),
} as const;

export const LEAVE_EPOCH = -1;
export const STATIC_LEAVE_EPOCH = -2;
const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
const COMMIT_ATTEMPTS = 4;

export type AssignorName = 'uniform' | 'range';

/** What a member consumes: topic names and/or a regular expression (whole-name match). */
export interface GroupSubscription {
  topics: readonly string[];
  /** Source of the regular expression; '' for none. */
  regex: string;
}

/** How an application states a subscription: topic names, or `{ topics, regex }`. */
export type GroupSubscriptionInput = readonly string[] | { topics?: readonly string[]; regex?: string | RegExp };

export interface GroupCommittedOffset extends TopicPartitionOffset {
  metadata: string;
  /** When the broker stored the commit (ms since the epoch). */
  commitTimeMs: number;
}

/** Payload of 'groupJoined'. */
export interface GroupJoinedEvent {
  memberId: string;
  memberEpoch: number;
}

/** Payload of 'partitionsAssigned' and 'partitionsRevoked'. */
export interface PartitionsEvent {
  partitions: TopicPartition[];
}

/**
 * Payload of 'partitionsLost': dropped without committing because the member was expired or
 * fenced, or gave its membership up (its session overdue without heartbeat answers, or a
 * revocation that outlasted the time the broker gives it).
 */
export interface PartitionsLostEvent extends PartitionsEvent {
  error: StrataClientError;
}

/** Payload of 'groupError': a heartbeat failed, or the broker refused a join (both are retried). */
export interface GroupErrorEvent {
  error: StrataClientError;
  /**
   * True when the broker refused a join (an instance id or member id still held by a member
   * whose session has not ended, an administrative call under way): tried again with backoff,
   * and mended by waiting, whatever its code.
   */
  joinRefused?: boolean;
}

/** The events a group member emits through its consumer: each name with its listener's arguments. */
export interface GroupMemberEvents {
  groupJoined: [GroupJoinedEvent];
  groupError: [GroupErrorEvent];
  partitionsAssigned: [PartitionsEvent];
  partitionsRevoked: [PartitionsEvent];
  partitionsLost: [PartitionsLostEvent];
}

/** The part of the Consumer a member drives. */
export interface MemberConsumer {
  addAssignment(partitions: readonly TopicPartition[]): void;
  revokeAssignment(partitions: readonly TopicPartition[], options?: { lost?: boolean }): Promise<void>;
  /** Emits to the application's listeners; one that throws is logged, not passed on. */
  notify<E extends keyof GroupMemberEvents>(event: E, ...args: GroupMemberEvents[E]): void;
  /** The records it holds back (`holdDelivery`) may go now. */
  resumeDelivery(): void;
}

export interface GroupMemberSettings {
  groupId: string;
  subscription: GroupSubscription;
  instanceId?: string | null;
  clientId?: string;
  assignor?: AssignorName;
  /** Session timeout to ask for (ms); the broker default when absent. */
  sessionTimeoutMs?: number;
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /** A pino logger for what it has to say; default: warnings and errors on stderr (`defaultClientLogger`). */
  logger?: Logger;
  /** Commits go over this stream (the Consumer shares its own); unary CommitOffsets calls when absent. */
  committer?: OffsetCommitStream;
}

// ---------------------------------------------------------------------------------------------
// Validation and wire helpers (also used by the Consumer for manual-assignment commits).

export function checkGroupId(groupId: string): string {
  const problem = newGroupIdProblem(groupId);
  if (problem !== null) throw invalidArgument(problem);
  return groupId;
}

export function checkSessionTimeout(value: number): number {
  const problem = integerRangeProblem('sessionTimeoutMs', value, SESSION_TIMEOUT_MIN_MS, SESSION_TIMEOUT_MAX_MS);
  if (problem !== null) throw invalidArgument(problem);
  return value;
}

export function checkAssignor(value: string): AssignorName {
  if (value !== 'uniform' && value !== 'range') throw invalidArgument(`assignor must be 'uniform' or 'range', got ${JSON.stringify(value)}`);
  return value;
}

/** Checks and normalises a subscription; the regex is compiled here so a bad one fails at once. */
export function normalizeSubscription(input: GroupSubscriptionInput): GroupSubscription {
  const spec = Array.isArray(input) ? { topics: input as readonly string[] } : (input as { topics?: readonly string[]; regex?: string | RegExp });
  if (spec === null || typeof spec !== 'object') throw invalidArgument('a subscription is a list of topic names or { topics, regex }');
  // A string would be spread into one-letter topic names, each a legal one.
  if (spec.topics !== undefined && !Array.isArray(spec.topics)) throw invalidArgument(`a subscription's topics are a list of topic names, got ${JSON.stringify(spec.topics)}`);
  const topics = [...new Set(spec.topics ?? [])];
  for (const topic of topics) {
    if (topic !== null && typeof topic === 'object' && 'regex' in topic) {
      throw invalidArgument(`a regex subscription is { regex } (or { topics, regex }), not an element of the list of topic names: got ${JSON.stringify(topic)} in it`);
    }
    if (typeof topic !== 'string' || topic.length === 0) throw invalidArgument(`subscribed topic names must be non-empty strings, got ${JSON.stringify(topic)}`);
    // A name no topic can have would be refused by the broker at every join.
    const problem = topicNameProblem(topic);
    if (problem !== null) throw invalidArgument(`subscribed ${problem}`);
  }
  // Only the source is sent. Flags that cannot change a whole-name match of a topic name
  // (no newlines in one) are fine; the others would be silently lost.
  const meaningfulFlags = spec.regex instanceof RegExp ? spec.regex.flags.replace(/[dgmsuy]/g, '') : '';
  if (meaningfulFlags !== '') {
    throw invalidArgument(`regex flags (${meaningfulFlags}) are not sent to the broker; write case-insensitivity inline, e.g. (?i)orders\\..*`);
  }
  const regex = spec.regex instanceof RegExp ? spec.regex.source : (spec.regex ?? '');
  if (typeof regex !== 'string') throw invalidArgument('regex must be a string or a RegExp');
  if (regex !== '') {
    try {
      compileTopicRegex(regex);
    } catch (error) {
      throw invalidArgument(`regex is not a valid regular expression: ${(error as Error).message}`);
    }
  }
  if (topics.length === 0 && regex === '') throw invalidArgument('a subscription needs topic names and/or a regex');
  return { topics, regex };
}

/** Committed offsets of a group: all of them, or those of `topics`. */
export async function fetchCommittedOffsets(connection: Connection, groupId: string, topics: readonly string[] = []): Promise<GroupCommittedOffset[]> {
  const response = await connection.unary(groupMethods.fetchOffsets, v1.FetchOffsetsRequest.create({ groupId, topics: [...topics] }));
  return response.offsets.map((entry) => ({
    topic: entry.topic,
    partition: entry.partition,
    offset: longToNumber(entry.offset, 'offset'),
    metadata: entry.metadata ?? '',
    commitTimeMs: longToNumber(entry.commitTimeMs, 'commit_time_ms'),
  }));
}

function partitionKey(topic: string, partition: number): string {
  return `${partition}:${topic}`;
}

function toWire(partitions: Iterable<TopicPartition>): strata.v1.TopicPartitions[] {
  const byTopic = new Map<string, number[]>();
  for (const { topic, partition } of partitions) {
    let list = byTopic.get(topic);
    if (list === undefined) byTopic.set(topic, (list = []));
    list.push(partition);
  }
  return [...byTopic].map(([topic, list]) => v1.TopicPartitions.create({ topic, partitions: list.sort((a, b) => a - b) }));
}

function fromWire(list: readonly strata.v1.TopicPartitions[]): Map<string, TopicPartition> {
  const result = new Map<string, TopicPartition>();
  for (const entry of list) for (const partition of entry.partitions) result.set(partitionKey(entry.topic, partition), { topic: entry.topic, partition });
  return result;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------

/** Codes with which the broker refuses a join: no member was made. */
const JOIN_REFUSALS: ReadonlySet<string> = new Set(['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED', 'PERMISSION_DENIED', 'UNAUTHENTICATED']);

export class GroupMember {
  readonly groupId: string;
  readonly instanceId: string | null;
  private readonly clientId: string;
  private readonly assignor: AssignorName | null;
  private readonly sessionTimeoutMs: number | null;
  private readonly retryBackoffMs: number;
  private readonly retryBackoffMaxMs: number;
  private readonly logger: Logger;

  private subscription: GroupSubscription;
  /** Bumped by `setSubscription`; the subscription is sent until a heartbeat with it succeeds. */
  private subscriptionVersion = 0;
  private sentSubscriptionVersion = -1;

  /**
   * The member id this consumer joins with, chosen once: a join retried after its answer was
   * lost then finds the member it made, instead of adding a second one that would hold
   * partitions until its session ended. Chosen again only when the broker says another token
   * holds a member of that id (`isMemberOfAnotherToken`), which no retry would get past.
   */
  private joinMemberId = randomUUID();
  /** A join was sent and not answered: the broker may have made the member all the same. */
  private unansweredJoin = false;
  /**
   * The member id of a membership this consumer gave up (`leaveAndDrop`) whose leave the broker
   * did not answer: it is sent again before the next join, which the broker would otherwise
   * refuse as another consumer's use of the id until that session ended. A broker that hung
   * takes in the heartbeats queued meanwhile when it wakes, and renews the session with them.
   */
  private unconfirmedLeave: string | null = null;
  private memberIdValue = '';
  private epoch = 0;
  /** Counts the times this consumer stopped being a member (lost, fenced): a commit begun in one is not retried in the next. */
  private incarnation = 0;
  private intervalMs = DEFAULT_HEARTBEAT_INTERVAL_MS;
  /** The member's session timeout as the broker last answered it (null before, or from a broker that does not say). */
  private sessionMs: number | null = null;
  /** When the last heartbeat the broker answered (as a member) was sent; -1 before one. */
  private answeredSentAtMs = -1;
  /**
   * When (performance.now()) the connection to the broker was last seen to break; -1 once a
   * heartbeat sent after that has been answered. Until then the consumer delivers nothing
   * (`mayDeliver`): the broker may have removed the member and given its partitions to someone else.
   */
  private connectionLostAtMs = -1;
  /** The consumer holds records back (`holdDelivery`) until it is told they may go (`resumeDelivery`). */
  private deliveryHeld = false;
  /** What the consumer fetches (and the heartbeat reports). */
  private readonly owned = new Map<string, TopicPartition>();
  /** Committed offsets looked up for partitions just assigned, one FetchOffsets per batch. */
  private readonly starts = new Map<string, Promise<Map<string, number>>>();

  private stopping = false;
  private killed = false;
  private loop: Promise<void> | null = null;
  private loopEnded = false;
  /** The heartbeat call under way (settles when it does), for commits that crossed it. */
  private inflight: Promise<void> | null = null;
  /**
   * Where the revocation clock of the answer the loop is applying starts (performance.now()): when
   * the first heartbeat not answered before it was sent, since the broker may have decided on
   * that one, its answer lost, and counted from then. -1 while it applies none (a revocation's
   * commits run inside it).
   */
  private answeredAtMs = -1;
  /** When the first heartbeat since the last answer was sent (performance.now()); -1 when none is unanswered. */
  private unansweredSinceMs = -1;
  /** The `unansweredSinceMs` of the last answer, for the loop. */
  private lastAnswerSinceMs = -1;
  /** Set by `leave`: no heartbeat for a commit's epoch may follow (or cross) the leave. */
  private leaving = false;
  /**
   * Set by `holdForClose`: the loop heartbeats only to keep the membership while the consumer's
   * close revokes everything (its hook, then its commit); answers move no partition.
   */
  private holding = false;
  /** The loop is applying an answer or handling a failure (both may call into the consumer). */
  private handling = false;
  /** `holdForClose` calls waiting for the loop to finish what it is handling. */
  private holdWaiters: (() => void)[] = [];
  /** Commits waiting for the loop's next heartbeat to settle (or for the loop to end). */
  private heartbeatWaiters: (() => void)[] = [];
  private waker: (() => void) | null = null;
  private readonly committer: OffsetCommitStream;

  constructor(
    private readonly connection: Connection,
    private readonly consumer: MemberConsumer,
    settings: GroupMemberSettings,
  ) {
    this.groupId = checkGroupId(settings.groupId);
    this.subscription = settings.subscription;
    this.instanceId = settings.instanceId ?? null;
    if (this.instanceId !== null && (typeof this.instanceId !== 'string' || this.instanceId.length === 0)) throw invalidArgument('instanceId must be a non-empty string');
    this.clientId = settings.clientId ?? 'strata-js';
    this.assignor = settings.assignor === undefined ? null : checkAssignor(settings.assignor);
    this.sessionTimeoutMs = settings.sessionTimeoutMs === undefined ? null : checkSessionTimeout(settings.sessionTimeoutMs);
    this.retryBackoffMs = settings.retryBackoffMs ?? 100;
    this.retryBackoffMaxMs = Math.max(this.retryBackoffMs, settings.retryBackoffMaxMs ?? 2_000);
    this.logger = (settings.logger ?? defaultClientLogger()).child({ component: 'group-member', group: this.groupId });
    this.committer = settings.committer ?? new OffsetCommitStream(connection, { stream: false });
  }

  /** The member id the broker answered with (this consumer's own, from a current broker); '' while joining. */
  get memberId(): string {
    return this.memberIdValue;
  }

  /** The current member epoch; 0 while joining. */
  get memberEpoch(): number {
    return this.epoch;
  }

  /** The partitions the member owns now. */
  ownedPartitions(): TopicPartition[] {
    return [...this.owned.values()];
  }

  /** Starts the heartbeat loop (joins first). */
  start(): void {
    this.loop ??= this.run();
  }

  /** Changes the subscription; it goes out with the next heartbeat, which is sent now. */
  setSubscription(subscription: GroupSubscription): void {
    this.subscription = subscription;
    this.subscriptionVersion++;
    this.wake();
  }

  // -------------------------------------------------------------------------------------------
  // Delivery.

  /**
   * Whether the consumer may hand records of the member's partitions to the application now (it
   * asks once per chunk, or run of one): not after a connection loss until a heartbeat sent
   * since is answered, nor while the session is overdue (see the header). One clock reading.
   */
  mayDeliver(): boolean {
    return this.connectionLostAtMs < 0 && performance.now() < this.overdueAtMs();
  }

  /**
   * The consumer holds records back (`mayDeliver` said no): the heartbeat that decides goes out
   * now, and the consumer is told (`resumeDelivery`) once an answer lets them go. Called again
   * when new records arrive meanwhile, which after a broken connection is the sign that the
   * broker is back.
   */
  holdDelivery(): void {
    this.deliveryHeld = true;
    this.wake();
  }

  /**
   * The connection to the broker broke (one of the consumer's Subscribe streams failed
   * UNAVAILABLE): nothing is delivered until a heartbeat sent from now on is answered, and the
   * first goes out at once rather than at the interval.
   */
  connectionLost(): void {
    const first = this.connectionLostAtMs < 0;
    this.connectionLostAtMs = performance.now();
    // Once: every partition's stream fails at the same time, and retries, each with its backoff.
    if (first) this.wake();
  }

  /**
   * A partition's topic was deleted (its fetch was answered NOT_FOUND): the broker revokes it at
   * the next heartbeat, which goes out at once rather than at the interval.
   */
  partitionGone(): void {
    this.wake();
  }

  /** After an answer: tells the consumer that the records it holds may go, if they may. */
  private resumeDelivery(): void {
    if (!this.deliveryHeld || !this.mayDeliver()) return;
    this.deliveryHeld = false;
    this.consumer.resumeDelivery();
  }

  // -------------------------------------------------------------------------------------------
  // The heartbeat loop.

  private async run(): Promise<void> {
    let failures = 0;
    let rejoins = 0;
    while (!this.stopping) {
      // Closing, and not a member (it never joined, or lost the membership): nothing to keep.
      if (this.holding && this.memberIdValue === '') break;
      let delayMs: number;
      try {
        const response = await this.heartbeat();
        this.handling = true;
        this.answeredAtMs = this.lastAnswerSinceMs;
        failures = 0;
        rejoins = 0;
        // Before the answer is applied, which may wait for a revocation: partitions it revokes
        // are still this member's until it acknowledges, and the others need not wait.
        this.resumeDelivery();
        let revoked = false;
        try {
          // Closing: the consumer revokes everything itself; the answer only keeps the session.
          if (!this.holding) revoked = await this.apply(response);
        } finally {
          this.answeredAtMs = -1;
        }
        // A revocation is acknowledged at once, and a subscription changed meanwhile goes out at
        // once; so does the heartbeat that lets held records go, when this answer did not (it
        // was sent before the connection broke, or the application held the loop meanwhile).
        const pending = revoked || (!this.holding && this.subscriptionVersion !== this.sentSubscriptionVersion) || this.deliveryHeld;
        delayMs = pending ? 0 : this.intervalMs;
      } catch (error) {
        this.handling = true;
        if (this.stopping) break;
        if (this.connection.isClosed) {
          // A shared connection closed under the consumer: nothing more can be sent.
          this.logger.warn('the connection was closed; the group member stops');
          this.stopping = true;
          break;
        }
        // It left and dropped its partitions already: join again at once (or, closing, end).
        if (error instanceof MembershipDropped) continue;
        const failure = toClientError(error);
        const anotherTokens = isMemberOfAnotherToken(failure);
        if (anotherTokens) {
          // Its id was taken by another token while it was away (its session ended), or its own
          // token was renamed: it joins again under a new id.
          this.joinMemberId = randomUUID();
          this.unansweredJoin = false;
        }
        if (this.memberIdValue === '' && (failure.code === 'NOT_FOUND' || failure.code === 'FAILED_PRECONDITION' || anotherTokens)) {
          rejoins++;
          this.refusedJoin(failure, rejoins);
          if (this.holding) break; // closing: no join again
          delayMs = this.backoff(rejoins);
        } else if (failure.code === 'NOT_FOUND' || failure.code === 'FAILED_PRECONDITION' || anotherTokens) {
          await this.loseMembership(failure);
          if (this.holding) break; // closing: no join again
          // The first rejoin is immediate; one that keeps failing backs off.
          delayMs = rejoins === 0 ? 0 : this.backoff(rejoins);
          rejoins++;
        } else {
          failures++;
          delayMs = this.backoff(failures);
          // The broker may restart while unreachable: nothing is delivered until it answers.
          if (failure.code === 'UNAVAILABLE' || isBrokenStream(failure)) this.connectionLostAtMs = performance.now();
          this.logger.warn({ code: failure.code, reason: failure.message, failures }, 'heartbeat failed; retrying');
          this.consumer.notify('groupError', { error: failure } satisfies GroupErrorEvent);
          // Closing, the consumer reads nothing more, so nothing is read beside the partitions'
          // next owners: the member keeps trying until the close leaves.
          const silence = this.holding ? null : this.sessionOverdue(failure);
          if (silence !== null) await this.leaveAndDrop(silence);
        }
      } finally {
        this.handling = false;
        this.settleHoldWaiters();
      }
      if (!this.stopping) await this.pause(delayMs);
    }
    this.loopEnded = true;
    this.settleHeartbeatWaiters();
  }

  private settleHoldWaiters(): void {
    for (const resolve of this.holdWaiters.splice(0)) resolve();
  }

  /**
   * The consumer is closing: from now on the loop heartbeats only to keep the membership, at the
   * interval and with the partitions the member owns, while the consumer revokes them all (its
   * `beforeRevoke` hook and final commit may take longer than a session), until `leave` ends it.
   * Answers move no partition; the epoch they give is adopted, for the final commit. Resolves
   * once the loop has finished the answer or failure it was handling (a revocation under way
   * completes), so the owned set is what the consumer holds; at once with `waitForLoop` false
   * (the close was called from that revocation's hook, which cannot wait for itself).
   */
  async holdForClose(options: { waitForLoop?: boolean } = {}): Promise<void> {
    this.holding = true;
    if (!this.handling || options.waitForLoop === false) return;
    await new Promise<void>((resolve) => this.holdWaiters.push(resolve));
  }

  private settleHeartbeatWaiters(): void {
    for (const resolve of this.heartbeatWaiters.splice(0)) resolve();
  }

  /**
   * When the member's session is overdue (performance.now() time; Infinity when not a member or
   * the session is unknown): its session timeout after the last answered heartbeat was sent
   * (the broker's count began when it received it, later), less two intervals, since a failed
   * heartbeat is retried up to an interval later.
   */
  private overdueAtMs(): number {
    const sessionMs = this.sessionTimeout();
    // answeredSentAtMs is -1 while not a member (joining, rejoining).
    if (sessionMs === null || this.answeredSentAtMs < 0) return Number.POSITIVE_INFINITY;
    return this.answeredSentAtMs + sessionMs - 2 * this.intervalMs;
  }

  /**
   * After a heartbeat failed (UNAVAILABLE, DEADLINE_EXCEEDED...): the refusal to drop the
   * partitions with when the session is overdue (`overdueAtMs`), else null. The broker removes
   * the member at its session timeout and gives its partitions to others: reading on, it would
   * read beside them, so it takes them as lost first and joins again.
   */
  private sessionOverdue(failure: StrataClientError): StrataClientError | null {
    if (performance.now() < this.overdueAtMs()) return null;
    const silentMs = Math.round(performance.now() - this.answeredSentAtMs);
    return new StrataClientError(
      failure.code,
      `no heartbeat of this member was answered for ${silentMs} ms, near its session timeout of ${this.sessionTimeout()} ms (the last: ${failure.message}): the broker removes it then and gives its partitions to others, so they are dropped uncommitted and it joins again`,
    );
  }

  private backoff(failures: number): number {
    return Math.min(this.intervalMs, this.retryBackoffMaxMs, this.retryBackoffMs * 2 ** Math.min(failures - 1, 20));
  }

  private async heartbeat(): Promise<strata.v1.HeartbeatResponse> {
    const joining = this.memberIdValue === '';
    if (joining && this.unconfirmedLeave !== null) {
      try {
        await this.leaveOrThrow(this.unconfirmedLeave, LEAVE_EPOCH, this.callDeadlineMs());
        this.logger.info({ memberId: this.unconfirmedLeave }, 'left the membership given up before joining again');
      } catch (error) {
        // Still unreachable: the loop's, as a heartbeat's failure is; it backs off and comes back here.
        const failure = toClientError(error);
        if (isRetriable(failure) || isBrokenStream(failure)) throw error;
        // Refused (another token holds the id now, say): its session ends it; the join goes on.
        this.logger.warn({ memberId: this.unconfirmedLeave, code: failure.code, reason: failure.message }, 'the broker refused the leave of the membership given up; joining without it');
      }
      this.unconfirmedLeave = null;
    }
    const version = this.subscriptionVersion;
    const sendsSubscription = joining || version !== this.sentSubscriptionVersion;
    const request = this.request(joining ? 0 : this.epoch, [...this.owned.values()], sendsSubscription);
    const sentAt = performance.now();
    if (this.unansweredSinceMs < 0) this.unansweredSinceMs = sentAt;
    if (joining) this.unansweredJoin = true;
    const call = this.connection.unary(groupMethods.heartbeat, request, { deadlineMs: this.heartbeatDeadlineMs() });
    this.inflight = call.then(
      () => undefined,
      () => undefined,
    );
    try {
      let response: strata.v1.HeartbeatResponse;
      try {
        response = await call;
      } catch (error) {
        // A join the broker refused made no member; one lost on the way (or cut off) may have.
        if (joining && JOIN_REFUSALS.has(toClientError(error).code)) this.unansweredJoin = false;
        throw error;
      }
      this.unansweredJoin = false;
      if (sendsSubscription) this.sentSubscriptionVersion = version;
      // Adopted before the answer is applied: the commits of a revocation need the new epoch.
      this.memberIdValue = response.memberId;
      this.epoch = response.memberEpoch;
      if (response.heartbeatIntervalMs > 0) this.intervalMs = response.heartbeatIntervalMs;
      if (response.sessionTimeoutMs > 0) this.sessionMs = response.sessionTimeoutMs;
      this.answeredSentAtMs = response.memberEpoch > 0 ? sentAt : -1;
      // Answered across a connection that broke after it was sent: that proves nothing of now.
      if (sentAt > this.connectionLostAtMs) this.connectionLostAtMs = -1;
      this.lastAnswerSinceMs = this.unansweredSinceMs;
      this.unansweredSinceMs = -1;
      if (joining) {
        this.logger.info({ memberId: response.memberId, memberEpoch: response.memberEpoch }, 'joined the group');
        this.consumer.notify('groupJoined', { memberId: response.memberId, memberEpoch: response.memberEpoch } satisfies GroupJoinedEvent);
      }
      return response;
    } finally {
      this.inflight = null;
      this.settleHeartbeatWaiters();
    }
  }

  private request(memberEpoch: number, owned: TopicPartition[], sendsSubscription: boolean): strata.v1.HeartbeatRequest {
    return v1.HeartbeatRequest.create({
      groupId: this.groupId,
      memberId: memberEpoch === 0 ? this.joinMemberId : this.memberIdValue,
      memberEpoch,
      ...(this.instanceId !== null ? { instanceId: this.instanceId } : {}),
      clientId: this.clientId,
      subscribedTopicNames: sendsSubscription ? [...this.subscription.topics] : [],
      subscribedTopicRegex: sendsSubscription ? this.subscription.regex : '',
      keepSubscription: !sendsSubscription,
      assignor: this.assignor ?? '',
      ownedPartitions: toWire(owned),
      sessionTimeoutMs: this.sessionTimeoutMs ?? 0,
    });
  }

  private callDeadlineMs(): number {
    return Math.min(this.connection.deadlineMs, this.sessionTimeout() ?? this.connection.deadlineMs);
  }

  /** The member's session timeout: as the broker last answered it, else as asked for; null when neither says. */
  private sessionTimeout(): number | null {
    return this.sessionMs ?? this.sessionTimeoutMs;
  }

  /**
   * A heartbeat's deadline: the call's, and no later than when the member's session would be
   * overdue (`sessionOverdue`), so that a call that hangs (packets dropped) fails in time for
   * the member to give its partitions up before the broker does; at least one interval.
   */
  private heartbeatDeadlineMs(): number {
    const deadlineMs = this.callDeadlineMs();
    const overdueInMs = this.overdueAtMs() - performance.now();
    return Number.isFinite(overdueInMs) ? Math.max(this.intervalMs, Math.min(deadlineMs, overdueInMs)) : deadlineMs;
  }

  /**
   * Moves the consumer to the answer's assignment: revokes (and commits) what left it, then
   * adds what is new. Returns true when something was revoked (the broker waits for the ack).
   */
  private async apply(response: strata.v1.HeartbeatResponse): Promise<boolean> {
    const target = fromWire(response.assignment);
    const removed = [...this.owned].filter(([key]) => !target.has(key)).map(([, tp]) => tp);
    const added = [...target].filter(([key]) => !this.owned.has(key)).map(([, tp]) => tp);
    if (removed.length > 0) {
      const revoking = this.consumer.revokeAssignment(removed).catch((error: unknown) => {
        this.logger.warn({ err: error, partitions: removed }, 'revocation hook failed; the partitions are released anyway');
      });
      const budgetMs = this.revocationBudgetMs();
      const settled = await settlesWithin(revoking, this.answeredAtMs + budgetMs - performance.now());
      // Not a member any more: it left meanwhile (a close called from the revocation's hook).
      if (!settled && this.memberIdValue !== '') await this.abandonRevocation(removed, budgetMs);
      for (const { topic, partition } of removed) {
        this.owned.delete(partitionKey(topic, partition));
        this.starts.delete(partitionKey(topic, partition));
      }
      this.logger.info({ partitions: removed, memberEpoch: this.epoch }, 'partitions revoked');
      this.consumer.notify('partitionsRevoked', { partitions: removed } satisfies PartitionsEvent);
    }
    if (added.length > 0 && !this.stopping && !this.holding) {
      this.lookUpStarts(added);
      this.consumer.addAssignment(added);
      for (const tp of added) this.owned.set(partitionKey(tp.topic, tp.partition), tp);
      this.logger.info({ partitions: added, memberEpoch: this.epoch }, 'partitions assigned');
      this.consumer.notify('partitionsAssigned', { partitions: added } satisfies PartitionsEvent);
    }
    return removed.length > 0;
  }

  /**
   * A revocation that did not finish within its budget (the application's `beforeRevoke` hook,
   * or its commit, still running): past it the broker would remove the member for holding the
   * partitions, while this consumer went on fetching the others, owned by someone else by then.
   * So it leaves the group at once, which moves the partitions now, drops every partition
   * uncommitted (`loseMembership`), and throws the refusal, on which the loop joins again. The hook
   * is left running; a commit it makes afterwards is refused (the membership is gone).
   */
  private async abandonRevocation(removed: readonly TopicPartition[], budgetMs: number): Promise<never> {
    const named = removed.map(({ topic, partition }) => `${topic}-${partition}`).join(', ');
    this.logger.error({ partitions: removed, budgetMs }, 'revocation did not finish in time; leaving the group and joining again');
    const failure = new StrataClientError(
      'FAILED_PRECONDITION',
      `the revocation of ${named} did not finish within ${budgetMs} ms (the beforeRevoke hook, or its commit, still ran), past which the broker removes the member: this consumer left group "${this.groupId}", dropped its partitions uncommitted and joins again`,
    );
    // Dropped here, not by the loop: a stop under way ends the loop before it would.
    await this.leaveAndDrop(failure);
    throw new MembershipDropped(failure);
  }

  /**
   * The member gives up its membership (an overdue session, an abandoned revocation): it stops
   * reading its partitions, then leaves, if the broker can hear it, so that its join is not
   * refused as a live member's and its partitions move now (if not, the broker ends the session
   * itself). Stopped first, so it never reads beside their next owner: a leave that hangs (the
   * broker unreachable) takes up to an interval, and the session may end meanwhile. The leave
   * does not wait for the fetchers' loops to end, which may take a call's deadline.
   */
  private async leaveAndDrop(failure: StrataClientError): Promise<void> {
    const memberId = this.memberIdValue;
    // loseMembership stops the fetchers before its first wait.
    const dropped = this.loseMembership(failure);
    const [, left] = await Promise.all([dropped, this.sendLeave(memberId, LEAVE_EPOCH, this.intervalMs)]);
    if (!left) this.unconfirmedLeave = memberId;
  }

  /**
   * The broker refused the join (an instance id still held by a member that has not left, a
   * member id in use, an administrative call under way): no member was made and nothing was
   * owned, so nothing is lost; the application hears of it ('groupError', with the broker's
   * reason: a duplicated instance id would otherwise retry silently for ever), and the loop
   * joins again after a backoff.
   */
  private refusedJoin(failure: StrataClientError, refusals: number): void {
    // The broker decided nothing for a membership: no revocation clock starts at that join.
    this.unansweredSinceMs = -1;
    this.logger.warn({ code: failure.code, reason: failure.message, refusals }, this.holding ? 'the broker refused the join while closing' : 'the broker refused the join; joining again after a backoff');
    this.consumer.notify('groupError', { error: failure, joinRefused: true } satisfies GroupErrorEvent);
  }

  /**
   * The member is gone (NOT_FOUND), fenced, or gave its membership up (`leaveAndDrop`): drop
   * everything uncommitted; the loop joins afresh, unless the consumer is closing (then a final
   * commit not yet made is refused, and the partitions' next owners read again what came after
   * the last one; `revokeAssignment` skips those the close is releasing already, while
   * 'partitionsLost' names every partition the membership owned).
   */
  private async loseMembership(failure: StrataClientError): Promise<void> {
    const lost = [...this.owned.values()];
    this.logger.warn({ code: failure.code, reason: failure.message, memberId: this.memberIdValue, lost }, this.holding ? 'no longer a member while closing; partitions lost' : 'no longer a member; partitions lost, rejoining');
    if (lost.length > 0) {
      try {
        await this.consumer.revokeAssignment(lost, { lost: true });
      } catch (error) {
        this.logger.warn({ err: error }, 'could not stop the lost partitions cleanly');
      }
    }
    this.owned.clear();
    this.starts.clear();
    // The broker removed a fenced member already.
    this.memberIdValue = '';
    this.epoch = 0;
    this.incarnation++;
    this.sentSubscriptionVersion = -1;
    this.answeredSentAtMs = -1;
    this.unansweredSinceMs = -1; // what the broker decided for that membership is moot
    if (lost.length > 0) this.consumer.notify('partitionsLost', { partitions: lost, error: failure } satisfies PartitionsLostEvent);
  }

  private pause(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.waker === done) this.waker = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waker = done;
    });
  }

  private wake(): void {
    this.waker?.();
  }

  // -------------------------------------------------------------------------------------------
  // Offsets.

  /** Looks up the committed offsets of partitions just assigned, in one call. */
  private lookUpStarts(partitions: readonly TopicPartition[]): void {
    const lookup = this.committedMap([...new Set(partitions.map(({ topic }) => topic))]);
    lookup.catch(() => undefined); // a failure surfaces (and is retried) through startOffset
    for (const { topic, partition } of partitions) this.starts.set(partitionKey(topic, partition), lookup);
  }

  private async committedMap(topics: string[]): Promise<Map<string, number>> {
    const offsets = await fetchCommittedOffsets(this.connection, this.groupId, topics);
    return new Map(offsets.map((entry) => [partitionKey(entry.topic, entry.partition), entry.offset]));
  }

  /**
   * Where a newly assigned partition starts: the group's committed offset, or null (the reset
   * policy). The batch lookup is used once; a retry after a failure asks again.
   */
  async startOffset({ topic, partition }: TopicPartition): Promise<number | null> {
    const key = partitionKey(topic, partition);
    const pending = this.starts.get(key) ?? this.committedMap([topic]);
    this.starts.delete(key);
    return (await pending).get(key) ?? null;
  }

  /** Counts the memberships lost so far: positions taken in one are not committed in another. */
  get membership(): number {
    return this.incarnation;
  }

  /**
   * Commits offsets (the next offset to consume) as this member, if it is still in the
   * `membership` the positions were taken in (see `membership`). UNAVAILABLE and
   * DEADLINE_EXCEEDED are retried with backoff, a few times in all; a revocation's commit for
   * as long as the broker waits for the revocation (`inRevocationBudget`). FAILED_PRECONDITION (a stale
   * epoch, a partition the member no longer owns, or no longer a member: the broker refuses the
   * whole request) is handled as groups.proto says: heartbeat at once, then retry, with the epoch
   * that gives, the offsets of the partitions the member still owns. Those it gave up meanwhile
   * cannot be committed by it any more: after committing the rest, it throws naming them.
   */
  async commit(offsets: readonly TopicPartitionOffset[], membership: number): Promise<void> {
    let pending = offsets;
    // Which of them the member owned when the commit began, to say why one is dropped.
    const ownedAtStart = new Set(offsets.filter(({ topic, partition }) => this.owned.has(partitionKey(topic, partition))));
    const dropped: TopicPartitionOffset[] = [];
    // Positions of one membership are not committed in the next, under the same member id:
    // the partitions were lost in between, and may have been read further by another member.
    for (let attempt = 1; pending.length > 0; attempt++) {
      const memberId = this.memberIdValue;
      const epoch = this.epoch;
      if (this.incarnation !== membership) throw new StrataClientError('FAILED_PRECONDITION', `this consumer lost its membership of group "${this.groupId}", and with it the partitions, after these positions were taken; nothing committed`);
      if (memberId === '' || this.killed) {
        const why = this.leaving ? 'it left the group, closing' : this.holding ? 'its membership ended while closing' : 'joining or rejoining';
        throw new StrataClientError('FAILED_PRECONDITION', `this consumer is not a member of group "${this.groupId}" right now (${why}); nothing committed`);
      }
      try {
        await this.committer.commit(this.groupId, memberId, epoch, pending);
        break;
      } catch (error) {
        const failure = toClientError(error);
        if (attempt >= COMMIT_ATTEMPTS && !(isRetriable(failure) && this.inRevocationBudget())) throw failure;
        if (failure.code === 'FAILED_PRECONDITION') {
          await this.refreshEpoch();
          if (this.incarnation !== membership) continue; // refused above, as lost
          const owned = pending.filter(({ topic, partition }) => this.owned.has(partitionKey(topic, partition)));
          // Nothing the heartbeat taught changes the request: the refusal stands.
          if (this.epoch === epoch && owned.length === pending.length) throw failure;
          dropped.push(...pending.filter((entry) => !owned.includes(entry)));
          pending = owned;
          continue;
        }
        if (!isRetriable(failure)) throw failure;
        await delay(this.backoff(attempt));
      }
    }
    if (dropped.length > 0) throw notCommitted(offsets, dropped, ownedAtStart);
  }

  /**
   * How long a revocation may take, from the sending of the heartbeat whose answer asked for it
   * (or of the first one since the last answer: an answer lost on the way may have asked first).
   * The broker removes a member that holds a revoked partition for its session timeout, counted
   * from when it decided, which may be up to an interval before that heartbeat, and the
   * heartbeat that acknowledges takes one more. So: the session timeout less two intervals.
   */
  private revocationBudgetMs(): number {
    // Unknown (a broker that does not say): the least a broker's can be, three intervals (a
    // broker of this version keeps five; earlier ones, three).
    const sessionMs = this.sessionTimeout() ?? 3 * this.intervalMs;
    return Math.max(0, sessionMs - 2 * this.intervalMs);
  }

  /**
   * Whether a revocation under way may still retry its commit (UNAVAILABLE, DEADLINE_EXCEEDED):
   * a partition given up uncommitted is read again by its next owner.
   */
  private inRevocationBudget(): boolean {
    if (this.answeredAtMs < 0) return false;
    return performance.now() - this.answeredAtMs < this.revocationBudgetMs();
  }

  /**
   * Learns the member's current epoch after a refused commit, as groups.proto says (heartbeat at
   * once): from the heartbeat under way, else from the loop's next one, sent now if the loop is
   * waiting between heartbeats (a closing consumer's loop heartbeats on until it leaves). While
   * the loop is busy otherwise (applying an answer, whose revocation may wait on this very
   * commit), the epoch is as new as the member knows; once the loop has ended (left, killed, or
   * no longer a member) there is none to learn.
   */
  private async refreshEpoch(): Promise<void> {
    if (this.inflight !== null) return this.inflight;
    if (this.loopEnded || this.waker === null) return;
    await new Promise<void>((resolve) => {
      this.heartbeatWaiters.push(resolve);
      this.wake();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Ending.

  /**
   * Leaves the group: epoch -1, or -2 for a static member (it keeps its partitions for its
   * session). With `waitForLoop` false (a close called from the hook of the revocation the loop
   * is applying, which cannot wait for itself) the loop is told to end but not waited for.
   */
  async leave(options: { waitForLoop?: boolean } = {}): Promise<void> {
    this.leaving = true;
    // The loop ends (a revocation under way completes first).
    this.stopping = true;
    this.wake();
    if (options.waitForLoop !== false) await this.loop;
    await this.inflight; // a commit's heartbeat for its epoch, sent before the leave
    // Not a member as far as it knows, but a join whose answer was lost may have made one,
    // holding partitions until its session ended: that one leaves (NOT_FOUND if there is none).
    const memberId = this.memberIdValue !== '' ? this.memberIdValue : this.unansweredJoin ? this.joinMemberId : (this.unconfirmedLeave ?? '');
    if (memberId === '' || this.killed) return;
    await this.sendLeave(memberId, this.instanceId !== null ? STATIC_LEAVE_EPOCH : LEAVE_EPOCH);
    this.logger.info({ memberId, static: this.instanceId !== null }, 'left the group');
    this.memberIdValue = '';
    this.epoch = 0;
    this.answeredSentAtMs = -1;
    this.owned.clear();
  }

  /** Sends a leave; returns whether the broker answered it (NOT_FOUND included: no such member). */
  private async sendLeave(memberId: string, epoch: number, deadlineMs = this.callDeadlineMs()): Promise<boolean> {
    try {
      await this.leaveOrThrow(memberId, epoch, deadlineMs);
      return true;
    } catch (error) {
      const failure = toClientError(error);
      this.logger.warn({ code: failure.code, reason: failure.message }, 'leave heartbeat failed; the session will expire instead');
      return false;
    }
  }

  /** A leave, whose failure (other than NOT_FOUND: the member is gone already) is thrown. */
  private async leaveOrThrow(memberId: string, epoch: number, deadlineMs: number): Promise<void> {
    try {
      await this.connection.unary(groupMethods.heartbeat, this.leaveRequest(memberId, epoch), { deadlineMs });
    } catch (error) {
      if (toClientError(error).code !== 'NOT_FOUND') throw error;
    }
  }

  private leaveRequest(memberId: string, epoch: number): strata.v1.HeartbeatRequest {
    return v1.HeartbeatRequest.create({
      groupId: this.groupId,
      memberId,
      memberEpoch: epoch,
      ...(this.instanceId !== null ? { instanceId: this.instanceId } : {}),
      clientId: this.clientId,
      keepSubscription: true,
      sessionTimeoutMs: this.sessionTimeoutMs ?? 0,
    });
  }

  /** Stops at once without leaving or committing (crash simulation); the session expires on the broker. */
  kill(): Promise<void> {
    this.killed = true;
    this.stopping = true;
    this.wake();
    return this.loop ?? Promise.resolve();
  }
}

/**
 * The refusal of the offsets a commit dropped (the others were committed): partitions the
 * member gave up in a rebalance while the commit was under way, and partitions it did not own.
 */
function notCommitted(offsets: readonly TopicPartitionOffset[], dropped: readonly TopicPartitionOffset[], ownedAtStart: ReadonlySet<TopicPartitionOffset>): StrataClientError {
  const names = (entries: readonly TopicPartitionOffset[]): string => entries.map(({ topic, partition }) => `${topic}-${partition}`).join(', ');
  const givenUp = dropped.filter((entry) => ownedAtStart.has(entry));
  const neverOwned = dropped.filter((entry) => !givenUp.includes(entry));
  const reasons = [
    ...(givenUp.length > 0 ? [`${names(givenUp)}, which this consumer gave up in a rebalance before the commit reached the broker (their new owner goes on from the group's last committed offset)`] : []),
    ...(neverOwned.length > 0 ? [`${names(neverOwned)}, which this consumer does not own`] : []),
  ];
  const rest = offsets.length > dropped.length ? '; the others were committed' : '';
  return new StrataClientError('FAILED_PRECONDITION', `not committed: ${reasons.join('; ')}${rest}`);
}

/** Thrown out of an answer's application once the member has left and dropped its partitions (`abandonRevocation`): the loop joins again. */
class MembershipDropped extends Error {
  constructor(readonly failure: StrataClientError) {
    super(failure.message);
    this.name = 'MembershipDropped';
  }
}

/**
 * The broker refuses this consumer's member id as another token's: on a broker with tokens a
 * member acts only with the token that joined it, so heartbeats, leaves and joins under that id
 * will keep being refused. A refused instance id is not this: it is the application's to change.
 */
function isMemberOfAnotherToken(failure: StrataClientError): boolean {
  return failure.code === 'PERMISSION_DENIED' && / may not (heartbeat|leave|join) as member /.test(failure.message);
}
