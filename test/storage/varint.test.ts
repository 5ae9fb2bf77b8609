// Goal: pin down the zig-zag varint/varlong codec used inside records; method: round-trip values
// through writeVarint/writeVarlong and VarintReader, compare sizes with bytes written, and check
// the wire bytes against known encodings (the protobuf zig-zag scheme Kafka uses).
import { describe, expect, it } from 'vitest';
import { VarintReader, varintSize, varlongSize, writeVarint, writeVarlong } from '../../src/storage/varint.js';

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function encodeVarint(value: number): Buffer {
  const buffer = Buffer.alloc(16, 0xee);
  const end = writeVarint(buffer, 3, value);
  return buffer.subarray(3, end);
}

function encodeVarlong(value: number): Buffer {
  const buffer = Buffer.alloc(16, 0xee);
  const end = writeVarlong(buffer, 3, value);
  return buffer.subarray(3, end);
}

function decodeVarint(bytes: Buffer): { value: number; position: number } {
  const reader = new VarintReader(bytes, 0, bytes.length);
  const value = reader.readVarint();
  return { value, position: reader.position };
}

function decodeVarlong(bytes: Buffer): { value: number; position: number } {
  const reader = new VarintReader(bytes, 0, bytes.length);
  const value = reader.readVarlong();
  return { value, position: reader.position };
}

describe('varint (32-bit)', () => {
  const values = [
    0, 1, -1, 2, -2, 63, -64, 64, -65, 127, 128, -128, 300, -300, 8191, 8192, -8193,
    2 ** 20, -(2 ** 20), 2 ** 28 - 1, 2 ** 28, -(2 ** 28), INT32_MAX - 1, INT32_MAX, INT32_MIN + 1, INT32_MIN,
  ];

  it.each(values)('round trips %d and reads exactly the bytes written', (value) => {
    const bytes = encodeVarint(value);
    expect(decodeVarint(bytes)).toEqual({ value, position: bytes.length });
  });

  it.each(values)('varintSize(%d) equals the bytes written', (value) => {
    expect(varintSize(value)).toBe(encodeVarint(value).length);
  });

  it('writes the zig-zag wire format', () => {
    expect(encodeVarint(0).toString('hex')).toBe('00');
    expect(encodeVarint(-1).toString('hex')).toBe('01');
    expect(encodeVarint(1).toString('hex')).toBe('02');
    expect(encodeVarint(-64).toString('hex')).toBe('7f');
    expect(encodeVarint(64).toString('hex')).toBe('8001');
    expect(encodeVarint(150).toString('hex')).toBe('ac02');
    expect(encodeVarint(INT32_MAX).toString('hex')).toBe('feffffff0f');
    expect(encodeVarint(INT32_MIN).toString('hex')).toBe('ffffffff0f');
  });

  it('reads consecutive varints, advancing position', () => {
    const buffer = Buffer.alloc(32);
    let position = 0;
    const written = [5, -300, INT32_MIN, 0, INT32_MAX];
    for (const value of written) position = writeVarint(buffer, position, value);
    const reader = new VarintReader(buffer, 0, position);
    expect(written.map(() => reader.readVarint())).toEqual(written);
    expect(reader.position).toBe(position);
  });

  it('throws RangeError on a truncated varint', () => {
    const bytes = encodeVarint(INT32_MAX);
    for (let length = 0; length < bytes.length; length++) {
      expect(() => decodeVarint(bytes.subarray(0, length))).toThrow(RangeError);
    }
  });

  it('respects the reader end even when the buffer continues', () => {
    const bytes = encodeVarint(300); // two bytes
    const reader = new VarintReader(bytes, 0, 1);
    expect(() => reader.readVarint()).toThrow(RangeError);
  });

  it('throws RangeError on a varint longer than 5 bytes', () => {
    expect(() => decodeVarint(Buffer.from('ffffffffff01', 'hex'))).toThrow(RangeError);
    expect(() => decodeVarint(Buffer.from('8080808010', 'hex'))).toThrow(RangeError);
  });
});

describe('varlong', () => {
  const values = [
    0, 1, -1, 63, -64, 64, 1000, -1000, INT32_MAX, INT32_MIN, 2 ** 32, -(2 ** 32),
    1_700_000_000_000, -1_700_000_000_000, 2 ** 49, 2 ** 52 - 1, 2 ** 52, -(2 ** 52) + 1, -(2 ** 52),
    2 ** 53 - 2, Number.MAX_SAFE_INTEGER,
  ];

  it.each(values)('round trips %d and reads exactly the bytes written', (value) => {
    const bytes = encodeVarlong(value);
    expect(decodeVarlong(bytes)).toEqual({ value, position: bytes.length });
  });

  it.each(values)('varlongSize(%d) equals the bytes written', (value) => {
    expect(varlongSize(value)).toBe(encodeVarlong(value).length);
  });

  it('writes the zig-zag wire format, identical to varint within 32 bits', () => {
    for (const value of [0, -1, 1, -64, 64, 150, INT32_MAX, INT32_MIN]) {
      expect(encodeVarlong(value).toString('hex')).toBe(encodeVarint(value).toString('hex'));
    }
    expect(encodeVarlong(2 ** 32).toString('hex')).toBe('8080808020');
    expect(encodeVarlong(Number.MAX_SAFE_INTEGER).toString('hex')).toBe('feffffffffffff1f');
  });

  // Below -2^52 the zig-zag value -2v-1 no longer fits a double exactly; the codec takes a
  // BigInt path there. Kafka writes fdffffffffffff1f for MIN_SAFE_INTEGER.
  it('round trips negative values below -2^52 down to MIN_SAFE_INTEGER', () => {
    for (const value of [-(2 ** 52) - 1, Number.MIN_SAFE_INTEGER]) {
      expect(decodeVarlong(encodeVarlong(value)).value).toBe(value);
    }
    expect(encodeVarlong(Number.MIN_SAFE_INTEGER).toString('hex')).toBe('fdffffffffffff1f');
    expect(decodeVarlong(Buffer.from('fdffffffffffff1f', 'hex')).value).toBe(Number.MIN_SAFE_INTEGER);
  });

  it('throws RangeError on a truncated varlong', () => {
    const bytes = encodeVarlong(Number.MAX_SAFE_INTEGER);
    for (let length = 0; length < bytes.length; length++) {
      expect(() => decodeVarlong(bytes.subarray(0, length))).toThrow(RangeError);
    }
  });

  it('throws RangeError on a varlong too large for a safe integer', () => {
    expect(() => decodeVarlong(Buffer.from('ffffffffffffffff01', 'hex'))).toThrow(RangeError);
  });
});

describe('VarintReader.readInt8 and skip', () => {
  it('reads signed bytes and skips within bounds, throwing RangeError past the end', () => {
    const reader = new VarintReader(Buffer.from([0xff, 0x05, 1, 2, 3]), 0, 5);
    expect(reader.readInt8()).toBe(-1);
    expect(reader.readInt8()).toBe(5);
    reader.skip(2);
    expect(reader.position).toBe(4);
    expect(() => reader.skip(2)).toThrow(RangeError);
    expect(() => reader.skip(-1)).toThrow(RangeError);
    reader.skip(1);
    expect(() => reader.readInt8()).toThrow(RangeError);
  });
});
