/**
 * Zig-zag variable-length integers as used inside Kafka's records (the protobuf encoding):
 * 7 bits a byte, least significant group first, high bit set on every byte but the last.
 *
 * `varint` values are 32-bit; `varlong` values use JavaScript numbers and are exact up to 2^53,
 * which covers every timestamp delta and length Strata writes.
 */

/** Bytes the zig-zag varint encoding of a 32-bit `value` takes. */
export function varintSize(value: number): number {
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  let bytes = 1;
  while (zigzag >= 0x80) {
    zigzag >>>= 7;
    bytes++;
  }
  return bytes;
}

/** Magnitudes up to this zig-zag exactly in a double; larger ones take the BigInt path. */
const EXACT_ZIGZAG_LIMIT = 2 ** 52;

function zigzagBig(value: number): bigint {
  const big = BigInt(value);
  return big >= 0n ? big << 1n : (-big << 1n) - 1n;
}

/** Bytes the zig-zag varlong encoding of `value` (a safe integer) takes. */
export function varlongSize(value: number): number {
  if (Math.abs(value) >= EXACT_ZIGZAG_LIMIT) return Math.ceil(zigzagBig(value).toString(2).length / 7);
  let zigzag = value >= 0 ? value * 2 : -value * 2 - 1;
  let bytes = 1;
  while (zigzag >= 0x80) {
    zigzag = Math.floor(zigzag / 128);
    bytes++;
  }
  return bytes;
}

/** Writes a zig-zag varint at `position`; returns the position after it. */
export function writeVarint(buffer: Buffer, position: number, value: number): number {
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  while (zigzag >= 0x80) {
    buffer[position++] = (zigzag & 0x7f) | 0x80;
    zigzag >>>= 7;
  }
  buffer[position++] = zigzag;
  return position;
}

/** Writes a zig-zag varlong at `position`; returns the position after it. */
export function writeVarlong(buffer: Buffer, position: number, value: number): number {
  if (Math.abs(value) >= EXACT_ZIGZAG_LIMIT) {
    let big = zigzagBig(value);
    while (big >= 0x80n) {
      buffer[position++] = Number(big & 0x7fn) | 0x80;
      big >>= 7n;
    }
    buffer[position++] = Number(big);
    return position;
  }
  let zigzag = value >= 0 ? value * 2 : -value * 2 - 1;
  while (zigzag >= 0x80) {
    buffer[position++] = (zigzag % 128) | 0x80;
    zigzag = Math.floor(zigzag / 128);
  }
  buffer[position++] = zigzag;
  return position;
}

/**
 * A forward-only reader over a byte range. Reading past `end` throws `RangeError`, which the
 * batch codec turns into a corrupt-batch error naming the batch.
 */
export class VarintReader {
  constructor(
    public buffer: Buffer,
    public position: number,
    public end: number,
  ) {}

  /** Points the reader at `buffer[position, end)`, so that one reader serves many ranges. */
  reset(buffer: Buffer, position: number, end: number): this {
    this.buffer = buffer;
    this.position = position;
    this.end = end;
    return this;
  }

  readVarint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.position >= this.end) throw new RangeError('varint runs past the end of the batch');
      const byte = this.buffer[this.position++]!;
      if (shift === 28 && byte > 0x0f) throw new RangeError('varint is longer than 5 bytes');
      result |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
      shift += 7;
    }
    return (result >>> 1) ^ -(result & 1);
  }

  readVarlong(): number {
    // Up to 7 bytes (49 bits) the arithmetic is exact in a double; only longer values, which
    // no timestamp delta reaches, take the BigInt path.
    const start = this.position;
    let result = 0;
    let multiplier = 1;
    for (let bytes = 0; bytes < 7; bytes++) {
      if (this.position >= this.end) throw new RangeError('varlong runs past the end of the batch');
      const byte = this.buffer[this.position++]!;
      result += (byte & 0x7f) * multiplier;
      if (byte < 0x80) return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
      multiplier *= 128;
    }
    this.position = start;
    return this.readLongVarlong();
  }

  private readLongVarlong(): number {
    let result = 0n;
    for (let bytes = 0; ; bytes++) {
      if (this.position >= this.end) throw new RangeError('varlong runs past the end of the batch');
      if (bytes === 8) throw new RangeError('varlong is too large for a safe integer');
      const byte = this.buffer[this.position++]!;
      result |= BigInt(byte & 0x7f) << BigInt(7 * bytes);
      if (byte < 0x80) break;
    }
    const value = result & 1n ? -((result + 1n) >> 1n) : result >> 1n;
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new RangeError('varlong is too large for a safe integer');
    }
    return Number(value);
  }

  readInt8(): number {
    if (this.position >= this.end) throw new RangeError('record runs past the end of the batch');
    return this.buffer.readInt8(this.position++);
  }

  /** Skips `length` bytes, checking they exist. */
  skip(length: number): void {
    if (length < 0 || this.position + length > this.end) {
      throw new RangeError(`field of ${length} bytes runs past the end of the batch`);
    }
    this.position += length;
  }
}
