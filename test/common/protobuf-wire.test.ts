// Goal: show the hand-written varints encode as protobufjs does (unsigned and int64, negative
// ones included); method: the same values through both, byte for byte.
import Long from 'long';
import protobuf from 'protobufjs/minimal.js';
import { describe, expect, it } from 'vitest';
import { int64VarintSize, uvarintSize, writeInt64Varint, writeUvarint } from '../../src/common/protobuf-wire.js';

const values = [0, 1, 127, 128, 300, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35 + 17, 2 ** 49 + 3, Number.MAX_SAFE_INTEGER];
const negatives = [-1, -2, -127, -128, -300, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 32), -(2 ** 32) - 5, -(2 ** 40) + 12345, -Number.MAX_SAFE_INTEGER];

function written(write: (buffer: Buffer, position: number) => number): Buffer {
  const buffer = Buffer.alloc(16, 0xee);
  return buffer.subarray(0, write(buffer, 0));
}

describe('protobuf varints', () => {
  it.each(values)('writeUvarint(%d) is protobufjs uint64', (value) => {
    const expected = Buffer.from(protobuf.Writer.create().uint64(Long.fromNumber(value, true)).finish());
    expect(written((buffer, position) => writeUvarint(buffer, position, value))).toEqual(expected);
    expect(uvarintSize(value)).toBe(expected.length);
  });

  it.each([...values, ...negatives])('writeInt64Varint(%d) is protobufjs int64', (value) => {
    const expected = Buffer.from(protobuf.Writer.create().int64(Long.fromNumber(value)).finish());
    expect(written((buffer, position) => writeInt64Varint(buffer, position, value))).toEqual(expected);
    expect(int64VarintSize(value)).toBe(expected.length);
  });
});
