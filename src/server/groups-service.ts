/**
 * Handlers of `strata.v1.Groups`: membership heartbeats, offset commits and group admin. A token
 * limited to some groups and topics (token-scope.ts) names only those, and lists only those. A
 * member acts only with the token that joined it (consumer-group.ts): heartbeats and commits
 * carry the call's token name to the coordinator, which refuses another's.
 */
import type { ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { PARTITION_COUNT_MAX } from '../common/broker-limits.js';
import { LIST_GROUPS_PAGE_MAX } from '../common/request-limits.js';
import type { GroupCoordinator, GroupDescription, ResetTarget } from '../groups/group-coordinator.js';
import { strata } from '../generated/strata.js';
import { nonNegative, toLong, toSafeNumber } from './convert.js';
import { invalidArgument } from './status.js';
import { pipelinedStream } from './pipelined-stream.js';
import { type Caller, callCaller, callScope } from './token-auth.js';
import type { TokenScope } from './token-scope.js';
import { type HandlerContext, unaryHandler } from './unary-handler.js';

const v1 = strata.v1;

type WirePartitions = strata.v1.TopicPartitions;

/**
 * The most partitions a heartbeat may list as owned: ten topics of the most partitions a topic
 * can have, far more than one member reads. Each entry costs the event loop an object, a string
 * and a set entry (a 1 MiB list of a million packed partitions took 300 ms), so a longer list,
 * which can only be a client's bug, is refused before any of them is made.
 */
export const OWNED_PARTITIONS_MAX = 10 * PARTITION_COUNT_MAX;

function partitionsFromWire(list: readonly WirePartitions[], field: string): { topic: string; partition: number }[] {
  let count = 0;
  for (const entry of list) count += entry.partitions.length;
  if (count > OWNED_PARTITIONS_MAX) throw invalidArgument(`${field} lists ${count} partitions; the limit is ${OWNED_PARTITIONS_MAX}: list each partition the member owns once`);
  return list.flatMap((entry) => entry.partitions.map((partition) => ({ topic: entry.topic, partition: nonNegative(partition, `${field}.partitions[]`) })));
}

function partitionsToWire(pairs: readonly { topic: string; partition: number }[]): strata.v1.TopicPartitions[] {
  const byTopic = new Map<string, number[]>();
  for (const { topic, partition } of pairs) {
    let list = byTopic.get(topic);
    if (list === undefined) byTopic.set(topic, (list = []));
    list.push(partition);
  }
  return [...byTopic].map(([topic, partitions]) => v1.TopicPartitions.create({ topic, partitions }));
}

function resetTargetFromWire(request: strata.v1.ResetOffsetsRequest): ResetTarget {
  switch (request.to) {
    case 'earliest':
      return { kind: 'earliest' };
    case 'latest':
      return { kind: 'latest' };
    case 'offset':
      return { kind: 'offset', offset: nonNegative(toSafeNumber(request.offset, 'offset'), 'offset') };
    case 'timestamp': {
      const timestamp = toSafeNumber(request.timestamp, 'timestamp');
      // Kafka's tools take -1 and -2 for latest and earliest; here those are fields of their own.
      if (timestamp < 0) throw invalidArgument(`timestamp must be a time in ms since the epoch, not negative, got ${timestamp} (set latest or earliest to reset to the newest or oldest records)`);
      return { kind: 'timestamp', timestamp };
    }
    case 'shiftBy':
      return { kind: 'shiftBy', shift: toSafeNumber(request.shiftBy, 'shift_by') };
    default:
      throw invalidArgument('say where to reset to: earliest, latest, offset, timestamp or shift_by');
  }
}

function committedToWire(entry: { topic: string; partition: number; offset: number; metadata: string; commitTimeMs: number }): strata.v1.CommittedOffset {
  return v1.CommittedOffset.create({ topic: entry.topic, partition: entry.partition, offset: toLong(entry.offset), metadata: entry.metadata, commitTimeMs: toLong(entry.commitTimeMs) });
}

/** Commits a CommitOffsetsStream may have in flight before the server stops reading from it. */
export const COMMIT_STREAM_IN_FLIGHT_MAX = 1024;
/** Memory (as `commitRequestBytes` counts it) of the commits a CommitOffsetsStream may have in flight. */
export const COMMIT_STREAM_IN_FLIGHT_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Heap of one offset entry of a commit in flight, its strings apart: 137 bytes measured for the
 * decoded entry (12 on the wire), and as much again for the copies the commit makes of it.
 */
const OFFSET_ENTRY_BYTES = 300;

/**
 * What a commit request in flight holds in memory, about: a request of many small entries takes
 * over twenty times its wire size, so the stream's bound counts this rather than the wire bytes.
 * Strings count 2 bytes a character (V8 keeps text outside Latin-1 so).
 */
export function commitRequestBytes(request: strata.v1.CommitOffsetsRequest): number {
  let units = request.groupId.length + request.memberId.length;
  let bytes = OFFSET_ENTRY_BYTES;
  for (const entry of request.offsets) {
    bytes += OFFSET_ENTRY_BYTES;
    units += entry.topic.length + (entry.metadata?.length ?? 0);
  }
  return bytes + 2 * units;
}

/** Throws unless `scope` may name every topic `groupId` has committed offsets for (see `checkTopicsOfGroup`). */
function checkGroupTopics(coordinator: GroupCoordinator, scope: TokenScope, groupId: string): void {
  if (scope.topics.every) return;
  scope.checkTopicsOfGroup(groupId, new Set(coordinator.fetchOffsets(groupId, []).map((entry) => entry.topic)));
}

/**
 * `description` with only what concerns the topics `scope` may name: the partitions' offsets and
 * lag (and the total of those), the members' assignments and subscribed topic names, and no
 * member's regex (it may name other topics); as Kafka 4 refuses to describe such a group to a
 * client that may not describe all of its topics.
 */
function describedWithin(description: GroupDescription, scope: TokenScope): GroupDescription {
  const topics = scope.topics;
  if (topics.every) return description;
  const partitions = topics.within(description.partitions, (entry) => entry.topic);
  return {
    ...description,
    members: description.members.map((member) => ({
      ...member,
      assignment: [...topics.within(member.assignment, (entry) => entry.topic)],
      subscribedTopicNames: [...topics.within(member.subscribedTopicNames, (topic) => topic)],
      subscribedTopicRegex: '',
    })),
    partitions: [...partitions],
    totalLag: partitions.reduce((sum, entry) => sum + entry.lag, 0),
  };
}

/** `caller`'s token must be the one that joined the committing member (no token without tokens). */
function commit(coordinator: GroupCoordinator, request: strata.v1.CommitOffsetsRequest, { scope, name }: Caller): Promise<void> {
  scope.checkGroup(request.groupId);
  if (!scope.topics.every) scope.checkTopics(request.offsets.map((entry) => entry.topic));
  return coordinator.commit(
    request.groupId,
    request.memberId,
    request.memberEpoch,
    request.offsets.map((entry, index) => ({
      topic: entry.topic,
      partition: nonNegative(entry.partition, `offsets[${index}].partition`),
      offset: toSafeNumber(entry.offset, `offsets[${index}].offset`),
      metadata: entry.metadata ?? '',
      topicCreatedAtMs: nonNegative(toSafeNumber(entry.topicCreatedAtMs, `offsets[${index}].topic_created_at_ms`), `offsets[${index}].topic_created_at_ms`),
    })),
    name,
  );
}


/**
 * The page of `groups` (ordered by id) after `pageToken` (the last id of the page before), of
 * at most `pageSize` (0: all of them), and the token of the next page ('' after the last).
 */
export function listGroupsPage<Group extends { groupId: string }>(groups: readonly Group[], pageSize: number, pageToken: string): { groups: Group[]; nextPageToken: string } {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw invalidArgument(`page_size must be 0 (every group) or a positive number of groups, got ${pageSize}`);
  let start = 0;
  if (pageToken !== '') {
    // The first id after the token: ids compare as the list is ordered, by UTF-16 code units.
    let end = groups.length;
    while (start < end) {
      const middle = (start + end) >>> 1;
      if (groups[middle]!.groupId <= pageToken) start = middle + 1;
      else end = middle;
    }
  }
  if (pageSize === 0) return { groups: groups.slice(start), nextPageToken: '' };
  const page = groups.slice(start, start + Math.min(pageSize, LIST_GROUPS_PAGE_MAX));
  const more = start + page.length < groups.length;
  return { groups: page, nextPageToken: more ? page.at(-1)!.groupId : '' };
}

export function groupsServiceHandlers(coordinator: GroupCoordinator, context: HandlerContext, stopping: AbortSignal): UntypedServiceImplementation {
  return {
    heartbeat: unaryHandler(context, 'Heartbeat', async (request: strata.v1.HeartbeatRequest, call: ServerUnaryCall<strata.v1.HeartbeatRequest, strata.v1.HeartbeatResponse>) => {
      const { scope, name } = callCaller(context.authenticator, call.metadata);
      scope.checkGroup(request.groupId);
      const subscription = request.keepSubscription
        ? null
        : { topicNames: [...request.subscribedTopicNames], regex: request.subscribedTopicRegex ?? '' };
      // Topics named outright are checked; a regex may match others, which the member is not
      // assigned (nor those of a kept subscription the token may not use: see topicScope).
      if (subscription !== null) scope.checkTopics(subscription.topicNames);
      let result: ReturnType<GroupCoordinator['heartbeat']>;
      try {
        result = coordinator.heartbeat({
          groupId: request.groupId,
          memberId: request.memberId,
          memberEpoch: request.memberEpoch,
          instanceId: request.instanceId ?? null,
          clientId: request.clientId,
          host: call.getPeer(),
          subscription,
          assignor: request.assignor,
          owned: partitionsFromWire(request.ownedPartitions, 'owned_partitions'),
          sessionTimeoutMs: nonNegative(request.sessionTimeoutMs, 'session_timeout_ms'),
          topicScope: scope.topics.every ? null : scope.topics,
          tokenName: name,
        });
      } catch (error) {
        // A refusal may have changed the group too (a fenced member is removed): answered once
        // that is on disk, so a crash does not bring back a member its consumer has replaced
        // (STORAGE_ERROR, as any answer, when it cannot be written).
        await coordinator.membershipDurable(request.groupId);
        throw error;
      }
      // Answered once what the heartbeat changed is on disk: a crash cannot take it back.
      await coordinator.membershipDurable(request.groupId);
      return v1.HeartbeatResponse.create({
        memberId: result.memberId,
        memberEpoch: result.memberEpoch,
        heartbeatIntervalMs: result.heartbeatIntervalMs,
        // The group assigns the member only this token's topics; an answer to a heartbeat of the
        // previous epoch (its answer lost) repeats what it had before a narrowed token's first one.
        assignment: partitionsToWire(scope.topics.within(result.assignment, (entry) => entry.topic)),
        sessionTimeoutMs: result.sessionTimeoutMs,
      });
    }),
    commitOffsets: unaryHandler(context, 'CommitOffsets', async (request: strata.v1.CommitOffsetsRequest, call) => {
      await commit(coordinator, request, callCaller(context.authenticator, call.metadata));
      return v1.CommitOffsetsResponse.create();
    }),
    commitOffsetsStream: pipelinedStream(context, stopping, {
      method: 'CommitOffsetsStream',
      inFlightMax: COMMIT_STREAM_IN_FLIGHT_MAX,
      inFlightBytesMax: COMMIT_STREAM_IN_FLIGHT_BYTES_MAX,
      requestBytes: commitRequestBytes,
      handle: async (request: strata.v1.CommitOffsetsRequest, call) => {
        await commit(coordinator, request, callCaller(context.authenticator, call.metadata));
        return v1.CommitOffsetsResponse.create({ correlationId: request.correlationId });
      },
      failed: (request, code, message, strataError) => v1.CommitOffsetsResponse.create({ correlationId: request.correlationId, error: v1.ItemError.create({ code, message, strataError }) }),
    }),
    fetchOffsets: unaryHandler(context, 'FetchOffsets', async (request: strata.v1.FetchOffsetsRequest, call) => {
      const scope = callScope(context.authenticator, call.metadata);
      scope.checkGroup(request.groupId);
      scope.checkTopics(request.topics);
      // Every topic's offsets, when none is named: only those of the topics the token may name.
      const offsets = scope.topics.within(coordinator.fetchOffsets(request.groupId, request.topics), (entry) => entry.topic);
      return v1.FetchOffsetsResponse.create({ offsets: offsets.map(committedToWire) });
    }),
    listGroups: unaryHandler(context, 'ListGroups', async (request: strata.v1.ListGroupsRequest, call) => {
      const scope = callScope(context.authenticator, call.metadata);
      const visible = scope.groups.within(coordinator.listGroups(), (group) => group.groupId);
      const { groups, nextPageToken } = listGroupsPage(visible, request.pageSize, request.pageToken);
      return v1.ListGroupsResponse.create({ groups: groups.map((group) => v1.GroupSummary.create(group)), nextPageToken });
    }),
    describeGroup: unaryHandler(context, 'DescribeGroup', async (request: strata.v1.DescribeGroupRequest, call) => {
      const scope = callScope(context.authenticator, call.metadata);
      scope.checkGroup(request.groupId);
      const description = describedWithin(await coordinator.describeGroup(request.groupId), scope);
      return v1.DescribeGroupResponse.create({
        groupId: description.groupId,
        state: description.state,
        groupEpoch: description.groupEpoch,
        assignor: description.assignor,
        members: description.members.map((member) =>
          v1.MemberDescription.create({
            memberId: member.memberId,
            instanceId: member.instanceId,
            clientId: member.clientId,
            host: member.host,
            memberEpoch: member.memberEpoch,
            assignment: partitionsToWire(member.assignment),
            subscribedTopicNames: member.subscribedTopicNames,
            subscribedTopicRegex: member.subscribedTopicRegex,
          }),
        ),
        partitions: description.partitions.map((entry) =>
          v1.PartitionLag.create({
            topic: entry.topic,
            partition: entry.partition,
            committedOffset: toLong(entry.committedOffset),
            logEndOffset: toLong(entry.logEndOffset),
            lag: toLong(entry.lag),
            lagMs: toLong(entry.lagMs),
            memberId: entry.memberId,
          }),
        ),
        totalLag: toLong(description.totalLag),
      });
    }),
    resetOffsets: unaryHandler(context, 'ResetOffsets', async (request: strata.v1.ResetOffsetsRequest, call) => {
      const scope = callScope(context.authenticator, call.metadata);
      scope.checkGroup(request.groupId);
      scope.checkTopic(request.topic);
      const offsets = await coordinator.resetOffsets(request.groupId, request.topic, request.partitions.map((partition) => nonNegative(partition, 'partitions[]')), resetTargetFromWire(request), request.dryRun);
      return v1.ResetOffsetsResponse.create({ offsets: offsets.map(committedToWire) });
    }),
    deleteOffsets: unaryHandler(context, 'DeleteOffsets', async (request: strata.v1.DeleteOffsetsRequest, call) => {
      const scope = callScope(context.authenticator, call.metadata);
      scope.checkGroup(request.groupId);
      if (request.topics.length === 0) checkGroupTopics(coordinator, scope, request.groupId);
      scope.checkTopics(request.topics);
      await coordinator.deleteOffsets(request.groupId, request.topics);
      return v1.DeleteOffsetsResponse.create();
    }),
    deleteGroup: unaryHandler(context, 'DeleteGroup', async (request: strata.v1.DeleteGroupRequest, call) => {
      const scope = callScope(context.authenticator, call.metadata);
      scope.checkGroup(request.groupId);
      checkGroupTopics(coordinator, scope, request.groupId);
      await coordinator.deleteGroup(request.groupId);
      return v1.DeleteGroupResponse.create();
    }),
  };
}
