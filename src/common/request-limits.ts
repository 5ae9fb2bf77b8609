/**
 * Request size limits shared by the broker, its options and the no-op benchmark server. A
 * light module on purpose: the no-op server imports it without loading the broker.
 */

/** `--max-request-bytes` by default: the largest gRPC request the server accepts. */
export const DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024;

/**
 * Room a ProduceRequest needs around its batch: the topic name (at most 249 bytes), partition,
 * acks and correlation id, and the tags and lengths (under 300 bytes), with a margin. A topic's
 * max.message.bytes must leave this much of `--max-request-bytes` free.
 */
export const PRODUCE_REQUEST_FIELDS_BYTES_MAX = 1024;
