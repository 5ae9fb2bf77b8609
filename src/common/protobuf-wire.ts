/**
 * The two pieces of the protobuf wire format that Strata writes by hand (see
 * client/produce-request.ts and server/raw-responses.ts): unsigned varints, which carry tags,
 * lengths and non-negative int32/int64/uint64 fields. Not zig-zag: that is `storage/varint.ts`,
 * for Kafka's record format.
 */

/** Bytes of the varint of a non-negative safe integer. */
export function uvarintSize(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    bytes++;
  }
  return bytes;
}

/** Writes the varint of a non-negative safe integer at `position`; returns the position after it. */
export function writeUvarint(buffer: Buffer, position: number, value: number): number {
  while (value >= 0x80) {
    buffer[position++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[position++] = value;
  return position;
}

/** The tag byte of a field (numbers 1-15). */
export function fieldTag(fieldNumber: number, wireType: 0 | 2): number {
  return (fieldNumber << 3) | wireType;
}

export const VARINT = 0;
export const LENGTH_DELIMITED = 2;

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
