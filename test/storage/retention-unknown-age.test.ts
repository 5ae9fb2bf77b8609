// Goal: show that a retention pass still bounds a partition by retention.bytes when a sealed
// segment's indexes (and so its age) cannot be loaded: with retention.ms off no index is loaded
// at all; with it on, such a segment is kept by time, deleted only by size, and the failure is
// logged and thrown for the broker to log; damage met while loading still fences the partition,
// and a fenced partition deletes nothing. Method: real files in throwaway temp directories (a
// `.timeindex` replaced by a directory fails its read with EISDIR; a flipped byte in a log whose
// time index is gone is met by the index rebuild), a ManualClock, and a pino logger that
// collects its lines.
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import type { LogConfig } from '../../src/storage/log-config.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { decodeBatches, type RecordInput } from '../../src/storage/record-batch.js';
import { rejectedWith } from '../helpers/rejected-with.js';

const T0 = 1_700_000_000_000;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Small segments so that a hundred batches make several. */
const SMALL: Partial<LogConfig> = { segmentBytes: 4096, indexIntervalBytes: 256 };

const directories: string[] = [];
const openLogs: PartitionLog[] = [];

afterEach(async () => {
  for (const log of openLogs.splice(0)) await log.close().catch(() => undefined);
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

const stem = (baseOffset: number): string => String(baseOffset).padStart(20, '0');
const valueFor = (offset: number): string => `value-${offset}-${'x'.repeat(24)}`;

interface Written {
  directory: string;
  clock: ManualClock;
  /** The segments, oldest first, the active one last. */
  segments: { baseOffset: number; sizeBytes: number }[];
  total: number;
  nextOffset: number;
}

/**
 * A closed log of at least five segments, its batches one second apart from T0 (so that it is
 * reopened with no sealed segment's indexes loaded, and each pass must load them to learn ages).
 */
async function writtenLog(): Promise<Written> {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-retention-unknown-age-'));
  directories.push(directory);
  const clock = new ManualClock(T0);
  const log = await PartitionLog.open({ directory, config: SMALL, name: 'test-0', clock });
  let nextOffset = 0;
  for (let index = 0; index < 120; index++) {
    const records: RecordInput[] = [];
    for (let record = 0; record < 1 + (index % 4); record++) records.push({ key: Buffer.from(`k${nextOffset + record}`), value: Buffer.from(valueFor(nextOffset + record)) });
    await log.append(buildBatch(records, { timestamp: clock.nowMs() }));
    nextOffset += records.length;
    clock.advance(1000);
  }
  const segments = log.segmentSizes();
  await log.close();
  expect(segments.length).toBeGreaterThanOrEqual(5);
  return { directory, clock, segments, total: segments.reduce((sum, segment) => sum + segment.sizeBytes, 0), nextOffset };
}

/** Opens `written` again with `config`, its log lines collected in `messages`. */
async function reopen(written: Written, config: Partial<LogConfig>): Promise<{ log: PartitionLog; messages: { msg: string; file?: string }[] }> {
  const messages: { msg: string; file?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void messages.push(JSON.parse(line) as { msg: string; file?: string }) });
  const log = await PartitionLog.open({ directory: written.directory, config: { ...SMALL, ...config }, name: 'test-0', clock: written.clock, logger });
  openLogs.push(log);
  return { log, messages };
}

/** Replaces a segment's time index with a directory: reading it fails with EISDIR until it is removed. */
function unreadableTimeIndex(directory: string, baseOffset: number): string {
  const path = join(directory, `${stem(baseOffset)}.timeindex`);
  nodeFs.rmSync(path);
  nodeFs.mkdirSync(path);
  return path;
}

/** Flips a byte in the records of the last batch of a segment's log, and removes its time index so that loading rebuilds the indexes from the log. */
function damagedLog(directory: string, baseOffset: number): void {
  const logPath = join(directory, `${stem(baseOffset)}.log`);
  const bytes = nodeFs.readFileSync(logPath);
  bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0xff;
  nodeFs.writeFileSync(logPath, bytes);
  nodeFs.rmSync(join(directory, `${stem(baseOffset)}.timeindex`));
}

const logFiles = (directory: string): string[] => nodeFs.readdirSync(directory).filter((name) => name.endsWith('.log')).sort();

/** The value of the first record read from the log start. */
async function firstValue(log: PartitionLog): Promise<string | undefined> {
  return decodeBatches((await log.read(log.logStartOffset, 1000)).batches)[0]?.value?.toString();
}

const rejection = (promise: Promise<unknown>): Promise<StrataError> => rejectedWith(promise, StrataError);

describe('retention.bytes with retention.ms off', () => {
  it('loads no index, so a time index that cannot be read holds nothing back', async () => {
    const written = await writtenLog();
    const [first, second, third] = written.segments as [Written['segments'][number], Written['segments'][number], Written['segments'][number]];
    unreadableTimeIndex(written.directory, first.baseOffset);
    const { log, messages } = await reopen(written, { retentionMs: -1, retentionBytes: written.total - first.sizeBytes - second.sizeBytes });

    expect(await log.applyRetention()).toBe(2);
    expect(log.logStartOffset).toBe(third.baseOffset);
    expect(logFiles(written.directory)).toEqual(written.segments.slice(2).map((segment) => `${stem(segment.baseOffset)}.log`));
    expect(await firstValue(log)).toBe(valueFor(third.baseOffset));
    expect(messages.filter((line) => line.msg.startsWith('retention could not load'))).toEqual([]);
  });

  it('deletes a damaged oldest segment that is due by size, without loading its indexes and fencing for it', async () => {
    const written = await writtenLog();
    const [first, second] = written.segments as [Written['segments'][number], Written['segments'][number]];
    damagedLog(written.directory, first.baseOffset);
    const { log } = await reopen(written, { retentionMs: -1, retentionBytes: written.total - first.sizeBytes });

    expect(await log.applyRetention()).toBe(1);
    expect(log.fenced).toBeNull();
    expect(log.logStartOffset).toBe(second.baseOffset);
    expect(await firstValue(log)).toBe(valueFor(second.baseOffset));
  });
});

describe('a segment whose indexes cannot be loaded under retention.ms', () => {
  it('is kept by time, with the segments after it; the failure is logged and thrown, and the next pass tries again', async () => {
    const written = await writtenLog();
    const [first, second] = written.segments as [Written['segments'][number], Written['segments'][number]];
    const timeIndex = unreadableTimeIndex(written.directory, second.baseOffset);
    const { log, messages } = await reopen(written, { retentionMs: 60_000, retentionBytes: -1 });
    written.clock.advance(DAY_MS); // every segment is past retention.ms

    const error = await rejection(log.applyRetention());
    expect(error.code).toBe(ErrorCode.STORAGE_ERROR);
    expect((error.cause as NodeJS.ErrnoException).code).toBe('EISDIR');
    expect(error.message).toContain(`the segment at offset ${second.baseOffset}`);
    expect(messages.filter((line) => line.msg.startsWith('retention could not load')).map((line) => line.file)).toEqual([join(written.directory, `${stem(second.baseOffset)}.log`)]);
    // The first segment, of known age, went by time; the second and later ones stay.
    expect(log.logStartOffset).toBe(second.baseOffset);
    expect(log.segmentSizes()).toEqual(written.segments.slice(1));
    expect(logFiles(written.directory)).not.toContain(`${stem(first.baseOffset)}.log`);

    // Once the time index can be read (missing: rebuilt from the log), every segment goes, the active one too.
    nodeFs.rmdirSync(timeIndex);
    expect(await log.applyRetention()).toBe(written.segments.length - 1);
    expect(log.logStartOffset).toBe(written.nextOffset);
    expect(log.logEndOffset).toBe(written.nextOffset);
  });

  it('still lets retention.bytes delete it and the segments after it, and then has no failure to report', async () => {
    const written = await writtenLog();
    const [first, second, third, fourth] = written.segments as [Written['segments'][number], Written['segments'][number], Written['segments'][number], Written['segments'][number]];
    unreadableTimeIndex(written.directory, second.baseOffset);
    const limit = written.total - first.sizeBytes - second.sizeBytes - third.sizeBytes;
    const { log } = await reopen(written, { retentionMs: 60_000, retentionBytes: limit });
    written.clock.advance(DAY_MS);

    expect(await log.applyRetention()).toBe(3);
    expect(log.logStartOffset).toBe(fourth.baseOffset);
    expect(log.sizeBytes).toBe(limit);
    expect(logFiles(written.directory)).toEqual(written.segments.slice(3).map((segment) => `${stem(segment.baseOffset)}.log`));
    expect(await firstValue(log)).toBe(valueFor(fourth.baseOffset));
  });
});

describe('damage met while loading indexes for retention.ms', () => {
  it('fences the partition and deletes nothing, whatever retention.bytes says', async () => {
    const written = await writtenLog();
    damagedLog(written.directory, 0);
    const { log } = await reopen(written, { retentionMs: 60_000, retentionBytes: 0 });
    written.clock.advance(DAY_MS);

    expect((await rejection(log.applyRetention())).code).toBe(ErrorCode.PARTITION_FENCED);
    expect(log.fenced).not.toBeNull();
    expect(log.segmentSizes()).toEqual(written.segments);
    expect(logFiles(written.directory)).toEqual(written.segments.map((segment) => `${stem(segment.baseOffset)}.log`));
  });
});
