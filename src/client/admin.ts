/**
 * Topic administration (the broker's Admin service), consumer-group administration (the
 * administrative half of the Groups service) and offset lookups, returning plain objects with
 * JavaScript numbers. Each method is one unary call with the connection's deadline; a
 * failure is a `StrataClientError` carrying the broker's status name and message
 * (e.g. NOT_FOUND `topic "orders" not found`).
 *
 * The free functions (`describeTopic`, `listOffsets`) are what the producer and consumer use on
 * their own connections, so the wire conversion lives here once.
 */
import type { MethodDefinition } from '@grpc/grpc-js';
import { strata } from '../generated/strata.js';
import { groupsServiceDefinition } from '../server/service-definitions.js';
import { type Connection, type ConnectionSource, longToNumber, methods, numberToLong, resolveConnection } from './connection.js';
import { StrataClientError, closedError, invalidArgument } from './errors.js';
import { checkPartition, checkPartitionCount } from './option-checks.js';
import { integerRangeProblem } from '../common/integer-range.js';
import { LIST_GROUPS_PAGE_MAX } from '../common/request-limits.js';

const v1 = strata.v1;

/** The group-administration methods, typed with the decoded message classes (see connection.ts). */
function typed<Request, Response>(definition: object): MethodDefinition<Request, Response> {
  return definition as MethodDefinition<Request, Response>;
}

/** Groups a ListGroups page asks for. */
const LIST_GROUPS_PAGE_SIZE = 1_000;

const groupMethods = {
  fetchOffsets: typed<strata.v1.FetchOffsetsRequest, strata.v1.FetchOffsetsResponse>(groupsServiceDefinition.fetchOffsets),
  listGroups: typed<strata.v1.ListGroupsRequest, strata.v1.ListGroupsResponse>(groupsServiceDefinition.listGroups),
  describeGroup: typed<strata.v1.DescribeGroupRequest, strata.v1.DescribeGroupResponse>(groupsServiceDefinition.describeGroup),
  resetOffsets: typed<strata.v1.ResetOffsetsRequest, strata.v1.ResetOffsetsResponse>(groupsServiceDefinition.resetOffsets),
  deleteOffsets: typed<strata.v1.DeleteOffsetsRequest, strata.v1.DeleteOffsetsResponse>(groupsServiceDefinition.deleteOffsets),
  deleteGroup: typed<strata.v1.DeleteGroupRequest, strata.v1.DeleteGroupResponse>(groupsServiceDefinition.deleteGroup),
} as const;

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
  /** The names in `configs` the topic sets itself, sorted; the others are broker defaults. */
  overriddenConfigs: string[];
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

export interface GroupSummary {
  groupId: string;
  /** 'empty', 'assigning', 'reconciling' or 'stable'. */
  state: string;
  members: number;
}

export interface GroupPartitionAssignment {
  topic: string;
  partition: number;
}

export interface GroupMemberDescription {
  memberId: string;
  instanceId: string | null;
  clientId: string;
  /** Peer address of the member's last heartbeat. */
  host: string;
  memberEpoch: number;
  assignment: GroupPartitionAssignment[];
  subscribedTopicNames: string[];
  subscribedTopicRegex: string;
}

export interface GroupPartitionLag {
  topic: string;
  partition: number;
  /** -1 when nothing is committed. */
  committedOffset: number;
  /** The partition's high watermark. */
  logEndOffset: number;
  /** Records not yet committed. */
  lag: number;
  /** Age of the oldest record not yet committed (ms); 0 without lag; -1 when that record could not be read. */
  lagMs: number;
  /** The member that owns the partition now; '' when none. */
  memberId: string;
}

export interface GroupDescription {
  groupId: string;
  state: string;
  groupEpoch: number;
  assignor: string;
  members: GroupMemberDescription[];
  partitions: GroupPartitionLag[];
  totalLag: number;
}

export interface CommittedOffset {
  topic: string;
  partition: number;
  /** The next offset the group will consume. */
  offset: number;
  metadata: string;
  commitTimeMs: number;
}

/** Where `resetOffsets` moves a group's committed offsets. */
export type ResetSpec = 'earliest' | 'latest' | { offset: number } | { timestamp: number } | { shiftBy: number };

export function describeFromWire(description: strata.v1.TopicDescription): TopicDescription {
  return {
    name: description.name,
    configs: { ...(description.configs ?? {}) },
    overriddenConfigs: [...(description.overriddenConfigs ?? [])],
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

/**
 * Topic configs as the wire carries them, strings; a safe integer is taken as its decimal
 * spelling. Anything else is INVALID_ARGUMENT here: protobufjs would send it as an empty string
 * (a number) or fail to encode it (null), and the broker's answer would misstate what was given.
 */
function checkConfigs(configs: Record<string, string>): Record<string, string> {
  if (typeof configs !== 'object' || configs === null || Array.isArray(configs)) throw invalidArgument('configs must be an object of config names to string values');
  const checked: Record<string, string> = {};
  for (const [key, value] of Object.entries(configs as Record<string, unknown>)) {
    if (typeof value === 'string') checked[key] = value;
    else if (Number.isSafeInteger(value)) checked[key] = String(value);
    else throw invalidArgument(`config ${key} must be a string (or an integer), got ${value === null ? 'null' : typeof value}`);
  }
  return checked;
}

function startPosition(spec: OffsetSpec): strata.v1.StartPosition {
  if (spec === 'earliest') return v1.StartPosition.create({ earliest: true });
  if (spec === 'latest') return v1.StartPosition.create({ latest: true });
  if (typeof spec === 'object' && spec !== null && 'timestamp' in spec) return v1.StartPosition.create({ timestamp: numberToLong(spec.timestamp, 'timestamp') });
  if (typeof spec === 'object' && spec !== null && 'offset' in spec) return v1.StartPosition.create({ offset: numberToLong(spec.offset, 'offset') });
  throw invalidArgument(`an offset spec is 'earliest', 'latest', { timestamp } or { offset }, got ${JSON.stringify(spec)}`);
}

export async function listOffsets(connection: Connection, topic: string, partition: number, spec: OffsetSpec, signal?: AbortSignal): Promise<OffsetLookup> {
  const request = v1.ListOffsetsRequest.create({ topic, partition: checkPartition(partition), position: startPosition(spec) });
  const response = await connection.unary(methods.listOffsets, request, signal ? { signal } : {});
  return {
    offset: longToNumber(response.offset, 'offset'),
    logStartOffset: longToNumber(response.logStartOffset, 'log_start_offset'),
    highWatermark: longToNumber(response.highWatermark, 'high_watermark'),
  };
}

function committedFromWire(entry: strata.v1.ICommittedOffset): CommittedOffset {
  return {
    topic: entry.topic ?? '',
    partition: entry.partition ?? 0,
    offset: longToNumber(entry.offset, 'offset'),
    metadata: entry.metadata ?? '',
    commitTimeMs: longToNumber(entry.commitTimeMs, 'commit_time_ms'),
  };
}

function pairsFromWire(list: readonly strata.v1.ITopicPartitions[]): GroupPartitionAssignment[] {
  return list.flatMap((entry) => (entry.partitions ?? []).map((partition) => ({ topic: entry.topic ?? '', partition })));
}

function groupFromWire(response: strata.v1.DescribeGroupResponse): GroupDescription {
  return {
    groupId: response.groupId,
    state: response.state,
    groupEpoch: response.groupEpoch,
    assignor: response.assignor,
    members: response.members.map((member) => ({
      memberId: member.memberId,
      instanceId: member.instanceId ?? null,
      clientId: member.clientId,
      host: member.host,
      memberEpoch: member.memberEpoch,
      assignment: pairsFromWire(member.assignment),
      subscribedTopicNames: [...member.subscribedTopicNames],
      subscribedTopicRegex: member.subscribedTopicRegex,
    })),
    partitions: response.partitions.map((entry) => ({
      topic: entry.topic,
      partition: entry.partition,
      committedOffset: longToNumber(entry.committedOffset, 'committed_offset'),
      logEndOffset: longToNumber(entry.logEndOffset, 'log_end_offset'),
      lag: longToNumber(entry.lag, 'lag'),
      lagMs: longToNumber(entry.lagMs, 'lag_ms'),
      memberId: entry.memberId,
    })),
    totalLag: longToNumber(response.totalLag, 'total_lag'),
  };
}

function resetRequest(groupId: string, topic: string, to: ResetSpec, partitions: readonly number[], dryRun: boolean): strata.v1.ResetOffsetsRequest {
  const base = { groupId, topic, partitions: [...partitions], dryRun };
  if (to === 'earliest') return v1.ResetOffsetsRequest.create({ ...base, earliest: true });
  if (to === 'latest') return v1.ResetOffsetsRequest.create({ ...base, latest: true });
  if (typeof to === 'object' && to !== null) {
    if ('offset' in to) return v1.ResetOffsetsRequest.create({ ...base, offset: numberToLong(to.offset, 'offset') });
    if ('timestamp' in to) return v1.ResetOffsetsRequest.create({ ...base, timestamp: numberToLong(to.timestamp, 'timestamp') });
    if ('shiftBy' in to) return v1.ResetOffsetsRequest.create({ ...base, shiftBy: numberToLong(to.shiftBy, 'shiftBy') });
  }
  throw invalidArgument(`reset to 'earliest', 'latest', { offset }, { timestamp } or { shiftBy }, got ${JSON.stringify(to)}`);
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
    const partitions = checkPartitionCount(options.partitions ?? 0, 'partitions', "the broker's --default-partitions");
    const request = v1.CreateTopicRequest.create({ name, partitions, configs: checkConfigs(options.configs ?? {}) });
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

  /**
   * Sets `configs` and returns the configs named in `reset` to the broker default (the topic
   * then follows the broker's flag).
   */
  async alterTopicConfigs(name: string, configs: Record<string, string>, reset: readonly string[] = []): Promise<TopicDescription> {
    this.checkOpen();
    if (!Array.isArray(reset) || !reset.every((key: unknown) => typeof key === 'string')) throw invalidArgument('reset must be an array of config names');
    const request = v1.AlterTopicConfigsRequest.create({ name, configs: checkConfigs(configs), resetConfigs: [...reset] });
    return describeFromWire(await this.connection.unary(methods.alterTopicConfigs, request));
  }

  /** Raises the topic's partition count to `partitions` (the new total). */
  async addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    this.checkOpen();
    const request = v1.AddPartitionsRequest.create({ name, partitions: checkPartitionCount(partitions, 'partitions') });
    return describeFromWire(await this.connection.unary(methods.addPartitions, request));
  }

  async listOffsets(topic: string, partition: number, spec: OffsetSpec): Promise<OffsetLookup> {
    this.checkOpen();
    return listOffsets(this.connection, topic, partition, spec);
  }

  // -------------------------------------------------------------------------------------------
  // Consumer groups.

  /**
   * Every group, ordered by id, asked for `pageSize` at a time (1 to 4,000, the most the broker
   * answers in a page; 0 asks for all in one answer). Throws if an answer's token would not move
   * the listing on, rather than ask for the same page for ever.
   */
  async listGroups(options: { pageSize?: number } = {}): Promise<GroupSummary[]> {
    this.checkOpen();
    const pageSize = options.pageSize ?? LIST_GROUPS_PAGE_SIZE;
    const problem = integerRangeProblem('pageSize', pageSize, 0, LIST_GROUPS_PAGE_MAX);
    if (problem !== null) throw invalidArgument(problem);
    const groups: GroupSummary[] = [];
    let pageToken = '';
    do {
      const response = await this.connection.unary(groupMethods.listGroups, v1.ListGroupsRequest.create({ pageSize, pageToken }));
      for (const group of response.groups) groups.push({ groupId: group.groupId, state: group.state, members: group.members });
      const next = response.nextPageToken;
      if (next !== '' && (response.groups.length === 0 || next <= pageToken)) {
        throw new StrataClientError('INTERNAL', `ListGroups answered a page token that does not move on (${JSON.stringify(next)} after ${JSON.stringify(pageToken)}, ${response.groups.length} groups)`);
      }
      pageToken = next;
    } while (pageToken !== '');
    return groups;
  }

  /** Members, and per partition the committed offset, end offset and lag. NOT_FOUND for an unknown group. */
  async describeGroup(groupId: string): Promise<GroupDescription> {
    this.checkOpen();
    return groupFromWire(await this.connection.unary(groupMethods.describeGroup, v1.DescribeGroupRequest.create({ groupId })));
  }

  /** The group's committed offsets (of the topics given, or all). */
  async fetchOffsets(groupId: string, topics: readonly string[] = []): Promise<CommittedOffset[]> {
    this.checkOpen();
    const response = await this.connection.unary(groupMethods.fetchOffsets, v1.FetchOffsetsRequest.create({ groupId, topics: [...topics] }));
    return response.offsets.map(committedFromWire);
  }

  /**
   * Moves the committed offsets of a group with no members on `topic` (the partitions given, or
   * all); FAILED_PRECONDITION while it has members. Returns the new offsets. With `dryRun`, only
   * returns the offsets it would set (the same checks apply) and changes nothing.
   */
  async resetOffsets(groupId: string, topic: string, to: ResetSpec, partitions: readonly number[] = [], options: { dryRun?: boolean } = {}): Promise<CommittedOffset[]> {
    this.checkOpen();
    for (const partition of partitions) checkPartition(partition);
    const response = await this.connection.unary(groupMethods.resetOffsets, resetRequest(groupId, topic, to, partitions, options.dryRun === true));
    return response.offsets.map(committedFromWire);
  }

  /**
   * Deletes the committed offsets of a group with no members for the topics given (at least one:
   * the wire's empty list means every topic, which `deleteGroup` is for).
   */
  async deleteOffsets(groupId: string, topics: readonly string[]): Promise<void> {
    this.checkOpen();
    if (!Array.isArray(topics) || topics.length === 0) throw invalidArgument('deleteOffsets needs an array of at least one topic; to delete every offset of the group, use deleteGroup');
    await this.connection.unary(groupMethods.deleteOffsets, v1.DeleteOffsetsRequest.create({ groupId, topics: [...topics] }));
  }

  /** Deletes a group with no members and its offsets. */
  async deleteGroup(groupId: string): Promise<void> {
    this.checkOpen();
    await this.connection.unary(groupMethods.deleteGroup, v1.DeleteGroupRequest.create({ groupId }));
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
