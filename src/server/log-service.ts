/**
 * Handlers of `strata.v1.Log`: produce (unary and pipelined stream), fetch (long poll),
 * subscribe (server push with flow control), list offsets and producer ids. They check and
 * convert wire messages and call the broker; errors go through the one status table.
 */
import { setMaxListeners } from 'node:events';
import {
  status,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Acks, Broker, ProduceResult } from '../broker/broker.js';
import { FETCH_BYTES_DEFAULT, FETCH_WAIT_MAX_MS, fetchWithWait, resolveStart, waitForHighWatermark } from '../broker/fetch.js';
import { ErrorCode, StrataError, isStrataError, storedBatchError } from '../common/errors.js';
import { FETCH_BYTES_MAX } from '../common/request-limits.js';
import { strata } from '../generated/strata.js';
import type { PartitionLog, ReadResult } from '../storage/partition-log.js';
import { NO_PRODUCER_ID, forEachBatch, nextOffsetAfter, readProducerId } from '../storage/record-batch.js';
import { checkDecoded } from './malformed-request.js';
import type { BrokerMetrics } from './metrics.js';
import { encodeRawFetchResponse, encodeRawSubscribeResponse } from './raw-responses.js';
import { encodeRecordsFetchResponse, encodeRecordsSubscribeResponse } from './record-responses.js';
import { checkProducerEpoch, nonNegative, startFromWire, toLong, toSafeNumber } from './convert.js';
import type { IncomingProduceRequest } from './produce-request-decoder.js';
import { invalidArgument, toGrpcFailure, toServiceError } from './status.js';
import { type Caller, callCaller, callScope } from './token-auth.js';
import { pipelinedStream } from './pipelined-stream.js';
import type { RequestMemory } from './request-memory.js';
import { refuseIfStalledAtStop } from './stalled-subscription.js';
import { parseWireRecords } from './wire-records.js';
import { type HandlerContext, logRequestFailure, unaryHandler } from './unary-handler.js';

const v1 = strata.v1;

/** Requests a ProduceStream may have in flight before the server stops reading from it. */
export const PRODUCE_STREAM_IN_FLIGHT_MAX = 256;
/** Bytes of requests a ProduceStream may have in flight before the server stops reading from it. */
const PRODUCE_STREAM_IN_FLIGHT_BYTES_MAX = 64 * 1024 * 1024;
/** How long an idle subscription waits before re-checking its partition (a safety net only). */
const SUBSCRIBE_IDLE_CHECK_MS = 30_000;

const ACKS: Readonly<Record<number, Acks>> = {
  [v1.Acks.ACKS_ALL]: 'all',
  [v1.Acks.ACKS_LEADER]: 'leader',
  [v1.Acks.ACKS_NONE]: 'none',
};

function checkTopic(topic: string | null | undefined): string {
  if (!topic) throw invalidArgument('topic is required');
  return topic;
}

function checkMaxBytes(value: number, field: string): number {
  if (value === 0) return FETCH_BYTES_DEFAULT;
  nonNegative(value, field);
  if (value > FETCH_BYTES_MAX) throw invalidArgument(`${field} ${value} exceeds the limit of ${FETCH_BYTES_MAX}`);
  return value;
}

async function produce(broker: Broker, incoming: IncomingProduceRequest, { scope, name: tokenName }: Caller): Promise<strata.v1.ProduceResponse> {
  const request = incoming.message;
  const topic = checkTopic(request.topic);
  scope.checkTopic(topic);
  const partition = request.partition ?? null;
  if (partition !== null) nonNegative(partition, 'partition');
  const acks = ACKS[request.acks];
  if (acks === undefined) throw invalidArgument(`acks ${request.acks} is not one of ACKS_ALL, ACKS_LEADER, ACKS_NONE`);
  const batch = request.batch;
  const hasBatch = batch !== null && batch !== undefined && batch.length > 0;
  const hasRecords = incoming.recordRanges.length > 0;
  if (hasBatch === hasRecords) throw invalidArgument(hasBatch ? 'give either records or a batch, not both' : 'a produce request needs records or a batch');
  let result: ProduceResult;
  if (hasBatch) {
    if (producerFromWire(request) !== null) {
      throw invalidArgument('producer_id is for the records path; a raw batch carries its producer fields in its header');
    }
    const batches = Buffer.from(batch.buffer, batch.byteOffset, batch.byteLength);
    // Every whole batch, not only the first: an idempotent batch must come alone (the append
    // refuses it otherwise), but one under another token's id is refused as that, whatever else
    // the request holds.
    if (tokenName !== null) forEachBatch(batches, (position) => broker.checkProducerIdOwner(readProducerId(batches, position), tokenName));
    result = await broker.produceBatches(topic, partition, batches, acks);
  } else {
    const producer = producerFromWire(request);
    if (producer !== null) broker.checkProducerIdOwner(producer.producerId, tokenName);
    const records = parseWireRecords(incoming.source, incoming.recordRanges);
    result = await broker.produceRecords(topic, partition, records, acks, producer);
  }
  return v1.ProduceResponse.create({
    correlationId: request.correlationId,
    batches: result.batches.map((appended) =>
      v1.AppendedBatch.create({
        partition: appended.partition,
        baseOffset: toLong(appended.baseOffset),
        lastOffset: toLong(appended.lastOffset),
        duplicate: appended.duplicate,
      }),
    ),
    logAppendTimeMs: toLong(result.logAppendTimeMs),
  });
}

/** The idempotent producer fields of a records-path request; null for a producer that is not idempotent. */
function producerFromWire(request: strata.v1.ProduceRequest): { producerId: number; producerEpoch: number; baseSequence: number } | null {
  if (request.producerId === null || request.producerId === undefined) return null;
  const producerId = toSafeNumber(request.producerId, 'producer_id');
  if (producerId === NO_PRODUCER_ID) return null;
  // Any other negative id is a client bug; taken as "not idempotent", its retries would be
  // appended twice without a word.
  if (producerId < 0) {
    throw invalidArgument(`producer_id ${producerId} is not valid: use an id from InitProducer (1 or more), or -1 or no producer_id for a producer that is not idempotent`);
  }
  return { producerId, producerEpoch: checkProducerEpoch(request.producerEpoch), baseSequence: nonNegative(request.baseSequence, 'base_sequence') };
}

/**
 * A signal that aborts when the client cancels `call` or the server starts to stop. `release`
 * must be called when the call ends: it removes the listener from the long-lived `stopping`
 * signal (AbortSignal.any would keep every call's signal alive on it: a leak per request).
 */
function callSignal(call: NodeJS.EventEmitter, stopping: AbortSignal): { signal: AbortSignal; cancelled(): boolean; release(): void } {
  const controller = new AbortController();
  let cancelled = false;
  const onStopping = (): void => controller.abort();
  const onCancelled = (): void => {
    cancelled = true;
    controller.abort();
  };
  if (stopping.aborted) controller.abort();
  else stopping.addEventListener('abort', onStopping, { once: true });
  call.once('cancelled', onCancelled);
  return {
    signal: controller.signal,
    cancelled: () => cancelled,
    release: () => {
      stopping.removeEventListener('abort', onStopping);
      call.removeListener('cancelled', onCancelled);
    },
  };
}

/**
 * `stopping` aborts when the server begins to shut down: long polls then answer with what they
 * have and subscriptions end with UNAVAILABLE, so a graceful shutdown is not held up by them.
 * `produceMemory` counts the bytes of every produce request until it is answered.
 */
export function logServiceHandlers(broker: Broker, context: HandlerContext, stopping: AbortSignal, produceMemory: RequestMemory | null = null): UntypedServiceImplementation {
  return {
    initProducer: unaryHandler(context, 'InitProducer', async (_request: strata.v1.InitProducerRequest, call: ServerUnaryCall<strata.v1.InitProducerRequest, strata.v1.InitProducerResponse>) => {
      // On a broker with tokens the id is the caller's token's: other tokens' produces under it are refused.
      const { producerId, producerEpoch, maxInFlightBatches } = await broker.initProducer(callCaller(context.authenticator, call.metadata).name);
      return v1.InitProducerResponse.create({ producerId: toLong(producerId), producerEpoch, maxInFlightBatches });
    }),

    produce: unaryHandler(context, 'Produce', async (request: IncomingProduceRequest, call: ServerUnaryCall<IncomingProduceRequest, strata.v1.ProduceResponse>) => {
      const bytes = request.source.length;
      produceMemory?.take(bytes);
      try {
        return await produce(broker, request, callCaller(context.authenticator, call.metadata));
      } finally {
        produceMemory?.give(bytes);
      }
    }),

    produceStream: pipelinedStream(context, stopping, {
      method: 'ProduceStream',
      inFlightMax: PRODUCE_STREAM_IN_FLIGHT_MAX,
      inFlightBytesMax: PRODUCE_STREAM_IN_FLIGHT_BYTES_MAX,
      requestBytes: (request: IncomingProduceRequest) => request.source.length,
      sharedMemory: produceMemory,
      handle: (request: IncomingProduceRequest, call) => produce(broker, request, callCaller(context.authenticator, call.metadata)),
      failed: (request, code, message, strataError) => v1.ProduceResponse.create({ correlationId: request.message.correlationId, error: v1.ItemError.create({ code, message, strataError }) }),
    }),

    fetch: unaryHandler(context, 'Fetch', async (request: strata.v1.FetchRequest, call: ServerUnaryCall<strata.v1.FetchRequest, strata.v1.FetchResponse | Buffer>) => {
      const topic = checkTopic(request.topic);
      callScope(context.authenticator, call.metadata).checkTopic(topic);
      const partition = nonNegative(request.partition, 'partition');
      const offset = nonNegative(toSafeNumber(request.offset, 'offset'), 'offset');
      const maxBytes = checkMaxBytes(request.maxBytes, 'max_bytes');
      const maxWaitMs = nonNegative(request.maxWaitMs, 'max_wait_ms');
      if (maxWaitMs > FETCH_WAIT_MAX_MS) throw invalidArgument(`max_wait_ms ${maxWaitMs} exceeds the limit of ${FETCH_WAIT_MAX_MS}`);
      const minBytes = nonNegative(request.minBytes, 'min_bytes');
      const log = broker.partitionLog(topic, partition);
      const ended = callSignal(call, stopping);
      let result;
      try {
        result = await fetchWithWait(log, { offset, maxBytes, minBytes, maxWaitMs, signal: ended.signal });
      } finally {
        ended.release();
      }
      // Nobody is left to answer: nothing is read into a response or counted as served.
      if (ended.cancelled()) return v1.FetchResponse.create();
      const fields = { highWatermark: result.highWatermark, logStartOffset: result.logStartOffset };
      if (request.raw) {
        const nextOffset = nextOffsetAfter(result.batches, offset);
        log.noteServed(result.batches.length, nextOffset - offset);
        return encodeRawFetchResponse(result.batches, result.headroom, { ...fields, nextOffset });
      }
      // Fewer batches than were read when gzip ones inflate past max_bytes (record-responses.ts).
      let decoded;
      try {
        decoded = await encodeRecordsFetchResponse(result.batches, offset, maxBytes, fields);
      } catch (error) {
        throw storedBatchError(error, `partition ${log.name}`);
      }
      log.noteServed(decoded.included.length, decoded.nextOffset - offset);
      return decoded.message;
    }),

    subscribe: (call: ServerWritableStream<strata.v1.SubscribeRequest, strata.v1.SubscribeResponse | Buffer>) => {
      const ended = callSignal(call, stopping);
      context.metrics?.activeCalls.inc({ method: 'Subscribe' });
      call.once('close', () => context.metrics?.activeCalls.dec({ method: 'Subscribe' }));
      // A subscription ends when the client cancels it, when the broker stops (it then ended
      // without an error), or with the error that ended it.
      const ending = subscribe(broker, call, ended.signal, context).then(() => ({ failed: false as const }), (error: unknown) => ({ failed: true as const, error }));
      void ending.then((end) => {
        ended.release();
        const cancelled = ended.cancelled();
        const failure = end.failed ? toGrpcFailure(end.error) : null;
        // A failure is counted and logged even when the client has gone, as a unary call's is:
        // a read that fails as its reader leaves still failed.
        if (failure !== null) {
          context.metrics?.countError('Subscribe', failure.strataCode);
          logRequestFailure(context, 'Subscribe', failure, (end as { error: unknown }).error, call);
        }
        if (cancelled) return countSubscribeEnd(context.metrics, status.CANCELLED);
        const answer = failure ?? toGrpcFailure(new StrataError(ErrorCode.UNAVAILABLE, 'the broker is shutting down; subscribe again from next_offset'));
        countSubscribeEnd(context.metrics, answer.code);
        call.emit('error', toServiceError(answer));
        refuseIfStalledAtStop(call, stopping);
      });
    },

    listOffsets: unaryHandler(context, 'ListOffsets', async (request: strata.v1.ListOffsetsRequest, call: ServerUnaryCall<strata.v1.ListOffsetsRequest, strata.v1.ListOffsetsResponse>) => {
      const topic = checkTopic(request.topic);
      callScope(context.authenticator, call.metadata).checkTopic(topic);
      const log = broker.partitionLog(topic, nonNegative(request.partition, 'partition'));
      const offset = await resolveStart(log, startFromWire(request.position, 'latest'));
      return v1.ListOffsetsResponse.create({
        offset: toLong(offset),
        logStartOffset: toLong(log.logStartOffset),
        highWatermark: toLong(log.highWatermark),
      });
    }),
  };
}

/**
 * Counts a Subscribe once, when it ends, in `strata_requests_total` with its final code: the
 * error that ended it (NOT_FOUND, INVALID_ARGUMENT, ...), UNAVAILABLE when the broker stopped
 * it, CANCELLED when the client did (the usual end of a consumer that stops; those are expected,
 * not failures). Its duration is left out of `strata_request_duration_seconds`: a subscription
 * lasts as long as its consumer wants, and would swamp the latency of the calls that answer.
 */
function countSubscribeEnd(metrics: BrokerMetrics | null, code: status): void {
  metrics?.countRequest('Subscribe', code);
}

async function subscribe(
  broker: Broker,
  call: ServerWritableStream<strata.v1.SubscribeRequest, strata.v1.SubscribeResponse | Buffer>,
  signal: AbortSignal,
  context: HandlerContext,
): Promise<void> {
  const request = checkDecoded(call.request);
  const topic = checkTopic(request.topic);
  callScope(context.authenticator, call.metadata).checkTopic(topic);
  const maxBytes = checkMaxBytes(request.maxBytes, 'max_bytes');
  broker.checkTopicIncarnation(topic, nonNegative(toSafeNumber(request.topicCreatedAtMs, 'topic_created_at_ms'), 'topic_created_at_ms'));
  const partitions = request.partitions.length > 0 ? [...new Set(request.partitions)] : [...Array(broker.partitionCount(topic)).keys()];
  const start = startFromWire(request.start, 'latest');
  const logs = partitions.map((partition) => broker.partitionLog(topic, nonNegative(partition, 'partitions[]')));
  const offsets = await Promise.all(logs.map((log) => resolveStart(log, start)));
  // One partition that fails ends the call: the others stop following before the error is sent
  // (left running, they would go on reading into a closed stream). Every follower waits on this
  // signal, so it may hold a listener per partition: hundreds are normal (Node warns past 10).
  const following = new AbortController();
  setMaxListeners(0, following.signal);
  const sendWindow = new SendWindow(call, maxBytes, context.metrics);
  const stopFollowing = (): void => {
    following.abort();
    sendWindow.wakeAll();
  };
  // Already aborted (the client cancelled while the start offsets were looked up, or the broker
  // is stopping): a listener added now would never run.
  if (signal.aborted) stopFollowing();
  signal.addEventListener('abort', stopFollowing, { once: true });
  // Tokens read again (SIGHUP): a token revoked, or no longer allowed this topic, ends the
  // subscription with that refusal, as a new call would get, rather than read on until it ends.
  let revoked: { error: unknown } | null = null;
  const checkToken = (): void => {
    try {
      callScope(context.authenticator, call.metadata).checkTopic(topic);
    } catch (error) {
      revoked ??= { error };
      stopFollowing();
    }
  };
  const stopOnRevoke = context.authenticator?.onReload(checkToken);
  // Once more now: a reload while the start offsets were looked up came before the listener.
  if (context.authenticator) checkToken();
  try {
    const outcomes = await Promise.allSettled(
      logs.map((log, index) => {
        const follower: PartitionFollower = { partition: partitions[index]!, maxBytes, raw: request.raw, signal: following.signal, sendWindow };
        return followPartition(follower, log, offsets[index]!, start.kind !== 'offset').catch((error: unknown) => {
          stopFollowing();
          throw error;
        });
      }),
    );
    if (revoked !== null) throw (revoked as { error: unknown }).error;
    const failed = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  } finally {
    signal.removeEventListener('abort', stopFollowing);
    stopOnRevoke?.();
  }
}

/**
 * The bytes written to one Subscribe call that grpc-js has not sent yet, shared by the
 * partitions it follows. `call.write` alone says "wait" only once grpc-js holds 16 messages,
 * each up to max_bytes (64 MiB allowed): a reader that stops would pin a GiB. grpc-js calls a
 * write's callback once HTTP/2 has sent the message, which flow control holds back while the
 * reader does not read; so a partition waits for its turn before it reads: while `budgetBytes`
 * or more are unsent, or another partition is reading. It ends its turn by sending what it read
 * (or by finding nothing), which lets the next waiter check. A stopped reader thus pins about
 * the budget plus one message, however many partitions the call follows (each read at once
 * when the call started, 100 partitions of backlog would have pinned 100 messages), and a slow
 * one slows the stream, as log.proto promises.
 */
class SendWindow {
  private unsentBytes = 0;
  /** Whether a partition has had its turn and is reading (until it sends, or passes its turn). */
  private reading = false;
  /** Set by `wakeAll`: the partitions are stopping, and `room` waits no more. */
  private stopped = false;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly call: ServerWritableStream<strata.v1.SubscribeRequest, strata.v1.SubscribeResponse | Buffer>,
    private readonly budgetBytes: number,
    /** Where every call's unsent bytes are added up (`strata_subscribe_unsent_bytes`). */
    private readonly metrics: BrokerMetrics | null,
  ) {}

  /**
   * Resolves with the turn to read once fewer than the budget's bytes are unsent and no other
   * partition is reading; turns go in the order asked for. The caller ends its turn with `send`
   * or `passTurn`. Also resolves, without a turn, when the call's partitions stop (`wakeAll`).
   */
  async room(): Promise<void> {
    if (this.stopped) return;
    if (!this.reading && this.unsentBytes < this.budgetBytes && this.waiting.length === 0) {
      this.reading = true;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Writes `message` and ends the turn; it counts as unsent until grpc-js's callback says HTTP/2 took it. */
  send(message: Buffer): void {
    // The callback holds the length, not the message: grpc-js holds that until it is sent.
    const bytes = message.length;
    this.unsentBytes += bytes;
    if (this.metrics !== null) this.metrics.subscribeUnsentBytes += bytes;
    this.call.write(message, () => {
      this.unsentBytes -= bytes;
      // Also when the call ends first: grpc-js calls back, with an error, the writes of a call it destroys.
      if (this.metrics !== null) this.metrics.subscribeUnsentBytes -= bytes;
      this.wakeNext();
    });
    this.passTurn();
  }

  /** Ends the turn (nothing was read), and lets the next waiting partition check. */
  passTurn(): void {
    this.reading = false;
    this.wakeNext();
  }

  /** Hands the turn to the longest waiting partition, when there is room. */
  private wakeNext(): void {
    if (this.reading || this.unsentBytes >= this.budgetBytes) return;
    const next = this.waiting.shift();
    if (next === undefined) return;
    this.reading = true;
    next();
  }

  /** Wakes every waiting partition, and lets any that asks later through: they are stopping (each checks its signal). */
  wakeAll(): void {
    this.stopped = true;
    for (const wake of this.waiting.splice(0)) wake();
  }
}

/** What a partition of a Subscribe call needs to follow it. */
interface PartitionFollower {
  partition: number;
  maxBytes: number;
  raw: boolean;
  /** Aborts when the call ends, or when another partition of the call failed. */
  signal: AbortSignal;
  sendWindow: SendWindow;
}

/**
 * Pushes one partition's records to the stream as they become durable, honouring backpressure.
 * A start the broker resolved (earliest, latest, a timestamp: `resolved`) keeps up with the log
 * start until the partition's first records are sent: its first turn to read may come long after
 * the lookup (behind a slow reader), and retention moving the log start meanwhile is no reason to
 * fail the call with OUT_OF_RANGE; the records the client asked for start there now.
 */
async function followPartition(follower: PartitionFollower, log: PartitionLog, startOffset: number, resolved: boolean): Promise<void> {
  const { signal, sendWindow } = follower;
  let offset = startOffset;
  let floating = resolved;
  for (;;) {
    // Waits before it reads: a partition held back by a slow reader holds no batches meanwhile.
    await sendWindow.room();
    if (signal.aborted) return;
    if (floating) offset = Math.max(offset, log.logStartOffset);
    const visible = log.highWatermark;
    // What the turn reads and sends stays inside takeTurn: bound here, it would outlive the turn
    // (a suspended async function keeps its locals), pinning another max_bytes per call while
    // a stopped reader's last message waits to be sent, or an idle one's forever.
    const taken = await takeTurn(follower, log, offset, floating);
    if (taken === 'start removed') continue; // by retention during the read: again, from the new log start
    if (taken === 'nothing') {
      // A move of the high watermark between the read and the wait (in the microtasks that ran
      // before this one) would not wake it: read again instead.
      if (log.highWatermark !== visible) continue;
      await waitForHighWatermark(log, SUBSCRIBE_IDLE_CHECK_MS, signal);
      continue;
    }
    offset = taken;
    floating = false;
  }
}

/**
 * A partition's turn: reads from `offset` and sends what it read, ending the turn. Returns the
 * offset to read from next, 'nothing' at the high watermark, or 'start removed' when retention
 * removed a start the broker resolved.
 */
async function takeTurn(follower: PartitionFollower, log: PartitionLog, offset: number, floating: boolean): Promise<number | 'nothing' | 'start removed'> {
  let result: ReadResult;
  try {
    result = await log.read(offset, follower.maxBytes);
  } catch (error) {
    if (!floating || !isStrataError(error, ErrorCode.OFFSET_OUT_OF_RANGE)) throw error;
    follower.sendWindow.passTurn();
    return 'start removed';
  }
  if (result.batches.length === 0) {
    follower.sendWindow.passTurn();
    return 'nothing';
  }
  const { response, nextOffset } = await subscribeResponse(follower, log, result, offset);
  follower.sendWindow.send(response);
  return nextOffset;
}

/** The SubscribeResponse of what was read from `offset`, and the offset to read from next. */
async function subscribeResponse(follower: PartitionFollower, log: PartitionLog, result: ReadResult, offset: number): Promise<{ response: Buffer; nextOffset: number }> {
  const fields = { partition: follower.partition, highWatermark: result.highWatermark };
  if (follower.raw) {
    const nextOffset = nextOffsetAfter(result.batches, offset);
    log.noteServed(result.batches.length, nextOffset - offset);
    return { response: encodeRawSubscribeResponse(result.batches, result.headroom, { ...fields, nextOffset }), nextOffset };
  }
  // Fewer batches than were read when gzip ones inflate past max_bytes (record-responses.ts).
  let decoded;
  try {
    decoded = await encodeRecordsSubscribeResponse(result.batches, offset, follower.maxBytes, fields);
  } catch (error) {
    throw storedBatchError(error, `partition ${log.name}`);
  }
  log.noteServed(decoded.included.length, decoded.nextOffset - offset);
  return { response: decoded.message, nextOffset: decoded.nextOffset };
}
