// Goal: show the RecordBatch v2 codec encodes, validates and decodes Kafka magic-2 batches
// correctly; method: round trips through buildBatch/validateBatches/decodeRecords, deliberate
// corruption (every byte flipped, truncation, re-sealed CRCs), and a cross-check in both
// directions, down to identical bytes, against kafkajs's independent implementation.
import { createRequire } from 'node:module';
import { crc32c } from '@node-rs/crc32';
import { describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { BATCH_BYTES_MAX } from '../../src/common/request-limits.js';
import {
  ATTRIBUTES_OFFSET,
  BATCH_HEADER_BYTES,
  CRC_OFFSET,
  Compression,
  LAST_OFFSET_DELTA_OFFSET,
  MAGIC_OFFSET,
  PARTITION_LEADER_EPOCH_OFFSET,
  RECORD_COUNT_OFFSET,
  RECORDS_OFFSET,
  TimestampType,
  checkBatchFrame,
  decodeBatches,
  decodeRecords,
  firstRecordKey,
  forEachRecord,
  readBaseOffset,
  readBatchHeader,
  writeBaseOffset,
  type DecodedRecord,
  type RecordHeader,
  type RecordInput,
} from '../../src/storage/record-batch.js';
import { buildBatch, type BatchOptions } from '../../src/storage/record-batch-builder.js';
import { validateBatches } from '../../src/storage/batch-validation.js';

// ---------------------------------------------------------------------------------------------
// Helpers.

const T0 = 1_700_000_000_000;

/** Recomputes the CRC of the single batch at the start of `batch` after a deliberate edit. */
function resealCrc(batch: Buffer): void {
  batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
}

function expectStrataError(action: () => unknown, code: ErrorCode): StrataError {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(StrataError);
  expect((thrown as StrataError).code).toBe(code);
  return thrown as StrataError;
}

async function expectRejected(promise: Promise<unknown>, code: ErrorCode): Promise<StrataError> {
  const thrown = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(thrown).toBeInstanceOf(StrataError);
  expect((thrown as StrataError).code).toBe(code);
  return thrown as StrataError;
}

/** Validates a single batch the way the append path does, then decodes it. */
async function roundTrip(records: readonly RecordInput[], options: BatchOptions = {}): Promise<{ batch: Buffer; decoded: DecodedRecord[] }> {
  const batch = buildBatch(records, options);
  expect(checkBatchFrame(batch, 0, batch.length)).toBeNull();
  expect(await validateBatches(batch, BATCH_BYTES_MAX)).toEqual({ batchCount: 1, recordCount: records.length });
  return { batch, decoded: decodeRecords(batch, 0) };
}

/** What decodeRecords should return for `records` built with `options`. */
function expected(records: readonly RecordInput[], options: { baseOffset?: number; timestamp: number }): DecodedRecord[] {
  return records.map((record, index) => ({
    offset: (options.baseOffset ?? 0) + index,
    timestamp: record.timestamp ?? options.timestamp,
    key: record.key ?? null,
    value: record.value,
    headers: (record.headers ?? []).map((header) => ({ key: header.key, value: header.value })),
  }));
}

const b = (text: string): Buffer => Buffer.from(text, 'utf8');

/** A small but varied record set: headers (null values, non-ASCII keys), null keys and values. */
const variedRecords: RecordInput[] = [
  { key: b('k1'), value: b('value one'), headers: [{ key: 'trace-id', value: b('abc') }] },
  { key: null, value: b('no key') },
  { key: b('k3'), value: null, headers: [{ key: 'clé', value: null }, { key: '日本語', value: b('値') }] },
  { value: Buffer.alloc(0), headers: [{ key: '', value: Buffer.alloc(0) }, { key: '🚀', value: b('x') }] },
  { key: Buffer.alloc(0), value: Buffer.alloc(300, 7) },
];

// ---------------------------------------------------------------------------------------------
// Round trips.

describe('buildBatch → validateBatches → decodeRecords', () => {
  it('round trips keys, values, null keys and values, empty values and headers', async () => {
    const { decoded } = (await roundTrip(variedRecords, { timestamp: T0 }));
    expect(decoded).toEqual(expected(variedRecords, { timestamp: T0 }));
    // Null and empty stay distinct.
    expect(decoded[1]!.key).toBeNull();
    expect(decoded[2]!.value).toBeNull();
    expect(decoded[3]!.value).toEqual(Buffer.alloc(0));
    expect(decoded[4]!.key).toEqual(Buffer.alloc(0));
    expect(decoded[2]!.headers[0]).toEqual({ key: 'clé', value: null });
  });

  it('round trips a single record and many records (multi-byte offset deltas and lengths)', async () => {
    const single: RecordInput[] = [{ key: b('only'), value: b('one') }];
    expect((await roundTrip(single, { timestamp: T0, baseOffset: 9 })).decoded).toEqual(
      expected(single, { timestamp: T0, baseOffset: 9 }),
    );

    const many: RecordInput[] = Array.from({ length: 300 }, (_, index) => ({
      key: index % 7 === 0 ? null : b(`key-${index}`),
      value: Buffer.alloc(index, index & 0xff),
      timestamp: T0 + index * 1000,
    }));
    const { batch, decoded } = (await roundTrip(many, { baseOffset: 1000 }));
    expect(decoded).toEqual(expected(many, { baseOffset: 1000, timestamp: T0 }));
    expect(readBatchHeader(batch).lastOffset).toBe(1299);
  });

  it('keeps out-of-order timestamps: base is the first record, max is the largest', async () => {
    const records: RecordInput[] = [
      { value: b('a'), timestamp: T0 + 500 },
      { value: b('b'), timestamp: T0 - 2_000_000 },
      { value: b('c'), timestamp: T0 + 90_000 },
      { value: b('d'), timestamp: T0 + 10 },
    ];
    const { batch, decoded } = (await roundTrip(records));
    const header = readBatchHeader(batch);
    expect(header.baseTimestamp).toBe(T0 + 500);
    expect(header.maxTimestamp).toBe(T0 + 90_000);
    expect(header.timestampType).toBe(TimestampType.createTime);
    expect(decoded.map((record) => record.timestamp)).toEqual([T0 + 500, T0 - 2_000_000, T0 + 90_000, T0 + 10]);
  });

  it('uses the batch timestamp option for records without one', async () => {
    const records: RecordInput[] = [{ value: b('a') }, { value: b('b'), timestamp: T0 - 5 }, { value: b('c') }];
    const { batch, decoded } = (await roundTrip(records, { timestamp: T0 }));
    expect(decoded.map((record) => record.timestamp)).toEqual([T0, T0 - 5, T0]);
    expect(readBatchHeader(batch).baseTimestamp).toBe(T0);
    expect(readBatchHeader(batch).maxTimestamp).toBe(T0);
  });

  it('defaults the timestamp to the current time', async () => {
    const before = Date.now();
    const { batch, decoded } = (await roundTrip([{ value: b('now') }]));
    const after = Date.now();
    expect(decoded[0]!.timestamp).toBeGreaterThanOrEqual(before);
    expect(decoded[0]!.timestamp).toBeLessThanOrEqual(after);
    expect(readBatchHeader(batch).maxTimestamp).toBe(decoded[0]!.timestamp);
  });

  it('round trips gzip-compressed batches', async () => {
    const compressible: RecordInput[] = Array.from({ length: 50 }, (_, index) => ({
      key: b(`key-${index % 3}`),
      value: b('the same value repeated over and over '.repeat(10)),
      headers: index % 2 === 0 ? [{ key: 'ñ', value: null }] : [],
      timestamp: T0 + (index % 5) * 17,
    }));
    const { batch, decoded } = (await roundTrip(compressible, { compression: 'gzip', baseOffset: 77 }));
    expect(readBatchHeader(batch).compression).toBe(Compression.gzip);
    expect(decoded).toEqual(expected(compressible, { baseOffset: 77, timestamp: T0 }));
    expect(batch.length).toBeLessThan(buildBatch(compressible, { baseOffset: 77 }).length);

    const varied = (await roundTrip(variedRecords, { compression: 'gzip', timestamp: T0 }));
    expect(varied.decoded).toEqual(expected(variedRecords, { timestamp: T0 }));
  });

  it('writes producer id, epoch, base sequence, leader epoch and the transactional flag', async () => {
    const records: RecordInput[] = [{ value: b('a') }, { value: b('b') }, { value: b('c') }];
    const options: BatchOptions = {
      baseOffset: 2 ** 40 + 3,
      timestamp: T0,
      producerId: 2 ** 45 + 11,
      producerEpoch: 7,
      baseSequence: 123_456,
      partitionLeaderEpoch: 9,
      transactional: true,
    };
    // Read back as built: validateBatches refuses a transactional batch from producers.
    const batch = buildBatch(records, options);
    expect(readBatchHeader(batch)).toEqual({
      baseOffset: 2 ** 40 + 3,
      lastOffset: 2 ** 40 + 5,
      sizeBytes: batch.length,
      partitionLeaderEpoch: 9,
      compression: Compression.none,
      timestampType: TimestampType.createTime,
      transactional: true,
      control: false,
      baseTimestamp: T0,
      maxTimestamp: T0,
      producerId: 2 ** 45 + 11,
      producerEpoch: 7,
      baseSequence: 123_456,
      recordCount: 3,
      crc: crc32c(batch.subarray(ATTRIBUTES_OFFSET)),
    });
  });

  it('defaults producer fields and leader epoch to -1 (not idempotent)', async () => {
    const batch = buildBatch([{ value: b('a') }], { timestamp: T0 });
    const header = readBatchHeader(batch);
    expect(header.producerId).toBe(-1);
    expect(header.producerEpoch).toBe(-1);
    expect(header.baseSequence).toBe(-1);
    expect(header.partitionLeaderEpoch).toBe(-1);
    expect(header.transactional).toBe(false);
    expect(header.baseOffset).toBe(0);
  });

  it('reports log-append-time batches with every record at maxTimestamp', async () => {
    const batch = buildBatch([{ value: b('a'), timestamp: T0 }, { value: b('b'), timestamp: T0 + 50 }]);
    batch.writeInt16BE(batch.readInt16BE(ATTRIBUTES_OFFSET) | 0x08, ATTRIBUTES_OFFSET);
    resealCrc(batch);
    expect(await validateBatches(batch, BATCH_BYTES_MAX)).toEqual({ batchCount: 1, recordCount: 2 });
    expect(readBatchHeader(batch).timestampType).toBe(TimestampType.logAppendTime);
    expect(decodeRecords(batch).map((record) => record.timestamp)).toEqual([T0 + 50, T0 + 50]);
  });

  it('refuses to build an empty batch or an unsupported compression', async () => {
    expectStrataError(() => buildBatch([]), ErrorCode.INVALID_ARGUMENT);
    expectStrataError(() => buildBatch([{ value: b('a') }], { compression: 'snappy' }), ErrorCode.INVALID_ARGUMENT);
  });
});

// ---------------------------------------------------------------------------------------------
// Base offset rewriting.

describe('firstRecordKey (the partition of a raw batch sent without one)', () => {
  it('is the first record\'s key, or null, with and without compression', async () => {
    for (const compression of ['none', 'gzip'] as const) {
      const keyed = buildBatch([{ key: Buffer.from('first'), value: Buffer.from('a') }, { key: Buffer.from('second'), value: Buffer.from('b') }], { compression });
      expect(firstRecordKey(keyed)?.toString()).toBe('first');
      expect(firstRecordKey(buildBatch([{ value: Buffer.from('a') }, { key: Buffer.from('second'), value: null }], { compression }))).toBeNull();
    }
  });

  it('reads the key of the first record of a compressed batch of many records', async () => {
    const records: RecordInput[] = [{ key: Buffer.from('k0'), value: null }];
    for (let index = 1; index < 200_000; index++) records.push({ key: null, value: null });
    expect(firstRecordKey(buildBatch(records, { compression: 'gzip' }))?.toString()).toBe('k0');
  });

  it('refuses a batch that does not parse with CORRUPT_BATCH', async () => {
    const batch = buildBatch([{ key: Buffer.from('k'), value: Buffer.from('v') }], { compression: 'gzip' });
    batch[RECORDS_OFFSET + 2]! ^= 0xff; // inside the gzip stream (the CRC is not checked here)
    expect(() => firstRecordKey(batch)).toThrow(expect.objectContaining({ code: ErrorCode.CORRUPT_BATCH }));
  });
});

describe('writeBaseOffset', () => {
  it('rewrites only the base offset and the CRC still validates', async () => {
    const original = buildBatch(variedRecords, { timestamp: T0 });
    const batch = Buffer.from(original);
    const newBase = 2 ** 40 + 12_345;
    writeBaseOffset(batch, 0, newBase);
    expect(readBaseOffset(batch)).toBe(newBase);
    expect(batch.subarray(8)).toEqual(original.subarray(8));
    expect(checkBatchFrame(batch, 0, batch.length)).toBeNull();
    await validateBatches(batch, BATCH_BYTES_MAX);
    expect(decodeRecords(batch)).toEqual(expected(variedRecords, { baseOffset: newBase, timestamp: T0 }));
  });

  it('rewrites a batch in the middle of a buffer', async () => {
    const first = buildBatch([{ value: b('a') }], { timestamp: T0 });
    const second = buildBatch([{ value: b('b') }, { value: b('c') }], { timestamp: T0, compression: 'gzip' });
    const log = Buffer.concat([first, second]);
    writeBaseOffset(log, first.length, 1);
    expect(log.subarray(0, first.length)).toEqual(first);
    expect(log.subarray(first.length + 8)).toEqual(second.subarray(8));
    expect(checkBatchFrame(log, first.length, log.length)).toBeNull();
    expect(await validateBatches(log, BATCH_BYTES_MAX)).toEqual({ batchCount: 2, recordCount: 3 });
    expect(decodeBatches(log).map((record) => [record.offset, record.value?.toString()])).toEqual([
      [0, 'a'],
      [1, 'b'],
      [2, 'c'],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Corruption.

describe('corruption detection', () => {
  const small = (): Buffer =>
    buildBatch(
      [
        { key: b('k'), value: b('v1'), headers: [{ key: 'h', value: b('x') }] },
        { key: null, value: b('v2') },
      ],
      { timestamp: T0, producerId: 5, producerEpoch: 1, baseSequence: 0 },
    );

  it.each([
    ['uncompressed', small],
    ['gzip', () => buildBatch([{ value: b('v1') }, { value: b('v2') }], { timestamp: T0, compression: 'gzip' })],
  ])('detects any single flipped byte in [17, end) of a %s batch', async (_name, make) => {
    const batch = make();
    const undetected: string[] = [];
    for (let position = CRC_OFFSET; position < batch.length; position++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const corrupt = Buffer.from(batch);
        corrupt[position]! ^= mask;
        if (checkBatchFrame(corrupt, 0, corrupt.length) === null) undetected.push(`byte ${position} ^ ${mask}`);
        await expectRejected(validateBatches(corrupt, BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
      }
    }
    expect(undetected).toEqual([]);
  });

  it('does not protect baseOffset or partitionLeaderEpoch with the CRC (as in Kafka)', async () => {
    const batch = small();
    batch[3]! ^= 0xff;
    batch[PARTITION_LEADER_EPOCH_OFFSET]! ^= 0x01;
    expect(checkBatchFrame(batch, 0, batch.length)).toBeNull();
  });

  it('detects truncation at every length', async () => {
    const batch = small();
    for (let length = 0; length < batch.length; length++) {
      expect(checkBatchFrame(batch, 0, length)).not.toBeNull();
      await expectRejected(validateBatches(batch.subarray(0, length), BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
    }
  });

  it('detects a wrong magic byte', async () => {
    for (const magic of [0, 1, 3, 0xff]) {
      const batch = small();
      batch[MAGIC_OFFSET] = magic;
      expect(checkBatchFrame(batch, 0, batch.length)).toMatch(/magic/);
      await expectRejected(validateBatches(batch, BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
    }
  });

  it('detects batch lengths below the header size', async () => {
    const batch = small();
    batch.writeInt32BE(BATCH_HEADER_BYTES - 12 - 1, 8);
    expect(checkBatchFrame(batch, 0, batch.length)).not.toBeNull();
    batch.writeInt32BE(-1, 8);
    expect(checkBatchFrame(batch, 0, batch.length)).not.toBeNull();
  });

  describe('records that disagree with the header, behind a valid CRC', () => {
    const three = (): Buffer =>
      buildBatch([{ value: b('a') }, { value: b('b') }, { value: b('c') }], { timestamp: T0 });

    const cases: Array<[string, (batch: Buffer) => void]> = [
      ['recordCount too small', (batch) => batch.writeInt32BE(2, RECORD_COUNT_OFFSET)],
      ['recordCount too large', (batch) => batch.writeInt32BE(4, RECORD_COUNT_OFFSET)],
      ['recordCount zero', (batch) => batch.writeInt32BE(0, RECORD_COUNT_OFFSET)],
      [
        'recordCount and lastOffsetDelta both too small (bytes left over)',
        (batch) => {
          batch.writeInt32BE(2, RECORD_COUNT_OFFSET);
          batch.writeInt32BE(1, LAST_OFFSET_DELTA_OFFSET);
        },
      ],
      [
        'recordCount and lastOffsetDelta both too large (records run out)',
        (batch) => {
          batch.writeInt32BE(4, RECORD_COUNT_OFFSET);
          batch.writeInt32BE(3, LAST_OFFSET_DELTA_OFFSET);
        },
      ],
      [
        // Each record here is 8 bytes: length, attributes, timestampDelta, offsetDelta, key, value
        // (2), header count. Record 1's offset delta is at 61 + 8 + 3.
        'an offset delta out of sequence',
        (batch) => {
          expect(batch[RECORDS_OFFSET + 8 + 3]).toBe(2); // zig-zag 1
          batch[RECORDS_OFFSET + 8 + 3] = 4; // zig-zag 2
        },
      ],
      ['a control batch', (batch) => batch.writeInt16BE(0x20, ATTRIBUTES_OFFSET)],
      ['an unsupported compression codec', (batch) => batch.writeInt16BE(Compression.snappy, ATTRIBUTES_OFFSET)],
    ];

    it.each(cases)('%s: checkBatchFrame passes, validateBatches rejects', async (_name, edit) => {
      const batch = three();
      edit(batch);
      resealCrc(batch);
      expect(checkBatchFrame(batch, 0, batch.length)).toBeNull();
      await expectRejected(validateBatches(batch, BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
    });
  });

  it('refuses on append, and decodeRecords refuses, a record whose fields do not match its length', async () => {
    const batch = buildBatch([{ key: b('abc'), value: b('v') }], { timestamp: T0 });
    // length, attributes, timestampDelta, offsetDelta, then the key length varint.
    const keyLengthAt = RECORDS_OFFSET + 4;
    expect(batch[keyLengthAt]).toBe(6); // zig-zag 3
    batch[keyLengthAt] = 4; // zig-zag 2: the record's length no longer matches its fields
    resealCrc(batch);
    await expectRejected(validateBatches(batch, BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
    expectStrataError(() => decodeRecords(batch), ErrorCode.CORRUPT_BATCH);
  });

  it('reports 64-bit header fields beyond safe integers as corruption', async () => {
    for (const fieldOffset of [27, 35, 43]) {
      const batch = buildBatch([{ value: b('v') }], { timestamp: T0 });
      batch.writeInt32BE(0x7fffffff, fieldOffset);
      resealCrc(batch);
      expect(checkBatchFrame(batch, 0, batch.length)).toMatch(fieldOffset === 43 ? /^producer id is not a safe integer$/ : /^(base|max) timestamp 92233720\d+ is outside ±2\^53: timestamps are milliseconds since the epoch \(not nanoseconds\)$/);
      await expectRejected(validateBatches(batch, BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
    }
  });

  it('rejects a batch larger than maxBatchBytes with RECORD_TOO_LARGE', async () => {
    const batch = buildBatch([{ value: Buffer.alloc(1000) }], { timestamp: T0 });
    expect(await validateBatches(batch, batch.length)).toEqual({ batchCount: 1, recordCount: 1 });
    await expectRejected(validateBatches(batch, batch.length - 1), ErrorCode.RECORD_TOO_LARGE);
    const log = Buffer.concat([buildBatch([{ value: b('small') }], { timestamp: T0 }), batch]);
    await expectRejected(validateBatches(log, batch.length - 1), ErrorCode.RECORD_TOO_LARGE);
  });

  it('rejects an empty buffer with CORRUPT_BATCH', async () => {
    await expectRejected(validateBatches(Buffer.alloc(0), BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
  });

  it('rejects a corrupt batch after valid ones', async () => {
    const good = buildBatch([{ value: b('a') }], { timestamp: T0 });
    const bad = buildBatch([{ value: b('b') }], { timestamp: T0 });
    bad[bad.length - 1]! ^= 0xff;
    await expectRejected(validateBatches(Buffer.concat([good, good, bad]), BATCH_BYTES_MAX), ErrorCode.CORRUPT_BATCH);
    expect(checkBatchFrame(Buffer.concat([good, bad]), good.length, good.length + bad.length)).not.toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// Several batches.

describe('decodeBatches', () => {
  it('decodes every record of a concatenation of batches with their offsets', async () => {
    const first: RecordInput[] = [{ key: b('a'), value: b('0') }, { value: b('1') }, { value: null }];
    const second: RecordInput[] = [{ value: b('3'), headers: [{ key: 'ü', value: b('h') }] }, { value: b('4') }];
    const third: RecordInput[] = [{ key: null, value: b('5') }];
    const log = Buffer.concat([
      buildBatch(first, { baseOffset: 0, timestamp: T0 }),
      buildBatch(second, { baseOffset: 3, timestamp: T0 + 1, compression: 'gzip' }),
      buildBatch(third, { baseOffset: 5, timestamp: T0 + 2 }),
    ]);
    expect(await validateBatches(log, BATCH_BYTES_MAX)).toEqual({ batchCount: 3, recordCount: 6 });
    const all = [
      ...expected(first, { baseOffset: 0, timestamp: T0 }),
      ...expected(second, { baseOffset: 3, timestamp: T0 + 1 }),
      ...expected(third, { baseOffset: 5, timestamp: T0 + 2 }),
    ];
    expect(decodeBatches(log)).toEqual(all);
    expect(decodeBatches(log).map((record) => record.offset)).toEqual([0, 1, 2, 3, 4, 5]);

    // A trailing partial batch (as at the end of a fetch response) is ignored.
    const partial = buildBatch([{ value: b('6') }], { baseOffset: 6, timestamp: T0 });
    expect(decodeBatches(Buffer.concat([log, partial.subarray(0, partial.length - 3)]))).toEqual(all);
    expect(decodeBatches(Buffer.alloc(0))).toEqual([]);
  });
});

describe('forEachRecord', () => {
  /** Ten records v0..v9 for offsets 10..19, the last one's header count made wrong (1 header in no bytes). */
  function batchWithBadLastRecord(): Buffer {
    const batch = buildBatch(Array.from({ length: 10 }, (_, index) => ({ value: b(`v${index}`), timestamp: T0 + 10 * index })), { baseOffset: 10 });
    batch[batch.length - 1] = 2; // zigzag varint of 1
    expect(() => decodeRecords(batch, 0)).toThrow(/does not decode/);
    return batch;
  }

  it('visits from the given offset in order and reads nothing after the record it stops at', () => {
    const batch = batchWithBadLastRecord();
    const seen: number[] = [];
    forEachRecord(batch, 0, 12, (offset) => {
      seen.push(offset);
      return offset < 15;
    });
    expect(seen).toEqual([12, 13, 14, 15]);
    // Walked to the end, it reaches the damaged record.
    expect(() => forEachRecord(batch, 0, 12, () => undefined)).toThrow(/does not decode/);
  });
});

// ---------------------------------------------------------------------------------------------
// Cross-check with kafkajs.

interface KafkaEncoder {
  buffer: Buffer;
}
interface KafkaLong {
  toString(): string;
}
interface KafkaRecordBatchArgs {
  compression?: number;
  firstOffset?: KafkaLong;
  firstTimestamp?: number;
  maxTimestamp?: number;
  partitionLeaderEpoch?: number;
  lastOffsetDelta?: number;
  transactional?: boolean;
  producerId?: KafkaLong;
  producerEpoch?: number;
  firstSequence?: number;
  records?: KafkaEncoder[];
}
type KafkaHeaderValue = Buffer | null;
interface KafkaDecodedRecord {
  offset: string;
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, KafkaHeaderValue | KafkaHeaderValue[]>;
}
interface KafkaDecodedBatch {
  firstOffset: string;
  firstTimestamp: string;
  maxTimestamp: string;
  partitionLeaderEpoch: number;
  inTransaction: boolean;
  isControlBatch: boolean;
  lastOffsetDelta: number;
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  records: KafkaDecodedRecord[];
}

const require = createRequire(import.meta.url);
const { RecordBatch: kafkaRecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as {
  RecordBatch: (args: KafkaRecordBatchArgs) => Promise<KafkaEncoder>;
};
const kafkaRecord = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (args: {
  offsetDelta: number;
  timestampDelta: number;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer>;
}) => KafkaEncoder;
const kafkaBatchDecoder = require('kafkajs/src/protocol/recordBatch/v0/decoder.js') as (
  decoder: unknown,
) => Promise<KafkaDecodedBatch>;
const KafkaDecoder = require('kafkajs/src/protocol/decoder') as new (buffer: Buffer) => unknown;
const KafkaLongClass = require('kafkajs/src/utils/long') as { fromNumber(value: number): KafkaLong };
const { Types: KafkaCompression } = require('kafkajs/src/protocol/message/compression/index.js') as {
  Types: { None: number; GZIP: number };
};

/**
 * A record for both encoders. kafkajs takes headers as an object, so keys must be unique and not
 * integer-like (object key order), and it cannot encode null header values (its size computation
 * calls Buffer.byteLength(null)); those are covered in the Strata → kafkajs direction only.
 */
interface CrossRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeader[];
  timestamp: number;
}

const crossRecords: CrossRecord[] = [
  { key: b('user-1'), value: b('{"n":1}'), headers: [{ key: 'trace', value: b('t-1') }, { key: 'clé', value: b('é') }], timestamp: T0 + 10 },
  { key: null, value: b('keyless'), headers: [], timestamp: T0 },
  { key: b('user-2'), value: null, headers: [{ key: '日本', value: Buffer.alloc(0) }], timestamp: T0 + 3000 },
  { key: b(''), value: Buffer.alloc(0), headers: [], timestamp: T0 + 10 },
  { key: b('user-3'), value: Buffer.alloc(200, 0x41), headers: [{ key: 'a', value: b('1') }, { key: 'b', value: b('2') }], timestamp: T0 + 1 },
];

interface CrossBatchFields {
  baseOffset: number;
  partitionLeaderEpoch: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  gzip: boolean;
}

async function encodeWithKafkajs(records: readonly CrossRecord[], fields: CrossBatchFields): Promise<Buffer> {
  const firstTimestamp = records[0]!.timestamp;
  const encoder = await kafkaRecordBatch({
    compression: fields.gzip ? KafkaCompression.GZIP : KafkaCompression.None,
    firstOffset: KafkaLongClass.fromNumber(fields.baseOffset),
    firstTimestamp,
    maxTimestamp: Math.max(...records.map((record) => record.timestamp)),
    partitionLeaderEpoch: fields.partitionLeaderEpoch,
    lastOffsetDelta: records.length - 1,
    producerId: KafkaLongClass.fromNumber(fields.producerId),
    producerEpoch: fields.producerEpoch,
    firstSequence: fields.baseSequence,
    records: records.map((record, index) =>
      kafkaRecord({
        offsetDelta: index,
        timestampDelta: record.timestamp - firstTimestamp,
        key: record.key,
        value: record.value,
        headers: Object.fromEntries(record.headers.map((header) => [header.key, header.value as Buffer])),
      }),
    ),
  });
  return encoder.buffer;
}

function encodeWithStrata(records: readonly CrossRecord[], fields: CrossBatchFields): Buffer {
  return buildBatch(records, {
    baseOffset: fields.baseOffset,
    partitionLeaderEpoch: fields.partitionLeaderEpoch,
    producerId: fields.producerId,
    producerEpoch: fields.producerEpoch,
    baseSequence: fields.baseSequence,
    compression: fields.gzip ? 'gzip' : 'none',
  });
}

function expectedFromCross(records: readonly CrossRecord[], baseOffset: number): DecodedRecord[] {
  return records.map((record, index) => ({
    offset: baseOffset + index,
    timestamp: record.timestamp,
    key: record.key,
    value: record.value,
    headers: record.headers,
  }));
}

const notIdempotent: CrossBatchFields = {
  baseOffset: 0,
  partitionLeaderEpoch: -1,
  producerId: -1,
  producerEpoch: -1,
  baseSequence: -1,
  gzip: false,
};
const idempotent: CrossBatchFields = {
  baseOffset: 2 ** 33 + 17,
  partitionLeaderEpoch: 4,
  producerId: 2 ** 40 + 99,
  producerEpoch: 3,
  baseSequence: 1000,
  gzip: false,
};

describe('cross-check with kafkajs', () => {
  it.each([
    ['uncompressed, not idempotent', notIdempotent],
    ['uncompressed, idempotent', idempotent],
    ['gzip, not idempotent', { ...notIdempotent, gzip: true }],
    ['gzip, idempotent', { ...idempotent, gzip: true }],
  ])('accepts and decodes a kafkajs batch (%s)', async (_name, fields) => {
    const batch = await encodeWithKafkajs(crossRecords, fields);
    expect(checkBatchFrame(batch, 0, batch.length)).toBeNull();
    expect(await validateBatches(batch, BATCH_BYTES_MAX)).toEqual({ batchCount: 1, recordCount: crossRecords.length });
    expect(decodeRecords(batch)).toEqual(expectedFromCross(crossRecords, fields.baseOffset));
    const header = readBatchHeader(batch);
    expect(header).toMatchObject({
      baseOffset: fields.baseOffset,
      lastOffset: fields.baseOffset + crossRecords.length - 1,
      partitionLeaderEpoch: fields.partitionLeaderEpoch,
      compression: fields.gzip ? Compression.gzip : Compression.none,
      baseTimestamp: T0 + 10,
      maxTimestamp: T0 + 3000,
      producerId: fields.producerId,
      producerEpoch: fields.producerEpoch,
      baseSequence: fields.baseSequence,
      recordCount: crossRecords.length,
    });
  });

  it('accepts a kafkajs batch with a single record and one with many', async () => {
    const one: CrossRecord[] = [{ key: null, value: b('solo'), headers: [], timestamp: T0 }];
    const oneBatch = await encodeWithKafkajs(one, notIdempotent);
    expect(await validateBatches(oneBatch, BATCH_BYTES_MAX)).toEqual({ batchCount: 1, recordCount: 1 });
    expect(decodeRecords(oneBatch)).toEqual(expectedFromCross(one, 0));

    const many: CrossRecord[] = Array.from({ length: 200 }, (_, index) => ({
      key: index % 2 ? b(`k${index}`) : null,
      value: Buffer.alloc(index, 0x30 + (index % 10)),
      headers: index % 3 ? [] : [{ key: 'i', value: b(String(index)) }],
      timestamp: T0 + ((index * 7919) % 1000) - 500,
    }));
    for (const gzip of [false, true]) {
      const manyBatch = await encodeWithKafkajs(many, { ...notIdempotent, baseOffset: 500, gzip });
      expect(await validateBatches(manyBatch, BATCH_BYTES_MAX)).toEqual({ batchCount: 1, recordCount: 200 });
      expect(decodeRecords(manyBatch)).toEqual(expectedFromCross(many, 500));
    }
  });

  it.each([
    ['uncompressed', false],
    ['gzip', true],
  ])('kafkajs decodes a Strata batch (%s), null header values included', async (_name, gzip) => {
    const records: CrossRecord[] = [
      ...crossRecords,
      { key: b('nullable'), value: b('v'), headers: [{ key: 'empty', value: null }, { key: 'ß', value: b('s') }], timestamp: T0 - 40 },
    ];
    const fields: CrossBatchFields = { ...idempotent, gzip };
    const batch = encodeWithStrata(records, fields);
    const decoded = await kafkaBatchDecoder(new KafkaDecoder(batch));
    expect(decoded).toMatchObject({
      firstOffset: String(fields.baseOffset),
      firstTimestamp: String(T0 + 10),
      maxTimestamp: String(T0 + 3000),
      partitionLeaderEpoch: fields.partitionLeaderEpoch,
      inTransaction: false,
      isControlBatch: false,
      lastOffsetDelta: records.length - 1,
      producerId: String(fields.producerId),
      producerEpoch: fields.producerEpoch,
      firstSequence: fields.baseSequence,
    });
    expect(decoded.records.map((record) => ({
      offset: record.offset,
      timestamp: record.timestamp,
      key: record.key,
      value: record.value,
      headers: record.headers,
    }))).toEqual(
      records.map((record, index) => ({
        offset: String(fields.baseOffset + index),
        timestamp: String(record.timestamp),
        key: record.key,
        value: record.value,
        headers: Object.fromEntries(record.headers.map((header) => [header.key, header.value])),
      })),
    );
  });

  it('kafkajs sees the transactional flag Strata writes', async () => {
    const batch = buildBatch([{ value: b('tx') }], { timestamp: T0, transactional: true, producerId: 8, producerEpoch: 0, baseSequence: 0 });
    expect((await kafkaBatchDecoder(new KafkaDecoder(batch))).inTransaction).toBe(true);
  });

  // kafkajs defaults partitionLeaderEpoch, producerEpoch and firstSequence to 0 where Strata
  // defaults to -1; both sides are given every field explicitly, so the bytes must match exactly.
  it.each([
    ['not idempotent', notIdempotent],
    ['idempotent', idempotent],
  ])('writes the same bytes as kafkajs for an uncompressed batch (%s)', async (_name, fields) => {
    const ours = encodeWithStrata(crossRecords, fields);
    const theirs = await encodeWithKafkajs(crossRecords, fields);
    expect(ours.toString('hex')).toBe(theirs.toString('hex'));
  });

  it('writes the same header fields as kafkajs for a gzip batch (compressed bytes aside)', async () => {
    const fields: CrossBatchFields = { ...idempotent, gzip: true };
    const ours = readBatchHeader(encodeWithStrata(crossRecords, fields));
    const theirs = readBatchHeader(await encodeWithKafkajs(crossRecords, fields));
    // Size and CRC depend on the compressor's output, which is not part of the format.
    expect({ ...ours, sizeBytes: 0, crc: 0 }).toEqual({ ...theirs, sizeBytes: 0, crc: 0 });
  });
});
