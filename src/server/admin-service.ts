/**
 * Handlers of `strata.v1.Admin`: topic administration. A token limited to some topics names only
 * those (token-scope.ts), and lists only those.
 */
import type { Metadata, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Broker, TopicDescription } from '../broker/broker.js';
import { strata } from '../generated/strata.js';
import { toLong } from './convert.js';
import { invalidArgument } from './status.js';
import { callScope } from './token-auth.js';
import { type HandlerContext, unaryHandler } from './unary-handler.js';

const v1 = strata.v1;

function describeToWire(description: TopicDescription): strata.v1.TopicDescription {
  return v1.TopicDescription.create({
    name: description.name,
    configs: description.configs,
    overriddenConfigs: description.overriddenConfigs,
    createdAtMs: toLong(description.createdAtMs),
    partitions: description.partitions.map((partition) =>
      v1.PartitionDescription.create({
        partition: partition.partition,
        logStartOffset: toLong(partition.logStartOffset),
        highWatermark: toLong(partition.highWatermark),
        logEndOffset: toLong(partition.logEndOffset),
        sizeBytes: toLong(partition.sizeBytes),
        segmentCount: partition.segmentCount,
        error: partition.error,
      }),
    ),
  });
}

function configsFromWire(configs: Record<string, string> | null | undefined): Record<string, string> {
  return { ...(configs ?? {}) };
}

export function adminServiceHandlers(broker: Broker, context: HandlerContext): UntypedServiceImplementation {
  /** Throws unless the token of the call with `metadata` may name `topic`. */
  const checkTopic = (metadata: Metadata, topic: string): void => callScope(context.authenticator, metadata).checkTopic(topic);
  return {
    createTopic: unaryHandler(context, 'CreateTopic', async (request: strata.v1.CreateTopicRequest, call) => {
      checkTopic(call.metadata, request.name);
      if (request.partitions < 0) throw invalidArgument(`partitions must not be negative, got ${request.partitions}`);
      return describeToWire(await broker.createTopic(request.name, request.partitions, configsFromWire(request.configs)));
    }),
    deleteTopic: unaryHandler(context, 'DeleteTopic', async (request: strata.v1.DeleteTopicRequest, call) => {
      checkTopic(call.metadata, request.name);
      await broker.deleteTopic(request.name);
      return v1.DeleteTopicResponse.create();
    }),
    listTopics: unaryHandler(context, 'ListTopics', async (_request: strata.v1.ListTopicsRequest, call) => {
      const scope = callScope(context.authenticator, call.metadata);
      return v1.ListTopicsResponse.create({
        topics: scope.topics.within(broker.listTopics(), (topic) => topic.name).map((topic) => v1.TopicSummary.create(topic)),
      });
    }),
    describeTopic: unaryHandler(context, 'DescribeTopic', async (request: strata.v1.DescribeTopicRequest, call) => {
      checkTopic(call.metadata, request.name);
      return describeToWire(broker.describeTopic(request.name));
    }),
    alterTopicConfigs: unaryHandler(context, 'AlterTopicConfigs', async (request: strata.v1.AlterTopicConfigsRequest, call) => {
      checkTopic(call.metadata, request.name);
      return describeToWire(await broker.alterTopicConfigs(request.name, configsFromWire(request.configs), request.resetConfigs));
    }),
    addPartitions: unaryHandler(context, 'AddPartitions', async (request: strata.v1.AddPartitionsRequest, call) => {
      checkTopic(call.metadata, request.name);
      return describeToWire(await broker.addPartitions(request.name, request.partitions));
    }),
  };
}
