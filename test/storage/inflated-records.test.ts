// Goal: the records of a gzip batch are visited as they inflate, chunk by chunk, exactly as
// forEachRecord visits them, no further than the visitor wants, and damage is refused with
// CORRUPT_BATCH; a read stopped early goes on where it stopped without inflating the batch
// again, and stopped inflations are kept within bounds; firstRecordFrom finds a record by offset
// and time that way; method: gzip batches built by the codec (and payloads gzipped by hand),
// walked whole, from an offset and stopped early, compared with forEachRecord's decoding.
import { gunzipSync, gzipSync } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCode } from '../../src/common/errors.js';
import { BatchInflation, StoppedInflations, firstRecordFrom, forEachInflatedRecord } from '../../src/storage/inflated-records.js';
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

describe('BatchInflation', () => {
  const decoded = decodeRecords(gzipBatch).map(({ offset, value }) => ({ offset, value: value!.toString() }));
  /** Reads from `fromOffset`, stopping after `count` records; the records read, and whether it stopped. */
  const readSome = async (inflation: BatchInflation, fromOffset: number, count: number) => {
    const seen: { offset: number; value: string }[] = [];
    const stopped = await inflation.read(fromOffset, (offset, _timestamp, _key, value) => {
      seen.push({ offset, value: value!.toString() });
      return seen.length < count;
    });
    return { seen, stopped };
  };

  it('goes on where a stopped read left it, and inflates the batch once over all the reads', async () => {
    const inflation = new BatchInflation(gzipBatch);
    const seen: { offset: number; value: string }[] = [];
    let reads = 0;
    for (;;) {
      const read = await readSome(inflation, inflation.nextOffset === 0 ? 0 : inflation.nextOffset, 1_234);
      seen.push(...read.seen);
      reads++;
      if (!read.stopped) break;
    }
    expect(seen).toEqual(decoded);
    expect(reads).toBe(Math.ceil(decoded.length / 1_234));
    const inflatedSize = gunzipSync(gzipBatch.subarray(RECORDS_OFFSET)).length;
    expect(inflation.inflatedBytes).toBe(inflatedSize); // each byte once, not once per read
    expect(await readSome(inflation, inflation.nextOffset, 10)).toEqual({ seen: [], stopped: false }); // at the end
    inflation.close();
  });

  it('skips ahead from where it stopped, and refuses to go back over records it has passed', async () => {
    const inflation = new BatchInflation(gzipBatch);
    expect((await readSome(inflation, 5_000, 3)).seen.map((record) => record.offset)).toEqual([5_000, 5_001, 5_002]);
    expect(inflation.nextOffset).toBe(5_003);
    expect((await readSome(inflation, 9_000, 2)).seen).toEqual(decoded.slice(8_000, 8_002));
    await expect(readSome(inflation, 9_001, 1)).rejects.toThrow('offset 9001 is behind this inflation, which has passed offset 9001');
    expect((await readSome(inflation, 9_002, 1)).seen).toEqual(decoded.slice(8_002, 8_003));
    inflation.close();
  });

  it('refuses every read after damage, with CORRUPT_BATCH', async () => {
    const damaged = Buffer.from(gzipBatch);
    damaged.fill(0x55, damaged.length - 200, damaged.length - 150); // in the last deflate block
    const inflation = new BatchInflation(damaged);
    expect((await readSome(inflation, 0, 2)).stopped).toBe(true);
    const failure = { code: ErrorCode.CORRUPT_BATCH, message: expect.stringMatching(/does not decode: its records do not inflate: /) };
    await expect(readSome(inflation, inflation.nextOffset, Number.POSITIVE_INFINITY)).rejects.toMatchObject(failure);
    await expect(readSome(inflation, 20_000, 1)).rejects.toMatchObject(failure);
  });
});

describe('StoppedInflations', () => {
  const stopAfter = async (inflation: BatchInflation, fromOffset: number, count: number): Promise<void> => {
    let seen = 0;
    expect(await inflation.read(fromOffset, () => ++seen < count)).toBe(true);
  };

  /** Inflations of gzipBatch stopped after one record from each offset, kept in turn (`between` after each). */
  const keepStopped = async (inflations: StoppedInflations, fromOffsets: readonly number[], between = () => {}): Promise<BatchInflation[]> => {
    const kept: BatchInflation[] = [];
    for (const fromOffset of fromOffsets) {
      const inflation = inflations.take(gzipBatch, fromOffset);
      await stopAfter(inflation, fromOffset, 1);
      inflations.keep(inflation);
      kept.push(inflation);
      between();
    }
    return kept;
  };

  it('gives a stopped inflation back to the read from its next offset of the same bytes only', async () => {
    const inflations = new StoppedInflations(4, 30_000);
    const first = inflations.take(gzipBatch, 1_000);
    expect(first.batch.equals(gzipBatch)).toBe(true);
    expect(first.batch.buffer).not.toBe(gzipBatch.buffer); // a copy: keeping it holds no read buffer
    await stopAfter(first, 1_000, 500);
    inflations.keep(first);
    expect(inflations.take(gzipBatch, 1_499)).not.toBe(first); // not where it stopped
    expect(inflations.take(buildBatch(records.slice(0, 10), { compression: 'gzip', baseOffset: 1_000 }), 1_500)).not.toBe(first);
    const altered = Buffer.from(gzipBatch);
    altered[altered.length - 1] ^= 1; // same offset, CRC and size, other bytes
    expect(inflations.take(altered, 1_500)).not.toBe(first);
    const again = inflations.take(Buffer.from(gzipBatch), 1_500);
    expect(again).toBe(first);
    expect(inflations.size).toBe(0); // taken out: no other read gets it meanwhile
    again.close();
  });

  it('keeps at most its capacity, dropping the least recently kept, and drops those idle too long', async () => {
    let now = 0;
    const inflations = new StoppedInflations(2, 1_000, () => now);
    const kept = await keepStopped(inflations, [1_000, 2_000, 3_000], () => (now += 400));
    expect(inflations.size).toBe(2);
    await expect(kept[0]!.read(1_001, () => true)).rejects.toThrow('the inflation of this batch was closed'); // when dropped
    expect(inflations.take(gzipBatch, 1_001)).not.toBe(kept[0]);
    now = 1_500; // the one kept at 400 has been idle 1,100 ms, the one kept at 800 700 ms
    inflations.dropIdle();
    expect(inflations.size).toBe(1);
    expect(inflations.take(gzipBatch, 3_001)).toBe(kept[2]);
    kept[2]!.close();
  });

  it('keeps none that has passed its last record, and keeps within its byte budget', async () => {
    const short = buildBatch(records.slice(0, 10), { compression: 'gzip', baseOffset: 0 });
    const probe = new StoppedInflations();
    const done = probe.take(short, 0);
    await stopAfter(done, 0, 10); // stopped on the last record: no read goes on from there
    probe.keep(done);
    expect(probe.size).toBe(0);
    await expect(done.read(10, () => true)).rejects.toThrow('the inflation of this batch was closed');

    const sized = probe.take(gzipBatch, 1_000);
    await stopAfter(sized, 1_000, 1);
    const held = sized.heldBytes;
    expect(held).toBeGreaterThan(gzipBatch.length);
    sized.close();
    const inflations = new StoppedInflations(8, 30_000, () => 0, Math.floor(2.5 * held));
    const kept = await keepStopped(inflations, [1_000, 2_000, 3_000]);
    expect(inflations.size).toBe(2); // the third went over the budget: the oldest went
    expect(inflations.bytes).toBeLessThanOrEqual(Math.floor(2.5 * held));
    expect(inflations.take(gzipBatch, 1_001)).not.toBe(kept[0]);
    const tight = new StoppedInflations(8, 30_000, () => 0, held - 1);
    const large = tight.take(gzipBatch, 1_000);
    await stopAfter(large, 1_000, 1);
    tight.keep(large); // over the budget alone: closed, not kept
    expect(tight.size).toBe(0);
    for (const inflation of kept) inflation.close();
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
