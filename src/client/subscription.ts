/**
 * Server push: `subscribe(connection, { topic, partitions, start })` follows partitions through
 * the Log service's Subscribe RPC, which sends records as soon as they become durable instead of
 * being polled. Each message the broker pushes is one `SubscriptionBatch`: the records of one
 * partition, in offset order, decoded on the client from raw RecordBatch bytes (frame and CRC
 * checked first, as the consumer does; from a timestamp the broker decodes instead, because the
 * start may fall inside a batch).
 *
 * Flow control: the async iterator reads the gRPC stream only as fast as the caller consumes,
 * and the broker waits on HTTP/2 flow control rather than buffering, so a slow reader holds
 * memory to what grpc-js buffers. `cancel()` ends the iteration normally; any other end of the
 * stream (topic deleted, broker shutting down) is thrown as a `StrataClientError`.
 */
import type { ClientReadableStream } from '@grpc/grpc-js';
import { integerRangeProblem } from '../common/integer-range.js';
import { FETCH_BYTES_MAX } from '../common/request-limits.js';
import { strata } from '../generated/strata.js';
import { checkBatchFrame, forEachBatch, forEachRecord } from '../storage/record-batch.js';
import type { OffsetSpec } from './admin.js';
import { type Connection, longToNumber, methods, numberToLong } from './connection.js';
import type { ConsumerRecord } from './consumer.js';
import { StrataClientError, invalidArgument, toClientError } from './errors.js';
import { checkPartition } from './option-checks.js';
import { limitReadAhead } from './read-ahead.js';

const v1 = strata.v1;

export interface SubscribeOptions {
  topic: string;
  /** Partitions to follow; all of the topic's when absent or empty. */
  partitions?: readonly number[];
  /** Where each partition starts. Default 'latest' (only records produced from now on). */
  start?: OffsetSpec;
  /** Most bytes of batches per pushed message, 1 to 64 MiB; absent = the broker default (1 MiB). */
  maxBytes?: number;
  /**
   * The topic meant, by its creation time (`TopicDescription.createdAtMs`): a topic of the name
   * created at another time (the one meant was deleted) is refused with NOT_FOUND. Absent or 0: any.
   */
  topicCreatedAtMs?: number;
}

export interface SubscriptionBatch {
  topic: string;
  partition: number;
  records: ConsumerRecord[];
  highWatermark: number;
  /** The offset after the last record of this message. */
  nextOffset: number;
}

export class Subscription implements AsyncIterable<SubscriptionBatch> {
  private cancelled = false;
  /** How the call failed, once it has: thrown at the end of the iteration. */
  private failure: unknown = null;
  /** Per partition, the offset the next pushed message continues from (when known). */
  private readonly expected = new Map<number, number>();

  constructor(
    private readonly topic: string,
    private readonly stream: ClientReadableStream<strata.v1.SubscribeResponse>,
    private readonly startOffset: number | null,
  ) {
    // grpc-js ends the stream and then emits 'error' for a failed call. Unheard (before the
    // iteration starts, after a cancel, or after the iteration stopped) that would end the
    // process; an iteration that starts after it would then just find the stream ended.
    stream.on('error', (error) => {
      this.failure ??= error;
    });
  }

  /** Ends the subscription; the iteration then finishes without an error. Idempotent. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.stream.cancel();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SubscriptionBatch, void, undefined> {
    try {
      for await (const response of this.stream as AsyncIterable<strata.v1.SubscribeResponse>) {
        if (this.cancelled) return;
        yield this.toBatch(response);
      }
      if (this.failure !== null && !this.cancelled) throw this.failure;
    } catch (error) {
      if (this.cancelled) return;
      throw toClientError(error);
    } finally {
      this.cancel();
    }
  }

  private toBatch(response: strata.v1.SubscribeResponse): SubscriptionBatch {
    const { topic } = this;
    const partition = response.partition;
    // A raw message holds whole batches, so the first one of an explicit start offset may begin
    // before it; later messages continue exactly where the previous one ended.
    const from = this.expected.get(partition) ?? this.startOffset ?? 0;
    const records: ConsumerRecord[] = [];
    if (response.records.length > 0) {
      for (const record of response.records) {
        records.push({
          topic,
          partition,
          offset: longToNumber(record.offset, 'offset'),
          timestamp: longToNumber(record.timestamp, 'timestamp'),
          key: record.key === null || record.key === undefined ? null : toBuffer(record.key),
          value: record.value === null || record.value === undefined ? null : toBuffer(record.value),
          headers: record.headers.map((header) => ({ key: header.key, value: header.value === null || header.value === undefined ? null : toBuffer(header.value) })),
        });
      }
    } else {
      const buffer = toBuffer(response.batches);
      forEachBatch(buffer, (position, size) => {
        const problem = checkBatchFrame(buffer, position, position + size);
        if (problem !== null) throw new StrataClientError('DATA_LOSS', `pushed batch of ${topic}-${partition} at byte ${position} is invalid: ${problem}`);
        try {
          forEachRecord(buffer, position, from, (offset, timestamp, key, value, headers) => {
            records.push({ topic, partition, offset, timestamp, key, value, headers });
          });
        } catch (error) {
          throw new StrataClientError('DATA_LOSS', `pushed batch of ${topic}-${partition} at byte ${position} does not decode: ${(error as Error).message}`);
        }
      });
    }
    const nextOffset = longToNumber(response.nextOffset, 'next_offset');
    this.expected.set(partition, nextOffset);
    return { topic, partition, records, highWatermark: longToNumber(response.highWatermark, 'high_watermark'), nextOffset };
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function startPosition(spec: OffsetSpec): strata.v1.StartPosition {
  if (spec === 'earliest') return v1.StartPosition.create({ earliest: true });
  if (spec === 'latest') return v1.StartPosition.create({ latest: true });
  if ('timestamp' in spec) return v1.StartPosition.create({ timestamp: numberToLong(spec.timestamp, 'timestamp') });
  return v1.StartPosition.create({ offset: numberToLong(spec.offset, 'offset') });
}

/** Opens a Subscribe stream. Errors of the call (unknown topic...) surface on iteration. */
export function subscribe(connection: Connection, options: SubscribeOptions): Subscription {
  if (typeof options.topic !== 'string' || options.topic.length === 0) throw invalidArgument('topic is required');
  const start = options.start ?? 'latest';
  // The wire's int32 would carry 2^32 as 0: another partition, or the default max bytes.
  const partitions = [...(options.partitions ?? [])].map(checkPartition);
  if (options.maxBytes !== undefined) {
    const problem = integerRangeProblem('maxBytes', options.maxBytes, 1, FETCH_BYTES_MAX);
    if (problem !== null) throw invalidArgument(problem);
  }
  if (start !== 'latest' && start !== 'earliest' && (typeof start !== 'object' || start === null)) {
    throw invalidArgument(`start must be 'latest', 'earliest', { offset } or { timestamp }, got ${JSON.stringify(start)}`);
  }
  if (typeof start === 'object' && 'timestamp' in start && !(Number.isSafeInteger(start.timestamp) && start.timestamp >= 0)) {
    throw invalidArgument(`start.timestamp must be a time in ms since the epoch, got ${start.timestamp} (use 'latest' or 'earliest' for the newest or oldest records)`);
  }
  // From a timestamp the start offset may fall inside a batch the client cannot place, so the
  // broker decodes (its records start exactly there); otherwise raw batches, decoded here.
  const byTimestamp = typeof start === 'object' && 'timestamp' in start;
  const request = v1.SubscribeRequest.create({
    topic: options.topic,
    partitions,
    start: startPosition(start),
    raw: !byTimestamp,
    maxBytes: options.maxBytes ?? 0,
    topicCreatedAtMs: numberToLong(options.topicCreatedAtMs ?? 0, 'topicCreatedAtMs'),
  });
  const startOffset = typeof start === 'object' && 'offset' in start ? start.offset : null;
  const stream = connection.serverStream(methods.subscribe, request);
  // A slow iteration holds one message besides the HTTP/2 window, not grpc-js's sixteen.
  limitReadAhead(stream);
  return new Subscription(options.topic, stream, startOffset);
}
