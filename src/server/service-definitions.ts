/**
 * grpc-js service definitions for Strata's API, built from the protobufjs classes generated from
 * `proto/` (see `npm run proto`). Servers and clients share them, so both sides encode exactly
 * the same way. Serialisation hands grpc-js the encoder's Buffer without copying; a handler may
 * also answer with a Buffer it encoded itself (raw fetches and subscriptions do).
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { strata } from '../generated/strata.js';
import { decodeProduceRequest } from './produce-request-decoder.js';

export const v1 = strata.v1;

interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function method<Request, Response>(
  service: string,
  name: string,
  request: MessageCodec<Request>,
  response: MessageCodec<Response>,
  requestStream = false,
  responseStream = false,
): MethodDefinition<Request, Response> {
  return {
    path: `/strata.v1.${service}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: (message: Request) => asBuffer(request.encode(message).finish()),
    requestDeserialize: (bytes: Buffer) => request.decode(bytes),
    // A Buffer is a response already encoded (raw-responses.ts): passed through.
    responseSerialize: (message: Response | Buffer) => (Buffer.isBuffer(message) ? message : asBuffer(response.encode(message).finish())),
    responseDeserialize: (bytes: Buffer) => response.decode(bytes),
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}

export const logServiceDefinition = {
  initProducer: method('Log', 'InitProducer', v1.InitProducerRequest, v1.InitProducerResponse),
  produce: method('Log', 'Produce', v1.ProduceRequest, v1.ProduceResponse),
  produceStream: method('Log', 'ProduceStream', v1.ProduceRequest, v1.ProduceResponse, true, true),
  fetch: method('Log', 'Fetch', v1.FetchRequest, v1.FetchResponse),
  subscribe: method('Log', 'Subscribe', v1.SubscribeRequest, v1.SubscribeResponse, false, true),
  listOffsets: method('Log', 'ListOffsets', v1.ListOffsetsRequest, v1.ListOffsetsResponse),
} satisfies ServiceDefinition;

/**
 * The Log service as the server registers it: produce requests keep their records' bytes
 * (produce-request-decoder.ts). Clients use `logServiceDefinition`; the bytes are the same.
 */
export const logServerDefinition = {
  ...logServiceDefinition,
  produce: { ...logServiceDefinition.produce, requestDeserialize: decodeProduceRequest },
  produceStream: { ...logServiceDefinition.produceStream, requestDeserialize: decodeProduceRequest },
} satisfies ServiceDefinition;

export const adminServiceDefinition = {
  createTopic: method('Admin', 'CreateTopic', v1.CreateTopicRequest, v1.TopicDescription),
  deleteTopic: method('Admin', 'DeleteTopic', v1.DeleteTopicRequest, v1.DeleteTopicResponse),
  listTopics: method('Admin', 'ListTopics', v1.ListTopicsRequest, v1.ListTopicsResponse),
  describeTopic: method('Admin', 'DescribeTopic', v1.DescribeTopicRequest, v1.TopicDescription),
  alterTopicConfigs: method('Admin', 'AlterTopicConfigs', v1.AlterTopicConfigsRequest, v1.TopicDescription),
  addPartitions: method('Admin', 'AddPartitions', v1.AddPartitionsRequest, v1.TopicDescription),
} satisfies ServiceDefinition;

export const groupsServiceDefinition = {
  heartbeat: method('Groups', 'Heartbeat', v1.HeartbeatRequest, v1.HeartbeatResponse),
  commitOffsets: method('Groups', 'CommitOffsets', v1.CommitOffsetsRequest, v1.CommitOffsetsResponse),
  commitOffsetsStream: method('Groups', 'CommitOffsetsStream', v1.CommitOffsetsRequest, v1.CommitOffsetsResponse, true, true),
  fetchOffsets: method('Groups', 'FetchOffsets', v1.FetchOffsetsRequest, v1.FetchOffsetsResponse),
  listGroups: method('Groups', 'ListGroups', v1.ListGroupsRequest, v1.ListGroupsResponse),
  describeGroup: method('Groups', 'DescribeGroup', v1.DescribeGroupRequest, v1.DescribeGroupResponse),
  resetOffsets: method('Groups', 'ResetOffsets', v1.ResetOffsetsRequest, v1.ResetOffsetsResponse),
  deleteOffsets: method('Groups', 'DeleteOffsets', v1.DeleteOffsetsRequest, v1.DeleteOffsetsResponse),
  deleteGroup: method('Groups', 'DeleteGroup', v1.DeleteGroupRequest, v1.DeleteGroupResponse),
} satisfies ServiceDefinition;

export const LOG_SERVICE_NAME = 'strata.v1.Log';
export const GROUPS_SERVICE_NAME = 'strata.v1.Groups';
export const ADMIN_SERVICE_NAME = 'strata.v1.Admin';
