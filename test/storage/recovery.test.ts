// Goal: show that PartitionLog.open turns every crash or damage state of a partition directory into exactly the complete prefix of what was appended (or fences it, changing nothing); method: build a real log with a seeded PRNG (mulberry32, seed printed in every assertion and settable with STRATA_TEST_SEED), copy its directory while it is still open (an unclean stop leaves no `.clean-shutdown` marker), tamper with the copy (torn tails, garbage, zeroed pages, lost or damaged indexes and checkpoint, bit rot), reopen it and compare every batch byte for byte.
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import { decodeCheckpoint, encodeCheckpoint } from '../../src/storage/checkpoint-file.js';
import type { LogConfig } from '../../src/storage/log-config.js';
import { TEMP_SUFFIX } from '../../src/storage/file-names.js';
import { writeFenceMarker } from '../../src/storage/fence-marker.js';
import { NodeFileSystem } from '../../src/storage/file-system.js';
import { copyRangeDurably } from '../../src/storage/log-loader.js';
import { INDEX_TRAILER_BYTES, indexFileBytes, indexFileEntries } from '../../src/storage/index-file.js';
import { DIRECT_IO_BLOCK_BYTES } from '../../src/storage/aligned-memory.js';
import { MAX_PADDING_BYTES } from '../../src/storage/direct-writer.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { PRODUCER_STATE_FILE, ProducerState } from '../../src/storage/producer-state.js';
import {
  BASE_OFFSET_OFFSET,
  RECORDS_OFFSET,
  forEachBatch,
  readBaseOffset,
  readBatchSize,
  readLastOffset,
  type RecordInput,
} from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { seedMessage, streamFor, testSeed } from '../helpers/seeded-random.js';
import { TestFileSystem } from '../helpers/test-file-system.js';
import { waitUntil } from '../helpers/wait.js';

// ---------------------------------------------------------------------------------------------
// Seeded randomness.

const SEED = testSeed('recovery.test.ts');

/** An independent stream per test, so running one test alone (-t) replays the same data. */
function rngFor(name: string): Rng {
  const next = streamFor(SEED, name);
  const int = (low: number, high: number) => low + Math.floor(next() * (high - low + 1));
  const bytes = (length: number) => {
    const buffer = Buffer.allocUnsafe(length);
    for (let index = 0; index < length; index++) buffer[index] = int(0, 255);
    return buffer;
  };
  return { next, int, bytes };
}

interface Rng {
  next(): number;
  /** Integer in [low, high]. */
  int(low: number, high: number): number;
  bytes(length: number): Buffer;
}

const at = seedMessage(SEED);

// ---------------------------------------------------------------------------------------------
// The log under test.

const T0 = 1_700_000_000_000;
const CONFIG: Partial<LogConfig> = { segmentBytes: 64 * 1024, indexIntervalBytes: 512, flush: 'always' };

function openLog(directory: string, options: { repair?: boolean; config?: Partial<LogConfig>; fs?: TestFileSystem; logger?: Logger } = {}): Promise<PartitionLog> {
  return PartitionLog.open({
    directory,
    // The records' timestamps run hours ahead of the manual clock.
    config: { messageTimestampAfterMaxMs: Number.MAX_SAFE_INTEGER, ...(options.config ?? CONFIG) },
    clock: new ManualClock(T0 + 60_000),
    repair: options.repair ?? false,
    ...(options.fs === undefined ? {} : { fs: options.fs }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
}

interface Batch {
  baseOffset: number;
  lastOffset: number;
  /** The batch exactly as stored: the appended buffer after its offset was assigned. */
  bytes: Buffer;
  timestamps: number[];
}

/** A batch and where it lies in the pristine files. */
interface Placed extends Batch {
  segmentBase: number;
  position: number;
}

interface Pristine {
  /** Copy taken while the log was still open: no marker, active indexes never written. */
  unclean: string;
  /** The same log after `close()`. */
  clean: string;
  batches: Placed[];
  segmentBases: number[];
  logEnd: number;
}

function stem(baseOffset: number): string {
  return String(baseOffset).padStart(20, '0');
}

function logFile(directory: string, baseOffset: number, suffix = '.log'): string {
  return join(directory, stem(baseOffset) + suffix);
}

function segmentBasesIn(directory: string): number[] {
  return readdirSync(directory)
    .filter((name) => /^\d{20}\.log$/.test(name))
    .map((name) => Number(name.slice(0, 20)))
    .sort((a, b) => a - b);
}

/** Appends random batches (seeded) until the log has 3+ segments and a 24 KiB+ active one. */
async function appendRandom(log: PartitionLog, rng: Rng, appended: Batch[], until: () => boolean): Promise<void> {
  let recordNumber = appended.length === 0 ? 0 : appended[appended.length - 1]!.lastOffset + 1;
  while (!until()) {
    const group: { batch: Buffer; timestamps: number[] }[] = [];
    const groupSize = rng.int(1, 4);
    for (let index = 0; index < groupSize; index++) {
      const records: RecordInput[] = [];
      const timestamps: number[] = [];
      const count = rng.int(1, 6);
      for (let record = 0; record < count; record++) {
        // Mostly increasing, sometimes a little out of order, as producers' clocks are.
        const timestamp = T0 + 10 * recordNumber + rng.int(-15, 15);
        recordNumber++;
        timestamps.push(timestamp);
        const key = rng.next() < 0.3 ? null : Buffer.from(`key-${rng.int(0, 99)}`);
        records.push({ key, value: rng.bytes(rng.int(8, 300)), timestamp });
      }
      group.push({ batch: buildBatch(records, { timestamp: timestamps[0]! }), timestamps });
    }
    const results = await Promise.all(group.map(({ batch }) => log.append(batch)));
    results.forEach((result, index) => {
      appended.push({
        baseOffset: result.baseOffset,
        lastOffset: result.lastOffset,
        bytes: Buffer.from(group[index]!.batch),
        timestamps: group[index]!.timestamps,
      });
    });
  }
}

/** Reads every `.log` of `directory` and lists its batches and where they are. */
function placeBatches(directory: string, appended: readonly Batch[]): Placed[] {
  const placed: Placed[] = [];
  for (const segmentBase of segmentBasesIn(directory)) {
    const bytes = readFileSync(logFile(directory, segmentBase));
    const consumed = forEachBatch(bytes, (position, size) => {
      const expected = appended[placed.length];
      const stored = bytes.subarray(position, position + size);
      expect(expected !== undefined && stored.equals(expected.bytes), at(`pristine batch ${placed.length} in ${segmentBase}.log at ${position}`)).toBe(true);
      placed.push({ ...expected!, segmentBase, position });
    });
    expect(consumed, at(`pristine ${segmentBase}.log has whole batches only`)).toBe(bytes.length);
  }
  expect(placed.length, at('every appended batch is in the files')).toBe(appended.length);
  return placed;
}

async function buildPristine(root: string, name: string): Promise<Pristine> {
  const rng = rngFor(name);
  const directory = join(root, `${name}-pristine`);
  const log = await openLog(directory);
  const appended: Batch[] = [];
  const activeBytes = () => log.segmentSizes().at(-1)!.sizeBytes;
  await appendRandom(log, rng, appended, () => log.segmentCount >= 3 && activeBytes() >= 24 * 1024);
  const unclean = join(root, `${name}-unclean`);
  cpSync(directory, unclean, { recursive: true });
  await log.close();
  expect(existsSync(join(unclean, '.clean-shutdown')), at('the unclean copy has no marker')).toBe(false);
  expect(existsSync(join(directory, '.clean-shutdown')), at('the closed log has the marker')).toBe(true);
  const batches = placeBatches(unclean, appended);
  expect(placeBatches(directory, appended).length).toBe(batches.length);
  return { unclean, clean: directory, batches, segmentBases: segmentBasesIn(unclean), logEnd: appended.at(-1)!.lastOffset + 1 };
}

let caseNumber = 0;
function copyOf(root: string, source: string, label: string): string {
  const target = join(root, `case-${caseNumber++}-${label}`);
  cpSync(source, target, { recursive: true });
  return target;
}

// ---------------------------------------------------------------------------------------------
// Checks.

async function errorOf(promise: Promise<unknown>): Promise<StrataError | Error | null> {
  try {
    await promise;
    return null;
  } catch (error) {
    return error as Error;
  }
}

function codeOf(error: unknown): string | null {
  return error instanceof StrataError ? error.code : error === null ? null : `not a StrataError: ${String(error)}`;
}

/** The first batch `read(offset)` returns, or null. */
async function batchAt(log: PartitionLog, offset: number): Promise<Buffer | null> {
  const { batches } = await log.read(offset, 1);
  if (batches.length === 0) return null;
  return batches.subarray(0, readBatchSize(batches, 0));
}

function recordOffsets(batch: Batch): number[] {
  return batch.timestamps.map((_, index) => batch.baseOffset + index);
}

/** First offset below `end` whose record timestamp is >= `timestamp`, as offsetForTimestamp defines. */
function expectedOffsetForTimestamp(batches: readonly Batch[], end: number, timestamp: number): number | null {
  for (const batch of batches) {
    for (let index = 0; index < batch.timestamps.length; index++) {
      if (batch.baseOffset + index < end && batch.timestamps[index]! >= timestamp) return batch.baseOffset + index;
    }
  }
  return null;
}

interface PrefixCheck {
  /** Offsets to read one by one (besides the sequential walk). */
  pointReads?: number[];
  /** Timestamps to check offsetForTimestamp at. */
  timestamps?: number[];
}

/**
 * The log holds exactly `expected` (every batch byte-identical at its offset) and nothing after:
 * log end, high watermark, reads at and past the end.
 */
async function expectExactly(log: PartitionLog, expected: readonly Batch[], what: string, check: PrefixCheck = {}): Promise<void> {
  const end = expected.length === 0 ? 0 : expected.at(-1)!.lastOffset + 1;
  expect(log.fenced, at(`${what}: not fenced (${log.fenced?.message})`)).toBeNull();
  expect(log.logStartOffset, at(`${what}: log start`)).toBe(0);
  expect(log.logEndOffset, at(`${what}: log end offset is the first lost offset`)).toBe(end);
  expect(log.highWatermark, at(`${what}: high watermark`)).toBe(end);

  // Sequential walk: every batch, in order, at its offset, byte for byte.
  let offset = 0;
  let seen = 0;
  while (offset < end) {
    const { batches } = await log.read(offset, 128 * 1024);
    expect(batches.length > 0, at(`${what}: read(${offset}) below the end ${end} returned nothing`)).toBe(true);
    forEachBatch(batches, (position, size) => {
      const want = expected[seen];
      const got = batches.subarray(position, position + size);
      expect(want !== undefined && got.equals(want.bytes), at(`${what}: batch #${seen} (offset ${readBaseOffset(got)}..${readLastOffset(got)}) read at ${offset} differs from batch at ${want?.baseOffset}`)).toBe(true);
      seen++;
      offset = want!.lastOffset + 1;
    });
  }
  expect(seen, at(`${what}: batches walked`)).toBe(expected.length);
  expect((await log.read(end, 1 << 20)).batches.length, at(`${what}: nothing readable at the end`)).toBe(0);
  expect(codeOf(await errorOf(log.read(end + 1, 1))), at(`${what}: read past the end`)).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);

  if (check.pointReads !== undefined) {
    const byOffset = new Map<number, Batch>();
    for (const batch of expected) for (const offset of recordOffsets(batch)) byOffset.set(offset, batch);
    for (const point of check.pointReads) {
      const want = byOffset.get(point)!;
      const got = await batchAt(log, point);
      expect(got !== null && got.equals(want.bytes), at(`${what}: read(${point}) returns batch ${want.baseOffset}..${want.lastOffset}`)).toBe(true);
    }
  }
  for (const timestamp of check.timestamps ?? []) {
    expect(await log.offsetForTimestamp(timestamp), at(`${what}: offsetForTimestamp(${timestamp})`)).toBe(
      expectedOffsetForTimestamp(expected, end, timestamp),
    );
  }
}

/** Appends one batch, which must land at `offset`, and reads it back. Returns it. */
async function expectAppendAt(log: PartitionLog, offset: number, what: string): Promise<Batch> {
  const timestamps = [T0 + 10_000_000, T0 + 10_000_001];
  const batch = buildBatch(timestamps.map((timestamp, index) => ({ value: Buffer.from(`after-recovery-${index}`), timestamp })));
  const result = await log.append(batch);
  expect(result.baseOffset, at(`${what}: appends continue at the first lost offset`)).toBe(offset);
  const got = await batchAt(log, offset);
  expect(got !== null && got.equals(batch), at(`${what}: the new batch reads back`)).toBe(true);
  return { baseOffset: result.baseOffset, lastOffset: result.lastOffset, bytes: Buffer.from(batch), timestamps };
}

/** A temporary directory for the tests of the enclosing describe, removed after them. */
function useTemporaryRoot(prefix: string): { readonly path: string } {
  const root = { path: '' };
  beforeAll(() => {
    root.path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => {
    if (root.path !== '') rmSync(root.path, { recursive: true, force: true });
  });
  return root;
}

/** Appends one batch of one 100-byte record, its timestamp and content from its position. */
async function appendSmallBatch(log: PartitionLog, batches: Batch[]): Promise<void> {
  const timestamp = T0 + batches.length;
  const bytes = buildBatch([{ value: Buffer.alloc(100, batches.length), timestamp }], { timestamp });
  const result = await log.append(bytes);
  batches.push({ baseOffset: result.baseOffset, lastOffset: result.lastOffset, bytes: Buffer.from(bytes), timestamps: [timestamp] });
}

/** The recovery point in `directory`'s checkpoint file (null: none, or not valid). */
function checkpointIn(directory: string): number | null {
  const path = join(directory, 'recovery-point.checkpoint');
  return existsSync(path) ? decodeCheckpoint(readFileSync(path, 'utf8')) : null;
}

/** Every file under `directory` (recursively) with its bytes. */
function snapshot(directory: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(directory, { recursive: true }) as string[]) {
    const path = join(directory, name);
    if (statSync(path).isFile()) files.set(name, readFileSync(path));
  }
  return files;
}

function expectSameFiles(before: Map<string, Buffer>, after: Map<string, Buffer>, what: string): void {
  expect([...after.keys()].sort(), at(`${what}: same files`)).toEqual([...before.keys()].sort());
  for (const [name, bytes] of before) {
    const now = after.get(name);
    expect(now?.length, at(`${what}: size of ${name}`)).toBe(bytes.length);
    expect(now !== undefined && now.equals(bytes), at(`${what}: bytes of ${name} unchanged`)).toBe(true);
  }
}

function flipBit(path: string, position: number, bit: number): void {
  const bytes = readFileSync(path);
  bytes[position] = bytes[position]! ^ (1 << bit);
  writeFileSync(path, bytes);
}

/** A position in the CRC-covered records of a batch near the middle of `segmentBase`'s log. */
function middlePayloadByte(pristine: Pristine, segmentBase: number, rng: Rng): Placed & { flipAt: number } {
  const inSegment = pristine.batches.filter((batch) => batch.segmentBase === segmentBase);
  const batch = inSegment[Math.floor(inSegment.length / 2) + rng.int(-2, 2)]!;
  return { ...batch, flipAt: batch.position + rng.int(RECORDS_OFFSET, batch.bytes.length - 1) };
}

async function expectFenced(log: PartitionLog, file: string, position: number, what: string): Promise<void> {
  const fence = log.fenced;
  expect(fence, at(`${what}: log.fenced`)).not.toBeNull();
  expect(fence!.code, at(`${what}: fence code`)).toBe(ErrorCode.PARTITION_FENCED);
  expect(fence!.message, at(`${what}: fence names the file`)).toContain(file);
  expect(fence!.message, at(`${what}: fence names the byte position`)).toContain(`at byte ${position}`);
  expect(fence!.message, at(`${what}: fence gives the repair command`)).toContain(`Stop the broker and run \`strata repair --dir ${dirname(file)}\``);
  expect(codeOf(await errorOf(log.read(0, 1024))), at(`${what}: reads refused`)).toBe(ErrorCode.PARTITION_FENCED);
  expect(codeOf(await errorOf(log.append(buildBatch([{ value: Buffer.from('x') }], { timestamp: T0 })))), at(`${what}: appends refused`)).toBe(
    ErrorCode.PARTITION_FENCED,
  );
}

// ---------------------------------------------------------------------------------------------

describe(`crash recovery matrix (seed ${SEED})`, () => {
  let root: string;
  let pristine: Pristine;
  let activeBase: number;
  let activePath: (directory: string) => string;
  let activeBatches: Placed[];
  let allOffsets: number[];
  let sampleTimestamps: number[];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'strata-recovery-'));
    pristine = await buildPristine(root, 'main');
    activeBase = pristine.segmentBases.at(-1)!;
    activePath = (directory) => logFile(directory, activeBase);
    activeBatches = pristine.batches.filter((batch) => batch.segmentBase === activeBase);
    allOffsets = pristine.batches.flatMap(recordOffsets);
    const rng = rngFor('timestamps');
    const all = pristine.batches.flatMap((batch) => batch.timestamps);
    const max = Math.max(...all);
    sampleTimestamps = [T0 - 1000, Math.min(...all), max, max + 1, T0 + 10_000_000];
    for (let index = 0; index < 30; index++) sampleTimestamps.push(all[rng.int(0, all.length - 1)]! + rng.int(-1, 1));
  });

  afterAll(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  /**
   * What recovery must produce after the active segment was damaged from byte `damage` on (the
   * first byte that differs from what was written): every batch wholly before it, nothing after.
   */
  function expectedAfterActiveDamage(damage: number): { intact: Placed[]; lost: number; validBytes: number; torn: Placed | undefined } {
    const intact = pristine.batches.filter((batch) => batch.segmentBase < activeBase || batch.position + batch.bytes.length <= damage);
    const torn = activeBatches.find((batch) => batch.position + batch.bytes.length > damage);
    const lastActive = intact.at(-1)!.segmentBase === activeBase ? intact.at(-1)! : null;
    return {
      intact,
      lost: torn?.baseOffset ?? pristine.logEnd,
      validBytes: lastActive === null ? 0 : lastActive.position + lastActive.bytes.length,
      torn,
    };
  }

  /**
   * The bytes recovery reports it truncated when the active segment is cut at `cut`: those past
   * the complete prefix, or none when they read as a direct write's zero padding (zeros up to a
   * 4 KiB block's end, shorter than any padding: the first bytes of a batch's header, its base
   * offset, are zeros at small offsets), which is cut all the same without being counted.
   */
  function reportedTruncated(directory: string, validBytes: number, cut: number): number {
    const tail = readFileSync(activePath(directory)).subarray(validBytes, cut);
    const readsAsPadding = cut % DIRECT_IO_BLOCK_BYTES === 0 && tail.length > 0 && tail.length < MAX_PADDING_BYTES && tail.every((byte) => byte === 0);
    return readsAsPadding ? 0 : cut - validBytes;
  }

  it('builds a log of several segments with a large active one', () => {
    expect(pristine.segmentBases.length, at('segments')).toBeGreaterThanOrEqual(3);
    expect(statSync(activePath(pristine.unclean)).size, at('active segment size')).toBeGreaterThanOrEqual(24 * 1024);
    expect(existsSync(logFile(pristine.unclean, activeBase, '.index')), at('the active index was never written')).toBe(false);
  });

  it('reopens an unclean copy with no damage to everything', async () => {
    const directory = copyOf(root, pristine.unclean, 'undamaged');
    const log = await openLog(directory);
    expect(log.recovery, at('an unclean open recovers')).not.toBeNull();
    expect(log.recovery!.bytesTruncated, at('nothing truncated')).toBe(0);
    await expectExactly(log, pristine.batches, 'undamaged', { pointReads: allOffsets, timestamps: sampleTimestamps });
    await expectAppendAt(log, pristine.logEnd, 'undamaged');
    await log.close();
  });

  it('truncates a torn active segment at 200 random byte positions to the complete prefix', async () => {
    const rng = rngFor('torn-tail');
    const lastFew = activeBatches.slice(-6);
    const from = lastFew[0]!.position;
    const fileBytes = statSync(activePath(pristine.unclean)).size;
    const pointReads = activeBatches.flatMap((batch) => [batch.baseOffset, batch.lastOffset]);
    for (let round = 0; round < 200; round++) {
      const cut = rng.int(from, fileBytes - 1);
      const what = `torn tail case ${round}: ${stem(activeBase)}.log cut to ${cut} of ${fileBytes} bytes`;
      const directory = copyOf(root, pristine.unclean, `torn-${round}`);
      truncateSync(activePath(directory), cut);
      const { intact, lost, validBytes, torn } = expectedAfterActiveDamage(cut);
      const truncated = reportedTruncated(directory, validBytes, cut);
      const log = await openLog(directory);
      expect(log.recovery, at(`${what}: recovery report`)).not.toBeNull();
      expect(log.recovery!.bytesTruncated, at(`${what}: bytesTruncated`)).toBe(truncated);
      expect(log.recovery!.recordsTruncated, at(`${what}: recordsTruncated`)).toBe(truncated >= RECORDS_OFFSET ? torn!.lastOffset - torn!.baseOffset + 1 : 0);
      expect(log.recovery!.segmentsScanned, at(`${what}: only segments from the recovery point are scanned`)).toBe(1);
      expect(statSync(activePath(directory)).size, at(`${what}: the file is cut at the last whole batch`)).toBe(validBytes);
      const points = pointReads.filter((offset) => offset < lost);
      await expectExactly(log, intact, what, { pointReads: points });
      const added = await expectAppendAt(log, lost, what);
      await log.close();
      if (round % 10 === 0) {
        const again = await openLog(directory);
        await expectExactly(again, [...intact, added], `${what}, reopened after a clean close`, { pointReads: points });
        await again.close();
      }
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('drops random garbage appended to the active segment', async () => {
    const rng = rngFor('garbage');
    const fileBytes = statSync(activePath(pristine.unclean)).size;
    for (const length of [1, 11, 12, 60, 61, 62, rng.int(63, 600), rng.int(600, 5000), rng.int(5000, 40_000)]) {
      const what = `${length} garbage bytes after ${fileBytes}`;
      const directory = copyOf(root, pristine.unclean, `garbage-${length}`);
      appendFileSync(activePath(directory), rng.bytes(length));
      const log = await openLog(directory);
      expect(log.recovery!.bytesTruncated, at(`${what}: bytesTruncated`)).toBe(length);
      expect(statSync(activePath(directory)).size, at(`${what}: file size`)).toBe(fileBytes);
      await expectExactly(log, pristine.batches, what, { pointReads: activeBatches.map((batch) => batch.baseOffset) });
      await expectAppendAt(log, pristine.logEnd, what);
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('drops a zeroed tail (the last 4 KiB, and the last partial page) of the active segment', async () => {
    const original = readFileSync(activePath(pristine.unclean));
    const pageStart = Math.floor((original.length - 1) / 4096) * 4096;
    for (const zeroFrom of [original.length - 4096, pageStart]) {
      const what = `zeroed ${stem(activeBase)}.log from ${zeroFrom} to its end ${original.length}`;
      const directory = copyOf(root, pristine.unclean, `zero-${zeroFrom}`);
      const bytes = Buffer.from(original);
      bytes.fill(0, zeroFrom);
      writeFileSync(activePath(directory), bytes);
      let damage = zeroFrom;
      while (damage < original.length && original[damage] === 0) damage++; // bytes that were 0 already are not damage
      const { intact, lost, validBytes } = expectedAfterActiveDamage(damage);
      const log = await openLog(directory);
      expect(log.recovery!.bytesTruncated, at(`${what}: bytesTruncated`)).toBe(original.length - validBytes);
      await expectExactly(log, intact, what, { pointReads: activeBatches.filter((batch) => batch.lastOffset < lost).map((batch) => batch.baseOffset) });
      await expectAppendAt(log, lost, what);
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  describe('lost or damaged index files', () => {
    const states = ['unclean', 'clean'] as const;
    const whose = ['active', 'sealed'] as const;
    const files = [['.index'], ['.timeindex'], ['.index', '.timeindex']] as const;
    const damages = ['deleted', 'random bytes', 'truncated to an odd size', 'an entry byte flipped under an intact trailer'] as const;
    for (const state of states) {
      for (const segment of whose) {
        for (const suffixes of files) {
          for (const damage of damages) {
            const name = `${state} stop, ${segment} segment ${suffixes.join('+')} ${damage}`;
            it(`${name}: every offset reads back and offsetForTimestamp is right`, async () => {
              const rng = rngFor(name);
              const sealed = pristine.segmentBases.slice(0, -1);
              const base = segment === 'active' ? activeBase : sealed[rng.int(0, sealed.length - 1)]!;
              const what = `${name} (segment ${base})`;
              const directory = copyOf(root, state === 'clean' ? pristine.clean : pristine.unclean, 'index');
              for (const suffix of suffixes) {
                const path = logFile(directory, base, suffix);
                const original = existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
                if (damage === 'deleted') {
                  if (existsSync(path)) unlinkSync(path);
                } else if (damage === 'random bytes') {
                  writeFileSync(path, rng.bytes(original.length > 0 ? original.length : 96));
                } else if (damage === 'an entry byte flipped under an intact trailer') {
                  // The mark kept: only the checksum can tell (an index with no entries gets one).
                  const damaged = Buffer.from(original.length > INDEX_TRAILER_BYTES ? original : indexFileBytes(Buffer.alloc(suffix === '.index' ? 8 : 12)));
                  const flipAt = rng.int(0, damaged.length - INDEX_TRAILER_BYTES - 1);
                  damaged[flipAt] = damaged[flipAt]! ^ (1 << rng.int(0, 7));
                  expect(indexFileEntries(damaged, suffix === '.index' ? 8 : 12), at(`${what}: ${suffix} fails its checksum only`)).toBe('index file checksum does not match its entries');
                  writeFileSync(path, damaged);
                } else {
                  const odd = original.length > 2 ? original.length - (original.length % 2 === 0 ? 1 : 2) : 5;
                  writeFileSync(path, original.length > 2 ? original.subarray(0, odd) : rng.bytes(odd));
                }
              }
              const log = await openLog(directory);
              // After a clean close, index damage is no reason to recover the log: the active
              // segment's indexes are rebuilt from a scan of it, a sealed one's when first used.
              if (state === 'clean') expect(log.recovery, at(`${what}: a clean open, no recovery`)).toBeNull();
              await expectExactly(log, pristine.batches, what, { pointReads: allOffsets, timestamps: sampleTimestamps });
              const added = await expectAppendAt(log, pristine.logEnd, what);
              await log.close();
              const again = await openLog(directory);
              await expectExactly(again, [...pristine.batches, added], `${what}, reopened after a clean close`, {
                pointReads: allOffsets,
                timestamps: sampleTimestamps,
              });
              await again.close();
              rmSync(directory, { recursive: true, force: true });
            });
          }
        }
      }
    }

    // index-file.ts promises "a damaged index can slow a read but never return wrong data". A
    // sealed .timeindex cut to a whole number of entries (its last entry dropped) must be seen
    // as incomplete (it lacks the closing entry) and rebuilt; otherwise the segment's
    // maxTimestamp would come from the shortened index and offsetForTimestamp would skip it.
    it('rebuilds a sealed .timeindex missing its last whole entry, so offsetForTimestamp stays exact', async () => {
      const base = pristine.segmentBases[0]!;
      const directory = copyOf(root, pristine.clean, 'timeindex-short');
      const path = logFile(directory, base, '.timeindex');
      const full = readFileSync(path).subarray(0, -INDEX_TRAILER_BYTES);
      expect(full.length, at('the sealed time index has entries')).toBeGreaterThanOrEqual(12);
      const short = full.subarray(0, full.length - 12);
      // With a trailer that matches: the closing-entry check, not the checksum, must see it.
      writeFileSync(path, indexFileBytes(short));
      const inSegment = pristine.batches.filter((batch) => batch.segmentBase === base);
      // Just above what the shortened index claims is the segment's largest timestamp.
      const timestamp =
        short.length === 0 ? Math.min(...inSegment.flatMap((batch) => batch.timestamps)) : short.readBigInt64BE(short.length - 12) + 1n;
      const query = Number(timestamp);
      const expected = expectedOffsetForTimestamp(pristine.batches, pristine.logEnd, query);
      expect(expected !== null && expected < inSegment.at(-1)!.lastOffset + 1, at('the answer lies in the damaged segment')).toBe(true);
      const log = await openLog(directory);
      const actual = await log.offsetForTimestamp(query);
      await log.close();
      rmSync(directory, { recursive: true, force: true });
      expect(actual, at(`${stem(base)}.timeindex cut from ${full.length} to ${short.length} bytes: offsetForTimestamp(${query})`)).toBe(expected);
    });
  });

  // Index files from before the trailer: like damaged ones, a clean open rebuilds the active
  // segment's from a scan of it alone (not a recovery of the whole log), and each sealed
  // segment's when first used, writing them back with the trailer.
  it('opens a clean log whose index files lack the trailer (an older version) without recovering it, and writes them back with one', async () => {
    const directory = copyOf(root, pristine.clean, 'legacy-indexes');
    for (const base of pristine.segmentBases) {
      for (const suffix of ['.index', '.timeindex']) {
        const path = logFile(directory, base, suffix);
        writeFileSync(path, readFileSync(path).subarray(0, -INDEX_TRAILER_BYTES));
      }
    }
    const log = await openLog(directory);
    expect(log.recovery, at('a clean open, no recovery')).toBeNull();
    await expectExactly(log, pristine.batches, 'legacy index files', { pointReads: allOffsets, timestamps: sampleTimestamps });
    await log.close();
    for (const base of pristine.segmentBases) {
      expect(indexFileEntries(readFileSync(logFile(directory, base, '.index')), 8), at(`${stem(base)}.index written back`)).toBeInstanceOf(Buffer);
      expect(indexFileEntries(readFileSync(logFile(directory, base, '.timeindex')), 12), at(`${stem(base)}.timeindex written back`)).toBeInstanceOf(Buffer);
    }
    rmSync(directory, { recursive: true, force: true });
  });

  // Bit rot the sense checks cannot see: the closing entry's timestamp lowered to just above
  // its predecessor's keeps the entries in order. Only the checksum tells; trusted, the segment would
  // pass for older than it is (a timestamp search would skip it, retention by time delete it).
  it('rebuilds a sealed .timeindex whose closing timestamp rotted lower, in order, so offsetForTimestamp stays exact', async () => {
    const base = pristine.segmentBases[0]!;
    const directory = copyOf(root, pristine.clean, 'timeindex-rot');
    const path = logFile(directory, base, '.timeindex');
    const file = readFileSync(path);
    const entries = file.length - INDEX_TRAILER_BYTES;
    expect(entries, at('the sealed time index has two entries or more')).toBeGreaterThanOrEqual(24);
    const closing = file.readBigInt64BE(entries - 12);
    const lowered = file.readBigInt64BE(entries - 24) + 1n;
    expect(lowered < closing, at('the closing entry holds a timestamp 2 or more above the one before')).toBe(true);
    file.writeBigInt64BE(lowered, entries - 12);
    writeFileSync(path, file);
    const query = Number(closing);
    const expected = expectedOffsetForTimestamp(pristine.batches, pristine.logEnd, query);
    const inSegment = pristine.batches.filter((batch) => batch.segmentBase === base);
    expect(expected !== null && expected <= inSegment.at(-1)!.lastOffset, at('the answer lies in the damaged segment')).toBe(true);
    const log = await openLog(directory);
    const actual = await log.offsetForTimestamp(query);
    await log.close();
    rmSync(directory, { recursive: true, force: true });
    expect(actual, at(`${stem(base)}.timeindex closing timestamp ${closing} rotted to ${lowered}: offsetForTimestamp(${query})`)).toBe(expected);
  });

  describe('lost or damaged recovery-point.checkpoint', () => {
    // A checkpoint is replaced atomically, so a crash leaves the old one or the new one, never a
    // damaged one: a damaged checkpoint is damage on the disk, and what it bounded (whether a
    // damaged end of the log was acknowledged) cannot be told. So a deleted or stale one lets the
    // torn tail be cut; a damaged one fences the partition, and a repair keeps the bytes.
    const fencing = new Set(['random bytes', 'empty', 'torn in half', 'a wrong CRC']);
    const damages: [string, (path: string, rng: Rng) => void][] = [
      ['deleted', (path) => unlinkSync(path)],
      ['random bytes', (path, rng) => writeFileSync(path, rng.bytes(rng.int(1, 200)))],
      ['empty', (path) => writeFileSync(path, '')],
      ['torn in half', (path) => writeFileSync(path, readFileSync(path).subarray(0, 30))],
      ['a wrong CRC', (path) => writeFileSync(path, readFileSync(path, 'utf8').replace(/crc32c (.)/, (_, digit: string) => `crc32c ${digit === '0' ? '1' : '0'}`))],
      ['a valid but stale recovery point 0', (path) => writeFileSync(path, encodeCheckpoint(0))],
    ];
    for (const [damage, apply] of damages) {
      it(`${fencing.has(damage) ? 'fences, cutting nothing,' : 'recovers correctly'} with a torn active tail, when the checkpoint is ${damage}`, async () => {
        const rng = rngFor(`checkpoint ${damage}`);
        const what = `checkpoint ${damage}`;
        const directory = copyOf(root, pristine.unclean, 'checkpoint');
        const path = join(directory, 'recovery-point.checkpoint');
        expect(existsSync(path), at(`${what}: the log wrote a checkpoint when it rolled`)).toBe(true);
        apply(path, rng);
        const fileBytes = statSync(activePath(directory)).size;
        const cut = rng.int(activeBatches.at(-3)!.position, fileBytes - 1);
        truncateSync(activePath(directory), cut);
        const { intact, lost, validBytes } = expectedAfterActiveDamage(cut);
        // A cut on a batch boundary leaves nothing torn: the log opens whole, the checkpoint aside.
        if (fencing.has(damage) && validBytes < cut) {
          const before = snapshot(directory);
          const fenced = await openLog(directory);
          await expectFenced(fenced, activePath(directory), validBytes, `${what}, cut at ${cut}`);
          expect(fenced.fenced!.message).toContain('the recovery checkpoint is damaged');
          await fenced.close();
          expectSameFiles(before, snapshot(directory), what);
          rmSync(directory, { recursive: true, force: true });
          return;
        }
        const truncated = reportedTruncated(directory, validBytes, cut);
        const log = await openLog(directory);
        expect(log.recovery!.bytesTruncated, at(`${what}: bytesTruncated (cut at ${cut})`)).toBe(truncated);
        await expectExactly(log, intact, `${what}, cut at ${cut}`, { pointReads: allOffsets.filter((offset) => offset < lost), timestamps: sampleTimestamps });
        await expectAppendAt(log, lost, what);
        await log.close();
        rmSync(directory, { recursive: true, force: true });
      });
    }
  });

  describe('a bit flip in a sealed segment', () => {
    // The checkpoint is missing, or lags one roll (a crash between creating the new segment and
    // writing the checkpoint): the damaged sealed segment is scanned at open.
    const scannedCases: [string, (pristine: Pristine) => { flipIn: number; checkpoint: number | null }][] = [
      ['no checkpoint, flip in the oldest segment', (p) => ({ flipIn: p.segmentBases[0]!, checkpoint: null })],
      ['no checkpoint, flip in a middle segment', (p) => ({ flipIn: p.segmentBases.at(-2)!, checkpoint: null })],
      ['checkpoint lagging one roll, flip in the segment it names', (p) => ({ flipIn: p.segmentBases.at(-2)!, checkpoint: p.segmentBases.at(-2)! })],
    ];
    for (const [name, setup] of scannedCases) {
      it(`fences the log at open and changes no file (${name})`, async () => {
        const rng = rngFor(name);
        const { flipIn, checkpoint } = setup(pristine);
        const directory = copyOf(root, pristine.unclean, 'sealed-flip');
        if (checkpoint === null) unlinkSync(join(directory, 'recovery-point.checkpoint'));
        else writeFileSync(join(directory, 'recovery-point.checkpoint'), encodeCheckpoint(checkpoint));
        const target = middlePayloadByte(pristine, flipIn, rng);
        const bit = rng.int(0, 7);
        const what = `${name}: bit ${bit} of byte ${target.flipAt} in ${stem(flipIn)}.log (batch ${target.baseOffset} at ${target.position})`;
        flipBit(logFile(directory, flipIn), target.flipAt, bit);
        const before = snapshot(directory);
        const log = await openLog(directory);
        await expectFenced(log, logFile(directory, flipIn), target.position, what);
        await log.close();
        expectSameFiles(before, snapshot(directory), what);
        rmSync(directory, { recursive: true, force: true });
      });
    }

    for (const state of ['unclean', 'clean'] as const) {
      it(`fences on the read of the damaged offset when the segment is older than the recovery point (${state} stop) and changes no file`, async () => {
        const rng = rngFor(`older ${state}`);
        const flipIn = pristine.segmentBases[0]!;
        const directory = copyOf(root, state === 'clean' ? pristine.clean : pristine.unclean, 'older-flip');
        const target = middlePayloadByte(pristine, flipIn, rng);
        const bit = rng.int(0, 7);
        const what = `${state} stop, bit ${bit} of byte ${target.flipAt} in ${stem(flipIn)}.log (batch ${target.baseOffset} at ${target.position})`;
        flipBit(logFile(directory, flipIn), target.flipAt, bit);
        const before = snapshot(directory);
        const log = await openLog(directory);
        // The open trusts segments below the recovery point (that is its point), so the active
        // segment still reads; the damaged batch must not.
        const last = activeBatches.at(-1)!;
        expect((await batchAt(log, last.baseOffset))?.equals(last.bytes), at(`${what}: the active segment reads`)).toBe(true);
        const error = await errorOf(log.read(target.baseOffset, 1));
        expect(codeOf(error), at(`${what}: reading offset ${target.baseOffset}`)).toBe(ErrorCode.PARTITION_FENCED);
        expect(error!.message, at(`${what}: the error names the file`)).toContain(logFile(directory, flipIn));
        expect(error!.message, at(`${what}: the error names the byte position`)).toContain(`at byte ${target.position}`);
        expect(log.fenced, at(`${what}: the log is fenced from then on`)).not.toBeNull();
        expect(codeOf(await errorOf(log.read(last.baseOffset, 1))), at(`${what}: later reads refused`)).toBe(ErrorCode.PARTITION_FENCED);
        expect(codeOf(await errorOf(log.append(buildBatch([{ value: Buffer.from('x') }], { timestamp: T0 })))), at(`${what}: appends refused`)).toBe(
          ErrorCode.PARTITION_FENCED,
        );
        await log.close();
        // Opening removes the clean-shutdown marker (by design: a crash from then on is unclean);
        // the fence adds its marker, so that a restart keeps it. Nothing else changes.
        before.delete('.clean-shutdown');
        const after = snapshot(directory);
        expect(after.get('fenced')?.toString(), at(`${what}: the fence marker`)).toMatch(/^strata-fence 1\n/);
        after.delete('fenced');
        expectSameFiles(before, after, what);
        rmSync(directory, { recursive: true, force: true });
      });
    }

    // Retention removing the damaged segment while a read waits on it: the damage goes with the
    // segment, so the read answers as for records retention removed, and nothing is fenced.
    it('does not fence for damage a read meets in a segment that retention removed while it read', async () => {
      const rng = rngFor('flip in a segment being removed');
      const flipIn = pristine.segmentBases[0]!;
      const directory = copyOf(root, pristine.clean, 'removed-flip');
      const target = middlePayloadByte(pristine, flipIn, rng);
      flipBit(logFile(directory, flipIn), target.flipAt, rng.int(0, 7));
      const fs = new TestFileSystem();
      const log = await openLog(directory, { fs });
      const held = fs.hold('read');
      const reading = errorOf(log.read(target.baseOffset, 1));
      await held.reached;
      log.updateConfig({ retentionBytes: log.sizeBytes - log.segmentSizes()[0]!.sizeBytes });
      const retention = log.applyRetention();
      await waitUntil(() => existsSync(`${logFile(directory, flipIn)}.deleted`), 'retention to rename the segment');
      held.release();
      const error = await reading;
      expect(codeOf(error)).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
      expect(error!.message).toMatch(/were removed by retention during the read; valid offsets now start at \d+$/);
      expect(await retention).toBe(1);
      expect(log.fenced).toBeNull();
      const last = activeBatches.at(-1)!;
      expect((await batchAt(log, last.baseOffset))?.equals(last.bytes), 'the log still serves').toBe(true);
      await log.close();
      expect(existsSync(join(directory, 'fenced')), 'no fence marker').toBe(false);
      rmSync(directory, { recursive: true, force: true });
    });

    // Header fields the CRC does not cover: baseOffset (bytes 0-7) is rewritten by the broker,
    // so a flip there is caught only by the offset-continuity check, which both the scan at
    // open and the read path of a sealed segment older than the recovery point must make.
    it('fences a read that meets a flipped baseOffset bit in a sealed segment older than the recovery point', async () => {
      const rng = rngFor('older baseOffset flip');
      const flipIn = pristine.segmentBases[0]!;
      const directory = copyOf(root, pristine.unclean, 'older-baseoffset-flip');
      // A batch no offset-index entry points at (an indexed one is caught: the read checks the
      // base offset of the batch the index points at, and rescans on a mismatch).
      const index = readFileSync(logFile(directory, flipIn, '.index')).subarray(0, -INDEX_TRAILER_BYTES);
      const indexed = new Set<number>([0]);
      for (let entry = 0; entry + 8 <= index.length; entry += 8) indexed.add(index.readUInt32BE(entry + 4));
      const candidates = pristine.batches.filter((batch) => batch.segmentBase === flipIn && !indexed.has(batch.position));
      expect(candidates.length, at('unindexed batches exist')).toBeGreaterThan(0);
      const target = candidates[rng.int(0, candidates.length - 1)]!;
      const what = `bit 4 of baseOffset of batch ${target.baseOffset} at byte ${target.position} of ${stem(flipIn)}.log`;
      flipBit(logFile(directory, flipIn), target.position + BASE_OFFSET_OFFSET + 7, 4);
      const log = await openLog(directory);
      let returned = 'an error';
      const error = await errorOf(
        log.read(target.baseOffset, 1).then(({ batches }) => {
          returned = batches.length === 0 ? 'nothing' : `a batch with offsets ${readBaseOffset(batches)}..${readLastOffset(batches)}`;
        }),
      );
      // Expected: PARTITION_FENCED. Actual: the read succeeds and returns a batch whose header
      // says it starts at baseOffset ± 16 (or the next batch), i.e. wrong data for this offset.
      expect(codeOf(error), at(`${what}: reading offset ${target.baseOffset} returned ${returned}`)).toBe(ErrorCode.PARTITION_FENCED);
      await log.close();
    });
  });

  // A sealed segment below the recovery point is trusted at open, not scanned. One whose log lost
  // its last batch (cut by hand, or by a disk) must fence the reads it fails, not hand out the
  // next segment's records for the lost offsets.
  describe('a sealed segment whose log ends short of the next segment', () => {
    for (const index of ['kept', 'deleted'] as const) {
      it(`fences a read of a lost offset, and changes no log (its .index ${index})`, async () => {
        const base = pristine.segmentBases[1]!;
        const directory = copyOf(root, pristine.clean, 'short-sealed');
        const lost = pristine.batches.filter((batch) => batch.segmentBase === base).at(-1)!;
        const what = `${stem(base)}.log cut before its last batch (offsets ${lost.baseOffset}..${lost.lastOffset}), .index ${index}`;
        truncateSync(logFile(directory, base), lost.position);
        const indexPath = logFile(directory, base, '.index');
        if (index === 'deleted') unlinkSync(indexPath);
        else {
          // Its entries for the bytes kept only, so that it passes the checks at load.
          const entries = readFileSync(indexPath).subarray(0, -INDEX_TRAILER_BYTES);
          let kept = 0;
          while (kept + 8 <= entries.length && entries.readUInt32BE(kept + 4) < lost.position) kept += 8;
          writeFileSync(indexPath, indexFileBytes(entries.subarray(0, kept)));
        }
        const log = await openLog(directory);
        const first = pristine.batches.find((batch) => batch.segmentBase === base)!;
        if (index === 'kept') expect((await batchAt(log, first.baseOffset))?.equals(first.bytes), at(`${what}: the records kept read`)).toBe(true);
        const error = await errorOf(log.read(lost.lastOffset, 1));
        expect(codeOf(error), at(`${what}: reading offset ${lost.lastOffset}`)).toBe(ErrorCode.PARTITION_FENCED);
        expect(error!.message, at(`${what}: the error names the file`)).toContain(logFile(directory, base));
        expect(log.fenced, at(`${what}: fenced from then on`)).toBe(error);
        await log.close();
        const kept = readFileSync(logFile(pristine.clean, base)).subarray(0, lost.position);
        expect(readFileSync(logFile(directory, base)).equals(kept), at(`${what}: the log as it was`)).toBe(true);
        rmSync(directory, { recursive: true, force: true });
      });
    }

    it("fences a timestamp search that loads the short segment's indexes, rather than rebuild them to its shorter end", async () => {
      const base = pristine.segmentBases[1]!;
      const directory = copyOf(root, pristine.clean, 'short-sealed-time');
      const inSegment = pristine.batches.filter((batch) => batch.segmentBase === base);
      const lost = inSegment.at(-1)!;
      truncateSync(logFile(directory, base), lost.position);
      unlinkSync(logFile(directory, base, '.timeindex'));
      const log = await openLog(directory);
      const error = await errorOf(log.offsetForTimestamp(Math.max(...lost.timestamps)));
      expect(codeOf(error)).toBe(ErrorCode.PARTITION_FENCED);
      expect(error!.message).toContain(
        `${logFile(directory, base)} at byte ${lost.position}: the log ends at offset ${lost.baseOffset}, but the segment holds offsets up to ${lost.lastOffset}`,
      );
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    });
  });

  describe('repair', () => {
    /** A copy of `source` with a bit flipped in a record of the oldest segment, below the recovery checkpoint. */
    const flippedInOldest = (seedName: string, source: string, label: string) => {
      const rng = rngFor(seedName);
      const flipIn = pristine.segmentBases[0]!;
      const directory = copyOf(root, source, label);
      const target = middlePayloadByte(pristine, flipIn, rng);
      flipBit(logFile(directory, flipIn), target.flipAt, rng.int(0, 7));
      return { directory, flipIn, target };
    };

    it('logs a scan of a cleanly closed log as a repair, not as an unclean shutdown', async () => {
      const messages: string[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void messages.push(JSON.parse(line).msg as string) });
      const log = await openLog(copyOf(root, pristine.clean, 'repair-log-line'), { repair: true, logger });
      await log.close();
      expect(messages).toContain('repair: scanning every segment of the log');
      expect(messages.filter((message) => message.includes('unclean'))).toEqual([]);
    });

    // A read (or retention) fences the partition for damage in an old sealed segment, below the
    // recovery checkpoint, where a start does not look; the repair it then advises must find it.
    it('scans the whole log, below the recovery checkpoint and after a clean close too', async () => {
      const { directory, flipIn, target } = flippedInOldest('repair below the checkpoint', pristine.unclean, 'repair-below-checkpoint');
      const what = `repair after a flip in byte ${target.flipAt} of ${stem(flipIn)}.log, below the checkpoint`;
      const opened = await openLog(directory); // scans from the checkpoint only: not fenced
      expect(opened.fenced, at(`${what}: an unclean start does not look below the checkpoint`)).toBeNull();
      await opened.close(); // clean: the marker is written
      const fs = new TestFileSystem();
      const log = await openLog(directory, { repair: true, fs });
      expect(log.recovery?.quarantined?.fromOffset, at(`${what}: quarantined from offset`)).toBe(target.baseOffset);
      expect(log.logEndOffset, at(`${what}: log end offset`)).toBe(target.baseOffset);
      // The copy's entries are durable up the tree: quarantine/<time>, quarantine/, the partition.
      const run = log.recovery!.quarantined!.directory;
      expect(fs.syncedDirectories).toEqual(expect.arrayContaining([run, join(directory, 'quarantine'), directory]));
      expect(fs.syncedDirectories.indexOf(join(directory, 'quarantine'))).toBeGreaterThan(fs.syncedDirectories.indexOf(run));
      await log.close();
    });

    // Fenced by a read for damage below the checkpoint, the log records the fence: a start,
    // which would not look there, keeps it fenced until the repair, which lifts it.
    it('keeps a log that a read fenced fenced across a restart, until a repair', async () => {
      const { directory, flipIn, target } = flippedInOldest('fence across a restart', pristine.clean, 'fence-across-restart');
      const what = `a fence for a flip in byte ${target.flipAt} of ${stem(flipIn)}.log`;
      const first = await openLog(directory);
      expect(first.fenced, at(`${what}: not fenced at a clean start`)).toBeNull();
      expect(codeOf(await errorOf(batchAt(first, target.baseOffset))), at(`${what}: the read fences`)).toBe(ErrorCode.PARTITION_FENCED);
      await first.close();
      expect(readFileSync(join(directory, 'fenced'), 'utf8'), at(`${what}: the marker`)).toMatch(new RegExp(`^strata-fence 1\nfile ${stem(flipIn)}\.log\nproblem .+\n$`));

      const second = await openLog(directory);
      expect(second.fenced?.message, at(`${what}: fenced again at the next start`)).toMatch(
        new RegExp(`is fenced: corrupt data: corrupt record batch in .*${stem(flipIn)}\\.log at byte \\d+: CRC mismatch: .*\\(found by a read before the broker restarted; it stays fenced until repaired\\)\\. Nothing was dropped\\. Stop the broker and run \`strata repair --dir `),
      );
      expect(codeOf(await errorOf(batchAt(second, pristine.logEnd - 1))), at(`${what}: a read far from the damage is refused too`)).toBe(ErrorCode.PARTITION_FENCED);
      await second.close();

      const repaired = await openLog(directory, { repair: true });
      expect(repaired.recovery?.quarantined?.fromOffset, at(`${what}: quarantined from`)).toBe(target.baseOffset);
      expect(repaired.recovery?.liftedFence?.file, at(`${what}: the lifted fence`)).toBe(`${stem(flipIn)}.log`);
      await repaired.close();
      expect(existsSync(join(directory, 'fenced')), at(`${what}: no marker after the repair`)).toBe(false);
      const third = await openLog(directory);
      expect(third.fenced, at(`${what}: serving after the repair`)).toBeNull();
      expect(third.logEndOffset).toBe(target.baseOffset);
      await third.close();
    });

    it('has the marker on disk when a close returns, for a read that fenced the log while it closed', async () => {
      const { directory, target } = flippedInOldest('fence while closing', pristine.clean, 'fence-while-closing');
      const fs = new TestFileSystem();
      const log = await openLog(directory, { fs });
      // The read is under way when the close starts, and meets the damage only after the close
      // has begun; the marker's write is then held at its rename.
      const readHeld = fs.hold('read');
      const reading = errorOf(log.read(target.baseOffset, 1));
      await readHeld.reached;
      let closed = false;
      const closing = log.close().then(() => (closed = true));
      const renameHeld = fs.hold('rename', `${sep}fenced`);
      readHeld.release();
      await renameHeld.reached;
      expect(codeOf(await reading)).toBe(ErrorCode.PARTITION_FENCED);
      // Once the segments are closed, a close that did not wait for the marker returns at once.
      const deadline = Date.now() + 10_000;
      while (fs.openFds.size > 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      expect(fs.openFds.size, 'the segments closed').toBe(0);
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
      expect(closed, 'the close waits for the marker').toBe(false);
      renameHeld.release();
      await closing;
      expect(existsSync(join(directory, 'fenced')), 'the marker, as the close returns').toBe(true);
    });

    it('fences at the start for a marker that does not parse, and a repair of an intact log lifts it', async () => {
      const directory = copyOf(root, pristine.clean, 'torn-fence-marker');
      writeFileSync(join(directory, 'fenced'), 'strata-fen');
      const fenced = await openLog(directory);
      expect(fenced.fenced?.message).toMatch(/is fenced: corrupt data: the fence marker recorded before the last restart does not parse \(found by a read/);
      await fenced.close();
      const repaired = await openLog(directory, { repair: true });
      expect(repaired.recovery?.quarantined).toBeNull();
      expect(repaired.recovery?.liftedFence).toEqual({ file: '', problem: 'the fence marker recorded before the last restart does not parse' });
      expect(repaired.logEndOffset).toBe(pristine.logEnd);
      await repaired.close();
      const reopened = await openLog(directory);
      expect(reopened.fenced).toBeNull();
      await reopened.close();
    });

    for (const flipWhere of ['oldest', 'middle'] as const) {
      it(`opens a fenced log with { repair: true }: keeps the prefix, quarantines the rest (flip in the ${flipWhere} segment)`, async () => {
        const rng = rngFor(`repair ${flipWhere}`);
        const flipIn = flipWhere === 'oldest' ? pristine.segmentBases[0]! : pristine.segmentBases.at(-2)!;
        const directory = copyOf(root, pristine.unclean, 'repair');
        unlinkSync(join(directory, 'recovery-point.checkpoint'));
        const target = middlePayloadByte(pristine, flipIn, rng);
        const bit = rng.int(0, 7);
        const what = `repair after bit ${bit} of byte ${target.flipAt} in ${stem(flipIn)}.log (batch ${target.baseOffset} at ${target.position})`;
        flipBit(logFile(directory, flipIn), target.flipAt, bit);
        const before = snapshot(directory);

        const fenced = await openLog(directory);
        expect(fenced.fenced, at(`${what}: fenced without repair`)).not.toBeNull();
        await fenced.close();

        const log = await openLog(directory, { repair: true });
        const intact = pristine.batches.filter((batch) => batch.baseOffset < target.baseOffset);
        await expectExactly(log, intact, what, { pointReads: intact.flatMap(recordOffsets), timestamps: sampleTimestamps });
        const quarantined = log.recovery?.quarantined;
        expect(quarantined, at(`${what}: recovery.quarantined`)).toBeTruthy();
        expect(quarantined!.fromOffset, at(`${what}: quarantined from offset`)).toBe(target.baseOffset);

        // quarantine/<time>/ holds the damaged tail and every later segment, byte for byte.
        const quarantineRoot = join(directory, 'quarantine');
        const runs = readdirSync(quarantineRoot);
        expect(runs.length, at(`${what}: one quarantine run`)).toBe(1);
        expect(join(quarantineRoot, runs[0]!), at(`${what}: reported directory`)).toBe(quarantined!.directory);
        const held = snapshot(quarantined!.directory);
        const damagedName = `${stem(flipIn)}.log`;
        const later = pristine.segmentBases.filter((base) => base > flipIn);
        const expectedFiles = new Map<string, Buffer>();
        expectedFiles.set(`${damagedName}.from-byte-${target.position}`, before.get(damagedName)!.subarray(target.position));
        for (const base of later) {
          for (const suffix of ['.log', '.index', '.timeindex']) {
            const name = stem(base) + suffix;
            if (before.has(name)) expectedFiles.set(name, before.get(name)!);
          }
        }
        expectSameFiles(expectedFiles, held, `${what}: quarantine contents`);
        let movedBytes = before.get(damagedName)!.length - target.position;
        for (const base of later) movedBytes += before.get(`${stem(base)}.log`)!.length;
        expect(quarantined!.bytes, at(`${what}: quarantined bytes`)).toBe(movedBytes);
        expect(segmentBasesIn(directory), at(`${what}: segments left`)).toEqual(pristine.segmentBases.filter((base) => base <= flipIn));
        expect(statSync(logFile(directory, flipIn)).size, at(`${what}: the damaged log is cut at the damage`)).toBe(target.position);

        const added = await expectAppendAt(log, target.baseOffset, what);
        // A crash right after the repair and an append recovers too...
        const crashed = copyOf(root, directory, 'repair-crash');
        await log.close();
        const afterCrash = await openLog(crashed);
        await expectExactly(afterCrash, [...intact, added], `${what}, crash after the repair`, { pointReads: intact.flatMap(recordOffsets) });
        await afterCrash.close();
        // ...and so does a clean reopen.
        const again = await openLog(directory);
        await expectExactly(again, [...intact, added], `${what}, reopened`, { pointReads: intact.flatMap(recordOffsets), timestamps: sampleTimestamps });
        await again.close();
        rmSync(directory, { recursive: true, force: true });
        rmSync(crashed, { recursive: true, force: true });
      });
    }
  });
});

describe(`damage below the recovery point of the active segment (seed ${SEED})`, () => {
  // A clean close fdatasyncs everything and writes the recovery checkpoint at the log end; a
  // reopen then appends to the same (active) segment and crashes. Damage below the checkpoint
  // lies in data known durable: it must fence, not be cut off as an unfinished write.
  const config: Partial<LogConfig> = { segmentBytes: 1024 * 1024, indexIntervalBytes: 256, flush: 'always' };
  const durableCount = 50;
  let root: string;
  let crashed: string;
  let written: Placed[];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'strata-recovery-below-checkpoint-'));
    const source = join(root, 'source');
    const batches: Batch[] = [];
    let log = await openLog(source, { config });
    while (batches.length < durableCount) await appendSmallBatch(log, batches);
    await log.close();
    log = await openLog(source, { config });
    while (batches.length < durableCount + 10) await appendSmallBatch(log, batches);
    crashed = join(root, 'crashed');
    cpSync(source, crashed, { recursive: true }); // while open: an unclean stop
    await log.close();
    expect(segmentBasesIn(crashed), at('one segment')).toEqual([0]);
    written = placeBatches(crashed, batches);
  });

  afterAll(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('fences (does not truncate) after a bit flip in a batch the clean close made durable', async () => {
    const rng = rngFor('flip below the recovery point');
    const directory = copyOf(root, crashed, 'below-checkpoint-flip');
    const target = written[5]!;
    const flipAt = target.position + rng.int(RECORDS_OFFSET, target.bytes.length - 1);
    const what = `bit flip at byte ${flipAt} (batch ${target.baseOffset} at ${target.position}), recovery point ${durableCount}`;
    flipBit(logFile(directory, 0), flipAt, rng.int(0, 7));
    const before = snapshot(directory);
    const log = await openLog(directory, { config });
    const summary = `logEndOffset=${log.logEndOffset}, bytesTruncated=${log.recovery?.bytesTruncated}`;
    expect(log.fenced, at(`${what}: fenced (got ${summary})`)).not.toBeNull();
    await expectFenced(log, logFile(directory, 0), target.position, what);
    expect(log.fenced!.message, at(`${what}: the fence says why it is not a torn tail`)).toContain(`below the recovery point ${durableCount}`);
    await log.close();
    expectSameFiles(before, snapshot(directory), what);
  });

  it('fences (does not truncate) that damage when the recovery checkpoint is damaged too, and cuts it as a torn tail only when there is none', async () => {
    const rng = rngFor('flip under a damaged checkpoint');
    // Batch 45: within the unsynced window of the log's end, so only the checkpoint tells it from a torn write.
    const target = written[45]!;
    const flipAt = target.position + rng.int(RECORDS_OFFSET, target.bytes.length - 1);
    const bit = rng.int(0, 7);
    const what = `bit flip at byte ${flipAt} (batch ${target.baseOffset} at ${target.position})`;
    const checkpointPath = (directory: string): string => join(directory, 'recovery-point.checkpoint');

    const damaged = copyOf(root, crashed, 'damaged-checkpoint-flip');
    flipBit(logFile(damaged, 0), flipAt, bit);
    writeFileSync(checkpointPath(damaged), readFileSync(checkpointPath(damaged), 'utf8').replace('recovery-point', 'recovery-pount'));
    const before = snapshot(damaged);
    const log = await openLog(damaged, { config });
    expect(log.fenced, at(`${what}, checkpoint damaged: fenced (logEndOffset=${log.logEndOffset})`)).not.toBeNull();
    expect(log.fenced!.message).toContain('the recovery checkpoint is damaged, so whether these bytes were acknowledged cannot be told');
    await expectFenced(log, logFile(damaged, 0), target.position, what);
    await log.close();
    expectSameFiles(before, snapshot(damaged), `${what}, checkpoint damaged`);

    const missing = copyOf(root, crashed, 'missing-checkpoint-flip');
    flipBit(logFile(missing, 0), flipAt, bit);
    rmSync(checkpointPath(missing));
    const cut = await openLog(missing, { config });
    expect(cut.fenced, at(`${what}, no checkpoint: read as a torn tail (${cut.fenced?.message})`)).toBeNull();
    expect(cut.logEndOffset).toBe(target.baseOffset);
    await cut.close();
  });

  // A clean open checks only the batches after the last index entry; the replay of producer
  // state reads the whole active segment when the snapshot is gone. Damage it meets fences the
  // partition, as damage the open found does, instead of failing the open (and the broker's start).
  it('opens fenced, with the marker on disk, when the replay of producer state meets a damaged batch', async () => {
    const rng = rngFor('flip met by the producer-state replay');
    const directory = copyOf(root, join(root, 'source'), 'replay-flip');
    unlinkSync(join(directory, PRODUCER_STATE_FILE));
    const target = written[5]!;
    const flipAt = target.position + rng.int(RECORDS_OFFSET, target.bytes.length - 1);
    const what = `bit flip at byte ${flipAt} (batch ${target.baseOffset} at ${target.position}), no producer-state snapshot`;
    flipBit(logFile(directory, 0), flipAt, rng.int(0, 7));
    const log = await openLog(directory, { config });
    expect(log.recovery, at(`${what}: a clean open`)).toBeNull();
    await expectFenced(log, logFile(directory, 0), target.position, what);
    await log.close();
    expect(readFileSync(join(directory, 'fenced')).toString(), at(`${what}: the fence marker`)).toMatch(/^strata-fence 1\n/);
  });

  // Above the checkpoint, damage followed by valid batches within the unsynced window reads
  // like an unfinished write. A read that met it before the restart proves otherwise: reads
  // stop at the high watermark, so it lay in acknowledged data.
  it('fences, and does not cut, damage above the recovery point that a read recorded before the restart; a repair quarantines it', async () => {
    const rng = rngFor('flip above the recovery point, found by a read');
    const directory = copyOf(root, crashed, 'above-checkpoint-read-fence');
    const target = written[durableCount + 5]!;
    const flipAt = target.position + rng.int(RECORDS_OFFSET, target.bytes.length - 1);
    const what = `bit flip at byte ${flipAt} (batch ${target.baseOffset}), recovery point ${durableCount}, fence marker`;
    flipBit(logFile(directory, 0), flipAt, rng.int(0, 7));
    await writeFenceMarker(new TestFileSystem(), directory, { file: `${stem(0)}.log`, problem: 'corrupt record batch: CRC mismatch' });
    const before = snapshot(directory);

    const log = await openLog(directory, { config });
    await expectFenced(log, logFile(directory, 0), target.position, what);
    expect(log.fenced!.message, at(`${what}: says why it is not a torn tail`)).toContain('a read found damage in this segment before the restart');
    await log.close();
    expectSameFiles(before, snapshot(directory), `${what}: nothing cut`);

    const repaired = await openLog(directory, { config, repair: true });
    const quarantined = repaired.recovery?.quarantined;
    expect(quarantined?.fromOffset, at(`${what}: quarantined from`)).toBe(target.baseOffset);
    const damaged = before.get(`${stem(0)}.log`)!;
    expect(quarantined!.bytes, at(`${what}: quarantined bytes`)).toBe(damaged.length - target.position);
    expect(readFileSync(join(quarantined!.directory, `${stem(0)}.log.from-byte-${target.position}`)).equals(damaged.subarray(target.position)), at(`${what}: the copy`)).toBe(true);
    await expectExactly(repaired, written.slice(0, durableCount + 5), `${what}: after the repair`);
    await repaired.close();
  });

  it('a repair moves a torn tail to quarantine instead of dropping it', async () => {
    const directory = copyOf(root, crashed, 'repair-torn-tail');
    const last = written.at(-1)!;
    truncateSync(logFile(directory, 0), last.position + last.bytes.length - 7);
    const before = readFileSync(logFile(directory, 0));
    const repaired = await openLog(directory, { config, repair: true });
    const quarantined = repaired.recovery?.quarantined;
    expect(quarantined?.fromOffset, at('quarantined from the torn batch')).toBe(last.baseOffset);
    expect(repaired.recovery?.bytesTruncated, at('nothing dropped')).toBe(0);
    expect(readFileSync(join(quarantined!.directory, `${stem(0)}.log.from-byte-${last.position}`)).equals(before.subarray(last.position)), at('the copy')).toBe(true);
    await expectExactly(repaired, written.slice(0, -1), 'after the repair of a torn tail');
    await repaired.close();
  });

  it('fences when the active segment ends cleanly below the recovery point', async () => {
    const directory = copyOf(root, crashed, 'below-checkpoint-cut');
    const cutAt = written[20]!.position; // a batch boundary: every batch before it is whole
    truncateSync(logFile(directory, 0), cutAt);
    const log = await openLog(directory, { config });
    expect(log.fenced, at(`cut at byte ${cutAt}: fenced (logEndOffset=${log.logEndOffset})`)).not.toBeNull();
    expect(log.fenced!.message, at(`cut at byte ${cutAt}: names the recovery point`)).toContain(`recovery point ${durableCount}`);
    await expectFenced(log, logFile(directory, 0), cutAt, `cut at byte ${cutAt}`);
    await log.close();
  });

  it('a repair keeps the prefix and lowers the checkpoint, so a later torn tail is still truncated', async () => {
    const rng = rngFor('repair below the recovery point');
    const directory = copyOf(root, crashed, 'below-checkpoint-repair');
    const target = written[5]!;
    flipBit(logFile(directory, 0), target.position + rng.int(RECORDS_OFFSET, target.bytes.length - 1), rng.int(0, 7));
    const log = await openLog(directory, { config, repair: true });
    expect(log.recovery?.quarantined?.fromOffset, at('quarantined from the damaged batch')).toBe(target.baseOffset);
    await expectExactly(log, written.slice(0, 5), 'after the repair');
    const added = await expectAppendAt(log, target.baseOffset, 'after the repair');
    // Crash with a torn last batch: above the lowered checkpoint, so it is cut, not fenced.
    const torn = copyOf(root, directory, 'below-checkpoint-repair-torn');
    // The log knows the checkpoint was lowered: a move takes it up to the new end at once.
    expect(await log.checkpointRecoveryPoint(), 'the checkpoint moves past the lowered one').toBe(true);
    expect(checkpointIn(directory)).toBe(added.lastOffset + 1);
    await log.close();
    truncateSync(logFile(torn, 0), statSync(logFile(torn, 0)).size - 7);
    const reopened = await openLog(torn, { config });
    expect(reopened.fenced, at(`after the repair, a torn tail: not fenced (${reopened.fenced?.message})`)).toBeNull();
    expect(reopened.recovery?.bytesTruncated, at('the torn batch is cut')).toBe(added.bytes.length - 7);
    await expectExactly(reopened, written.slice(0, 5), 'a torn tail after the repair');
    await reopened.close();
  });
});

describe(`a recovery checkpoint the running log moved up (seed ${SEED})`, () => {
  // The broker moves each partition's checkpoint up to its durable end every interval
  // (`checkpointRecoveryPoint`): damage to records older than that, even with less than the
  // unsynced window of valid batches after it, is then fenced rather than cut as a torn tail.
  const config: Partial<LogConfig> = { segmentBytes: 1024 * 1024, indexIntervalBytes: 256, flush: 'always' };
  const root = useTemporaryRoot('strata-recovery-moved-checkpoint-');

  it('fences after a bit flip below it, and still cuts a torn tail above it', async () => {
    const rng = rngFor('flip below a moved recovery point');
    const source = join(root.path, 'source');
    const batches: Batch[] = [];
    const log = await openLog(source, { config });
    while (batches.length < 50) await appendSmallBatch(log, batches);
    expect(await log.checkpointRecoveryPoint(), 'the checkpoint moves up').toBe(true);
    expect(checkpointIn(source), 'to the durable end').toBe(50);
    expect(await log.checkpointRecoveryPoint(), 'not written again while nothing new is durable').toBe(false);
    while (batches.length < 60) await appendSmallBatch(log, batches);
    const crashed = join(root.path, 'crashed');
    cpSync(source, crashed, { recursive: true }); // while open: an unclean stop
    await log.close();
    const written = placeBatches(crashed, batches);
    expect(checkpointIn(crashed), 'the crash came after the move, before the close').toBe(50);

    // Batches 5 and 49 lie below the checkpoint; 50, the first above it, may be a torn write.
    for (const index of [5, 49, 50]) {
      const flipped = copyOf(root.path, crashed, `moved-checkpoint-flip-${index}`);
      const target = written[index]!;
      const flipAt = target.position + rng.int(RECORDS_OFFSET, target.bytes.length - 1);
      const what = `bit flip at byte ${flipAt} (batch ${target.baseOffset} at ${target.position}), recovery point 50`;
      flipBit(logFile(flipped, 0), flipAt, rng.int(0, 7));
      const damaged = await openLog(flipped, { config });
      if (index < 50) {
        expect(damaged.fenced?.message, at(`${what}: fenced, not cut (logEndOffset=${damaged.logEndOffset})`)).toContain('below the recovery point 50');
        await expectFenced(damaged, logFile(flipped, 0), target.position, what);
      } else {
        expect(damaged.fenced, at(`${what}: not fenced (${damaged.fenced?.message})`)).toBeNull();
        expect(damaged.logEndOffset, at(`${what}: cut from the damaged batch`)).toBe(50);
      }
      await damaged.close();
    }

    const torn = copyOf(root.path, crashed, 'moved-checkpoint-torn');
    truncateSync(logFile(torn, 0), statSync(logFile(torn, 0)).size - 7);
    const reopened = await openLog(torn, { config });
    expect(reopened.fenced, at(`a torn tail above the recovery point: not fenced (${reopened.fenced?.message})`)).toBeNull();
    expect(reopened.recovery?.bytesTruncated, at('the torn batch is cut')).toBe(written.at(-1)!.bytes.length - 7);
    await expectExactly(reopened, written.slice(0, -1), 'a torn tail above a moved recovery point');
    await reopened.close();
  });

  it('moves only as far as an fdatasync covered, under flush=interval', async () => {
    const directory = join(root.path, 'interval');
    const batches: Batch[] = [];
    const log = await openLog(directory, { config: { ...config, flush: 'interval', flushMs: 3_600_000 } });
    while (batches.length < 5) await appendSmallBatch(log, batches);
    expect(log.highWatermark, 'acknowledged on write').toBe(5);
    expect(await log.checkpointRecoveryPoint(), 'nothing is durable yet').toBe(false);
    await log.flush();
    expect(await log.checkpointRecoveryPoint(), 'moved after the fdatasync').toBe(true);
    expect(checkpointIn(directory)).toBe(5);
    await log.close();
  });

  it('is not moved for a fenced log, and a close waits for a move under way and writes its own after it', async () => {
    const fs = new TestFileSystem();
    const batches: Batch[] = [];
    const fenced = await openLog(join(root.path, 'fenced'), { config, fs });
    while (batches.length < 3) await appendSmallBatch(fenced, batches);
    fs.failFdatasync = true;
    await expect(appendSmallBatch(fenced, batches)).rejects.toMatchObject({ code: ErrorCode.PARTITION_FENCED });
    fs.failFdatasync = false;
    const writesBefore = fs.fileWrites.length;
    expect(await fenced.checkpointRecoveryPoint(), 'a fenced log').toBe(false);
    expect(fs.fileWrites.length, 'no file written').toBe(writesBefore);
    await fenced.close();

    const directory = join(root.path, 'close-during-move');
    const log = await openLog(directory, { config, fs });
    batches.length = 0;
    while (batches.length < 3) await appendSmallBatch(log, batches);
    const held = fs.hold('rename', 'recovery-point.checkpoint');
    const moving = log.checkpointRecoveryPoint();
    await held.reached;
    await appendSmallBatch(log, batches);
    let closed = false;
    const closing = log.close().then(() => (closed = true));
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(closed, 'the close waits for the move').toBe(false);
    // The hold would stop the close's own rename too; its write of the temporary file shows
    // whether it waited for the move or ran beside it.
    expect(fs.fileWrites.filter((path) => path.endsWith(`recovery-point.checkpoint${TEMP_SUFFIX}`)).length, "only the move's write, while it is held").toBe(1);
    held.release();
    expect(await moving).toBe(true);
    await closing;
    expect(checkpointIn(directory), "the close's checkpoint, at the log end").toBe(4);
  });

  it('is written after a move under way, when a roll writes it too', async () => {
    const fs = new TestFileSystem();
    const directory = join(root.path, 'roll');
    const batches: Batch[] = [];
    const log = await openLog(directory, { config: { ...config, segmentBytes: 16 * 1024 }, fs });
    while (batches.length < 10) await appendSmallBatch(log, batches);
    const held = fs.hold('rename', 'recovery-point.checkpoint');
    const moving = log.checkpointRecoveryPoint();
    await held.reached;
    // While the move waits at its rename, the log fills its segment and rolls.
    const appending: Promise<unknown>[] = [];
    const deadline = Date.now() + 10_000;
    while (log.segmentCount < 2 && Date.now() < deadline) {
      const bytes = buildBatch([{ value: Buffer.alloc(1000, 7), timestamp: T0 }], { timestamp: T0 });
      appending.push(log.append(bytes));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(log.segmentCount, 'rolled').toBe(2);
    // The roll writes the producer-state snapshot at the new segment's base, then the
    // checkpoint: that write (of the same temporary file) waits for the move under way.
    const base = log.segmentSizes()[1]!.baseOffset;
    while ((await ProducerState.load(fs, directory))?.offset !== base && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    const checkpointWrites = () => fs.fileWrites.filter((path) => path.endsWith(`recovery-point.checkpoint${TEMP_SUFFIX}`)).length;
    expect(checkpointWrites(), "only the move's write, while it is held").toBe(1);
    held.release();
    expect(await moving, 'the move under way completes').toBe(true);
    await Promise.all(appending);
    expect(checkpointWrites(), "then the roll's").toBeGreaterThan(1);
    expect(checkpointIn(directory), "the last roll's checkpoint, at its new segment's base").toBe(log.segmentSizes().at(-1)!.baseOffset);
    await log.close();
    expect(checkpointIn(directory), 'the clean close').toBe(log.logEndOffset);
  });
});

describe(`acknowledged data deep in the active segment (seed ${SEED})`, () => {
  // recovery treats damage in the active segment as a torn tail only when it could be unsynced:
  // the writer never leaves more than UNSYNCED_WINDOW_BYTES (32 MiB) written but not
  // fdatasynced, so damage with more than 32 MiB of valid batches after it hit acknowledged,
  // synced data and must fence, not truncate. (The nearest valid batch after a bit flip is the
  // very next one, so recovery must look for one beyond the window, not the nearest.)
  it('fences (does not truncate) after a bit flip followed by more than 32 MiB of valid batches', async () => {
    const rng = rngFor('deep active flip');
    const root = mkdtempSync(join(tmpdir(), 'strata-recovery-deep-'));
    try {
      const config: Partial<LogConfig> = { segmentBytes: 64 * 1024 * 1024, indexIntervalBytes: 4096, flush: 'always' };
      const source = join(root, 'source');
      const log = await openLog(source, { config });
      const batches: Batch[] = [];
      let offset = 0;
      while (log.sizeBytes < 40 * 1024 * 1024) {
        const group = Array.from({ length: 8 }, () => {
          const records: RecordInput[] = Array.from({ length: 7 }, () => ({ value: Buffer.alloc(64 * 1024, rng.int(0, 255)), timestamp: T0 + offset++ }));
          return buildBatch(records, { timestamp: T0 });
        });
        const results = await Promise.all(group.map((batch) => log.append(batch)));
        results.forEach((result, index) =>
          batches.push({ baseOffset: result.baseOffset, lastOffset: result.lastOffset, bytes: group[index]!, timestamps: [] }),
        );
      }
      expect(log.segmentCount, at('one segment')).toBe(1);
      const directory = join(root, 'crashed');
      cpSync(source, directory, { recursive: true });
      await log.close();
      rmSync(source, { recursive: true, force: true });

      // Damage a batch about 1 MiB in: more than 38 MiB of valid, synced batches follow it.
      let position = 0;
      let index = 0;
      while (position < 1024 * 1024) position += batches[index++]!.bytes.length;
      const damaged = batches[index]!;
      const flipAt = position + rng.int(RECORDS_OFFSET, damaged.bytes.length - 1);
      const path = logFile(directory, 0);
      const fileBytes = statSync(path).size;
      const what = `bit flip at byte ${flipAt} of ${fileBytes} (batch ${damaged.baseOffset} at ${position})`;
      flipBit(path, flipAt, rng.int(0, 7));
      const before = snapshot(directory);
      const reopened = await openLog(directory, { config });
      const fence = reopened.fenced;
      const summary = `fenced=${fence !== null}, logEndOffset=${reopened.logEndOffset}, bytesTruncated=${reopened.recovery?.bytesTruncated}`;
      await reopened.close();
      expect(fence, at(`${what}: fenced (got ${summary})`)).not.toBeNull();
      expect(fence!.message, at(`${what}: names the position`)).toContain(`at byte ${position}`);
      expectSameFiles(before, snapshot(directory), what);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe(`index settings and index damage on the active segment (seed ${SEED})`, () => {
  // Room for 1,024 index entries, one per 4 KiB: the 2 MB written below need about 500.
  const config: Partial<LogConfig> = { segmentBytes: 64 * 1024 * 1024, segmentIndexBytes: 12 * 1024, indexIntervalBytes: 4096, flush: 'always' };

  /** Appends `count` durable one-record batches of `bytes` bytes, `parallel` at a time. */
  async function appendBatches(log: PartitionLog, rng: Rng, appended: Batch[], count: number, bytes: number, parallel = 1): Promise<void> {
    for (let done = 0; done < count; done += parallel) {
      const group = Array.from({ length: Math.min(parallel, count - done) }, () => {
        const timestamp = T0 + appended.length;
        return { batch: buildBatch([{ value: rng.bytes(bytes), timestamp }], { timestamp }), timestamp };
      });
      const results = await Promise.all(group.map(({ batch }) => log.append(batch)));
      results.forEach((result, index) =>
        appended.push({ baseOffset: result.baseOffset, lastOffset: result.lastOffset, bytes: Buffer.from(group[index]!.batch), timestamps: [group[index]!.timestamp] }),
      );
    }
  }

  // Recovery rebuilds the active segment's index under the settings of the day; a segment
  // written under roomier ones once made it stop at "index full" and cut acknowledged records.
  it.each([
    ['segment.index.bytes lowered to 1 KiB', { segmentIndexBytes: 1024 }],
    ['index.interval.bytes lowered to 64 (an entry per batch: 2,000)', { indexIntervalBytes: 64 }],
  ])('%s, then a crash: recovery keeps every acknowledged record', async (change, lowered) => {
    const rng = rngFor(`index settings: ${change}`);
    const root = mkdtempSync(join(tmpdir(), 'strata-recovery-settings-'));
    try {
      const source = join(root, 'source');
      const log = await openLog(source, { config });
      const appended: Batch[] = [];
      await appendBatches(log, rng, appended, 2_000, 1_000);
      log.updateConfig(lowered);
      await appendBatches(log, rng, appended, 1, 10);
      const crashed = copyOf(root, source, 'crashed');
      await log.close();
      const reopened = await openLog(crashed, { config: { ...config, ...lowered } });
      try {
        expect(reopened.recovery?.bytesTruncated, at(`${change}: bytes truncated`)).toBe(0);
        await expectExactly(reopened, appended, change, { pointReads: [0, 1_000, 1_999, 2_000] });
        await expectAppendAt(reopened, 2_001, change);
        // The rebuilt index holds every entry, but counts as full under today's bound: the
        // append above rolled to a new segment.
        expect(reopened.segmentCount, at(`${change}: rolled on the next append`)).toBe(2);
      } finally {
        await reopened.close();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  // A read that finds the active segment's index wrong used to rebuild it while the writer
  // appended, moving the segment's size back, so the next write overwrote acknowledged records.
  it('a damaged entry in the active index, found by a read during appends, costs no record', async () => {
    const rng = rngFor('active index damage');
    const root = mkdtempSync(join(tmpdir(), 'strata-recovery-active-index-'));
    try {
      const directory = join(root, 'log');
      let log = await openLog(directory, { config });
      const appended: Batch[] = [];
      await appendBatches(log, rng, appended, 300, 8_000, 10);
      await log.close();
      // An entry wrong that the load's checks cannot see (its position moved 8 bytes on, and the
      // checksum written to match, as a fault before the write would leave it).
      const indexPath = logFile(directory, 0, '.index');
      const index = readFileSync(indexPath).subarray(0, -INDEX_TRAILER_BYTES);
      const entry = Math.floor(index.length / 8 / 2);
      const damagedOffset = index.readUInt32BE(entry * 8);
      index.writeUInt32BE(index.readUInt32BE(entry * 8 + 4) + 8, entry * 8 + 4);
      writeFileSync(indexPath, indexFileBytes(index));

      log = await openLog(directory, { config });
      const appending = appendBatches(log, rng, appended, 200, 8_000, 20);
      const read = await batchAt(log, damagedOffset);
      expect(read !== null && read.equals(appended[damagedOffset]!.bytes), at('the read past the damaged entry returns the right batch')).toBe(true);
      await appending;
      await appendBatches(log, rng, appended, 5, 5_000);
      await expectExactly(log, appended, 'while open', { pointReads: [damagedOffset, damagedOffset + 1, appended.length - 1] });
      await log.close();

      const reopened = await openLog(directory, { config });
      try {
        expect(reopened.recovery, at('a clean close: no recovery')).toBeNull();
        await expectExactly(reopened, appended, 'after reopening', { pointReads: [damagedOffset, 0, appended.length - 1] });
      } finally {
        await reopened.close();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a wrong base offset at byte 0 of the active segment fences the partition on the read that meets it', async () => {
    const rng = rngFor('active byte 0');
    const root = mkdtempSync(join(tmpdir(), 'strata-recovery-active-zero-'));
    try {
      const directory = join(root, 'log');
      let log = await openLog(directory, { config });
      await appendBatches(log, rng, [], 50, 1_000);
      await log.close();
      // The base offset lies outside the CRC: only the offset checks can see this.
      const path = logFile(directory, 0);
      const bytes = readFileSync(path);
      bytes.writeBigInt64BE(5n, BASE_OFFSET_OFFSET);
      writeFileSync(path, bytes);
      log = await openLog(directory, { config });
      try {
        const error = await errorOf(log.read(0, 1_000));
        expect(codeOf(error), at('the read')).toBe(ErrorCode.PARTITION_FENCED);
        expect(error!.message).toContain('at byte 0');
        expect(log.fenced?.code, at('the partition')).toBe(ErrorCode.PARTITION_FENCED);
      } finally {
        await log.close().catch(() => undefined);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('a partition directory whose segment files were removed', () => {
  // An operator removes a partition's segment files and leaves its recovery checkpoint. The log
  // starts again empty at the checkpoint, so the offsets already given out are not reused, and
  // a crash afterwards truncates a torn tail instead of reading the checkpoint as lost records.
  const root = useTemporaryRoot('strata-recovery-files-removed-');

  it('starts empty at the recovery checkpoint, and recovers a torn tail written after it', async () => {
    const directory = join(root.path, 'partition');
    const first = await openLog(directory);
    for (let index = 0; index < 5; index++) await first.append(buildBatch([{ value: Buffer.from(`gone-${index}`), timestamp: T0 }]));
    await first.close(); // the clean close writes the recovery checkpoint at the log end, 5
    for (const name of readdirSync(directory)) if (name !== 'recovery-point.checkpoint') rmSync(join(directory, name), { recursive: true });

    const reopened = await openLog(directory);
    expect([reopened.logStartOffset, reopened.logEndOffset, reopened.highWatermark]).toEqual([5, 5, 5]);
    const added = await expectAppendAt(reopened, 5, 'after the files were removed');
    const crashed = copyOf(root.path, directory, 'files-removed-torn'); // while open: an unclean stop
    await reopened.close();
    expect(segmentBasesIn(crashed)).toEqual([5]);
    truncateSync(logFile(crashed, 5), statSync(logFile(crashed, 5)).size - 7);

    const recovered = await openLog(crashed);
    expect(recovered.fenced, `a torn tail above the checkpoint is not fenced (${recovered.fenced?.message})`).toBeNull();
    expect(recovered.recovery?.bytesTruncated).toBe(added.bytes.length - 7);
    expect([recovered.logStartOffset, recovered.logEndOffset]).toEqual([5, 5]);
    await recovered.close();
  });

  it('drops a fence marker left beside the checkpoint: the damaged records went with the files', async () => {
    const directory = join(root.path, 'fenced-then-removed');
    const first = await openLog(directory);
    await first.append(buildBatch([{ value: Buffer.from('gone'), timestamp: T0 }]));
    await first.close();
    for (const name of readdirSync(directory)) if (name !== 'recovery-point.checkpoint') rmSync(join(directory, name), { recursive: true });
    writeFileSync(join(directory, 'fenced'), 'strata-fence 1\nfile 00000000000000000000.log\nproblem CRC mismatch\n');
    const second = await openLog(directory);
    expect(second.fenced).toBeNull();
    expect(existsSync(join(directory, 'fenced'))).toBe(false);
    await second.close();
    const third = await openLog(directory); // and stays unfenced at the start after
    expect(third.fenced).toBeNull();
    expect([third.logStartOffset, third.logEndOffset]).toEqual([1, 1]);
    await third.close();
  });

  it('fences a log whose newest segment files were removed after a clean close, rather than give their offsets out again', async () => {
    const directory = join(root.path, 'newest-removed');
    const log = await openLog(directory, { config: { ...CONFIG, segmentBytes: 4096 } });
    for (let index = 0; index < 40; index++) await log.append(buildBatch([{ value: Buffer.alloc(300, index), timestamp: T0 }]));
    const end = log.logEndOffset;
    await log.close();
    const bases = segmentBasesIn(directory);
    expect(bases.length, 'several segments').toBeGreaterThan(2);
    const newest = bases.at(-1)!;
    for (const suffix of ['.log', '.index', '.timeindex']) rmSync(logFile(directory, newest, suffix), { force: true });

    const reopened = await openLog(directory, { config: { ...CONFIG, segmentBytes: 4096 } });
    expect(reopened.fenced?.message, `log ended at ${end}, newest segment ${newest} removed`).toContain(`recovery point ${end}`);
    await reopened.close();
    // A repair accepts the loss: the log goes on from the end of what is left.
    const repaired = await openLog(directory, { config: { ...CONFIG, segmentBytes: 4096 }, repair: true });
    expect(repaired.fenced).toBeNull();
    expect(repaired.logEndOffset).toBe(newest);
    await repaired.close();
    const after = await openLog(directory, { config: { ...CONFIG, segmentBytes: 4096 } });
    expect([after.fenced, after.logEndOffset]).toEqual([null, newest]);
    await after.close();
  });
});

describe('the copy a repair makes to quarantine', () => {
  const root = useTemporaryRoot('strata-quarantine-copy-');

  it('copies a range of several 8 MiB chunks byte for byte, and no more', async () => {
    const rng = rngFor('quarantine copy');
    const source = join(root.path, 'segment.log');
    const bytes = rng.bytes(20 * 1024 * 1024 + 12_345);
    writeFileSync(source, bytes);
    const fs = new NodeFileSystem();
    const fd = await fs.open(source, { create: false, readOnly: true });
    try {
      const target = join(root.path, 'copy');
      writeFileSync(target, Buffer.alloc(30 * 1024 * 1024, 1)); // a longer leftover is replaced whole
      await copyRangeDurably(fs, fd, source, 777, bytes.length - 777, target);
      expect(readFileSync(target).equals(bytes.subarray(777))).toBe(true);
      await expect(copyRangeDurably(fs, fd, source, 777, bytes.length, join(root.path, 'short'))).rejects.toThrow(/the file ended at byte \d+, expected \d+; nothing was cut/);
    } finally {
      await fs.close(fd);
    }
  });
});
