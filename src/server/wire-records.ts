/**
 * Reads the `records` of a ProduceRequest (`strata.v1.Record` messages) straight from the
 * request's bytes into `RecordRanges`: no protobufjs object, Long or Buffer per record. Before,
 * a request of 100-byte records cost the broker more time in making and collecting those
 * objects than in encoding the batch.
 *
 * It follows protobuf's rules for the fields of `Record` (key 1, value 2, headers 3,
 * timestamp 4, offset 5) and `Header` (key 1, value 2): fields may come in any order, the last
 * occurrence of a singular field wins, headers accumulate, and unknown fields are skipped by
 * their wire type. A known field with the wrong wire type, a length past the end of its message
 * or a timestamp outside 0..2^53-1 is INVALID_ARGUMENT naming the record, as protobufjs would
 * have failed or misread it. `offset` is ignored on produce, as the proto says.
 */
import { NULL_LENGTH, RecordRanges } from '../storage/record-ranges.js';
import { invalidArgument } from './status.js';

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;

const RECORD_KEY = 1;
const RECORD_VALUE = 2;
const RECORD_HEADERS = 3;
const RECORD_TIMESTAMP = 4;
const RECORD_OFFSET = 5;
const HEADER_KEY = 1;
const HEADER_VALUE = 2;

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

  skip(wireType: number, fieldNumber: number): void {
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
        for (;;) {
          const tag = this.uint32();
          if ((tag & 7) === END_GROUP) {
            if (tag >>> 3 !== fieldNumber) throw new MalformedRecord(`group ${fieldNumber} ends with the end of group ${tag >>> 3}`);
            return;
          }
          this.skip(tag & 7, tag >>> 3);
        }
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

function expectWireType(wireType: number, expected: number, field: string): void {
  if (wireType !== expected) throw new MalformedRecord(`${field} has wire type ${wireType}, expected ${expected}`);
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
  const firstHeader = records.headerCountTotal;
  while (!reader.done) {
    const tag = reader.uint32();
    const fieldNumber = tag >>> 3;
    const wireType = tag & 7;
    switch (fieldNumber) {
      case RECORD_KEY:
        expectWireType(wireType, LENGTH_DELIMITED, 'key');
        keyStart = reader.lengthDelimited();
        keyLength = reader.position - keyStart;
        break;
      case RECORD_VALUE:
        expectWireType(wireType, LENGTH_DELIMITED, 'value');
        valueStart = reader.lengthDelimited();
        valueLength = reader.position - valueStart;
        break;
      case RECORD_HEADERS: {
        expectWireType(wireType, LENGTH_DELIMITED, 'headers');
        const start = reader.lengthDelimited();
        readHeader(headerReader.at(start, reader.position), records);
        break;
      }
      case RECORD_TIMESTAMP: {
        expectWireType(wireType, VARINT, 'timestamp');
        const start = reader.position;
        timestamp = reader.uint64();
        if (timestamp > Number.MAX_SAFE_INTEGER) {
          const exact = reader.int64Since(start);
          if (exact < 0n) throw invalidArgument(`records[${index}].timestamp must not be negative, got ${exact}`);
          throw invalidArgument(`records[${index}].timestamp ${exact} is outside the range Strata supports (|n| <= 2^53 - 1)`);
        }
        break;
      }
      case RECORD_OFFSET:
        expectWireType(wireType, VARINT, 'offset');
        reader.uint64();
        break;
      default:
        reader.skip(wireType, fieldNumber);
    }
  }
  records.addRecord(timestamp, keyStart, keyLength, valueStart, valueLength, firstHeader);
}

function readHeader(reader: WireReader, records: RecordRanges): void {
  let keyStart = 0;
  let keyLength = 0; // proto3: an absent string is ""
  let valueStart = 0;
  let valueLength = NULL_LENGTH;
  while (!reader.done) {
    const tag = reader.uint32();
    const fieldNumber = tag >>> 3;
    const wireType = tag & 7;
    switch (fieldNumber) {
      case HEADER_KEY:
        expectWireType(wireType, LENGTH_DELIMITED, 'a header key');
        keyStart = reader.lengthDelimited();
        keyLength = reader.position - keyStart;
        break;
      case HEADER_VALUE:
        expectWireType(wireType, LENGTH_DELIMITED, 'a header value');
        valueStart = reader.lengthDelimited();
        valueLength = reader.position - valueStart;
        break;
      default:
        reader.skip(wireType, fieldNumber);
    }
  }
  records.addHeader(keyStart, keyLength, valueStart, valueLength);
}
