/**
 * The pieces of the protobuf wire format that Strata writes by hand (see
 * client/produce-request.ts, server/raw-responses.ts and server/record-responses.ts): unsigned
 * varints, which carry tags, lengths and non-negative int32/int64/uint64 fields, and int64
 * varints, which may be negative. Not zig-zag: that is `storage/varint.ts`, for Kafka's record
 * format.
 */

/** Bytes of the varint of a non-negative integer below 2^64 (one a double holds exactly). */
export function uvarintSize(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    bytes++;
  }
  return bytes;
}

/**
 * Writes the varint of a non-negative integer below 2^64 (one a double holds exactly) at
 * `position`; returns the position after it.
 */
export function writeUvarint(buffer: Buffer, position: number, value: number): number {
  while (value >= 0x80) {
    buffer[position++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[position++] = value;
  return position;
}

export const VARINT = 0;
export const FIXED64 = 1;
export const LENGTH_DELIMITED = 2;
export const START_GROUP = 3;
export const END_GROUP = 4;
export const FIXED32 = 5;
export type WireType = typeof VARINT | typeof FIXED64 | typeof LENGTH_DELIMITED | typeof START_GROUP | typeof END_GROUP | typeof FIXED32;

/** The tag of a field: (field number << 3) | wire type (one byte for numbers 1-15). */
export function fieldTag(fieldNumber: number, wireType: WireType): number {
  return (fieldNumber << 3) | wireType;
}

/** A field with a varint value (non-negative), as [tag, value]. */
export type VarintField = readonly [tag: number, value: number];

/** Bytes `writeVarintFields` takes for `fields`. */
export function varintFieldsSize(fields: readonly VarintField[]): number {
  let size = 0;
  for (const [, value] of fields) size += 1 + uvarintSize(value);
  return size;
}

/** Writes each field (tag byte, varint) at `position`; returns the position after them. */
export function writeVarintFields(buffer: Buffer, position: number, fields: readonly VarintField[]): number {
  for (const [tag, value] of fields) {
    buffer[position++] = tag;
    position = writeUvarint(buffer, position, value);
  }
  return position;
}

/** Bytes of the varint of an int64 field (an integer a double holds exactly; negative ones take 10). */
export function int64VarintSize(value: number): number {
  return value < 0 ? 10 : uvarintSize(value);
}

/**
 * Writes the varint of an int64 field (an integer of magnitude below 2^63 that a double holds
 * exactly) at `position`: a negative value as its 64-bit two's complement, 10 bytes, as protobuf
 * encodes it. Returns the position after it.
 */
export function writeInt64Varint(buffer: Buffer, position: number, value: number): number {
  if (value >= 0) return writeUvarint(buffer, position, value);
  let low = value >>> 0; // (ToUint32: the value modulo 2^32)
  let high = Math.floor(value / 2 ** 32) >>> 0;
  for (let group = 0; group < 9; group++) {
    buffer[position++] = (low & 0x7f) | 0x80;
    low = ((low >>> 7) | (high << 25)) >>> 0;
    high >>>= 7;
  }
  buffer[position++] = low & 0x01;
  return position;
}
