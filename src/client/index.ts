/** Strata's TypeScript client: producer, consumer (manual or group member), subscription (server push), admin, and the connection they share. */
export { Admin } from './admin.js';
export type {
  CommittedOffset,
  CreateTopicOptions,
  GroupDescription,
  GroupMemberDescription,
  GroupPartitionAssignment,
  GroupPartitionLag,
  GroupSummary,
  OffsetLookup,
  OffsetSpec,
  PartitionDescription,
  ResetSpec,
  TopicDescription,
  TopicSummary,
} from './admin.js';
export { Subscription, subscribe } from './subscription.js';
export type { SubscribeOptions, SubscriptionBatch } from './subscription.js';
export { Connection } from './connection.js';
export type { ConnectionOptions, ConnectionSource, TlsOptions, UnaryCallOptions } from './connection.js';
export { Consumer } from './consumer.js';
export { OffsetCommitStream } from './offset-commit-stream.js';
export type {
  CommitFailedEvent,
  ConsumerBatch,
  ConsumerEvents,
  ConsumerOptions,
  ConsumerRecord,
  ConsumerSettings,
  FetchErrorEvent,
  OffsetResetEvent,
  OffsetsCommittedEvent,
  ResetPolicy,
  TopicPartition,
  TopicPartitionOffset,
} from './consumer.js';
export { GroupMember } from './group-member.js';
export type {
  AssignorName,
  GroupCommittedOffset,
  GroupErrorEvent,
  GroupJoinedEvent,
  GroupMemberEvents,
  GroupMemberSettings,
  GroupSubscription,
  GroupSubscriptionInput,
  MemberConsumer,
  PartitionsEvent,
  PartitionsLostEvent,
} from './group-member.js';
export { StrataClientError, isStrataClientError } from './errors.js';
export type { StatusName } from './errors.js';
export { Producer } from './producer.js';
export type { Acks, Bytes, ProducerEvents, ProducerOptions, ProducerRecord, ProducerRecoveredEvent, ProducerRetryEvent, ProducerSettings, SendCallback, SendResult } from './producer.js';
