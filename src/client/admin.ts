/**
 * Topic administration (the broker's Admin service) and offset lookups, returning plain objects
 * with JavaScript numbers. Each method is one unary call with the connection's deadline; a
 * failure is a `StrataClientError` carrying the broker's status name and message
 * (e.g. NOT_FOUND `topic "orders" not found`).
 *
 * The free functions (`describeTopic`, `listOffsets`) are what the producer and consumer use on
 * their own connections, so the wire conversion lives here once.
 */
import { strata } from '../generated/strata.js';
import { type Connection, type ConnectionSource, longToNumber, methods, numberToLong, resolveConnection } from './connection.js';
import { closedError, invalidArgument } from './errors.js';

const v1 = strata.v1;

export interface TopicSummary {
  name: string;
  partitions: number;
}

export interface PartitionDescription {
  partition: number;
  /** First offset still stored. */
  logStartOffset: number;
  /** End of what is durable and visible to readers. */
  highWatermark: number;
  /** The offset the next record will get. */
  logEndOffset: number;
  sizeBytes: number;
  segmentCount: number;
  /** Empty when healthy; otherwise why the partition refuses requests. */
  error: string;
}

export interface TopicDescription {
  name: string;
  /** Effective configs with Kafka names (topic override or broker default). */
  configs: Record<string, string>;
  partitions: PartitionDescription[];
  createdAtMs: number;
}

export interface CreateTopicOptions {
  /** 1 to 10000; the broker default when absent. */
  partitions?: number;
  /** Topic configs with Kafka names, e.g. { 'retention.ms': '86400000' }. */
  configs?: Record<string, string>;
}

/** Where an offset lookup points: the log start, the end, a time, or an explicit offset. */
export type OffsetSpec = 'earliest' | 'latest' | { timestamp: number } | { offset: number };

export interface OffsetLookup {
  /** The offset the spec names (for a timestamp: the first record at or after it, else the end). */
  offset: number;
  logStartOffset: number;
  highWatermark: number;
}

export function describeFromWire(description: strata.v1.TopicDescription): TopicDescription {
  return {
    name: description.name,
    configs: { ...(description.configs ?? {}) },
    createdAtMs: longToNumber(description.createdAtMs, 'created_at_ms'),
    partitions: description.partitions.map((partition) => ({
      partition: partition.partition,
      logStartOffset: longToNumber(partition.logStartOffset, 'log_start_offset'),
      highWatermark: longToNumber(partition.highWatermark, 'high_watermark'),
      logEndOffset: longToNumber(partition.logEndOffset, 'log_end_offset'),
      sizeBytes: longToNumber(partition.sizeBytes, 'size_bytes'),
      segmentCount: partition.segmentCount,
      error: partition.error ?? '',
    })),
  };
}

export async function describeTopic(connection: Connection, name: string, signal?: AbortSignal): Promise<TopicDescription> {
  const response = await connection.unary(methods.describeTopic, v1.DescribeTopicRequest.create({ name }), signal ? { signal } : {});
  return describeFromWire(response);
}

function startPosition(spec: OffsetSpec): strata.v1.StartPosition {
  if (spec === 'earliest') return v1.StartPosition.create({ earliest: true });
  if (spec === 'latest') return v1.StartPosition.create({ latest: true });
  if (typeof spec === 'object' && spec !== null && 'timestamp' in spec) return v1.StartPosition.create({ timestamp: numberToLong(spec.timestamp, 'timestamp') });
  if (typeof spec === 'object' && spec !== null && 'offset' in spec) return v1.StartPosition.create({ offset: numberToLong(spec.offset, 'offset') });
  throw invalidArgument(`an offset spec is 'earliest', 'latest', { timestamp } or { offset }, got ${JSON.stringify(spec)}`);
}

export async function listOffsets(connection: Connection, topic: string, partition: number, spec: OffsetSpec, signal?: AbortSignal): Promise<OffsetLookup> {
  const request = v1.ListOffsetsRequest.create({ topic, partition, position: startPosition(spec) });
  const response = await connection.unary(methods.listOffsets, request, signal ? { signal } : {});
  return {
    offset: longToNumber(response.offset, 'offset'),
    logStartOffset: longToNumber(response.logStartOffset, 'log_start_offset'),
    highWatermark: longToNumber(response.highWatermark, 'high_watermark'),
  };
}

export class Admin {
  private readonly connection: Connection;
  private readonly ownsConnection: boolean;
  private closed = false;

  constructor(source: ConnectionSource) {
    ({ connection: this.connection, owned: this.ownsConnection } = resolveConnection(source));
  }

  async createTopic(name: string, options: CreateTopicOptions = {}): Promise<TopicDescription> {
    this.checkOpen();
    const partitions = options.partitions ?? 0;
    if (!Number.isInteger(partitions) || partitions < 0) throw invalidArgument(`partitions must be a positive integer, got ${partitions}`);
    const request = v1.CreateTopicRequest.create({ name, partitions, configs: { ...(options.configs ?? {}) } });
    return describeFromWire(await this.connection.unary(methods.createTopic, request));
  }

  async deleteTopic(name: string): Promise<void> {
    this.checkOpen();
    await this.connection.unary(methods.deleteTopic, v1.DeleteTopicRequest.create({ name }));
  }

  async listTopics(): Promise<TopicSummary[]> {
    this.checkOpen();
    const response = await this.connection.unary(methods.listTopics, v1.ListTopicsRequest.create());
    return response.topics.map((topic) => ({ name: topic.name, partitions: topic.partitions }));
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    this.checkOpen();
    return describeTopic(this.connection, name);
  }

  async alterTopicConfigs(name: string, configs: Record<string, string>): Promise<TopicDescription> {
    this.checkOpen();
    const request = v1.AlterTopicConfigsRequest.create({ name, configs: { ...configs } });
    return describeFromWire(await this.connection.unary(methods.alterTopicConfigs, request));
  }

  /** Raises the topic's partition count to `partitions` (the new total). */
  async addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    this.checkOpen();
    const request = v1.AddPartitionsRequest.create({ name, partitions });
    return describeFromWire(await this.connection.unary(methods.addPartitions, request));
  }

  async listOffsets(topic: string, partition: number, spec: OffsetSpec): Promise<OffsetLookup> {
    this.checkOpen();
    return listOffsets(this.connection, topic, partition, spec);
  }

  /** Closes the connection if this Admin opened it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsConnection) this.connection.close();
  }

  private checkOpen(): void {
    if (this.closed) throw closedError('the admin client');
  }
}
