// Goal: show that direct (O_DIRECT) writes keep the log byte for byte what buffered writes would:
// large groups go direct and small ones through the page cache, in any order and across the
// staging buffer's size; small groups go direct on the event loop under flush=always when the
// inline budget lets them, and stay buffered otherwise; the zero padding a direct write leaves past the end of the log is never
// read, is cut when a segment is sealed or closed, and is truncated by recovery after a crash
// without dropping a record; where direct writes are impossible or refused the log falls back to
// buffered writes and loses nothing; a failed direct write is undone. Method: real files in
// throwaway directories, a crash taken as a copy of the directory while the log is open, and a
// delegating file system for the refusals and failures.
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { stagingPool } from '../../src/storage/aligned-memory.js';
import { InlineIoBudget, type InlineIoSettings } from '../../src/storage/inline-io.js';
import type { LogConfig } from '../../src/storage/log-config.js';
import { MAX_PADDING_BYTES, RUNWAY_BYTES } from '../../src/storage/direct-writer.js';
import { PartitionLog, type PartitionLogOptions } from '../../src/storage/partition-log.js';
import { decodeBatches } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { DIRECT_WRITES_WORK, TestFileSystem } from '../helpers/test-file-system.js';

const BLOCK = 4096;
const MIN_DIRECT = 64 * 1024;

const directories: string[] = [];
const openLogs: PartitionLog[] = [];

afterEach(async () => {
  for (const log of openLogs.splice(0)) await log.close().catch(() => undefined);
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

function tempDir(): string {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-direct-'));
  directories.push(directory);
  return directory;
}

async function openLog(directory: string, options: Partial<PartitionLogOptions> = {}, config: Partial<LogConfig> = {}): Promise<PartitionLog> {
  const log = await PartitionLog.open({ directory, name: 'direct-0', directWriteMinBytes: MIN_DIRECT, config, ...options });
  openLogs.push(log);
  return log;
}

/** The value of the record at `offset`: its own bytes, of a length that varies with it. */
function valueFor(offset: number, size: number): Buffer {
  const value = Buffer.alloc(size + (offset % 13));
  value.write(`record-${offset}-`);
  for (let index = 12; index < value.length; index++) value[index] = (offset * 31 + index) & 0xff;
  return value;
}

/** A batch of `count` records of about `size` bytes each, from offset `first`. */
function batchOf(first: number, count: number, size: number): Buffer {
  const records = Array.from({ length: count }, (_, index) => ({ key: Buffer.from(`k${first + index}`), value: valueFor(first + index, size) }));
  return buildBatch(records, { timestamp: 1_700_000_000_000 });
}

/** Appends batches of the given record counts (each awaited), checking their offsets. */
async function appendEach(log: PartitionLog, counts: readonly number[], size: number): Promise<void> {
  for (const count of counts) {
    const first = log.logEndOffset;
    const result = await log.append(batchOf(first, count, size));
    expect(result.baseOffset).toBe(first);
  }
}

/** Appends the batches in one turn, so the writer takes them as one group. */
async function appendTogether(log: PartitionLog, counts: readonly number[], size: number): Promise<void> {
  let first = log.logEndOffset;
  const appends = counts.map((count) => {
    const batch = batchOf(first, count, size);
    first += count;
    return log.append(batch);
  });
  await Promise.all(appends);
}

/** Reads the whole log and checks every record holds its own value, offsets 0 to the end. */
async function expectEveryRecord(log: PartitionLog, size: number): Promise<void> {
  let offset = 0;
  while (offset < log.logEndOffset) {
    const { batches } = await log.read(offset, 1024 * 1024);
    expect(batches.length, `read(${offset}) below the log end ${log.logEndOffset}`).toBeGreaterThan(0);
    for (const record of decodeBatches(batches)) {
      if (record.offset < offset) continue;
      expect(record.offset).toBe(offset);
      expect(record.value?.equals(valueFor(offset, size)), `record ${offset} holds its value`).toBe(true);
      offset++;
    }
  }
  expect(offset).toBe(log.logEndOffset);
}

/**
 * An inline I/O budget whose clock stands still: every call takes 0 ms, so only the size bound
 * and other busy logs send a call to the pool, whatever the disk's speed.
 */
function alwaysInline(settings: Partial<InlineIoSettings> = {}): InlineIoBudget {
  return new InlineIoBudget({ settings, now: () => 0 });
}

function logFileSizes(directory: string): number[] {
  return nodeFs
    .readdirSync(directory)
    .filter((name) => name.endsWith('.log'))
    .sort()
    .map((name) => nodeFs.statSync(join(directory, name)).size);
}

// Skipped only where the temp directory's file system has no O_DIRECT (tmpfs before Linux 6.6).
describe.skipIf(!DIRECT_WRITES_WORK)('direct writes', () => {
  it('write large groups directly and small ones buffered, in any order, with the same bytes', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, { fs });
    // A small buffered append leaves the log mid-block; the direct write after it reads that
    // block back. Then direct after direct (tail block from memory), a group larger than the
    // staging buffer, and buffered/direct alternations.
    await appendEach(log, [3], 500);
    await appendEach(log, [200, 180], 500);
    const [bytesBefore, callsBefore] = [log.writtenBytes.direct, fs.directWriteCalls];
    await appendTogether(log, [900, 900, 900, 900, 900], 500);
    expect(log.writtenBytes.direct - bytesBefore, 'one group, larger than a staging buffer').toBeGreaterThan(stagingPool.bufferBytes);
    expect(fs.directWriteCalls - callsBefore, 'written in two pieces').toBe(2);
    await appendEach(log, [1, 2, 150, 5, 170], 500);
    expect(log.writtenBytes.direct).toBeGreaterThan(2_000_000);
    expect(log.writtenBytes.buffered).toBeGreaterThan(0);
    await expectEveryRecord(log, 500);

    const [size] = log.segmentSizes().map((segment) => segment.sizeBytes);
    const [fileSize] = logFileSizes(directory);
    expect(size! % BLOCK, 'the log ends mid-block').not.toBe(0);
    expect(fileSize! >= size! && fileSize! < size! + BLOCK, 'at most a block of padding').toBe(true);

    await log.close();
    expect(logFileSizes(directory), 'close cuts the padding').toEqual([size]);
    const reopened = await openLog(directory, { directWriteMinBytes: null });
    expect(reopened.recovery, 'a clean reopen').toBeNull();
    await expectEveryRecord(reopened, 500);
  });

  it('leave sealed segments exactly as long as their batches', async () => {
    const directory = tempDir();
    const log = await openLog(directory, {}, { segmentBytes: 400_000 });
    for (let round = 0; round < 8; round++) await appendEach(log, [150 + round], 1000);
    expect(log.segmentCount).toBeGreaterThan(3);
    expect(log.writtenBytes.buffered).toBe(0);
    const sizes = log.segmentSizes().map((segment) => segment.sizeBytes);
    expect(logFileSizes(directory).slice(0, -1)).toEqual(sizes.slice(0, -1));
    await expectEveryRecord(log, 1000);
  });

  it('recover from a crash by cutting the padding and keeping every acknowledged record', async () => {
    const directory = tempDir();
    const log = await openLog(directory);
    await appendEach(log, [2, 300, 7, 250], 700);
    const [size] = log.segmentSizes().map((segment) => segment.sizeBytes);
    expect(logFileSizes(directory)[0], 'padding on disk').toBeGreaterThan(size!);
    // The directory as a kill -9 would leave it: no clean-shutdown marker, padding in place.
    const crashed = tempDir();
    nodeFs.cpSync(directory, crashed, { recursive: true });
    const recovered = await openLog(crashed);
    expect(recovered.fenced).toBeNull();
    expect(recovered.recovery?.recordsTruncated).toBe(0);
    expect(recovered.recovery?.bytesTruncated, 'padding is not reported as a torn write').toBe(0);
    expect(logFileSizes(crashed)).toEqual([size]);
    expect(recovered.logEndOffset).toBe(log.logEndOffset);
    await expectEveryRecord(recovered, 700);
    // And it goes on appending directly after the recovered end.
    await appendEach(recovered, [200], 700);
    expect(recovered.writtenBytes.direct).toBeGreaterThan(0);
    await expectEveryRecord(recovered, 700);
  });

  it('write small groups directly on the event loop under flush=always; recovery cuts their padding', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, { fs, inlineIo: alwaysInline() });
    await appendEach(log, [3, 1, 5, 2, 4, 1, 6, 2], 300);
    // The first opens the direct descriptor on the pool; the others run on the loop.
    expect(log.ioCalls).toEqual({ eventLoop: { write: 7, fdatasync: 8 }, threadPool: { write: 1, fdatasync: 0 } });
    expect(fs.directWriteCalls).toBe(8);
    expect(fs.inlineWritevCalls).toBe(7);
    expect(log.writtenBytes).toEqual({ direct: log.sizeBytes, buffered: 0 });
    expect(log.highWatermark).toBe(log.logEndOffset);
    await expectEveryRecord(log, 300);
    const [size] = log.segmentSizes().map((segment) => segment.sizeBytes);
    expect(size! % BLOCK, 'the log ends mid-block').not.toBe(0);
    expect(logFileSizes(directory)[0], 'padding on disk').toBeGreaterThan(size!);

    const crashed = tempDir();
    nodeFs.cpSync(directory, crashed, { recursive: true });
    const recovered = await openLog(crashed, { fs: new TestFileSystem(), inlineIo: alwaysInline() });
    expect(recovered.recovery?.recordsTruncated).toBe(0);
    expect(recovered.recovery?.bytesTruncated, 'padding is not reported as a torn write').toBe(0);
    expect(logFileSizes(crashed)).toEqual([size]);
    await expectEveryRecord(recovered, 300);
    // The recovered log reads its last block back once (on the pool), then writes on the loop.
    await appendEach(recovered, [2, 3], 300);
    expect(recovered.ioCalls.threadPool.write).toBe(1);
    expect(recovered.ioCalls.eventLoop.write).toBe(1);
    expect(recovered.writtenBytes.buffered).toBe(0);
    await expectEveryRecord(recovered, 300);
  });

  it('lay a runway of zeros past inline writes, so that most small groups do not grow the file; a roll, a close and recovery cut it', async () => {
    const directory = tempDir();
    const log = await openLog(directory, { inlineIo: alwaysInline() }, { segmentBytes: 4 * RUNWAY_BYTES });
    let growths = 0;
    let fileBytes = 0;
    for (let group = 0; group < 100; group++) {
      await appendEach(log, [2 + (group % 3)], 1000); // about 2-4 KB: most groups cross a block boundary
      const active = logFileSizes(directory).at(-1)!;
      const padding = active - log.segmentSizes().at(-1)!.sizeBytes;
      expect(padding, `padding after group ${group}`).toBeGreaterThanOrEqual(0);
      expect(padding, `padding after group ${group}`).toBeLessThan(MAX_PADDING_BYTES);
      if (active !== fileBytes) growths++;
      fileBytes = active;
    }
    const sizes = log.segmentSizes().map((segment) => segment.sizeBytes);
    expect(sizes.length, 'the log rolled').toBe(2);
    expect(logFileSizes(directory)[0], 'the sealed segment is cut to its batches').toBe(sizes[0]);
    expect(log.ioCalls.eventLoop.write, 'all but the first write of each segment inline').toBe(98);
    // Each runway holds about 20 of these groups: without it the file would grow with most of them.
    expect(growths, 'the active file grew only when a group went past its runway').toBeLessThanOrEqual(12);
    const active = nodeFs.readFileSync(join(directory, nodeFs.readdirSync(directory).filter((name) => name.endsWith('.log')).sort().at(-1)!));
    expect(active.length - sizes[1]!, 'a runway past the log').toBeGreaterThan(BLOCK);
    expect(active.subarray(sizes[1]).every((byte) => byte === 0), 'the runway is zeros').toBe(true);
    await expectEveryRecord(log, 1000);

    const crashed = tempDir();
    nodeFs.cpSync(directory, crashed, { recursive: true });
    const recovered = await openLog(crashed, { inlineIo: alwaysInline() });
    expect(recovered.recovery?.recordsTruncated).toBe(0);
    expect(recovered.recovery?.bytesTruncated, 'the runway is not reported as a torn write').toBe(0);
    expect(logFileSizes(crashed)).toEqual(sizes);
    await expectEveryRecord(recovered, 1000);

    await log.close();
    expect(logFileSizes(directory), 'a close cuts the runway').toEqual(sizes);
  });

  it('tell padding from an unfinished write by its length: zeros past the longest runway are reported truncated', async () => {
    const directory = tempDir();
    const log = await openLog(directory, { inlineIo: alwaysInline() });
    await appendEach(log, [3, 2, 4], 1000);
    const size = log.sizeBytes;
    const longestPadding = Math.floor((size + MAX_PADDING_BYTES - 1) / BLOCK) * BLOCK;
    for (const [fileBytes, reported] of [[longestPadding, 0], [longestPadding + BLOCK, longestPadding + BLOCK - size]] as const) {
      const crashed = tempDir();
      nodeFs.cpSync(directory, crashed, { recursive: true });
      const [name] = nodeFs.readdirSync(crashed).filter((file) => file.endsWith('.log'));
      nodeFs.truncateSync(join(crashed, name!), fileBytes);
      const recovered = await openLog(crashed, { inlineIo: alwaysInline() });
      expect(recovered.recovery?.bytesTruncated, `zeros to byte ${fileBytes} past a log of ${size}`).toBe(reported);
      expect(recovered.recovery?.recordsTruncated).toBe(0);
      expect(logFileSizes(crashed)).toEqual([size]);
      await expectEveryRecord(recovered, 1000);
    }
  });

  it('write small groups through the page cache under flush=interval or when the budget sends them to the pool', async () => {
    const interval = await openLog(tempDir(), { inlineIo: alwaysInline() }, { flush: 'interval' });
    await appendEach(interval, [3, 1, 5], 300);
    expect(interval.writtenBytes.direct).toBe(0);
    await interval.flush();
    await expectEveryRecord(interval, 300);

    // A group over the budget's size bound (and under the direct minimum) goes buffered, on the
    // pool. The small ones after it are written directly on the loop again: the last block's
    // bytes are taken from the buffered write, not read back.
    const log = await openLog(tempDir(), { inlineIo: alwaysInline({ bytesMax: 8 * 1024 }) });
    await appendEach(log, [1, 1, 40, 1, 1], 300);
    expect(log.ioCalls.eventLoop.write).toBe(3);
    expect(log.ioCalls.threadPool.write).toBe(2);
    const large = log.sizeBytes - log.writtenBytes.direct;
    expect(large, 'the 40-record group, buffered').toBeGreaterThan(8 * 1024);
    expect(large).toBeLessThan(MIN_DIRECT);
    await expectEveryRecord(log, 300);
  });

  it('fall back to buffered writes when an inline direct write is refused (EINVAL), losing nothing', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), { fs, inlineIo: alwaysInline() });
    await appendEach(log, [3, 2], 300);
    fs.directWriteError = 'EINVAL';
    await appendEach(log, [4], 300);
    fs.directWriteError = null;
    await appendEach(log, [5, 1], 300);
    expect(log.ioCalls.eventLoop.write, 'the refused direct write and its buffered retry, both on the loop').toBe(5);
    expect(log.writtenBytes.buffered, 'direct writes stay off after a refusal').toBeGreaterThan(0);
    expect(fs.directWriteCalls).toBe(3);
    await expectEveryRecord(log, 300);
  });

  it('refuse an inline direct write that runs out of space with DISK_FULL, and go on writing on the loop', async () => {
    const fs = new TestFileSystem();
    const directory = tempDir();
    const log = await openLog(directory, { fs, inlineIo: alwaysInline() });
    await appendEach(log, [3, 2], 300);
    const end = log.logEndOffset;
    fs.diskFull = true;
    const refused = await log.append(batchOf(end, 30, 300)).catch((error: unknown) => error);
    expect((refused as StrataError).code).toBe(ErrorCode.DISK_FULL);
    expect(log.logEndOffset).toBe(end);
    expect(log.fenced).toBeNull();
    fs.diskFull = false;
    const onLoop = log.ioCalls.eventLoop.write;
    await appendEach(log, [4, 1], 300);
    expect(log.ioCalls.eventLoop.write - onLoop).toBe(2);
    expect(log.writtenBytes.buffered).toBe(0);
    await expectEveryRecord(log, 300);
    await log.close();
    expect(logFileSizes(directory)).toEqual(log.segmentSizes().map((segment) => segment.sizeBytes));
  });

  it('lay a runway again after a failed write is undone (the undo cut the runway off with it)', async () => {
    const fs = new TestFileSystem();
    const directory = tempDir();
    const log = await openLog(directory, { fs, inlineIo: alwaysInline() }, { segmentBytes: 4 * RUNWAY_BYTES });
    const past = (): number => logFileSizes(directory).at(-1)! - log.segmentSizes().at(-1)!.sizeBytes;
    await appendEach(log, [2, 3, 2], 1000);
    expect(past(), 'a runway past the log').toBeGreaterThan(BLOCK);
    fs.diskFull = true;
    const refused = await log.append(batchOf(log.logEndOffset, 2, 1000)).catch((error: unknown) => error);
    fs.diskFull = false;
    expect((refused as StrataError).code).toBe(ErrorCode.DISK_FULL);
    expect(past(), 'the undo cut the file back to the end of the log').toBe(0);
    await appendEach(log, [2], 1000);
    expect(past(), 'the next inline write lays a runway again').toBeGreaterThan(BLOCK);
    await expectEveryRecord(log, 1000);
  });

  it('charge inline direct writes to the budget: once its credit is spent, small groups go buffered to the pool', async () => {
    let now = 0;
    /** Every write on the loop takes 2 ms of the budget's clock. */
    class SlowInlineWrites extends TestFileSystem {
      override writevSync(fd: number, buffers: readonly Buffer[], position: number): number {
        now += 2;
        return super.writevSync(fd, buffers, position);
      }
    }
    const inlineIo = new InlineIoBudget({ settings: { burstMs: 5, shareOfLoop: 0.1, expectedMsMax: 100 }, now: () => now });
    const log = await openLog(tempDir(), { fs: new SlowInlineWrites(), inlineIo });
    await appendEach(log, [1, 1, 1, 1, 1, 1, 1, 1], 300);
    // The first opens the descriptor on the pool; 5 ms of credit pays for three 2 ms writes.
    expect(log.ioCalls.eventLoop.write).toBe(3);
    expect(log.writtenBytes.buffered).toBeGreaterThan(0);
    // Credit back: written directly on the loop again, after buffered writes in the same block.
    now += 1000;
    const onLoop = log.ioCalls.eventLoop.write;
    await appendEach(log, [1], 300);
    expect(log.ioCalls.eventLoop.write - onLoop).toBe(1);
    await expectEveryRecord(log, 300);
  });

  it('fall back to buffered writes where the file system has no O_DIRECT', async () => {
    const fs = new TestFileSystem();
    fs.noDirectOpen = true;
    const log = await openLog(tempDir(), { fs });
    await appendEach(log, [200, 3, 220], 400);
    expect(log.writtenBytes.direct).toBe(0);
    await expectEveryRecord(log, 400);
  });

  it('fall back to buffered writes when a direct write is refused (EINVAL), losing nothing', async () => {
    const fs = new TestFileSystem();
    fs.directWriteError = 'EINVAL';
    const log = await openLog(tempDir(), { fs });
    await appendEach(log, [5, 200, 210], 400);
    fs.directWriteError = null;
    await appendEach(log, [230], 400);
    expect(log.writtenBytes.direct, 'direct writes stay off after a refusal').toBe(0);
    await expectEveryRecord(log, 400);
  });

  it('undo a direct write that ran out of space after its first piece: refused DISK_FULL, the log goes on', async () => {
    const fs = new TestFileSystem();
    const directory = tempDir();
    const log = await openLog(directory, { fs });
    await appendEach(log, [3, 200], 400);
    const end = log.logEndOffset;
    fs.directWriteError = 'ENOSPC';
    fs.directWriteErrorAfter = 1;
    const refused = await appendTogether(log, [1000, 1000, 1000, 1000, 1000, 1000], 400).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(StrataError);
    expect((refused as StrataError).code).toBe(ErrorCode.DISK_FULL);
    expect(log.logEndOffset).toBe(end);
    fs.directWriteError = null;
    await appendEach(log, [210, 4], 400);
    await expectEveryRecord(log, 400);
    await log.close();
    expect(logFileSizes(directory)).toEqual(log.segmentSizes().map((segment) => segment.sizeBytes));
  });

  it.each([
    { where: 'on the pool (a large group)', inline: false, counts: [3, 200, 150], failing: 200, size: 400, onLoop: 0 },
    { where: 'on the event loop (a small group)', inline: true, counts: [3, 2, 4], failing: 2, size: 300, onLoop: 2 },
  ])('fence the partition when a direct write $where fails with EIO, and recover every acknowledged record', async ({ inline, counts, failing, size, onLoop }) => {
    const fs = new TestFileSystem();
    const directory = tempDir();
    const log = await openLog(directory, { fs, inlineIo: inline ? alwaysInline() : null });
    await appendEach(log, counts, size);
    expect(log.ioCalls.eventLoop.write).toBe(onLoop);
    const end = log.logEndOffset;
    fs.directWriteError = 'EIO';
    const refused = await log.append(batchOf(end, failing, size)).catch((error: unknown) => error);
    expect((refused as StrataError).code).toBe(ErrorCode.PARTITION_FENCED);
    expect((refused as StrataError).message).toMatch(/direct write .* failed \(EIO\); restart to recover/);
    expect(log.fenced?.code).toBe(ErrorCode.PARTITION_FENCED);
    const crashed = tempDir();
    nodeFs.cpSync(directory, crashed, { recursive: true });
    const recovered = await openLog(crashed);
    expect(recovered.logEndOffset).toBe(end);
    await expectEveryRecord(recovered, size);
  });

  it('serve more partitions at once than there are staging buffers, under both flush modes', async () => {
    for (const flush of ['always', 'interval'] as const) {
      const logs = await Promise.all(Array.from({ length: stagingPool.maxBuffers + 2 }, () => openLog(tempDir(), {}, { flush })));
      for (let round = 0; round < 4; round++) await Promise.all(logs.map((log, index) => appendTogether(log, [150 + index, 7, 160], 600)));
      for (const log of logs) {
        await log.flush();
        await expectEveryRecord(log, 600);
      }
      expect(logs.reduce((sum, log) => sum + log.writtenBytes.direct, 0)).toBeGreaterThan(0);
    }
  });
});
