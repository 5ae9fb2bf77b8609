/**
 * The record batch codec: Kafka's RecordBatch v2 (magic 2), byte for byte. Every path that
 * touches batches (recovery, reads, the client, dump tools; append validation through
 * `batch-validation.ts`) goes through this module, so the layout, the CRC rule and the length
 * limits live in exactly one place.
 *
 * Layout (all integers big-endian):
 *
 *   offset  size  field
 *        0     8  baseOffset            offset of the first record; assigned by the broker
 *        8     4  batchLength           bytes that follow this field (total size - 12)
 *       12     4  partitionLeaderEpoch
 *       16     1  magic                 always 2
 *       17     4  crc                   CRC32C of bytes [21, end), stored unsigned
 *       21     2  attributes            bits 0-2 compression (0 none, 1 gzip, 2 snappy,
 *                                       3 lz4, 4 zstd), bit 3 timestamp type (1 = log
 *                                       append time), bit 4 transactional, bit 5 control
 *       23     4  lastOffsetDelta       offset of the last record minus baseOffset
 *       27     8  baseTimestamp         timestamp of the first record (ms)
 *       35     8  maxTimestamp          largest record timestamp (ms)
 *       43     8  producerId            -1 when not idempotent
 *       51     2  producerEpoch         -1 when not idempotent
 *       53     4  baseSequence          -1 when not idempotent
 *       57     4  recordCount
 *       61     -  records, compressed as a whole when attributes say so
 *
 * Each record (zig-zag varints, see `varint.ts`):
 *   length varint (bytes after this field), attributes int8 (unused, 0),
 *   timestampDelta varlong, offsetDelta varint, keyLength varint (-1 = null), key,
 *   valueLength varint (-1 = null), value, headerCount varint,
 *   headers: keyLength varint, key (UTF-8), valueLength varint (-1 = null), value.
 *
 * The CRC starts at `attributes`, so the broker rewrites `baseOffset` (and nothing else) when it
 * assigns offsets, without recomputing the checksum. Batches are stored and served as received.
 *
 * Offsets and timestamps are JavaScript numbers: exact up to 2^53, which a log would reach after
 * 285 years at a million records per second. Reading a larger value is reported as corruption.
 */
import { constants as zlibConstants, gunzipSync } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { ErrorCode, StrataError } from '../common/errors.js';
import { BATCH_BYTES_MAX } from '../common/request-limits.js';
import { VarintReader } from './varint.js';

export const BASE_OFFSET_OFFSET = 0;
export const BATCH_LENGTH_OFFSET = 8;
export const PARTITION_LEADER_EPOCH_OFFSET = 12;
export const MAGIC_OFFSET = 16;
export const CRC_OFFSET = 17;
export const ATTRIBUTES_OFFSET = 21;
export const LAST_OFFSET_DELTA_OFFSET = 23;
export const BASE_TIMESTAMP_OFFSET = 27;
export const MAX_TIMESTAMP_OFFSET = 35;
export const PRODUCER_ID_OFFSET = 43;
export const PRODUCER_EPOCH_OFFSET = 51;
export const BASE_SEQUENCE_OFFSET = 53;
export const RECORD_COUNT_OFFSET = 57;
export const RECORDS_OFFSET = 61;

/** baseOffset + batchLength: the bytes not counted by batchLength. */
export const LOG_OVERHEAD = 12;
/** Size of a batch header, i.e. of a batch with no records. */
export const BATCH_HEADER_BYTES = RECORDS_OFFSET;
export const CURRENT_MAGIC = 2;

export const Compression = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;
export type CompressionName = keyof typeof Compression;
const COMPRESSION_MASK = 0x07;
export const TIMESTAMP_TYPE_MASK = 0x08;
export const TRANSACTIONAL_MASK = 0x10;
export const CONTROL_MASK = 0x20;

export const TimestampType = { createTime: 0, logAppendTime: 1 } as const;

/** Upper bound on the records of one compressed batch once inflated (128 MiB). */
export const INFLATED_BATCH_BYTES_MAX = BATCH_BYTES_MAX * 8;

/**
 * Bytes of inflated records per round trip through the thread pool when a batch is inflated
 * off the event loop: each round trip costs the loop a turn, so not too small.
 */
export const INFLATE_CHUNK_BYTES = 256 * 1024;


// ---------------------------------------------------------------------------------------------
// Header accessors. They read in place and allocate nothing.

/** Reads a signed 64-bit integer that must be a safe JavaScript integer, or returns NaN. */
function readSafeInt64(buffer: Buffer, position: number): number {
  const high = buffer.readInt32BE(position);
  const low = buffer.readUInt32BE(position + 4);
  const value = high * 0x1_0000_0000 + low;
  return Number.isSafeInteger(value) ? value : Number.NaN;
}

/** A timestamp field's value that is not a safe integer, as a frame problem (a timestamp in nanoseconds is one). */
function outsideSafeRange(field: string, buffer: Buffer, at: number): string {
  return `${field} ${buffer.readBigInt64BE(at)} is outside ±2^53: timestamps are milliseconds since the epoch (not nanoseconds)`;
}

export function writeInt64(buffer: Buffer, position: number, value: number): void {
  const high = Math.floor(value / 0x1_0000_0000);
  buffer.writeInt32BE(high, position);
  buffer.writeUInt32BE(value - high * 0x1_0000_0000, position + 4);
}

export function readBaseOffset(buffer: Buffer, position = 0): number {
  return readSafeInt64(buffer, position + BASE_OFFSET_OFFSET);
}

export function writeBaseOffset(buffer: Buffer, position: number, offset: number): void {
  writeInt64(buffer, position + BASE_OFFSET_OFFSET, offset);
}

/**
 * Gives a log-append-time batch at `position` the broker's append time as its max timestamp
 * (every record's timestamp, for such a batch), and seals its CRC again, as Kafka's broker does:
 * the time is the broker's to set, and a client's would place the batch in the time index and
 * age it for retention (one far in the future would keep its segment, and every later one, for
 * ever). Returns false, changing nothing, for a create-time batch.
 */
export function stampLogAppendTime(buffer: Buffer, position: number, nowMs: number): boolean {
  if ((readAttributes(buffer, position) & TIMESTAMP_TYPE_MASK) === 0) return false;
  writeInt64(buffer, position + MAX_TIMESTAMP_OFFSET, nowMs);
  buffer.writeUInt32BE(crc32c(buffer.subarray(position + ATTRIBUTES_OFFSET, position + readBatchSize(buffer, position))), position + CRC_OFFSET);
  return true;
}

/** Total bytes of the batch at `position`, header included. */
export function readBatchSize(buffer: Buffer, position = 0): number {
  return buffer.readInt32BE(position + BATCH_LENGTH_OFFSET) + LOG_OVERHEAD;
}

export function readLastOffsetDelta(buffer: Buffer, position = 0): number {
  return buffer.readInt32BE(position + LAST_OFFSET_DELTA_OFFSET);
}

export function readRecordCount(buffer: Buffer, position = 0): number {
  return buffer.readInt32BE(position + RECORD_COUNT_OFFSET);
}

export function readBaseTimestamp(buffer: Buffer, position = 0): number {
  return readSafeInt64(buffer, position + BASE_TIMESTAMP_OFFSET);
}

export function readMaxTimestamp(buffer: Buffer, position = 0): number {
  return readSafeInt64(buffer, position + MAX_TIMESTAMP_OFFSET);
}

/** The producer id of a producer that is not idempotent, in a batch header and on the wire. */
export const NO_PRODUCER_ID = -1;

export function readProducerId(buffer: Buffer, position = 0): number {
  return readSafeInt64(buffer, position + PRODUCER_ID_OFFSET);
}

export function readProducerEpoch(buffer: Buffer, position = 0): number {
  return buffer.readInt16BE(position + PRODUCER_EPOCH_OFFSET);
}

export function readBaseSequence(buffer: Buffer, position = 0): number {
  return buffer.readInt32BE(position + BASE_SEQUENCE_OFFSET);
}

export function readAttributes(buffer: Buffer, position = 0): number {
  return buffer.readInt16BE(position + ATTRIBUTES_OFFSET);
}

export function compressionOf(attributes: number): number {
  return attributes & COMPRESSION_MASK;
}

/** Offset of the last record of the batch at `position`. */
export function readLastOffset(buffer: Buffer, position = 0): number {
  return readBaseOffset(buffer, position) + readLastOffsetDelta(buffer, position);
}

// ---------------------------------------------------------------------------------------------
// Validation.

/**
 * Checks the frame of the batch at `position` within `buffer[..end)`: that a whole header is
 * there, the length is sane and fits, the magic is 2, offsets are safe, and the CRC matches.
 * Returns null when valid, else a sentence saying what is wrong. Allocates nothing on success
 * except the CRC input view, so recovery can call it on every batch of a 1 GiB segment.
 */
export function checkBatchFrame(buffer: Buffer, position: number, end: number): string | null {
  const available = end - position;
  if (available < LOG_OVERHEAD) return `only ${available} bytes left, less than a batch frame`;
  const size = readBatchSize(buffer, position);
  if (size < BATCH_HEADER_BYTES) return `batch length ${size - LOG_OVERHEAD} is below the minimum`;
  if (size > BATCH_BYTES_MAX) return `batch length ${size - LOG_OVERHEAD} exceeds ${BATCH_BYTES_MAX}`;
  if (size > available) return `batch of ${size} bytes is truncated to ${available} bytes`;
  const magic = buffer[position + MAGIC_OFFSET];
  if (magic !== CURRENT_MAGIC) return `magic byte is ${magic}, expected ${CURRENT_MAGIC}`;
  if (Number.isNaN(readBaseOffset(buffer, position))) return 'base offset is not a safe integer';
  if (Number.isNaN(readBaseTimestamp(buffer, position))) return outsideSafeRange('base timestamp', buffer, position + BASE_TIMESTAMP_OFFSET);
  if (Number.isNaN(readMaxTimestamp(buffer, position))) return outsideSafeRange('max timestamp', buffer, position + MAX_TIMESTAMP_OFFSET);
  if (Number.isNaN(readProducerId(buffer, position))) return 'producer id is not a safe integer';
  const lastOffsetDelta = readLastOffsetDelta(buffer, position);
  if (lastOffsetDelta < 0) return `last offset delta ${lastOffsetDelta} is negative`;
  const stored = buffer.readUInt32BE(position + CRC_OFFSET);
  const computed = crc32c(buffer.subarray(position + ATTRIBUTES_OFFSET, position + size));
  if (stored !== computed) {
    return `CRC mismatch: stored ${hex32(stored)}, computed ${hex32(computed)}`;
  }
  return null;
}

/** The error for a codec other than none and gzip (snappy, lz4 and zstd are not read). */
function unsupportedCodec(compression: number): Error {
  return new Error(unsupportedCodecMessage(compression));
}

export function unsupportedCodecMessage(compression: number): string {
  return `compression codec ${compression} is not supported (none and gzip are)`;
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

/** The bytes holding the records of a batch, inflated if compressed. */
function recordBytes(
  buffer: Buffer,
  position: number,
  size: number,
  attributes: number,
): { records: Buffer; start: number; end: number } {
  const compression = compressionOf(attributes);
  const start = position + RECORDS_OFFSET;
  const end = position + size;
  switch (compression) {
    case Compression.none:
      return { records: buffer, start, end };
    case Compression.gzip: {
      const records = gunzipSync(buffer.subarray(start, end), { maxOutputLength: INFLATED_BATCH_BYTES_MAX });
      return { records, start: 0, end: records.length };
    }
    default:
      throw unsupportedCodec(compression);
  }
}

// ---------------------------------------------------------------------------------------------
// Building and decoding.

export interface RecordHeader {
  key: string;
  value: Buffer | null;
}

/** A record as a producer supplies it. */
export interface RecordInput {
  key?: Buffer | null;
  value: Buffer | null;
  headers?: readonly RecordHeader[];
  /** Create time in ms; defaults to the batch's `timestamp` option. */
  timestamp?: number;
}

/** A record as read back from the log. Keys, values and header values are views, not copies. */
export interface DecodedRecord {
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  /** `NO_HEADERS` (shared, frozen) for a record without headers. */
  headers: readonly RecordHeader[];
}

export interface BatchHeader {
  baseOffset: number;
  lastOffset: number;
  sizeBytes: number;
  partitionLeaderEpoch: number;
  compression: number;
  timestampType: number;
  transactional: boolean;
  control: boolean;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
  crc: number;
}

export function readBatchHeader(buffer: Buffer, position = 0): BatchHeader {
  const attributes = readAttributes(buffer, position);
  return {
    baseOffset: readBaseOffset(buffer, position),
    lastOffset: readLastOffset(buffer, position),
    sizeBytes: readBatchSize(buffer, position),
    partitionLeaderEpoch: buffer.readInt32BE(position + PARTITION_LEADER_EPOCH_OFFSET),
    compression: compressionOf(attributes),
    timestampType: attributes & TIMESTAMP_TYPE_MASK ? TimestampType.logAppendTime : TimestampType.createTime,
    transactional: (attributes & TRANSACTIONAL_MASK) !== 0,
    control: (attributes & CONTROL_MASK) !== 0,
    baseTimestamp: readBaseTimestamp(buffer, position),
    maxTimestamp: readMaxTimestamp(buffer, position),
    producerId: readProducerId(buffer, position),
    producerEpoch: readProducerEpoch(buffer, position),
    baseSequence: readBaseSequence(buffer, position),
    recordCount: readRecordCount(buffer, position),
    crc: buffer.readUInt32BE(position + CRC_OFFSET),
  };
}

/** The headers of every record that has none: one shared, frozen array. */
export const NO_HEADERS: readonly RecordHeader[] = Object.freeze([]);

/**
 * Receives one decoded record (key, value and header values are views into the batch); returning
 * false stops the walk there.
 */
export type RecordVisitor = (offset: number, timestamp: number, key: Buffer | null, value: Buffer | null, headers: readonly RecordHeader[]) => boolean | void;

/**
 * Decodes the records of the (already validated) batch at `position` whose offset is at least
 * `fromOffset`, handing each to `visit` in offset order: no object per record beyond what the
 * visitor makes, the key and value views, and headers when it has some. Records below
 * `fromOffset` are stepped over without views, and those after one the visitor stops at are
 * not read. A compressed batch is inflated here, whole and on the calling thread (the
 * broker's read paths use `forEachInflatedRecord` instead). Throws `CORRUPT_BATCH` when the
 * records do not parse.
 */
export function forEachRecord(buffer: Buffer, position: number, fromOffset: number, visit: RecordVisitor): void {
  const batch = recordsContext(buffer, position);
  try {
    const { records, start, end } = recordBytes(buffer, position, readBatchSize(buffer, position), readAttributes(buffer, position));
    visitRecords(records, start, end, 0, readRecordCount(buffer, position), batch, fromOffset, visit);
  } catch (error) {
    throw undecodable(batch, error);
  }
}

/** What the records of a batch take from its header to be decoded. */
export interface RecordsContext {
  baseOffset: number;
  logAppendTime: boolean;
  baseTimestamp: number;
  maxTimestamp: number;
}

export function recordsContext(buffer: Buffer, position: number): RecordsContext {
  return {
    baseOffset: readBaseOffset(buffer, position),
    logAppendTime: (readAttributes(buffer, position) & TIMESTAMP_TYPE_MASK) !== 0,
    baseTimestamp: readBaseTimestamp(buffer, position),
    maxTimestamp: readMaxTimestamp(buffer, position),
  };
}

/** The error for records of `batch` that do not parse (`error` as is when already a StrataError). */
export function undecodable(batch: RecordsContext, error: unknown): StrataError {
  if (error instanceof StrataError) return error;
  return new StrataError(ErrorCode.CORRUPT_BATCH, `batch at offset ${batch.baseOffset} does not decode: ${(error as Error).message}`);
}

/**
 * Hands `visit` the `count` records in `records[start, end)`, the batch's records from number
 * `firstIndex` on, as `forEachRecord` says. Returns true when the visitor stopped the walk.
 * Throws RangeError when they do not parse.
 */
export function visitRecords(records: Buffer, start: number, end: number, firstIndex: number, count: number, batch: RecordsContext, fromOffset: number, visit: RecordVisitor): boolean {
  const reader = new VarintReader(records, start, end);
  for (let index = firstIndex; index < firstIndex + count; index++) {
    const length = reader.readVarint();
    const recordEnd = reader.position + length;
    reader.readInt8();
    const timestampDelta = reader.readVarlong();
    const offset = batch.baseOffset + reader.readVarint();
    if (offset < fromOffset) {
      reader.skip(recordEnd - reader.position);
      continue;
    }
    const key = readBytesField(reader);
    const value = readBytesField(reader);
    const headerCount = reader.readVarint();
    let headers = NO_HEADERS;
    if (headerCount !== 0) {
      const list: RecordHeader[] = [];
      for (let header = 0; header < headerCount; header++) {
        const keyLength = reader.readVarint();
        const keyStart = reader.position;
        reader.skip(keyLength);
        const headerKey = records.toString('utf8', keyStart, keyStart + keyLength);
        list.push({ key: headerKey, value: readBytesField(reader) });
      }
      headers = list;
    }
    if (reader.position !== recordEnd) throw new RangeError(`record ${index} length does not match its fields`);
    if (visit(offset, batch.logAppendTime ? batch.maxTimestamp : batch.baseTimestamp + timestampDelta, key, value, headers) === false) return true;
  }
  return false;
}

/**
 * Decodes the records of the (already validated) batch at `position`. Throws `CORRUPT_BATCH`
 * when the records do not parse.
 */
export function decodeRecords(buffer: Buffer, position = 0): DecodedRecord[] {
  const decoded: DecodedRecord[] = [];
  forEachRecord(buffer, position, 0, (offset, timestamp, key, value, headers) => {
    decoded.push(new BatchRecord(offset, timestamp, key, value, headers));
  });
  return decoded;
}

/**
 * A decoded record. A class rather than an object literal so that V8 never pretenures records
 * (allocates them straight in the old generation) after a scavenge finds one batch's worth
 * alive; see `DeliveredRecord` in the client's consumer for the measurement.
 */
class BatchRecord implements DecodedRecord {
  constructor(
    readonly offset: number,
    readonly timestamp: number,
    readonly key: Buffer | null,
    readonly value: Buffer | null,
    readonly headers: readonly RecordHeader[],
  ) {}
}

function readBytesField(reader: VarintReader): Buffer | null {
  const length = reader.readVarint();
  if (length < 0) return null;
  const start = reader.position;
  reader.skip(length);
  return reader.buffer.subarray(start, start + length);
}

/** Calls `visit(position, size)` for each whole batch in `buffer`; returns bytes consumed. */
export function forEachBatch(buffer: Buffer, visit: (position: number, size: number) => void): number {
  let position = 0;
  while (buffer.length - position >= LOG_OVERHEAD) {
    const size = readBatchSize(buffer, position);
    if (size < BATCH_HEADER_BYTES || position + size > buffer.length) break;
    visit(position, size);
    position += size;
  }
  return position;
}

/**
 * The offset after the last whole batch in `batches`, or `offset` when there is none. Offsets
 * within a log are contiguous (a batch's last offset delta is its record count minus one), so
 * the answer less `offset` is the number of records from `offset` on.
 */
export function nextOffsetAfter(batches: Buffer, offset: number): number {
  let next = offset;
  forEachBatch(batches, (position) => {
    next = readLastOffset(batches, position) + 1;
  });
  return next;
}

/** Whether the records of the batch at `position` are compressed. */
export function isCompressedBatch(buffer: Buffer, position: number): boolean {
  return compressionOf(readAttributes(buffer, position)) !== Compression.none;
}

/** Decodes every record of every whole batch in `buffer` (e.g. a fetch response). */
export function decodeBatches(buffer: Buffer): DecodedRecord[] {
  const records: DecodedRecord[] = [];
  forEachBatch(buffer, (position) => {
    for (const record of decodeRecords(buffer, position)) records.push(record);
  });
  return records;
}

/**
 * The key of the first record of the first batch in `buffer` (to pick a partition for a raw
 * batch), or null for a null key. Throws CORRUPT_BATCH when the batch does not parse, and
 * INVALID_ARGUMENT for a gzip batch whose first key is not within its first
 * `FIRST_KEY_OUTPUT_MAX` bytes of inflated records.
 */
export function firstRecordKey(buffer: Buffer): Buffer | null {
  const problem = checkBatchFrame(buffer, 0, buffer.length);
  if (problem !== null) throw new StrataError(ErrorCode.CORRUPT_BATCH, `invalid record batch 0 at byte 0: ${problem}`);
  const size = readBatchSize(buffer, 0);
  if (readRecordCount(buffer, 0) === 0 || size === RECORDS_OFFSET) return null;
  const compression = compressionOf(readAttributes(buffer, 0));
  try {
    if (compression === Compression.none) return wholeKey(readFirstKey(buffer, RECORDS_OFFSET, size));
    if (compression !== Compression.gzip) throw unsupportedCodec(compression);
    return firstCompressedKey(buffer.subarray(RECORDS_OFFSET, size));
  } catch (error) {
    if (error instanceof StrataError) throw error;
    throw new StrataError(ErrorCode.CORRUPT_BATCH, `invalid record batch 0: ${(error as Error).message}`);
  }
}

/**
 * The first key in gzip-compressed records, inflated on the event loop only as far as it: a
 * prefix of the compressed bytes, doubled until what it inflates to holds the key, and never
 * more than `FIRST_KEY_OUTPUT_MAX` bytes of output. A prefix that inflates past that bound is
 * narrowed (halving the gap to the longest prefix that did not) until the key is found or the
 * gap is one byte. The whole batch is inflated and checked later, off the event loop, by the
 * append; here a batch of small size whose first key claims megabytes of zeros would otherwise
 * hold the loop for as long as it takes to inflate them.
 */
function firstCompressedKey(compressed: Buffer): Buffer | null {
  let fits = 0; // the longest prefix known to inflate within the bound, the key cut short
  let overflows = Number.POSITIVE_INFINITY; // the shortest prefix known to inflate past it
  let inputBytes = Math.min(FIRST_KEY_INPUT_BYTES, compressed.length);
  for (;;) {
    const whole = inputBytes === compressed.length;
    const inflated = inflatePrefix(compressed, inputBytes, whole);
    if (inflated === null) {
      overflows = inputBytes;
    } else {
      const key = whole ? wholeKey(readFirstKey(inflated, 0)) : readFirstKey(inflated, 0);
      if (key !== CUT_SHORT) return key;
      fits = inputBytes;
    }
    if (overflows - fits <= 1) {
      throw new StrataError(
        ErrorCode.INVALID_ARGUMENT,
        `the first key of the gzip batch is not within its first ${FIRST_KEY_OUTPUT_MAX} bytes of inflated records, as far as the broker inflates to choose a partition; send the batch with its partition`,
      );
    }
    inputBytes = overflows === Number.POSITIVE_INFINITY ? Math.min(inputBytes * 2, compressed.length) : Math.floor((fits + overflows) / 2);
  }
}

/** The first `inputBytes` of gzip data inflated, or null when that passes `FIRST_KEY_OUTPUT_MAX` bytes. */
function inflatePrefix(compressed: Buffer, inputBytes: number, whole: boolean): Buffer | null {
  try {
    return whole
      ? gunzipSync(compressed, { maxOutputLength: FIRST_KEY_OUTPUT_MAX })
      : gunzipSync(compressed.subarray(0, inputBytes), { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: FIRST_KEY_OUTPUT_MAX });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return null;
    throw error;
  }
}

/** Compressed bytes first inflated to find a batch's first key (at most ~0.5 MiB of output). */
const FIRST_KEY_INPUT_BYTES = 512;
/** The most inflated records read to find a batch's first key. */
const FIRST_KEY_OUTPUT_MAX = 1024 * 1024;
const CUT_SHORT = Symbol('cut short');

/**
 * The key of the record at `start` in `records[start, end)`, or `CUT_SHORT` when the bytes end
 * before it does. Throws RangeError when the record is malformed.
 */
function readFirstKey(records: Buffer, start: number, end = records.length): Buffer | null | typeof CUT_SHORT {
  const reader = new VarintReader(records, start, end);
  try {
    reader.readVarint();
    reader.readInt8();
    reader.readVarlong();
    reader.readVarint();
    const length = reader.readVarint();
    if (length < 0) return null;
    return reader.position + length > end ? CUT_SHORT : records.subarray(reader.position, reader.position + length);
  } catch (error) {
    if (reader.position >= end) return CUT_SHORT; // a varint the bytes end in
    throw error;
  }
}

/** The key read from all of a batch's records: cut short, the batch is malformed. */
function wholeKey(key: Buffer | null | typeof CUT_SHORT): Buffer | null {
  if (key === CUT_SHORT) throw new RangeError('the first record runs past the end of the batch');
  return key;
}
