/**
 * The produce workload (after Kafka's kafka-producer-perf-test): `records` records of
 * `recordSize` random bytes, no key, from `producers` producers in this process, each with its
 * own connection, as fast as they go or at `rate` records/s in all.
 *
 * Two wire paths:
 * - `raw`: the client `Producer` (src/client/producer.ts) as an application uses it: one
 *   `send(record, callback)` per record, as Kafka's tool does; it batches per partition
 *   (batchBytes, lingerMs), encodes RecordBatch v2 as records arrive and pipelines the
 *   batches on its ProduceStream (idempotent unless acks is 'none'). Records
 *   without a key go to the sticky partition, which moves on with each batch, as in Kafka.
 *   Like a Kafka producer whose send blocks when the buffer is full, the load waits while
 *   `bufferBytes` worth of records are unacknowledged. Latency of a record: from when the load
 *   goes to send it (before the wait for buffer room: Kafka's tool starts its clock before a
 *   `send()` that blocks) to its acknowledgement, so it includes the wait for buffer room and
 *   the wait in the producer's buffer, as Kafka's tool measures it. Records are sent in chunks
 *   of about a batch and share their chunk's start time.
 * - `records`: plain protobuf records (the path every gRPC language has) on one ProduceStream
 *   per producer: requests of as many records as a raw batch of `batchBytes` holds (at a
 *   `rate`, a millisecond's worth at most), spread round-robin over the partitions, with the
 *   producer's in-flight bounds (5 per partition, 64 in all). Latency of a record: from its
 *   request being written to the answer.
 *
 * At a `rate` the clock of a chunk (a request on the records path) starts at its scheduled
 * time, when the throttle says its first record is due, as wrk2 measures, not when it is sent:
 * a sender held up (by the wait for buffer room or for the in-flight window, a GC pause, a busy
 * event loop) sends the chunks due meanwhile late, and that delay is theirs too (coordinated
 * omission would leave it out of every record). How late each chunk went is also reported on
 * its own (`senderLag`), to tell a client stall from a slow answer.
 *
 * First `warmupRecords` records go unmeasured, as fast as they go, over the same producers (the
 * same streams), and are all acknowledged before the measured records start: V8 compiles the
 * client's and the server's hot paths, and the connection, InitProducer and the topic's metadata
 * are set up, outside the measured window (Kafka's tool has --warmup-records for this).
 *
 * Throughput counts value bytes only (records × recordSize), as Kafka's tool does; the time runs
 * from the first measured send to the last acknowledgement.
 */
import { randomBytes } from 'node:crypto';
import Long from 'long';
import type { Logger } from '../common/logger.js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { Connection, type ConnectionOptions, methods } from '../client/connection.js';
import { fromItemError, toClientError } from '../client/errors.js';
import { type Acks, Producer } from '../client/producer.js';
import { strata } from '../generated/strata.js';
import { LatencyRecorder } from './latency-recorder.js';
import type { Progress } from './progress.js';
import { yieldToEventLoop } from '../common/event-loop.js';
import { Throttle, sleep } from './throttle.js';

const v1 = strata.v1;

export type ProducePath = 'raw' | 'records';

/**
 * Default request size on the records path: as many records as a 512 KiB batch holds. The
 * broker turns each plain-records request into a batch, holding both while it works, so its
 * RSS grows with the request: at 1 MiB (the client's batch size) it peaked at 247-279 MiB
 * against 220-223 MiB at 512 KiB, and ran no faster.
 */
export const RECORDS_PATH_REQUEST_BYTES = 512 * 1024;

/**
 * Requests in flight per partition and in all on the records path, which stands for a plain
 * gRPC client in any language: 5 per partition, as Kafka clients keep by default (the
 * TypeScript producer keeps up to 10, the window the broker states), and 64 in all.
 */
const IN_FLIGHT_PER_PARTITION = 5;
const IN_FLIGHT_MAX = 64;
/** Bytes to allow per record for its framing in a batch, when sizing chunks and requests (an unkeyed 100 B record takes 8). */
const RECORD_OVERHEAD_BYTES = 21;
const BATCH_HEADER_BYTES = 61;
/** Distinct random values the records cycle through (content does not matter uncompressed). */
const VALUE_POOL_SIZE = 256;

export interface ProduceLoadOptions {
  connection: ConnectionOptions;
  topic: string;
  /** Partitions of the topic (the records path spreads its requests over them). */
  partitions: number;
  records: number;
  recordSize: number;
  /** Records per second over all producers; null: as fast as they go. */
  rate: number | null;
  producers: number;
  acks: Acks;
  batchBytes: number;
  lingerMs: number;
  /** Per producer: bytes of records accepted and not yet acknowledged (the Producer's bufferBytes). */
  bufferBytes: number;
  path: ProducePath;
  /** Records sent first, unmeasured and as fast as they go (0: none). */
  warmupRecords: number;
  /** Called once the warm-up is acknowledged, just before the first measured send: where CPU time and peaks start. */
  onMeasurementStart?: () => void;
  logger: Logger;
  progress: Progress;
  /** For the live line, e.g. "produce". */
  label: string;
}

export interface LoadFigures {
  records: number;
  /** Value bytes (records × record size). */
  bytes: number;
  seconds: number;
  /** Summarised after the phase (building the histogram is not part of the measured work). */
  latency: LatencyRecorder | null;
  /**
   * With a rate: how late each chunk of sends (each request on the records path) went against
   * its schedule; in the latency too, whose clock starts at that schedule.
   */
  senderLag?: LatencyRecorder | null;
}

interface SharedCounters {
  acknowledged: number;
}

export async function runProduceLoad(options: ProduceLoadOptions): Promise<LoadFigures> {
  const values = Array.from({ length: VALUE_POOL_SIZE }, () => randomBytes(options.recordSize));
  const counters: SharedCounters = { acknowledged: 0 };
  const shares = split(options.records, options.producers);
  const warmupShares = split(options.warmupRecords, options.producers);
  const perProducerRate = options.rate === null ? null : options.rate / options.producers;
  // The records path records once per request (with its record count), so it is sized by them.
  const perSend = recordsPerSend(options.batchBytes, options.recordSize, perProducerRate);
  const sends = shares.reduce((total, share) => total + Math.ceil(share / perSend), 0);
  const recorder = new LatencyRecorder(options.path === 'raw' ? options.records : sends);
  const senderLag = perProducerRate === null ? null : new LatencyRecorder(sends);
  const timing: SendTiming = { recorder, senderLag };
  const stopProgress = options.progress.start(options.label, () => counters.acknowledged);
  let startedAt = 0;
  let endedAt = 0;
  try {
    if (options.path === 'raw') {
      const producers = shares.map(
        () =>
          new Producer({
            ...options.connection,
            acks: options.acks,
            idempotent: options.acks !== 'none',
            lingerMs: options.lingerMs,
            batchBytes: options.batchBytes,
            bufferBytes: options.bufferBytes,
            logger: options.logger,
          }),
      );
      try {
        // Every producer's warm-up is acknowledged (each flushes) before any measured record goes.
        await Promise.all(producers.map((producer, index) => driveProducer(producer, options, warmupShares[index]!, null, values, UNMEASURED, counters)));
        options.onMeasurementStart?.();
        startedAt = performance.now();
        await Promise.all(producers.map((producer, index) => driveProducer(producer, options, shares[index]!, perProducerRate, values, timing, counters)));
        endedAt = performance.now();
      } finally {
        await Promise.all(producers.map((producer) => producer.close()));
      }
    } else {
      const streams = shares.map((_, index) => new RecordsStream(new Connection(options.connection), options, index));
      try {
        await Promise.all(streams.map((stream, index) => stream.send(warmupShares[index]!, null, values, UNMEASURED, counters)));
        options.onMeasurementStart?.();
        startedAt = performance.now();
        await Promise.all(streams.map((stream, index) => stream.send(shares[index]!, perProducerRate, values, timing, counters)));
        endedAt = performance.now();
      } finally {
        for (const stream of streams) stream.close();
      }
    }
  } finally {
    stopProgress();
  }
  return { records: options.records, bytes: options.records * options.recordSize, seconds: (endedAt - startedAt) / 1000, latency: recorder, senderLag };
}

/**
 * Where the producers' timings go: each record's latency, and with a rate each send's lag
 * behind its schedule; nowhere for the warm-up.
 */
interface SendTiming {
  recorder: LatencyRecorder | null;
  senderLag: LatencyRecorder | null;
}

const UNMEASURED: SendTiming = { recorder: null, senderLag: null };

/** Records per batch of `batchBytes` (at least 1). */
export function recordsPerBatch(batchBytes: number, recordSize: number): number {
  return Math.max(1, Math.floor((batchBytes - BATCH_HEADER_BYTES) / (recordSize + RECORD_OVERHEAD_BYTES)));
}

/**
 * Records a producer hands over at once (a chunk of sends, or one request on the records path):
 * about one batch, or at a `rate` (records/s) at most a millisecond's worth, so that a throttled
 * load sends about every millisecond rather than a whole batch in one burst every few hundred.
 */
export function recordsPerSend(batchBytes: number, recordSize: number, rate: number | null): number {
  const batch = recordsPerBatch(batchBytes, recordSize);
  return rate === null ? batch : Math.max(1, Math.min(batch, Math.ceil(rate / 1000)));
}

/**
 * One producer's share: sends in chunks of about one batch, letting the event loop run between
 * chunks (the producer sends on the next turn), and waits while the buffer bound is reached.
 */
async function driveProducer(
  producer: Producer,
  options: ProduceLoadOptions,
  count: number,
  rate: number | null,
  values: readonly Buffer[],
  { recorder, senderLag }: SendTiming,
  counters: SharedCounters,
): Promise<void> {
  const throttle = rate === null ? null : new Throttle(rate);
  const chunkSize = recordsPerSend(options.batchBytes, options.recordSize, rate);
  const outstandingMax = Math.max(chunkSize, Math.floor(options.bufferBytes / (options.recordSize + RECORD_OVERHEAD_BYTES)));
  let outstanding = 0;
  let failure: Error | null = null;
  let roomWaiter: (() => void) | null = null;
  const fail = (error: unknown): void => {
    failure ??= toClientError(error);
    outstanding--;
    roomWaiter?.();
  };
  const topic = options.topic;
  const clock = new BurstClock();
  for (let sent = 0; sent < count && failure === null; ) {
    if (throttle !== null) {
      // (A timer may fire up to a millisecond early: libuv's clock is cached in whole ones.)
      for (let delayMs = throttle.delayMs(sent); delayMs > 0; delayMs = throttle.delayMs(sent)) await sleep(delayMs);
      senderLag?.record(performance.now() - throttle.dueAt(sent));
    }
    const end = Math.min(count, sent + chunkSize);
    // The clock starts before the wait for buffer room, as Kafka's tool starts it before a
    // send() that blocks on a full buffer: that wait is part of the latency. At a rate it
    // starts at the chunk's scheduled time, so that a sender held up by earlier waits does not
    // start its later chunks' clocks late (coordinated omission). One stamp covers the whole
    // chunk (its records are handed to the producer within microseconds of each other once
    // there is room), so each record's start is its chunk's.
    const chunkStartedAt = throttle === null ? performance.now() : throttle.dueAt(sent);
    while (outstanding + (end - sent) > outstandingMax && failure === null) {
      await new Promise<void>((resolve) => (roomWaiter = resolve));
      roomWaiter = null;
    }
    const acknowledged = (error: Error | null): void => {
      if (error !== null) return fail(error);
      recorder?.record(clock.now() - chunkStartedAt);
      counters.acknowledged++;
      if (--outstanding <= outstandingMax / 2 && roomWaiter !== null) roomWaiter();
    };
    for (; sent < end; sent++) {
      outstanding++;
      producer.send({ topic, value: values[sent % VALUE_POOL_SIZE]! }, acknowledged);
    }
    await yieldToEventLoop();
  }
  await producer.flush();
  if (failure !== null) throw failure;
}

/** A request on the records path awaiting its answer. */
interface PendingRequest {
  /** When its clock started: when it was written, or at a rate when it was due. */
  startedAt: number;
  records: number;
  /** Where its latency goes (null: a warm-up request). */
  recorder: LatencyRecorder | null;
}

/**
 * One producer over plain protobuf records on one ProduceStream, which stays open from the
 * warm-up to the end of the measured records: `send` sends a share of records and resolves once
 * every one is answered; one `send` at a time.
 */
class RecordsStream {
  private readonly stream: ClientDuplexStream<strata.v1.ProduceRequest, strata.v1.ProduceResponse>;
  private readonly window: number;
  private readonly acks: strata.v1.Acks;
  private readonly pending = new Map<number, PendingRequest>();
  private nextCorrelationId = 1;
  private requestIndex: number;
  /** Set when the stream failed or ended: every send from then on fails with it. */
  private failure: Error | null = null;
  /** The send under way: told of each answer, and of a failure. */
  private onAnswer: ((records: number) => void) | null = null;
  private onFailure: ((error: Error) => void) | null = null;
  private unsent = 0;

  constructor(
    private readonly connection: Connection,
    private readonly options: ProduceLoadOptions,
    producerIndex: number,
  ) {
    this.requestIndex = producerIndex;
    this.window = Math.min(IN_FLIGHT_MAX, IN_FLIGHT_PER_PARTITION * options.partitions);
    this.acks = { all: v1.Acks.ACKS_ALL, leader: v1.Acks.ACKS_LEADER, none: v1.Acks.ACKS_NONE }[options.acks];
    this.stream = connection.bidiStream(methods.produceStream);
    this.stream.on('data', (response: strata.v1.ProduceResponse) => {
      if (response.error) return this.fail(fromItemError(response.error));
      const id = response.correlationId.toNumber();
      const request = this.pending.get(id);
      if (request === undefined) return;
      this.pending.delete(id);
      request.recorder?.recordMany(performance.now() - request.startedAt, request.records);
      this.onAnswer?.(request.records);
    });
    this.stream.on('error', (error) => this.fail(toClientError(error)));
    // Ended by the server without an error status: answers owed never come, and nothing more can be sent.
    this.stream.on('end', () => {
      const owed = this.onAnswer === null ? '' : ` with ${this.pending.size} requests unanswered and ${this.unsent} records not sent`;
      this.fail(new Error(`the ProduceStream ended${owed}`));
    });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.onFailure?.(this.failure);
  }

  /** Sends `count` records (`rate`: records/s, or null for as fast as the window allows). */
  async send(count: number, rate: number | null, values: readonly Buffer[], { recorder, senderLag }: SendTiming, counters: SharedCounters): Promise<void> {
    if (count === 0) return; // more producers than records: this one has nothing to send
    if (this.failure !== null) throw this.failure;
    const throttle = rate === null ? null : new Throttle(rate);
    const perRequest = recordsPerSend(this.options.batchBytes, this.options.recordSize, rate);
    let sent = 0;
    let pumpTimer: NodeJS.Timeout | null = null;
    this.unsent = count;
    try {
      await new Promise<void>((resolve, reject) => {
        const pump = (): void => {
          pumpTimer = null;
          while (this.pending.size < this.window && sent < count) {
            if (throttle !== null) {
              const delayMs = throttle.delayMs(sent);
              if (delayMs > 0) {
                pumpTimer = setTimeout(pump, delayMs);
                return;
              }
              senderLag?.record(performance.now() - throttle.dueAt(sent));
            }
            const size = Math.min(perRequest, count - sent);
            const records: strata.v1.Record[] = new Array(size);
            for (let index = 0; index < size; index++) records[index] = v1.Record.create({ value: values[(sent + index) % VALUE_POOL_SIZE]! });
            const correlationId = this.nextCorrelationId++;
            // At a rate the clock starts when the request was due (see the file comment).
            this.pending.set(correlationId, { startedAt: throttle === null ? performance.now() : throttle.dueAt(sent), records: size, recorder });
            this.stream.write(
              v1.ProduceRequest.create({
                topic: this.options.topic,
                partition: this.requestIndex++ % this.options.partitions,
                records,
                acks: this.acks,
                correlationId: Long.fromNumber(correlationId, true),
              }),
            );
            sent += size;
            this.unsent = count - sent;
          }
        };
        this.onAnswer = (records) => {
          counters.acknowledged += records;
          if (sent === count && this.pending.size === 0) resolve();
          else if (pumpTimer === null) pump(); // (a pump already waiting for its time sends then)
        };
        this.onFailure = reject;
        pump();
      });
    } finally {
      if (pumpTimer !== null) clearTimeout(pumpTimer);
      this.onAnswer = null;
      this.onFailure = null;
    }
  }

  close(): void {
    this.stream.end();
    this.stream.cancel();
    this.connection.close();
  }
}

/**
 * The time for a burst of acknowledgements. The producer resolves the sends of one batch in one
 * loop, so their callbacks run back to back in one microtask checkpoint; they share one clock
 * read (taken by the first, valid until the checkpoint has run them all) instead of paying
 * ~50 ns each for performance.now(), which at a million records a second is 5% of a core.
 */
export class BurstClock {
  private time = 0;
  private valid = false;
  private readonly expire = (): void => {
    this.valid = false;
  };

  now(): number {
    if (!this.valid) {
      this.time = performance.now();
      this.valid = true;
      queueMicrotask(this.expire); // runs after the callbacks already queued in this burst
    }
    return this.time;
  }
}

/** `total` split into `parts` shares that differ by at most one. */
export function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, index) => Math.floor(total / parts) + (index < total % parts ? 1 : 0));
}
