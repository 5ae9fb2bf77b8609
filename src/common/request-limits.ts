/**
 * Request size limits shared by the broker, its options and the no-op benchmark server. A
 * light module on purpose: the no-op server imports it without loading the broker.
 */

/** `--max-request-bytes` by default: the largest gRPC request the server accepts. */
export const DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024;

/**
 * `--produce-memory-bytes` by default: the bytes of produce requests, across all connections,
 * that the broker reads before it stops reading produce streams. Equal to the largest request
 * and to one stream's own bound: a producer alone is held back no sooner than by its stream's
 * bound, but with the defaults one stream at that bound, or one request of the largest size,
 * fills the memory and holds the others back until half of it is free.
 */
export const DEFAULT_PRODUCE_MEMORY_BYTES = 64 * 1024 * 1024;

/**
 * Room a ProduceRequest needs around its batch: the topic name (at most 249 bytes), partition,
 * acks and correlation id, and the tags and lengths (under 300 bytes), with a margin. A topic's
 * max.message.bytes must leave this much of `--max-request-bytes` free.
 */
export const PRODUCE_REQUEST_FIELDS_BYTES_MAX = 1024;

/**
 * Why a batch of `maxMessageBytes` (a topic's max.message.bytes) cannot travel in one
 * ProduceRequest to a broker whose largest request is `maxRequestBytes`, or null. A producer
 * sends each batch as one request on a shared stream; a request over the server's limit ends
 * that stream, failing the other partitions' batches on it too, so the broker refuses a topic
 * config (and does not start with a default) that would allow one.
 */
export function batchRoomProblem(maxMessageBytes: number, maxRequestBytes: number): string | null {
  const limit = maxRequestBytes - PRODUCE_REQUEST_FIELDS_BYTES_MAX;
  if (maxMessageBytes <= limit) return null;
  return `max.message.bytes of ${maxMessageBytes} does not fit in one request to this broker: its largest request (--max-request-bytes) is ${maxRequestBytes} bytes, which leaves ${Math.max(0, limit)} for a batch`;
}

/** `batchRoomProblem` for the broker-wide default max.message.bytes, which stops a start. */
export function defaultBatchRoomProblem(maxMessageBytes: number, maxRequestBytes: number): string | null {
  const problem = batchRoomProblem(maxMessageBytes, maxRequestBytes);
  return problem === null ? null : `the default ${problem}; raise --max-request-bytes or lower --max-message-bytes`;
}

/**
 * The largest request, in bytes, of any method but Produce and ProduceStream. Those carry
 * records and take up to `--max-request-bytes`; every other request is a few names and numbers
 * (a heartbeat of a member owning 10,000 partitions of ten topics is about 19 KiB). Decoding is
 * where a large request costs: protobufjs makes an array element per packed number and the
 * handler an object per entry, all on the event loop, so a 60 MiB Heartbeat of packed zeros
 * held every call for 40 s and two of them ran the broker out of memory. Larger requests are
 * refused with RESOURCE_EXHAUSTED before their bytes are decoded.
 */
export const NON_PRODUCE_REQUEST_BYTES_MAX = 1024 * 1024;

/**
 * The largest record batch any partition accepts: the batch codec's bound, the largest
 * max.message.bytes a topic may have, and the largest append (`APPEND_BYTES_MAX` in
 * storage/partition-log.ts, a test keeps it equal). Here rather than in the storage layer so
 * that the produce request decoder, which clients load with the service definitions, does not
 * load storage.
 */
export const BATCH_BYTES_MAX = 16 * 1024 * 1024;

/**
 * The fewest bytes a record takes in a Kafka v2 batch: its length, attributes, timestamp delta,
 * offset delta, key length, value length and header count, at least a byte each.
 */
export const BATCH_RECORD_BYTES_MIN = 7;

/**
 * The bytes of a Kafka v2 batch before its records: `RECORDS_OFFSET` in `storage/record-batch.ts`,
 * which imports this module (a test checks the two agree).
 */
export const BATCH_OVERHEAD_BYTES = 61;

/**
 * The most records one ProduceRequest may carry: more cannot fit in one batch of
 * `BATCH_BYTES_MAX`, after the batch's own header. A record costs only two bytes in a request
 * (an empty `Record`) but seven in the batch built from it, and every record was parsed before
 * the batch's size was known: a 60 MiB request of 31 million empty records held the event loop
 * for 11.5 s and took 2 GB before it was refused. The decoder stops at this bound instead. Records without a partition
 * may spread over several partitions by key, so a request of more could in principle fit; it
 * is refused all the same, as one request is bounded work: such a client sends several.
 */
export const PRODUCE_REQUEST_RECORDS_MAX = Math.floor((BATCH_BYTES_MAX - BATCH_OVERHEAD_BYTES) / BATCH_RECORD_BYTES_MIN);

/** The fewest bytes a header takes in a Kafka v2 batch: its key length and value length. */
export const BATCH_HEADER_BYTES_MIN = 2;

/**
 * The most headers, over all its records, one ProduceRequest may carry (those of one record in
 * a batch of its own; records add bytes, not room), for the same reason:
 * an empty `Header` costs two bytes in a request, and 16 in the ranges the broker parses it
 * into. A 64 MiB request of one record with 33 million empty headers took about 768 MiB before
 * it was refused for its batch's size; the parser stops at this bound instead.
 */
export const PRODUCE_REQUEST_HEADERS_MAX = Math.floor((BATCH_BYTES_MAX - BATCH_OVERHEAD_BYTES - BATCH_RECORD_BYTES_MIN) / BATCH_HEADER_BYTES_MIN);

/**
 * Most groups one ListGroups answer holds when it pages: at the longest ids (255 characters of 3
 * bytes each in UTF-8) an entry takes about 790 bytes, so a page stays under 3.2 MB, inside the
 * 4 MiB receive limit most gRPC libraries default to.
 */
export const LIST_GROUPS_PAGE_MAX = 4_000;

/**
 * Most bytes of batches one Fetch answer or Subscribe message carries (`max_bytes`; larger is
 * INVALID_ARGUMENT): the client checks its setting against it before it subscribes.
 */
export const FETCH_BYTES_MAX = 64 * 1024 * 1024;
