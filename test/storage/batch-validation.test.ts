// Goal: show that a compressed batch's records are checked as thoroughly as an uncompressed
// batch's while being inflated off the event loop in chunks: whatever the chunk boundaries, the
// same records pass and the same faults are found; a batch that inflates past the bound is
// refused without being held in memory whole; and a partition log keeps call order across
// appends that wait for such a check. Method: real gzip streams (including concatenated gzip
// members, to make large inflated sizes from small inputs), every split point of a record run,
// and a real partition log on a temp directory.
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { BATCH_BYTES_MAX } from '../../src/common/request-limits.js';
import {
  checkCompressedRecords,
  InflatedRecords,
  RecordsCheck,
  validateBatches,
} from '../../src/storage/batch-validation.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import {
  ATTRIBUTES_OFFSET,
  BASE_TIMESTAMP_OFFSET,
  BATCH_LENGTH_OFFSET,
  CRC_OFFSET,
  decodeBatches,
  firstRecordKey,
  INFLATED_BATCH_BYTES_MAX,
  LOG_OVERHEAD,
  MAX_TIMESTAMP_OFFSET,
  RECORDS_OFFSET,
  type RecordInput,
  TIMESTAMP_TYPE_MASK,
  writeInt64,
} from '../../src/storage/record-batch.js';
import { type BatchOptions, buildBatch } from '../../src/storage/record-batch-builder.js';
import { writeVarint } from '../../src/storage/varint.js';
import { countingLoopTurns } from '../helpers/loop-turns.js';
import { seedMessage, streamFor, testSeed } from '../helpers/seeded-random.js';
import { rejectedWith } from '../helpers/rejected-with.js';

const T0 = 1_700_000_000_000;
const b = (text: string): Buffer => Buffer.from(text, 'utf8');

/** The records region of an uncompressed batch of `records`. */
function recordsRegion(records: readonly RecordInput[]): Buffer {
  return buildBatch(records, { timestamp: T0 }).subarray(RECORDS_OFFSET);
}

/** Feeds `region` to an InflatedRecords in chunks cut at `cuts`; returns the first problem or null. */
function feed(region: Buffer, count: number, cuts: readonly number[]): string | null {
  const records = new InflatedRecords(new RecordsCheck(count));
  let start = 0;
  for (const cut of [...cuts, region.length]) {
    // Each chunk is a copy, as zlib hands over fresh buffers: nothing may rely on adjacency.
    const problem = records.push(Buffer.from(region.subarray(start, cut)));
    if (problem !== null) return problem;
    start = cut;
  }
  return records.end();
}

/** What the check finds in `region` given whole, in one run (the uncompressed path). */
function checkWhole(region: Buffer, count: number): string | null {
  const check = new RecordsCheck(count);
  return check.check(region, 0, region.length) ?? check.finish();
}

/** A gzip batch of `count` records whose compressed records are `payload` (resealed). */
function gzipBatch(count: number, payload: Buffer, options: BatchOptions = {}): Buffer {
  const template = buildBatch(Array.from({ length: count }, () => ({ value: null })), { timestamp: T0, compression: 'gzip', ...options });
  const batch = Buffer.concat([template.subarray(0, RECORDS_OFFSET), payload]);
  batch.writeInt32BE(batch.length - LOG_OVERHEAD, BATCH_LENGTH_OFFSET);
  batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
  return batch;
}

const MiB = 1024 * 1024;
const zeroMember = gzipSync(Buffer.alloc(MiB));

/**
 * A gzip batch of `count` records, each with a value of `valueMiB` MiB of zeros, made of
 * concatenated gzip members (which gunzip inflates one after the other), so that it is small
 * on the wire and large inflated.
 */
function largeGzipBatch(count: number, valueMiB: number, options: BatchOptions = {}): Buffer {
  const members: Buffer[] = [];
  for (let index = 0; index < count; index++) {
    const valueBytes = valueMiB * MiB;
    const fields = Buffer.alloc(32);
    let end = 0;
    fields[end++] = 0; // attributes
    end = writeVarint(fields, end, 0); // timestamp delta (a varlong; 0 encodes alike)
    end = writeVarint(fields, end, index); // offset delta
    end = writeVarint(fields, end, -1); // null key
    end = writeVarint(fields, end, valueBytes);
    const length = end + valueBytes + 1; // + the header count
    const prefix = Buffer.alloc(8);
    const prefixEnd = writeVarint(prefix, 0, length);
    members.push(gzipSync(Buffer.concat([prefix.subarray(0, prefixEnd), fields.subarray(0, end)])));
    for (let mib = 0; mib < valueMiB; mib++) members.push(zeroMember);
    members.push(gzipSync(Buffer.from([0]))); // no headers
  }
  return gzipBatch(count, Buffer.concat(members), options);
}

const rejection = (promise: Promise<unknown>): Promise<StrataError> => rejectedWith(promise, StrataError);

describe('InflatedRecords (records cut into runs of whole records, whatever the chunks)', () => {
  const records: RecordInput[] = [
    { key: b('k'), value: b('v1'), headers: [{ key: 'h', value: b('x') }] },
    { key: null, value: Buffer.alloc(200, 3) }, // a two-byte length prefix
    { key: b('k3'), value: null },
    { value: Buffer.alloc(0), headers: [{ key: 'ü', value: null }] },
  ];
  const region = recordsRegion(records);

  it('passes sound records cut at every point, and in chunks of every size up to 9', () => {
    for (let cut = 0; cut <= region.length; cut++) expect(feed(region, records.length, [cut]), `cut at ${cut}`).toBeNull();
    for (let size = 1; size <= 9; size++) {
      const cuts = Array.from({ length: Math.floor(region.length / size) }, (_, index) => (index + 1) * size);
      expect(feed(region, records.length, cuts), `chunks of ${size}`).toBeNull();
    }
  });

  it('finds the same fault as the whole-run check, wherever the chunks are cut', () => {
    const faults: Array<[string, Buffer, number]> = [];
    const offsetDelta = Buffer.from(region);
    offsetDelta[3] = 4; // record 0's offset delta: zig-zag 2
    faults.push(['an offset delta out of sequence', offsetDelta, records.length]);
    faults.push(['one record fewer than the header says', region, records.length + 1]);
    faults.push(['one record more than the header says', region, records.length - 1]);
    faults.push(['the last record cut short', region.subarray(0, region.length - 1), records.length]);
    const negative = Buffer.from(region);
    negative[0] = 1; // record 0's length: zig-zag -1
    faults.push(['a negative record length', negative, records.length]);
    const long = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), region]);
    faults.push(['a length prefix over 5 bytes', long, records.length]);
    // Record 1's length takes two bytes; the stream ends after the first of them.
    const secondLengthAt = (region[0]! >> 1) + 1;
    faults.push(['a two-byte length prefix cut by the end', region.subarray(0, secondLengthAt + 1), records.length]);
    faults.push(['the records cut inside a value', region.subarray(0, secondLengthAt + 40), records.length]);
    const overlong = Buffer.from(region);
    overlong[6] = 0x7e; // record 0's value length (zig-zag 2): now 63, past the record's end
    faults.push(['a value longer than its record', overlong, records.length]);
    for (const [name, bytes, count] of faults) {
      const whole = checkWhole(bytes, count);
      expect(whole, name).not.toBeNull();
      for (let cut = 0; cut <= bytes.length; cut++) expect(feed(bytes, count, [cut]), `${name}, cut at ${cut}`).toBe(whole);
      for (let size = 1; size <= 4; size++) {
        const cuts = Array.from({ length: Math.floor(bytes.length / size) }, (_, index) => (index + 1) * size);
        expect(feed(bytes, count, cuts), `${name}, chunks of ${size}`).toBe(whole);
      }
    }
  });

  it('agrees with the whole-run check on randomly damaged records in random chunks', () => {
    const seed = testSeed('batch-validation fuzz');
    const random = streamFor(seed, 'damaged records');
    const at = seedMessage(seed);
    const integer = (bound: number): number => Math.floor(random() * bound);
    let refused = 0;
    for (let round = 0; round < 3000; round++) {
      const count = 1 + integer(4);
      const sample = Array.from({ length: count }, () => ({
        key: random() < 0.3 ? null : randomBytes(integer(20)),
        value: random() < 0.1 ? null : Buffer.alloc(integer(300), 7),
        headers: Array.from({ length: integer(3) }, () => ({ key: 'h'.repeat(integer(4)), value: random() < 0.5 ? null : Buffer.alloc(integer(9), 1) })),
      }));
      const bytes = Buffer.from(recordsRegion(sample));
      for (let edits = integer(3); edits > 0; edits--) bytes[integer(bytes.length)] = integer(256);
      const length = random() < 0.2 ? integer(bytes.length + 1) : bytes.length;
      const damaged = bytes.subarray(0, length);
      const claimed = random() < 0.2 ? count + integer(3) - 1 : count;
      const cuts: number[] = [];
      for (let cut = integer(40); cut < damaged.length; cut += 1 + integer(60)) cuts.push(cut);
      const whole = checkWhole(damaged, claimed);
      if (whole !== null) refused++;
      expect(feed(damaged, claimed, cuts), at(`round ${round}, cuts ${cuts.join(',')}`)).toBe(whole);
    }
    expect(refused, at('the rounds include damaged runs')).toBeGreaterThan(1000);
  });
});

describe('checkCompressedRecords (a gzip batch inflated on the thread pool)', () => {
  it('passes a batch whose records span many chunks, and one with many small records', async () => {
    expect(await checkCompressedRecords(largeGzipBatch(3, 1), 0)).toBeNull();
    const many = Array.from({ length: 50_000 }, (_, index) => ({ key: b(`key-${index % 100}`), value: b(`value ${index}`) }));
    expect(await checkCompressedRecords(buildBatch(many, { timestamp: T0, compression: 'gzip' }), 0)).toBeNull();
  });

  it('checks a record larger than many chunks without holding it', async () => {
    const single = largeGzipBatch(1, 100); // one record with a 100 MiB value: ~400 chunks
    expect(await checkCompressedRecords(single, 0)).toBeNull();
    const claimsTwo = gzipBatch(2, single.subarray(RECORDS_OFFSET));
    expect(await checkCompressedRecords(claimsTwo, 0)).toBe('record 1 runs past the end of the batch');
  });

  it('refuses records that do not agree with the header, and bytes that do not inflate', async () => {
    const region = recordsRegion([{ value: b('a') }, { value: b('b') }]);
    expect(await checkCompressedRecords(gzipBatch(3, gzipSync(region)), 0)).toBe('record 2 runs past the end of the batch');
    expect(await checkCompressedRecords(gzipBatch(1, gzipSync(region)), 0)).toBe('bytes follow the last of its 1 records');
    expect(await checkCompressedRecords(gzipBatch(2, Buffer.from('not gzip at all')), 0)).toMatch(/^its records do not inflate: /);
    expect(await checkCompressedRecords(gzipBatch(2, gzipSync(region).subarray(0, 20)), 0)).toMatch(/^its records do not inflate: /);
  });

  it(`refuses a batch whose records inflate past ${INFLATED_BATCH_BYTES_MAX / MiB} MiB, while the event loop keeps turning`, async () => {
    const bomb = largeGzipBatch(INFLATED_BATCH_BYTES_MAX / MiB + 1, 1);
    expect(bomb.length).toBeLessThan(BATCH_BYTES_MAX / 32); // small on the wire
    const { result: problem, turns } = await countingLoopTurns(() => checkCompressedRecords(bomb, 0));
    expect(problem).toBe(`its records inflate to more than ${INFLATED_BATCH_BYTES_MAX} bytes`);
    // Inflated a chunk at a time on the pool: the loop turned between the chunks (a single
    // synchronous inflate would allow none).
    expect(turns).toBeGreaterThan(100);
  });

  it('refuses with RECORD_TOO_LARGE a record that inflates past max.message.bytes, whole in a chunk or in pieces, and takes one at the limit', async () => {
    const limit = 64 * 1024;
    const tooLargeError = (recordBytes: number): string =>
      `batch 1 has a record of ${recordBytes} bytes once inflated, larger than max.message.bytes ${limit}: every record must fit in max.message.bytes, compressed or not`;
    const small = buildBatch([{ value: b('a') }], { timestamp: T0, compression: 'gzip' });
    const withValue = (valueBytes: number): Buffer => buildBatch([{ value: b('b') }, { value: Buffer.alloc(valueBytes) }], { timestamp: T0, compression: 'gzip' });
    // A record's length: 4 bytes of fields before the value's length, 3 of that, the value, 1 after.
    const atLimit = withValue(limit - 8);
    expect(recordsRegion([{ value: Buffer.alloc(limit - 8) }]).length).toBe(3 + limit); // after a length prefix of 3 bytes
    await validateBatches(Buffer.concat([small, atLimit]), limit);
    for (const valueBytes of [limit - 7, 1_000_000]) {
      // The larger is read in pieces: its length comes in the first chunk, its end 4 chunks on.
      const error = await rejection(validateBatches(Buffer.concat([small, withValue(valueBytes)]), limit));
      expect(error.code).toBe(ErrorCode.RECORD_TOO_LARGE);
      expect(error.message).toBe(tooLargeError(valueBytes + 8));
    }
    // Refused once its length is read, not at its end: a record of 100 MiB whose compressed
    // bytes are cut off halfway is refused for its size, not for bytes that do not inflate.
    const records = largeGzipBatch(1, 100).subarray(RECORDS_OFFSET);
    const cutOff = await rejection(validateBatches(gzipBatch(1, records.subarray(0, records.length >> 1)), MiB));
    expect(cutOff.code).toBe(ErrorCode.RECORD_TOO_LARGE);
    expect(cutOff.message).toMatch(/^batch 0 has a record of \d+ bytes once inflated/);
    // A length no batch could hold is damage (CORRUPT_BATCH), not a large record.
    const prefix = Buffer.alloc(5);
    const damaged = gzipBatch(1, gzipSync(Buffer.concat([prefix.subarray(0, writeVarint(prefix, 0, 200 * MiB)), Buffer.alloc(64)])));
    expect(await rejection(validateBatches(damaged, limit))).toMatchObject({
      code: ErrorCode.CORRUPT_BATCH,
      message: `invalid record batch 0 at byte 0: a record's length ${200 * MiB} is more than a batch's records may inflate to, ${INFLATED_BATCH_BYTES_MAX} bytes`,
    });
    // Small records that inflate to far more than the limit together are taken.
    const many = Array.from({ length: 1_000 }, () => ({ value: Buffer.alloc(1_000) }));
    await validateBatches(buildBatch(many, { timestamp: T0, compression: 'gzip' }), limit);
  });

  it('names the batch in validateBatches\' CORRUPT_BATCH', async () => {
    const good = buildBatch([{ value: b('a') }], { timestamp: T0, compression: 'gzip' });
    const bad = gzipBatch(3, gzipSync(recordsRegion([{ value: b('a') }])));
    const error = await rejection(validateBatches(Buffer.concat([good, bad]), BATCH_BYTES_MAX));
    expect(error.code).toBe(ErrorCode.CORRUPT_BATCH);
    expect(error.message).toBe(`invalid record batch 1 at byte ${good.length}: record 1 runs past the end of the batch`);
  });
});

describe('batch attributes a producer may not set', () => {
  it('refuses a control batch and a transactional one: Strata has no transactions, and Kafka readers would wait on one for a marker that never comes', async () => {
    const transactional = buildBatch([{ value: b('a') }], { timestamp: T0, producerId: 7, producerEpoch: 0, baseSequence: 0, transactional: true });
    const transactionalError = await rejection(validateBatches(transactional, BATCH_BYTES_MAX));
    expect([transactionalError.code, transactionalError.message]).toEqual([ErrorCode.CORRUPT_BATCH, 'invalid record batch 0 at byte 0: transactional batches are not accepted: Strata has no transactions (clear bit 4 of the attributes)']);
    const plain = buildBatch([{ value: b('a') }], { timestamp: T0 });
    const control = withMaxTimestamp(plain, T0, 0x20);
    const controlError = await rejection(validateBatches(control, BATCH_BYTES_MAX));
    expect([controlError.code, controlError.message]).toEqual([ErrorCode.CORRUPT_BATCH, 'invalid record batch 0 at byte 0: control batches are not accepted from producers']);
    await validateBatches(plain, BATCH_BYTES_MAX);
  });
});

/** `batch` with its header's max timestamp (and attributes, when given) changed, resealed. */
function withMaxTimestamp(batch: Buffer, maxTimestamp: number, attributes?: number): Buffer {
  const changed = Buffer.from(batch);
  writeInt64(changed, MAX_TIMESTAMP_OFFSET, maxTimestamp);
  if (attributes !== undefined) changed.writeInt16BE(attributes, ATTRIBUTES_OFFSET);
  changed.writeUInt32BE(crc32c(changed.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
  return changed;
}

describe('max timestamps (they place a batch in the time index and age it for retention)', () => {
  const stamped: RecordInput[] = [{ value: b('a'), timestamp: T0 }, { value: b('b'), timestamp: T0 + 500 }, { value: b('c'), timestamp: T0 + 200 }];

  it("refuses a batch whose max timestamp is not its records' largest, compressed or not", async () => {
    for (const compression of ['none', 'gzip'] as const) {
      const batch = buildBatch(stamped, { compression });
      await validateBatches(batch, BATCH_BYTES_MAX);
      for (const wrong of [T0 + 100, T0 + 900]) {
        const error = await rejection(validateBatches(withMaxTimestamp(batch, wrong), BATCH_BYTES_MAX));
        expect(error.code).toBe(ErrorCode.CORRUPT_BATCH);
        expect(error.message).toBe(`invalid record batch 0 at byte 0: max timestamp ${wrong} is not the largest of its records' timestamps, ${T0 + 500}`);
      }
    }
  });

  it('finds the largest timestamp in records that span inflated chunks', async () => {
    // Each value is larger than a chunk of inflated records: every record is read in pieces.
    const value = Buffer.alloc(300 * 1024, 'v');
    const large: RecordInput[] = [{ value, timestamp: T0 }, { value, timestamp: T0 + 1_000 }, { value, timestamp: T0 + 5 }];
    const batch = buildBatch(large, { compression: 'gzip' });
    expect(await checkCompressedRecords(batch, 0)).toBeNull();
    expect(await checkCompressedRecords(withMaxTimestamp(batch, T0 + 5), 0)).toBe(`max timestamp ${T0 + 5} is not the largest of its records' timestamps, ${T0 + 1_000}`);
  });

  it('refuses a negative max timestamp: records without timestamps', async () => {
    const error = await rejection(validateBatches(buildBatch([{ value: b('a') }], { timestamp: -1 }), BATCH_BYTES_MAX));
    expect(error.code).toBe(ErrorCode.CORRUPT_BATCH);
    expect(error.message).toBe('invalid record batch 0 at byte 0: max timestamp -1 is negative: records need timestamps, in milliseconds since the epoch');
  });

  it('refuses timestamps in nanoseconds (past 2^53), naming the field and its value', async () => {
    const nanoseconds = BigInt(T0) * 1_000_000n;
    const batch = Buffer.from(buildBatch([{ value: b('a'), timestamp: T0 }]));
    batch.writeBigInt64BE(nanoseconds, BASE_TIMESTAMP_OFFSET);
    batch.writeBigInt64BE(nanoseconds, MAX_TIMESTAMP_OFFSET);
    batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    const error = await rejection(validateBatches(batch, BATCH_BYTES_MAX));
    expect(error.code).toBe(ErrorCode.CORRUPT_BATCH);
    expect(error.message).toBe(`invalid record batch 0 at byte 0: base timestamp ${nanoseconds} is outside ±2^53: timestamps are milliseconds since the epoch (not nanoseconds)`);
    batch.writeBigInt64BE(BigInt(T0), BASE_TIMESTAMP_OFFSET); // the max alone
    batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    expect((await rejection(validateBatches(batch, BATCH_BYTES_MAX))).message).toBe(
      `invalid record batch 0 at byte 0: max timestamp ${nanoseconds} is outside ±2^53: timestamps are milliseconds since the epoch (not nanoseconds)`,
    );
  });

  it('refuses a record timestamp below 0 that the max timestamp does not show, compressed or not', async () => {
    for (const compression of ['none', 'gzip'] as const) {
      // Records at 0 and 10 ms, their base then moved to -5: they would be at -5 and 5.
      const batch = Buffer.from(buildBatch([{ value: b('a'), timestamp: 0 }, { value: b('b'), timestamp: 10 }], { compression }));
      writeInt64(batch, BASE_TIMESTAMP_OFFSET, -5);
      const moved = withMaxTimestamp(batch, 5);
      const error = await rejection(validateBatches(moved, BATCH_BYTES_MAX));
      expect(error.code).toBe(ErrorCode.CORRUPT_BATCH);
      expect(error.message).toBe("invalid record batch 0 at byte 0: a record's timestamp -5 is negative: records need timestamps, in milliseconds since the epoch");
    }
  });

  it("takes a log-append-time batch's max timestamp as it is (its records' own are not used)", async () => {
    const batch = buildBatch(stamped);
    await validateBatches(withMaxTimestamp(batch, T0 + 999, TIMESTAMP_TYPE_MASK), BATCH_BYTES_MAX);
  });
});

describe('firstRecordKey of a compressed batch (inflated only as far as the key)', () => {
  it('finds a key that lies past the first compressed bytes read', () => {
    const key = randomBytes(300_000); // incompressible: far more than the first 512 compressed bytes hold
    const batch = buildBatch([{ key, value: b('v') }, { key: b('second'), value: null }], { timestamp: T0, compression: 'gzip' });
    expect(firstRecordKey(batch)?.equals(key)).toBe(true);
  });

  it('finds a key within 1 MiB of inflated records even when the records after it inflate to megabytes', () => {
    for (const [keyBytes, valueMiB] of [[2_000, 4], [300_000, 1]] as const) {
      const key = randomBytes(keyBytes);
      const batch = buildBatch([{ key, value: Buffer.alloc(valueMiB * MiB) }], { timestamp: T0, compression: 'gzip' });
      expect(firstRecordKey(batch)?.equals(key), `${keyBytes} B key, ${valueMiB} MiB value`).toBe(true);
    }
  });

  it('refuses with INVALID_ARGUMENT a first key that runs past 1 MiB of inflated records (a large one that compresses well)', () => {
    const fields = Buffer.alloc(32);
    let end = 0;
    fields[end++] = 0; // attributes
    end = writeVarint(fields, end, 0); // timestamp delta
    end = writeVarint(fields, end, 0); // offset delta
    end = writeVarint(fields, end, 3 * MiB); // key length
    const tail = Buffer.from([1, 0]); // null value (zig-zag -1), no headers
    const prefix = Buffer.alloc(8);
    const prefixEnd = writeVarint(prefix, 0, end + 3 * MiB + tail.length);
    const members = [gzipSync(Buffer.concat([prefix.subarray(0, prefixEnd), fields.subarray(0, end)])), zeroMember, zeroMember, zeroMember, gzipSync(tail)];
    expect(() => firstRecordKey(gzipBatch(1, Buffer.concat(members)))).toThrow(expect.objectContaining({
      code: ErrorCode.INVALID_ARGUMENT,
      message: `the first key of the gzip batch is not within its first ${MiB} bytes of inflated records, as far as the broker inflates to choose a partition; send the batch with its partition`,
    }));
  });

  it('reads the key of a batch that inflates past the bound without inflating it all', () => {
    const bomb = largeGzipBatch(INFLATED_BATCH_BYTES_MAX / MiB + 1, 1);
    expect(firstRecordKey(bomb)).toBeNull(); // its records have null keys
    // A broken gzip member at the very end: only a read that stops early never reaches it.
    const brokenTail = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff, 0xde, 0xad, 0xbe, 0xef]);
    const withBrokenTail = gzipBatch(1, Buffer.concat([bomb.subarray(RECORDS_OFFSET), brokenTail]));
    expect(() => gunzipSync(withBrokenTail.subarray(RECORDS_OFFSET))).toThrow();
    expect(firstRecordKey(withBrokenTail)).toBeNull();
  });
});

describe('a partition log appending compressed batches', () => {
  const directories: string[] = [];
  const logs: PartitionLog[] = [];
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close();
    for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
  });

  async function openLog(): Promise<PartitionLog> {
    const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-batch-validation-'));
    directories.push(directory);
    const log = await PartitionLog.open({ directory, name: 'test-0', config: { maxMessageBytes: BATCH_BYTES_MAX } });
    logs.push(log);
    return log;
  }

  it('gives offsets in call order to appends called while a large compressed batch is checked', async () => {
    const log = await openLog();
    const large = largeGzipBatch(16, 1); // 16 MiB inflated: checked over many pool round trips
    const plain = (text: string): Buffer => buildBatch([{ value: b(text) }], { timestamp: T0 });
    const gzip = (text: string): Buffer => buildBatch([{ value: b(text) }], { timestamp: T0, compression: 'gzip' });
    const corrupt = gzipBatch(2, gzipSync(recordsRegion([{ value: b('lone') }])));
    const results = await Promise.allSettled([
      log.append(large),
      log.append(plain('after the large one')),
      log.append(corrupt),
      log.append(gzip('compressed, after the corrupt one')),
      log.append(plain('last')),
    ]);
    const offsets = results.map((result) => (result.status === 'fulfilled' ? result.value.baseOffset : (result.reason as StrataError).code));
    expect(offsets).toEqual([0, 16, ErrorCode.CORRUPT_BATCH, 17, 18]);
    const read = await log.read(16, 1 << 20);
    expect(decodeBatches(read.batches).map((record) => record.value?.toString())).toEqual(['after the large one', 'compressed, after the corrupt one', 'last']);
  });

  it('keeps an idempotent producer\'s sequence order across a compressed check; answers waitFor queued after the check of a plain one', async () => {
    const log = await openLog();
    const producer = { producerId: 7, producerEpoch: 0 };
    const first = log.append(largeGzipBatch(16, 1, { ...producer, baseSequence: 0 }));
    const second = log.append(buildBatch([{ value: b('sequence 16') }], { timestamp: T0, ...producer, baseSequence: 16 }));
    const third = log.append(largeGzipBatch(16, 1), { waitFor: 'queued' });
    expect((await first).baseOffset).toBe(0);
    expect((await second).baseOffset).toBe(16);
    expect((await third).baseOffset).toBe(-1); // queued: offsets not known yet
    // An idempotent batch is not answered before it is written: a refused sequence could not be reported.
    expect((await rejection(log.append(buildBatch([{ value: b('sequence 17') }], { timestamp: T0, ...producer, baseSequence: 17 }), { waitFor: 'queued' }))).code).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it('finds an offset by timestamp inside a compressed batch', async () => {
    const log = await openLog();
    const records = (first: number): RecordInput[] => Array.from({ length: 5 }, (_, index) => ({ value: b(`at ${first + index}`), timestamp: T0 + (first + index) * 10 }));
    await log.append(buildBatch(records(0), { timestamp: T0, compression: 'gzip' }));
    await log.append(buildBatch(records(5), { timestamp: T0, compression: 'gzip' }));
    expect(await log.offsetForTimestamp(T0 + 62)).toBe(7);
    expect(await log.offsetForTimestamp(T0 + 20)).toBe(2);
    expect(await log.offsetForTimestamp(T0 + 91)).toBeNull();
  });

  it('finishes, on close, an append called before it that is still in its check', async () => {
    const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-batch-validation-'));
    directories.push(directory);
    const log = await PartitionLog.open({ directory, name: 'test-0', config: { maxMessageBytes: BATCH_BYTES_MAX } });
    const appended = log.append(largeGzipBatch(16, 1));
    const closed = log.close();
    const refused = await rejection(log.append(buildBatch([{ value: b('after close') }], { timestamp: T0 })));
    expect(refused.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect((await appended).lastOffset).toBe(15);
    await closed;
    const reopened = await PartitionLog.open({ directory, name: 'test-0', config: { maxMessageBytes: BATCH_BYTES_MAX } });
    logs.push(reopened);
    expect(reopened.logEndOffset).toBe(16);
  });
});
