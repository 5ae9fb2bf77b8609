// Goal: show that the tail cache only ever answers with the bytes the file holds at those
// positions, stays within its bound, evicts oldest first across segments, and that a partition
// log reading through it (buffered and direct writes, rolls, retention, a failed write) returns
// exactly what a log without it returns; method: a seeded random model of files and writes for
// the cache alone, and real partition logs in temp directories compared read for read.
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import type { LogConfig } from '../../src/storage/log-config.js';
import { PartitionLog, type PartitionLogOptions } from '../../src/storage/partition-log.js';
import { decodeBatches } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { SegmentTail, TailCache } from '../../src/storage/tail-cache.js';
import { mulberry32 } from '../helpers/seeded-random.js';
import { DIRECT_WRITES_WORK, TestFileSystem } from '../helpers/test-file-system.js';

function bytesOf(length: number, next: () => number): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  for (let index = 0; index < length; index++) buffer[index] = Math.floor(next() * 256);
  return buffer;
}

function cachedBytes(tail: SegmentTail, position: number, length: number): Buffer {
  const target = Buffer.alloc(length);
  tail.readInto(position, length, target, 0);
  return target;
}

describe('TailCache', () => {
  // Tiny rings make chunks end exactly where older ones start, and wrap on nearly every write.
  it.each([
    { seed: 20261121, ringBytes: 64 * 1024, smallMax: 3000, bigMin: 16 * 1024, bigSpan: 8 * 1024 },
    { seed: 1, ringBytes: 64, smallMax: 20, bigMin: 16, bigSpan: 8 },
    { seed: 2, ringBytes: 100, smallMax: 30, bigMin: 25, bigSpan: 10 },
    { seed: 3, ringBytes: 203, smallMax: 60, bigMin: 50, bigSpan: 30 },
    { seed: 4, ringBytes: 4096, smallMax: 1200, bigMin: 1024, bigSpan: 2048 },
  ])('answers every covered range with the bytes written there, within its bound: 3,000 random writes into a ring of $ringBytes bytes', ({ seed, ringBytes, smallMax, bigMin, bigSpan }) => {
    const next = mulberry32(seed);
    const cache = new TailCache(ringBytes);
    // Four segments' files as the model: what was written at each position.
    const files = Array.from({ length: 4 }, () => ({ tail: cache.tail(), bytes: Buffer.alloc(0) }));
    for (let step = 0; step < 3000; step++) {
      const file = files[Math.floor(next() * files.length)]!;
      const action = next();
      if (action < 0.02) {
        file.tail.clear();
      } else if (action < 0.04) {
        // The file is cut back (recovery) and written on from there: the tail must not serve
        // anything from past the cut.
        file.tail.clear();
        file.bytes = file.bytes.subarray(0, Math.floor(next() * file.bytes.length));
      } else {
        // Some writes are larger than a quarter of the ring: only their end is cached.
        const size = next() < 0.05 ? bigMin + Math.floor(next() * bigSpan) : 1 + Math.floor(next() * smallMax);
        const parts = [];
        for (let left = size; left > 0; ) {
          const part = Math.min(left, 1 + Math.floor(next() * Math.min(1000, size)));
          parts.push(bytesOf(part, next));
          left -= part;
        }
        const position = file.bytes.length;
        file.bytes = Buffer.concat([file.bytes, ...parts]);
        file.tail.written(position, parts, size);
        // The newest bytes of a write are always cached, up to a quarter of the ring.
        expect(file.tail.end).toBe(file.bytes.length);
        expect(file.tail.covers(file.bytes.length - Math.min(size, cache.chunkBytesMax), Math.min(size, cache.chunkBytesMax))).toBe(true);
      }
      expect(cache.bytes).toBeLessThanOrEqual(cache.bytesMax);
      let held = 0;
      for (const { tail, bytes } of files) {
        expect(tail.start).toBeLessThanOrEqual(tail.end);
        if (tail.start === tail.end) continue;
        expect(tail.end).toBeLessThanOrEqual(bytes.length);
        held += tail.end - tail.start;
        expect(cachedBytes(tail, tail.start, tail.end - tail.start).equals(bytes.subarray(tail.start, tail.end))).toBe(true);
        const from = tail.start + Math.floor(next() * (tail.end - tail.start));
        const length = Math.floor(next() * (tail.end - from));
        expect(cachedBytes(tail, from, length).equals(bytes.subarray(from, from + length))).toBe(true);
      }
      expect(cache.bytes).toBe(held);
    }
  });

  it('keeps the newest writes: the oldest chunks go first, whichever segment they belong to', () => {
    const cache = new TailCache(4 * 1024);
    const first = cache.tail();
    const second = cache.tail();
    first.written(0, [Buffer.alloc(1000, 1)], 1000);
    second.written(0, [Buffer.alloc(1000, 2)], 1000);
    first.written(1000, [Buffer.alloc(1000, 3)], 1000);
    second.written(1000, [Buffer.alloc(1000, 4)], 1000);
    expect(cache.bytes).toBe(4000);
    // No room at the end of the ring: the new chunk goes to its start, over `first`'s oldest.
    second.written(2000, [Buffer.alloc(1000, 5)], 1000);
    expect({ start: first.start, end: first.end }).toEqual({ start: 1000, end: 2000 });
    expect({ start: second.start, end: second.end }).toEqual({ start: 0, end: 3000 });
    expect(cachedBytes(first, 1000, 1000).equals(Buffer.alloc(1000, 3))).toBe(true);
    expect(cachedBytes(second, 0, 3000).equals(Buffer.concat([Buffer.alloc(1000, 2), Buffer.alloc(1000, 4), Buffer.alloc(1000, 5)]))).toBe(true);
    expect(cache.bytes).toBe(4000);
  });

  it('keeps only the last quarter of its memory of a larger write, the part tailing readers want', () => {
    const cache = new TailCache(4 * 1024);
    const tail = cache.tail();
    tail.written(0, [Buffer.alloc(500, 1)], 500);
    const large = [Buffer.alloc(25, 2), Buffer.alloc(1000, 3)];
    tail.written(500, large, 1025);
    expect({ start: tail.start, end: tail.end, bytes: cache.bytes }).toEqual({ start: 501, end: 1525, bytes: 1024 });
    expect(cachedBytes(tail, 501, 1024).equals(Buffer.concat(large).subarray(1))).toBe(true);
    expect(tail.covers(500, 1)).toBe(false);
    tail.written(1525, [Buffer.alloc(10, 4)], 10);
    expect(tail.covers(501, 1034)).toBe(true);
  });

  it('caches nothing with a size of 0, and refuses a negative size', () => {
    const cache = new TailCache(0);
    const tail = cache.tail();
    tail.written(0, [Buffer.alloc(100)], 100);
    expect(tail.covers(0, 1)).toBe(false);
    expect(cache.bytes).toBe(0);
    expect(() => new TailCache(-1)).toThrow(/whole number of bytes from 0 to/);
  });

  it.each([1, 3])('caches nothing with a size of %i, too small for any chunk, and keeps no record of the writes', (bytesMax) => {
    const cache = new TailCache(bytesMax);
    const tail = cache.tail();
    for (let write = 0; write < 100; write++) tail.written(write * 10, [Buffer.alloc(10)], 10);
    expect({ chunks: cache.chunkCount, bytes: cache.bytes, covers: tail.covers(990, 1) }).toEqual({ chunks: 0, bytes: 0, covers: false });
  });

  it('refuses to read a range it does not hold instead of answering with other bytes', () => {
    const tail = new TailCache(4096).tail();
    tail.written(100, [Buffer.alloc(50, 7)], 50);
    expect(() => cachedBytes(tail, 90, 20)).toThrow(RangeError);
    expect(() => cachedBytes(tail, 140, 20)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------------
// A partition log reading through the cache.

const directories: string[] = [];
const openLogs: PartitionLog[] = [];

afterEach(async () => {
  for (const log of openLogs.splice(0)) await log.close().catch(() => undefined);
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

async function openLog(options: Partial<PartitionLogOptions>, config: Partial<LogConfig>): Promise<PartitionLog> {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-tail-cache-'));
  directories.push(directory);
  const log = await PartitionLog.open({ directory, name: 'tail-0', config, ...options });
  openLogs.push(log);
  return log;
}

function batchOf(first: number, count: number, size: number): Buffer {
  const records = Array.from({ length: count }, (_, index) => ({ key: Buffer.from(`k${first + index}`), value: Buffer.alloc(size, (first + index) & 0xff) }));
  return buildBatch(records, { timestamp: 1_700_000_000_000 });
}

/** Every read of `log` from each offset, as [offset, bytes] pairs. */
async function readEveryOffset(log: PartitionLog, maxBytes: number): Promise<string[]> {
  const reads: string[] = [];
  for (let offset = log.logStartOffset; offset < log.highWatermark; offset++) {
    const { batches } = await log.read(offset, maxBytes);
    reads.push(`${offset}:${batches.toString('base64')}`);
  }
  return reads;
}

describe('PartitionLog with a tail cache', () => {
  const SMALL: Partial<LogConfig> = { segmentBytes: 32 * 1024, indexIntervalBytes: 512 };

  it('reads exactly what a log without the cache reads, across rolls and retention, serving recent data from memory', async () => {
    const cache = new TailCache(24 * 1024);
    const cached = await openLog({ tailCache: cache }, SMALL);
    const plain = await openLog({}, SMALL);
    const next = mulberry32(7);
    let offset = 0;
    for (let step = 0; step < 120; step++) {
      const count = 1 + Math.floor(next() * 6);
      const size = 20 + Math.floor(next() * 400);
      // Concurrent appends, so groups of several batches are written (and cached) together.
      const appends = [];
      for (let batch = 0; batch < 1 + Math.floor(next() * 3); batch++) {
        appends.push(cached.append(batchOf(offset, count, size)), plain.append(batchOf(offset, count, size)));
        offset += count;
      }
      await Promise.all(appends);
    }
    expect(cached.segmentCount).toBeGreaterThan(3);
    expect(cached.logEndOffset).toBe(plain.logEndOffset);
    const missesBefore = cache.misses;
    const hitsBefore = cache.hits;
    expect(await readEveryOffset(cached, 4096)).toEqual(await readEveryOffset(plain, 4096));
    expect(cache.hits).toBeGreaterThan(hitsBefore); // the newest offsets came from memory
    expect(cache.misses).toBeGreaterThan(missesBefore); // the oldest from the files
    expect(cache.bytes).toBeLessThanOrEqual(cache.bytesMax);

    // Retention deletes the oldest segments; their cached bytes go with them.
    cached.updateConfig({ retentionBytes: 40 * 1024 });
    plain.updateConfig({ retentionBytes: 40 * 1024 });
    expect(await cached.applyRetention()).toBeGreaterThan(0);
    expect(await plain.applyRetention()).toBeGreaterThan(0);
    expect(cached.logStartOffset).toBe(plain.logStartOffset);
    expect(await readEveryOffset(cached, 100_000)).toEqual(await readEveryOffset(plain, 100_000));
  });

  it('serves a tailing reader of direct writes from memory, with the bytes the file holds', async () => {
    const cache = new TailCache(4 * 1024 * 1024);
    const log = await openLog({ tailCache: cache, directWriteMinBytes: 4096 }, {});
    let offset = 0;
    for (let step = 0; step < 20; step++) {
      const result = await log.append(batchOf(offset, 40, 1000));
      expect(result.baseOffset).toBe(offset);
      const misses = cache.misses;
      const { batches } = await log.read(offset, 1024 * 1024);
      expect(cache.misses).toBe(misses);
      expect(decodeBatches(batches).map((record) => record.offset)).toEqual(Array.from({ length: 40 }, (_, index) => offset + index));
      offset += 40;
    }
    // Where the temp directory has no O_DIRECT (tmpfs before Linux 6.6) the log writes buffered.
    if (DIRECT_WRITES_WORK) expect(log.writtenBytes.direct).toBeGreaterThan(0);
    // The same bytes reach the file: a reopened log (empty cache) reads them from disk.
    const cachedReads = await readEveryOffset(log, 64 * 1024);
    const directory = log.directory;
    await log.close();
    expect(cache.bytes).toBe(0); // closing a log lets its cached bytes go
    const reopened = await PartitionLog.open({ directory, name: 'tail-0' });
    openLogs.push(reopened);
    expect(await readEveryOffset(reopened, 64 * 1024)).toEqual(cachedReads);
  });

  it('does not cache a write that failed: after DISK_FULL the log reads only what was written', async () => {
    const fs = new TestFileSystem();
    const cache = new TailCache(1024 * 1024);
    const log = await openLog({ tailCache: cache, fs }, {});
    await log.append(batchOf(0, 5, 100));
    const before = await readEveryOffset(log, 64 * 1024);
    fs.diskFull = true;
    const failed = await log.append(batchOf(5, 5, 100)).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(StrataError);
    expect((failed as StrataError).code).toBe(ErrorCode.DISK_FULL);
    fs.diskFull = false;
    expect(await readEveryOffset(log, 64 * 1024)).toEqual(before);
    await log.append(batchOf(5, 5, 200));
    const reads = await readEveryOffset(log, 64 * 1024);
    expect(reads.length).toBe(10);
    expect(decodeBatches((await log.read(5, 64 * 1024)).batches).map((record) => record.value!.length)).toEqual([200, 200, 200, 200, 200]);
  });
});
