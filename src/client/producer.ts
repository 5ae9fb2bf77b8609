/**
 * The producer: `send({ topic, key?, value, headers?, partition? })` resolves with the record's
 * partition and exact offset once the broker has acknowledged it.
 *
 * Pipeline (every stage after the first bounded: sends waiting for metadata or buffer room hold
 * the caller's records, as many as it makes without waiting; see `waitingSends`):
 *
 *   send ──► FIFO of waiting sends ──► per-partition batches ──► ProduceStream ──► acknowledgement
 *            (metadata, buffer room)   (lingerMs, batchBytes)   (≤ 10 per partition,
 *                                                                ≤ maxInFlight in all)
 *
 * - Partitioning happens here, as Kafka's producer does it: the explicit partition; else
 *   murmur2(key) over the partition count (DescribeTopic, cached per topic for
 *   `metadataMaxAgeMs`); else, for a null key, a sticky partition that moves on each time one of
 *   its batches is sent.
 * - Sends are taken strictly in call order, so the records of one partition keep their order.
 *   A send waits (FIFO) while its topic's metadata loads or while the buffer is full:
 *   `bufferBytes` bounds the encoded bytes of every record accepted and not yet settled,
 *   queued or in flight. `bufferedBytes` never exceeds it.
 * - A partition collects records into its open batch. A batch becomes sendable when it reaches
 *   `batchBytes`, when `lingerMs` has passed since its first record (0: at the end of the current
 *   event-loop turn), or on flush; until it is actually sent it keeps taking records, so records
 *   that arrive while a partition is at its in-flight limit are coalesced.
 * - Each record is encoded into its partition's open batch as it is taken (RecordBatch v2 via
 *   `RecordBatchBuilder`): the producer keeps its bytes and its callback, no record object. A
 *   batch is sealed once, when sent, with the producer id, this partition's epoch and the next
 *   sequence number (the sequence then advances by its record count), and becomes one encoded
 *   ProduceRequest (`produce-request.ts`) with a correlation id that matches the response to it.
 *   It travels as a raw `batch` on the producer's single ProduceStream.
 *
 * Idempotence and retries (on by default): the broker writes a batch at most once, answering a
 * retry of one of the producer's last batches of a partition with its original offsets (it
 * remembers 10; InitProducer says how many). So:
 * - at most that many batches per partition are unacknowledged at any time, and only 1 until
 *   the broker has acknowledged one of this producer's batches on the partition (it accepts an
 *   unknown producer at any sequence, so a lost first batch could otherwise be overtaken), and
 *   only 1 again after a partition has been idle an hour (the broker forgets a producer idle a day);
 * - on UNAVAILABLE or DEADLINE_EXCEEDED (an item error, a broken stream, or no answer within
 *   `requestTimeoutMs`) the stream is dropped and, after a backoff, every unacknowledged batch of
 *   every partition is sent again on a new stream, in sequence order, with the same bytes.
 *   Batches the broker had written come back as duplicates with their first offsets; the others
 *   are written now, in order. Nothing is written twice and nothing overtakes;
 * - an out-of-order reply (FAILED_PRECONDITION) for a batch behind an unacknowledged one means
 *   the earlier batch did not get through: it is handled like a lost answer (resend in order),
 *   never by renumbering, which could write a record twice;
 * - a batch that fails otherwise (too large, topic gone...), or whose retry budget (`retries`,
 *   `deliveryTimeoutMs` since the batch was opened) is spent, fails its sends, and so do the
 *   partition's later unacknowledged batches (the broker refuses them: their sequence would leave
 *   a gap). The partition then continues with its epoch raised by one from sequence 0, which the
 *   broker accepts as a fresh start, once the batches sent before the failed one are answered
 *   (a resend of one of those after a batch of the new epoch would be refused as fenced).
 * Without idempotence (`idempotent: false`) retries may duplicate, as with any at-least-once
 * producer, and reorder a partition's batches when more than one is in flight (a batch after a
 * failed one may be written before its resend; `maxInFlightPerPartition: 1` keeps order); it is
 * the only mode that allows `acks: 'none'` (offsets then come back as -1).
 *
 * `send(record)` returns a promise; `send(record, callback)` calls back instead (no promise per
 * record). A record's bytes are copied when the producer takes it: at once, or, while the send
 * waits for metadata or buffer room, when its turn comes; until then do not modify its buffers.
 * flush() resolves once every send made before it has settled
 * (acknowledged or failed); close() flushes, ends the stream and closes the connection if the
 * producer opened it. Both are idempotent.
 */
import { EventEmitter } from 'node:events';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { partitionForKey } from '../broker/partitioner.js';
import { TIMER_DELAY_MAX_MS } from '../common/clock.js';
import { yieldToEventLoop } from '../common/event-loop.js';
import { FifoQueue } from '../common/fifo-queue.js';
import { plural } from '../common/plural.js';
import { shownNumber } from '../common/integer-range.js';
import { defaultClientLogger, type Logger } from '../common/logger.js';
import { strata } from '../generated/strata.js';
import { BATCH_HEADER_BYTES, type CompressionName, type RecordHeader } from '../storage/record-batch.js';
import { RECORD_FRAMING_BOUND, RecordBatchBuilder, recordLengthFloor } from '../storage/record-batch-builder.js';
import { describeTopic } from './admin.js';
import { type Connection, type ConnectionSource, longToNumber, methods, resolveConnection } from './connection.js';
import { StrataClientError, closedError, fromItemError, invalidArgument, isBrokenStream, isRetriable, toClientError } from './errors.js';
import { BufferPool } from './buffer-pool.js';
import { checkPartition, timerDelayMs } from './option-checks.js';
import { encodeProduceRequest, produceRequestHeadroom } from './produce-request.js';

const v1 = strata.v1;

/**
 * The most batches per partition an idempotent producer keeps unacknowledged: Strata's broker
 * deduplicates against a producer's last 10 batches per partition, and says so in InitProducer.
 */
export const IDEMPOTENT_IN_FLIGHT_MAX = 10;
/** How long close() waits for the broker to end the produce stream before cancelling it. */
const STREAM_END_WAIT_MS = 1_000;
/** The window of a broker whose InitProducer answer does not state one (Kafka's). */
const UNSTATED_BATCH_WINDOW = 5;
/**
 * A partition with nothing in flight whose last answer is older than this sends its next batch
 * alone again, as before its first answer. The broker forgets a producer that appends nothing
 * for 24 hours (Kafka's `producer.id.expiration.ms`) and then accepts it at any sequence: were
 * a window of batches sent to it at once and the first lost, the next would be written ahead
 * of it. An hour is far inside that day, and costs a partition that idles one batch sent on
 * its own; it is measured on both clocks (see PartitionState.answeredAtMs).
 */
export const RECONFIRM_AFTER_IDLE_MS = 60 * 60 * 1000;
const SEQUENCE_MODULUS = 2 ** 31;
const EPOCH_MAX = 0x7fff;
/** Upper bound of a header's framing (two length varints). */
const HEADER_OVERHEAD_BYTES = 10;
/**
 * Default batchBytes: 1 MiB, the broker's default max.message.bytes (a topic with a lower limit
 * gets batches of its limit). Far larger than Kafka's 16 KiB on purpose: a partition has at most
 * 10 batches in flight, each answered after an fdatasync, so its throughput is about 10 batches
 * per round trip. On a 2-core machine with the broker's direct writes, 1 MiB batches took
 * 1 KiB records to 491-520 MB/s against 388-453 with 512 KiB, and 100 B records to 2.99-3.31 M
 * records/s against 2.78-3.10 M. A batch's buffer starts small and grows only as records
 * come, so a slow partition does not hold 1 MiB.
 */
export const DEFAULT_BATCH_BYTES = 1024 * 1024;
/** The smallest buffer a batch starts with; it doubles as records come, up to batchBytes. */
const BATCH_INITIAL_BYTES = 1024;
/** Headroom of a pooled buffer: enough for the request fields of any topic name (≤ 249 bytes). */
const POOLED_HEADROOM_BYTES = 512;
/**
 * Whether a batch's first buffer (with headroom) of `bytes` is carved out of Node's shared slab:
 * `Buffer.allocUnsafe` does so under half of `Buffer.poolSize` (4 KiB by default). Such a buffer
 * costs no ArrayBuffer of its own, so it starts in a new one; a pool would hold memory for nothing.
 */
function fromNodeSlab(bytes: number): boolean {
  return bytes < Buffer.poolSize >>> 1;
}
/** The smallest size class of pooled buffers (see buffer-pool.ts). */
const POOLED_BUFFER_BYTES_MIN = 8 * 1024;

export type Acks = 'all' | 'leader' | 'none';
export type Bytes = string | Buffer | Uint8Array;

export interface ProducerRecord {
  topic: string;
  /** Records with a key go to murmur2(key) % partitions (Kafka's default partitioner). */
  key?: Bytes | null;
  /** null is a tombstone. */
  value: Bytes | null;
  /** Header values are bytes (strings are UTF-8 encoded) or null. */
  headers?: Record<string, Bytes | null> | readonly { key: string; value: Bytes | null }[];
  /** An explicit partition; overrides the key. */
  partition?: number;
  /** Create time (ms since the epoch); the time of the send when absent. */
  timestamp?: number;
}

export interface SendResult {
  partition: number;
  /** The record's offset; -1 with acks 'none'. */
  offset: number;
}

/**
 * Called once per send, as Kafka's `send(record, callback)`: with the error, or with null and
 * the result. It runs on the producer's acknowledgement path, so it should be quick; an
 * exception it throws is logged and does not disturb the producer.
 */
export type SendCallback = (error: Error | null, result?: SendResult) => void;

/**
 * The 'retrying' event: the produce stream failed with a retriable error (the broker stopped,
 * restarted or could not be reached; an answer did not come in time), and every unacknowledged
 * batch is sent again on a new stream after `delayMs`; or the lookup of a topic's metadata that
 * sends wait on failed so, and is tried again after `delayMs`. Emitted at each attempt, until a
 * batch is acknowledged again, or the lookup succeeds ('recovered'), or the sends run out of
 * their delivery timeout.
 */
export interface ProducerRetryEvent {
  code: string;
  reason: string;
  /** The broker answered (a failed disk write, a shutdown), rather than could not be reached or did not answer in time. */
  fromBroker: boolean;
  /** The backoff before the next attempt (ms). */
  delayMs: number;
  /** Attempts in a row that failed so far, this one included. */
  attempt: number;
  /** Partitions with unacknowledged batches. */
  partitions: number;
}

/** The 'recovered' event: the first acknowledgement (or metadata lookup) after 'retrying'. */
export interface ProducerRecoveredEvent {
  /** Attempts that had failed in a row before it. */
  failedAttempts: number;
}

/** The events a Producer emits: each name with its listener's arguments. */
export interface ProducerEvents {
  retrying: [ProducerRetryEvent];
  recovered: [ProducerRecoveredEvent];
}

/** How long a send may take, retries included, unless `deliveryTimeoutMs` says otherwise (Kafka's delivery.timeout.ms). */
export const DEFAULT_DELIVERY_TIMEOUT_MS = 120_000;

export interface ProducerSettings {
  /** How long a batch waits for more records after its first (ms). Default 5. */
  lingerMs?: number;
  /**
   * A batch is sent once it holds this many bytes. Default 1 MiB (see DEFAULT_BATCH_BYTES);
   * lowered per topic to fit its max.message.bytes.
   */
  batchBytes?: number;
  /** Bound on bytes of records accepted and not yet acknowledged. Default 32 MiB. */
  bufferBytes?: number;
  /** 'all' (durable, the default), 'leader' (written), or 'none' (needs idempotent: false). */
  acks?: Acks;
  /** Exactly-once writes per partition across retries. Default true. */
  idempotent?: boolean;
  /**
   * Unacknowledged batches per partition. Default (and maximum with idempotence) 10; with
   * idempotence, also at most what the broker's InitProducer answer allows.
   */
  maxInFlightPerPartition?: number;
  /** Unacknowledged batches in all. Default 64. */
  maxInFlight?: number;
  /** Resends of a batch before it fails. Default unlimited (bounded by deliveryTimeoutMs). */
  retries?: number;
  /** Time from a batch's first record until it fails if still unacknowledged. Default 120 s. */
  deliveryTimeoutMs?: number;
  /** A sent batch without an answer after this long counts as DEADLINE_EXCEEDED. Default: the connection deadline. */
  requestTimeoutMs?: number;
  /** Backoff before a retry: doubling from retryBackoffMs up to retryBackoffMaxMs. Defaults 100, 2000. */
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /** How long a topic's partition count is trusted before it is looked up again. Default 5 min. */
  metadataMaxAgeMs?: number;
  compression?: CompressionName;
  /** A pino logger for what it has to say; default: warnings and errors on stderr (`defaultClientLogger`). */
  logger?: Logger;
}

export type ProducerOptions = ConnectionSource & ProducerSettings;

type ProduceStream = ClientDuplexStream<Buffer, strata.v1.ProduceResponse>;

const ACKS_WIRE: Readonly<Record<Acks, strata.v1.Acks>> = { all: v1.Acks.ACKS_ALL, leader: v1.Acks.ACKS_LEADER, none: v1.Acks.ACKS_NONE };

/**
 * Records of one partition sent (or to be sent) as one RecordBatch. Records are encoded into
 * `builder` as they are sent (nothing per record is kept but its callback); sealing the batch
 * turns it into `request`, the encoded ProduceRequest, which every attempt sends unchanged.
 */
class ProducerBatch {
  /** Until the batch is sealed; then null (the bytes are in `request`). */
  builder: RecordBatchBuilder | null;
  readonly callbacks: SendCallback[] = [];
  /** Bytes this batch holds of the producer's buffer. */
  bufferedBytes = 0;
  /** Sendable: lingerMs passed, full, or flushed. */
  ready = false;
  full = false;
  lingerTimer: NodeJS.Timeout | null = null;
  request: Buffer | null = null;
  correlationId = 0;
  /** The partition's epoch when the batch was sealed (idempotent producers). */
  epoch = -1;
  attempts = 0;
  /** When (performance.now()) it was last written to a stream. */
  sentAtMs = 0;
  /** Called once when the batch settles (flush). */
  settledCallbacks: (() => void)[] | null = null;

  constructor(
    readonly partition: PartitionState,
    /** When (performance.now()) the send that opened it was made: its delivery budget starts there. */
    readonly createdAtMs: number,
    builder: RecordBatchBuilder,
    /** The pool's buffer the batch was started in, returned once acknowledged. */
    readonly pooledBuffer: Buffer | null,
  ) {
    this.builder = builder;
  }

  get recordCount(): number {
    return this.callbacks.length;
  }
}

class PartitionState {
  /** Batches not yet sent, oldest first; only the last takes new records. */
  readonly queued: ProducerBatch[] = [];
  /** Sent, unacknowledged batches in sequence order. */
  readonly inFlight: ProducerBatch[] = [];
  /**
   * The producer id this partition's batches carry (-1 until the first batch): the producer's,
   * or a newer one once the partition has used up every epoch of it.
   */
  producerId = -1;
  /** This partition's producer epoch (-1 until the first batch); raised after a failed batch. */
  epoch = -1;
  nextSequence = 0;
  /**
   * False until the broker acknowledges a batch of this epoch. The broker accepts an unknown
   * producer at any sequence, so until it knows this one, a lost first batch would let the
   * next be written ahead of it: the first batch of an epoch travels alone, and only once the
   * batches of the epoch before have all been answered.
   */
  confirmed = false;
  /**
   * When the broker last answered a batch of this epoch, on both clocks: the monotonic one
   * stands still while the machine sleeps, and the broker forgets producers by the wall clock.
   */
  answeredAtMs = 0;
  answeredAtWallMs = 0;
  /** Size of the last batch sealed: the next starts with a buffer for twice that. */
  lastBatchBytes = 0;

  constructor(
    readonly topic: TopicState,
    readonly partition: number,
  ) {}
}

class TopicState {
  partitionCount = 0;
  fetchedAtMs = 0;
  /** Counts `markStale` calls: a lookup under way when one comes leaves the metadata stale. */
  staleMarks = 0;
  /** No background refresh before this (Date.now() ms; see `wallBefore`): a retryBackoffMs after the last began, a retryBackoffMaxMs after one failed. */
  refreshNotBeforeMs = 0;
  refreshing: Promise<void> | null = null;
  stickyPartition = -1;
  readonly partitions = new Map<number, PartitionState>();
  /** Bytes a batch keeps before it for the other ProduceRequest fields. */
  readonly requestHeadroom: number;

  /** The producer's batchBytes, lowered to fit the topic's max.message.bytes once known. */
  batchBytes: number;
  /** The topic's max.message.bytes (0 until known). */
  maxMessageBytes = 0;
  /** The topic's message.timestamp.after.max.ms (-1 until known). */
  timestampAfterMaxMs = -1;
  /** The broker's NOT_FOUND for the last metadata lookup, given to sends until `refusedUntilMs`. */
  refusal: StrataClientError | null = null;
  refusedUntilMs = 0;

  constructor(
    readonly name: string,
    batchBytes: number,
  ) {
    this.requestHeadroom = produceRequestHeadroom(name);
    this.batchBytes = batchBytes;
  }
  /** The metadata may be out of date (a refusal by a limit that may have changed): read it at the next send. */
  markStale(): void {
    this.fetchedAtMs = 0;
    this.staleMarks++;
  }

}

interface WaitingSend {
  topic: TopicState;
  partition: number | null;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeader[] | null;
  sizeBytes: number;
  callback: SendCallback;
  /** When (performance.now()) it was sent. */
  queuedAtMs: number;
}

interface WaitingFlush {
  flush: () => void;
}

export class Producer extends EventEmitter<ProducerEvents> {
  private readonly connection: Connection;
  private readonly ownsConnection: boolean;
  private readonly logger: Logger;
  private readonly lingerMs: number;
  private readonly batchBytes: number;
  private readonly bufferBytesMax: number;
  private readonly acks: strata.v1.Acks;
  private readonly idempotent: boolean;
  private readonly maxInFlightPerPartition: number;
  private readonly maxInFlight: number;
  private readonly retries: number;
  private readonly deliveryTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly retryBackoffMs: number;
  private readonly retryBackoffMaxMs: number;
  private readonly metadataMaxAgeMs: number;
  private readonly compression: CompressionName;
  private readonly bufferPool: BufferPool;
  /** Sends failed with `failSoon` whose callbacks have not run yet. */
  private failingSoon = 0;

  private readonly topics = new Map<string, TopicState>();
  /** Partitions with queued batches, in the order they get a turn to send. */
  private readonly sendable = new Set<PartitionState>();
  /** Partitions with unacknowledged batches. */
  private readonly active = new Set<PartitionState>();
  /** Sends (and flushes) waiting for metadata or buffer room, in call order. */
  private readonly waiting = new FifoQueue<WaitingSend | WaitingFlush>();
  private pumping = false;
  private roomWaiter: (() => void) | null = null;
  /** Flushes among the waiting entries. */
  private waitingFlushes = 0;
  private buffered = 0;

  /** From InitProducer; `batchWindow` bounds the batches in flight per partition. */
  private identity: { producerId: number; producerEpoch: number; batchWindow: number } | null = null;
  private identityLoading = false;
  private stream: ProduceStream | null = null;
  /** 'backoff': waiting to reopen the stream and resend. */
  private streamState: 'none' | 'open' | 'backoff' = 'none';
  /** Unacknowledged batches on the current stream by correlation id, in send order. */
  private readonly inFlightById = new Map<number, ProducerBatch>();
  private nextCorrelationId = 1;
  private consecutiveFailures = 0;
  /** Metadata lookups of waiting sends that failed in a row (see `metadataRetrying`). */
  private metadataFailures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private requestTimer: NodeJS.Timeout | null = null;
  /** Due at the earliest delivery deadline of a batch not yet settled (see armDeliveryTimer). */
  private deliveryTimer: NodeJS.Timeout | null = null;
  /** Why the stream last failed, for the message of a batch whose delivery timeout ends later. */
  private lastFailure: StrataClientError | null = null;
  private drainScheduled = false;
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(options: ProducerOptions) {
    super();
    const acks = options.acks ?? 'all';
    if (ACKS_WIRE[acks] === undefined) throw invalidArgument(`acks must be 'all', 'leader' or 'none', got ${JSON.stringify(acks)}`);
    this.idempotent = options.idempotent ?? true;
    if (acks === 'none' && this.idempotent) {
      throw invalidArgument("acks 'none' cannot be idempotent: without answers there are no sequence checks to rely on; pass idempotent: false to use it");
    }
    this.acks = ACKS_WIRE[acks];
    this.lingerMs = timerDelayMs(options.lingerMs ?? 5, 'lingerMs');
    this.batchBytes = positiveInteger(options.batchBytes ?? DEFAULT_BATCH_BYTES, 'batchBytes');
    this.bufferBytesMax = positiveInteger(options.bufferBytes ?? 32 * 1024 * 1024, 'bufferBytes');
    this.maxInFlightPerPartition = positiveInteger(options.maxInFlightPerPartition ?? IDEMPOTENT_IN_FLIGHT_MAX, 'maxInFlightPerPartition');
    if (this.idempotent && this.maxInFlightPerPartition > IDEMPOTENT_IN_FLIGHT_MAX) {
      throw invalidArgument(`maxInFlightPerPartition must be at most ${IDEMPOTENT_IN_FLIGHT_MAX} with idempotence (the broker deduplicates against the last ${IDEMPOTENT_IN_FLIGHT_MAX} batches), got ${this.maxInFlightPerPartition}`);
    }
    this.maxInFlight = positiveInteger(options.maxInFlight ?? 64, 'maxInFlight');
    this.retries = nonNegative(options.retries ?? Number.POSITIVE_INFINITY, 'retries');
    this.deliveryTimeoutMs = nonNegative(options.deliveryTimeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS, 'deliveryTimeoutMs');
    this.retryBackoffMs = timerDelayMs(options.retryBackoffMs ?? 100, 'retryBackoffMs');
    this.retryBackoffMaxMs = Math.max(this.retryBackoffMs, timerDelayMs(options.retryBackoffMaxMs ?? 2_000, 'retryBackoffMaxMs'));
    this.metadataMaxAgeMs = nonNegative(options.metadataMaxAgeMs ?? 5 * 60_000, 'metadataMaxAgeMs');
    // The pool keeps at most bufferBytes of buffers (rounded up to whole full-size ones), what
    // the producer may hold anyway (as Kafka's BufferPool keeps buffer.memory). A smaller pool
    // left most batches of a full buffer to fresh allocations, whose garbage collection cost
    // about 5 % of throughput.
    const fullBufferBytes = POOLED_HEADROOM_BYTES + this.batchBytes;
    this.bufferPool = new BufferPool(POOLED_BUFFER_BYTES_MIN, fullBufferBytes, Math.ceil(this.bufferBytesMax / this.batchBytes) * fullBufferBytes);
    this.compression = options.compression ?? 'none';
    if (this.compression !== 'none' && this.compression !== 'gzip') throw invalidArgument(`compression must be 'none' or 'gzip', got ${JSON.stringify(this.compression)}`);
    this.logger = (options.logger ?? defaultClientLogger()).child({ subsystem: 'producer' });
    // Checked before a connection is opened, which a refusal would leave open.
    if (options.requestTimeoutMs !== undefined) timerDelayMs(options.requestTimeoutMs, 'requestTimeoutMs', 1);
    ({ connection: this.connection, owned: this.ownsConnection } = resolveConnection(options));
    this.requestTimeoutMs = timerDelayMs(options.requestTimeoutMs ?? this.connection.deadlineMs, 'requestTimeoutMs', 1);
  }

  /** Bytes of records accepted and not yet settled (at most `bufferBytes`). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Sends waiting for their topic's metadata or for room in `bufferBytes`. Their records are
   * the caller's, held outside `bufferBytes`: a caller that sends without awaiting each send
   * (or with callbacks) keeps this bounded by pacing itself on it, or on its own count of
   * sends not yet settled, as `strata produce` does.
   */
  get waitingSends(): number {
    return this.waiting.length - this.waitingFlushes;
  }

  /** Batches sent and not yet answered. */
  get inFlightBatches(): number {
    return this.inFlightById.size;
  }

  // -------------------------------------------------------------------------------------------
  // Sending.

  /**
   * Sends one record: resolves with its partition and offset once the broker has acknowledged
   * it, or rejects. With a `callback` (Kafka's `send(record, callback)`), returns nothing and
   * calls it instead: no promise per record, which matters at millions of records a second.
   * The record's bytes are copied into its batch during the call (or, while the send waits for
   * metadata or buffer room, when it is taken), so the caller may reuse its buffers afterwards.
   */
  send(message: ProducerRecord): Promise<SendResult>;
  send(message: ProducerRecord, callback: SendCallback): void;
  send(message: ProducerRecord, callback?: SendCallback): Promise<SendResult> | void {
    if (callback === undefined) {
      return new Promise<SendResult>((resolve, reject) => this.enqueue(message, (error, result) => (error === null ? resolve(result!) : reject(error))));
    }
    if (typeof callback !== 'function') throw invalidArgument('the send callback must be a function');
    this.enqueue(message, callback);
  }

  private enqueue(message: ProducerRecord, callback: SendCallback): void {
    if (this.closed) return this.failSoon(callback, closedError('the producer'));
    let partition: number | null;
    let key: Buffer | null;
    let value: Buffer | null;
    let headers: RecordHeader[] | null;
    let timestamp: number;
    let sizeBytes: number;
    // One clock read per record: the record's timestamp, and the metadata age check below.
    const now = Date.now();
    try {
      if (typeof message?.topic !== 'string' || message.topic.length === 0) throw invalidArgument('topic is required');
      partition = message.partition === undefined || message.partition === null ? null : checkPartition(message.partition);
      key = toBytes(message.key, 'key');
      // Required, as its type says: a misspelt field must not become a record without a value.
      if (message.value === undefined) throw invalidArgument('value is required: bytes, a string, or null for a record without a value');
      value = toBytes(message.value, 'value');
      headers = message.headers === undefined || message.headers === null ? null : toHeaders(message.headers);
      timestamp = message.timestamp ?? now;
      if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw invalidArgument(`timestamp must be a non-negative integer (ms) up to 2^53 - 1, got ${shownNumber(timestamp)}`);
      sizeBytes = recordSize(key, value, headers);
      if (sizeBytes > this.bufferBytesMax) {
        throw new StrataClientError('RESOURCE_EXHAUSTED', `a record of about ${sizeBytes} bytes can never fit the producer's bufferBytes of ${this.bufferBytesMax}`);
      }
    } catch (error) {
      return this.failSoon(callback, toClientError(error));
    }
    const topic = this.topicState(message.topic);
    if (this.waiting.length === 0) {
      // An explicit partition past the known count goes the slow way: the metadata is read
      // again before the send is refused, in case partitions were added.
      const target = this.partitionFor(topic, partition, key, now);
      if (target !== null && target < topic.partitionCount) {
        const refusal = this.refusalFor(topic, timestamp, key, value, headers, sizeBytes, now);
        if (refusal !== null) return this.failSoon(callback, refusal);
      }
      if (target !== null && target < topic.partitionCount && this.hasRoomFor(sizeBytes)) {
        this.append(this.partitionState(topic, target), timestamp, key, value, headers, sizeBytes, callback, null);
        return;
      }
    }
    this.waiting.push({ topic, partition, timestamp, key, value, headers, sizeBytes, callback, queuedAtMs: performance.now() });
    void this.pump();
  }

  /**
   * Fails a send that never got in, after a turn of the event loop (never inside send(), and
   * not in a microtask: an application that retries a refused send at once, in an `await send()`
   * loop or from its callback, would otherwise never let I/O run, not even the metadata lookup
   * that could end the refusals). `flushNow` waits for the failures scheduled before it.
   */
  private failSoon(callback: SendCallback, error: Error): void {
    this.failingSoon++;
    setImmediate(() => {
      this.failingSoon--;
      this.complete(callback, error, undefined);
    });
  }

  private complete(callback: SendCallback, error: Error | null, result: SendResult | undefined): void {
    try {
      callback(error, result);
    } catch (thrown) {
      this.logger.error({ err: thrown }, 'a send callback threw; the producer carries on');
    }
  }

  /** Emits an event; a listener that throws is logged, not passed into the path that emitted it. */
  private notify<E extends keyof ProducerEvents>(event: E, ...args: ProducerEvents[E]): void {
    try {
      (this.emit as (event: E, ...args: ProducerEvents[E]) => boolean)(event, ...args);
    } catch (error) {
      this.logger.error({ err: error, event }, 'an event listener threw');
    }
  }

  /** Resolves when every send made before this call has settled (acknowledged or failed). */
  flush(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.waiting.length === 0) this.flushNow(resolve);
      else {
        this.waiting.push({ flush: resolve });
        this.waitingFlushes++;
        void this.pump();
      }
    });
  }

  /** Flushes, ends the stream and closes the connection if this producer opened it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.flush();
      if (this.retryTimer !== null) clearTimeout(this.retryTimer);
      if (this.deliveryTimer !== null) clearTimeout(this.deliveryTimer);
      this.deliveryTimer = null;
      this.clearRequestTimer();
      const stream = this.stream;
      this.stream = null;
      this.streamState = 'none';
      // Every batch has settled: the stream's status says nothing more, so a broker that does
      // not send it (hung) holds close() up only briefly.
      if (stream !== null) await endStream(stream, Math.min(this.connection.deadlineMs, STREAM_END_WAIT_MS));
      if (this.ownsConnection) this.connection.close();
    })();
    return this.closing;
  }

  private topicState(name: string): TopicState {
    let topic = this.topics.get(name);
    if (topic === undefined) this.topics.set(name, (topic = new TopicState(name, this.batchBytes)));
    return topic;
  }

  private partitionState(topic: TopicState, partition: number): PartitionState {
    let state = topic.partitions.get(partition);
    if (state === undefined) topic.partitions.set(partition, (state = new PartitionState(topic, partition)));
    return state;
  }

  /** The partition of a record, or null while the topic's partition count is unknown. */
  private partitionFor(topic: TopicState, explicit: number | null, key: Buffer | null, now: number): number | null {
    // Every send waits for the topic's metadata once, explicit partitions too: it carries the
    // topic's max.message.bytes, which bounds its batches.
    if (topic.partitionCount === 0) return null;
    // Explicit partitions too: the metadata also brings changes of max.message.bytes.
    if (wallAgedPast(now, topic.fetchedAtMs, this.metadataMaxAgeMs) && !wallBefore(now, topic.refreshNotBeforeMs, this.retryBackoffMaxMs)) this.refreshInBackground(topic);
    if (explicit !== null) return explicit;
    if (key !== null) return partitionForKey(key, topic.partitionCount);
    if (topic.stickyPartition < 0 || topic.stickyPartition >= topic.partitionCount) topic.stickyPartition = randomPartition(topic.partitionCount, -1);
    return topic.stickyPartition;
  }

  /**
   * The error for a record the topic cannot take: even a batch of it alone, with its framing at
   * its narrowest, is over the topic's max.message.bytes. Refused here, it does not fail the
   * records sent after it, as a batch the broker refuses would (their sequences would leave a
   * gap). Records within a few bytes of the limit, and compressed batches, are caught when
   * their batch is sealed (`seal`). Compressed or not, a record must fit in max.message.bytes
   * by itself: the broker refuses a compressed batch with a record that inflates past it (its
   * length with the deltas at one byte each: exact for a record that large, alone in its batch).
   * So is a record whose timestamp is further ahead of this client's clock than the topic's
   * message.timestamp.after.max.ms, which the broker would refuse by its own clock.
   */
  private refusalFor(topic: TopicState, timestamp: number, key: Buffer | null, value: Buffer | null, headers: RecordHeader[] | null, sizeBytes: number, nowMs: number): StrataClientError | null {
    if (topic.timestampAfterMaxMs >= 0 && timestamp - nowMs > topic.timestampAfterMaxMs) {
      return refused(
        topic,
        'INVALID_ARGUMENT',
        `a record timestamped ${timestamp} is ${timestamp - nowMs} ms ahead of this client's clock, more than topic "${topic.name}"'s message.timestamp.after.max.ms of ${topic.timestampAfterMaxMs}: timestamps are milliseconds since the epoch; it was not sent`,
      );
    }
    if (topic.maxMessageBytes === 0) return null;
    if (this.compression !== 'none') {
      if (sizeBytes <= topic.maxMessageBytes) return null; // its upper bound fits: no need for the exact length
      const length = recordLengthFloor(key, value, headers);
      if (length <= topic.maxMessageBytes) return null;
      return refused(topic, 'RESOURCE_EXHAUSTED', `a record of at least ${length} bytes exceeds topic "${topic.name}"'s max.message.bytes of ${topic.maxMessageBytes} (compressed or not, a record must fit in it); it was not sent`);
    }
    // The record's own bytes (key, value, header keys and values): `recordSize` less its framing.
    const ownBytes = sizeBytes - RECORD_FRAMING_BOUND - HEADER_OVERHEAD_BYTES * (headers?.length ?? 0);
    const smallestBatch = BATCH_HEADER_BYTES + ownBytes;
    if (smallestBatch <= topic.maxMessageBytes) return null;
    return refused(topic, 'RESOURCE_EXHAUSTED', `a record of at least ${smallestBatch} bytes (in a batch of its own) exceeds topic "${topic.name}"'s max.message.bytes of ${topic.maxMessageBytes}; it was not sent`);
  }

  /**
   * Throws when a sealed batch is over its topic's max.message.bytes: a compressed batch that
   * grew, or a record within a few bytes of the limit. It fails here, unsent and before it takes
   * a sequence number, so the batches after it still go through; the broker would refuse it,
   * and a batch over --max-request-bytes would end the stream every partition shares.
   */
  private checkBatchFits(batch: ProducerBatch): void {
    const topic = batch.partition.topic;
    const sizeBytes = batch.builder!.sizeBytes;
    if (topic.maxMessageBytes === 0 || sizeBytes <= topic.maxMessageBytes) return;
    topic.markStale(); // the limit may have been raised since: look again
    const compressed = this.compression === 'none' ? '' : ` (${this.compression})`;
    throw new StrataClientError('RESOURCE_EXHAUSTED', `a batch of ${batch.recordCount} records is ${sizeBytes} bytes${compressed}, over topic "${topic.name}"'s max.message.bytes of ${topic.maxMessageBytes}; it was not sent`);
  }

  private hasRoomFor(sizeBytes: number): boolean {
    return this.buffered + sizeBytes <= this.bufferBytesMax;
  }

  /** Takes waiting sends in order as metadata and buffer room allow. One runs at a time. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    /** The send whose partition, past the count, the metadata was last read again for. */
    let rechecked: WaitingSend | null = null;
    try {
      while (this.waiting.length > 0) {
        const head = this.waiting.peek()!;
        if ('flush' in head) {
          this.waiting.shift();
          this.waitingFlushes--;
          this.flushNow(head.flush);
          continue;
        }
        const now = Date.now();
        const target = this.partitionFor(head.topic, head.partition, head.key, now);
        if (target === null) {
          // The broker just said this topic does not exist: the sends behind get the same answer
          // for retryBackoffMs, so a loop sending to a missing topic costs one DescribeTopic per
          // backoff, not one per record.
          const refusal = head.topic.refusal;
          if (refusal !== null && wallBefore(now, head.topic.refusedUntilMs, this.retryBackoffMs)) {
            // A turn of the event loop first: a caller that retries from its callback, or in
            // an `await send()` loop, must not spin the event loop for the whole backoff.
            await yieldToEventLoop();
            this.waiting.shift();
            this.complete(head.callback, new StrataClientError(refusal.code, refusal.message, { cause: refusal }), undefined);
            continue;
          }
          try {
            await this.loadMetadata(head.topic);
            this.metadataRecovered();
          } catch (error) {
            const failure = toClientError(error);
            // A broker restarting or briefly unreachable: retry within the send's delivery
            // timeout, during a close() too (it flushes: the send is not given up sooner).
            if (this.mayRetryMetadata(failure, head)) {
              await sleep(this.metadataRetrying(failure, head));
              continue;
            }
            if (!isRetriable(failure)) this.metadataRecovered(); // the broker answered
            if (failure.code === 'NOT_FOUND') {
              head.topic.refusal = failure;
              head.topic.refusedUntilMs = Date.now() + this.retryBackoffMs;
            }
            this.waiting.shift();
            this.complete(head.callback, this.metadataFailure(failure, head), undefined);
          }
          continue;
        }
        if (target >= head.topic.partitionCount) {
          // Past the count known: judged on metadata read within retryBackoffMs (read again if
          // older, in case partitions were added), so a burst of such sends costs one lookup.
          if (head !== rechecked && wallAgedPast(now, head.topic.fetchedAtMs, this.retryBackoffMs)) {
            try {
              await this.loadMetadata(head.topic);
              this.metadataRecovered();
              rechecked = head;
            } catch (error) {
              const failure = toClientError(error);
              // Retried as the first lookup of a topic is: the partition may have been added.
              if (this.mayRetryMetadata(failure, head)) {
                await sleep(this.metadataRetrying(failure, head));
                continue;
              }
              if (!isRetriable(failure)) this.metadataRecovered(); // the broker answered
              this.waiting.shift();
              this.complete(head.callback, this.metadataFailure(failure, head), undefined);
            }
            continue;
          }
          // A turn of the event loop first, as for a missing topic: never inside send(), and a
          // retry from the callback must not spin the event loop while the metadata is fresh.
          await yieldToEventLoop();
          this.waiting.shift();
          const count = head.topic.partitionCount;
          this.complete(head.callback, new StrataClientError('NOT_FOUND', `partition ${target} of topic "${head.topic.name}" does not exist (the topic has ${count}: 0 to ${count - 1})`), undefined);
          continue;
        }
        const refusal = this.refusalFor(head.topic, head.timestamp, head.key, head.value, head.headers, head.sizeBytes, Date.now());
        if (refusal !== null) {
          this.waiting.shift();
          this.complete(head.callback, refusal, undefined);
          continue;
        }
        if (!this.hasRoomFor(head.sizeBytes)) {
          // Its delivery budget runs while it waits: a broker that stays down frees the room
          // only as the batches before it fail, and each lot of sends let in would wait a whole
          // deliveryTimeoutMs again, so close() could take that many times over.
          const waitedMs = performance.now() - head.queuedAtMs;
          if (waitedMs >= this.deliveryTimeoutMs) {
            this.waiting.shift();
            const message = `not sent within deliveryTimeoutMs (${this.deliveryTimeoutMs} ms): it waited for room in the producer's bufferBytes (${this.bufferBytesMax}), which the records sent before it held unacknowledged; not written`;
            this.complete(head.callback, new StrataClientError('DEADLINE_EXCEEDED', message), undefined);
            continue;
          }
          // As Kafka's accumulator does: while a send waits for room, nothing lingers.
          this.expediteQueued();
          let timer: NodeJS.Timeout | undefined;
          await new Promise<void>((resolve) => {
            this.roomWaiter = resolve;
            timer = setTimeout(resolve, Math.min(TIMER_DELAY_MAX_MS, this.deliveryTimeoutMs - waitedMs));
          });
          clearTimeout(timer);
          continue;
        }
        this.waiting.shift();
        this.append(this.partitionState(head.topic, target), head.timestamp, head.key, head.value, head.headers, head.sizeBytes, head.callback, head.queuedAtMs);
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * What a send is told when its topic's metadata could not be read: a refusal as the broker
   * worded it; a retriable failure with the topic, the time spent and that nothing was written.
   */
  private metadataFailure(failure: StrataClientError, send: WaitingSend): StrataClientError {
    if (!isRetriable(failure)) return failure;
    const waitedMs = Math.round(performance.now() - send.queuedAtMs);
    return new StrataClientError(failure.code, `could not read the metadata of topic "${send.topic.name}" (its partitions and limits) within ${waitedMs} ms (deliveryTimeoutMs ${this.deliveryTimeoutMs}): ${failure.message}; not written`, { cause: failure });
  }

  /** Whether a waiting send's failed metadata lookup is tried again: a retriable failure, within the send's delivery timeout. */
  private mayRetryMetadata(failure: StrataClientError, send: WaitingSend): boolean {
    return isRetriable(failure) && !this.connection.isClosed && performance.now() - send.queuedAtMs < this.deliveryTimeoutMs;
  }

  /**
   * A waiting send's metadata lookup failed and is tried again: said as a failed stream is
   * (a line, and 'retrying'), since sends wait on it silently otherwise, for up to their
   * delivery timeout. Returns the backoff.
   */
  private metadataRetrying(failure: StrataClientError, send: WaitingSend): number {
    const failures = this.metadataFailures++;
    const delayMs = this.metadataBackoffMs(failures, send);
    this.logger.warn({ topic: send.topic.name, code: failure.code, reason: failure.message, delayMs: Math.round(delayMs) }, 'topic metadata lookup failed; sends to the topic wait and it is tried again');
    const retrying: ProducerRetryEvent = { code: failure.code, reason: failure.message, fromBroker: failure.fromBroker, delayMs: Math.round(delayMs), attempt: failures + 1, partitions: this.active.size };
    this.notify('retrying', retrying);
    return delayMs;
  }

  /** A metadata lookup succeeded: 'recovered' if lookups had failed before it (those of sends since given up included). */
  private metadataRecovered(): void {
    const failures = this.metadataFailures;
    this.metadataFailures = 0;
    if (failures > 0) this.notify('recovered', { failedAttempts: failures } satisfies ProducerRecoveredEvent);
  }

  /** The backoff before a waiting send's next metadata lookup: doubling, and not past its delivery timeout. */
  private metadataBackoffMs(failures: number, send: WaitingSend): number {
    const leftMs = send.queuedAtMs + this.deliveryTimeoutMs - performance.now();
    return Math.max(0, Math.min(this.retryBackoffMaxMs, this.retryBackoffMs * 2 ** Math.min(failures, 20), leftMs));
  }

  private loadMetadata(topic: TopicState): Promise<void> {
    const staleMarks = topic.staleMarks;
    topic.refreshing ??= describeTopic(this.connection, topic.name)
      .then((description) => {
        topic.partitionCount = description.partitions.length;
        topic.batchBytes = batchBytesFor(this.batchBytes, description.configs['max.message.bytes'], this.compression);
        topic.maxMessageBytes = Number(description.configs['max.message.bytes']) || 0;
        const afterMaxMs = Number(description.configs['message.timestamp.after.max.ms']);
        topic.timestampAfterMaxMs = Number.isSafeInteger(afterMaxMs) && afterMaxMs >= 0 ? afterMaxMs : -1;
        // Marked stale while the lookup was under way: the broker may have answered before the change.
        topic.fetchedAtMs = topic.staleMarks === staleMarks ? Date.now() : 0;
        topic.refusal = null;
      })
      .finally(() => {
        topic.refreshing = null;
      });
    return topic.refreshing;
  }

  private refreshInBackground(topic: TopicState): void {
    if (topic.refreshing !== null) return;
    // At most one a retryBackoffMs: sends refused one after another (a clock far ahead, say)
    // each mark the metadata stale, and would otherwise keep a lookup always under way.
    topic.refreshNotBeforeMs = Date.now() + this.retryBackoffMs;
    this.loadMetadata(topic).catch((error: unknown) => {
      // Not again for a while: sends to a deleted topic would otherwise ask on every round trip.
      topic.refreshNotBeforeMs = Date.now() + this.retryBackoffMaxMs;
      this.logger.warn({ topic: topic.name, err: error, retryInMs: this.retryBackoffMaxMs }, 'metadata refresh failed; keeping the known partition count');
    });
  }

  private append(
    partition: PartitionState,
    timestamp: number,
    key: Buffer | null,
    value: Buffer | null,
    headers: RecordHeader[] | null,
    sizeBytes: number,
    callback: SendCallback,
    /**
     * When (performance.now()) the record was sent, null for just now: a batch it opens counts
     * its delivery budget from then.
     */
    queuedAtMs: number | null,
  ): void {
    let batch = partition.queued[partition.queued.length - 1];
    // `sizeBytes` bounds the record's encoded size, so a batch never passes batchBytes (but a
    // record too large for any batch still gets one of its own).
    const batchBytes = partition.topic.batchBytes;
    if (batch === undefined || batch.full || (batch.recordCount > 0 && batch.builder!.sizeBytes + sizeBytes > batchBytes)) {
      if (batch !== undefined) batch.full = true;
      batch = this.openBatch(partition, queuedAtMs ?? performance.now());
    }
    const builder = batch.builder!;
    const before = builder.sizeBytes;
    builder.append(timestamp, key, value, headers);
    batch.callbacks.push(callback);
    const added = builder.sizeBytes - before;
    batch.bufferedBytes += added;
    this.buffered += added;
    if (builder.sizeBytes + RECORD_FRAMING_BOUND >= batchBytes) {
      batch.full = true;
      this.scheduleDrain();
    }
  }

  private openBatch(partition: PartitionState, createdAtMs: number): ProducerBatch {
    // A partition whose batches fill up gets a full-size pooled buffer; one with a trickle of
    // records starts small (a buffer twice its last batch, pooled unless it is tiny) and grows
    // by doubling if needed.
    const headroom = partition.topic.requestHeadroom;
    const batchBytes = partition.topic.batchBytes;
    const initialBytes = Math.min(batchBytes, Math.max(BATCH_INITIAL_BYTES, 2 * partition.lastBatchBytes));
    const pooledBuffer = headroom <= POOLED_HEADROOM_BYTES && !fromNodeSlab(POOLED_HEADROOM_BYTES + initialBytes) ? this.bufferPool.take(POOLED_HEADROOM_BYTES + initialBytes) : null;
    const builder = new RecordBatchBuilder(
      pooledBuffer === null
        ? { headroom, initialCapacity: initialBytes, capacityLimit: batchBytes }
        : { headroom, buffer: pooledBuffer.subarray(POOLED_HEADROOM_BYTES - headroom), capacityLimit: batchBytes },
    );
    const batch = new ProducerBatch(partition, createdAtMs, builder, pooledBuffer);
    partition.queued.push(batch);
    this.sendable.add(partition);
    if (this.deliveryTimer === null) this.armDeliveryTimer();
    if (this.lingerMs === 0) {
      batch.ready = true;
      this.scheduleDrain();
    } else {
      batch.lingerTimer = setTimeout(() => {
        batch.lingerTimer = null;
        batch.ready = true;
        this.scheduleDrain();
      }, this.lingerMs);
    }
    return batch;
  }

  private expediteQueued(): void {
    for (const partition of this.sendable) for (const batch of partition.queued) batch.ready = true;
    this.scheduleDrain();
  }

  private flushNow(done: () => void): void {
    let remaining = 1;
    const settled = (): void => {
      if (--remaining === 0) done();
    };
    // After the sends failed with `failSoon` before this call: immediates run in order.
    if (this.failingSoon > 0) {
      remaining++;
      setImmediate(settled);
    }
    const track = (batch: ProducerBatch): void => {
      remaining++;
      (batch.settledCallbacks ??= []).push(settled);
    };
    for (const partition of this.sendable) {
      for (const batch of partition.queued) {
        batch.ready = true;
        track(batch);
      }
    }
    for (const partition of this.active) for (const batch of partition.inFlight) track(batch);
    this.scheduleDrain();
    settled();
  }

  // -------------------------------------------------------------------------------------------
  // The stream.

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  /**
   * Batches `partition` may have unacknowledged. With idempotence: 1 until the broker has
   * acknowledged one of this producer's batches there, then the window InitProducer stated,
   * and 1 again after an idle hour.
   */
  private inFlightLimit(partition: PartitionState): number {
    if (!this.idempotent) return this.maxInFlightPerPartition;
    if (partition.confirmed && partition.inFlight.length === 0 && idleFor(partition, RECONFIRM_AFTER_IDLE_MS)) {
      // Idle this long, the broker may have forgotten the producer (see RECONFIRM_AFTER_IDLE_MS).
      partition.confirmed = false;
    }
    return partition.confirmed ? Math.min(this.maxInFlightPerPartition, this.identity!.batchWindow) : 1;
  }

  /** Sends what is sendable, partition by partition in turn, within the in-flight bounds. */
  private drain(): void {
    if (this.sendable.size === 0 || this.streamState === 'backoff') return;
    if (this.connection.isClosed) {
      // A shared connection closed under the producer: nothing can be sent any more.
      this.failQueued(closedError(`the connection to ${this.connection.server}`));
      return;
    }
    if (this.idempotent && this.identity === null) {
      void this.loadIdentity();
      return;
    }
    for (const partition of [...this.sendable]) {
      if (this.inFlightById.size >= this.maxInFlight) break;
      let sent = false;
      const limit = this.inFlightLimit(partition);
      while (partition.queued.length > 0 && partition.inFlight.length < limit && this.inFlightById.size < this.maxInFlight) {
        const batch = partition.queued[0]!;
        if (!batch.ready && !batch.full && partition.queued.length === 1) break;
        if (this.idempotent && !this.takeProducerId(partition)) return;
        partition.queued.shift();
        if (!this.seal(batch)) continue;
        if (this.stream === null) this.openStream();
        partition.inFlight.push(batch);
        this.active.add(partition);
        this.write(batch);
        sent = true;
      }
      // A partition that sent goes to the back of the line: the in-flight bound is shared fairly.
      this.sendable.delete(partition);
      if (partition.queued.length > 0) this.sendable.add(partition);
      if (sent) this.rotateSticky(partition);
    }
  }

  /**
   * Gives the partition a producer id and epoch for its next batch: the producer's at its first
   * batch, or a fresh id (epoch from 0) once a long run of refused batches has used up every
   * epoch of the id it has, as Kafka's producer does (KIP-360), or the broker has refused the id
   * as unknown (it lost its metadata) or as another token's (this one was renamed). False when that fresh id is still to come: it is asked
   * for, and the drain runs again once it has arrived.
   */
  private takeProducerId(partition: PartitionState): boolean {
    const identity = this.identity!;
    if (partition.epoch >= 0 && partition.epoch <= EPOCH_MAX) return true;
    if (partition.epoch > EPOCH_MAX && partition.producerId === identity.producerId) {
      this.logger.info({ topic: partition.topic.name, partition: partition.partition, producerId: identity.producerId }, 'the partition cannot go on under this producer id (its epochs used up, or the broker does not know it); asking for a new one');
      this.identity = null;
      void this.loadIdentity();
      return false;
    }
    // A new epoch (or producer id) starts at sequence 0, and its first batch travels alone.
    partition.producerId = identity.producerId;
    partition.epoch = identity.producerEpoch;
    partition.nextSequence = 0;
    partition.confirmed = false;
    return true;
  }

  /**
   * Seals the batch once, with the partition's next sequence, and encodes its request (with a
   * correlation id it keeps across attempts). False if it failed instead.
   */
  private seal(batch: ProducerBatch): boolean {
    const partition = batch.partition;
    const builder = batch.builder!;
    if (batch.lingerTimer !== null) clearTimeout(batch.lingerTimer);
    batch.lingerTimer = null;
    try {
      if (this.idempotent) {
        batch.epoch = partition.epoch;
        builder.finish({
          producerId: partition.producerId,
          producerEpoch: partition.epoch,
          baseSequence: partition.nextSequence,
          compression: this.compression,
        });
        this.checkBatchFits(batch);
        partition.nextSequence = (partition.nextSequence + batch.recordCount) % SEQUENCE_MODULUS;
      } else {
        builder.finish({ compression: this.compression });
        this.checkBatchFits(batch);
      }
    } catch (error) {
      this.settleFailed(batch, toClientError(error));
      return false;
    }
    partition.lastBatchBytes = builder.sizeBytes;
    batch.correlationId = this.nextCorrelationId++;
    batch.request = encodeProduceRequest(builder, {
      topic: partition.topic.name,
      partition: partition.partition,
      acks: this.acks,
      correlationId: batch.correlationId,
    });
    batch.builder = null;
    return true;
  }

  private rotateSticky(partition: PartitionState): void {
    const topic = partition.topic;
    if (topic.stickyPartition === partition.partition && topic.partitionCount > 1) {
      topic.stickyPartition = randomPartition(topic.partitionCount, partition.partition);
    }
  }

  private write(batch: ProducerBatch): void {
    batch.sentAtMs = performance.now();
    batch.attempts++;
    this.inFlightById.set(batch.correlationId, batch);
    // grpc-js frames the request in the five bytes in front of it (grpc-framing.ts), the same
    // prefix each attempt; `request` itself is never modified, so every attempt sends the same
    // bytes (and an attempt still queued on a dropped stream stays valid).
    this.stream!.write(batch.request!);
    this.armRequestTimer();
  }

  private openStream(): void {
    const stream = this.connection.bidiStream(methods.produceStreamEncoded);
    this.stream = stream;
    this.streamState = 'open';
    stream.on('data', (response: strata.v1.ProduceResponse) => this.onResponse(stream, response));
    stream.on('error', (error: Error) => this.onStreamEnded(stream, toClientError(error)));
    stream.on('status', (status: { code: number }) => {
      if (status.code === 0) this.onStreamEnded(stream, new StrataClientError('UNAVAILABLE', 'the broker ended the produce stream'));
    });
  }

  private onStreamEnded(stream: ProduceStream, error: StrataClientError): void {
    if (stream !== this.stream) return;
    if (this.inFlightById.size === 0) {
      this.dropStream();
      this.scheduleDrain();
      return;
    }
    if (isRetriable(error) || isBrokenStream(error)) {
      this.restart(error);
      return;
    }
    // The stream itself was refused (authentication, permissions...): every batch on it fails.
    this.dropStream();
    for (const partition of [...this.active]) this.failInFlight(partition, error);
    this.scheduleDrain();
  }

  private dropStream(): void {
    const stream = this.stream;
    this.stream = null;
    this.streamState = 'none';
    this.inFlightById.clear();
    this.clearRequestTimer();
    stream?.cancel();
  }

  private onResponse(stream: ProduceStream, response: strata.v1.ProduceResponse): void {
    if (stream !== this.stream) return;
    const batch = this.inFlightById.get(response.correlationId.toNumber());
    if (batch === undefined) return; // failed meanwhile, or from before a restart
    this.inFlightById.delete(batch.correlationId);
    if (response.error) this.onItemError(batch, fromItemError(response.error));
    else this.onAcknowledged(batch, response);
    this.scheduleDrain();
  }

  private onAcknowledged(batch: ProducerBatch, response: strata.v1.ProduceResponse): void {
    const partition = batch.partition;
    const appended = response.batches[0];
    let baseOffset: number;
    try {
      if (appended === undefined || appended.partition !== partition.partition) {
        throw new StrataClientError('INTERNAL', `the broker acknowledged a batch for ${partition.topic.name}-${partition.partition} without its partition`);
      }
      baseOffset = longToNumber(appended.baseOffset, 'base_offset');
      const lastOffset = longToNumber(appended.lastOffset, 'last_offset');
      if (baseOffset >= 0 && lastOffset - baseOffset + 1 !== batch.recordCount) {
        throw new StrataClientError('INTERNAL', `the broker acknowledged offsets ${baseOffset}..${lastOffset} for a batch of ${batch.recordCount} records`);
      }
    } catch (error) {
      // The broker answered, but not as it must: what it did with this batch and the later ones is unknown.
      this.failFrom(batch, toClientError(error), 'unknown');
      return;
    }
    if (this.consecutiveFailures > 0) {
      const recovered: ProducerRecoveredEvent = { failedAttempts: this.consecutiveFailures };
      this.consecutiveFailures = 0;
      this.notify('recovered', recovered);
    }
    this.lastFailure = null;
    // Only an answer at the current epoch confirms it. After a refusal raised the epoch, the
    // batches sent before it are still answered at the old one; were the new epoch's batches
    // sent alongside them, a broken stream would get their resends refused as fenced, though
    // the broker wrote them (Kafka, too, bumps the epoch only once those are done).
    if (batch.epoch === partition.epoch) {
      partition.confirmed = true;
      partition.answeredAtMs = performance.now();
      partition.answeredAtWallMs = Date.now();
    }
    removeFrom(partition.inFlight, batch);
    if (partition.inFlight.length === 0) this.active.delete(partition);
    const callbacks = batch.callbacks;
    for (let index = 0; index < callbacks.length; index++) {
      this.complete(callbacks[index]!, null, { partition: partition.partition, offset: baseOffset < 0 ? -1 : baseOffset + index });
    }
    this.release(batch);
    // Acknowledged: the broker has the bytes, nothing reads the buffer any more.
    if (batch.pooledBuffer !== null) this.bufferPool.give(batch.pooledBuffer);
  }

  private onItemError(batch: ProducerBatch, error: StrataClientError): void {
    const partition = batch.partition;
    if (isRetriable(error)) {
      this.restart(error);
      return;
    }
    if (this.idempotent && error.code === 'FAILED_PRECONDITION' && error.message.includes('out-of-order sequence') && partition.inFlight[0] !== batch) {
      // An earlier batch of this partition is unacknowledged, so it did not get through before
      // this one (a lost answer or a retriable failure): resend all in order, same sequences.
      this.restart(error);
      return;
    }
    // A vanished topic, a lowered max.message.bytes or message.timestamp.after.max.ms: fetch the metadata again.
    if (error.code === 'NOT_FOUND' || error.code === 'RESOURCE_EXHAUSTED' || error.code === 'INVALID_ARGUMENT') partition.topic.markStale();
    // A partition fenced by a failed write or fdatasync may keep, and serve after a recovery,
    // what it wrote of this batch and of the ones sent after it.
    this.failFrom(batch, error, isPartitionFence(error) ? 'fenced' : 'refused');
    // Every epoch of an id the broker does not know, or gave another token, is refused: the
    // partition takes a new id.
    if (this.idempotent && isRefusedProducerId(error)) partition.epoch = EPOCH_MAX + 1;
  }

  /**
   * Drops the stream and, after a backoff, resends every unacknowledged batch on a new one in
   * sequence order. Partitions whose oldest batch has spent its budget fail instead.
   */
  private restart(reason: StrataClientError): void {
    if (this.streamState === 'backoff') return;
    this.dropStream();
    this.streamState = 'backoff';
    this.lastFailure = reason;
    const now = performance.now();
    this.failSpent(now, reason);
    this.expireQueued(now, reason);
    const jittered = Math.min(this.retryBackoffMaxMs, this.retryBackoffMs * 2 ** Math.min(this.consecutiveFailures, 20)) * (0.8 + 0.4 * Math.random());
    const delayMs = Math.min(TIMER_DELAY_MAX_MS, jittered);
    this.consecutiveFailures++;
    this.logger.warn({ code: reason.code, reason: reason.message, delayMs: Math.round(delayMs), partitions: this.active.size }, 'produce stream failed; resending unacknowledged batches');
    const retrying: ProducerRetryEvent = { code: reason.code, reason: reason.message, fromBroker: reason.fromBroker, delayMs: Math.round(delayMs), attempt: this.consecutiveFailures, partitions: this.active.size };
    this.notify('retrying', retrying);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.streamState = 'none';
      if (this.connection.isClosed) {
        const closed = closedError(`the connection to ${this.connection.server}`);
        for (const partition of [...this.active]) this.failInFlight(partition, closed);
        this.failQueued(closed);
      } else if (this.active.size > 0) {
        this.openStream();
        for (const partition of this.active) for (const batch of partition.inFlight) this.write(batch);
      }
      this.scheduleDrain();
    }, delayMs);
  }

  /**
   * Fails, on each partition whose oldest unacknowledged batch has spent its budget (`retries`
   * resends, or `deliveryTimeoutMs` since it was opened), that batch and the ones behind it. For
   * batches on no stream: at a restart, or while the producer waits to start another.
   */
  private failSpent(now: number, reason: StrataClientError): void {
    for (const partition of [...this.active]) {
      const oldest = partition.inFlight[0]!;
      const elapsedMs = now - oldest.createdAtMs;
      if (oldest.attempts > this.retries || elapsedMs >= this.deliveryTimeoutMs) {
        const gaveUp = `gave up on ${partition.topic.name}-${partition.partition} after ${plural(oldest.attempts, 'attempt')} over ${Math.round(elapsedMs)} ms, the last of which failed with: ${reason.message}; its records may have been written, as only the answer may have been lost`;
        this.failFrom(oldest, new StrataClientError(reason.code, gaveUp, { cause: reason }), 'unanswered');
      }
    }
  }

  /**
   * Arms the delivery timer for the earliest `deliveryTimeoutMs` deadline of a batch not yet
   * settled (the oldest batch of each partition, in flight or queued), if there is one. Without
   * it a budget would be checked only when the stream fails: a broker that hangs without closing
   * the connection fails a stream only after `requestTimeoutMs` (30 s by default), and every
   * restart adds a backoff, so a short deliveryTimeoutMs was overrun many times over.
   */
  private armDeliveryTimer(): void {
    if (this.deliveryTimer !== null) clearTimeout(this.deliveryTimer);
    this.deliveryTimer = null;
    if (!Number.isFinite(this.deliveryTimeoutMs)) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const partition of this.active) earliest = Math.min(earliest, partition.inFlight[0]!.createdAtMs);
    for (const partition of this.sendable) earliest = Math.min(earliest, partition.queued[0]?.createdAtMs ?? earliest);
    if (earliest === Number.POSITIVE_INFINITY) return;
    const dueInMs = Math.max(0, earliest + this.deliveryTimeoutMs - performance.now());
    this.deliveryTimer = setTimeout(() => this.onDeliveryDeadline(), Math.min(TIMER_DELAY_MAX_MS, dueInMs + 1));
  }

  /**
   * A batch's delivery timeout has passed. One in flight on a stream that has not answered it:
   * the stream is given up as with a request timeout (restart fails the spent batches and
   * resends the rest). One waiting for a stream, or queued: it fails now.
   */
  private onDeliveryDeadline(): void {
    this.deliveryTimer = null;
    const now = performance.now();
    const last = this.lastFailure === null ? '' : `; the last failure was: ${this.lastFailure.message}`;
    const reason = new StrataClientError('DEADLINE_EXCEEDED', `no answer within deliveryTimeoutMs (${this.deliveryTimeoutMs} ms)${last}`);
    const spentInFlight = [...this.active].some((partition) => now - partition.inFlight[0]!.createdAtMs >= this.deliveryTimeoutMs);
    if (spentInFlight && this.streamState === 'open') {
      // The stream's own failure stays the last one: the next deadline's message names it, not this.
      const previous = this.lastFailure;
      this.restart(reason);
      this.lastFailure = previous;
    } else {
      this.failSpent(now, reason);
      this.expireQueued(now, reason);
    }
    this.armDeliveryTimer();
  }

  /**
   * Fails queued batches that have waited `deliveryTimeoutMs` without being sent, as Kafka's
   * accumulator expires them: without this, a partition that sends one batch at a time after a
   * failure would fail them one per backoff, and close() could take hours. Never sent, they
   * have no sequence number yet, so dropping them leaves no gap.
   */
  private expireQueued(now: number, reason: StrataClientError): void {
    for (const partition of [...this.sendable]) {
      while (partition.queued.length > 0 && now - partition.queued[0]!.createdAtMs >= this.deliveryTimeoutMs) {
        const batch = partition.queued.shift()!;
        if (batch.lingerTimer !== null) clearTimeout(batch.lingerTimer);
        const message = `not sent within deliveryTimeoutMs (${this.deliveryTimeoutMs} ms): ${partition.topic.name}-${partition.partition} could not be written, the last attempt failing with: ${reason.message}; not written`;
        this.settleFailed(batch, new StrataClientError(reason.code, message, { cause: reason }));
      }
      if (partition.queued.length === 0) this.sendable.delete(partition);
    }
  }

  /**
   * Fails `batch` and the partition's later unacknowledged batches (the broker refuses those:
   * their sequences would leave a gap), then restarts the partition at a new epoch, sequence 0.
   * `how` says what became of `batch`, and so what the later ones are told: refused (they were
   * not written), or unanswered, fenced or answered wrongly (they may have been).
   */
  private failFrom(batch: ProducerBatch, error: StrataClientError, how: 'refused' | 'unanswered' | 'fenced' | 'unknown'): void {
    const partition = batch.partition;
    const index = partition.inFlight.indexOf(batch);
    // Idempotent: this batch and every later one of the partition (the broker would refuse
    // them). Otherwise just this one; the later ones are still resent.
    const failed = index < 0 ? [batch] : partition.inFlight.splice(index, this.idempotent ? partition.inFlight.length - index : 1);
    if (partition.inFlight.length === 0) this.active.delete(partition);
    for (const each of failed) {
      if (this.inFlightById.get(each.correlationId) === each) this.inFlightById.delete(each.correlationId);
      const cause = each === batch || !this.idempotent ? error : new StrataClientError(error.code, laterBatchFailure(`${partition.topic.name}-${partition.partition}`, how, error), { cause: error });
      this.settleFailed(each, cause);
    }
    if (this.idempotent && index >= 0) {
      partition.epoch++;
      partition.nextSequence = 0;
      partition.confirmed = false;
    }
  }

  /** Fails every unacknowledged batch of the partition (nothing will resend them). */
  private failInFlight(partition: PartitionState, error: StrataClientError): void {
    // Sent but unanswered: the broker may have written them.
    while (partition.inFlight.length > 0) this.failFrom(partition.inFlight[0]!, error, 'unanswered');
  }

  /**
   * Fails a batch's sends. Their callbacks run in a microtask, after the producer's state is
   * consistent again: a callback may well send again (a retry), from any failure path.
   */
  private settleFailed(batch: ProducerBatch, error: StrataClientError): void {
    const callbacks = batch.callbacks;
    queueMicrotask(() => {
      for (const callback of callbacks) this.complete(callback, error, undefined);
    });
    this.release(batch);
  }

  /** Returns a settled batch's bytes to the buffer and tells flushes. */
  private release(batch: ProducerBatch): void {
    this.buffered -= batch.bufferedBytes;
    batch.bufferedBytes = 0;
    batch.request = null;
    const waiter = this.roomWaiter;
    this.roomWaiter = null;
    waiter?.();
    const callbacks = batch.settledCallbacks;
    batch.settledCallbacks = null;
    if (callbacks !== null) for (const callback of callbacks) callback();
  }

  // -------------------------------------------------------------------------------------------
  // Producer id and request deadlines.

  private async loadIdentity(): Promise<void> {
    if (this.identityLoading || this.identity !== null) return;
    this.identityLoading = true;
    const startedAt = performance.now();
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const response = await this.connection.unary(methods.initProducer, v1.InitProducerRequest.create());
          this.identity = {
            producerId: longToNumber(response.producerId, 'producer_id'),
            producerEpoch: response.producerEpoch,
            batchWindow: response.maxInFlightBatches > 0 ? response.maxInFlightBatches : UNSTATED_BATCH_WINDOW,
          };
          this.scheduleDrain();
          return;
        } catch (error) {
          const failure = toClientError(error);
          if (!isRetriable(failure) || performance.now() - startedAt >= this.deliveryTimeoutMs || this.connection.isClosed) {
            this.failQueued(new StrataClientError(failure.code, `could not get a producer id: ${failure.message}`, { cause: failure }));
            return;
          }
          await sleep(Math.min(this.retryBackoffMaxMs, this.retryBackoffMs * 2 ** Math.min(attempt, 20)));
        }
      }
    } finally {
      this.identityLoading = false;
    }
  }

  private failQueued(error: StrataClientError): void {
    const partitions = [...this.sendable];
    this.sendable.clear();
    for (const partition of partitions) {
      for (const batch of partition.queued.splice(0)) {
        if (batch.lingerTimer !== null) clearTimeout(batch.lingerTimer);
        this.settleFailed(batch, error);
      }
    }
  }

  private armRequestTimer(): void {
    if (this.requestTimer !== null || this.inFlightById.size === 0) return;
    const oldest = this.inFlightById.values().next().value!;
    const dueInMs = Math.max(0, oldest.sentAtMs + this.requestTimeoutMs - performance.now());
    this.requestTimer = setTimeout(() => {
      this.requestTimer = null;
      const first = this.inFlightById.values().next().value;
      if (first === undefined) return;
      if (performance.now() - first.sentAtMs >= this.requestTimeoutMs) {
        this.restart(new StrataClientError('DEADLINE_EXCEEDED', `no answer to a produce request within ${this.requestTimeoutMs} ms`));
      } else {
        this.armRequestTimer();
      }
    }, Math.min(TIMER_DELAY_MAX_MS, dueInMs + 1));
  }

  private clearRequestTimer(): void {
    if (this.requestTimer !== null) clearTimeout(this.requestTimer);
    this.requestTimer = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

function toBytes(value: Bytes | null | undefined, field: string): Buffer | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw invalidArgument(`${field} must be a string, Buffer, Uint8Array or null`);
}

/** Headers as the codec takes them: UTF-8 string keys, Buffer values. */
function toHeaders(given: NonNullable<ProducerRecord['headers']>): RecordHeader[] {
  const headers: RecordHeader[] = [];
  if (Array.isArray(given)) {
    for (const header of given as readonly { key: string; value: Bytes | null }[]) headers.push(toHeader(header.key, header.value));
  } else {
    // Own keys only (a prototype's enumerable members are not headers), __proto__ included.
    for (const [name, value] of Object.entries(given as Record<string, Bytes | null>)) headers.push(toHeader(name, value));
  }
  return headers;
}

function toHeader(key: string, value: Bytes | null | undefined): RecordHeader {
  if (typeof key !== 'string') throw invalidArgument('header keys must be strings');
  return { key, value: toBytes(value, `header "${key}"`) };
}

/**
 * Whether a wall-clock time `then` is `ms` or more before `now`. One after `now` (the system
 * time stepped back past it) counts too: waiting for its age would wait out the step, hours.
 * The producer reads Date.now() once per record for its timestamp, and these checks share it.
 */
function wallAgedPast(now: number, then: number, ms: number): boolean {
  return now - then >= ms || now < then;
}

/**
 * Whether `now` is before `until`, a wall-clock time set at most `bound` ms ahead: further ahead,
 * the system time stepped back since, and the wait is over rather than lengthened by the step.
 */
function wallBefore(now: number, until: number, bound: number): boolean {
  return now < until && until - now <= bound;
}

/** Whether `partition`'s last answer is `ms` old or more on either clock. */
function idleFor(partition: PartitionState, ms: number): boolean {
  return performance.now() - partition.answeredAtMs >= ms || Date.now() - partition.answeredAtWallMs >= ms;
}

/** An upper bound of the record's size in a batch (for batchBytes and bufferBytes). */
function recordSize(key: Buffer | null, value: Buffer | null, headers: RecordHeader[] | null): number {
  let size = RECORD_FRAMING_BOUND + (key?.length ?? 0) + (value?.length ?? 0);
  if (headers !== null) {
    for (const header of headers) size += HEADER_OVERHEAD_BYTES + Buffer.byteLength(header.key, 'utf8') + (header.value?.length ?? 0);
  }
  return size;
}

/** batchBytes for a topic: the producer's, or less to stay within the topic's max.message.bytes. */
function batchBytesFor(producerBatchBytes: number, maxMessageBytes: string | undefined, compression: CompressionName): number {
  const limit = Number(maxMessageBytes);
  if (!Number.isSafeInteger(limit) || limit <= 0) return producerBatchBytes;
  // gzip can make incompressible records a little larger (zlib's deflateBound, plus its wrapper).
  const growth = compression === 'gzip' ? Math.ceil(limit / 4096) + Math.ceil(limit / 16384) + 64 : 0;
  return Math.max(1, Math.min(producerBatchBytes, limit - growth));
}

/** A random partition, other than `avoid` when there is a choice (-1: any). */
function randomPartition(count: number, avoid: number): number {
  if (count <= 1) return 0;
  if (avoid < 0 || avoid >= count) return Math.floor(Math.random() * count);
  const pick = Math.floor(Math.random() * (count - 1));
  return pick >= avoid ? pick + 1 : pick;
}

function removeFrom<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function nonNegative(value: number, name: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) throw invalidArgument(`${name} must be a non-negative number, got ${value}`);
  return value;
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value <= 0) throw invalidArgument(`${name} must be a positive integer, got ${value}`);
  return value;
}

/** Half-closes the stream and waits (bounded) for the broker to end it. */
function endStream(stream: ProduceStream, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      stream.cancel();
      resolve();
    }, timeoutMs);
    stream.once('status', () => {
      clearTimeout(timer);
      resolve();
    });
    stream.end();
  });
}

/** What a batch sent after `partition`'s failed one is told, by `how` that one failed. */
function laterBatchFailure(partition: string, how: 'refused' | 'unanswered' | 'fenced' | 'unknown', error: StrataClientError): string {
  switch (how) {
    case 'refused':
      return `not written: an earlier batch of ${partition} was refused (${error.message})`;
    case 'unanswered':
      return `outcome unknown: an earlier batch of ${partition} failed without an answer (${error.message}); these records may have been written too`;
    case 'fenced':
      return `outcome unknown: an earlier batch of ${partition} was refused by the fenced partition, which may keep what it wrote of these records too (${error.message})`;
    case 'unknown':
      return `outcome unknown: the broker's answer to an earlier batch of ${partition} was not valid (${error.message}); these records may have been written too`;
  }
}

/** A refusal from a fenced partition ("partition T-P is fenced: ...", FAILED_PRECONDITION): what it wrote before the fence may stay. */
function isPartitionFence(error: StrataClientError): boolean {
  return error.code === 'FAILED_PRECONDITION' && /^partition \S+ is fenced: /.test(error.message);
}

/**
 * The broker will not take batches under this producer id again: it does not know the id (it
 * lost its metadata), or issued it to a token of another name (the producer's token was renamed
 * in the broker's tokens file). The partition then takes a new id.
 */
function isRefusedProducerId(error: StrataClientError): boolean {
  if (error.code === 'INVALID_ARGUMENT') return /^producer id \d+ was never handed out/.test(error.message);
  return error.code === 'PERMISSION_DENIED' && /may not produce as producer id \d+: InitProducer issued that id to another token/.test(error.message);
}

/**
 * A record refused by the topic's limits as this producer knows them: the topic's metadata is
 * read again at the next send, since an operator may have raised the limit meanwhile.
 */
function refused(topic: TopicState, code: 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED', message: string): StrataClientError {
  topic.markStale();
  return new StrataClientError(code, message);
}
