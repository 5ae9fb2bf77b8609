/**
 * Reads the `records` of a ProduceRequest (`strata.v1.Record` messages) straight from the
 * request's bytes into `RecordRanges`: no protobufjs object, Long or Buffer per record. Before,
 * a request of 100-byte records cost the broker more time in making and collecting those
 * objects than in encoding the batch.
 *
 * It accepts and refuses what protobufjs's decoder did, and reads the same values:
 * - fields of `Record` (key 1, value 2, headers 3, timestamp 4) and `Header` (key 1, value 2)
 *   may come in any order; the last occurrence of a singular field wins; headers accumulate;
 * - unknown fields, `offset` (ignored on produce, as the proto says) and known fields with
 *   another wire type are skipped by their wire type, groups included (nested at most
 *   `GROUP_DEPTH_MAX` deep);
 * - refused, with INVALID_ARGUMENT naming the record: field number 0, wire types 6 and 7, an
 *   end-group tag without its start, a length past the end of its message, a varint over
 *   10 bytes, a header key that is not UTF-8, and a timestamp outside 0..2^53-1 (as int64).
 */
import { isUtf8 } from 'node:buffer';
import { ErrorCode, StrataError } from '../common/errors.js';
import { END_GROUP, FIXED32, FIXED64, LENGTH_DELIMITED, START_GROUP, VARINT } from '../common/protobuf-wire.js';
import { BATCH_BYTES_MAX, BATCH_HEADER_BYTES_MIN, PRODUCE_REQUEST_HEADERS_MAX } from '../common/request-limits.js';
import { NULL_LENGTH, RecordRanges } from '../storage/record-ranges.js';
import { HEADER_KEY_TAG, HEADER_VALUE_TAG, RECORD_HEADERS_TAG, RECORD_KEY_TAG, RECORD_TIMESTAMP_TAG, RECORD_VALUE_TAG } from './record-message.js';
import { invalidArgument } from './status.js';

const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);
/** protobufjs's limit too. */
const GROUP_DEPTH_MAX = 100;

/** Thrown inside the reader; turned into INVALID_ARGUMENT naming the record. */
class MalformedRecord extends Error {}

/** A cursor over one message of `source`, from `position` up to `end`. */
class WireReader {
  position = 0;
  end = 0;

  constructor(private readonly source: Buffer) {}

  at(position: number, end: number): this {
    this.position = position;
    this.end = end;
    return this;
  }

  get done(): boolean {
    return this.position >= this.end;
  }

  /** A field's tag: (field number << 3) | wire type. */
  tag(): number {
    const tag = this.uint32();
    if (tag >>> 3 === 0) throw new MalformedRecord('a tag has field number 0');
    return tag;
  }

  /** A varint that must fit 32 bits (tags, lengths). */
  uint32(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.position >= this.end) throw new MalformedRecord('it ends inside a varint');
      const byte = this.source[this.position++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) {
        if (value > 0xffffffff) throw new MalformedRecord('a tag or length does not fit 32 bits');
        return value;
      }
    }
    throw new MalformedRecord('a tag or length does not fit 32 bits');
  }

  /**
   * A varint of up to 64 bits, as a number: exact below 2^53; at or above 2^53 (which includes
   * every negative int64, whose varint has 64 bits) only known to be that large.
   */
  uint64(): number {
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.position >= this.end) throw new MalformedRecord('it ends inside a varint');
      const byte = this.source[this.position++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new MalformedRecord('a varint is longer than 10 bytes');
  }

  /** The int64 varint that ends at the current position and started at `start`, exactly. */
  int64Since(start: number): bigint {
    let value = 0n;
    for (let position = start, shift = 0n; position < this.position; position++, shift += 7n) {
      value |= BigInt(this.source[position]! & 0x7f) << shift;
    }
    return BigInt.asIntN(64, value);
  }

  /** Reads a length and returns where its bytes start, moving past them. */
  lengthDelimited(): number {
    const length = this.uint32();
    const start = this.position;
    if (length > this.end - start) throw new MalformedRecord(`a field of ${length} bytes runs past the end of its message`);
    this.position = start + length;
    return start;
  }

  /** Moves past the value of the field whose tag was just read. */
  skip(tag: number, depth = 0): void {
    const fieldNumber = tag >>> 3;
    const wireType = tag & 7;
    switch (wireType) {
      case VARINT:
        this.uint64();
        return;
      case FIXED64:
        this.advance(8);
        return;
      case LENGTH_DELIMITED:
        this.lengthDelimited();
        return;
      case START_GROUP:
        if (depth >= GROUP_DEPTH_MAX) throw new MalformedRecord(`groups are nested more than ${GROUP_DEPTH_MAX} deep`);
        for (;;) {
          const inner = this.tag();
          if ((inner & 7) === END_GROUP && inner >>> 3 === fieldNumber) return;
          this.skip(inner, depth + 1);
        }
      case END_GROUP:
        throw new MalformedRecord(`an end-group tag of field ${fieldNumber} has no matching start`);
      case FIXED32:
        this.advance(4);
        return;
      default:
        throw new MalformedRecord(`field ${fieldNumber} has wire type ${wireType}, which protobuf does not define`);
    }
  }

  private advance(bytes: number): void {
    if (bytes > this.end - this.position) throw new MalformedRecord('it ends inside a fixed-width field');
    this.position += bytes;
  }
}

/**
 * The records whose messages are at `ranges` of `source` ([start, end) pairs, in order).
 * Throws INVALID_ARGUMENT naming the first bad record.
 */
export function parseWireRecords(source: Buffer, ranges: readonly number[]): RecordRanges {
  const records = new RecordRanges(source, ranges.length / 2);
  const reader = new WireReader(source);
  const headerReader = new WireReader(source);
  for (let index = 0; index < ranges.length / 2; index++) {
    try {
      readRecord(reader.at(ranges[2 * index]!, ranges[2 * index + 1]!), headerReader, records, index);
    } catch (error) {
      if (error instanceof MalformedRecord) throw invalidArgument(`records[${index}] is not a valid Record message: ${error.message}`);
      throw error;
    }
  }
  return records;
}

function readRecord(reader: WireReader, headerReader: WireReader, records: RecordRanges, index: number): void {
  let keyStart = 0;
  let keyLength = NULL_LENGTH;
  let valueStart = 0;
  let valueLength = NULL_LENGTH;
  let timestamp = 0;
  /** The last timestamp's int64 value when it is outside 0..2^53-1. */
  let outOfRange: bigint | null = null;
  const firstHeader = records.headerCountTotal;
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case RECORD_KEY_TAG:
        keyStart = reader.lengthDelimited();
        keyLength = reader.position - keyStart;
        break;
      case RECORD_VALUE_TAG:
        valueStart = reader.lengthDelimited();
        valueLength = reader.position - valueStart;
        break;
      case RECORD_HEADERS_TAG: {
        if (records.headerCountTotal === PRODUCE_REQUEST_HEADERS_MAX) throw tooManyHeaders();
        const start = reader.lengthDelimited();
        readHeader(headerReader.at(start, reader.position), records, index, records.headerCountTotal - firstHeader);
        break;
      }
      case RECORD_TIMESTAMP_TAG: {
        const start = reader.position;
        timestamp = reader.uint64();
        // At 2^53 or more the float is not exact: the int64 value (bits past 64 dropped) is.
        outOfRange = timestamp > Number.MAX_SAFE_INTEGER ? reader.int64Since(start) : null;
        if (outOfRange !== null && outOfRange >= 0n && outOfRange <= MAX_SAFE_BIGINT) {
          timestamp = Number(outOfRange);
          outOfRange = null;
        }
        break;
      }
      default:
        reader.skip(tag);
    }
  }
  // Checked once the last timestamp field has won.
  if (outOfRange !== null) {
    if (outOfRange < 0n) throw invalidArgument(`records[${index}].timestamp must not be negative, got ${outOfRange}`);
    throw invalidArgument(`records[${index}].timestamp ${outOfRange} is outside the range Strata supports (|n| <= 2^53 - 1)`);
  }
  records.addRecord(timestamp, keyStart, keyLength, valueStart, valueLength, firstHeader);
}

function tooManyHeaders(): StrataError {
  return new StrataError(
    ErrorCode.RESOURCE_EXHAUSTED,
    `the produce request's records carry more than ${PRODUCE_REQUEST_HEADERS_MAX} headers in all, more than fit in one batch (a header takes at least ${BATCH_HEADER_BYTES_MIN} bytes in a batch, and no partition accepts a batch over ${BATCH_BYTES_MAX} bytes); send the records in several requests`,
  );
}

function readHeader(reader: WireReader, records: RecordRanges, recordIndex: number, headerIndex: number): void {
  let keyStart = 0;
  let keyLength = 0; // proto3: an absent string is ""
  let valueStart = 0;
  let valueLength = NULL_LENGTH;
  while (!reader.done) {
    const tag = reader.tag();
    switch (tag) {
      case HEADER_KEY_TAG:
        keyStart = reader.lengthDelimited();
        keyLength = reader.position - keyStart;
        break;
      case HEADER_VALUE_TAG:
        valueStart = reader.lengthDelimited();
        valueLength = reader.position - valueStart;
        break;
      default:
        reader.skip(tag);
    }
  }
  if (keyLength > 0 && !isUtf8(records.source.subarray(keyStart, keyStart + keyLength))) {
    throw invalidArgument(`records[${recordIndex}].headers[${headerIndex}].key is not valid UTF-8 (header keys are text)`);
  }
  records.addHeader(keyStart, keyLength, valueStart, valueLength);
}
