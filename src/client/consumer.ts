/**
 * The consumer: reads assigned partitions and hands records to the application, record by
 * record (`for await (const record of consumer)`) or a fetched batch at a time (`nextBatch()`,
 * `batches()`).
 *
 * Per assigned partition a fetcher follows the log with one Subscribe stream from its fetch
 * offset (raw RecordBatch bytes, at most `maxBytesPerPartition` a message): the broker pushes
 * batches as soon as they are durable, with no poll interval and no request per chunk, which
 * keeps both catch-up reads and tail latency low. Each pushed chunk's frames and CRCs are
 * checked on arrival; its records are decoded (storage codec) when the application takes it,
 * dropping those below the offset the chunk continues from (the first batch may start
 * earlier). Chunks wait in one ready queue, in arrival order across partitions. A partition's
 * stream is paused while `prefetchBatches` of its chunks wait, and reads at most one message
 * ahead, so HTTP/2 flow control holds the broker back: memory is bounded by about
 * partitions × ((prefetchBatches + 1) × maxBytesPerPartition + the HTTP/2 window): grpc-js gives
 * each stream the connection's window (`grpc-node.flow_control_window`, 8 MiB), and Node buffers
 * a paused stream's data up to it.
 * A stream that fails is resubscribed from the fetch offset after a backoff.
 *
 * Positions: `position(topic, partition)` is the offset of the next record the application will
 * get (Kafka's consumer position): it moves when a record is yielded or a batch returned, not
 * when prefetched. A partition without a position starts at `initialPosition(tp)` when that
 * returns a number (the hook a consumer-group component overrides to use committed offsets),
 * else at the reset policy ('earliest' or 'latest' via ListOffsets). `seek` sets the position and
 * drops whatever was prefetched for the partition (a generation counter turns answers of fetches
 * already under way into no-ops).
 *
 * Events: 'partitionStarted' ({ topic, partition, offset }) when a partition without a position
 * gets its start offset. OUT_OF_RANGE from a fetch (the position fell outside the log, e.g.
 * retention removed it) applies the reset policy, logs a warning and emits 'offsetReset'. Other
 * fetch failures are retried with backoff and emitted as 'fetchError'; the consumer never emits
 * 'error'. NOT_FOUND (the topic was deleted) also makes the partition forget its position once
 * the records fetched before are taken: a topic created again under the name starts as a new
 * partition does, not at the deleted topic's offsets.
 *
 * Flow control: `pause(partitions)` stops a partition's fetching and delivery until `resume`,
 * as Kafka's consumer does: its stream is cancelled and the chunks it fetched but did not hand
 * out are dropped (the same generation bump as a seek), so a paused partition holds no memory,
 * and it is fetched again from its position once resumed. Positions, and so commits, move only
 * with records handed out, so nothing dropped counts as consumed. The pause is the fetcher's:
 * it goes with a revoked or lost partition, which comes back unpaused. A group member heartbeats
 * on and keeps its paused partitions.
 *
 * Assignment: `assign(list)` sets the manual assignment. With a `groupId`, `subscribe(...)` (or
 * the `subscribe` option) makes the consumer a group member instead: a `GroupMember`
 * (group-member.ts) heartbeats and drives the same machinery incrementally with
 * `addAssignment(partitions)` and `revokeAssignment(partitions)`, which stops the partitions'
 * fetchers, passes their positions to `beforeRevoke` (the application's hook, then the commit)
 * and only then releases them. A consumer either subscribes or assigns, not both. A group
 * member's chunks are handed out only while the member says they may be (`mayDeliver`, asked
 * once per chunk, or per `RECORDS_PER_DELIVERY_CHECK` records of one): not after a broken
 * connection (a fetcher's stream failing UNAVAILABLE, which it reports) until a heartbeat is
 * answered, and not once its session is overdue. They wait in the ready queue meanwhile, and
 * are dropped with the partitions if those turn out lost.
 *
 * Commits (only with a `groupId`): a committed offset is the next offset to consume. Positions
 * count a record as processed once the application asks for the next one (or leaves the loop,
 * or calls `commit()` or `close()`): the record or batch it is holding is left out of automatic
 * commits, so a crash while processing it redelivers it rather than losing it. With `autoCommit`
 * (the default) positions are committed every `autoCommitIntervalMs`, before partitions are
 * revoked, and on close; without it nothing is committed unless the application calls
 * `commit()` (a `beforeRevoke` hook may call `commit(positions)`). Group members commit with
 * their member id and epoch; a manually assigned consumer commits with an empty member id,
 * which the broker accepts only while the group has no members. Commits run one at a time, in
 * order. 'offsetsCommitted' ({ offsets }) follows each successful commit, 'commitFailed'
 * ({ offsets, error }) each failed automatic one.
 *
 * `close()` revokes everything the same way (so the final positions are committed), heartbeating
 * on meanwhile to keep the membership (answers move no partition), then leaves the group, at
 * the latest after `closeTimeoutMs`.
 * `abort()` simulates a crash: everything stops, nothing is committed, the group is not told
 * (the broker moves the partitions after the session timeout).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { MEMBER_CLIENT_ID_LENGTH_MAX, MEMBER_INSTANCE_ID_LENGTH_MAX } from '../common/broker-limits.js';
import { TIMER_DELAY_MAX_MS } from '../common/clock.js';
import { ThrottledWarning } from '../common/throttled-warning.js';
import { topicNameProblem } from '../common/topic-name.js';
import { integerRangeProblem } from '../common/integer-range.js';
import { defaultClientLogger, type Logger } from '../common/logger.js';
import { FETCH_BYTES_MAX } from '../common/request-limits.js';
import { strata } from '../generated/strata.js';
import { checkBatchFrame, forEachBatch, forEachRecord, type RecordHeader } from '../storage/record-batch.js';
import { describeTopic, listOffsets } from './admin.js';
import { type Connection, type ConnectionSource, longToNumber, methods, numberToLong, resolveConnection } from './connection.js';
import { StrataClientError, closedError, invalidArgument, isBrokenStream, toClientError } from './errors.js';
import { settlesWithin } from '../common/settles-within.js';
import { OffsetCommitStream } from './offset-commit-stream.js';
import { checkPartition, timerDelayMs } from './option-checks.js';
import { limitReadAhead } from './read-ahead.js';
import {
  type AssignorName,
  type GroupCommittedOffset,
  GroupMember,
  type GroupMemberEvents,
  type PartitionsEvent,
  type GroupSubscriptionInput,
  checkAssignor,
  checkGroupId,
  checkSessionTimeout,
  fetchCommittedOffsets,
  normalizeSubscription,
} from './group-member.js';

const v1 = strata.v1;

/**
 * Where a partition with no position goes: its earliest or latest offset, or, with 'none',
 * nowhere until the application seeks (Kafka's auto.offset.reset=none): a `fetchError` with
 * OUT_OF_RANGE says which partition waits.
 */
export type ResetPolicy = 'earliest' | 'latest' | 'none';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface TopicPartitionOffset extends TopicPartition {
  offset: number;
  /**
   * When committed: the creation time of the topic the offset was read from (0 or absent: the
   * topic of the name as it is then). The broker refuses a commit whose topic was created at
   * another time, deleted and created again since, with NOT_FOUND. The consumer sets it on the
   * positions it commits itself.
   */
  topicCreatedAtMs?: number;
}

export interface ConsumerRecord {
  topic: string;
  partition: number;
  offset: number;
  /** ms since the epoch (create time, or log-append time if the batch says so). */
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  /** Empty (shared and frozen) when the record has no headers. */
  headers: readonly RecordHeader[];
}

/** The records of one fetch of one partition, in offset order. */
export interface ConsumerBatch {
  topic: string;
  partition: number;
  records: ConsumerRecord[];
  /** The partition's high watermark when fetched (lag = highWatermark - last offset - 1). */
  highWatermark: number;
}

export interface OffsetResetEvent extends TopicPartition {
  /** The offset that was out of range. */
  offset: number;
  /** Where the reset policy moved the partition. */
  resetTo: number;
  policy: Exclude<ResetPolicy, 'none'>;
  reason: string;
}

export interface FetchErrorEvent extends TopicPartition {
  error: StrataClientError;
}

export interface ConsumerSettings {
  /**
   * Where a partition without a position (nor a committed offset) starts. Default 'latest',
   * which skips what was written to a group's new partition before its first owner looked the
   * end up (as Kafka does, KAFKA-12478); 'earliest' for a group that must read every record.
   */
  resetPolicy?: ResetPolicy;
  /** Most bytes of batches the broker pushes per message (at least one whole batch). Default 1 MiB. */
  maxBytesPerPartition?: number;
  /** Fetched chunks a partition may have waiting before it stops fetching. Default 2. */
  prefetchBatches?: number;
  /** Backoff after a failed fetch: doubling from retryBackoffMs up to retryBackoffMaxMs. */
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /** Start offset of a newly assigned partition; null falls back to the reset policy. */
  initialPosition?: (partition: TopicPartition) => Promise<number | null> | number | null;
  /** Called with the positions of partitions being revoked, before they are released (and before the automatic commit). */
  beforeRevoke?: (positions: TopicPartitionOffset[]) => Promise<void> | void;
  /** The consumer group: committed offsets live under it; with a subscription the consumer is a member. */
  groupId?: string;
  /** Joins `groupId` and consumes what the broker assigns: topic names, or { topics, regex }. */
  subscribe?: GroupSubscriptionInput;
  /** Static membership (e.g. the pod name): a restart within the session timeout gets the same partitions back. */
  instanceId?: string;
  /** Commit positions every autoCommitIntervalMs, before revocations and on close. Default true. */
  autoCommit?: boolean;
  /** Default 5000. */
  autoCommitIntervalMs?: number;
  /**
   * Automatic commits skip positions that have not moved; a consumer that assigned its own
   * partitions sends them all again this long after the last commit that did (default 3600000,
   * an hour). The broker expires the offsets of a group without members that commits nothing
   * for `--offsets-retention-ms` (7 days), which would otherwise take those of such a consumer
   * while it runs with nothing new to read. (A group member's offsets do not expire.)
   */
  autoCommitRefreshMs?: number;
  /** Session timeout to ask the broker for (ms, 100 to 1800000); the broker default when absent. */
  sessionTimeoutMs?: number;
  /**
   * The longest `close()` waits for its revocation (the `beforeRevoke` hook, then the final
   * commit) before it leaves the group without it. Default 30000, Kafka's.
   */
  closeTimeoutMs?: number;
  /** 'uniform' (the broker default: balanced and sticky) or 'range'; the first member's choice counts. */
  assignor?: AssignorName;
  /** Shown by DescribeGroup. Default 'strata-js'. */
  clientId?: string;
  /** A pino logger for what it has to say; default: warnings and errors on stderr (`defaultClientLogger`). */
  logger?: Logger;
}

/** Payload of 'offsetsCommitted'. */
export interface OffsetsCommittedEvent {
  offsets: TopicPartitionOffset[];
}

/** Payload of 'commitFailed' (an automatic commit: interval, revocation or close). */
export interface CommitFailedEvent {
  offsets: TopicPartitionOffset[];
  error: StrataClientError;
}

export type ConsumerOptions = ConnectionSource & ConsumerSettings;

/**
 * The events a Consumer emits: each name with its listener's arguments, so that
 * `consumer.on('offsetReset', (event) => ...)` is typed. The group ones come only with a
 * subscription.
 */
export interface ConsumerEvents extends GroupMemberEvents {
  partitionStarted: [TopicPartitionOffset];
  fetchError: [FetchErrorEvent];
  offsetReset: [OffsetResetEvent];
  offsetsCommitted: [OffsetsCommittedEvent];
  commitFailed: [CommitFailedEvent];
}

/** A fetch answer waiting in the ready queue: batches checked (frames, CRCs), not yet decoded. */
interface FetchedChunk {
  fetcher: PartitionFetcher;
  generation: number;
  batches: Buffer;
  /** The offset the fetch asked for: records below it (in its first batch) are dropped. */
  fromOffset: number;
  highWatermark: number;
}

/** A chunk being delivered: decoded when taken from the ready queue. */
interface ReadyChunk {
  fetcher: PartitionFetcher;
  generation: number;
  records: ConsumerRecord[];
  highWatermark: number;
}

/**
 * A partition's position to commit, named by the topic it was read from: a commit racing the
 * topic's deletion is refused (a group member's left out), never stored for a topic created
 * again under the name.
 */
function positionOf(fetcher: PartitionFetcher, offset: number): TopicPartitionOffset {
  const topicCreatedAtMs = fetcher.topicCreatedAtMs;
  return topicCreatedAtMs === null ? { topic: fetcher.topic, partition: fetcher.partition, offset } : { topic: fetcher.topic, partition: fetcher.partition, offset, topicCreatedAtMs };
}

/** The fetch state of one assigned partition. */
class PartitionFetcher {
  /** Offset of the next record the application gets; null until known. */
  position: number | null = null;
  /** Offset the next fetch asks for. */
  fetchOffset: number | null = null;
  /** Bumped by seek, reset and revoke: work begun under an older generation is dropped. */
  generation = 0;
  /** Chunks of this partition waiting in the ready queue. */
  waitingChunks = 0;
  active = true;
  /** Paused by the application: its loop waits, fetching nothing, until resumed (or stopped). */
  paused = false;
  /** No position and the reset policy 'none': its loop waits, fetching nothing, until a seek. */
  awaitingSeek = false;
  /** Cancels the request or stream under way (seek, reset, revoke, close). */
  abort: AbortController | null = null;
  /** The partition's Subscribe stream while it runs (paused while prefetchBatches chunks wait). */
  stream: ClientReadableStream<strata.v1.SubscribeResponse> | null = null;
  /** The current stream has delivered a chunk (a later failure starts the backoff afresh). */
  delivered = false;
  /**
   * The broker said the topic or partition does not exist (NOT_FOUND): the position belongs to
   * a topic that was deleted, so once the records fetched before are taken it is forgotten, and
   * a topic created again under the name starts where a new partition would.
   */
  topicGone = false;
  /**
   * A group's partition whose topic is gone, its position forgotten: its loop waits, fetching
   * nothing, until the revocation the deletion brings (or a seek). Read now, a topic created
   * again under the name would be read under the deleted one's ownership, whose commits the
   * broker leaves out, and then again from the start once the group assigns it anew.
   */
  awaitingRevocation = false;
  /** The position was set by `seek` and nothing has been read from it since: NOT_FOUND keeps it. */
  sought = false;
  /**
   * The creation time of the topic the position belongs to (DescribeTopic's, looked up before
   * the start offset, or before following a sought position), sent with each Subscribe: the
   * broker answers NOT_FOUND if the topic was deleted and created again meanwhile, even while
   * no stream was open (a backoff, a broker restart), so the position is never applied to the
   * new topic. Null until looked up.
   */
  topicCreatedAtMs: number | null = null;
  loop: Promise<void> = Promise.resolve();
  private waker: (() => void) | null = null;

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}

  /** Waits out a backoff: until `timeoutMs` passes or it is woken (pause, seek, reset, revoke, close). */
  sleep(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wake(), timeoutMs);
      this.waker = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Waits until it is woken (a drained partition, resume, seek, reset, revoke, close). */
  untilWoken(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waker = resolve;
    });
  }

  wake(): void {
    const waker = this.waker;
    this.waker = null;
    waker?.();
  }
}

/**
 * The record iterator goes back to `takeChunk` after this many records of a chunk (up to ~9,000
 * at 1 MiB), so that a group member that froze in the middle of one (a long GC pause, a blocked
 * event loop) delivers at most this many more before the check that holds them back: one clock
 * reading per run, nothing per record.
 */
const RECORDS_PER_DELIVERY_CHECK = 64;

/** At most one log line a second for failed fetches, whatever the number of partitions. */
const FETCH_FAILURE_LINES = Object.freeze({ intervalMs: 1_000, countField: 'othersSinceLastLine' });

/** Set while the application's beforeRevoke hook runs (see close()). */
const insideRevokeHook = new AsyncLocalStorage<boolean>();

/** `promise`, or CANCELLED as soon as `signal` aborts (the promise's own outcome is then ignored). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = (): void => reject(new StrataClientError('CANCELLED', 'the wait was cancelled'));
    if (signal.aborted) cancel();
    signal.addEventListener('abort', cancel, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', cancel));
  });
}

function partitionKey(topic: string, partition: number): string {
  return `${partition}:${topic}`;
}

export class Consumer extends EventEmitter<ConsumerEvents> {
  private readonly connection: Connection;
  private readonly ownsConnection: boolean;
  /** Where commits go, the group member's included: one stream, opened by the first commit. */
  private readonly committer: OffsetCommitStream;
  private readonly logger: Logger;
  readonly resetPolicy: ResetPolicy;
  private readonly maxBytesPerPartition: number;
  private readonly prefetchBatches: number;
  private readonly retryBackoffMs: number;
  private readonly retryBackoffMaxMs: number;
  private readonly initialPositionOption: ConsumerSettings['initialPosition'];
  private readonly beforeRevokeOption: ConsumerSettings['beforeRevoke'];

  private readonly fetchers = new Map<string, PartitionFetcher>();
  private readonly ready: FetchedChunk[] = [];
  /**
   * Failed fetches, logged at most a line a second for the whole consumer with the count of the
   * others since: a broker away fails every partition at each retry (500 partitions logged
   * 3,000 lines in 6 s). Every failure is still a `fetchError` event.
   */
  private readonly fetchFailureLog: ThrottledWarning;
  /** Topic creation times being looked up (topicCreatedAt), shared by the partitions that ask meanwhile. */
  private readonly topicLookups = new Map<string, Promise<number>>();
  /** A chunk the record iterator has started: records before `index` were yielded. */
  private current: { chunk: ReadyChunk; index: number } | null = null;
  private readonly dataWaiters = new Set<() => void>();
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Partitions whose reset waits for their fetched records to be taken (`untilDrained`). */
  private readonly drainWaiters = new Set<PartitionFetcher>();
  /** Settles when `abort()` is called: a `close()` under way stops waiting then. */
  private readonly aborted: Promise<void>;
  private abortClose: () => void = () => undefined;
  /** Set once close() or abort() has finished; commit() works until then (e.g. from beforeRevoke). */
  private finished = false;

  /** The group, when offsets are committed; null for a consumer that never commits. */
  readonly groupId: string | null;
  private readonly autoCommit: boolean;
  private readonly autoCommitIntervalMs: number;
  private readonly closeTimeoutMs: number;
  private readonly autoCommitRefreshMs: number;
  /** When (performance.now()) an automatic commit last sent every position, moved or not. */
  private lastFullCommitMs = performance.now();
  private readonly memberSettings: { instanceId: string | null; sessionTimeoutMs?: number; assignor?: AssignorName; clientId: string };
  private member: GroupMember | null = null;
  private autoCommitTimer: NodeJS.Timeout | null = null;
  private autoCommitRunning = false;
  /** Commits run one after another, so a later one never lands before an earlier one. */
  private commitQueue: Promise<void> = Promise.resolve();
  /** Revocations `assign()` started, under way: close() lets them commit before its own. */
  private readonly assignRevocations = new Set<Promise<void>>();
  /** The last offset this consumer committed per partition (automatic commits skip unchanged ones). */
  private readonly lastCommitted = new Map<string, number>();
  /** Partitions whose revocation (its beforeRevoke hook) is under way, with the membership it began in. */
  private readonly revokingIn = new Map<string, number>();
  /** The record or batch the application holds: its partition commits `from`, not the position. */
  private inHand: { fetcher: PartitionFetcher; from: number } | null = null;

  constructor(options: ConsumerOptions) {
    super();
    this.aborted = new Promise<void>((resolve) => (this.abortClose = resolve));
    const resetPolicy = options.resetPolicy ?? 'latest';
    if (resetPolicy !== 'earliest' && resetPolicy !== 'latest' && resetPolicy !== 'none') throw invalidArgument(`resetPolicy must be 'earliest', 'latest' or 'none', got ${JSON.stringify(resetPolicy)}`);
    this.resetPolicy = resetPolicy;
    this.maxBytesPerPartition = options.maxBytesPerPartition ?? 1024 * 1024;
    // Over the broker's limit every subscription would be refused, and retried for ever.
    const maxBytesProblem = integerRangeProblem('maxBytesPerPartition', this.maxBytesPerPartition, 1, FETCH_BYTES_MAX);
    if (maxBytesProblem !== null) throw invalidArgument(maxBytesProblem);
    this.prefetchBatches = positiveInteger(options.prefetchBatches ?? 2, 'prefetchBatches');
    this.retryBackoffMs = timerDelayMs(options.retryBackoffMs ?? 100, 'retryBackoffMs');
    this.retryBackoffMaxMs = Math.max(this.retryBackoffMs, timerDelayMs(options.retryBackoffMaxMs ?? 2_000, 'retryBackoffMaxMs'));
    this.initialPositionOption = options.initialPosition;
    this.beforeRevokeOption = options.beforeRevoke;
    this.logger = (options.logger ?? defaultClientLogger()).child({ subsystem: 'consumer' });
    this.fetchFailureLog = new ThrottledWarning(this.logger, 'fetching failed; subscribing again after a backoff', FETCH_FAILURE_LINES);
    this.groupId = options.groupId === undefined ? null : checkGroupId(options.groupId);
    this.autoCommit = options.autoCommit ?? true;
    this.autoCommitIntervalMs = timerDelayMs(options.autoCommitIntervalMs ?? 5_000, 'autoCommitIntervalMs', 1);
    this.autoCommitRefreshMs = positiveInteger(options.autoCommitRefreshMs ?? 60 * 60 * 1000, 'autoCommitRefreshMs');
    this.closeTimeoutMs = timerDelayMs(options.closeTimeoutMs ?? 30_000, 'closeTimeoutMs');
    if (options.instanceId !== undefined && (typeof options.instanceId !== 'string' || options.instanceId.length === 0)) throw invalidArgument('instanceId must be a non-empty string');
    if (options.instanceId !== undefined && options.instanceId.length > MEMBER_INSTANCE_ID_LENGTH_MAX) {
      throw invalidArgument(`instanceId is ${options.instanceId.length} characters long; the limit is ${MEMBER_INSTANCE_ID_LENGTH_MAX}`);
    }
    if (options.clientId !== undefined && options.clientId.length > MEMBER_CLIENT_ID_LENGTH_MAX) {
      throw invalidArgument(`clientId is ${options.clientId.length} characters long; the limit is ${MEMBER_CLIENT_ID_LENGTH_MAX}`);
    }
    this.memberSettings = {
      instanceId: options.instanceId ?? null,
      ...(options.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: checkSessionTimeout(options.sessionTimeoutMs) } : {}),
      ...(options.assignor !== undefined ? { assignor: checkAssignor(options.assignor) } : {}),
      clientId: options.clientId ?? 'strata-js',
    };
    const subscription = options.subscribe === undefined ? null : normalizeSubscription(options.subscribe);
    if (subscription !== null && this.groupId === null) throw invalidArgument('subscribe needs a groupId');
    ({ connection: this.connection, owned: this.ownsConnection } = resolveConnection(options));
    this.committer = new OffsetCommitStream(this.connection);
    if (this.groupId !== null && this.autoCommit) {
      this.autoCommitTimer = setInterval(() => void this.commitAutomatically(), this.autoCommitIntervalMs);
      this.autoCommitTimer.unref();
    }
    if (subscription !== null) this.subscribe(subscription);
  }

  // -------------------------------------------------------------------------------------------
  // Group membership.

  /**
   * Joins the consumer's group (`groupId`) with this subscription: topic names, or
   * `{ topics, regex }` (a regex also picks up topics created later). Calling it again changes
   * the subscription. The broker assigns the partitions; 'partitionsAssigned',
   * 'partitionsRevoked' and 'partitionsLost' tell the application what moved.
   */
  subscribe(subscription: GroupSubscriptionInput): void {
    this.checkOpen();
    if (this.groupId === null) throw invalidArgument('subscribe needs a groupId');
    const normalized = normalizeSubscription(subscription);
    if (this.member !== null) {
      this.member.setSubscription(normalized);
      return;
    }
    if (this.fetchers.size > 0) throw new StrataClientError('FAILED_PRECONDITION', 'this consumer has a manual assignment; a consumer either assigns partitions or subscribes');
    this.member = new GroupMember(this.connection, this, {
      groupId: this.groupId,
      subscription: normalized,
      ...this.memberSettings,
      retryBackoffMs: this.retryBackoffMs,
      retryBackoffMaxMs: this.retryBackoffMaxMs,
      logger: this.logger,
      committer: this.committer,
    });
    this.member.start();
  }

  /** This consumer's member id, as the broker answered its join; null when it is not (yet) a group member. */
  get memberId(): string | null {
    return this.member === null || this.member.memberId === '' ? null : this.member.memberId;
  }

  /** The member epoch; null when the consumer is not (yet) a group member. */
  get memberEpoch(): number | null {
    return this.memberId === null ? null : this.member!.memberEpoch;
  }

  /**
   * Commits offsets to the group: by default the current positions of every assigned partition
   * (everything delivered so far counts as processed), or the `offsets` given (each the next
   * offset to consume). Resolves once durable on the broker.
   */
  async commit(offsets?: readonly TopicPartitionOffset[]): Promise<void> {
    if (this.finished) throw closedError('the consumer');
    this.requireGroup('commit');
    if (offsets === undefined) {
      // The positions of active fetchers: of this membership, never of a revocation's.
      this.inHand = null;
      await this.enqueueCommit(this.committablePositions());
      return;
    }
    const list = offsets.map(({ topic, partition, offset, topicCreatedAtMs }): TopicPartitionOffset => {
      const entry = { topic: checkTopic(topic), partition: checkPartition(partition), offset: nonNegativeInteger(offset, 'offset') };
      // Kept when given (a beforeRevoke hook commits the positions it was handed): the broker
      // then refuses positions of a topic deleted and created again since.
      return topicCreatedAtMs === undefined ? entry : { ...entry, topicCreatedAtMs: nonNegativeInteger(topicCreatedAtMs, 'topicCreatedAtMs') };
    });
    await this.enqueueCommit(list, this.revocationMembership(list));
  }

  /**
   * The membership a revocation under way began in, if `offsets` name one of its partitions (a
   * beforeRevoke hook committing the positions it was given): if that membership is lost
   * meanwhile, they are refused. Undefined otherwise.
   */
  private revocationMembership(offsets: readonly TopicPartitionOffset[]): number | undefined {
    if (this.revokingIn.size === 0) return undefined;
    for (const { topic, partition } of offsets) {
      const membership = this.revokingIn.get(partitionKey(topic, partition));
      if (membership !== undefined) return membership;
    }
    return undefined;
  }

  /** The group's committed offsets of `partitions` (default: the assigned ones); partitions without one are left out. */
  async committed(partitions?: readonly TopicPartition[]): Promise<GroupCommittedOffset[]> {
    this.checkOpen();
    const groupId = this.requireGroup('committed');
    const wanted = partitions ?? this.assignment();
    if (wanted.length === 0) return [];
    const keys = new Set(wanted.map(({ topic, partition }) => partitionKey(topic, partition)));
    const offsets = await fetchCommittedOffsets(this.connection, groupId, [...new Set(wanted.map(({ topic }) => topic))]);
    return offsets.filter((entry) => keys.has(partitionKey(entry.topic, entry.partition)));
  }

  private requireGroup(what: string): string {
    if (this.groupId === null) throw invalidArgument(`${what} needs a groupId`);
    return this.groupId;
  }

  /** Positions to commit: the in-hand record or batch of a partition is not processed yet. */
  private committablePositions(): TopicPartitionOffset[] {
    const positions: TopicPartitionOffset[] = [];
    for (const fetcher of this.fetchers.values()) {
      const offset = this.committablePosition(fetcher);
      if (!fetcher.active || offset === null) continue;
      positions.push(positionOf(fetcher, offset));
    }
    return positions;
  }

  private committablePosition(fetcher: PartitionFetcher): number | null {
    // Of a deleted topic: never committed, where a topic created again under the name would read it.
    if (fetcher.topicGone) return null;
    return this.inHand?.fetcher === fetcher ? this.inHand.from : fetcher.position;
  }

  private enqueueCommit(offsets: TopicPartitionOffset[], membership = this.member?.membership ?? 0): Promise<void> {
    // The membership the positions were taken in: a commit still queued when it is lost must
    // not be sent under the next one, whose partitions others may have read further meanwhile.
    const run = this.commitQueue.then(() => this.commitNow(offsets, membership));
    this.commitQueue = run.catch(() => undefined);
    return run;
  }

  private async commitNow(offsets: TopicPartitionOffset[], membership: number): Promise<void> {
    if (offsets.length === 0) return;
    if (this.member !== null) await this.member.commit(offsets, membership);
    else await this.committer.commit(this.groupId!, '', 0, offsets);
    for (const { topic, partition, offset } of offsets) this.lastCommitted.set(partitionKey(topic, partition), offset);
    this.notify('offsetsCommitted', { offsets } satisfies OffsetsCommittedEvent);
  }

  /**
   * An automatic commit (interval, revocation, close): failures are logged and emitted, not
   * thrown. Returns whether it succeeded.
   */
  private async commitQuietly(offsets: TopicPartitionOffset[], reason: string, membership?: number): Promise<boolean> {
    try {
      await this.enqueueCommit(offsets, membership);
      return true;
    } catch (error) {
      const failure = toClientError(error);
      this.logger.warn({ code: failure.code, reason: failure.message, offsets, trigger: reason }, 'offset commit failed');
      this.notify('commitFailed', { offsets, error: failure } satisfies CommitFailedEvent);
      return false;
    }
  }

  private async commitAutomatically(): Promise<void> {
    if (this.autoCommitRunning || this.closed) return;
    const startedMs = performance.now();
    const refresh = this.member === null && startedMs - this.lastFullCommitMs >= this.autoCommitRefreshMs;
    const positions = this.committablePositions();
    const offsets = refresh ? positions : positions.filter(({ topic, partition, offset }) => this.lastCommitted.get(partitionKey(topic, partition)) !== offset);
    if (offsets.length === 0) return;
    this.autoCommitRunning = true;
    try {
      if ((await this.commitQuietly(offsets, refresh ? 'refresh' : 'interval')) && refresh) this.lastFullCommitMs = startedMs;
    } finally {
      this.autoCommitRunning = false;
    }
  }

  private stopAutoCommit(): void {
    if (this.autoCommitTimer !== null) clearInterval(this.autoCommitTimer);
    this.autoCommitTimer = null;
  }

  // -------------------------------------------------------------------------------------------
  // Assignment and positions.

  /**
   * Sets the assignment to exactly `partitions` (manual assignment). New partitions start
   * fetching at once; the returned promise resolves when removed ones are released.
   */
  assign(partitions: readonly TopicPartition[]): Promise<void> {
    this.checkOpen();
    if (this.member !== null) throw new StrataClientError('FAILED_PRECONDITION', 'this consumer subscribed to a group; a consumer either subscribes or assigns partitions');
    if (!Array.isArray(partitions) || partitions.some((tp: unknown) => typeof tp !== 'object' || tp === null)) {
      throw invalidArgument('assign takes an array of { topic, partition }');
    }
    const wanted = new Map(partitions.map((tp) => [partitionKey(checkTopic(tp.topic), checkPartition(tp.partition)), tp]));
    const removed = [...this.fetchers.values()].filter((fetcher) => !wanted.has(partitionKey(fetcher.topic, fetcher.partition)));
    this.addAssignment([...wanted.values()]);
    const revocation = this.revokeAssignment(removed);
    this.assignRevocations.add(revocation);
    const settled = (): void => void this.assignRevocations.delete(revocation);
    revocation.then(settled, (error: unknown) => {
      settled();
      // Logged as on the other paths: a caller need not await assign(), whose new partitions start at once.
      this.logger.warn({ err: error }, 'beforeRevoke failed while assign() released partitions');
    });
    return revocation;
  }

  /** Adds partitions to the assignment (for a group component); assigned ones are left alone. */
  addAssignment(partitions: readonly TopicPartition[]): void {
    this.checkOpen();
    for (const { topic, partition } of partitions) {
      const key = partitionKey(checkTopic(topic), checkPartition(partition));
      // A fetcher being revoked (inactive, its release under way) is replaced, not kept: the
      // revocation removes only its own fetcher once it is done.
      if (this.fetchers.get(key)?.active === true) continue;
      const fetcher = new PartitionFetcher(topic, partition);
      this.fetchers.set(key, fetcher);
      fetcher.loop = this.runFetcher(fetcher);
    }
  }

  /**
   * Removes partitions from the assignment (for a group component): stops their fetchers,
   * drops what was prefetched, calls `beforeRevoke` with their positions (to commit them), then
   * releases them. Unassigned partitions are ignored. `lost` (the member no longer owns them:
   * expired or fenced) skips `beforeRevoke`: nothing is committed.
   */
  async revokeAssignment(partitions: readonly TopicPartition[], options: { lost?: boolean } = {}): Promise<void> {
    const revoked: PartitionFetcher[] = [];
    for (const { topic, partition } of partitions) {
      const fetcher = this.fetchers.get(partitionKey(topic, partition));
      if (fetcher === undefined || !fetcher.active) continue;
      this.stopFetcher(fetcher);
      revoked.push(fetcher);
    }
    if (revoked.length === 0) return;
    const positions: TopicPartitionOffset[] = [];
    for (const fetcher of revoked) {
      const offset = this.committablePosition(fetcher);
      if (offset !== null) positions.push(positionOf(fetcher, offset));
    }
    const membership = this.member?.membership ?? 0;
    // A commit the hook makes of these partitions belongs to this membership, even if it
    // returns after the member lost it (see `commit`).
    if (options.lost !== true) for (const fetcher of revoked) this.revokingIn.set(partitionKey(fetcher.topic, fetcher.partition), membership);
    try {
      if (options.lost !== true) await this.beforeRevoke(positions, membership);
    } finally {
      for (const fetcher of revoked) {
        const key = partitionKey(fetcher.topic, fetcher.partition);
        if (this.revokingIn.get(key) === membership) this.revokingIn.delete(key);
        if (this.fetchers.get(key) === fetcher) {
          this.fetchers.delete(key);
          this.lastCommitted.delete(key);
        }
        if (this.inHand?.fetcher === fetcher) this.inHand = null;
      }
      await Promise.all(revoked.map((fetcher) => fetcher.loop));
    }
  }

  assignment(): TopicPartition[] {
    return [...this.fetchers.values()].filter((fetcher) => fetcher.active).map(({ topic, partition }) => ({ topic, partition }));
  }

  /**
   * Moves a partition's position to `offset`: the next record it yields is the one at `offset`
   * (or the reset policy applies if the broker says it is out of range).
   */
  seek(topic: string, partition: number, offset: number): void {
    this.checkOpen();
    if (!Number.isSafeInteger(offset) || offset < 0) throw invalidArgument(`offset must be a non-negative integer, got ${offset}`);
    const fetcher = this.requireFetcher(topic, partition);
    this.resetFetcher(fetcher, offset);
    fetcher.sought = true;
    // The offset is in the topic of that name as it is now, looked up before it is followed.
    fetcher.topicCreatedAtMs = null;
  }

  /**
   * Moves a partition's position to its first record stamped at or after `timestampMs` (Kafka's
   * offsetsForTimes, then seek), or to its end when no record is that recent; resolves with that
   * offset. The offset is looked up with ListOffsets; a partition revoked, or a consumer closed,
   * meanwhile is not moved (FAILED_PRECONDITION). Otherwise the last seek to complete wins.
   */
  async seekToTime(topic: string, partition: number, timestampMs: number): Promise<number> {
    this.checkOpen();
    if (!Number.isSafeInteger(timestampMs) || timestampMs < 0) throw invalidArgument(`timestampMs must be a non-negative integer (ms since the epoch), got ${timestampMs}`);
    const fetcher = this.requireFetcher(topic, partition);
    const { offset } = await listOffsets(this.connection, topic, partition, { timestamp: timestampMs });
    if (this.closed || !fetcher.active || this.fetchers.get(partitionKey(topic, partition)) !== fetcher) {
      throw new StrataClientError('FAILED_PRECONDITION', `${topic}-${partition} was revoked, or the consumer closed, while its offset for the time was looked up; it was not moved`);
    }
    this.seek(topic, partition, offset);
    return offset;
  }

  /** The offset of the next record this partition yields; null while not yet known. */
  position(topic: string, partition: number): number | null {
    return this.requireFetcher(topic, partition).position;
  }

  /**
   * Stops fetching and handing out records of `partitions` until `resume` (Kafka's `pause`): a
   * record iteration stops before their next record, and what was fetched of them but not handed
   * out is dropped, to be fetched again from the position. A group member keeps them (its
   * heartbeats go on); revoked, they go with their pause. Pausing a paused partition changes
   * nothing; one not assigned is refused with FAILED_PRECONDITION, as `seek` is, and then none is paused.
   */
  pause(partitions: readonly TopicPartition[]): void {
    this.checkOpen();
    for (const fetcher of this.assignedFetchers(partitions, 'pause')) {
      if (fetcher.paused) continue;
      fetcher.paused = true;
      // Fetched again from the first record not handed out, once resumed.
      fetcher.fetchOffset = fetcher.position;
      this.interruptFetcher(fetcher);
    }
  }

  /** Fetches `partitions` again from their positions (a no-op for one not paused); refuses one not assigned, as `pause` does. */
  resume(partitions: readonly TopicPartition[]): void {
    this.checkOpen();
    for (const fetcher of this.assignedFetchers(partitions, 'resume')) {
      if (!fetcher.paused) continue;
      fetcher.paused = false;
      fetcher.wake();
    }
  }

  /** The paused partitions, in the order of `assignment()`. */
  paused(): TopicPartition[] {
    return [...this.fetchers.values()].filter((fetcher) => fetcher.active && fetcher.paused).map(({ topic, partition }) => ({ topic, partition }));
  }

  /** The fetchers of `partitions`, checked all before any is changed: FAILED_PRECONDITION (as `seek` says) names the first not assigned. */
  private assignedFetchers(partitions: readonly TopicPartition[], what: string): PartitionFetcher[] {
    if (!Array.isArray(partitions) || partitions.some((tp: unknown) => typeof tp !== 'object' || tp === null)) {
      throw invalidArgument(`${what} takes an array of { topic, partition }`);
    }
    return partitions.map(({ topic, partition }) => {
      const fetcher = this.fetchers.get(partitionKey(topic, partition));
      if (fetcher === undefined || !fetcher.active) throw new StrataClientError('FAILED_PRECONDITION', `cannot ${what} ${topic}-${partition}: it is not assigned to this consumer`);
      return fetcher;
    });
  }

  /**
   * Where a newly assigned partition starts; null applies the reset policy. A consumer-group
   * component overrides this (or passes `initialPosition`) to start from committed offsets.
   */
  protected async initialPosition(partition: TopicPartition): Promise<number | null> {
    const chosen: unknown = (await this.initialPositionOption?.(partition)) ?? null;
    if (chosen !== null) {
      if (typeof chosen !== 'number' || !Number.isSafeInteger(chosen) || chosen < 0) {
        const returned = typeof chosen === 'string' ? JSON.stringify(chosen) : String(chosen);
        throw new StrataClientError('INVALID_ARGUMENT', `initialPosition returned ${returned} for ${partition.topic}-${partition.partition}: it must return an offset (a non-negative integer), or null for the reset policy`);
      }
      return chosen;
    }
    if (this.member !== null) return this.member.startOffset(partition);
    if (this.groupId !== null) {
      const committed = await fetchCommittedOffsets(this.connection, this.groupId, [partition.topic]);
      return committed.find((entry) => entry.partition === partition.partition)?.offset ?? null;
    }
    return null;
  }

  /**
   * Called with the positions of revoked partitions before they are released: the application's
   * hook first (it may finish work on them), then, with auto-commit, the commit, in `membership`
   * (the group membership the positions were taken in).
   */
  protected async beforeRevoke(positions: TopicPartitionOffset[], membership: number): Promise<void> {
    try {
      // Marked, so that a close() the hook calls does not wait for the hook's own revocation.
      await insideRevokeHook.run(true, async () => this.beforeRevokeOption?.(positions));
    } finally {
      // Committed even when the hook throws (a bug in it): the positions are of records
      // delivered, which count as processed, and the next owner would otherwise read them again.
      // In the membership the positions were taken in: a hook that outlasted the revocation's
      // budget (see GroupMember) returns after the member joined again, and they are not its.
      if (this.groupId !== null && this.autoCommit && positions.length > 0) await this.commitQuietly(positions, 'revocation', membership);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Delivery.

  /**
   * The next fetched records of one partition (the rest of a chunk the record iterator began),
   * advancing that partition's position past them. Resolves null when `timeoutMs` passes first
   * or the consumer is closed.
   */
  async nextBatch(options: { timeoutMs?: number } = {}): Promise<ConsumerBatch | null> {
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0)) {
      throw invalidArgument(`timeoutMs must be a number of milliseconds, 0 or more (Infinity: no timeout), got ${String(timeoutMs)}`);
    }
    const taken = await this.takeChunk(timeoutMs);
    if (taken === null) return null;
    this.current = null;
    const records = taken.index === 0 ? taken.chunk.records : taken.chunk.records.slice(taken.index);
    const { fetcher } = taken.chunk;
    this.inHand = { fetcher, from: fetcher.position ?? records[0]!.offset };
    fetcher.position = records[records.length - 1]!.offset + 1;
    return { topic: fetcher.topic, partition: fetcher.partition, records, highWatermark: taken.chunk.highWatermark };
  }

  /** Batches until the consumer is closed; leaving the loop marks the last one processed. */
  async *batches(): AsyncGenerator<ConsumerBatch, void, undefined> {
    try {
      for (;;) {
        const batch = await this.nextBatch();
        if (batch === null) return;
        yield batch;
      }
    } finally {
      this.inHand = null; // leaving the loop: the application is done with the last batch
    }
  }

  /**
   * Records until the consumer is closed. Each yield advances the record's partition position
   * past it; leaving the loop early keeps the rest for the next iteration or `nextBatch()`. A
   * chunk is yielded `RECORDS_PER_DELIVERY_CHECK` records at a time, each run taken through
   * `takeChunk`, which checks that a group member may still deliver (`holdsDelivery`).
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<ConsumerRecord, void, undefined> {
    try {
      for (;;) {
        const taken = await this.takeChunk(undefined);
        if (taken === null) return;
        const { chunk } = taken;
        this.current = taken;
        // A group member's chunk in runs, each checked (takeChunk); anyone else's whole.
        const end = this.member === null ? chunk.records.length : Math.min(chunk.records.length, taken.index + RECORDS_PER_DELIVERY_CHECK);
        while (!this.closed && this.current === taken && taken.index < end && chunk.generation === chunk.fetcher.generation) {
          const record = chunk.records[taken.index++]!;
          this.inHand = { fetcher: chunk.fetcher, from: record.offset };
          chunk.fetcher.position = record.offset + 1;
          if (taken.index === chunk.records.length) this.current = null;
          yield record;
          this.inHand = null; // the application asked for the next one: this one is processed
        }
        // Stopped short (closed, sought, revoked): the chunk is done with. At `end` it goes on.
        if (this.current === taken && taken.index < end) this.current = null;
      }
    } finally {
      this.inHand = null; // leaving the loop: the application is done with the last record
    }
  }

  /** The chunk to deliver next (the started one first), skipping stale ones; null when closed or timed out. */
  private async takeChunk(timeoutMs: number | undefined): Promise<{ chunk: ReadyChunk; index: number } | null> {
    // On the monotonic clock: a step of the system time neither cuts the wait short nor stretches it.
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs;
    this.inHand = null; // asking for more: what was delivered before is processed
    // A reset waiting for its partition's records to be taken may go (untilDrained).
    for (const fetcher of this.drainWaiters) {
      if (!this.isDrained(fetcher)) continue;
      this.drainWaiters.delete(fetcher);
      fetcher.wake();
    }
    for (;;) {
      if (this.closed) return null;
      if (!this.holdsDelivery()) {
        const taken = this.nextChunk();
        if (taken !== null) return taken;
      }
      const remainingMs = deadline - performance.now();
      if (remainingMs <= 0) return null;
      // New data, a close, or the group member letting held chunks go (`resumeDelivery`).
      await this.waitForData(remainingMs);
    }
  }

  /** The started chunk, else the next live one of the ready queue (decoded); null when none waits. */
  private nextChunk(): { chunk: ReadyChunk; index: number } | null {
    const current = this.current;
    if (current !== null) {
      if (current.chunk.generation === current.chunk.fetcher.generation && current.index < current.chunk.records.length) return current;
      this.current = null;
    }
    for (let fetched = this.ready.shift(); fetched !== undefined; fetched = this.ready.shift()) {
      const { fetcher, generation } = fetched;
      fetcher.waitingChunks--;
      if (fetcher.waitingChunks < this.prefetchBatches) fetcher.stream?.resume();
      if (generation !== fetcher.generation || !fetcher.active) continue;
      const records = this.decodeChunk(fetched);
      if (records.length === 0) continue;
      return { chunk: { fetcher, generation, records, highWatermark: fetched.highWatermark }, index: 0 };
    }
    return null;
  }

  /**
   * Whether the chunks waiting must be held back, because the group member may have lost its
   * partitions without knowing yet (GroupMember.mayDeliver: a broken connection not yet
   * followed by an answered heartbeat, or an overdue session). The member then heartbeats at
   * once, and says when they may go; a lost membership drops them. One clock reading per chunk
   * (or run of a chunk) handed out, none per record.
   */
  private holdsDelivery(): boolean {
    if (this.member === null || (this.current === null && this.ready.length === 0)) return false;
    if (this.member.mayDeliver()) return false;
    this.member.holdDelivery();
    return true;
  }

  /**
   * The group member's answer lets the chunks it held back go (see `holdsDelivery`).
   * @internal
   */
  resumeDelivery(): void {
    this.wakeReaders();
  }

  /**
   * Decodes a chunk as it is delivered, so the fetcher's next request is already under way (as
   * Kafka's consumer parses records in poll()). Batches passed their CRC checks when fetched; if
   * records still do not decode, the partition goes back to the chunk's first offset (nothing is
   * skipped) and the caller gets DATA_LOSS, every time it asks, until it seeks past them.
   */
  private decodeChunk(fetched: FetchedChunk): ConsumerRecord[] {
    try {
      return decodeFrom(fetched.batches, fetched.fromOffset, fetched.fetcher);
    } catch (error) {
      this.resetFetcher(fetched.fetcher, fetched.fromOffset);
      throw error;
    }
  }

  private waitForData(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      // A wait longer than a timer takes is one of the longest a timer takes, then another.
      const timer = Number.isFinite(timeoutMs) ? setTimeout(done, Math.min(timeoutMs, TIMER_DELAY_MAX_MS)) : null;
      const waiters = this.dataWaiters;
      function done(): void {
        if (timer !== null) clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }

  /**
   * Emits an event to the application's listeners. One that throws is logged, not passed on:
   * thrown inside a fetch loop it would end that partition's fetching for good (and reject a
   * promise nobody awaits), and thrown after a commit it would report the commit as failed.
   * For the consumer's own parts (its group member emits through it too), not for applications.
   * @internal
   */
  notify<E extends keyof ConsumerEvents>(event: E, ...args: ConsumerEvents[E]): void {
    try {
      (this.emit as (event: E, ...args: ConsumerEvents[E]) => boolean)(event, ...args);
    } catch (error) {
      this.logger.error({ err: error, event }, 'an event listener threw');
    }
  }

  private wakeReaders(): void {
    for (const waiter of [...this.dataWaiters]) waiter();
  }

  // -------------------------------------------------------------------------------------------
  // Fetching.

  private async runFetcher(fetcher: PartitionFetcher): Promise<void> {
    let failures = 0;
    while (fetcher.active && !this.closed) {
      // pause() cancelled whatever the loop was doing; resume, seek, revoke and close wake it.
      if (fetcher.paused || fetcher.awaitingSeek || fetcher.awaitingRevocation) {
        await fetcher.untilWoken();
        continue;
      }
      const generation = fetcher.generation;
      try {
        if (fetcher.topicGone) {
          await this.untilDrained(fetcher, generation);
          if (generation !== fetcher.generation) continue;
          this.forgetPosition(fetcher);
          if (this.member !== null) {
            fetcher.awaitingRevocation = true;
            this.member.partitionGone();
          }
          continue;
        }
        if (fetcher.fetchOffset === null) {
          await this.resolveStart(fetcher);
          continue;
        }
        await this.follow(fetcher);
        failures = 0;
      } catch (error) {
        if (!fetcher.active || this.closed || generation !== fetcher.generation) continue;
        if (fetcher.delivered) failures = 0;
        const failure = toClientError(error);
        // The connection broke, or the broker is stopping (its own UNAVAILABLE, the only sign a
        // quick restart may give; a stream cut by one forced to stop ends INTERNAL or CANCELLED):
        // it may come back without this member, having given the partitions to the first member
        // to join. Also a failed read's UNAVAILABLE, which costs a heartbeat.
        if (failure.code === 'UNAVAILABLE' || isBrokenStream(failure)) this.member?.connectionLost();
        // A position the application sought, on a partition not (yet) there, is its own choice:
        // it is followed in the topic of the name as it will be then.
        if (failure.code === 'NOT_FOUND' && !fetcher.sought) fetcher.topicGone = true;
        if (failure.code === 'NOT_FOUND' && fetcher.sought) fetcher.topicCreatedAtMs = null;
        if (failure.code === 'OUT_OF_RANGE') {
          try {
            // The records fetched before the failure are valid: delivered first, as Kafka's
            // consumer fetches only once they are, and the reset starts after them.
            await this.untilDrained(fetcher, generation);
            if (!fetcher.active || this.closed || generation !== fetcher.generation) continue;
            await this.applyResetPolicy(fetcher, failure);
            continue;
          } catch (resetError) {
            if (!fetcher.active || this.closed || generation !== fetcher.generation) continue;
            error = resetError;
          }
        }
        failures++;
        const reported = toClientError(error);
        this.fetchFailureLog.note({ topic: fetcher.topic, partition: fetcher.partition, code: reported.code, reason: reported.message, failures });
        this.notify('fetchError', { topic: fetcher.topic, partition: fetcher.partition, error: reported } satisfies FetchErrorEvent);
        // A listener may have sought, revoked or closed: that starts over, or stops, without the backoff.
        if (!fetcher.active || this.closed || generation !== fetcher.generation) continue;
        await fetcher.sleep(Math.min(this.retryBackoffMaxMs, this.retryBackoffMs * 2 ** Math.min(failures - 1, 20)));
      }
    }
  }

  private async resolveStart(fetcher: PartitionFetcher): Promise<void> {
    const generation = fetcher.generation;
    const tp = { topic: fetcher.topic, partition: fetcher.partition };
    // Cancelled by a revocation, seek or close (a lookup shared with other partitions, or the
    // application's hook, runs on; its answer is dropped): those do not wait for it.
    fetcher.abort = new AbortController();
    // The topic first, then the offset in it: a topic created again in between is refused at
    // the Subscribe rather than read from the other's offset.
    const createdAtMs = await untilAborted(this.topicCreatedAt(fetcher.topic), fetcher.abort.signal);
    if (generation !== fetcher.generation) return;
    fetcher.topicCreatedAtMs = createdAtMs;
    let offset = await untilAborted(this.initialPosition(tp), fetcher.abort.signal);
    fetcher.abort = null;
    if (generation !== fetcher.generation) return;
    if (offset === null) {
      if (this.resetPolicy === 'none') {
        this.awaitSeek(fetcher, `${fetcher.topic}-${fetcher.partition} has no position to start from (no committed offset) and resetPolicy is 'none'`);
        return;
      }
      fetcher.abort = new AbortController();
      offset = (await listOffsets(this.connection, fetcher.topic, fetcher.partition, this.resetPolicy, fetcher.abort.signal)).offset;
      fetcher.abort = null;
      if (generation !== fetcher.generation) return;
    }
    fetcher.position = offset;
    fetcher.fetchOffset = offset;
    this.notify('partitionStarted', { ...tp, offset } satisfies TopicPartitionOffset);
  }

  /**
   * Follows the partition from its fetch offset with one Subscribe stream until the stream ends:
   * an error or the broker ending it (thrown: the caller backs off and subscribes again), or a
   * seek, reset or revocation, which abort it (resolves).
   */
  private async follow(fetcher: PartitionFetcher): Promise<void> {
    const generation = fetcher.generation;
    if (fetcher.topicCreatedAtMs === null) {
      // A sought position: in the topic as it is now.
      fetcher.abort = new AbortController();
      const createdAtMs = await untilAborted(this.topicCreatedAt(fetcher.topic), fetcher.abort.signal);
      fetcher.abort = null;
      if (generation !== fetcher.generation) return;
      fetcher.topicCreatedAtMs = createdAtMs;
    }
    return this.followStream(fetcher, generation);
  }

  /**
   * The creation time of a topic (DescribeTopic), one lookup shared by the partitions that ask
   * while it is under way; NOT_FOUND when there is no such topic.
   */
  private topicCreatedAt(topic: string): Promise<number> {
    let lookup = this.topicLookups.get(topic);
    if (lookup === undefined) {
      lookup = describeTopic(this.connection, topic).then((description) => description.createdAtMs);
      this.topicLookups.set(topic, lookup);
      const forget = (): void => void this.topicLookups.delete(topic);
      lookup.then(forget, forget);
    }
    return lookup;
  }

  private followStream(fetcher: PartitionFetcher, generation: number): Promise<void> {
    let expected = fetcher.fetchOffset!;
    const request = v1.SubscribeRequest.create({
      topic: fetcher.topic,
      partitions: [fetcher.partition],
      start: v1.StartPosition.create({ offset: numberToLong(expected, 'offset') }),
      raw: true,
      maxBytes: this.maxBytesPerPartition,
      topicCreatedAtMs: numberToLong(fetcher.topicCreatedAtMs ?? 0, 'topic_created_at_ms'),
    });
    const abort = new AbortController();
    const stream = this.connection.serverStream(methods.subscribe, request);
    limitReadAhead(stream);
    fetcher.abort = abort;
    fetcher.stream = stream;
    fetcher.delivered = false;
    // Chunks of the stream before may still wait: a slow application's buffer stays bounded.
    if (fetcher.waitingChunks >= this.prefetchBatches) stream.pause();
    return new Promise<void>((resolve, reject) => {
      let failure: StrataClientError | null = null;
      let settled = false;
      const cancel = (): void => stream.cancel();
      abort.signal.addEventListener('abort', cancel, { once: true });
      const finish = (error: StrataClientError | null): void => {
        if (settled) return;
        settled = true;
        abort.signal.removeEventListener('abort', cancel);
        if (fetcher.stream === stream) fetcher.stream = null;
        if (fetcher.abort === abort) fetcher.abort = null;
        const cause = failure ?? error;
        if (cause === null || abort.signal.aborted) resolve();
        else reject(cause);
      };
      stream.on('data', (response: strata.v1.SubscribeResponse) => {
        if (settled || abort.signal.aborted || generation !== fetcher.generation || !fetcher.active) return;
        try {
          const nextOffset = longToNumber(response.nextOffset, 'next_offset');
          const bytes = response.batches;
          if (bytes.length === 0 || nextOffset <= expected) return;
          const batches = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          checkFetchedBatches(batches, fetcher);
          this.ready.push({ fetcher, generation, batches, fromOffset: expected, highWatermark: longToNumber(response.highWatermark, 'high_watermark') });
          expected = nextOffset;
          fetcher.fetchOffset = nextOffset;
          fetcher.delivered = true;
          fetcher.sought = false;
          if (++fetcher.waitingChunks >= this.prefetchBatches) stream.pause();
          this.wakeReaders();
        } catch (error) {
          failure = toClientError(error);
          stream.cancel();
        }
      });
      stream.on('error', (error: Error) => finish(toClientError(error)));
      // The broker ends a subscription only with an error status; a plain end is retried the same way.
      stream.on('end', () => finish(new StrataClientError('UNAVAILABLE', `the broker ended the subscription to ${fetcher.topic}-${fetcher.partition}`)));
    });
  }

  /**
   * Resolves once the application has taken every record fetched for the partition and asked
   * for more, so that none is in hand (or the partition was sought, revoked or closed): a reset
   * then drops nothing, and an automatic commit of the reset position skips nothing unprocessed.
   */
  private async untilDrained(fetcher: PartitionFetcher, generation: number): Promise<void> {
    if (this.isDrained(fetcher) && this.inHand?.fetcher !== fetcher) return;
    // Otherwise `takeChunk` takes it out of the waiters and wakes it, when the application asks
    // for more with nothing of the partition left: checked there, before it takes a chunk, since
    // the last one taken is not yet the iterator's current one in the microtasks that follow.
    // A seek, reset, revoke or close wakes it too.
    this.drainWaiters.add(fetcher);
    try {
      while (this.drainWaiters.has(fetcher) && fetcher.active && !this.closed && generation === fetcher.generation) await fetcher.untilWoken();
    } finally {
      this.drainWaiters.delete(fetcher);
    }
  }

  /** Whether no chunk of the partition waits or is being delivered. */
  private isDrained(fetcher: PartitionFetcher): boolean {
    return fetcher.waitingChunks === 0 && this.current?.chunk.fetcher !== fetcher;
  }

  private async applyResetPolicy(fetcher: PartitionFetcher, failure: StrataClientError): Promise<void> {
    const generation = fetcher.generation;
    const from = fetcher.fetchOffset ?? -1;
    if (this.resetPolicy === 'none') {
      this.awaitSeek(fetcher, `${fetcher.topic}-${fetcher.partition}: ${failure.message}; resetPolicy is 'none'`);
      return;
    }
    fetcher.abort = new AbortController();
    const { offset } = await listOffsets(this.connection, fetcher.topic, fetcher.partition, this.resetPolicy, fetcher.abort.signal);
    fetcher.abort = null;
    if (generation !== fetcher.generation) return;
    this.resetFetcher(fetcher, offset);
    const event: OffsetResetEvent = { topic: fetcher.topic, partition: fetcher.partition, offset: from, resetTo: offset, policy: this.resetPolicy, reason: failure.message };
    this.logger.warn(event, 'offset out of range; reset policy applied');
    this.notify('offsetReset', event);
  }

  /**
   * Stops a partition that has nowhere to go under the reset policy 'none' until the application
   * seeks it (Kafka's NoOffsetForPartitionException): told once, as a `fetchError`.
   */
  private awaitSeek(fetcher: PartitionFetcher, why: string): void {
    fetcher.awaitingSeek = true;
    const error = new StrataClientError('OUT_OF_RANGE', `${why}: it fetches nothing until seek() gives it an offset`);
    this.logger.warn({ topic: fetcher.topic, partition: fetcher.partition, reason: error.message }, 'partition waits for a seek (resetPolicy none)');
    this.notify('fetchError', { topic: fetcher.topic, partition: fetcher.partition, error } satisfies FetchErrorEvent);
  }

  /**
   * Drops the position of a partition whose topic is gone (`topicGone`), and the offset last
   * committed for it: a topic created again under the name would otherwise be read, and
   * committed, from the old topic's offsets, skipping its first records. It starts afresh, by
   * `initialPosition` or the reset policy, once it exists.
   */
  private forgetPosition(fetcher: PartitionFetcher): void {
    fetcher.topicGone = false;
    fetcher.topicCreatedAtMs = null;
    if (fetcher.position === null && fetcher.fetchOffset === null) return;
    this.logger.warn({ topic: fetcher.topic, partition: fetcher.partition, position: fetcher.position }, 'the partition is gone (its topic was deleted); its position is forgotten, and it starts afresh if the topic is created again');
    fetcher.position = null;
    fetcher.fetchOffset = null;
    this.lastCommitted.delete(partitionKey(fetcher.topic, fetcher.partition));
  }

  /** Points the partition at `offset`, dropping its prefetched chunks and fetch under way. */
  private resetFetcher(fetcher: PartitionFetcher, offset: number): void {
    if (this.inHand?.fetcher === fetcher) this.inHand = null;
    fetcher.topicGone = false;
    fetcher.sought = false;
    fetcher.awaitingSeek = false;
    fetcher.awaitingRevocation = false;
    fetcher.position = offset;
    fetcher.fetchOffset = offset;
    this.interruptFetcher(fetcher);
  }

  private stopFetcher(fetcher: PartitionFetcher): void {
    fetcher.active = false;
    this.interruptFetcher(fetcher);
  }

  /**
   * Drops the partition's prefetched chunks and cancels the work under way (a newer generation
   * makes its answers no-ops), then wakes the loop to start over from the fetch offset, or stop.
   */
  private interruptFetcher(fetcher: PartitionFetcher): void {
    fetcher.generation++;
    this.dropChunks(fetcher);
    fetcher.abort?.abort();
    fetcher.abort = null;
    fetcher.wake();
  }

  private dropChunks(fetcher: PartitionFetcher): void {
    for (let index = this.ready.length - 1; index >= 0; index--) {
      if (this.ready[index]!.fetcher === fetcher) this.ready.splice(index, 1);
    }
    fetcher.waitingChunks = 0;
    if (this.current?.chunk.fetcher === fetcher) this.current = null;
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle.

  /**
   * Stops fetching and ends iterations, lets the group member finish the heartbeat answer it is
   * applying (from then on it heartbeats only to keep its membership), lets a revocation
   * `assign()` started finish, releases every partition through `revokeAssignment` (so
   * `beforeRevoke` sees the final positions and, with auto-commit, they are committed; everything
   * delivered counts as processed), leaves the group (epoch -1, or -2 for a static member), then
   * closes the connection if this consumer opened it. A revocation still under way after
   * `closeTimeoutMs` is left running, and the member leaves without it. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.inHand = null;
      this.wakeReaders();
      this.stopAutoCommit();
      // Called from a beforeRevoke hook, it cannot wait for that hook's revocation.
      const fromHook = insideRevokeHook.getStore() === true;
      const revocation = async (): Promise<void> => {
        // The member heartbeats on, moving no partition, until it leaves: a hook and final commit
        // longer than a session keep the membership, and with it the commit.
        await this.member?.holdForClose({ waitForLoop: !fromHook });
        // A revocation assign() started (its hook, then its commit) ends first: a partition
        // assigned again since then commits its newer position after it.
        if (!fromHook) await Promise.allSettled(this.assignRevocations);
        released = this.assignment();
        try {
          await this.revokeAssignment(released);
        } catch (error) {
          this.logger.warn({ err: error }, 'beforeRevoke failed while closing');
        }
        await this.stopAllFetchers();
        await this.commitQueue;
      };
      let aborted = false;
      /** The partitions the revocation gave up. */
      let released: TopicPartition[] = [];
      try {
        // An abort() ends the wait: for a beforeRevoke hook that never settles, say. So does
        // closeTimeoutMs, after which the member leaves without the revocation, which goes on
        // (its commit is then refused).
        const ended = Promise.race([revocation(), this.aborted.then(() => void (aborted = true))]);
        const inTime = await settlesWithin(ended, this.closeTimeoutMs);
        if (aborted) return;
        if (!inTime) {
          this.logger.warn({ closeTimeoutMs: this.closeTimeoutMs }, 'close() did not finish its revocation (the beforeRevoke hook or the final commit) within closeTimeoutMs; leaving without it');
          // Fetchers the revocation had not reached yet (it waited for one under way) stop now,
          // so it finds none left to hand to the hook when it goes on.
          void this.stopAllFetchers();
        }
        // A group member tells what it gave up, as at a rebalance (Kafka calls onPartitionsRevoked
        // at close too): not when the revocation was cut short, nor when the membership was lost
        // meanwhile ('partitionsLost' named them).
        if (inTime && this.member !== null && this.member.memberId !== '' && released.length > 0) this.notify('partitionsRevoked', { partitions: released } satisfies PartitionsEvent);
        await Promise.race([this.member?.leave({ waitForLoop: inTime && !fromHook }), this.aborted]);
      } finally {
        this.finished = true;
        this.fetchFailureLog.dispose();
        this.committer.close();
        if (this.ownsConnection) this.connection.close();
      }
    })();
    return this.closing;
  }

  /**
   * Simulates a crash (for tests and emergencies): stops fetching and heartbeating at once,
   * commits nothing, does not leave the group, and closes the connection if this consumer
   * opened it. The broker gives the partitions to others when the session times out, and they
   * resume from the last committed offsets. Idempotent; also ends a close() under way.
   */
  abort(): Promise<void> {
    this.closed = true;
    this.wakeReaders();
    this.stopAutoCommit();
    this.abortClose();
    // Not waited for: its loop may be in a heartbeat call (until the call's deadline) or in a
    // beforeRevoke hook (until the hook settles). Killed, it sends nothing more once out of either.
    void this.member?.kill();
    const fetchersStopped = this.stopAllFetchers();
    // A commit under way fails with CANCELLED, also one a close() waits for (a unary one already
    // sent, against a broker without CommitOffsetsStream, still reaches the broker).
    this.committer.close();
    this.fetchFailureLog.dispose();
    if (this.ownsConnection) this.connection.close();
    this.closing ??= fetchersStopped.then(() => {
      this.finished = true;
    });
    return this.closing;
  }

  private async stopAllFetchers(): Promise<void> {
    const fetchers = [...this.fetchers.values()];
    for (const fetcher of fetchers) this.stopFetcher(fetcher);
    this.fetchers.clear();
    await Promise.all(fetchers.map((fetcher) => fetcher.loop));
  }

  private checkOpen(): void {
    if (this.closed) throw closedError('the consumer');
  }

  private requireFetcher(topic: string, partition: number): PartitionFetcher {
    const fetcher = this.fetchers.get(partitionKey(topic, partition));
    if (fetcher === undefined || !fetcher.active) throw new StrataClientError('FAILED_PRECONDITION', `${topic}-${partition} is not assigned to this consumer`);
    return fetcher;
  }
}

/** Checks each batch's frame and CRC; a bad one fails the stream with DATA_LOSS (it is retried). */
function checkFetchedBatches(buffer: Buffer, fetcher: PartitionFetcher): void {
  forEachBatch(buffer, (position, size) => {
    const problem = checkBatchFrame(buffer, position, position + size);
    if (problem !== null) throw new StrataClientError('DATA_LOSS', `fetched batch of ${fetcher.topic}-${fetcher.partition} at byte ${position} is invalid: ${problem}`);
  });
}

/**
 * A delivered record. A class, not an object literal, on purpose: V8 tracks the objects made by
 * each object literal ("allocation sites") and, when nearly all of them are alive at a scavenge,
 * allocates that literal's objects straight in the old generation from then on. A chunk decodes
 * into ~9,000 records at once, so a scavenge during the first decodes could find them all alive
 * and tip the decision; after that every record went to the old generation and was freed only
 * by full collections. Catch-up reads then ran at about 2.0 M records/s instead of 3.0-3.5 M,
 * with twice the client CPU, in 4 runs of 6 (and 0 of 8 with the class). Objects made with
 * `new` carry no allocation site.
 */
class DeliveredRecord implements ConsumerRecord {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: number,
    readonly timestamp: number,
    readonly key: Buffer | null,
    readonly value: Buffer | null,
    readonly headers: readonly RecordHeader[],
  ) {}
}

/** The records at or after `offset` in checked fetched batches. */
function decodeFrom(buffer: Buffer, offset: number, fetcher: PartitionFetcher): ConsumerRecord[] {
  const records: ConsumerRecord[] = [];
  const { topic, partition } = fetcher;
  forEachBatch(buffer, (position) => {
    try {
      forEachRecord(buffer, position, offset, (recordOffset, timestamp, key, value, headers) => {
        records.push(new DeliveredRecord(topic, partition, recordOffset, timestamp, key, value, headers));
      });
    } catch (error) {
      throw new StrataClientError('DATA_LOSS', `fetched batch of ${topic}-${partition} at byte ${position} does not decode: ${(error as Error).message}`);
    }
  });
  return records;
}

/** A legal topic name (Kafka's rule), or INVALID_ARGUMENT: one that can never exist would be retried for ever. */
function checkTopic(topic: string): string {
  if (typeof topic !== 'string' || topic.length === 0) throw invalidArgument('topic is required');
  const problem = topicNameProblem(topic);
  if (problem !== null) throw invalidArgument(problem);
  return topic;
}

function nonNegativeInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) throw invalidArgument(`${name} must be a non-negative integer, got ${value}`);
  return value;
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value <= 0) throw invalidArgument(`${name} must be a positive integer, got ${value}`);
  return value;
}
