// Goal: the records of a gzip batch are visited as they inflate, chunk by chunk, exactly as
// forEachRecord visits them, no further than the visitor wants, and damage is refused with
// CORRUPT_BATCH; firstRecordFrom finds a record by offset and time that way; method: gzip batches built by the codec (and payloads gzipped by hand), walked
// whole, from an offset and stopped early, compared with forEachRecord's decoding.
import { gzipSync } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCode } from '../../src/common/errors.js';
import { firstRecordFrom, forEachInflatedRecord } from '../../src/storage/inflated-records.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { ATTRIBUTES_OFFSET, BATCH_LENGTH_OFFSET, CRC_OFFSET, LOG_OVERHEAD, RECORDS_OFFSET, decodeRecords } from '../../src/storage/record-batch.js';

const T0 = 1_700_000_000_000;

/** 20,000 records of about 100 bytes, at offsets 1,000 on: about 2 MB inflated, eight chunks and more. */
const records = Array.from({ length: 20_000 }, (_, index) => ({ key: index % 3 === 0 ? null : Buffer.from(`k${index}`), value: Buffer.from(`value ${index} `.padEnd(100, '.')), timestamp: T0 + index }));
const gzipBatch = buildBatch(records, { compression: 'gzip', baseOffset: 1_000 });

/** A gzip batch of `count` records whose records region inflates to `payload`. */
function gzipBatchOf(count: number, payload: Buffer): Buffer {
  const template = buildBatch(Array.from({ length: count }, () => ({ value: null })), { timestamp: T0, compression: 'gzip' });
  const batch = Buffer.concat([template.subarray(0, RECORDS_OFFSET), gzipSync(payload)]);
  batch.writeInt32BE(batch.length - LOG_OVERHEAD, BATCH_LENGTH_OFFSET);
  batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
  return batch;
}

/** The records region of an uncompressed batch of `values`. */
function recordsRegion(values: string[]): Buffer {
  return buildBatch(values.map((value) => ({ value: Buffer.from(value) })), { timestamp: T0 }).subarray(RECORDS_OFFSET);
}

async function visited(batch: Buffer, fromOffset: number, stopAfter = Number.POSITIVE_INFINITY): Promise<{ offset: number; timestamp: number; key: string | null; value: string | null }[]> {
  const seen: { offset: number; timestamp: number; key: string | null; value: string | null }[] = [];
  await forEachInflatedRecord(batch, 0, fromOffset, (offset, timestamp, key, value) => {
    seen.push({ offset, timestamp, key: key?.toString() ?? null, value: value?.toString() ?? null });
    return seen.length < stopAfter;
  });
  return seen;
}

describe('forEachInflatedRecord', () => {
  it('visits what forEachRecord decodes, records cut by the chunks included, from any offset', async () => {
    const decoded = decodeRecords(gzipBatch).map(({ offset, timestamp, key, value }) => ({ offset, timestamp, key: key?.toString() ?? null, value: value?.toString() ?? null }));
    expect(await visited(gzipBatch, 0)).toEqual(decoded);
    expect(await visited(gzipBatch, 13_017)).toEqual(decoded.slice(12_017));
  });

  it('visits records larger than a chunk, whole, among small ones', async () => {
    const large = Buffer.alloc(1024 * 1024 + 17);
    for (let index = 0; index < large.length; index++) large[index] = index % 251;
    const batch = buildBatch([{ value: Buffer.from('small') }, { value: large }, { value: Buffer.from('after') }, { value: Buffer.alloc(300_000, 7) }], { compression: 'gzip', timestamp: T0 });
    const seen: Buffer[] = [];
    await forEachInflatedRecord(batch, 0, 0, (_offset, _timestamp, _key, value) => {
      seen.push(Buffer.from(value!));
    });
    expect(seen.map((value) => value.length)).toEqual([5, large.length, 5, 300_000]);
    expect(seen[1]!.equals(large)).toBe(true);
    expect(seen[2]!.toString()).toBe('after');
  });

  it('joins the pieces of a record larger than a chunk once, not once per chunk', async () => {
    const large = Buffer.alloc(8 * 1024 * 1024, 3); // 32 chunks
    const batch = buildBatch([{ value: large }], { compression: 'gzip', timestamp: T0 });
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      let length = 0;
      await forEachInflatedRecord(batch, 0, 0, (_offset, _timestamp, _key, value) => {
        length = value!.length;
      });
      expect(length).toBe(large.length);
      const joined = concat.mock.results.reduce((sum, result) => sum + (result.value as Buffer).length, 0);
      expect(joined).toBeLessThan(2 * large.length);
    } finally {
      concat.mockRestore();
    }
  });

  it('stops inflating at the record the visitor stops at: damage further in the stream is never reached', async () => {
    const damaged = Buffer.from(gzipBatch);
    damaged.fill(0x55, damaged.length - 200, damaged.length - 150); // in the last deflate block
    damaged.writeUInt32BE(crc32c(damaged.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    expect(await visited(damaged, 2_000, 3)).toEqual([2_000, 2_001, 2_002].map((offset) => expect.objectContaining({ offset })));
    await expect(visited(damaged, 0)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_BATCH, message: expect.stringMatching(/^batch at offset \d+ does not decode: its records do not inflate: /) });
  });

  it('refuses a record that does not parse, after visiting those before it', async () => {
    const region = Buffer.from(recordsRegion(['a', 'b', 'c']));
    region[region.length - 1] = 2; // the last record's header count: 1 header, in no bytes
    const seen: number[] = [];
    const walk = forEachInflatedRecord(gzipBatchOf(3, region), 0, 0, (offset) => {
      seen.push(offset);
    });
    await expect(walk).rejects.toMatchObject({ code: ErrorCode.CORRUPT_BATCH, message: expect.stringMatching(/does not decode/) });
    expect(seen).toEqual([0, 1]);
  });

  it('refuses bytes after the last record, and records that end before the count of the header', async () => {
    const region = recordsRegion(['a', 'b']);
    await expect(visited(gzipBatchOf(2, Buffer.concat([region, Buffer.from([0, 0, 0])])), 0)).rejects.toMatchObject({
      code: ErrorCode.CORRUPT_BATCH,
      message: expect.stringMatching(/3 bytes follow its last record$/),
    });
    await expect(visited(gzipBatchOf(3, region), 0)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_BATCH, message: expect.stringMatching(/its records end after 2 of the 3 its header counts$/) });
  });
});

describe('firstRecordFrom', () => {
  /** Ten records v0..v9, 10 ms apart, for offsets 10..19. */
  const tenRecords = Array.from({ length: 10 }, (_, index) => ({ value: Buffer.from(`v${index}`), timestamp: T0 + 10 * index }));

  it('answers from the records before a damaged one it stops short of, by offset and by time', async () => {
    const batch = buildBatch(tenRecords, { baseOffset: 10 });
    batch[batch.length - 1] = 2; // the last record's header count: 1 header, in no bytes
    expect(() => decodeRecords(batch, 0)).toThrow(/does not decode/);
    expect(await firstRecordFrom(batch, 13)).toEqual({ offset: 13, timestamp: T0 + 30 });
    expect(await firstRecordFrom(batch, 0, T0 + 55)).toEqual({ offset: 16, timestamp: T0 + 60 });
    expect(await firstRecordFrom(batch, 17, T0 + 20)).toEqual({ offset: 17, timestamp: T0 + 70 });
  });

  it('skips batches by their header, inflates a gzip batch it reads, and answers null past the end', async () => {
    const log = Buffer.concat([
      buildBatch([{ value: Buffer.from('a'), timestamp: T0 }, { value: Buffer.from('b'), timestamp: T0 + 5 }], { baseOffset: 0 }),
      buildBatch(tenRecords, { baseOffset: 10, compression: 'gzip' }),
    ]);
    expect(await firstRecordFrom(log, 0, T0 + 1)).toEqual({ offset: 1, timestamp: T0 + 5 });
    expect(await firstRecordFrom(log, 2, T0 + 40)).toEqual({ offset: 14, timestamp: T0 + 40 });
    expect(await firstRecordFrom(log, 1, T0 + 6)).toEqual({ offset: 11, timestamp: T0 + 10 });
    expect(await firstRecordFrom(log, 19)).toEqual({ offset: 19, timestamp: T0 + 90 });
    expect(await firstRecordFrom(log, 20)).toBeNull();
    expect(await firstRecordFrom(log, 0, T0 + 91)).toBeNull();
  });
});
