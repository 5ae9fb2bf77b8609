// Goal: show the incremental RecordBatchBuilder writes the same RecordBatch v2 bytes as encoding
// a whole list at once, whatever its buffer does (growing from a tiny start, a caller's buffer,
// headroom in front), and refuses misuse; method: build with several buffer shapes, compare
// bytes, validate and decode the result with the codec.
import { describe, expect, it } from 'vitest';
import { BATCH_HEADER_BYTES, decodeRecords, readBatchHeader, type RecordInput } from '../../src/storage/record-batch.js';
import { validateBatches } from '../../src/storage/batch-validation.js';
import { RecordBatchBuilder, buildBatch, buildBatchFromRanges, rangeBatchBytesFloor, rangesBytesFloorBound, recordSizeBound } from '../../src/storage/record-batch-builder.js';
import { NULL_LENGTH, RecordRanges } from '../../src/storage/record-ranges.js';
import { mulberry32 } from '../helpers/seeded-random.js';

const T0 = 1_700_000_000_000;

function sampleRecords(count: number, seed: number): RecordInput[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, (_, index) => ({
    key: index % 3 === 0 ? null : Buffer.from(`key-${index}`),
    value: index % 7 === 0 ? null : Buffer.alloc(Math.floor(random() * 300), index),
    headers: index % 5 === 0 ? [{ key: `h-${index}`, value: Buffer.from('v') }, { key: 'ü', value: null }] : [],
    // Not monotonic: later records may carry earlier timestamps (negative deltas).
    timestamp: T0 + Math.floor(random() * 2_000) - 1_000,
  }));
}

function appendAll(builder: RecordBatchBuilder, records: RecordInput[]): void {
  for (const record of records) builder.append(record.timestamp!, record.key ?? null, record.value, record.headers ?? null);
}

describe('RecordBatchBuilder', () => {
  const records = sampleRecords(200, 7);
  const options = { producerId: 42, producerEpoch: 3, baseSequence: 1_000 };
  const expected = buildBatch(records, options);

  it('grows from a tiny first buffer and writes the same bytes as buildBatch', async () => {
    const builder = new RecordBatchBuilder({ initialCapacity: 64, capacityLimit: 1 << 20 });
    appendAll(builder, records);
    expect(builder.recordCount).toBe(200);
    expect(builder.sizeBytes).toBe(expected.length);
    const batch = builder.finish(options);
    expect(batch.equals(expected)).toBe(true);
    expect(await validateBatches(batch, 1 << 20)).toEqual({ batchCount: 1, recordCount: 200 });
    const decoded = decodeRecords(batch, 0);
    expect(decoded.map((record) => record.timestamp)).toEqual(records.map((record) => record.timestamp));
    expect(decoded.map((record) => record.value)).toEqual(records.map((record) => record.value));
    expect(decoded.map((record) => record.headers)).toEqual(records.map((record) => record.headers));
  });

  it('builds in a caller buffer after headroom, leaving the headroom for framing', () => {
    const buffer = Buffer.alloc(64 + 100_000, 0xee);
    const builder = new RecordBatchBuilder({ headroom: 64, buffer });
    appendAll(builder, records);
    const batch = builder.finish(options);
    expect(batch.equals(expected)).toBe(true);
    expect(batch.buffer).toBe(buffer.buffer); // built in place, no copy
    const framed = builder.withHeadroom(10);
    expect(framed.length).toBe(expected.length + 10);
    expect(framed.subarray(10).equals(expected)).toBe(true);
    expect(() => builder.withHeadroom(65)).toThrow(RangeError);
  });

  it('gives a single record larger than the capacity limit a buffer of its own size', () => {
    const builder = new RecordBatchBuilder({ initialCapacity: 128, capacityLimit: 256 });
    const big: RecordInput = { key: null, value: Buffer.alloc(10_000, 1), timestamp: T0 };
    builder.append(T0, null, big.value, null);
    const batch = builder.finish();
    expect(batch.length).toBeLessThanOrEqual(BATCH_HEADER_BYTES + recordSizeBound(big));
    expect(decodeRecords(batch, 0)[0]!.value!.equals(big.value!)).toBe(true);
  });

  it('compresses with gzip and keeps the header fields', () => {
    const builder = new RecordBatchBuilder({ headroom: 16, initialCapacity: 256 });
    appendAll(builder, records);
    const batch = builder.finish({ ...options, compression: 'gzip' });
    const header = readBatchHeader(batch, 0);
    expect(header.compression).toBe(1);
    expect([header.producerId, header.producerEpoch, header.baseSequence, header.recordCount]).toEqual([42, 3, 1_000, 200]);
    expect(decodeRecords(batch, 0).map((record) => record.value)).toEqual(records.map((record) => record.value));
    expect(builder.withHeadroom(16).subarray(16).equals(batch)).toBe(true);
  });

  it('buildBatch takes undefined for null (values, headers, header values), as JavaScript callers pass it', () => {
    const loose = [{ value: undefined, headers: [{ key: 'h', value: undefined }], timestamp: T0 }, { value: Buffer.from('v'), headers: undefined, timestamp: T0 }] as unknown as RecordInput[];
    const decoded = decodeRecords(buildBatch(loose), 0);
    expect(decoded.map((record) => [record.value, record.headers])).toEqual([
      [null, [{ key: 'h', value: null }]],
      [Buffer.from('v'), []],
    ]);
  });

  it('refuses an empty batch, appends after sealing, and a buffer without room for the header', () => {
    expect(() => new RecordBatchBuilder().finish()).toThrow(/at least one record/);
    const builder = new RecordBatchBuilder();
    builder.append(T0, null, Buffer.from('x'), null);
    const batch = builder.finish();
    expect(builder.finish()).toBe(batch); // sealing twice returns the same batch
    expect(() => builder.append(T0, null, Buffer.from('y'), null)).toThrow(/sealed/);
    expect(() => new RecordBatchBuilder({ headroom: 32, buffer: Buffer.alloc(80) })).toThrow(RangeError);
  });

  it('refuses timestamps that are not integers (NaN, a fraction, past 2^53, a delta past it) and header fields their bytes cannot hold, with INVALID_ARGUMENT', () => {
    const refusal = (build: () => unknown): unknown => {
      try {
        build();
      } catch (error) {
        return error;
      }
      return null;
    };
    for (const timestamp of [Number.NaN, T0 + 0.5, 2 ** 53, Number.POSITIVE_INFINITY]) {
      expect(refusal(() => buildBatch([{ value: Buffer.from('x'), timestamp }]))).toMatchObject({ code: 'INVALID_ARGUMENT', message: `a record's timestamp must be an integer count of milliseconds since the epoch, got ${timestamp}` });
    }
    const delta = refusal(() => buildBatch([{ value: Buffer.from('x'), timestamp: -(2 ** 52) }, { value: Buffer.from('y'), timestamp: 2 ** 52 }]));
    expect(delta).toMatchObject({ code: 'INVALID_ARGUMENT', message: `a record's timestamp must be an integer count of milliseconds since the epoch, got ${2 ** 52} (after a first record at ${-(2 ** 52)})` });
    const records = [{ value: Buffer.from('x'), timestamp: T0 }];
    expect(refusal(() => buildBatch(records, { producerEpoch: 40_000 }))).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'producerEpoch must be an integer from -32768 to 32767, got 40000' });
    expect(refusal(() => buildBatch(records, { baseSequence: 2 ** 31 }))).toMatchObject({ code: 'INVALID_ARGUMENT', message: `baseSequence must be an integer from ${-(2 ** 31)} to ${2 ** 31 - 1}, got ${2 ** 31}` });
    expect(refusal(() => buildBatch(records, { baseOffset: 1e20 }))).toMatchObject({ code: 'INVALID_ARGUMENT', message: /^baseOffset must be an integer/ });
    expect(refusal(() => buildBatch(records, { producerId: 1.5 }))).toMatchObject({ code: 'INVALID_ARGUMENT', message: /^producerId must be an integer/ });
    // What a broker refuses is left to it: a producer id below -1 encodes, as tests of its refusal need.
    expect(readBatchHeader(buildBatch(records, { producerId: -5 })).producerId).toBe(-5);
  });
});

describe('buildBatchFromRanges', () => {
  const records = sampleRecords(300, 11);
  const options = { producerId: 7, producerEpoch: 1, baseSequence: 50 };

  it('writes the same bytes as buildBatch for the same records', () => {
    const batch = buildBatchFromRanges(RecordRanges.of(records), null, options);
    expect(batch.equals(buildBatch(records, options))).toBe(true);
  });

  it('encodes only the records at the given indices, in that order', () => {
    const indices = Int32Array.from([3, 4, 10, 150, 299]);
    const batch = buildBatchFromRanges(RecordRanges.of(records), indices, options);
    expect(batch.equals(buildBatch([...indices].map((index) => records[index]!), options))).toBe(true);
  });

  it('gives records without a timestamp the default one', () => {
    const loose: RecordInput[] = [{ value: Buffer.from('a') }, { value: Buffer.from('b'), timestamp: T0 + 5 }];
    const batch = buildBatchFromRanges(RecordRanges.of(loose), null, { timestamp: T0 });
    expect(decodeRecords(batch, 0).map((record) => record.timestamp)).toEqual([T0, T0 + 5]);
    expect(batch.equals(buildBatch(loose, { timestamp: T0 }))).toBe(true);
  });

  it('keeps ranges of a shared source apart and grows past the records it expected', () => {
    const source = Buffer.from('key-avalue-aHkeyHvalkey-b');
    const ranges = new RecordRanges(source, 1);
    ranges.addRecord(T0, 0, 5, 5, 7, ranges.headerCountTotal);
    let first = ranges.headerCountTotal;
    ranges.addHeader(12, 4, 16, 4);
    ranges.addHeader(12, 1, 0, NULL_LENGTH);
    ranges.addRecord(0, 0, NULL_LENGTH, 0, NULL_LENGTH, first);
    first = ranges.headerCountTotal;
    ranges.addRecord(T0 + 1, 20, 5, 5, 0, first);
    expect(ranges.count).toBe(3);
    expect(ranges.payloadBytes).toBe(5 + 7 + 5);
    const batch = buildBatchFromRanges(ranges, null, { timestamp: T0 - 1 });
    expect(batch.equals(buildBatch([
      { key: Buffer.from('key-a'), value: Buffer.from('value-a'), timestamp: T0 },
      { key: null, value: null, headers: [{ key: 'Hkey', value: Buffer.from('Hval') }, { key: 'H', value: null }], timestamp: T0 - 1 },
      { key: Buffer.from('key-b'), value: Buffer.alloc(0), timestamp: T0 + 1 },
    ]))).toBe(true);
  });

  it('refuses an empty selection', () => {
    expect(() => buildBatchFromRanges(RecordRanges.of(records), new Int32Array(0))).toThrow(/at least one record/);
  });
});

describe('rangeBatchBytesFloor', () => {
  it('is at most the size of the batch, for all records and for a selection', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const ranges = RecordRanges.of(sampleRecords(1 + seed * 7, seed));
      const indices = Int32Array.from({ length: Math.ceil(ranges.count / 3) }, (_, at) => at * 3);
      for (const selection of [null, indices]) {
        const batch = buildBatchFromRanges(ranges, selection, { timestamp: T0 });
        const floor = rangeBatchBytesFloor(ranges, selection);
        expect(floor, `seed ${seed}`).toBeLessThanOrEqual(batch.length);
        expect(floor, `seed ${seed}`).toBeLessThanOrEqual(rangesBytesFloorBound(ranges));
      }
      expect(rangesBytesFloorBound(ranges)).toBe(rangeBatchBytesFloor(ranges, null)); // a source of just these records
      // Keys, values and a byte for each of a record's seven framing fields, at least.
      expect(rangeBatchBytesFloor(ranges, null)).toBeGreaterThanOrEqual(BATCH_HEADER_BYTES + ranges.payloadBytes + 7 * ranges.count);
    }
  });

  it('is the size of the batch where every varint takes one byte', () => {
    // Under 64 records of under 64 bytes each, one timestamp: lengths, deltas and counts fit a byte.
    const small: RecordInput[] = Array.from({ length: 60 }, (_, index) => ({
      key: index % 2 === 0 ? null : Buffer.from(`k${index}`),
      value: index % 4 === 3 ? null : Buffer.alloc(index % 40, 1),
      headers: index % 9 === 0 ? [{ key: 'h', value: Buffer.from('hv') }, { key: 'n', value: null }] : [],
      timestamp: T0,
    }));
    const ranges = RecordRanges.of(small);
    expect(rangeBatchBytesFloor(ranges, null)).toBe(buildBatchFromRanges(ranges, null).length);
  });
});
