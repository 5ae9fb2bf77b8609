/**
 * Builds one RecordBatch v2 (layout in `record-batch.ts`) record by record, as Kafka's
 * MemoryRecordsBuilder does: each `append` encodes the record straight into the batch's buffer,
 * so a producer holds bytes, not record objects, while a batch fills, and sealing it writes the
 * 61-byte header and the CRC without copying the records again (gzip compresses them into a new
 * buffer).
 *
 * The buffer starts at `initialCapacity` and doubles when a record does not fit, up to
 * `capacityLimit` (further only for a record that needs more on its own). `headroom` bytes before
 * the batch stay free for a caller's framing: the client writes its ProduceRequest fields there
 * (`withHeadroom`), so a request is one buffer.
 *
 * Record timestamps are stored as deltas from the first record's, as Kafka's producer does (a
 * later record may carry an earlier timestamp; its delta is then negative).
 */
import { gzipSync } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { ErrorCode, StrataError } from '../common/errors.js';
import { checkIntegerRange } from '../common/integer-range.js';
import {
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BASE_SEQUENCE_OFFSET,
  BASE_TIMESTAMP_OFFSET,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  CRC_OFFSET,
  CURRENT_MAGIC,
  Compression,
  type CompressionName,
  LAST_OFFSET_DELTA_OFFSET,
  LOG_OVERHEAD,
  MAGIC_OFFSET,
  MAX_TIMESTAMP_OFFSET,
  PARTITION_LEADER_EPOCH_OFFSET,
  PRODUCER_EPOCH_OFFSET,
  PRODUCER_ID_OFFSET,
  RECORD_COUNT_OFFSET,
  type RecordHeader,
  type RecordInput,
  TRANSACTIONAL_MASK,
  writeInt64,
} from './record-batch.js';
import { NULL_LENGTH, type RecordRanges } from './record-ranges.js';
import { varintSize, varlongSize, writeVarint, writeVarlong } from './varint.js';

/** Header fields given when the batch is sealed. */
export interface BatchSealOptions {
  baseOffset?: number;
  compression?: CompressionName;
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
  partitionLeaderEpoch?: number;
  transactional?: boolean;
}

/** `buildBatch` options: the seal options plus the timestamp of records that carry none. */
export interface BatchOptions extends BatchSealOptions {
  /** Default timestamp of records that carry none; defaults to Date.now(). */
  timestamp?: number;
}

/** Encodes records into one RecordBatch v2 (a buffer of its own). */
export function buildBatch(records: readonly RecordInput[], options: BatchOptions = {}): Buffer {
  if (records.length === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a batch needs at least one record');
  const defaultTimestamp = options.timestamp ?? Date.now();
  let size = BATCH_HEADER_BYTES;
  for (const record of records) size += recordSizeBound(record);
  const builder = new RecordBatchBuilder({ initialCapacity: size, capacityLimit: size });
  for (const record of records) builder.append(record.timestamp ?? defaultTimestamp, record.key ?? null, record.value ?? null, record.headers ?? null);
  return builder.finish(options);
}

/**
 * Encodes records of `records` into one RecordBatch v2: those at `indices`, or all of them when
 * `indices` is null. Records without a timestamp get `options.timestamp` (default Date.now()).
 */
export function buildBatchFromRanges(records: RecordRanges, indices: Int32Array | null, options: BatchOptions = {}): Buffer {
  const count = indices === null ? records.count : indices.length;
  if (count === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a batch needs at least one record');
  const defaultTimestamp = options.timestamp ?? Date.now();
  let size = BATCH_HEADER_BYTES;
  for (let at = 0; at < count; at++) size += rangeRecordSizeBound(records, indices === null ? at : indices[at]!);
  const builder = new RecordBatchBuilder({ initialCapacity: size, capacityLimit: size });
  for (let at = 0; at < count; at++) builder.appendRange(records, indices === null ? at : indices[at]!, defaultTimestamp);
  return builder.finish(options);
}

/**
 * Bytes the batch `buildBatchFromRanges` would encode from these records takes at least,
 * uncompressed: every varint at its narrowest. Lets a caller refuse records that cannot fit a
 * size limit before encoding them.
 */
export function rangeBatchBytesFloor(records: RecordRanges, indices: Int32Array | null): number {
  const count = indices === null ? records.count : indices.length;
  let size = BATCH_HEADER_BYTES;
  for (let at = 0; at < count; at++) size += rangeRecordBytesFloor(records, indices === null ? at : indices[at]!);
  return size;
}

/**
 * An upper bound of `rangeBatchBytesFloor` for any selection of these records, without a pass
 * over them: the whole source with every record's and header's framing at its narrowest. It
 * holds where ranges do not overlap, as in a request's records; a caller that skips the floor
 * when this fits must still check the encoded batch.
 */
export function rangesBytesFloorBound(records: RecordRanges): number {
  return BATCH_HEADER_BYTES + records.source.length + records.count * RECORD_FRAMING_FLOOR + records.headerCountTotal * HEADER_FRAMING_FLOOR;
}

/** Bytes record `index` of `records` takes in a batch at least (`rangeBatchBytesFloor`). */
export function rangeRecordBytesFloor(records: RecordRanges, index: number): number {
  return rangeRecordBytes(records, index, RECORD_FRAMING_FLOOR, HEADER_FRAMING_FLOOR);
}

function rangeRecordSizeBound(records: RecordRanges, index: number): number {
  return rangeRecordBytes(records, index, RECORD_FRAMING_BOUND + HEADER_COUNT_BOUND, 2 * VARINT_BOUND);
}

/** Bytes record `index` of `records` takes with `recordFraming` and `headerFraming` bytes of varints. */
function rangeRecordBytes(records: RecordRanges, index: number, recordFraming: number, headerFraming: number): number {
  let size = recordFraming + Math.max(0, records.keyLength(index)) + Math.max(0, records.valueLength(index));
  const firstHeader = records.firstHeader(index);
  for (let header = firstHeader; header < firstHeader + records.headerCount(index); header++) {
    size += headerFraming + records.headerKeyLength(header) + Math.max(0, records.headerValueLength(header));
  }
  return size;
}

/** Bytes a record takes in a batch at most (its varints at their widest). */
export function recordSizeBound(record: RecordInput): number {
  let size = RECORD_FRAMING_BOUND + (record.key?.length ?? 0) + (record.value?.length ?? 0);
  if (record.headers != null) size += headersSize(record.headers);
  return size;
}

export interface RecordBatchBuilderOptions {
  /** Bytes kept free before the batch for the caller's framing. Default 0. */
  headroom?: number;
  /** Bytes of batch the first buffer holds (header included). Default 1 KiB. */
  initialCapacity?: number;
  /** A buffer to build in (e.g. from a pool) instead of a new one; it sets the initial capacity. */
  buffer?: Buffer;
  /** Doubling stops here (bytes of batch); a single larger record still gets room. Default 1 MiB. */
  capacityLimit?: number;
}

const NULL_LENGTH_BYTES = 1; // varint(-1)
/** Bytes of a varint of an int32, at most. */
const VARINT_BOUND = 5;
/** A header count's varint beyond the one byte RECORD_FRAMING_BOUND allows for it. */
const HEADER_COUNT_BOUND = VARINT_BOUND - 1;
/**
 * A record's bytes besides key, value and headers, at most: length (5), attributes (1),
 * timestamp delta (10), offset delta (5), key and value lengths (5 each), header count (1).
 */
export const RECORD_FRAMING_BOUND = 32;
/** The same fields at their narrowest: a byte each for the seven. */
const RECORD_FRAMING_FLOOR = 7;
/** A header's key and value lengths at their narrowest. */
const HEADER_FRAMING_FLOOR = 2;

export class RecordBatchBuilder {
  private readonly headroom: number;
  private readonly capacityLimit: number;
  private buffer: Buffer;
  private position: number;
  private count = 0;
  private baseTimestamp = 0;
  private maxTimestamp = 0;
  private finished: Buffer | null = null;

  constructor(options: RecordBatchBuilderOptions = {}) {
    this.headroom = options.headroom ?? 0;
    const given = options.buffer;
    if (given !== undefined && given.length < this.headroom + BATCH_HEADER_BYTES) throw new RangeError(`a buffer of ${given.length} bytes cannot hold a batch after ${this.headroom} bytes of headroom`);
    const initial = given === undefined ? Math.max(BATCH_HEADER_BYTES, options.initialCapacity ?? 1024) : given.length - this.headroom;
    this.capacityLimit = Math.max(initial, options.capacityLimit ?? 1024 * 1024);
    this.buffer = given ?? Buffer.allocUnsafe(this.headroom + initial);
    this.position = this.headroom + BATCH_HEADER_BYTES;
  }

  get recordCount(): number {
    return this.count;
  }

  /** Bytes of the batch so far, header included (uncompressed). */
  get sizeBytes(): number {
    return this.position - this.headroom;
  }

  /** Encodes one record after the others. Header keys are UTF-8 strings. */
  append(timestamp: number, key: Buffer | null, value: Buffer | null, headers: readonly RecordHeader[] | null): void {
    let position = this.startRecord(timestamp, fieldsSize(key, value, headers));
    const buffer = this.buffer; // (after startRecord, which may grow it)
    position = writeBytes(buffer, position, key);
    position = writeBytes(buffer, position, value);
    if (headers == null) buffer[position++] = 0;
    else {
      position = writeVarint(buffer, position, headers.length);
      for (const header of headers) {
        position = writeVarint(buffer, position, Buffer.byteLength(header.key, 'utf8'));
        position += buffer.write(header.key, position, 'utf8');
        position = writeBytes(buffer, position, header.value);
      }
    }
    this.endRecord(position);
  }

  /** Encodes record `index` of `records` after the others; `timestamp` applies when it has none. */
  appendRange(records: RecordRanges, index: number, timestamp: number): void {
    const source = records.source;
    const keyLength = records.keyLength(index);
    const valueLength = records.valueLength(index);
    const firstHeader = records.firstHeader(index);
    const headerCount = records.headerCount(index);
    let fieldsSize = rangeSize(keyLength) + rangeSize(valueLength) + varintSize(headerCount);
    for (let header = firstHeader; header < firstHeader + headerCount; header++) {
      fieldsSize += rangeSize(records.headerKeyLength(header)) + rangeSize(records.headerValueLength(header));
    }
    let position = this.startRecord(records.timestamp(index) || timestamp, fieldsSize);
    const buffer = this.buffer;
    position = copyRange(source, records.keyStart(index), keyLength, buffer, position);
    position = copyRange(source, records.valueStart(index), valueLength, buffer, position);
    position = writeVarint(buffer, position, headerCount);
    for (let header = firstHeader; header < firstHeader + headerCount; header++) {
      position = copyRange(source, records.headerKeyStart(header), records.headerKeyLength(header), buffer, position);
      position = copyRange(source, records.headerValueStart(header), records.headerValueLength(header), buffer, position);
    }
    this.endRecord(position);
  }

  /**
   * Makes room for a record whose key, value and headers take `fieldsSize` bytes and writes
   * its framing (length, attributes, timestamp and offset deltas); returns where the key goes.
   */
  private startRecord(timestamp: number, fieldsSize: number): number {
    if (this.finished !== null) throw new Error('the batch is already sealed');
    // NaN or a fraction would be encoded as another timestamp. (What a broker takes is its
    // own check: none below 0, none far ahead of its clock.)
    if (!Number.isSafeInteger(timestamp) || (this.count > 0 && !Number.isSafeInteger(timestamp - this.baseTimestamp))) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `a record's timestamp must be an integer count of milliseconds since the epoch, got ${timestamp}${this.count > 0 ? ` (after a first record at ${this.baseTimestamp})` : ''}`);
    }
    if (this.count === 0) this.baseTimestamp = this.maxTimestamp = timestamp;
    else if (timestamp > this.maxTimestamp) this.maxTimestamp = timestamp;
    const timestampDelta = timestamp - this.baseTimestamp;
    const offsetDelta = this.count;
    const bodySize = 1 + varlongSize(timestampDelta) + varintSize(offsetDelta) + fieldsSize;
    const recordSize = varintSize(bodySize) + bodySize;
    if (this.position + recordSize > this.buffer.length) this.grow(recordSize);
    const buffer = this.buffer;
    let position = writeVarint(buffer, this.position, bodySize);
    buffer[position++] = 0; // record attributes: unused
    position = writeVarlong(buffer, position, timestampDelta);
    return writeVarint(buffer, position, offsetDelta);
  }

  private endRecord(position: number): void {
    this.position = position;
    this.count++;
  }

  /** Writes the header and CRC; returns the batch (a view of the builder's buffer, or gzip's). */
  finish(options: BatchSealOptions = {}): Buffer {
    if (this.finished !== null) return this.finished;
    if (this.count === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a batch needs at least one record');
    checkSealOptions(options);
    const compression = Compression[options.compression ?? 'none'];
    if (compression === Compression.gzip) this.compressRecords();
    else if (compression !== Compression.none) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `compression ${options.compression} is not supported (none and gzip are)`);
    }
    const batch = this.buffer.subarray(this.headroom, this.position);
    writeInt64(batch, BASE_OFFSET_OFFSET, options.baseOffset ?? 0);
    batch.writeInt32BE(batch.length - LOG_OVERHEAD, BATCH_LENGTH_OFFSET);
    batch.writeInt32BE(options.partitionLeaderEpoch ?? -1, PARTITION_LEADER_EPOCH_OFFSET);
    batch[MAGIC_OFFSET] = CURRENT_MAGIC;
    batch.writeInt16BE(compression | (options.transactional ? TRANSACTIONAL_MASK : 0), ATTRIBUTES_OFFSET);
    batch.writeInt32BE(this.count - 1, LAST_OFFSET_DELTA_OFFSET);
    writeInt64(batch, BASE_TIMESTAMP_OFFSET, this.baseTimestamp);
    writeInt64(batch, MAX_TIMESTAMP_OFFSET, this.maxTimestamp);
    writeInt64(batch, PRODUCER_ID_OFFSET, options.producerId ?? -1);
    batch.writeInt16BE(options.producerEpoch ?? -1, PRODUCER_EPOCH_OFFSET);
    batch.writeInt32BE(options.baseSequence ?? -1, BASE_SEQUENCE_OFFSET);
    batch.writeInt32BE(this.count, RECORD_COUNT_OFFSET);
    batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    this.finished = batch;
    return batch;
  }

  /**
   * The finished batch with the last `length` bytes of the headroom in front of it (same memory),
   * for the caller to fill with its framing.
   */
  withHeadroom(length: number): Buffer {
    if (this.finished === null) throw new Error('finish() the batch first');
    if (length > this.headroom) throw new RangeError(`framing of ${length} bytes exceeds the headroom of ${this.headroom}`);
    return this.buffer.subarray(this.headroom - length, this.position);
  }

  private grow(recordSize: number): void {
    const needed = this.position + recordSize;
    const doubled = this.headroom + Math.min(this.capacityLimit, 2 * (this.buffer.length - this.headroom));
    const grown = Buffer.allocUnsafe(Math.max(needed, doubled));
    this.buffer.copy(grown, 0, 0, this.position);
    this.buffer = grown;
  }

  private compressRecords(): void {
    const start = this.headroom + BATCH_HEADER_BYTES;
    const compressed = gzipSync(this.buffer.subarray(start, this.position));
    const buffer = Buffer.allocUnsafe(start + compressed.length);
    compressed.copy(buffer, start);
    this.buffer = buffer;
    this.position = buffer.length;
  }
}

/**
 * The header fields of `finish`, each an integer its field holds (INVALID_ARGUMENT naming the
 * one that is not, rather than a fraction cut or Node's range error). What a broker takes of
 * them is its own check.
 */
function checkSealOptions(options: BatchSealOptions): void {
  const fields: [name: string, value: number | undefined, minimum: number, maximum: number][] = [
    ['baseOffset', options.baseOffset, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    ['producerId', options.producerId, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    ['producerEpoch', options.producerEpoch, -(2 ** 15), 2 ** 15 - 1],
    ['baseSequence', options.baseSequence, -(2 ** 31), 2 ** 31 - 1],
    ['partitionLeaderEpoch', options.partitionLeaderEpoch, -(2 ** 31), 2 ** 31 - 1],
  ];
  for (const [name, value, minimum, maximum] of fields) if (value !== undefined) checkIntegerRange(name, value, minimum, maximum);
}

/**
 * A record's length (the bytes after its length prefix, what a broker holds to
 * max.message.bytes) with its timestamp and offset deltas at one byte each: exact for the first
 * record of a batch at its base timestamp, a floor for any other.
 */
export function recordLengthFloor(key: Buffer | null, value: Buffer | null, headers: readonly RecordHeader[] | null): number {
  return 3 + fieldsSize(key, value, headers); // attributes and the two deltas: 3
}

/** Bytes a record's key, value and headers take (`== null`: JavaScript callers may pass undefined for null). */
function fieldsSize(key: Buffer | null, value: Buffer | null, headers: readonly RecordHeader[] | null): number {
  const keySize = key == null ? NULL_LENGTH_BYTES : varintSize(key.length) + key.length;
  const valueSize = value == null ? NULL_LENGTH_BYTES : varintSize(value.length) + value.length;
  return keySize + valueSize + (headers == null ? 1 : headersSize(headers));
}

function headersSize(headers: readonly RecordHeader[]): number {
  let size = varintSize(headers.length);
  for (const header of headers) {
    const keyBytes = Buffer.byteLength(header.key, 'utf8');
    size += varintSize(keyBytes) + keyBytes;
    size += header.value == null ? NULL_LENGTH_BYTES : varintSize(header.value.length) + header.value.length;
  }
  return size;
}

/** Bytes a key, value or header field of `length` (`NULL_LENGTH` for null) takes in a record. */
function rangeSize(length: number): number {
  return length === NULL_LENGTH ? NULL_LENGTH_BYTES : varintSize(length) + length;
}

/** Writes the `length` bytes at `start` of `source` as a record field (length varint, bytes). */
function copyRange(source: Buffer, start: number, length: number, buffer: Buffer, position: number): number {
  if (length === NULL_LENGTH) {
    buffer[position] = 1; // varint(-1)
    return position + 1;
  }
  position = writeVarint(buffer, position, length);
  source.copy(buffer, position, start, start + length);
  return position + length;
}

function writeBytes(buffer: Buffer, position: number, value: Buffer | null | undefined): number {
  if (value == null) {
    buffer[position] = 1; // varint(-1)
    return position + 1;
  }
  position = writeVarint(buffer, position, value.length);
  buffer.set(value, position);
  return position + value.length;
}
