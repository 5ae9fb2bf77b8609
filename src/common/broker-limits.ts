/**
 * Bounds the broker enforces on topics and consumer groups, shared with its options (checked
 * when `strata serve` starts) and the client (checked before a request is sent). A light module
 * on purpose: the CLI loads the options of every command, and must not load the broker for it.
 */

import { TOPIC_NAME_LENGTH_MAX } from './topic-name.js';

/** The most partitions a topic may have. */
export const PARTITION_COUNT_MAX = 10_000;

/** The longest client id and static instance id a group member may give (Kafka bounds the instance id as a topic name). */
export const MEMBER_CLIENT_ID_LENGTH_MAX = 255;
export const MEMBER_INSTANCE_ID_LENGTH_MAX = TOPIC_NAME_LENGTH_MAX;

/** The session timeouts a consumer-group member may have, the broker's default included. */
export const SESSION_TIMEOUT_MIN_MS = 100;
export const SESSION_TIMEOUT_MAX_MS = 30 * 60 * 1000;

/** How long a consumer group with no members keeps its committed offsets: Kafka's default, 7 days. */
export const DEFAULT_OFFSETS_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * How often each partition's recovery checkpoint moves up to its durable end, by default: Kafka's
 * `log.flush.offset.checkpoint.interval.ms`.
 */
export const DEFAULT_RECOVERY_CHECKPOINT_INTERVAL_MS = 60_000;

/** How often retention runs over every partition (and over the offsets of empty groups), by default. */
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 5 * 60 * 1000;

/**
 * How long `strata serve` waits past --shutdown-timeout-ms for the broker to close before it
 * exits anyway (exit code 1): the bound on a stop that deployments' grace periods must exceed.
 */
export const SHUTDOWN_GUARD_MS = 5_000;
