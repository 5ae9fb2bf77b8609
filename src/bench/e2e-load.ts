/**
 * The end-to-end workload (after Kafka's EndToEndLatency tool, at a fixed rate rather than one
 * record at a time): a `Producer` with `lingerMs` 0 sends `rate` records/s for `durationSeconds`
 * while a reader in the same process follows the topic from its end.
 *
 * Each record's value starts with its send time: a float64 (little-endian) of milliseconds since
 * the Unix epoch with sub-microsecond resolution (`performance.timeOrigin + performance.now()`),
 * written just before `send()`. Latency of a record = the time the reader hands it to the
 * application − that send time: producer batching, the produce request, the append and the
 * fdatasync under the topic's flush policy (readers see records only once durable), the wake-up
 * of the reader, the transfer and the decode.
 *
 * Readers (`reader`):
 * - `consumer`: the client `Consumer` (a Subscribe stream per partition, records decoded when
 *   taken), the way an application reads; records are handed over a chunk at a time
 *   (`nextBatch()`).
 * - `subscribe`: the `Subscribe` RPC (server push), one stream per partition started at the end
 *   offset looked up before the first send; raw batches decoded with the storage codec.
 *
 * A record's send time is when it was actually sent, as the latency's definition asks, not when
 * it was due (as `strata bench produce --rate` measures): the sender runs on a 1 ms timer, which
 * Node.js fires every 1–2 ms, so a clock started at the schedule would add that timer's lag,
 * about 0.7 ms on average, to figures under a millisecond. When the sender itself is held up (a
 * GC pause, a busy event loop), the records due meanwhile go out late and that delay is in no
 * record's latency (coordinated omission); so the sender's lag behind its schedule is measured
 * apart (`senderLag`), for every measured record: the time it was sent − the time it was due.
 * A stall thus counts once for each record it held up.
 *
 * Records sent during the first `warmupSeconds` (JIT compilation, connection set-up) are read but
 * not counted, and the CPU time of the phase is taken from the end of the warm-up
 * (`onMeasurementStart`). The producer's acknowledgement latency is measured too.
 *
 * A record that has not arrived `drainTimeoutMs` after the producer's flush counts as lost, and
 * is counted in the latency at the time from the last send to the end of that wait: a lower
 * bound of its latency (it has none), so that lost records raise the percentiles rather than
 * vanish from them. `consumed` says how many measured records arrived.
 *
 * Sends are bounded: when more records are sent and not yet acknowledged than
 * `outstandingRecordsMax` allows (about a second's worth at the rate), the broker is not keeping
 * up with the rate, and the run fails with the backlog rather than let it grow until memory runs
 * out or the producer's delivery timeout (120 s) fails the sends, and rather than report figures
 * of a rate that was not held.
 */
import { randomBytes } from 'node:crypto';
import type { ClientReadableStream } from '@grpc/grpc-js';
import Long from 'long';
import type { Logger } from '../common/logger.js';
import { describeTopic, listOffsets } from '../client/admin.js';
import { Connection, type ConnectionOptions } from '../client/connection.js';
import { Consumer } from '../client/consumer.js';
import { toClientError } from '../client/errors.js';
import { type Acks, Producer, type ProducerRecord, type SendCallback } from '../client/producer.js';
import { strata } from '../generated/strata.js';
import { logServiceDefinition } from '../server/service-definitions.js';
import { decodeRecords, forEachBatch } from '../storage/record-batch.js';
import { RECORD_FRAMING_BOUND } from '../storage/record-batch-builder.js';
import { LatencyRecorder } from './latency-recorder.js';
import { type Progress, formatInteger } from './progress.js';
import { Throttle } from './throttle.js';

const v1 = strata.v1;

/** Bytes of the send-time prefix of each value. */
export const SEND_TIME_BYTES = 8;

const DRAIN_TIMEOUT_MS = 10_000;
/**
 * Seconds of records at the rate (beyond the producer's linger) that may be sent and not yet
 * acknowledged: a broker that far behind does not sustain the rate, and a latency figure of
 * seconds says nothing of it.
 */
const OUTSTANDING_SECONDS_MAX = 1;
const START_TIMEOUT_MS = 30_000;
/**
 * Default warm-up. Under load both processes start slow, most likely while V8 compiles the hot
 * paths: at 10,000 records/s of 100 B on the project's 2-core test machine, the broker used
 * 50–60 % of a core and the client 40–70 % for about 1.5 s after the first send, then 25 % and
 * 17 %; fdatasyncs over 1 ms were 92 in the first 3.5 s against 7 in the next 12.5 s. A 1 s
 * warm-up counted that start-up: p99 2.1–2.2 ms, against 0.78–1.02 ms after 5 s (3 s:
 * 1.05–1.06; 10 s: 0.87).
 */
export const E2E_WARMUP_SECONDS_DEFAULT = 5;
/** Records per second when --rate is not given. */
export const E2E_RATE_DEFAULT = 10_000;
/** The sender's tick: the records due are sent every tick (timers have 1 ms granularity). */
const TICK_MS = 1;

export type E2eReaderKind = 'consumer' | 'subscribe';

export interface E2eLoadOptions {
  connection: ConnectionOptions;
  topic: string;
  rate: number;
  durationSeconds: number;
  warmupSeconds: number;
  recordSize: number;
  acks: Acks;
  lingerMs: number;
  batchBytes: number;
  /** The Producer's bufferBytes. */
  bufferBytes: number;
  reader: E2eReaderKind;
  logger: Logger;
  progress: Progress;
  label: string;
  /** Called when the warm-up ends and the measured records start. */
  onMeasurementStart?: () => void;
  /** How long to wait for the last records after the producer's flush (default DRAIN_TIMEOUT_MS). */
  drainTimeoutMs?: number;
}

export interface E2eFigures {
  /** Records sent after the warm-up. */
  records: number;
  bytes: number;
  /** The measured sending time (after the warm-up). */
  seconds: number;
  /** Send to consumption; lost records counted at a lower bound (see the file comment). */
  latency: LatencyRecorder;
  /** Send to the producer's acknowledgement. */
  acknowledgementLatency: LatencyRecorder;
  /** Per measured record: how late it was sent against the schedule. */
  senderLag: LatencyRecorder;
  /** Measured records that arrived. */
  consumed: number;
  /** Measured records that never arrived (records − consumed). */
  lost: number;
  warmupRecords: number;
}

/** `performance.timeOrigin`, read once: its getter allocates on every read. */
const TIME_ORIGIN_MS = performance.timeOrigin;

export function wallClockMs(): number {
  return TIME_ORIGIN_MS + performance.now();
}

/** Hands the values of records it reads to `deliver`, from the end of every partition. */
interface E2eReader {
  /** Resolves once reading starts at the end of every partition (nothing sent before is seen). */
  start(partitions: readonly number[]): Promise<void>;
  close(): Promise<void>;
}

/** Takes records as read (only their values are looked at). */
type Deliver = (records: readonly { readonly value: Buffer | null }[]) => void;

/** One record the sender has in flight: its value, written again for each send. */
interface SendSlot {
  readonly value: Buffer;
  /** What is sent: the topic and `value`, made once with the slot. */
  readonly message: ProducerRecord;
  /** Wall-clock send time of the record now in this slot. */
  sentAt: number;
  /** The send's callback; puts the slot back once it has run. */
  readonly done: SendCallback;
}

/**
 * The sender's values, reused the way Kafka's perf tools reuse their payload: a slot goes back to
 * the free list only once its send's callback has run, and the producer has copied the value into
 * its batch by then (during send(), or when it takes a send that had to wait for metadata or
 * buffer room). So a value is never rewritten under a record not yet taken, and once there are as
 * many slots as records in flight, the sender allocates nothing per record (the message sent is
 * the slot's own, like its value): at 10,000 1 KiB
 * records/s, a fresh value and a promise per send were a quarter of the client's allocations
 * (7 of 30 MB/s) and an 8 KiB pool slab for Node to free every eight records.
 */
export class SendSlots {
  private readonly free: SendSlot[] = [];
  /** Every slot made, for the oldest in flight. */
  private readonly all: SendSlot[] = [];

  constructor(
    private readonly topic: string,
    private readonly template: Buffer,
    private readonly onAcknowledged: (slot: SendSlot) => void,
    private readonly onFailed: (error: Error) => void,
  ) {}

  /** Slots taken whose send's callback has not run yet: records sent and not yet settled. */
  get inFlight(): number {
    return this.all.length - this.free.length;
  }

  take(): SendSlot {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    const value = Buffer.from(this.template);
    const slot: SendSlot = {
      value,
      message: { topic: this.topic, value },
      sentAt: 0,
      done: (error) => {
        if (error === null) this.onAcknowledged(slot);
        else this.onFailed(error);
        this.free.push(slot);
      },
    };
    this.all.push(slot);
    return slot;
  }

  /** The wall-clock send time of the earliest record in flight; null when none is. */
  oldestInFlightSentAt(): number | null {
    const free = new Set(this.free);
    let oldest: number | null = null;
    for (const slot of this.all) if (!free.has(slot) && (oldest === null || slot.sentAt < oldest)) oldest = slot.sentAt;
    return oldest;
  }
}

class ConsumerReader implements E2eReader {
  private readonly consumer: Consumer;
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    connection: Connection,
    private readonly topic: string,
    private readonly deliver: Deliver,
    private readonly onError: (error: unknown) => void,
    logger: Logger,
  ) {
    this.consumer = new Consumer({ connection, resetPolicy: 'latest', logger });
  }

  async start(partitions: readonly number[]): Promise<void> {
    const started = new Promise<void>((resolve, reject) => {
      let pending = partitions.length;
      const timer = setTimeout(() => reject(new Error(`the consumer did not find the end of "${this.topic}" within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      this.consumer.on('partitionStarted', () => {
        if (--pending === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    await this.consumer.assign(partitions.map((partition) => ({ topic: this.topic, partition })));
    await started;
    // The Consumer retries what can be retried; what it throws (DATA_LOSS, a closed consumer)
    // fails the run, as a Subscribe reader's error does.
    this.loop = (async () => {
      while (!this.stopped) {
        const batch = await this.consumer.nextBatch({ timeoutMs: 100 });
        if (batch !== null) this.deliver(batch.records);
      }
    })().catch((error: unknown) => {
      if (!this.stopped) this.onError(error);
    });
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.consumer.close();
    await this.loop;
  }
}

class SubscribeReader implements E2eReader {
  /** The subscriptions' own connection, apart from the producer's and the offset lookups'. */
  private readonly streams: Connection;
  private readonly calls: ClientReadableStream<strata.v1.SubscribeResponse>[] = [];

  constructor(
    private readonly connection: Connection,
    options: ConnectionOptions,
    private readonly topic: string,
    private readonly deliver: Deliver,
    private readonly onError: (error: Error) => void,
  ) {
    // grpc-js shares one connection between channels with the same address and options.
    this.streams = new Connection({ ...options, channelOptions: { ...options.channelOptions, 'grpc.use_local_subchannel_pool': 1 } });
  }

  async start(partitions: readonly number[]): Promise<void> {
    const method = logServiceDefinition.subscribe;
    for (const partition of partitions) {
      // An explicit start offset: records sent after this lookup are all seen.
      const { offset } = await listOffsets(this.connection, this.topic, partition, 'latest');
      const request = v1.SubscribeRequest.create({ topic: this.topic, partitions: [partition], start: v1.StartPosition.create({ offset: Long.fromNumber(offset) }), raw: true });
      const call = this.streams.serverStream(method, request) as ClientReadableStream<strata.v1.SubscribeResponse>;
      call.on('data', (response: strata.v1.SubscribeResponse) => {
        const bytes = response.batches;
        const batches = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const records: { value: Buffer | null }[] = [];
        forEachBatch(batches, (position) => {
          for (const record of decodeRecords(batches, position)) records.push(record);
        });
        this.deliver(records);
      });
      call.on('error', (error: Error & { code?: number }) => {
        if (error.code !== 1) this.onError(toClientError(error)); // 1: CANCELLED, by close()
      });
      this.calls.push(call);
    }
  }

  async close(): Promise<void> {
    for (const call of this.calls) call.cancel();
    this.streams.close();
  }
}

/**
 * Records the sender may have sent and not yet acknowledged: `OUTSTANDING_SECONDS_MAX` of them at
 * the rate beyond the linger, and no more than the producer's buffer holds (so that no send
 * waits in the producer for buffer room, in a queue of its own, and memory stays bounded at any
 * rate); at least 1.
 */
export function outstandingRecordsMax(rate: number, lingerMs: number, bufferBytes: number, recordSize: number): number {
  const atRate = Math.ceil(rate * (OUTSTANDING_SECONDS_MAX + lingerMs / 1000));
  const inBuffer = Math.floor(bufferBytes / (recordSize + RECORD_FRAMING_BOUND));
  return Math.max(1, Math.min(atRate, inBuffer));
}

/** The failure of a run whose broker fell behind the rate by `outstandingRecordsMax`. */
function backlogError(options: E2eLoadOptions, slots: SendSlots, outstandingMax: number): Error {
  const bound = outstandingMax === outstandingRecordsMax(options.rate, options.lingerMs, Number.POSITIVE_INFINITY, options.recordSize) ? `${OUTSTANDING_SECONDS_MAX} s of records at the rate` : 'what --buffer-bytes holds';
  const oldest = slots.oldestInFlightSentAt();
  const age = oldest === null ? '' : `, the oldest sent ${formatInteger(wallClockMs() - oldest)} ms ago`;
  return new Error(
    `the broker did not keep up with --rate ${formatInteger(options.rate)}: ${formatInteger(slots.inFlight)} records sent and not acknowledged (at most ${bound})${age}; no figures are given for a rate that was not held`,
  );
}

/** Records an e2e run sends at `rate` records/s in `seconds`; fewer than 1 measures nothing. */
export function recordsInSeconds(rate: number, seconds: number): number {
  return Math.round(rate * seconds);
}

export async function runE2eLoad(options: E2eLoadOptions): Promise<E2eFigures> {
  if (options.recordSize < SEND_TIME_BYTES) throw new RangeError(`e2e records need at least ${SEND_TIME_BYTES} bytes for the send time, got --record-size ${options.recordSize}`);
  const warmupRecords = recordsInSeconds(options.rate, options.warmupSeconds);
  const measuredRecords = recordsInSeconds(options.rate, options.durationSeconds);
  if (measuredRecords < 1) throw new RangeError(`rate × duration must give at least 1 measured record, got ${options.rate} × ${options.durationSeconds} s`);
  const connection = new Connection(options.connection);
  const producer = new Producer({ ...options.connection, acks: options.acks, idempotent: options.acks !== 'none', lingerMs: options.lingerMs, batchBytes: options.batchBytes, bufferBytes: options.bufferBytes, logger: options.logger });
  const template = randomBytes(options.recordSize);
  const total = warmupRecords + measuredRecords;
  const endToEnd = new LatencyRecorder(measuredRecords);
  const acknowledgement = new LatencyRecorder(measuredRecords);
  const senderLag = new LatencyRecorder(measuredRecords);
  const outstandingMax = outstandingRecordsMax(options.rate, options.lingerMs, options.bufferBytes, options.recordSize);
  const drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
  let received = 0;
  let measuredReceived = 0;
  /** Send time (wall clock) of the first measured record: earlier ones are the warm-up. */
  let measuredFromWallMs = Number.POSITIVE_INFINITY;
  let failure: Error | null = null;
  let allReceived: (() => void) | null = null;
  /** Resolves once the run has failed: the wait for the producer's flush ends then. */
  let onFailure!: () => void;
  const failed = new Promise<void>((resolve) => (onFailure = resolve));
  const deliver: Deliver = (records) => {
    const seenAt = wallClockMs();
    for (const { value } of records) {
      if (value === null || value.length < SEND_TIME_BYTES) continue;
      received++;
      const sentAt = value.readDoubleLE(0);
      if (sentAt < measuredFromWallMs) continue;
      measuredReceived++;
      endToEnd.record(seenAt - sentAt);
    }
    if (received >= total) allReceived?.();
  };
  const fail = (error: unknown): void => {
    failure ??= toClientError(error);
    allReceived?.();
    onFailure();
  };
  const slots = new SendSlots(options.topic, template, (slot) => {
    // Measured as `deliver` tells them: sent from the first measured record on.
    if (slot.sentAt >= measuredFromWallMs) acknowledgement.record(wallClockMs() - slot.sentAt);
  }, fail);
  const reader: E2eReader =
    options.reader === 'subscribe' ? new SubscribeReader(connection, options.connection, options.topic, deliver, fail) : new ConsumerReader(connection, options.topic, deliver, fail, options.logger);
  let stopProgress = (): void => undefined;
  try {
    const partitions = (await describeTopic(connection, options.topic)).partitions.map((partition) => partition.partition);
    await reader.start(partitions);
    stopProgress = options.progress.start(options.label, () => received);
    const throttle = new Throttle(options.rate);
    let sent = 0;
    let measuredFrom = 0;
    let measuredTo = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        const due = Math.min(total, throttle.allowed(now));
        for (; sent < due && failure === null; sent++) {
          if (slots.inFlight >= outstandingMax) {
            fail(backlogError(options, slots, outstandingMax));
            break;
          }
          if (sent >= warmupRecords) senderLag.record(performance.now() - throttle.dueAt(sent));
          const slot = slots.take();
          const sentAt = wallClockMs();
          if (sent === warmupRecords) {
            measuredFrom = throttle.dueAt(sent);
            measuredFromWallMs = sentAt;
            options.onMeasurementStart?.();
          }
          slot.value.writeDoubleLE(sentAt, 0);
          slot.sentAt = sentAt;
          producer.send(slot.message, slot.done);
        }
        if (sent >= total || failure !== null) {
          // From the first measured record's due time, the schedule's span of the measured
          // records, N / rate (the last one's send time would give (N - 1) / rate), or longer
          // when the sender fell behind it: never more records a second than the rate.
          measuredTo = Math.max(performance.now(), throttle.dueAt(sent));
          resolve();
        } else {
          setTimeout(tick, TICK_MS);
        }
      };
      tick();
    });
    if (failure !== null) throw failure;
    const lastSentAt = performance.now();
    // A failure meanwhile (a failed send, the reader's) does not wait for the rest of the flush,
    // which a stalled broker may never let end (see the finally block).
    await Promise.race([producer.flush(), failed]);
    if (received < total && failure === null) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainTimeoutMs);
        allReceived = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    if (failure !== null) throw failure;
    stopProgress();
    // Counted, not left out: each lost record was sent by `lastSentAt` and had not arrived
    // by now, so its latency is at least this (see the file comment).
    const consumed = measuredReceived;
    const lost = measuredRecords - consumed;
    if (lost > 0) endToEnd.recordUnsampled(performance.now() - lastSentAt, lost);
    return {
      records: measuredRecords,
      bytes: measuredRecords * options.recordSize,
      seconds: (measuredTo - measuredFrom) / 1000,
      latency: endToEnd,
      acknowledgementLatency: acknowledgement,
      senderLag,
      consumed,
      lost,
      warmupRecords,
    };
  } finally {
    stopProgress();
    const closing = producer.close();
    // After a failure (the backlog bound, a failed send, the reader's) what the producer still
    // holds may never be acknowledged, by a stalled broker say: the failure is reported without
    // waiting out the producer's delivery timeout for it (the command ends the process soon
    // after).
    if (failure === null) await closing;
    else closing.catch(() => undefined);
    await reader.close();
    connection.close();
  }
}
