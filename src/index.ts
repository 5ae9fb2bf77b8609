/** Strata's public API: the storage engine and the record batch codec. */
export { PartitionLog } from './storage/partition-log.js';
export type { AppendResult, AppendWait, PartitionLogOptions, ReadResult } from './storage/partition-log.js';
export { DEFAULT_LOG_CONFIG, KAFKA_NAMES, parseKafkaConfig, resolveLogConfig } from './storage/log-config.js';
export type { FlushMode, LogConfig } from './storage/log-config.js';
export { buildBatch, RecordBatchBuilder } from './storage/record-batch-builder.js';
export type { BatchOptions, BatchSealOptions } from './storage/record-batch-builder.js';
export {
  decodeBatches,
  decodeRecords,
  readBatchHeader,
} from './storage/record-batch.js';
export { validateBatches } from './storage/batch-validation.js';
export type { BatchHeader, DecodedRecord, RecordHeader, RecordInput } from './storage/record-batch.js';
export { ErrorCode, StrataError, isStrataError } from './common/errors.js';
export { ManualClock, systemClock } from './common/clock.js';
export type { Clock } from './common/clock.js';
export { Admin, Connection, Consumer, Producer, StrataClientError, Subscription, isStrataClientError, subscribe } from './client/index.js';
export type {
  Acks,
  CommitFailedEvent,
  ConnectionOptions,
  ConsumerBatch,
  ConsumerEvents,
  ConsumerOptions,
  ConsumerRecord,
  FetchErrorEvent,
  GroupErrorEvent,
  GroupJoinedEvent,
  OffsetResetEvent,
  OffsetsCommittedEvent,
  OffsetSpec,
  PartitionsEvent,
  PartitionsLostEvent,
  ProducerEvents,
  ProducerOptions,
  ProducerRecord,
  ProducerRecoveredEvent,
  ProducerRetryEvent,
  SendCallback,
  SendResult,
  StatusName,
  SubscribeOptions,
  SubscriptionBatch,
  TopicDescription,
  TopicPartition,
} from './client/index.js';
