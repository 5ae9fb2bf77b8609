// Goal: show that a partition log assigns contiguous offsets, serves exactly the batches that hold
// an offset (never past the high watermark), finds offsets by timestamp, rolls and deletes whole
// segments, survives a clean reopen byte for byte, and refuses or fences cleanly when the disk
// fails; method: real files in throwaway temp directories, a ManualClock wherever time matters,
// and a delegating FileSystem that injects ENOSPC, failing fdatasyncs and gates that hold a write
// or sync open so intermediate states are observed deterministically (no sleeps).
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { settlesWithin } from '../../src/common/settles-within.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { decodeCheckpoint } from '../../src/storage/checkpoint-file.js';
import { InlineIoBudget, type InlineIoSettings } from '../../src/storage/inline-io.js';
import type { LogConfig } from '../../src/storage/log-config.js';
import { INDEX_TRAILER_BYTES, indexFileBytes, indexFileEntries } from '../../src/storage/index-file.js';
import { APPEND_BYTES_MAX, PartitionLog, type AppendResult, type PartitionLogOptions } from '../../src/storage/partition-log.js';
import {
  ATTRIBUTES_OFFSET,
  BASE_TIMESTAMP_OFFSET,
  CRC_OFFSET,
  MAX_TIMESTAMP_OFFSET,
  TIMESTAMP_TYPE_MASK,
  checkBatchFrame,
  decodeBatches,
  forEachBatch,
  readBaseOffset,
  readBatchHeader,
  readLastOffset,
  writeInt64,
  type DecodedRecord,
  type RecordInput,
} from '../../src/storage/record-batch.js';
import { crc32c } from '@node-rs/crc32';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestFileSystem, errnoError } from '../helpers/test-file-system.js';
import { rejectedWith } from '../helpers/rejected-with.js';

const T0 = 1_700_000_000_000;
/** Small segments and a dense index so a few hundred batches make many segments. */
const SMALL: Partial<LogConfig> = { segmentBytes: 4096, indexIntervalBytes: 256 };
const PAD = 'x'.repeat(24);

// ---------------------------------------------------------------------------------------------
// Helpers.

const directories: string[] = [];
const openLogs: PartitionLog[] = [];

afterEach(async () => {
  vi.useRealTimers();
  for (const log of openLogs.splice(0)) await log.close().catch(() => undefined);
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

function tempDir(): string {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-partition-log-'));
  directories.push(directory);
  return directory;
}

async function openLog(directory: string, config: Partial<LogConfig> = {}, options: Partial<PartitionLogOptions> = {}): Promise<PartitionLog> {
  const log = await PartitionLog.open({ directory, config, name: 'test-0', ...options });
  openLogs.push(log);
  return log;
}

const valueFor = (offset: number): string => `value-${offset}-${PAD}`;

/** A batch of `count` records whose values name the offsets they should get, from `first`. */
function batchOf(first: number, count: number, timestamp = T0): Buffer {
  const records: RecordInput[] = [];
  for (let index = 0; index < count; index++) {
    records.push({ key: Buffer.from(`k${first + index}`), value: Buffer.from(valueFor(first + index)) });
  }
  return buildBatch(records, { timestamp });
}

/** One record at `offset`, the batch of `sequence` of idempotent producer `producerId`. */
const idempotent = (producerId: number, sequence: number, offset: number): Buffer =>
  buildBatch([{ key: Buffer.from(`k${offset}`), value: Buffer.from(valueFor(offset)) }], { timestamp: Date.now(), producerId, producerEpoch: 0, baseSequence: sequence }); // now: no roll by segment.ms

/** 1 to 5 records, varying with `index`. */
const countFor = (index: number): number => 1 + ((index * 7 + 3) % 5);

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, index) => from + index);

const stem = (baseOffset: number): string => String(baseOffset).padStart(20, '0');

interface Appended {
  /** The appended buffers (their base offsets were rewritten in place by the log). */
  batches: Buffer[];
  /** Index into `batches` of the batch holding each offset. */
  batchOfOffset: number[];
  nextOffset: number;
}

/** Appends `batchCount` batches one after another, checking each gets the next offsets. */
async function appendSequentially(log: PartitionLog, batchCount: number, from = log.logEndOffset): Promise<Appended> {
  const appended: Appended = { batches: [], batchOfOffset: [], nextOffset: from };
  for (let index = 0; index < batchCount; index++) {
    const count = countFor(index);
    const batch = batchOf(appended.nextOffset, count);
    const result = await log.append(batch);
    expect(result).toMatchObject({ baseOffset: appended.nextOffset, lastOffset: appended.nextOffset + count - 1, recordCount: count });
    for (let record = 0; record < count; record++) appended.batchOfOffset.push(appended.batches.length);
    appended.batches.push(batch);
    appended.nextOffset += count;
  }
  return appended;
}

/** Every visible record, read from logStartOffset in 64 KiB fetches. */
async function readAllRecords(log: PartitionLog): Promise<DecodedRecord[]> {
  const records: DecodedRecord[] = [];
  let offset = log.logStartOffset;
  while (offset < log.highWatermark) {
    const { batches } = await log.read(offset, 64 * 1024);
    expect(batches.length).toBeGreaterThan(0);
    const decoded = decodeBatches(batches);
    records.push(...decoded.filter((record) => record.offset >= offset));
    offset = decoded.at(-1)!.offset + 1;
  }
  return records;
}

function expectValues(records: readonly DecodedRecord[], from: number, to: number): void {
  expect(records.map((record) => record.offset)).toEqual(range(from, to));
  expect(records.map((record) => record.value!.toString())).toEqual(range(from, to).map(valueFor));
}

/** The whole batches in `buffer` as [baseOffset, lastOffset, size] triples. */
function batchSpans(buffer: Buffer): [number, number, number][] {
  const spans: [number, number, number][] = [];
  const consumed = forEachBatch(buffer, (position, size) => spans.push([readBaseOffset(buffer, position), readLastOffset(buffer, position), size]));
  expect(consumed).toBe(buffer.length); // whole batches only
  return spans;
}

const rejection = (promise: Promise<unknown>): Promise<StrataError> => rejectedWith(promise, StrataError);
/** The error an open failed with (a plain Error: the broker names the partition around it). */
const openFailure = (opening: Promise<PartitionLog>): Promise<Error> => rejectedWith(opening, Error);

// ---------------------------------------------------------------------------------------------
// Offsets and rolling.

describe('offsets', () => {
  it('are contiguous across many segment rolls', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    const appended = await appendSequentially(log, 160);
    const totalBytes = appended.batches.reduce((sum, batch) => sum + batch.length, 0);

    expect(log.logStartOffset).toBe(0);
    expect(log.logEndOffset).toBe(appended.nextOffset);
    expect(log.highWatermark).toBe(appended.nextOffset);
    expect(log.sizeBytes).toBe(totalBytes);
    const sizes = log.segmentSizes();
    expect(log.segmentCount).toBe(sizes.length);
    expect(sizes.length).toBeGreaterThanOrEqual(6);
    expect(sizes[0]!.baseOffset).toBe(0);
    expect(sizes.reduce((sum, segment) => sum + segment.sizeBytes, 0)).toBe(totalBytes);
    for (const [index, segment] of sizes.entries()) {
      expect(segment.sizeBytes).toBeLessThanOrEqual(4096);
      expect(segment.sizeBytes).toBeGreaterThan(0);
      if (index > 0) expect(segment.baseOffset).toBeGreaterThan(sizes[index - 1]!.baseOffset);
      // Each segment starts with a whole batch at its base offset and its file holds exactly its bytes.
      const { batches } = await log.read(segment.baseOffset, 1);
      expect(readBaseOffset(batches)).toBe(segment.baseOffset);
      expect(nodeFs.statSync(join(directory, `${stem(segment.baseOffset)}.log`)).size).toBe(segment.sizeBytes);
    }
    expectValues(await readAllRecords(log), 0, appended.nextOffset);
  });

  it('go to concurrent appends as distinct contiguous ranges in call order', async () => {
    const log = await openLog(tempDir(), SMALL);
    const counts = range(0, 400).map(countFor);
    const bases: number[] = [];
    let next = 0;
    for (const count of counts) {
      bases.push(next);
      next += count;
    }
    const results = await Promise.all(
      counts.map((count, index) => log.append(batchOf(bases[index]!, count), { waitFor: index % 3 === 0 ? 'written' : 'durable' })),
    );
    results.forEach((result, index) => {
      expect(result).toMatchObject({ baseOffset: bases[index], lastOffset: bases[index]! + counts[index]! - 1, recordCount: counts[index] });
    });
    expect(log.logEndOffset).toBe(next);
    expect(log.segmentCount).toBeGreaterThan(10);
    await log.flush();
    expect(log.highWatermark).toBe(next);
    expectValues(await readAllRecords(log), 0, next);
  });

  it('continue after a clean reopen', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    const first = await appendSequentially(log, 40);
    await log.close();
    const reopened = await openLog(directory, SMALL);
    expect(reopened.recovery).toBeNull();
    expect(reopened.logEndOffset).toBe(first.nextOffset);
    const second = await appendSequentially(reopened, 40);
    expectValues(await readAllRecords(reopened), 0, second.nextOffset);
  });
});

// ---------------------------------------------------------------------------------------------
// Reading.

describe('read', () => {
  it('at every offset returns whole batches starting with the one holding it, within maxBytes', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    const appended = await appendSequentially(log, 120);
    expect(log.segmentCount).toBeGreaterThanOrEqual(4);
    const maxBytes = 700;
    const before: Buffer[] = [];
    for (let offset = 0; offset < appended.nextOffset; offset++) {
      const expectedBatch = appended.batches[appended.batchOfOffset[offset]!]!;

      // maxBytes smaller than any batch: still exactly one whole batch.
      const single = await log.read(offset, 1);
      expect(single.highWatermark).toBe(appended.nextOffset);
      expect(single.logStartOffset).toBe(0);
      expect(Buffer.compare(single.batches, expectedBatch)).toBe(0);

      const { batches } = await log.read(offset, maxBytes);
      const spans = batchSpans(batches);
      expect(spans[0]![0]).toBeLessThanOrEqual(offset);
      expect(spans[0]![1]).toBeGreaterThanOrEqual(offset);
      expect(batches.subarray(0, expectedBatch.length).equals(expectedBatch)).toBe(true);
      if (spans.length > 1) expect(batches.length).toBeLessThanOrEqual(maxBytes);
      for (let index = 1; index < spans.length; index++) expect(spans[index]![0]).toBe(spans[index - 1]![1] + 1);
      before.push(Buffer.from(batches));
    }

    const state = { segmentCount: log.segmentCount, sizeBytes: log.sizeBytes, segments: log.segmentSizes() };
    await log.close();
    const reopened = await openLog(directory, SMALL);
    expect(reopened.recovery).toBeNull();
    expect(reopened.segmentCount).toBe(state.segmentCount);
    expect(reopened.segmentSizes()).toEqual(state.segments);
    expect(reopened.sizeBytes).toBe(state.sizeBytes);
    expect(reopened.logStartOffset).toBe(0);
    expect(reopened.logEndOffset).toBe(appended.nextOffset);
    expect(reopened.highWatermark).toBe(appended.nextOffset);
    for (let offset = 0; offset < appended.nextOffset; offset++) {
      const { batches } = await reopened.read(offset, maxBytes);
      expect(batches.equals(before[offset]!), `offset ${offset}`).toBe(true);
    }
  });

  it('reads in bounded chunks where the index has no entry for megabytes (a huge index.interval.bytes)', async () => {
    const directory = tempDir();
    const written = await openLog(directory, { indexIntervalBytes: 1 << 30 });
    for (let offset = 0; offset < 40; offset++) await written.append(buildBatch([{ value: Buffer.alloc(100 * 1024, offset) }], { timestamp: T0 }));
    await written.close();
    const fs = new TestFileSystem();
    const log = await openLog(directory, { indexIntervalBytes: 1 << 30 }, { fs });
    fs.largestReadBytes = 0; // the open reads what follows the last index entry in chunks of up to 8 MiB
    const [record] = decodeBatches((await log.read(39, 1024)).batches);
    expect(record?.offset).toBe(39);
    expect(record?.value?.equals(Buffer.alloc(100 * 1024, 39))).toBe(true);
    // 4 MiB of log lie before it, unindexed: no read asks for much more than 1 MiB of them.
    expect(fs.largestReadBytes).toBeLessThanOrEqual(1024 * 1024 + 1024);
  });

  it('scans an unindexed stretch in chunks of at least 64 KiB for a read of a few bytes, not a read per batch', async () => {
    const directory = tempDir();
    const written = await openLog(directory, { indexIntervalBytes: 1 << 30 });
    for (let offset = 0; offset < 2_000; offset++) await written.append(buildBatch([{ value: Buffer.alloc(1000, offset % 256) }], { timestamp: T0 }));
    await written.close();
    const fs = new TestFileSystem();
    const log = await openLog(directory, { indexIntervalBytes: 1 << 30 }, { fs });
    fs.readCalls = 0;
    const [record] = decodeBatches((await log.read(1_999, 1)).batches);
    expect(record?.offset).toBe(1_999);
    expect(record?.value?.equals(Buffer.alloc(1000, 1_999 % 256))).toBe(true);
    // About 1 MiB lies past the first read's reach: 16 chunks of 64 KiB, not ~1,000 batch reads.
    expect(fs.readCalls).toBeLessThanOrEqual(40);
    await log.close();
  });

  it('checks the tail after the last index entry a scan chunk at a time at a clean open, not in one read', async () => {
    const directory = tempDir();
    const config = { indexIntervalBytes: 1 << 30 };
    const written = await openLog(directory, config);
    // 10 MiB after the only index entry (byte 0): more than one 8 MiB scan chunk.
    for (let offset = 0; offset < 100; offset++) await written.append(buildBatch([{ value: Buffer.alloc(100 * 1024, offset) }], { timestamp: T0 }));
    await written.close();
    const fs = new TestFileSystem();
    const log = await openLog(directory, config, { fs });
    expect(log.recovery).toBeNull();
    expect(log.logEndOffset).toBe(100);
    expect(fs.largestReadBytes).toBeLessThanOrEqual(8 * 1024 * 1024);
    const [record] = decodeBatches((await log.read(99, 1024)).batches);
    expect(record?.value?.equals(Buffer.alloc(100 * 1024, 99))).toBe(true);
    await log.close();
  });

  it('returns as many whole batches as fit in maxBytes', async () => {
    const log = await openLog(tempDir());
    const sizes: number[] = [];
    for (let index = 0; index < 4; index++) {
      const batch = batchOf(index * 2, 2);
      sizes.push(batch.length);
      await log.append(batch);
    }
    const total = (count: number) => sizes.slice(0, count).reduce((sum, size) => sum + size, 0);
    expect(batchSpans((await log.read(0, total(2))).batches)).toHaveLength(2);
    expect(batchSpans((await log.read(0, total(2) - 1)).batches)).toHaveLength(1);
    expect(batchSpans((await log.read(1, total(3))).batches)).toHaveLength(3);
    expect((await log.read(0, 1 << 20)).batches.length).toBe(total(4));
    expect(batchSpans((await log.read(7, 1 << 20)).batches)).toEqual([[6, 7, sizes[3]]]);
  });

  it('at logEndOffset returns no batches, and outside [logStartOffset, logEndOffset] is OFFSET_OUT_OF_RANGE', async () => {
    const log = await openLog(tempDir());
    const empty = await log.read(0, 1000);
    expect(empty).toEqual({ batches: Buffer.alloc(0), headroom: 0, highWatermark: 0, logStartOffset: 0 });
    await log.append(batchOf(0, 3));
    const atEnd = await log.read(3, 1000);
    expect(atEnd.batches.length).toBe(0);
    expect(atEnd.highWatermark).toBe(3);
    for (const offset of [4, 1000, -1, 1.5, Number.NaN]) {
      const error = await rejection(log.read(offset, 1000));
      expect(error.code).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
      expect(error.message).toContain('valid offsets are 0 to 3');
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The high watermark.

describe('log-append time', () => {
  it("gives a log-append-time batch the broker's append time, its CRC sealed again, and files it under that time", async () => {
    const clock = new ManualClock(T0 + 5_000);
    const log = await openLog(tempDir(), {}, { clock });
    const batch = buildBatch([{ value: Buffer.from('a'), timestamp: T0 }, { value: Buffer.from('b'), timestamp: T0 + 1 }]);
    batch.writeInt16BE(batch.readInt16BE(ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_MASK, ATTRIBUTES_OFFSET);
    writeInt64(batch, MAX_TIMESTAMP_OFFSET, 1.7e15); // a client's clock far in the future
    batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    await log.append(batch);
    const { batches } = await log.read(0, 1 << 20);
    expect(readBatchHeader(batches).maxTimestamp).toBe(T0 + 5_000);
    expect(checkBatchFrame(batches, 0, batches.length)).toBeNull(); // the CRC holds
    expect(decodeBatches(batches).map((record) => record.timestamp)).toEqual([T0 + 5_000, T0 + 5_000]);
    expect(await log.offsetForTimestamp(T0 + 5_000)).toBe(0);
    expect(await log.offsetForTimestamp(T0 + 5_001)).toBeNull();
  });
});

describe('message.timestamp.after.max.ms', () => {
  const HOUR_MS = 60 * 60 * 1000;

  it("refuses a create-time batch whose newest record is more than the limit ahead of the broker's clock, and appends nothing of the request", async () => {
    const clock = new ManualClock(T0);
    const log = await openLog(tempDir(), {}, { clock });
    await log.append(batchOf(0, 1, T0 + HOUR_MS)); // at the default limit (Kafka 4's hour): taken
    const ahead = Buffer.concat([batchOf(1, 1, T0), batchOf(2, 1, T0 + HOUR_MS + 1)]);
    const refusal = await rejection(log.append(ahead));
    expect(refusal.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(refusal.message).toBe(
      `batch 1 has a record timestamped ${T0 + HOUR_MS + 1}, ${HOUR_MS + 1} ms ahead of the broker's clock, more than message.timestamp.after.max.ms (${HOUR_MS}) allows: ` +
        "timestamps are milliseconds since the epoch (not micro- or nanoseconds); check the producer's clock, or raise the topic's message.timestamp.after.max.ms",
    );
    // A timestamp in microseconds, the usual mistake, is refused the same way.
    expect((await rejection(log.append(batchOf(1, 1, T0 * 1000)))).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(log.logEndOffset).toBe(1);
    clock.advance(1);
    expect((await log.append(batchOf(1, 1, T0 + HOUR_MS + 1))).baseOffset).toBe(1); // the clock caught up
  });

  it('takes what a topic allows, and log-append-time batches whatever their own max timestamp', async () => {
    const clock = new ManualClock(T0);
    const allowing = await openLog(tempDir(), { messageTimestampAfterMaxMs: 24 * HOUR_MS }, { clock });
    expect((await allowing.append(batchOf(0, 1, T0 + 24 * HOUR_MS))).baseOffset).toBe(0);
    const strict = await openLog(tempDir(), { messageTimestampAfterMaxMs: 0 }, { clock });
    expect((await rejection(strict.append(batchOf(0, 1, T0 + 1)))).code).toBe(ErrorCode.INVALID_ARGUMENT);
    const stamped = batchOf(0, 1, T0 + 1);
    stamped.writeInt16BE(stamped.readInt16BE(ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_MASK, ATTRIBUTES_OFFSET);
    writeInt64(stamped, MAX_TIMESTAMP_OFFSET, T0 + 1_000 * HOUR_MS);
    stamped.writeUInt32BE(crc32c(stamped.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    expect((await strict.append(stamped)).baseOffset).toBe(0);
    expect(readBatchHeader((await strict.read(0, 1 << 20)).batches).maxTimestamp).toBe(T0);
  });
});

/**
 * A log under flush=always with an append of offsets 0 and 1 held at `call` (its write, or its
 * fdatasync), switched to flush=interval meanwhile.
 */
async function switchedToIntervalWhileHeld(call: 'writev' | 'fdatasync'): Promise<{
  fs: TestFileSystem;
  log: PartitionLog;
  held: { release: () => void };
  first: Promise<AppendResult>;
  settled: () => boolean;
}> {
  const fs = new TestFileSystem();
  const log = await openLog(tempDir(), {}, { fs });
  const held = fs.hold(call);
  let settled = false;
  const first = log.append(batchOf(0, 2)).finally(() => (settled = true));
  await held.reached;
  log.updateConfig({ flush: 'interval', flushMs: 60_000 });
  return { fs, log, held, first, settled: () => settled };
}

/**
 * After a switch to flush=interval took effect: an append at `offset` is acknowledged on write,
 * with no fdatasync, and the log holds offsets 0 to it.
 */
async function expectAcknowledgedOnWrite(log: PartitionLog, fs: TestFileSystem, offset: number): Promise<void> {
  const syncs = fs.fdatasyncCalls;
  expect((await log.append(batchOf(offset, 1))).baseOffset).toBe(offset);
  expect(log.highWatermark).toBe(offset + 1);
  expect(fs.fdatasyncCalls).toBe(syncs);
  expectValues(await readAllRecords(log), 0, offset + 1);
}

describe('high watermark', () => {
  it('covers an append once it resolves, and listeners hear each advance', async () => {
    const log = await openLog(tempDir());
    let advances = 0;
    const unsubscribe = log.onHighWatermark(() => advances++);
    const result = await log.append(batchOf(0, 3));
    expect(result.baseOffset).toBe(0);
    expect(log.highWatermark).toBe(3);
    expect(advances).toBeGreaterThanOrEqual(1);
    expectValues(decodeBatches((await log.read(0, 1 << 20)).batches), 0, 3);
    const counted = advances;
    unsubscribe();
    await log.append(batchOf(3, 1));
    expect(log.highWatermark).toBe(4);
    expect(advances).toBe(counted);
  });

  it('hides written records until the fdatasync that covers them completes', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs });
    await log.append(batchOf(0, 3));
    let advances = 0;
    log.onHighWatermark(() => advances++);

    const sync = fs.hold('fdatasync');
    const written = await log.append(batchOf(3, 2), { waitFor: 'written' });
    expect(written).toMatchObject({ baseOffset: 3, lastOffset: 4 });
    await sync.reached;
    expect(log.logEndOffset).toBe(5);
    expect(log.highWatermark).toBe(3);
    expect((await log.read(3, 1 << 20)).batches.length).toBe(0);
    expect((await log.read(4, 1 << 20)).batches.length).toBe(0);
    expect((await log.read(5, 1 << 20)).batches.length).toBe(0);
    expect(decodeBatches((await log.read(0, 1 << 20)).batches).map((record) => record.offset)).toEqual([0, 1, 2]);
    expect((await rejection(log.read(6, 100))).code).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);

    // An append that arrives during the fdatasync waits for it (writing now would only make
    // it longer): it is written once the sync returns, and made durable by the next one.
    let durableSettled = false;
    let writtenDuringSync = false;
    const durable = log.append(batchOf(5, 1)).finally(() => (durableSettled = true));
    const nextWrite = fs.next('writev').then(() => (writtenDuringSync = fs.isHeld('fdatasync')));
    await new Promise((resolve) => setImmediate(resolve));
    expect(durableSettled).toBe(false);
    expect(advances).toBe(0);
    expect(log.logEndOffset).toBe(5); // not written yet

    sync.release();
    await nextWrite;
    expect(writtenDuringSync).toBe(false);
    expect((await durable).baseOffset).toBe(5);
    expect(log.highWatermark).toBe(6);
    expect(advances).toBeGreaterThanOrEqual(1);
    expectValues(await readAllRecords(log), 0, 6);
  });

  it('switching flush=always to interval acknowledges nothing taken under always before an fdatasync covers it', async () => {
    const { fs, log, held: sync, first, settled: firstSettled } = await switchedToIntervalWhileHeld('fdatasync'); // written; its fdatasync is held
    let secondSettled = false;
    const second = log.append(batchOf(2, 1)).finally(() => (secondSettled = true));
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect([firstSettled(), secondSettled]).toEqual([false, false]);
    expect(log.highWatermark).toBe(0); // nothing visible that is not durable

    sync.release();
    expect((await first).baseOffset).toBe(0);
    // Covered by an fdatasync, the switch is done: the append made after it, and the next
    // ones, are acknowledged on write.
    expect((await second).baseOffset).toBe(2);
    await expectAcknowledgedOnWrite(log, fs, 3);
  });

  it('switching flush=always to interval while a group is being written still fdatasyncs that group before its answer', async () => {
    const { fs, log, held: write, first, settled } = await switchedToIntervalWhileHeld('writev'); // taken under always; nothing written yet
    const sync = fs.hold('fdatasync');
    write.release();
    try {
      await Promise.race([sync.reached, first]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(settled()).toBe(false);
      expect(log.highWatermark).toBe(0);
    } finally {
      sync.release();
    }
    expect((await first).baseOffset).toBe(0);
    // Covered by an fdatasync, the switch is done.
    await expectAcknowledgedOnWrite(log, fs, 2);
  });

  it('with flush=interval, acknowledges on write, syncs on the timer and on flush()', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), { flush: 'interval', flushMs: 50 }, { fs });
    const syncsAtOpen = fs.fdatasyncCalls;

    const result = await log.append(batchOf(0, 4)); // waitFor 'durable' is the default
    expect(result).toMatchObject({ baseOffset: 0, lastOffset: 3 });
    expect(log.highWatermark).toBe(4);
    expectValues(await readAllRecords(log), 0, 4);
    expect(fs.fdatasyncCalls).toBe(syncsAtOpen); // nothing synced on the append path

    const timerSync = fs.next('fdatasync');
    vi.advanceTimersByTime(50);
    await timerSync;
    expect(fs.fdatasyncCalls).toBe(syncsAtOpen + 1);

    await log.append(batchOf(4, 1), { waitFor: 'written' });
    expect(log.highWatermark).toBe(5);
    await log.flush();
    expect(fs.fdatasyncCalls).toBe(syncsAtOpen + 2);
    await log.flush(); // nothing new written: no fdatasync
    expect(fs.fdatasyncCalls).toBe(syncsAtOpen + 2);
    expectValues(await readAllRecords(log), 0, 5);
  });

  // A later fdatasync could succeed over the pages the failed one lost, and would move the
  // durable end (what the recovery checkpoint may cover) past them.
  it('with flush=interval, a failed fdatasync fences the log, and no fdatasync is tried after it', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), { flush: 'interval', flushMs: 60_000 }, { fs });
    await log.append(batchOf(0, 2));
    fs.failNextFdatasyncs = 1;
    await log.flush();
    expect((await rejection(log.append(batchOf(2, 1)))).code).toBe(ErrorCode.PARTITION_FENCED);
    const syncs = fs.fdatasyncCalls;
    await log.flush(); // as the interval timer does
    expect(fs.fdatasyncCalls).toBe(syncs);
    expect(await log.checkpointRecoveryPoint()).toBe(false);
  });

  it('a switch from flush=interval to always syncs at once what interval acknowledged unsynced', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), { flush: 'interval', flushMs: 60_000 }, { fs });
    await log.append(batchOf(0, 2)); // acknowledged on write; the timer is a minute off
    const syncs = fs.fdatasyncCalls;
    const sync = fs.next('fdatasync');
    log.updateConfig({ flush: 'always' }); // no timer any more, and no append comes
    expect(await settlesWithin(sync, 10_000)).toBe(true);
    await log.flush(); // waits for that sync to finish; nothing is left for another
    expect(fs.fdatasyncCalls).toBe(syncs + 1);
    expect(await log.checkpointRecoveryPoint()).toBe(true); // the durable end moved up to them
  });

  it('a change of another setting leaves the flush timer running: alters more frequent than flush.ms do not hold off its syncs', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), { flush: 'interval', flushMs: 1_000 }, { fs });
    await log.append(batchOf(0, 1));
    const syncs = fs.fdatasyncCalls;
    await vi.advanceTimersByTimeAsync(600);
    log.updateConfig({ retentionMs: 3_600_000 });
    const timerSync = fs.next('fdatasync');
    vi.advanceTimersByTime(400); // 1,000 ms since the timer started
    expect(await settlesWithin(timerSync, 10_000)).toBe(true);
    expect(fs.fdatasyncCalls).toBe(syncs + 1);
  });

  it('a flush.ms past the longest timer period syncs at that period, not every millisecond', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }); // they overflow as Node's do
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), { flush: 'interval', flushMs: 2 ** 31 }, { fs });
    await log.append(batchOf(0, 1));
    const syncs = fs.fdatasyncCalls;
    await vi.advanceTimersByTimeAsync(100);
    expect(fs.fdatasyncCalls).toBe(syncs);
    const timerSync = fs.next('fdatasync');
    vi.advanceTimersByTime(2 ** 31 - 1);
    await timerSync;
    expect(fs.fdatasyncCalls).toBe(syncs + 1); // one, at the longest period
    expect(log.highWatermark).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Validation.

describe('append validation', () => {
  it('refuses a corrupt batch with CORRUPT_BATCH and appends nothing', async () => {
    const directory = tempDir();
    const log = await openLog(directory);
    await log.append(batchOf(0, 3));
    const sizeBefore = log.sizeBytes;
    const template = batchOf(3, 2);
    // Bytes 0-15 (base offset, length, leader epoch) are outside the CRC by design.
    for (let position = 16; position < template.length; position++) {
      const corrupt = Buffer.from(template);
      corrupt[position]! ^= 0x40;
      const error = await rejection(log.append(corrupt));
      expect(error.code, `byte ${position}`).toBe(ErrorCode.CORRUPT_BATCH);
    }
    // All or nothing: a good batch followed by a bad one appends neither.
    const bad = Buffer.from(template);
    bad[bad.length - 1]! ^= 0xff;
    expect((await rejection(log.append(Buffer.concat([batchOf(3, 1), bad])))).code).toBe(ErrorCode.CORRUPT_BATCH);
    expect((await rejection(log.append(Buffer.alloc(0)))).code).toBe(ErrorCode.CORRUPT_BATCH);

    expect(log.logEndOffset).toBe(3);
    expect(log.highWatermark).toBe(3);
    expect(log.sizeBytes).toBe(sizeBefore);
    expect(nodeFs.statSync(join(directory, `${stem(0)}.log`)).size).toBe(sizeBefore);
    expect((await log.append(template)).baseOffset).toBe(3);
    expectValues(await readAllRecords(log), 0, 5);
  });

  // One write never leaves more than recovery's unsynced window (32 MiB) unsynced, so one
  // append is at most half of it; the TypeScript client sends at most 1 MiB per partition.
  it('refuses more than APPEND_BYTES_MAX of batches in one append with RECORD_TOO_LARGE', async () => {
    const log = await openLog(tempDir(), { segmentBytes: 64 * 1024 * 1024 });
    const batchOfBytes = (bytes: number): Buffer => buildBatch([{ value: Buffer.alloc(bytes, 7) }]);
    const megabyte = batchOfBytes(1_000_000);
    const tooMuch = Buffer.concat(Array.from({ length: Math.floor(APPEND_BYTES_MAX / megabyte.length) + 1 }, () => megabyte));
    expect(tooMuch.length).toBeGreaterThan(APPEND_BYTES_MAX);
    const error = await rejection(log.append(tooMuch));
    expect(error.code).toBe(ErrorCode.RECORD_TOO_LARGE);
    expect(error.message).toContain('send them in several requests');
    expect(log.logEndOffset).toBe(0);
    expect(log.sizeBytes).toBe(0);
    const most = tooMuch.subarray(0, tooMuch.length - megabyte.length);
    expect((await log.append(most)).lastOffset).toBe(most.length / megabyte.length - 1);
    await log.close();
  });

  it('refuses a batch over max.message.bytes with RECORD_TOO_LARGE', async () => {
    const log = await openLog(tempDir(), { maxMessageBytes: 300 });
    const large = batchOf(0, 8);
    expect(large.length).toBeGreaterThan(300);
    const error = await rejection(log.append(large));
    expect(error.code).toBe(ErrorCode.RECORD_TOO_LARGE);
    expect(log.logEndOffset).toBe(0);
    const small = batchOf(0, 2);
    expect(small.length).toBeLessThanOrEqual(300);
    expect((await log.append(small)).baseOffset).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Timestamps.

describe('offsetForTimestamp', () => {
  it('finds the first offset whose timestamp is >= t across segments, before and after a reopen', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    const timestamps: number[] = []; // by offset
    const shapes = [[5], [0, 9], [9, -3, 4], [12, 0, 7, -2], [3, 3, 11, -4, 1]];
    for (let batch = 0; batch < 120; batch++) {
      const base = T0 + batch * 10;
      const records = shapes[batch % shapes.length]!.map((delta, index) => ({
        value: Buffer.from(valueFor(timestamps.length + index)),
        timestamp: base + delta,
      }));
      await log.append(buildBatch(records, { timestamp: base }));
      for (const record of records) timestamps.push(record.timestamp);
    }
    expect(log.segmentCount).toBeGreaterThanOrEqual(4);

    const expectedFor = (t: number): number | null => {
      const index = timestamps.findIndex((timestamp) => timestamp >= t);
      return index < 0 ? null : index;
    };
    const probes = new Set<number>([T0 - 1_000_000, 0, -1, Math.max(...timestamps) + 1, T0 + 1e9]);
    for (const timestamp of timestamps) for (const delta of [-1, 0, 1]) probes.add(timestamp + delta);

    const check = async (target: PartitionLog) => {
      expect(await target.offsetForTimestamp(T0 - 1_000_000)).toBe(target.logStartOffset);
      expect(await target.offsetForTimestamp(Math.max(...timestamps) + 1)).toBeNull();
      for (const probe of probes) expect(await target.offsetForTimestamp(probe), `t = ${probe}`).toBe(expectedFor(probe));
    };
    await check(log);
    await log.close();
    const reopened = await openLog(directory, SMALL);
    await check(reopened);
  });

  it('only sees records below the high watermark', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs });
    await log.append(batchOf(0, 2, T0));
    const sync = fs.hold('fdatasync');
    await log.append(batchOf(2, 2, T0 + 100), { waitFor: 'written' });
    expect(log.highWatermark).toBe(2);
    expect(await log.offsetForTimestamp(T0 + 50)).toBeNull();
    sync.release();
    await log.flush();
    expect(await log.offsetForTimestamp(T0 + 50)).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// Retention.

/** Appends `batchCount` batches, one per second of `clock`, stamped with the clock's time. */
async function appendOverTime(log: PartitionLog, clock: ManualClock, batchCount: number): Promise<{ timestamps: number[]; nextOffset: number }> {
  const timestamps: number[] = []; // by offset
  for (let index = 0; index < batchCount; index++) {
    const count = countFor(index);
    await log.append(batchOf(timestamps.length, count, clock.nowMs()));
    for (let record = 0; record < count; record++) timestamps.push(clock.nowMs());
    clock.advance(1000);
  }
  return { timestamps, nextOffset: timestamps.length };
}

function segmentFiles(directory: string): string[] {
  return nodeFs.readdirSync(directory).filter((name) => /^\d{20}\./.test(name) || name.endsWith('.deleted'));
}

/** The files of an open log's segments: sealed ones have their indexes on disk, the active one only its log. */
function expectedSegmentFiles(baseOffsets: readonly number[]): string[] {
  return baseOffsets
    .flatMap((baseOffset, index) => (index === baseOffsets.length - 1 ? ['.log'] : ['.index', '.log', '.timeindex']).map((suffix) => stem(baseOffset) + suffix))
    .sort();
}

describe('retention', () => {
  it('by retention.ms deletes whole old sealed segments and advances logStartOffset, also across a reopen', async () => {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const config = { ...SMALL, retentionMs: 60_000 };
    const log = await openLog(directory, config, { clock });
    const { timestamps, nextOffset } = await appendOverTime(log, clock, 100);
    const sizes = log.segmentSizes();
    expect(sizes.length).toBeGreaterThanOrEqual(4);

    const maxTimestampOf = (index: number) => {
      const end = index + 1 < sizes.length ? sizes[index + 1]!.baseOffset : nextOffset;
      return Math.max(...timestamps.slice(sizes[index]!.baseOffset, end));
    };
    let expected = 0;
    while (expected < sizes.length - 1 && clock.nowMs() - maxTimestampOf(expected) > 60_000) expected++;
    expect(expected).toBeGreaterThanOrEqual(1);
    expect(expected).toBeLessThan(sizes.length - 1);

    expect(await log.applyRetention()).toBe(expected);
    const logStartOffset = sizes[expected]!.baseOffset;
    expect(log.logStartOffset).toBe(logStartOffset);
    expect(log.segmentCount).toBe(sizes.length - expected);
    expect(log.sizeBytes).toBe(sizes.slice(expected).reduce((sum, segment) => sum + segment.sizeBytes, 0));
    expect(log.logEndOffset).toBe(nextOffset);
    expect(segmentFiles(directory).sort()).toEqual(expectedSegmentFiles(sizes.slice(expected).map((segment) => segment.baseOffset)));
    for (const offset of [0, logStartOffset - 1]) {
      const error = await rejection(log.read(offset, 1000));
      expect(error.code).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
      expect(error.message).toContain(`valid offsets are ${logStartOffset} to ${nextOffset}`);
    }
    expect(readBaseOffset((await log.read(logStartOffset, 1)).batches)).toBe(logStartOffset);
    expect(await log.offsetForTimestamp(0)).toBe(logStartOffset);
    expectValues(await readAllRecords(log), logStartOffset, nextOffset);
    expect(await log.applyRetention()).toBe(0);

    await log.close();
    const reopened = await openLog(directory, config, { clock });
    expect(reopened.logStartOffset).toBe(logStartOffset);
    expect(reopened.logEndOffset).toBe(nextOffset);
    expect((await rejection(reopened.read(logStartOffset - 1, 1000))).code).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
    expectValues(await readAllRecords(reopened), logStartOffset, nextOffset);

    // Much later everything is expired: the active segment goes too, after a roll (as in
    // Kafka), and the log is empty at its end offset; appends go on from there.
    clock.advance(24 * 60 * 60 * 1000);
    const activeBase = sizes.at(-1)!.baseOffset;
    expect(await reopened.applyRetention()).toBe(sizes.length - expected);
    expect(reopened.segmentCount).toBe(1);
    expect(reopened.logStartOffset).toBe(nextOffset);
    expect(reopened.logEndOffset).toBe(nextOffset);
    expect(reopened.highWatermark).toBe(nextOffset);
    expect((await rejection(reopened.read(activeBase, 1000))).code).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
    expect((await reopened.read(nextOffset, 1000)).batches.length).toBe(0);
    expect(segmentFiles(directory)).toEqual([`${stem(nextOffset)}.log`]);
    expect(await reopened.applyRetention()).toBe(0); // an empty active segment stays
    expect((await reopened.append(batchOf(nextOffset, 2, clock.nowMs()))).baseOffset).toBe(nextOffset);
    await reopened.close();
    const again = await openLog(directory, config, { clock });
    expect(again.logStartOffset).toBe(nextOffset);
    expectValues(await readAllRecords(again), nextOffset, nextOffset + 2);
  });

  it('when the roll for retention fails: a failed fdatasync of the sealed segment fences and deletes nothing; ENOSPC or EMFILE keep the active segment, appends made meanwhile go into it, and the sealed segments go', async () => {
    const clock = new ManualClock(T0);
    const config = { ...SMALL, retentionMs: 60_000 };
    const fs = new TestFileSystem();
    const directory = tempDir();
    const log = await openLog(directory, config, { clock, fs });
    const { nextOffset } = await appendOverTime(log, clock, 60);
    const sizes = log.segmentSizes();
    clock.advance(24 * 60 * 60 * 1000);

    fs.fileWritesFull = true; // the sealed segment's index files cannot be written
    expect(await log.applyRetention()).toBe(sizes.length - 1);
    fs.fileWritesFull = false;
    expect(log.logStartOffset).toBe(sizes.at(-1)!.baseOffset);
    expect((await log.append(batchOf(nextOffset, 1, T0))).baseOffset).toBe(nextOffset);
    expectValues(await readAllRecords(log), sizes.at(-1)!.baseOffset, nextOffset + 1);

    // The new segment's file cannot be opened (too many open files): an append made while the
    // roll waits for its fdatasync is written to the active segment once the roll gives up.
    fs.openError = { pathIncludes: `${stem(nextOffset + 1)}.log`, code: 'EMFILE' };
    const held = fs.hold('fdatasync');
    const retention = log.applyRetention();
    await held.reached;
    const appended = log.append(batchOf(nextOffset + 1, 1, T0));
    held.release();
    expect(await retention).toBe(0);
    expect((await appended).baseOffset).toBe(nextOffset + 1);
    fs.openError = null;
    expect(log.segmentCount).toBe(1);
    expectValues(await readAllRecords(log), sizes.at(-1)!.baseOffset, nextOffset + 2);
    expect(await log.applyRetention()).toBe(1); // the next check rolls, and the segment goes
    expect(log.logStartOffset).toBe(nextOffset + 2);

    const fenced = await openLog(tempDir(), config, { clock, fs });
    await fenced.append(batchOf(0, 3, clock.nowMs()));
    clock.advance(24 * 60 * 60 * 1000);
    fs.failFdatasync = true;
    expect((await rejection(fenced.applyRetention())).code).toBe(ErrorCode.PARTITION_FENCED);
    fs.failFdatasync = false;
    expect(fenced.segmentCount).toBe(1);
    expect((await rejection(fenced.read(0, 1000))).code).toBe(ErrorCode.PARTITION_FENCED);
  });

  it('keeps the old active segment when the roll for retention fails after the new segment joined the list', async () => {
    const clock = new ManualClock(T0);
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), { ...SMALL, retentionMs: 60_000 }, { clock, fs });
    const { nextOffset } = await appendOverTime(log, clock, 40);
    const sizes = log.segmentSizes();
    clock.advance(24 * 60 * 60 * 1000);
    // The new segment is made, then its producer-state snapshot cannot be written: the old
    // active segment is what a restart replays producer state from, so it must stay.
    fs.fileWritesFullFor = 'producer-state';
    expect(await log.applyRetention()).toBe(sizes.length - 1);
    fs.fileWritesFullFor = null;
    expect(log.logStartOffset).toBe(sizes.at(-1)!.baseOffset);
    expectValues(await readAllRecords(log), sizes.at(-1)!.baseOffset, nextOffset);
    expect(await log.applyRetention()).toBe(0); // and at the next check too
    expect(log.logStartOffset).toBe(sizes.at(-1)!.baseOffset);
    // A later roll writes the snapshot: then the segment goes.
    await log.append(batchOf(nextOffset, 1, T0));
    expect(await log.applyRetention()).toBe(2);
    expect(log.logStartOffset).toBe(nextOffset + 1);
  });

  it('after the active segment went, a crash (no clean close) recovers an empty log at the same end offset', async () => {
    const clock = new ManualClock(T0);
    const directory = tempDir();
    const log = await openLog(directory, { ...SMALL, retentionMs: 60_000 }, { clock });
    const { nextOffset } = await appendOverTime(log, clock, 40);
    clock.advance(24 * 60 * 60 * 1000);
    await log.applyRetention();
    expect(log.logStartOffset).toBe(nextOffset);
    // The files as a crash leaves them: copied while the log is open, with no clean-shutdown marker.
    const crashed = tempDir();
    nodeFs.cpSync(directory, crashed, { recursive: true });
    expect(nodeFs.existsSync(join(crashed, '.clean-shutdown'))).toBe(false);
    const recovered = await openLog(crashed, { ...SMALL, retentionMs: 60_000 }, { clock });
    expect(recovered.logStartOffset).toBe(nextOffset);
    expect(recovered.logEndOffset).toBe(nextOffset);
    expect((await recovered.append(batchOf(nextOffset, 2, clock.nowMs()))).baseOffset).toBe(nextOffset);
    expectValues(await readAllRecords(recovered), nextOffset, nextOffset + 2);
  });

  /** A log whose only segment, the active one, holds offsets 0-2 and has expired (retention.ms 60 s, 120 s on). */
  async function expiredActiveSegment(): Promise<{ directory: string; clock: ManualClock; fs: TestFileSystem; log: PartitionLog }> {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const fs = new TestFileSystem();
    const log = await openLog(directory, { retentionMs: 60_000 }, { clock, fs });
    await log.append(batchOf(0, 3, clock.nowMs()));
    clock.advance(120_000);
    return { directory, clock, fs, log };
  }

  it('rolls the active segment for retention only while no append is being written; appends meanwhile wait for the roll', async () => {
    const { directory, clock, fs, log } = await expiredActiveSegment();

    // An append held at its write: the writer is busy, so the expired active segment stays.
    const writeHeld = fs.hold('writev');
    const busy = log.append(batchOf(3, 1, T0));
    await writeHeld.reached;
    expect(await log.applyRetention()).toBe(0);
    writeHeld.release();
    expect((await busy).baseOffset).toBe(3);
    expect(log.segmentCount).toBe(1);

    // The roll held at the old segment's fdatasync: an append made meanwhile waits for it and
    // lands in the new segment, which retention keeps.
    const syncHeld = fs.hold('fdatasync');
    const retention = log.applyRetention();
    await syncHeld.reached;
    const appended = log.append(batchOf(4, 2, clock.nowMs()));
    syncHeld.release();
    expect(await retention).toBe(1);
    expect((await appended).baseOffset).toBe(4);
    expect(log.logStartOffset).toBe(4);
    expect(log.segmentCount).toBe(1);
    expectValues(await readAllRecords(log), 4, 6);
    expect(segmentFiles(directory)).toEqual([`${stem(4)}.log`]);
  });

  // After a failed fdatasync, Linux reports the error to one caller only: a roll's fdatasync
  // running beside the group commit's could succeed over the pages the other was told were lost,
  // and the roll would then seal the segment and move the recovery checkpoint past them.
  it('rolls for retention only once the fdatasync in flight has ended; when that one failed, the log is fenced and the roll stops there', async () => {
    const { directory, fs, log } = await expiredActiveSegment();
    const syncsBefore = fs.fdatasyncCalls;
    const syncHeld = fs.hold('fdatasync');
    const appended = rejection(log.append(batchOf(3, 1, T0)));
    await syncHeld.reached;
    // The writer ends in microtasks once its group is written: after a turn, only the sync runs.
    await new Promise((resolve) => setImmediate(resolve));
    const retention = rejection(log.applyRetention());
    fs.failNextFdatasyncs = 1;
    syncHeld.release();
    expect((await appended).code).toBe(ErrorCode.PARTITION_FENCED);
    expect((await retention).code).toBe(ErrorCode.PARTITION_FENCED);
    expect(fs.fdatasyncCalls).toBe(syncsBefore + 1);
    expect(segmentFiles(directory)).toEqual([`${stem(0)}.log`]);
    expect(log.highWatermark).toBe(3);
  });

  // A roll for retention whose directory fsync fails after creating the new segment's file:
  // ENOSPC changed nothing durable that removing the file does not undo, so the log stays as it
  // was (retention tries again later; appends go on into the active segment); after EIO, what
  // the directory holds is unknown, and after a restart that empty file could take the place of
  // the records appended to the active segment since: the log is fenced, as by the writer's rolls.
  it.each([
    { code: 'ENOSPC', fenced: false },
    { code: 'EIO', fenced: true },
  ])('when a roll for retention fails to fsync the directory with $code, removes the new file; fences: $fenced', async ({ code, fenced }) => {
    const { directory, fs, log } = await expiredActiveSegment();
    fs.directorySyncError = code;
    const retention = log.applyRetention();
    if (fenced) expect((await rejection(retention)).message).toContain(`rolling to a new segment failed (fsync of the directory after creating`);
    else expect(await retention).toBe(0);
    fs.directorySyncError = null;
    expect(segmentFiles(directory).filter((name) => name.endsWith('.log'))).toEqual([`${stem(0)}.log`]);
    if (fenced) {
      expect((await rejection(log.append(batchOf(3, 1)))).code).toBe(ErrorCode.PARTITION_FENCED);
    } else {
      expect((await log.append(batchOf(3, 1))).baseOffset).toBe(3);
      expect(await log.applyRetention()).toBe(1);
      expect(log.logStartOffset).toBe(4);
    }
  });

  it('by retention.bytes deletes the oldest segments while the rest stays at least the limit', async () => {
    const directory = tempDir();
    const config = { ...SMALL, retentionMs: -1, retentionBytes: 10_000 };
    const log = await openLog(directory, config);
    const appended = await appendSequentially(log, 200);
    const sizes = log.segmentSizes();
    let total = log.sizeBytes;
    let expected = 0;
    while (expected < sizes.length - 1 && total - sizes[expected]!.sizeBytes >= 10_000) total -= sizes[expected++]!.sizeBytes;
    expect(expected).toBeGreaterThanOrEqual(2);

    expect(await log.applyRetention()).toBe(expected);
    expect(log.sizeBytes).toBe(total);
    expect(log.sizeBytes).toBeGreaterThanOrEqual(10_000);
    expect(log.sizeBytes - log.segmentSizes()[0]!.sizeBytes).toBeLessThan(10_000);
    expect(log.logStartOffset).toBe(sizes[expected]!.baseOffset);
    expect(segmentFiles(directory).filter((name) => name.endsWith('.log'))).toHaveLength(sizes.length - expected);
    expectValues(await readAllRecords(log), log.logStartOffset, appended.nextOffset);

    // retention.bytes 0: every segment goes, the active one too (after a roll).
    log.updateConfig({ retentionBytes: 0 });
    await log.applyRetention();
    expect(log.segmentCount).toBe(1);
    expect(log.sizeBytes).toBe(0);
    expect(log.logStartOffset).toBe(appended.nextOffset);
    await log.close();
    const reopened = await openLog(directory, config);
    expect(reopened.logStartOffset).toBe(appended.nextOffset);
    expect(reopened.logEndOffset).toBe(appended.nextOffset);
  });

  it('with -1 limits deletes nothing', async () => {
    const clock = new ManualClock(T0);
    const log = await openLog(tempDir(), { ...SMALL, retentionMs: -1, retentionBytes: -1 }, { clock });
    await appendOverTime(log, clock, 60);
    const count = log.segmentCount;
    clock.advance(365 * 24 * 60 * 60 * 1000);
    expect(await log.applyRetention()).toBe(0);
    expect(log.segmentCount).toBe(count);
    expect(log.logStartOffset).toBe(0);
  });

  // A read holds the segment it reads (acquire/release); retention takes the segment out of the
  // log at once, renames its file, and closes and unlinks it only once no read holds it.
  const DAY_MS = 24 * 60 * 60 * 1000;

  /** A log of several sealed segments, and the values a read of offset 0 must return. */
  async function expiringLog(directory: string, clock: ManualClock, fs: TestFileSystem): Promise<{ log: PartitionLog; activeBase: number; firstSegmentEnd: number }> {
    const config = { ...SMALL, retentionMs: 60_000, messageTimestampAfterMaxMs: 3 * DAY_MS };
    const written = await openLog(directory, config, { clock });
    await appendOverTime(written, clock, 60);
    await written.close();
    // Reopened, so that no segment has its log open until a read opens it. A last record
    // stamped two days on keeps the active segment from expiring: only sealed ones go.
    const log = await openLog(directory, config, { clock, fs });
    await log.append(batchOf(log.logEndOffset, 1, T0 + 2 * DAY_MS));
    const sizes = log.segmentSizes();
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    return { log, activeBase: sizes.at(-1)!.baseOffset, firstSegmentEnd: sizes[1]!.baseOffset };
  }

  function expectFirstRecords(batches: Buffer, firstSegmentEnd: number): void {
    const records = decodeBatches(batches);
    expect(records.length).toBeGreaterThan(0);
    expect(records.at(-1)!.offset).toBeLessThan(firstSegmentEnd);
    records.forEach((record, index) => {
      expect(record.offset).toBe(index);
      expect(record.value?.toString()).toBe(valueFor(index));
    });
  }

  it.each([
    { call: 'read', when: 'at its read call' },
    { call: 'open', when: 'before it opened the log, which it then opens by its .deleted name' },
  ] as const)('lets a read that holds a segment finish before its file is closed and removed: held $when', async ({ call }) => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const clock = new ManualClock(T0);
    const { log, activeBase, firstSegmentEnd } = await expiringLog(directory, clock, fs);
    const held = fs.hold(call);
    const read = log.read(0, 1000);
    await held.reached;

    clock.advance(DAY_MS);
    const retention = log.applyRetention();
    // Out of the log; the held segment's file is renamed, not removed, while the read waits.
    await vi.waitFor(() => expect(log.logStartOffset).toBe(activeBase));
    expect(segmentFiles(directory)).toContain(`${stem(0)}.log.deleted`);
    expect(segmentFiles(directory)).not.toContain(`${stem(0)}.log`);
    expect((await rejection(log.read(0, 1000))).code).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);

    held.release();
    expectFirstRecords((await read).batches, firstSegmentEnd);
    expect(await retention).toBeGreaterThanOrEqual(2);
    expect(segmentFiles(directory).filter((name) => !name.startsWith(stem(activeBase)))).toEqual([]);
  });

  // kill -9 in the middle of a pass: readers had been told the log started past segments whose
  // renames had not happened yet, and the restart brought them back (the log start went back).
  it('takes segments out of the log only once their renames are durable, so a crash in the middle of a pass brings none back that readers were told had gone', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const clock = new ManualClock(T0);
    const { log, activeBase } = await expiringLog(directory, clock, fs);
    const sizes = log.segmentSizes();
    const second = sizes[1]!.baseOffset;
    const held = fs.hold('rename', `${stem(second)}.log.deleted`);
    clock.advance(DAY_MS);
    const retention = log.applyRetention();
    try {
      await held.reached; // the first segment renamed, the second's rename held
      expect(log.logStartOffset).toBe(0);
      expect(decodeBatches((await log.read(0, 1000)).batches)[0]!.offset).toBe(0); // by its .deleted name
      // What a kill -9 now would leave: the files as they are.
      const crashed = tempDir();
      nodeFs.cpSync(directory, crashed, { recursive: true });
      const recovered = await openLog(crashed, SMALL, { clock });
      expect(recovered.logStartOffset).toBe(second);
      await recovered.close();
    } finally {
      held.release();
    }
    expect(await retention).toBe(sizes.length - 1);
    expect(log.logStartOffset).toBe(activeBase);
    await log.close();
    expect((await openLog(directory, SMALL, { clock })).logStartOffset).toBe(activeBase);
  });

  it('keeps renamed segments in the log, readable, while their directory sync fails, and takes them out at the next pass', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const clock = new ManualClock(T0);
    const { log, activeBase } = await expiringLog(directory, clock, fs);
    const sizes = log.segmentSizes();
    fs.directorySyncError = 'EIO';
    clock.advance(DAY_MS);
    await expect(log.applyRetention()).rejects.toThrow(/EIO/);
    expect(log.logStartOffset).toBe(0);
    expect(log.segmentSizes()).toEqual(sizes);
    expect(decodeBatches((await log.read(0, 1000)).batches)[0]!.offset).toBe(0);
    fs.directorySyncError = null;
    expect(await log.applyRetention()).toBe(sizes.length - 1);
    expect(log.logStartOffset).toBe(activeBase);
    expect(segmentFiles(directory).filter((name) => !name.startsWith(stem(activeBase)))).toEqual([]);
    await log.close();
    expect(fs.openFds.size).toBe(0);
  });

  it('keeps in the log the segments a failed rename left whole, and deletes them at the next pass', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const clock = new ManualClock(T0);
    const { log, activeBase } = await expiringLog(directory, clock, fs);
    const sizes = log.segmentSizes();
    const second = sizes[1]!.baseOffset;
    fs.renameError = { pathIncludes: `${stem(second)}.log.deleted`, code: 'EIO' };
    clock.advance(DAY_MS);
    const failure = await rejection(log.applyRetention());
    expect(failure.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(failure.message).toMatch(/could not delete the segment at offset \d+: renaming .* failed \(EIO\); it and the later segments of the pass stay in the log, and the next pass tries again$/);
    // The first segment went; the second failed, and it and those after it are in the log, whole.
    expect(log.logStartOffset).toBe(second);
    expect(log.segmentSizes()).toEqual(sizes.slice(1));
    expect(segmentFiles(directory)).not.toContain(`${stem(0)}.log`);
    expect(segmentFiles(directory).filter((name) => name.endsWith('.deleted'))).toEqual([]);
    expect(decodeBatches((await log.read(second, 1000)).batches)[0]!.offset).toBe(second);

    fs.renameError = null;
    expect(await log.applyRetention()).toBe(sizes.length - 2);
    expect(log.logStartOffset).toBe(activeBase);
    expect(segmentFiles(directory).filter((name) => !name.startsWith(stem(activeBase)))).toEqual([]);
    await log.close();
    expect(fs.openFds.size).toBe(0);
    expect((await openLog(directory, SMALL, { clock })).logStartOffset).toBe(activeBase);
  });

  /**
   * A log of at least five segments, written over two minutes and reopened on a TestFileSystem
   * with no retention by time (so that no segment has its indexes loaded yet), the timestamps
   * of its records by offset, and the total of its segments' sizes.
   */
  async function segmentedLog(): Promise<{ directory: string; fs: TestFileSystem; log: PartitionLog; timestamps: number[]; segments: { baseOffset: number; sizeBytes: number }[]; total: number }> {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const written = await openLog(directory, SMALL, { clock });
    const { timestamps } = await appendOverTime(written, clock, 120);
    await written.close();
    const fs = new TestFileSystem();
    const log = await openLog(directory, { ...SMALL, retentionMs: -1 }, { clock, fs });
    const segments = log.segmentSizes();
    expect(segments.length).toBeGreaterThanOrEqual(5);
    return { directory, fs, log, timestamps, segments, total: segments.reduce((sum, segment) => sum + segment.sizeBytes, 0) };
  }

  it('runs one pass at a time, so that a pass that puts segments back finds the front of the log as it left it', async () => {
    const { fs, log, timestamps, segments, total } = await segmentedLog();
    // Loads the indexes of the first four segments: a pass then takes segments out without waiting for a load.
    expect(await log.offsetForTimestamp(timestamps[segments[3]!.baseOffset]!)).toBe(segments[3]!.baseOffset);
    const [first, second, third] = segments as [(typeof segments)[number], (typeof segments)[number], (typeof segments)[number]];
    log.updateConfig({ retentionBytes: total - first.sizeBytes - second.sizeBytes });
    const held = fs.hold('rename', `${stem(first.baseOffset)}.log.deleted`);
    fs.renameError = { pathIncludes: `${stem(second.baseOffset)}.log.deleted`, code: 'EIO' };
    const one = log.applyRetention(); // takes the first two out, held at the first's rename
    await held.reached;
    log.updateConfig({ retentionBytes: total - first.sizeBytes - second.sizeBytes - third.sizeBytes });
    const two = log.applyRetention(); // would take the third out now, were passes to overlap
    const three = log.applyRetention(); // joins the pass waiting for its turn
    held.release();
    expect((await rejection(one)).code).toBe(ErrorCode.STORAGE_ERROR); // the second's rename failed: it is back in front
    expect((await rejection(two)).code).toBe(ErrorCode.STORAGE_ERROR); // ran after, and failed on it too
    expect((await rejection(three)).message).toBe((await rejection(two)).message);
    expect(fs.renameTargets.filter((target) => target.endsWith(`${stem(second.baseOffset)}.log.deleted`))).toHaveLength(2); // two passes, not three
    expect(log.logStartOffset).toBe(second.baseOffset);
    expect(log.segmentSizes()).toEqual(segments.slice(1));
    fs.renameError = null;
    expect(await log.applyRetention()).toBe(2);
    expect(log.logStartOffset).toBe(segments[3]!.baseOffset);
  });

  it('finds a timestamp in the segments left when retention removes the one whose indexes it is loading', async () => {
    const { directory, fs, log, timestamps, segments, total } = await segmentedLog();
    // The third segment holds the answer; retention by size will remove the first two.
    const target = timestamps[segments[2]!.baseOffset + 1]!;
    const expected = timestamps.findIndex((timestamp) => timestamp >= target);
    expect(await log.offsetForTimestamp(0)).toBe(0); // loads the first segment's indexes only

    const held = fs.hold('readFile');
    const lookup = log.offsetForTimestamp(target);
    await held.reached; // past the first segment (too old), loading the second one's indexes
    log.updateConfig({ retentionBytes: total - segments[0]!.sizeBytes - segments[1]!.sizeBytes });
    const retention = log.applyRetention();
    await vi.waitFor(() => expect(log.logStartOffset).toBe(segments[2]!.baseOffset));
    expect(segmentFiles(directory)).not.toContain(`${stem(segments[1]!.baseOffset)}.log`);

    held.release();
    expect(await lookup).toBe(expected);
    expect(await retention).toBe(2);
    expect(segmentFiles(directory).filter((name) => name.startsWith(stem(segments[1]!.baseOffset)))).toEqual([]);
  });

  // The search starts at the segment's first batch and reads 64 KiB at a time (sparse indexes).
  it.each([
    ['goes on from the log start when retention removes the segment a timestamp search is reading through', (secondBase: number) => Math.floor(secondBase * 0.6)], // past the first 64 KiB read
    ['does not answer a record retention removed while the timestamp search read it, but the first one kept', () => 100], // in the first 64 KiB read
  ])('%s', async (_title, targetIndex) => {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const fs = new TestFileSystem();
    const log = await openLog(directory, { segmentBytes: 256 * 1024, indexIntervalBytes: 1024 * 1024, retentionMs: -1 }, { clock, fs });
    const timestamps: number[] = [];
    while (log.segmentCount < 2 || log.segmentSizes()[1]!.sizeBytes < 4096) {
      await log.append(batchOf(timestamps.length, 50, clock.nowMs()));
      for (let record = 0; record < 50; record++) timestamps.push(clock.nowMs());
      clock.advance(1000);
    }
    const [first, second] = log.segmentSizes();
    const target = timestamps[targetIndex(second!.baseOffset)]!;

    const held = fs.hold('read');
    const lookup = log.offsetForTimestamp(target);
    await held.reached; // the first 64 KiB of the first segment
    log.updateConfig({ retentionBytes: log.sizeBytes - first!.sizeBytes });
    const retention = log.applyRetention();
    await vi.waitFor(() => expect(segmentFiles(directory)).toContain(`${stem(0)}.log.deleted`));

    held.release(); // the read still returns the removed segment's records
    // The records from the target on in the first segment are gone: the answer is the first one left.
    expect(await lookup).toBe(second!.baseOffset);
    expect(await retention).toBe(1);
    expect(log.logStartOffset).toBe(second!.baseOffset);
  });
});

// ---------------------------------------------------------------------------------------------
// segment.ms.

describe('segment.ms', () => {
  it('rolls when the active segment is older than segment.ms at the next append', async () => {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const log = await openLog(directory, { segmentMs: 10_000 }, { clock });
    await log.append(batchOf(0, 1, clock.nowMs()));
    clock.advance(10_000); // exactly segment.ms old: not yet
    await log.append(batchOf(1, 1, clock.nowMs()));
    expect(log.segmentCount).toBe(1);
    clock.advance(1);
    const result = await log.append(batchOf(2, 1, clock.nowMs()));
    expect(result.baseOffset).toBe(2);
    expect(log.segmentCount).toBe(2);
    expect(log.segmentSizes().map((segment) => segment.baseOffset)).toEqual([0, 2]);
    // The new segment's age counts from its first batch.
    clock.advance(10_000);
    await log.append(batchOf(3, 1, clock.nowMs()));
    expect(log.segmentCount).toBe(2);
    clock.advance(1);
    await log.append(batchOf(4, 1, clock.nowMs()));
    expect(log.segmentSizes().map((segment) => segment.baseOffset)).toEqual([0, 2, 4]);
    // An idle log does not roll by itself, and an empty segment never rolls.
    clock.advance(1_000_000);
    expect(log.segmentCount).toBe(3);
    expect(nodeFs.existsSync(join(directory, `${stem(2)}.log`))).toBe(true);
    expectValues(await readAllRecords(log), 0, 5);
  });
});

describe('segment.ms after a restart', () => {
  const DAY_MS = 24 * 60 * 60 * 1000;
  const YEAR_MS = 365 * DAY_MS;

  /** A log-append-time batch of one record at `offset`, its base timestamp (the producer's) at `baseTimestamp`. */
  function logAppendTimeBatch(offset: number, baseTimestamp: number): Buffer {
    const batch = batchOf(offset, 1, T0);
    batch.writeInt16BE(batch.readInt16BE(ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_MASK, ATTRIBUTES_OFFSET);
    writeInt64(batch, BASE_TIMESTAMP_OFFSET, baseTimestamp);
    batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    return batch;
  }

  it.each([
    { first: 'log-append time, base a year ahead', batch: () => logAppendTimeBatch(0, T0 + YEAR_MS), stop: 'clean' },
    { first: 'log-append time, base a year ahead', batch: () => logAppendTimeBatch(0, T0 + YEAR_MS), stop: 'crash' },
    // Its age is the broker's stamp, not the base timestamp a day before it.
    { first: 'log-append time, base a day behind', batch: () => logAppendTimeBatch(0, T0 - DAY_MS), stop: 'clean' },
    { first: 'log-append time, base a day behind', batch: () => logAppendTimeBatch(0, T0 - DAY_MS), stop: 'crash' },
    { first: 'create time, a year ahead', batch: () => batchOf(0, 1, T0 + YEAR_MS), stop: 'clean' },
    { first: 'create time, a year ahead', batch: () => batchOf(0, 1, T0 + YEAR_MS), stop: 'crash' },
  ])("counts the active segment's age by the broker's clock, never from the future: first batch $first, after a $stop stop", async ({ batch, stop }) => {
    let directory = tempDir();
    const clock = new ManualClock(T0);
    const config = { segmentMs: 60_000, messageTimestampAfterMaxMs: 2 * YEAR_MS }; // a topic that takes timestamps ahead
    const written = await openLog(directory, config, { clock });
    await written.append(batch());
    if (stop === 'crash') {
      // The files as a crash leaves them: copied while the log is open (recovery rebuilds the active segment's indexes).
      const crashed = tempDir();
      nodeFs.cpSync(directory, crashed, { recursive: true });
      directory = crashed;
    }
    await written.close();
    const log = await openLog(directory, config, { clock });
    clock.advance(1_000);
    await log.append(batchOf(1, 1, clock.nowMs()));
    expect(log.segmentSizes().map((segment) => segment.baseOffset)).toEqual([0]);
    clock.advance(59_001); // 60,001 ms after the first append, and after the open
    await log.append(batchOf(2, 1, clock.nowMs()));
    expect(log.segmentSizes().map((segment) => segment.baseOffset)).toEqual([0, 2]);
  });
});

// ---------------------------------------------------------------------------------------------
// Disk failures.

describe('disk full', () => {
  it('answers a retry of a batch already in the log as a duplicate when the write of its group fails', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs });
    await log.append(idempotent(1, 0, 0));
    await log.append(idempotent(1, 1, 1));
    fs.diskFull = true;
    // Queued together, so written as one group: the retry of sequence 1 and the new sequence 2.
    const retried = log.append(idempotent(1, 1, 1));
    const next = log.append(idempotent(1, 2, 2));
    expect((await rejection(next)).code).toBe(ErrorCode.DISK_FULL);
    expect(await retried).toMatchObject({ baseOffset: 1, lastOffset: 1, duplicate: true });
    fs.diskFull = false;
    expect(await log.append(idempotent(1, 2, 2))).toMatchObject({ baseOffset: 2, duplicate: false });
  });

  it('refuses, with its group, a retry of a batch of that same group when the group\'s write fails', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs });
    await log.append(idempotent(1, 0, 0));
    fs.diskFull = true;
    // Resent while the first was queued: both in one group, the second a duplicate of the first.
    const first = log.append(idempotent(1, 1, 1), { waitFor: 'written' });
    const resent = log.append(idempotent(1, 1, 1), { waitFor: 'written' });
    expect((await rejection(first)).code).toBe(ErrorCode.DISK_FULL);
    expect((await rejection(resent)).code).toBe(ErrorCode.DISK_FULL);
    fs.diskFull = false;
    expect(await log.append(idempotent(1, 1, 1))).toMatchObject({ baseOffset: 1, duplicate: false });
    expect(log.logEndOffset).toBe(2);
  });

  it('logs the writes it rolled back at most once per 10 s, with the code and what to do, counting the others', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const lines: { level: number; msg: string; strataCode?: string; action?: string; rolledBackSinceLastLine?: number }[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
      const fs = new TestFileSystem();
      const clock = new ManualClock();
      const log = await openLog(tempDir(), {}, { fs, logger, clock });
      fs.diskFull = true;
      for (let attempt = 0; attempt < 5; attempt++) expect((await rejection(log.append(batchOf(0, 1, clock.nowMs())))).code).toBe(ErrorCode.DISK_FULL);
      const rolledBack = (): typeof lines => lines.filter((line) => line.msg === 'append failed and was rolled back');
      expect(rolledBack()).toEqual([expect.objectContaining({ level: 50, strataCode: 'DISK_FULL', action: expect.stringMatching(/^free space/), rolledBackSinceLastLine: 0 })]);
      clock.advance(10_000);
      vi.advanceTimersByTime(10_000);
      expect(rolledBack().map((line) => line.rolledBackSinceLastLine)).toEqual([0, 3]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses the append with DISK_FULL, rolls the file back, and appends continue afterwards', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const config = { indexIntervalBytes: 128 };
    const log = await openLog(directory, config, { fs });
    const appended = await appendSequentially(log, 10);
    const logPath = join(directory, `${stem(0)}.log`);
    const fileBytes = nodeFs.statSync(logPath).size;
    const state = { logEndOffset: log.logEndOffset, highWatermark: log.highWatermark, sizeBytes: log.sizeBytes };
    expect(fileBytes).toBe(state.sizeBytes);

    const syncs = fs.fdatasyncCalls;
    fs.diskFull = true;
    const error = await rejection(log.append(batchOf(appended.nextOffset, 5)));
    expect(error.code).toBe(ErrorCode.DISK_FULL);
    // The cut is made durable before the refusal: half the group may have reached the disk.
    expect(fs.fdatasyncCalls).toBe(syncs + 1);
    // A group of concurrent appends fails together.
    const group = await Promise.allSettled(range(0, 5).map((index) => log.append(batchOf(appended.nextOffset, countFor(index)))));
    for (const outcome of group) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: ErrorCode.DISK_FULL });
    }
    expect({ logEndOffset: log.logEndOffset, highWatermark: log.highWatermark, sizeBytes: log.sizeBytes }).toEqual(state);
    expect(nodeFs.statSync(logPath).size).toBe(fileBytes);
    expect(log.fenced).toBeNull();
    expectValues(await readAllRecords(log), 0, appended.nextOffset); // nothing partial is visible

    fs.diskFull = false;
    const more = await appendSequentially(log, 10);
    expect(more.batches.length).toBe(10);
    expect(log.logEndOffset).toBe(more.nextOffset);
    expect(nodeFs.statSync(logPath).size).toBe(fileBytes + more.batches.reduce((sum, batch) => sum + batch.length, 0));
    expectValues(await readAllRecords(log), 0, more.nextOffset);
    for (let offset = 0; offset < more.nextOffset; offset++) {
      const { batches } = await log.read(offset, 1);
      expect(readBaseOffset(batches)).toBeLessThanOrEqual(offset);
      expect(readLastOffset(batches)).toBeGreaterThanOrEqual(offset);
    }

    await log.close();
    const reopened = await openLog(directory, config);
    expect(reopened.recovery).toBeNull();
    expectValues(await readAllRecords(reopened), 0, more.nextOffset);
  });

  // "Nothing was written" holds only once the cut is durable. A cut that failed, or whose
  // fdatasync failed, may leave the group's whole batches in the log after a restart.
  for (const failing of ['the cut', "the cut's fdatasync"] as const) {
    it(`refuses with the fence, which does not say nothing was written, when ${failing} of a failed write fails`, async () => {
      const fs = new TestFileSystem();
      const log = await openLog(tempDir(), {}, { fs });
      const appended = await appendSequentially(log, 3);
      fs.diskFull = true;
      if (failing === 'the cut') fs.ftruncateError = 'EIO';
      else fs.failNextFdatasyncs = 1;
      const error = await rejection(log.append(batchOf(appended.nextOffset, 5)));
      expect(error.code).toBe(ErrorCode.PARTITION_FENCED);
      expect(error.message).not.toContain('nothing was written');
      if (failing === 'the cut') expect(error.message).toMatch(/failed \(ENOSPC\) and could not be rolled back \(.*EIO.*\); its records may be in the log after a restart\. Restart to recover$/);
      else expect(error.message).toMatch(/fdatasync of .* after rolling back a failed write failed/);
      expect(log.fenced).toBe(error);
      fs.diskFull = false;
      fs.ftruncateError = null;
      expect((await rejection(log.append(batchOf(appended.nextOffset, 1)))).code).toBe(ErrorCode.PARTITION_FENCED);
      await log.close();
    });
  }

  // A sealed segment that lost its last batch, followed by an active segment with nothing in it
  // (its first write failed and was rolled back): a read of a lost offset meets no later batch
  // that shows the gap, so the short segment itself must say so.
  it('fences a read of an offset lost from the end of a sealed segment when the active segment after it is empty', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, { segmentBytes: 1024 }, { fs });
    let next = 0;
    let lostPosition = 0;
    while (log.sizeBytes + batchOf(next, 3).length <= 1024) {
      lostPosition = log.sizeBytes;
      await log.append(batchOf(next, 3));
      next += 3;
    }
    fs.diskFull = true;
    expect((await rejection(log.append(batchOf(next, 3)))).code).toBe(ErrorCode.DISK_FULL); // rolls, then fails
    fs.diskFull = false;
    await log.close();
    const sealed = join(directory, `${'0'.repeat(20)}`);
    nodeFs.truncateSync(`${sealed}.log`, lostPosition);
    // Its index entries for the bytes kept only, so that it passes the checks at load.
    const entries = nodeFs.readFileSync(`${sealed}.index`).subarray(0, -INDEX_TRAILER_BYTES);
    let kept = 0;
    while (kept + 8 <= entries.length && entries.readUInt32BE(kept + 4) < lostPosition) kept += 8;
    nodeFs.writeFileSync(`${sealed}.index`, indexFileBytes(entries.subarray(0, kept)));

    const reopened = await openLog(directory, { segmentBytes: 1024 });
    expect(reopened.recovery).toBeNull();
    expect(reopened.logEndOffset).toBe(next);
    const error = await rejection(reopened.read(next - 1, 1024));
    expect(error.code).toBe(ErrorCode.PARTITION_FENCED);
    expect(error.message).toContain(`${sealed}.log`);
    expect(reopened.fenced).toBe(error);
    await reopened.close();
  });

  it('a roll whose directory fsync fails leaves no segment file behind, so records appended to the old segment meanwhile stay readable after a reopen', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, SMALL, { fs });
    while (log.sizeBytes + 300 < 4096) await log.append(batchOf(log.logEndOffset, 1));
    const rollAt = log.logEndOffset;
    const logFiles = () => nodeFs.readdirSync(directory).filter((name) => name.endsWith('.log'));
    fs.directorySyncError = 'ENOSPC';
    expect((await rejection(log.append(batchOf(rollAt, 20)))).code).toBe(ErrorCode.DISK_FULL); // does not fit: a roll, which fails
    expect(logFiles()).toEqual(['00000000000000000000.log']);
    fs.directorySyncError = null;
    expect((await log.append(batchOf(rollAt, 1))).baseOffset).toBe(rollAt); // fits the old segment
    while (log.segmentCount < 2) await log.append(batchOf(log.logEndOffset, 5));
    const end = log.logEndOffset;
    await log.close();

    const reopened = await openLog(directory, SMALL);
    expect(reopened.segmentCount).toBe(2);
    expect(readBaseOffset((await reopened.read(rollAt, 1)).batches)).toBe(rollAt);
    expectValues(await readAllRecords(reopened), 0, end);
  });

  // A write that fails on an empty active segment is rolled back together with the segment's
  // `rollStartMs`, so segment.ms counts the segment's age from the first batch that is written,
  // not from the failed attempt; otherwise the segment would roll too early.
  it('does not count a rolled-back write towards the segment.ms age of an empty segment', async () => {
    const fs = new TestFileSystem();
    const clock = new ManualClock(T0);
    const log = await openLog(tempDir(), { segmentMs: 10_000 }, { fs, clock });
    fs.diskFull = true;
    expect((await rejection(log.append(batchOf(0, 1, clock.nowMs())))).code).toBe(ErrorCode.DISK_FULL);
    fs.diskFull = false;
    clock.advance(20_000);
    await log.append(batchOf(0, 1, clock.nowMs())); // the segment's first batch, now
    await log.append(batchOf(1, 1, clock.nowMs())); // 0 ms later: no roll is due
    expect(log.segmentCount).toBe(1);
  });
});

describe('repair and idempotent producers', () => {
  it('after a repair cuts the log below the producer-state snapshot, a crash and a retry still find the batch appended since', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    for (let sequence = 0; log.segmentCount < 3; sequence++) await log.append(idempotent(1, sequence, log.logEndOffset));
    const damaged = tempDir(); // a crash copy (the snapshot was saved at the last roll)...
    nodeFs.cpSync(directory, damaged, { recursive: true });
    nodeFs.rmSync(join(damaged, 'recovery-point.checkpoint')); // ...scanned from the start
    const firstLog = join(damaged, '00000000000000000000.log');
    const bytes = nodeFs.readFileSync(firstLog);
    const positions: number[] = [];
    forEachBatch(bytes, (position) => positions.push(position));
    bytes[positions[2]! - 1]! ^= 0xff; // the last byte of the second batch (offset 1)
    nodeFs.writeFileSync(firstLog, bytes);

    const repaired = await openLog(damaged, SMALL, { repair: true });
    expect(repaired.logEndOffset).toBe(1);
    const retried = idempotent(2, 0, 1);
    expect(await repaired.append(Buffer.from(retried))).toMatchObject({ baseOffset: 1, duplicate: false });
    const crashed = tempDir();
    nodeFs.cpSync(damaged, crashed, { recursive: true });

    const reopened = await openLog(crashed, SMALL);
    expect(reopened.segmentCount).toBe(1); // no roll saved a new snapshot in between
    expect(await reopened.append(Buffer.from(retried))).toMatchObject({ baseOffset: 1, duplicate: true });
    expect(reopened.logEndOffset).toBe(2);
  });

  it('copies the whole damaged tail to quarantine when reads return fewer bytes than asked for', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    await appendSequentially(log, 80);
    const damaged = tempDir(); // a crash copy, scanned from the start
    nodeFs.cpSync(directory, damaged, { recursive: true });
    nodeFs.rmSync(join(damaged, 'recovery-point.checkpoint'));
    const firstLog = join(damaged, `${stem(0)}.log`);
    const bytes = nodeFs.readFileSync(firstLog);
    const positions: number[] = [];
    forEachBatch(bytes, (position) => positions.push(position));
    const damagedAt = positions[2]!;
    bytes[damagedAt + 40]! ^= 0xff; // in the third batch's CRC-covered header
    nodeFs.writeFileSync(firstLog, bytes);

    const fs = new TestFileSystem();
    fs.readBytesMax = 100;
    const repaired = await openLog(damaged, SMALL, { repair: true, fs });
    const quarantine = repaired.recovery?.quarantined?.directory;
    expect(quarantine).toBeDefined();
    const copied = nodeFs.readFileSync(join(quarantine!, `${stem(0)}.log.from-byte-${damagedAt}`));
    expect(copied.length).toBe(bytes.length - damagedAt);
    expect(copied.equals(bytes.subarray(damagedAt)), 'the quarantined bytes are the damaged tail, byte for byte').toBe(true);
  });
});

describe('small writes and fdatasyncs on the event loop (inlineIo)', () => {
  /**
   * A budget whose clock stands still: every call takes 0 ms, so credit, the average durations
   * and the spacing of syncs never send a call to the pool, whatever the disk's speed; only the
   * size bound and other busy logs do.
   */
  const alwaysInline = (settings: Partial<InlineIoSettings> = {}) => new InlineIoBudget({ settings, now: () => 0 });

  it('writes and fdatasyncs small appends on the loop, acknowledges them durable, and a reopen finds them', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, {}, { fs, inlineIo: alwaysInline() });
    const appended = await appendSequentially(log, 20);
    expect(fs.inlineWritevCalls).toBe(20);
    expect(fs.inlineFdatasyncCalls).toBe(20);
    expect(fs.fdatasyncCalls).toBe(20); // none on the pool
    expect(log.ioCalls).toEqual({ eventLoop: { write: 20, fdatasync: 20 }, threadPool: { write: 0, fdatasync: 0 } });
    expect(log.highWatermark).toBe(appended.nextOffset);
    expect(log.writtenBytes.buffered).toBe(log.sizeBytes);
    await log.close();
    const reopened = await openLog(directory);
    expectValues(await readAllRecords(reopened), 0, appended.nextOffset);
  });

  it('hands a write or fdatasync over the size bound to the thread pool', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs, inlineIo: alwaysInline({ bytesMax: 100 }) });
    const batch = batchOf(0, 5);
    expect(batch.length).toBeGreaterThan(100);
    await log.append(batch);
    expect(fs.inlineWritevCalls).toBe(0);
    expect(fs.inlineFdatasyncCalls).toBe(0);
    expect(fs.fdatasyncCalls).toBe(1);
    expect(log.ioCalls).toEqual({ eventLoop: { write: 0, fdatasync: 0 }, threadPool: { write: 1, fdatasync: 1 } });
    expect(log.highWatermark).toBe(5);
  });

  it('refuses with DISK_FULL when an inline write fills the disk, rolls the file back and goes on', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, {}, { fs, inlineIo: alwaysInline() });
    const appended = await appendSequentially(log, 5);
    const logPath = join(directory, `${stem(0)}.log`);
    const sizeBefore = log.sizeBytes;
    fs.diskFull = true;
    expect((await rejection(log.append(batchOf(appended.nextOffset, 3)))).code).toBe(ErrorCode.DISK_FULL);
    expect(fs.inlineWritevCalls).toBe(6);
    expect(nodeFs.statSync(logPath).size).toBe(sizeBefore); // the half-written group is cut off
    expect(log.fenced).toBeNull();
    fs.diskFull = false;
    const more = await appendSequentially(log, 3);
    expectValues(await readAllRecords(log), 0, more.nextOffset);
  });

  it('fences the partition when an inline fdatasync fails, as when a pooled one does', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs, inlineIo: alwaysInline() });
    await log.append(batchOf(0, 2));
    fs.failFdatasync = true;
    const error = await rejection(log.append(batchOf(2, 1)));
    expect(fs.inlineFdatasyncCalls).toBe(2);
    expect(error.code).toBe(ErrorCode.PARTITION_FENCED);
    expect(error.message).toContain('fdatasync');
    expect(log.highWatermark).toBe(2);
    fs.failFdatasync = false;
    expect((await rejection(log.append(batchOf(3, 1)))).code).toBe(ErrorCode.PARTITION_FENCED);
  });

  it('an append made by a high-watermark listener, while an inline fdatasync advances the watermark, is written and synced too', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs, inlineIo: alwaysInline() });
    let fromListener: Promise<AppendResult> | null = null;
    const unsubscribe = log.onHighWatermark(() => {
      if (fromListener === null) fromListener = log.append(batchOf(2, 1));
    });
    expect(await log.append(batchOf(0, 2))).toMatchObject({ baseOffset: 0, lastOffset: 1 });
    expect(fromListener).not.toBeNull();
    expect(await fromListener!).toMatchObject({ baseOffset: 2, lastOffset: 2 });
    unsubscribe();
    expect(log.highWatermark).toBe(3);
    expect(fs.inlineFdatasyncCalls).toBe(2);
  });

  it.each([
    ['the answer to an append it acknowledged', 'durable'],
    ['the records for a reader it woke', 'written'],
  ] as const)('lets the event loop send %s before it writes the next group', async (_, waitFor) => {
    // The server answers and pushes in an immediate (HTTP/2 sends there); a write and fdatasync
    // on the loop run first would hold that back.
    const events: string[] = [];
    let second: Promise<AppendResult> | null = null;
    const fs = new (class extends TestFileSystem {
      override writevSync(fd: number, buffers: readonly Buffer[], position: number): number {
        events.push(`write ${this.inlineWritevCalls + 1}`);
        second ??= log.append(batchOf(3, 1)); // arrives while the first group is written
        return super.writevSync(fd, buffers, position);
      }
    })();
    const log = await openLog(tempDir(), {}, { fs, inlineIo: alwaysInline() });
    const sent = () => setImmediate(() => events.push('sent after the first fdatasync'));
    if (waitFor === 'durable') {
      await log.append(batchOf(0, 3)).then(sent);
    } else {
      // Acknowledged on write, before its fdatasync: only a reader waits for that.
      const unsubscribe = log.onHighWatermark(() => {
        unsubscribe();
        sent();
      });
      await log.append(batchOf(0, 3), { waitFor });
    }
    expect(await second!).toMatchObject({ baseOffset: 3, lastOffset: 3 });
    expect(events).toEqual(['write 1', 'sent after the first fdatasync', 'write 2']);
    expect(fs.inlineFdatasyncCalls).toBe(2);
  });
});

describe('fdatasync failure', () => {
  it('after a crash between a write and its fdatasync, recovery makes the written tail durable before publishing it', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, {}, { fs });
    await log.append(batchOf(0, 2));
    const sync = fs.hold('fdatasync');
    const unacknowledged = log.append(batchOf(2, 3));
    await sync.reached; // written, not yet synced: the crash comes now
    const crashed = tempDir();
    nodeFs.cpSync(directory, crashed, { recursive: true });
    sync.release();
    await unacknowledged;

    const recoveryFs = new TestFileSystem();
    const recoverySync = recoveryFs.hold('fdatasync');
    let opened = false;
    const reopening = openLog(crashed, {}, { fs: recoveryFs }).finally(() => (opened = true));
    try {
      await Promise.race([recoverySync.reached, reopening]);
      expect(opened).toBe(false); // the tail (offsets 2-4, found valid) is not published unsynced
    } finally {
      recoverySync.release();
    }
    const recovered = await reopening;
    expect(recovered.recovery?.bytesTruncated).toBe(0);
    expect(recovered.highWatermark).toBe(5);
  });

  it('a recovery whose fdatasync fails does not open the log', async () => {
    const directory = tempDir();
    const log = await openLog(directory);
    await log.append(batchOf(0, 2));
    const crashed = tempDir();
    nodeFs.cpSync(directory, crashed, { recursive: true }); // open: no clean-shutdown marker
    const failing = new TestFileSystem();
    failing.failFdatasync = true;
    failing.bootIdValue = 'boot-1';
    const error = await openLog(crashed, {}, { fs: failing }).then(() => null, (thrown: unknown) => thrown as Error);
    expect(error?.message).toMatch(/recovery could not fdatasync .*00000000000000000000\.log \(EIO\)/);
    expect([...failing.openFds], 'descriptors the failed open left open').toEqual([]);
    // Recorded: a start on the same boot, whose fdatasync would work, still does not open it.
    const sameBoot = new TestFileSystem();
    sameBoot.bootIdValue = 'boot-1';
    expect((await openFailure(openLog(crashed, {}, { fs: sameBoot }))).message).toMatch(/failed before the broker restarted \(recovery could not fdatasync .*\), and the machine has not restarted since/);
  });

  // After a failed fdatasync, the kernel may keep the pages it failed to write, marked clean: a
  // recovery on the same boot would read them back as valid and serve them.
  describe('a partition fenced by a failed fdatasync', () => {
    async function fencedBySync(): Promise<string> {
      const directory = tempDir();
      const fs = new TestFileSystem();
      fs.bootIdValue = 'boot-1';
      const log = await openLog(directory, {}, { fs });
      await log.append(batchOf(0, 2));
      fs.failNextFdatasyncs = 1;
      expect((await rejection(log.append(batchOf(2, 1)))).message).toContain('fdatasync of');
      await log.close();
      expect(nodeFs.readFileSync(join(directory, 'sync-failed'), 'utf8')).toMatch(/^strata-sync-failed 1\nboot boot-1\nproblem fdatasync of .*00000000000000000000\.log failed \(EIO: simulated failure\)\n$/);
      return directory;
    }

    it('is not opened again on the same boot', async () => {
      const directory = await fencedBySync();
      const sameBoot = new TestFileSystem();
      sameBoot.bootIdValue = 'boot-1';
      const error = await openFailure(openLog(directory, {}, { fs: sameBoot }));
      expect(error.message).toMatch(/^an fdatasync of this partition's log failed before the broker restarted \(fdatasync of .* failed \(EIO: simulated failure\)\), and the machine has not restarted since: .* Check the disk, then restart the machine, not only the broker$/);
      expect(nodeFs.existsSync(join(directory, 'sync-failed'))).toBe(true);
    });

    it('is recovered from what the disk holds after the machine restarted, and the marker goes', async () => {
      const directory = await fencedBySync();
      const restarted = new TestFileSystem();
      restarted.bootIdValue = 'a-later-boot';
      const log = await openLog(directory, {}, { fs: restarted });
      expect(log.recovery).not.toBeNull();
      expect(nodeFs.existsSync(join(directory, 'sync-failed'))).toBe(false);
      expectValues((await readAllRecords(log)).slice(0, 2), 0, 2); // the acknowledged ones
      const end = log.logEndOffset;
      expect((await log.append(batchOf(end, 1))).baseOffset).toBe(end);
    });

    it('where the boot cannot be told, is not opened until the marker is removed by hand', async () => {
      const directory = await fencedBySync();
      const unknown = new TestFileSystem();
      unknown.bootIdValue = null;
      expect((await openFailure(openLog(directory, {}, { fs: unknown }))).message).toContain(`whether the machine has restarted since cannot be told: the kernel may still hold bytes it failed to write, and a recovery would serve them. Check the disk and restart the machine, then remove ${join(directory, 'sync-failed')}`);
      nodeFs.rmSync(join(directory, 'sync-failed'));
      expect((await openLog(directory, {}, { fs: unknown })).logEndOffset).toBeGreaterThanOrEqual(2);
    });
  });

  it('an open that fails loading the producer state leaves no file open', async () => {
    const directory = tempDir();
    const written = await openLog(directory, SMALL);
    await appendSequentially(written, 40);
    await written.close();
    const fs = new (class extends TestFileSystem {
      override async readFile(path: string): Promise<Buffer | null> {
        if (path.endsWith('producer-state.checkpoint')) throw errnoError('EIO');
        return super.readFile(path);
      }
    })();
    const error = await openLog(directory, SMALL, { fs }).then(() => null, (thrown: unknown) => thrown as NodeJS.ErrnoException);
    expect(error?.code).toBe('EIO');
    expect([...fs.openFds], 'descriptors the failed open left open').toEqual([]);
  });

  it('fences the partition: pending and later appends and reads fail with PARTITION_FENCED', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, {}, { fs });
    await log.append(batchOf(0, 2));
    fs.failFdatasync = true;
    const outcomes = await Promise.allSettled(range(0, 5).map((index) => log.append(batchOf(2 + index, 1))));
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      const reason = (outcome as PromiseRejectedResult).reason as StrataError;
      expect(reason).toBeInstanceOf(StrataError);
      expect(reason.code).toBe(ErrorCode.PARTITION_FENCED);
      expect(reason.message).toMatch(/fdatasync of .* failed \(.*\); check the disk, then restart the machine, not only the broker, to recover/);
    }
    expect(log.fenced?.code).toBe(ErrorCode.PARTITION_FENCED);
    expect(log.highWatermark).toBe(2);

    fs.failFdatasync = false; // the device recovers; the partition stays fenced
    expect((await rejection(log.append(batchOf(7, 1)))).code).toBe(ErrorCode.PARTITION_FENCED);
    expect((await rejection(log.read(0, 1000))).code).toBe(ErrorCode.PARTITION_FENCED);
    expect((await rejection(log.applyRetention())).code).toBe(ErrorCode.PARTITION_FENCED);

    await log.close();
    expect(nodeFs.existsSync(join(directory, '.clean-shutdown'))).toBe(false);
  });

  /** A log of 1 KiB segments on `fs`, filled up to just below a roll, and the offset of the batch that would roll it. */
  async function logBeforeRoll(fs: TestFileSystem): Promise<{ log: PartitionLog; next: number }> {
    const log = await openLog(tempDir(), { segmentBytes: 1024 }, { fs });
    let next = 0;
    while (log.sizeBytes + batchOf(next, 3).length <= 1024) {
      await log.append(batchOf(next, 3));
      next += 3;
    }
    return { log, next };
  }

  /**
   * Fills a log of 1 KiB segments up to just below a roll, lets `fail` break the file system, and
   * returns the error of the append that rolls (or of the close racing it).
   */
  async function rollFailure(fail: (fs: TestFileSystem) => void): Promise<StrataError> {
    const fs = new TestFileSystem();
    const { log, next } = await logBeforeRoll(fs);
    fail(fs);
    const appended = log.append(batchOf(next, 3)); // rolls first
    const closed = log.close();
    closed.catch(() => undefined);
    return rejection(Promise.race([appended, closed]));
  }

  // An I/O error while rolling (the old segment's fdatasync, writing its index files, creating
  // the new segment) fences the partition and settles the append that triggered the roll, instead
  // of escaping the writer as an unhandled rejection and leaving the append pending forever.
  it('fences the partition when the fdatasync of a roll fails', async () => {
    const error = await rollFailure((fs) => {
      fs.failFdatasync = true;
    });
    expect(error.code).toBe(ErrorCode.PARTITION_FENCED);
  });

  // An fdatasync that fails with ENOSPC (thin-provisioned or network storage) is still a failed
  // fdatasync: the kernel may have dropped the sealed segment's pages, so it fences too.
  it('fences, not just refuses, when the fdatasync of a roll fails with ENOSPC', async () => {
    const error = await rollFailure((fs) => {
      fs.failFdatasync = true;
      fs.fdatasyncErrorCode = 'ENOSPC';
    });
    expect(error.code).toBe(ErrorCode.PARTITION_FENCED);
    expect(error.message).toContain('fdatasync of the segment being sealed failed (ENOSPC); check the disk, then restart the machine');
  });

  // Too many open files when the roll opens the new segment's log: the append is refused as
  // retriable, nothing fenced, and the next append rolls once a descriptor is free.
  it('refuses with a retriable STORAGE_ERROR, not a fence, when the new segment cannot be opened for too many open files', async () => {
    const fs = new TestFileSystem();
    const { log, next } = await logBeforeRoll(fs);
    fs.openError = { pathIncludes: `${stem(next)}.log`, code: 'EMFILE' };
    const error = await rejection(log.append(batchOf(next, 3)));
    expect(error.code).toBe(ErrorCode.STORAGE_ERROR);
    expect(error.message).toBe(`too many open files (EMFILE): cannot start a new segment for ${log.name}; nothing was written; retry, and raise the broker's open-file limit (LimitNOFILE, ulimit -n) if it goes on`);
    expect(log.fenced).toBeNull();
    fs.openError = null;
    // The directory, opened to make the new file's name durable: the file goes again, nothing fenced.
    fs.directorySyncError = 'ENFILE';
    expect(await rejection(log.append(batchOf(next, 3)))).toMatchObject({ code: ErrorCode.STORAGE_ERROR, message: expect.stringContaining('too many open files (ENFILE)') });
    expect(log.fenced).toBeNull();
    // Each failed roll counts as a failed write (strata_log_write_failures_total), as it refuses
    // what was queued behind it.
    expect(log.writeFailures).toEqual(new Map([[ErrorCode.STORAGE_ERROR, 2]]));
    fs.directorySyncError = null;
    expect((await log.append(batchOf(next, 3))).baseOffset).toBe(next);
    expect(log.segmentCount).toBe(2);
    expectValues(await readAllRecords(log), 0, next + 3);
    await log.close();
  });

  // ENOSPC while the roll writes the sealed segment's index files refuses the append with
  // DISK_FULL, like a full disk during an ordinary write.
  it('refuses with DISK_FULL when the disk fills while rolling', async () => {
    const error = await rollFailure((fs) => {
      fs.fileWritesFull = true;
    });
    expect(error.code).toBe(ErrorCode.DISK_FULL);
  });
});

// ---------------------------------------------------------------------------------------------
// Corruption met outside a read.

describe('corruption met while loading a sealed segment\'s indexes', () => {
  // Retention and timestamp searches load a sealed segment's indexes before any read does. The
  // damage they meet must fence the partition as a read's would, not leave the segment cut to
  // its valid prefix for later reads to skip the records after it.
  it.each([
    { call: 'offsetForTimestamp', run: (log: PartitionLog) => log.offsetForTimestamp(T0 + 1_000_000) },
    { call: 'applyRetention', run: (log: PartitionLog) => log.applyRetention() },
  ])('fences the partition when $call meets it first', async ({ run }) => {
    const directory = tempDir();
    const written = await openLog(directory, SMALL);
    await appendSequentially(written, 80);
    const nextBase = written.segmentSizes()[1]!.baseOffset;
    await written.close();
    const logPath = join(directory, `${stem(0)}.log`);
    const bytes = nodeFs.readFileSync(logPath);
    bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0xff; // in the last batch's records
    nodeFs.writeFileSync(logPath, bytes);
    nodeFs.unlinkSync(join(directory, `${stem(0)}.timeindex`)); // so the indexes are rebuilt from the log

    const log = await openLog(directory, SMALL);
    const error = await rejection(run(log));
    expect(error.code).toBe(ErrorCode.PARTITION_FENCED);
    expect(error.message).toContain(logPath);
    expect(log.fenced).not.toBeNull();
    const read = await log.read(nextBase - 1, 1 << 20).then(
      ({ batches }) => `a batch from offset ${readBaseOffset(batches)}`,
      (thrown: unknown) => (thrown as StrataError).code,
    );
    expect(read, `read(${nextBase - 1}), in the damaged batch`).toBe(ErrorCode.PARTITION_FENCED);
  });
});

// ---------------------------------------------------------------------------------------------
// Transient I/O errors.

describe('a transient I/O error', () => {
  /** A log of several sealed segments, reopened on `fs` so that none but the active one is open. */
  async function reopenedLog(directory: string, clock: ManualClock, fs: TestFileSystem, config: Partial<LogConfig>): Promise<PartitionLog> {
    const written = await openLog(directory, config, { clock });
    await appendOverTime(written, clock, 60);
    await written.close();
    const log = await openLog(directory, config, { clock, fs });
    expect(log.segmentCount).toBeGreaterThanOrEqual(3);
    return log;
  }

  /** The failure's code and the errno under it: STORAGE_ERROR (UNAVAILABLE to a client) over the failed call's. */
  async function errnoOf(promise: Promise<unknown>): Promise<string | undefined> {
    const error = await promise.then(() => null, (thrown: unknown) => thrown as StrataError);
    return error === null ? undefined : `${error.code} (${(error.cause as NodeJS.ErrnoException | undefined)?.code})`;
  }

  it('opening a segment fails that read only, as STORAGE_ERROR (UNAVAILABLE to a client) naming the errno: the next read opens the file again', async () => {
    const fs = new TestFileSystem();
    const log = await reopenedLog(tempDir(), new ManualClock(T0), fs, SMALL);
    fs.openError = { pathIncludes: `${stem(0)}.log`, code: 'EIO' };
    const failed = await log.read(0, 1000).then(() => null, (error: unknown) => error);
    expect(failed).toMatchObject({ code: ErrorCode.STORAGE_ERROR, message: `reading partition ${log.name} failed: a file operation failed with EIO; nothing changed, retry (the broker log names the file)` });
    fs.openError = null;
    const records = decodeBatches((await log.read(0, 1000)).batches);
    expect(records[0]?.value?.toString()).toBe(valueFor(0));
  });

  it('loading a segment\'s indexes fails that call only: reads and retention go on afterwards', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const clock = new ManualClock(T0);
    const log = await reopenedLog(directory, clock, fs, { ...SMALL, retentionMs: 60_000 });
    // Without its index, the first segment's indexes are rebuilt from its log, which must be opened.
    nodeFs.unlinkSync(join(directory, `${stem(0)}.index`));
    clock.advance(24 * 60 * 60 * 1000);
    fs.openError = { pathIncludes: `${stem(0)}.log`, code: 'EIO' };
    expect(await errnoOf(log.applyRetention())).toBe('STORAGE_ERROR (EIO)');
    expect(await errnoOf(log.read(0, 1000))).toBe('STORAGE_ERROR (EIO)');
    fs.openError = null;
    expect(decodeBatches((await log.read(0, 1000)).batches)[0]?.value?.toString()).toBe(valueFor(0));
    const segments = log.segmentCount;
    expect(await log.applyRetention()).toBe(segments); // the active one too, after a roll
    expect(log.segmentCount).toBe(1);
    expect(log.logStartOffset).toBe(log.logEndOffset);
  });
});

// ---------------------------------------------------------------------------------------------
// Closing and the directory layout.

describe('close', () => {
  it('is idempotent, finishes queued appends and refuses appends afterwards', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    const appends = range(0, 50).map((index) => log.append(batchOf(index, 1)));
    const first = log.close();
    const second = log.close();
    expect(second).toBe(first);
    const results = await Promise.all(appends);
    expect(results.map((result) => result.baseOffset)).toEqual(range(0, 50));
    await first;
    await log.close();
    const error = await rejection(log.append(batchOf(50, 1)));
    expect(error.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect((await rejection(log.applyRetention())).code).toBe(ErrorCode.FAILED_PRECONDITION);
    const reopened = await openLog(directory, SMALL);
    expect(reopened.logEndOffset).toBe(50);
    expectValues(await readAllRecords(reopened), 0, 50);
  });

  it('leaves segment files named by 20-digit base offset, the checkpoint and the clean-shutdown marker', async () => {
    const directory = tempDir();
    const log = await openLog(directory, SMALL);
    const appended = await appendSequentially(log, 60);
    const segments = log.segmentSizes();
    expect(segments.length).toBeGreaterThanOrEqual(3);
    await log.close();

    const names = nodeFs.readdirSync(directory).sort();
    const expected = segments.flatMap(({ baseOffset }) => ['.log', '.index', '.timeindex'].map((suffix) => stem(baseOffset) + suffix));
    expect(names).toEqual([...expected, 'producer-state.checkpoint', 'recovery-point.checkpoint', '.clean-shutdown'].sort());
    for (const { baseOffset, sizeBytes } of segments) {
      expect(stem(baseOffset)).toMatch(/^\d{20}$/);
      expect(nodeFs.statSync(join(directory, `${stem(baseOffset)}.log`)).size).toBe(sizeBytes);
      // Whole entries and a trailer whose checksum matches them.
      expect(indexFileEntries(nodeFs.readFileSync(join(directory, `${stem(baseOffset)}.index`)), 8)).toBeInstanceOf(Buffer);
      expect(indexFileEntries(nodeFs.readFileSync(join(directory, `${stem(baseOffset)}.timeindex`)), 12)).toBeInstanceOf(Buffer);
    }
    expect(decodeCheckpoint(nodeFs.readFileSync(join(directory, 'recovery-point.checkpoint'), 'utf8'))).toBe(appended.nextOffset);
    expect(nodeFs.statSync(join(directory, '.clean-shutdown')).size).toBe(0);

    const reopened = await openLog(directory, SMALL);
    expect(nodeFs.existsSync(join(directory, '.clean-shutdown'))).toBe(false);
    expect(reopened.segmentSizes()).toEqual(segments);
  });

  it('lets a read under way finish before it closes the segment files', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const written = await openLog(directory, SMALL);
    await appendSequentially(written, 60);
    await written.close();
    const log = await openLog(directory, SMALL, { fs });
    const held = fs.hold('read');
    const read = log.read(0, 1000);
    await held.reached;
    let closed = false;
    const closing = log.close().then(() => (closed = true));
    expect((await rejection(log.read(0, 1000))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    // The clean close's own steps (indexes, checkpoints, marker) are done before it waits.
    await vi.waitFor(() => expect(nodeFs.existsSync(join(directory, '.clean-shutdown'))).toBe(true), { timeout: 10_000 });
    expect(closed).toBe(false);

    held.release();
    const records = decodeBatches((await read).batches);
    expect(records.length).toBeGreaterThan(0);
    records.forEach((record, index) => expect(record.value?.toString()).toBe(valueFor(index)));
    await closing;
  });

  /** A log of several sealed segments under a one-day retention, written over a minute and closed. */
  async function closedLogWithSealedSegments(): Promise<{ directory: string; clock: ManualClock; config: Partial<LogConfig> }> {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const config = { ...SMALL, retentionMs: 24 * 60 * 60 * 1000 };
    const written = await openLog(directory, config, { clock });
    await appendOverTime(written, clock, 60);
    await written.close();
    return { directory, clock, config };
  }

  // A retention pass loads sealed segments' indexes lazily; one that went on after close()
  // closed the segments reopened a file and left its descriptor open (pinning the disk space
  // of a deleted topic).
  it('waits for a retention pass under way, so no file the pass opens is left open', async () => {
    const { directory, clock, config } = await closedLogWithSealedSegments();
    // Without its index, the first segment's indexes are rebuilt from its log, which is opened.
    nodeFs.unlinkSync(join(directory, `${stem(0)}.index`));
    let markerSynced!: () => void;
    const cleanStepsDone = new Promise<void>((resolve) => (markerSynced = resolve));
    const fs = new (class extends TestFileSystem {
      override async fsyncDirectory(path: string): Promise<void> {
        await super.fsyncDirectory(path);
        if (nodeFs.existsSync(join(path, '.clean-shutdown'))) markerSynced();
      }
    })();
    const log = await openLog(directory, config, { clock, fs });
    const held = fs.hold('readFile');
    const retention = log.applyRetention().catch((error: unknown) => error);
    await held.reached; // loading the first segment's indexes
    const closing = log.close();
    await cleanStepsDone; // the close's last step before it closes the segments
    // One turn of the event loop: a close that does not wait has closed the first segment by
    // then (no I/O: its log is not open yet), before the pass opens it.
    await new Promise((resolve) => setImmediate(resolve));
    held.release();
    await closing;
    const outcome = await retention;
    expect([...fs.openFds], 'descriptors left open').toEqual([]);
    expect(outcome instanceof StrataError ? outcome.code : outcome, 'the pass stops at the close').toBe(ErrorCode.FAILED_PRECONDITION);
  });

  // The other half of that wait: a pass deleting segments renames, closes and unlinks their
  // files; a close that returned in the middle of it would let the caller (a topic deletion
  // moving the directory away, a restart) race the pass's last file calls.
  it('waits for a retention pass deleting segments, so the log makes no file call after its close returns', async () => {
    const { directory, clock, config } = await closedLogWithSealedSegments();
    clock.advance(2 * 24 * 60 * 60 * 1000); // every sealed segment is past retention
    let renameReached!: () => void;
    const renameHeld = new Promise<void>((resolve) => (renameReached = resolve));
    let releaseRename!: () => void;
    const renameGate = new Promise<void>((resolve) => (releaseRename = resolve));
    let closeReturned = false;
    const callsAfterClose: string[] = [];
    const fs = new (class extends TestFileSystem {
      override async rename(from: string, to: string): Promise<void> {
        if (to.endsWith('.deleted')) {
          renameReached();
          await renameGate;
        }
        if (closeReturned) callsAfterClose.push(`rename ${from}`);
        return super.rename(from, to);
      }
      override async unlink(path: string): Promise<void> {
        if (closeReturned) callsAfterClose.push(`unlink ${path}`);
        return super.unlink(path);
      }
      override async fsyncDirectory(path: string): Promise<void> {
        if (closeReturned) callsAfterClose.push(`fsyncDirectory ${path}`);
        return super.fsyncDirectory(path);
      }
    })();
    const log = await openLog(directory, config, { clock, fs });
    const retention = log.applyRetention();
    await renameHeld; // the pass has taken the old segments out of the list and is deleting them
    const closing = log.close().then(() => (closeReturned = true));
    await vi.waitFor(() => expect(nodeFs.existsSync(join(directory, '.clean-shutdown'))).toBe(true), { timeout: 10_000 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(closeReturned, 'the close waits for the pass').toBe(false);
    releaseRename();
    await closing;
    expect(await retention).toBeGreaterThan(0);
    expect(callsAfterClose).toEqual([]);
    expect(segmentFiles(directory).filter((name) => name.endsWith('.deleted'))).toEqual([]);
  });

  it('refuses a timestamp search that reaches the next segment after the close began, without touching that segment', async () => {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const written = await openLog(directory, SMALL, { clock });
    const { timestamps } = await appendOverTime(written, clock, 60);
    await written.close();
    const filesRead: string[] = [];
    const fs = new (class extends TestFileSystem {
      override readFile(path: string): Promise<Buffer | null> {
        filesRead.push(path);
        return super.readFile(path);
      }
    })();
    // Reopened, so that each segment loads its indexes when a search first reaches it.
    const log = await openLog(directory, SMALL, { clock, fs });
    const segments = log.segmentSizes();
    expect(segments.length).toBeGreaterThanOrEqual(3);
    const held = fs.hold('readFile');
    const lookup = log.offsetForTimestamp(timestamps.at(-1)!); // in the last segment
    await held.reached; // loading the first segment's indexes
    const closing = log.close();
    filesRead.length = 0;
    held.release();
    expect((await rejection(lookup)).code).toBe(ErrorCode.FAILED_PRECONDITION);
    await closing;
    const second = stem(segments[1]!.baseOffset);
    expect(filesRead.filter((path) => path.includes(second)), 'the second segment, closed by then, is left alone').toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Writer edge cases.

describe('writer edge cases', () => {
  // A write group of many small batches (concurrent appends, or one append of many concatenated
  // batches) can add more offset-index entries than `segment.index.bytes` allows; the log rolls
  // within the group when the index fills, so every append is written and the index never overflows.
  it('rolls instead of overflowing the offset index when one write group adds many index entries', async () => {
    const directory = tempDir();
    const config = { segmentIndexBytes: 1024, indexIntervalBytes: 0 }; // 85 entries, one per batch
    const log = await openLog(directory, config);
    const appends = range(0, 200).map((index) => log.append(batchOf(index, 1)));
    const [results] = await Promise.all([Promise.all(appends), log.close()]);
    expect(results.map((result: AppendResult) => result.baseOffset)).toEqual(range(0, 200));
    const reopened = await openLog(directory, config);
    expectValues(await readAllRecords(reopened), 0, 200);
  });

  // A segment sealed with a full time index (a roll for 'index full' with growing timestamps fills
  // both indexes) still ends its time index with a closing (maxTimestamp, nextOffset) entry
  // (`TimeIndex.seal`). After a reopen the segment's `maxTimestamp` comes from that entry, so it
  // covers the batches after the last regular entry: offsetForTimestamp finds them (85, not 86,
  // below) and retention.ms keeps the segment until its newest record expires.
  async function logWithFullTimeIndex(directory: string, clock: ManualClock, config: Partial<LogConfig>): Promise<PartitionLog> {
    const log = await openLog(directory, config, { clock });
    // 85 index entries fit; an entry per batch after the first; timestamps grow by 1 ms.
    for (let offset = 0; offset < 100; offset++) await log.append(batchOf(offset, 1, T0 + offset));
    expect(log.segmentSizes()[1]!.baseOffset).toBe(86); // segment 0 holds offsets 0..85
    return log;
  }

  it('offsetForTimestamp finds the last batches of a segment sealed with a full time index after a reopen', async () => {
    const directory = tempDir();
    const clock = new ManualClock(T0 + 100);
    const config = { segmentIndexBytes: 1024, indexIntervalBytes: 0 };
    const log = await logWithFullTimeIndex(directory, clock, config);
    expect(await log.offsetForTimestamp(T0 + 85)).toBe(85);
    await log.close();
    const reopened = await openLog(directory, config, { clock });
    expect(await reopened.offsetForTimestamp(T0 + 85)).toBe(85);
  });

  it('retention.ms keeps a segment sealed with a full time index until its newest record expires, after a reopen', async () => {
    const directory = tempDir();
    const clock = new ManualClock(T0 + 100);
    const config = { segmentIndexBytes: 1024, indexIntervalBytes: 0, retentionMs: 60_000 };
    const log = await logWithFullTimeIndex(directory, clock, config);
    await log.close();
    const reopened = await openLog(directory, config, { clock });
    clock.set(T0 + 85 + 60_000); // the newest record of segment 0 is exactly retention.ms old
    expect(await reopened.applyRetention()).toBe(0);
    expect(reopened.logStartOffset).toBe(0);
  });

  // An append that finds the queue over `queuedBytesMax` waits for room; a later append that
  // arrives while the writer has taken the queue must queue behind it, not overtake it, so
  // offsets follow call order.
  it('keeps call order when appends wait for queue room', async () => {
    const fs = new TestFileSystem();
    const first = batchOf(0, 1);
    const log = await openLog(tempDir(), {}, { fs, queuedBytesMax: first.length });
    const write = fs.hold('writev');
    const a1 = log.append(first);
    const a2 = log.append(batchOf(1, 1)); // waits for room
    await write.reached; // a1 is being written; the queue is empty again
    const a3 = log.append(batchOf(2, 1));
    write.release();
    const results = await Promise.all([a1, a2, a3]);
    expect(results.map((result) => result.baseOffset)).toEqual([0, 1, 2]);
  });

  // `read` and `offsetForTimestamp` refuse after close() like appends; serving them would make
  // `LogSegment.fileDescriptor()` reopen the segment's file and leak its descriptor.
  it('refuses reads after close like appends, instead of reopening segment files', async () => {
    const log = await openLog(tempDir());
    await log.append(batchOf(0, 2));
    await log.close();
    expect((await rejection(log.read(0, 1000))).code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect((await rejection(log.offsetForTimestamp(T0))).code).toBe(ErrorCode.FAILED_PRECONDITION);
  });

  // An append made right after the writer itself settled the previous one (waitFor 'written', any
  // append under flush=interval, or a DISK_FULL refusal), while the writer is finishing, is still
  // written: the writer must not miss the wakeup, or a producer that awaits each append before
  // sending the next would deadlock. close() bounds each test: a stranded append would be
  // rejected as closed instead of written.
  it.each([
    { name: 'a previous one was acknowledged (flush=interval)', config: { flush: 'interval' as const }, waitFor: undefined },
    { name: "a previous one resolved with waitFor 'written' (flush=always)", config: {}, waitFor: 'written' as const },
  ])('writes an append made right after $name', async ({ config, waitFor }) => {
    const log = await openLog(tempDir(), config);
    await log.append(batchOf(0, 1), { waitFor });
    const second = log.append(batchOf(1, 1), { waitFor });
    const closed = log.close();
    const outcome = await second.then(
      (result) => result.baseOffset,
      (error: unknown) => error,
    );
    await closed;
    expect(outcome).toBe(1);
  });

  it('writes an append made right after a group of appends was refused with DISK_FULL', async () => {
    const fs = new TestFileSystem();
    const log = await openLog(tempDir(), {}, { fs });
    fs.diskFull = true;
    const refused = await Promise.allSettled([log.append(batchOf(0, 1)), log.append(batchOf(0, 1))]);
    expect(refused.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
    fs.diskFull = false;
    const next = log.append(batchOf(0, 1));
    const closed = log.close();
    const outcome = await next.then(
      (result) => result.baseOffset,
      (error: unknown) => error,
    );
    await closed;
    expect(outcome).toBe(0);
  });
});

describe('close({ discard: true }): a deleted topic’s log', () => {
  it('syncs and writes nothing, refuses later appends with the reason, wakes a waiting reader and closes every file', async () => {
    const directory = tempDir();
    const fs = new TestFileSystem();
    const log = await openLog(directory, {}, { fs });
    await log.append(batchOf(0, 3));
    const filesBefore = nodeFs.readdirSync(directory).sort();
    let woken = 0;
    log.onHighWatermark(() => woken++);
    const gone = new StrataError(ErrorCode.NOT_FOUND, 'topic "t" was deleted');
    fs.failFdatasync = true; // a sync the close made would fail it
    await log.close({ reason: gone, discard: true });
    fs.failFdatasync = false;
    expect(log.fenced).toBeNull();
    expect(nodeFs.readdirSync(directory).sort()).toEqual(filesBefore); // no marker, checkpoint or snapshot written
    expect(nodeFs.existsSync(join(directory, '.clean-shutdown'))).toBe(false);
    expect(woken).toBeGreaterThan(0);
    expect(fs.openFds.size).toBe(0);
    await expect(log.append(batchOf(3, 1))).rejects.toBe(gone);
  });
});
