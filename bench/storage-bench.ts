/**
 * Storage benchmark: measures the partition log (src/storage/partition-log.ts) against its
 * performance targets and against what the disk does with a plain write + fdatasync loop.
 *
 *   node dist/bench/storage-bench.js [--quick] [--dir DIR] [--json FILE] [--cases a,b,...]
 *
 *   --quick        small sizes (a smoke run of a few seconds)
 *   --dir DIR      put the work directory (a fresh `strata-bench-*` directory) under DIR
 *                  instead of os.tmpdir(); the work directory is removed at the end
 *   --json FILE    also write every figure and parameter to FILE
 *   --cases LIST   run only some cases: append, baseline, read, lookup, reopen, recovery
 *   --tight        issue each append straight from the previous one's acknowledgement (a
 *                  microtask) instead of from a fresh macrotask (see `issueMode`)
 *
 * Cases, each in a fresh log directory:
 *   append    append throughput, 100 B and 1 KiB records in ~64 KiB batches, flush=always (group
 *             commit) and flush=interval, with 8, 32 and 128 appends in flight: the median of
 *             3 runs per N (after an untimed warm-up run), and the best N is reported
 *   baseline  the same bytes written by a plain writeSync loop with one fdatasync per 64 KiB
 *             chunk, per 1 MiB and per 8 MiB, to a fresh file (median of 3 runs)
 *   read      sequential read of the whole 1 KiB-record log, maxBytes 1 MiB
 *   lookup    read(offset, 1) latency at random offsets of a >= 1 GiB log (warm)
 *   reopen    PartitionLog.open after a clean close of a 1,000-segment log, and the first read
 *   recovery  PartitionLog.open after an unclean stop with a 1 GiB active segment (the log is
 *             written by a child process that exits without closing it)
 *
 * All reads are from the page cache (the data was just written and the machine's memory holds
 * it): these are warm-cache figures, not cold-disk ones.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setLogLevel } from '../src/common/logger.js';
import { type FlushMode } from '../src/storage/log-config.js';
import { PartitionLog } from '../src/storage/partition-log.js';
import { BATCH_HEADER_BYTES, forEachBatch, readBaseOffset, readLastOffset } from '../src/storage/record-batch.js';
import { buildBatch } from '../src/storage/record-batch-builder.js';
import { mulberry32 } from '../test/helpers/seeded-random.js';
import { exitWithFailureLine } from './failure-line.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const BATCH_TARGET_BYTES = 64 * KiB;
const CONCURRENCIES = [8, 32, 128];
/** Distinct prebuilt batches per record size; a multiple of every concurrency. */
const POOL_BATCHES = 128;
const FREE_BYTES_FOR_BIG_CASES = 6 * GiB;

// ---------------------------------------------------------------------------------------------
// Arguments.

interface Options {
  quick: boolean;
  dir: string | null;
  json: string | null;
  cases: Set<string>;
  tight: boolean;
}

const ALL_CASES = ['append', 'baseline', 'read', 'lookup', 'reopen', 'recovery'];

function usage(message?: string): never {
  if (message) console.error(`storage-bench: ${message}`);
  console.error('usage: node dist/bench/storage-bench.js [--quick] [--dir DIR] [--json FILE] [--tight] [--cases ' + ALL_CASES.join(',') + ']');
  process.exit(message ? 2 : 0);
}

function parseArgs(argv: string[]): Options {
  const options: Options = { quick: false, dir: null, json: null, cases: new Set(ALL_CASES), tight: false };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    const value = (): string => {
      const next = argv[++index];
      if (next === undefined || next.startsWith('--')) usage(`${arg} needs a value`);
      return next;
    };
    switch (arg) {
      case '--quick':
        options.quick = true;
        break;
      case '--tight':
        options.tight = true;
        break;
      case '--dir':
        options.dir = value();
        break;
      case '--json':
        options.json = value();
        break;
      case '--cases': {
        const names = value().split(',').map((name) => name.trim()).filter((name) => name !== '');
        for (const name of names) if (!ALL_CASES.includes(name)) usage(`unknown case "${name}"`);
        options.cases = new Set(names);
        break;
      }
      case '--help':
      case '-h':
        usage();
      default:
        usage(`unknown argument "${arg}"`);
    }
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

function nowNs(): bigint {
  return process.hrtime.bigint();
}

function secondsSince(start: bigint): number {
  return Number(nowNs() - start) / 1e9;
}

interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Percentiles (nearest rank) of samples, in the samples' unit. */
function percentiles(samples: Float64Array): Percentiles {
  const sorted = Float64Array.from(samples).sort();
  const rank = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
  let sum = 0;
  for (const value of sorted) sum += value;
  return { count: sorted.length, mean: sum / sorted.length, p50: rank(0.5), p90: rank(0.9), p99: rank(0.99), p999: rank(0.999), max: sorted[sorted.length - 1]! };
}

/** The element with the median key (the lower one of an even count). */
function median<T>(items: readonly T[], key: (item: T) => number): T {
  const sorted = [...items].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

function fmt(value: number, digits = 1): string {
  if (!Number.isFinite(value)) return String(value);
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function fmtBytes(bytes: number): string {
  if (bytes >= GiB) return `${fmt(bytes / GiB, 2)} GiB`;
  if (bytes >= MiB) return `${fmt(bytes / MiB, 1)} MiB`;
  if (bytes >= KiB) return `${fmt(bytes / KiB, 1)} KiB`;
  return `${bytes} B`;
}

function freshDirectory(root: string, name: string): string {
  const directory = path.join(root, name);
  fs.rmSync(directory, { recursive: true, force: true });
  fs.mkdirSync(directory, { recursive: true });
  return directory;
}

function removeDirectory(directory: string): void {
  fs.rmSync(directory, { recursive: true, force: true });
}

function freeBytes(directory: string): number {
  const stats = fs.statfsSync(directory);
  return stats.bavail * stats.bsize;
}

function progress(message: string): void {
  process.stderr.write(`  .. ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Batches.

interface BatchPool {
  recordBytes: number;
  recordsPerBatch: number;
  /** Bytes of each batch (all the same). */
  batchBytes: number;
  batches: Buffer[];
}

/** Records of `recordBytes` random value bytes (no key, no headers), ~64 KiB per batch. */
function buildPool(recordBytes: number, batchTargetBytes: number, count: number): BatchPool {
  const records = (n: number) => Array.from({ length: n }, () => ({ value: randomBytes(recordBytes) }));
  const one = buildBatch(records(1)).length;
  let recordsPerBatch = Math.max(1, Math.floor((batchTargetBytes - BATCH_HEADER_BYTES) / (one - BATCH_HEADER_BYTES)) + 1);
  while (recordsPerBatch > 1 && buildBatch(records(recordsPerBatch)).length > batchTargetBytes) recordsPerBatch--;
  const batches: Buffer[] = [];
  for (let index = 0; index < count; index++) batches.push(buildBatch(records(recordsPerBatch)));
  return { recordBytes, recordsPerBatch, batchBytes: batches[0]!.length, batches };
}

// ---------------------------------------------------------------------------------------------
// Appending.

interface AppendRun {
  recordBytes: number;
  flush: FlushMode;
  concurrency: number;
  batches: number;
  bytes: number;
  records: number;
  seconds: number;
  mibPerSecond: number;
  recordsPerSecond: number;
  /** Append latency (call to acknowledgement), µs. */
  latencyUs: Percentiles;
  logEndOffset: number;
}

/**
 * How the next append of an in-flight slot is issued once the previous one is acknowledged:
 * `immediate` issues it from a new macrotask (setImmediate), as a request arriving from the
 * network would be; `tight` issues it straight from the acknowledgement's continuation (a
 * microtask). See STALL_MESSAGE for why the default is `immediate`.
 */
let issueMode: 'immediate' | 'tight' = 'immediate';

const STALL_SECONDS = 30;
const STALL_MESSAGE =
  'no append was acknowledged for a long time: PartitionLog probably lost an append (queued with ' +
  'no writer running: the lost wakeup of commit b3c921f, where an append queued between ' +
  'writeQueued() returning and its .finally() clearing `writing` is never written). Without ' +
  '--tight, appends are issued from a fresh macrotask, which avoids that race.';

const yieldToMacrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Appends `batchCount` batches (or until `stop()` says so) with `concurrency` appends in flight.
 * Each in-flight slot owns its own pool buffers and reuses one only after its previous append was
 * acknowledged, as `append` rewrites the base offset in place. Fails, naming the log's state,
 * when no append is acknowledged for STALL_SECONDS.
 */
async function appendLoad(
  log: PartitionLog,
  pool: BatchPool,
  batchCount: number,
  concurrency: number,
  options: { waitFor?: 'durable' | 'written'; stop?: () => boolean } = {},
): Promise<{ batches: number; seconds: number; latencies: Float64Array }> {
  if (pool.batches.length % concurrency !== 0) throw new Error(`pool of ${pool.batches.length} is not a multiple of ${concurrency}`);
  const waitFor = options.waitFor ?? 'durable';
  const stop = options.stop ?? (() => false);
  const latencies = new Float64Array(batchCount);
  const perSlot = pool.batches.length / concurrency;
  let next = 0;
  let acknowledged = 0;
  let stalled: ((error: Error) => void) | null = null;
  const stall = new Promise<never>((_, reject) => (stalled = reject));
  stall.catch(() => undefined);
  let lastProgress = { acknowledged: -1, at: Date.now() };
  const watchdog = setInterval(() => {
    if (acknowledged !== lastProgress.acknowledged) lastProgress = { acknowledged, at: Date.now() };
    else if (Date.now() - lastProgress.at > STALL_SECONDS * 1000) {
      // Private fields, read for the diagnosis only (names as of this writing).
      const state = log as unknown as { queue?: unknown[]; writing?: unknown; writerRunning?: boolean; syncing?: unknown };
      const writer = state.writerRunning ?? state.writing !== null;
      stalled!(new Error(`${STALL_MESSAGE} State after ${STALL_SECONDS} s: ${acknowledged} of ${next} appends acknowledged, ` +
        `queue ${state.queue?.length ?? '?'}, writer ${writer ? 'running' : 'not running'}, syncer ${state.syncing === null ? 'not running' : 'running'}.`));
    }
  }, 1000);
  const start = nowNs();
  const slot = async (slotIndex: number): Promise<void> => {
    let use = 0;
    while (next < batchCount && !stop()) {
      const batchIndex = next++;
      const buffer = pool.batches[slotIndex + concurrency * (use++ % perSlot)]!;
      if (issueMode === 'immediate') await yieldToMacrotask();
      const t0 = nowNs();
      await log.append(buffer, { waitFor });
      latencies[batchIndex] = Number(nowNs() - t0) / 1e3;
      acknowledged++;
    }
  };
  try {
    await Promise.race([Promise.all(Array.from({ length: concurrency }, (_, index) => slot(index))), stall]);
  } finally {
    clearInterval(watchdog);
  }
  return { batches: next, seconds: secondsSince(start), latencies: latencies.subarray(0, next) };
}

let appendRunCount = 0;

async function appendRun(root: string, pool: BatchPool, flush: FlushMode, concurrency: number, totalBytes: number, keep: boolean): Promise<{ run: AppendRun; directory: string }> {
  const directory = freshDirectory(root, `append-${pool.recordBytes}-${flush}-${concurrency}-${++appendRunCount}`);
  const log = await PartitionLog.open({ directory, config: { flush, flushMs: 1000 } });
  const { batches, seconds, latencies } = await appendLoad(log, pool, Math.ceil(totalBytes / pool.batchBytes), concurrency);
  const logEndOffset = log.logEndOffset;
  await log.close();
  const bytes = batches * pool.batchBytes;
  const records = batches * pool.recordsPerBatch;
  if (logEndOffset !== records) throw new Error(`log end offset ${logEndOffset} after appending ${records} records`);
  if (!keep) removeDirectory(directory);
  return {
    run: {
      recordBytes: pool.recordBytes, flush, concurrency, batches, bytes, records, seconds,
      mibPerSecond: bytes / MiB / seconds, recordsPerSecond: records / seconds,
      latencyUs: percentiles(latencies), logEndOffset,
    },
    directory,
  };
}

// ---------------------------------------------------------------------------------------------
// Baseline: plain write + fdatasync loop.

interface BaselineRun {
  syncEveryBytes: number;
  chunkBytes: number;
  bytes: number;
  fdatasyncs: number;
  seconds: number;
  mibPerSecond: number;
}

function baselineRun(root: string, pool: BatchPool, totalBytes: number, syncEveryBytes: number): BaselineRun {
  const file = path.join(root, `baseline-${syncEveryBytes}.dat`);
  fs.rmSync(file, { force: true });
  const chunks = Math.ceil(totalBytes / pool.batchBytes);
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
  let position = 0;
  let unsynced = 0;
  let fdatasyncs = 0;
  const start = nowNs();
  for (let index = 0; index < chunks; index++) {
    const chunk = pool.batches[index % pool.batches.length]!;
    let written = 0;
    while (written < chunk.length) written += fs.writeSync(fd, chunk, written, chunk.length - written, position + written);
    position += chunk.length;
    unsynced += chunk.length;
    if (unsynced >= syncEveryBytes || index === chunks - 1) {
      fs.fdatasyncSync(fd);
      fdatasyncs++;
      unsynced = 0;
    }
  }
  const seconds = secondsSince(start);
  fs.closeSync(fd);
  fs.rmSync(file, { force: true });
  return { syncEveryBytes, chunkBytes: pool.batchBytes, bytes: position, fdatasyncs, seconds, mibPerSecond: position / MiB / seconds };
}

// ---------------------------------------------------------------------------------------------
// Sequential read.

interface ReadRun {
  pass: number;
  bytes: number;
  records: number;
  reads: number;
  seconds: number;
  mibPerSecond: number;
  recordsPerSecond: number;
}

async function sequentialRead(log: PartitionLog, maxBytes: number, pass: number): Promise<ReadRun> {
  const end = log.highWatermark;
  let offset = log.logStartOffset;
  let bytes = 0;
  let reads = 0;
  const start = nowNs();
  while (offset < end) {
    const { batches } = await log.read(offset, maxBytes);
    reads++;
    if (batches.length === 0) throw new Error(`empty read at offset ${offset} below the high watermark ${end}`);
    let expected = offset;
    forEachBatch(batches, (position) => {
      const base = readBaseOffset(batches, position);
      if (base > expected || readLastOffset(batches, position) < expected) throw new Error(`read at ${offset}: batch at ${base} does not continue offset ${expected}`);
      expected = readLastOffset(batches, position) + 1;
    });
    offset = expected;
    bytes += batches.length;
  }
  const seconds = secondsSince(start);
  const records = offset - log.logStartOffset;
  return { pass, bytes, records, reads, seconds, mibPerSecond: bytes / MiB / seconds, recordsPerSecond: records / seconds };
}

// ---------------------------------------------------------------------------------------------
// Offset lookup latency.

interface LookupRun {
  logBytes: number;
  segments: number;
  records: number;
  buildSeconds: number;
  warmupReads: number;
  samples: number;
  latencyUs: Percentiles;
}

async function randomReads(log: PartitionLog, count: number, random: () => number, record: Float64Array | null): Promise<void> {
  const end = log.highWatermark;
  for (let index = 0; index < count; index++) {
    const offset = Math.floor(random() * end);
    const t0 = nowNs();
    const { batches } = await log.read(offset, 1);
    const elapsed = Number(nowNs() - t0) / 1e3;
    if (record !== null) record[index] = elapsed;
    if (batches.length === 0 || readBaseOffset(batches, 0) > offset || readLastOffset(batches, 0) < offset) {
      throw new Error(`read(${offset}, 1) returned a batch that does not hold the offset`);
    }
  }
}

async function lookupCase(root: string, pool: BatchPool, logBytes: number, samples: number, warmup: number): Promise<LookupRun> {
  const directory = freshDirectory(root, 'lookup');
  const log = await PartitionLog.open({ directory, config: { flush: 'interval', flushMs: 1000 } });
  try {
    progress(`lookup: building a ${fmtBytes(logBytes)} log (flush=interval)`);
    const build = await appendLoad(log, pool, Math.ceil(logBytes / pool.batchBytes), 32);
    await log.flush();
    const random = mulberry32(42);
    progress(`lookup: ${warmup} warm-up reads, then ${samples} measured reads`);
    await randomReads(log, warmup, random, null);
    const latencies = new Float64Array(samples);
    await randomReads(log, samples, random, latencies);
    return {
      logBytes: log.sizeBytes, segments: log.segmentCount, records: log.logEndOffset, buildSeconds: build.seconds,
      warmupReads: warmup, samples, latencyUs: percentiles(latencies),
    };
  } finally {
    await log.close();
    removeDirectory(directory);
  }
}

// ---------------------------------------------------------------------------------------------
// Reopen after a clean close.

interface ReopenRun {
  segments: number;
  segmentBytes: number;
  batchBytes: number;
  logBytes: number;
  buildSeconds: number;
  openMs: number[];
  firstReadMs: number[];
}

async function reopenCase(root: string, segmentCount: number, repetitions: number): Promise<ReopenRun> {
  const directory = freshDirectory(root, 'reopen');
  const segmentBytes = 64 * KiB;
  // Four ~16 KiB batches of 1 KiB records per 64 KiB segment.
  const pool = buildPool(1024, 16 * KiB - 512, 64);
  try {
    progress(`reopen: building a log of ${segmentCount} segments of ${fmtBytes(segmentBytes)}`);
    const log = await PartitionLog.open({ directory, config: { flush: 'interval', flushMs: 1000, segmentBytes } });
    const { seconds: buildSeconds } = await appendLoad(log, pool, segmentCount * 8, 8, { waitFor: 'written', stop: () => log.segmentCount >= segmentCount });
    const segments = log.segmentCount;
    const logBytes = log.sizeBytes;
    const records = log.logEndOffset;
    await log.close();

    const random = mulberry32(7);
    const openMs: number[] = [];
    const firstReadMs: number[] = [];
    for (let repetition = 0; repetition < repetitions; repetition++) {
      const t0 = nowNs();
      const reopened = await PartitionLog.open({ directory, config: { flush: 'interval', flushMs: 1000, segmentBytes } });
      openMs.push(Number(nowNs() - t0) / 1e6);
      if (reopened.recovery !== null) throw new Error('reopen after a clean close ran recovery');
      if (reopened.segmentCount !== segments || reopened.logEndOffset !== records) {
        throw new Error(`reopened log has ${reopened.segmentCount} segments / end ${reopened.logEndOffset}, expected ${segments} / ${records}`);
      }
      const offset = Math.floor(random() * records);
      const t1 = nowNs();
      const { batches } = await reopened.read(offset, 1);
      firstReadMs.push(Number(nowNs() - t1) / 1e6);
      if (batches.length === 0 || readBaseOffset(batches, 0) > offset || readLastOffset(batches, 0) < offset) {
        throw new Error(`first read at ${offset} after reopen returned the wrong batch`);
      }
      await reopened.close();
    }
    return { segments, segmentBytes, batchBytes: pool.batchBytes, logBytes, buildSeconds, openMs, firstReadMs };
  } finally {
    removeDirectory(directory);
  }
}

// ---------------------------------------------------------------------------------------------
/** The writer children of the recovery case, killed when the benchmark is interrupted. */
const runningChildren = new Set<ChildProcess>();

// Recovery after an unclean stop (the log is written by a child process that exits without
// closing it: no clean-shutdown marker, no checkpoint, indexes never written).

interface RecoveryRun {
  activeSegmentBytes: number;
  records: number;
  writeSeconds: number;
  openMs: number;
  segmentsScanned: number;
  bytesTruncated: number;
  scanGiBPerSecond: number;
  firstReadMs: number;
}

const RECOVERY_CONFIG = { flush: 'interval' as const, flushMs: 1000, segmentBytes: 2 * GiB };

interface ChildReport {
  records: number;
  bytes: number;
  seconds: number;
}

/** Child mode: append `bytes` of 1 KiB records to `directory`, report, exit without closing. */
async function uncleanWriterChild(directory: string, bytes: number): Promise<void> {
  setLogLevel('error');
  const pool = buildPool(1024, BATCH_TARGET_BYTES, POOL_BATCHES);
  const log = await PartitionLog.open({ directory, config: RECOVERY_CONFIG });
  const { seconds } = await appendLoad(log, pool, Math.ceil(bytes / pool.batchBytes), 32);
  const report: ChildReport = { records: log.logEndOffset, bytes: log.sizeBytes, seconds };
  process.send!(report, () => process.exit(0));
}

async function recoveryCase(root: string, bytes: number): Promise<RecoveryRun> {
  const directory = freshDirectory(root, 'recovery');
  try {
    progress(`recovery: a child process appends ${fmtBytes(bytes)} and exits without closing the log`);
    const child = fork(fileURLToPath(import.meta.url), ['--child-unclean', directory, String(bytes), ...(issueMode === 'tight' ? ['--tight'] : [])], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    runningChildren.add(child);
    child.on('exit', () => runningChildren.delete(child));
    const report = await new Promise<ChildReport>((resolve, reject) => {
      let received: ChildReport | null = null;
      child.on('message', (message) => (received = message as ChildReport));
      child.on('error', reject);
      child.on('exit', (code, signal) => (received !== null ? resolve(received) : reject(new Error(`writer child exited with ${code ?? signal} before reporting`))));
    });
    if (fs.existsSync(path.join(directory, '.clean-shutdown'))) throw new Error('the writer left a clean-shutdown marker');
    const t0 = nowNs();
    const log = await PartitionLog.open({ directory, config: RECOVERY_CONFIG });
    const openMs = Number(nowNs() - t0) / 1e6;
    try {
      if (log.recovery === null) throw new Error('open after an unclean stop did not recover');
      if (log.logEndOffset !== report.records) throw new Error(`recovered log ends at ${log.logEndOffset}, the writer wrote ${report.records} records`);
      const offset = Math.floor(mulberry32(3)() * report.records);
      const t1 = nowNs();
      const { batches } = await log.read(offset, 1);
      const firstReadMs = Number(nowNs() - t1) / 1e6;
      if (batches.length === 0 || readBaseOffset(batches, 0) > offset || readLastOffset(batches, 0) < offset) throw new Error('first read after recovery returned the wrong batch');
      return {
        activeSegmentBytes: report.bytes, records: report.records, writeSeconds: report.seconds, openMs,
        segmentsScanned: log.recovery.segmentsScanned, bytesTruncated: log.recovery.bytesTruncated,
        scanGiBPerSecond: report.bytes / GiB / (openMs / 1e3), firstReadMs,
      };
    } finally {
      await log.close();
    }
  } finally {
    removeDirectory(directory);
  }
}

// ---------------------------------------------------------------------------------------------
// Report.

interface Figure {
  name: string;
  value: number;
  unit: string;
  /** e.g. "<= 50 µs"; null when the figure has no target. */
  target: string | null;
  pass: boolean | null;
  note?: string;
}

const figures: Figure[] = [];

function figure(name: string, value: number, unit: string, target?: { op: '<=' | '>=' | '=='; limit: number }, note?: string): void {
  let pass: boolean | null = null;
  let targetText: string | null = null;
  if (target) {
    pass = target.op === '<=' ? value <= target.limit : target.op === '>=' ? value >= target.limit : value === target.limit;
    targetText = `${target.op} ${target.limit}${unit && unit !== 'x' && unit !== 'count' ? ` ${unit}` : ''}`;
  }
  figures.push({ name, value, unit, target: targetText, pass, ...(note ? { note } : {}) });
}

function formatValue(value: number, unit: string): string {
  if (unit === 'records/s' || unit === 'count' || unit === 'bytes') return fmt(value, 0);
  if (unit === 'x') return fmt(value, 2);
  if (unit === 'µs' || unit === 'ms') return fmt(value, value < 10 ? 2 : 1);
  if (unit === 's') return fmt(value, 2);
  return fmt(value, 1);
}

function printTable(): void {
  const rows = figures.map((f) => [
    f.name,
    `${formatValue(f.value, f.unit)} ${f.unit === 'count' || f.unit === 'x' ? (f.unit === 'x' ? 'x' : '') : f.unit}`.trim(),
    f.target ?? '-',
    f.pass === null ? '' : f.pass ? 'PASS' : 'MISS',
    f.note ?? '',
  ]);
  const header = ['figure', 'value', 'target', 'result', 'notes'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells.map((cell, column) => (column === 1 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join('  ').trimEnd();
  console.log(line(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) console.log(line(row));
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child-unclean') {
    if (argv[3] === '--tight') issueMode = 'tight';
    await uncleanWriterChild(argv[1]!, Number(argv[2]));
    return;
  }
  const options = parseArgs(argv);
  if (options.tight) issueMode = 'tight';
  setLogLevel(process.env.STRATA_LOG_LEVEL ?? 'error');

  const quick = options.quick;
  const params = {
    quick,
    appendBytesPerCase: quick ? 32 * MiB : 256 * MiB,
    appendWarmupBytes: quick ? 8 * MiB : 64 * MiB,
    /** Runs of each append and baseline configuration; the median is reported. */
    repetitions: quick ? 1 : 3,
    batchTargetBytes: BATCH_TARGET_BYTES,
    concurrencies: CONCURRENCIES,
    flushIntervalMs: 1000,
    baselineSyncEveryBytes: [0, 1 * MiB, 8 * MiB],
    readMaxBytes: 1 * MiB,
    lookupLogBytes: quick ? 128 * MiB : 1 * GiB + 128 * MiB,
    lookupWarmupReads: quick ? 5_000 : 20_000,
    lookupSamples: quick ? 20_000 : 100_000,
    reopenSegments: quick ? 200 : 1000,
    reopenRepetitions: 5,
    recoveryActiveSegmentBytes: quick ? 128 * MiB : 1 * GiB,
    cases: [...options.cases],
    issueMode,
  };
  const parent = options.dir ?? os.tmpdir();
  fs.mkdirSync(parent, { recursive: true });
  const root = fs.mkdtempSync(path.join(parent, 'strata-bench-'));
  // Ctrl-C or SIGTERM mid-case removes the cases' files too (a gigabyte or more), then exits
  // as a shell reports a process the signal ended.
  const interrupted = (code: number) => async (): Promise<void> => {
    // A writer child first (a SIGTERM to this process alone does not reach it), so that it
    // writes nothing after the removal.
    await Promise.all([...runningChildren].map((child) => new Promise((resolve) => child.once('exit', resolve).kill('SIGKILL'))));
    removeDirectory(root);
    process.exit(code);
  };
  process.once('SIGINT', interrupted(130));
  process.once('SIGTERM', interrupted(143));
  const cpus = os.cpus();
  const machine = {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / GiB) * 10) / 10,
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    directory: root,
    freeBytesAtStart: freeBytes(root),
  };

  console.log('Strata storage benchmark' + (quick ? ' (--quick)' : ''));
  console.log(`machine:   ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB RAM, node ${machine.node}, ${machine.platform}`);
  console.log(`directory: ${root} (${fmtBytes(machine.freeBytesAtStart)} free)`);
  console.log(
    `params:    ${fmtBytes(params.appendBytesPerCase)} per append case, batches ~${fmtBytes(BATCH_TARGET_BYTES)}, ` +
      `concurrency ${CONCURRENCIES.join(', ')} (best reported), median of ${params.repetitions} run(s), flush.ms ${params.flushIntervalMs}; ` +
      `lookup log ${fmtBytes(params.lookupLogBytes)}, ${params.lookupSamples} samples after ${params.lookupWarmupReads} warm-up reads; ` +
      `reopen ${params.reopenSegments} segments x ${params.reopenRepetitions}; recovery ${fmtBytes(params.recoveryActiveSegmentBytes)} active segment; ` +
      `appends issued ${issueMode === 'tight' ? 'from the previous acknowledgement (--tight)' : 'each from a fresh macrotask'}`,
  );
  console.log('');

  const bigCasesNeedBytes = FREE_BYTES_FOR_BIG_CASES;
  const bigCasesAllowed = quick || machine.freeBytesAtStart >= bigCasesNeedBytes;
  const skipped: string[] = [];
  const details: Record<string, unknown> = {};
  const pools = new Map<number, BatchPool>();
  const poolFor = (recordBytes: number) => {
    let pool = pools.get(recordBytes);
    if (pool === undefined) pools.set(recordBytes, (pool = buildPool(recordBytes, BATCH_TARGET_BYTES, POOL_BATCHES)));
    return pool;
  };

  let failure: unknown;
  try {
    // 1. Append throughput.
    const bestAlways = new Map<number, AppendRun>();
    let readDirectory: string | null = null;
    let readRecords = 0;
    if (options.cases.has('append') || options.cases.has('read')) {
      const runs: AppendRun[] = [];
      const flushModes: FlushMode[] = options.cases.has('append') ? ['always', 'interval'] : ['always'];
      const concurrencies = options.cases.has('append') ? CONCURRENCIES : [32];
      for (const recordBytes of [100, 1024]) {
        if (!options.cases.has('append') && recordBytes !== 1024) continue;
        const pool = poolFor(recordBytes);
        // Untimed warm-up, so the JIT has compiled the append path before the first timed run.
        for (const flush of flushModes) {
          progress(`append: warm-up, ${recordBytes} B records, flush=${flush}`);
          await appendRun(root, pool, flush, 32, params.appendWarmupBytes, false);
        }
        for (const flush of flushModes) {
          // Per concurrency, the run with the median throughput of `repetitions`.
          const caseRuns: AppendRun[] = [];
          for (const concurrency of concurrencies) {
            const repetitionRuns: AppendRun[] = [];
            for (let repetition = 0; repetition < params.repetitions; repetition++) {
              // Keep one 1 KiB flush=always log (N=32) for the read case.
              const keep = readDirectory === null && options.cases.has('read') && recordBytes === 1024 && flush === 'always' && concurrency === 32;
              progress(`append: ${recordBytes} B records (${pool.recordsPerBatch}/batch, ${pool.batchBytes} B), flush=${flush}, ${concurrency} in flight, run ${repetition + 1}/${params.repetitions}`);
              const { run, directory } = await appendRun(root, pool, flush, concurrency, params.appendBytesPerCase, keep);
              if (keep) {
                readDirectory = directory;
                readRecords = run.records;
              }
              repetitionRuns.push(run);
              runs.push(run);
            }
            caseRuns.push(median(repetitionRuns, (run) => run.mibPerSecond));
          }
          const best = caseRuns.reduce((a, b) => (b.mibPerSecond > a.mibPerSecond ? b : a));
          if (flush === 'always') bestAlways.set(recordBytes, best);
          if (options.cases.has('append')) {
            const label = `append ${recordBytes === 1024 ? '1 KiB' : `${recordBytes} B`} flush=${flush}`;
            const others = caseRuns.filter((run) => run !== best).map((run) => `N=${run.concurrency}: ${fmt(run.mibPerSecond)} MiB/s`).join(', ');
            figure(`${label} (N=${best.concurrency})`, best.mibPerSecond, 'MiB/s', undefined, others);
            figure(`${label} (N=${best.concurrency})`, best.recordsPerSecond, 'records/s');
            figure(`${label} (N=${best.concurrency}) ack latency p99`, best.latencyUs.p99 / 1e3, 'ms', undefined, `p50 ${fmt(best.latencyUs.p50 / 1e3, 2)} ms`);
          }
        }
      }
      details.append = runs;
    }

    // 2. Baseline.
    if (options.cases.has('baseline')) {
      const pool = poolFor(1024);
      const baselines: BaselineRun[] = [];
      for (const syncEvery of params.baselineSyncEveryBytes) {
        for (let repetition = 0; repetition < params.repetitions; repetition++) {
          progress(`baseline: writeSync ${pool.batchBytes} B chunks, fdatasync ${syncEvery === 0 ? 'after every write' : `every ${fmtBytes(syncEvery)}`}, run ${repetition + 1}/${params.repetitions}`);
          baselines.push(baselineRun(root, pool, params.appendBytesPerCase, syncEvery));
        }
      }
      details.baseline = baselines;
      const [perWrite, per1, per8] = params.baselineSyncEveryBytes.map((syncEvery) =>
        median(baselines.filter((run) => run.syncEveryBytes === syncEvery), (run) => run.mibPerSecond),
      ) as [BaselineRun, BaselineRun, BaselineRun];
      figure(`baseline write+fdatasync per ${fmtBytes(perWrite.chunkBytes)} write`, perWrite.mibPerSecond, 'MiB/s', undefined, `${fmt((perWrite.seconds / perWrite.fdatasyncs) * 1e6, 0)} µs per write+fdatasync`);
      figure('baseline write, fdatasync per 1 MiB', per1.mibPerSecond, 'MiB/s');
      figure('baseline write, fdatasync per 8 MiB', per8.mibPerSecond, 'MiB/s');
      for (const [recordBytes, best] of bestAlways) {
        const label = recordBytes === 1024 ? '1 KiB' : `${recordBytes} B`;
        figure(`ratio append ${label} flush=always / baseline per-write`, best.mibPerSecond / perWrite.mibPerSecond, 'x', { op: '>=', limit: 0.7 });
      }
      for (const [recordBytes, best] of bestAlways) {
        const label = recordBytes === 1024 ? '1 KiB' : `${recordBytes} B`;
        figure(`ratio append ${label} flush=always / baseline per-8MiB`, best.mibPerSecond / per8.mibPerSecond, 'x', undefined, 'vs the best plain loop (one fdatasync per 8 MiB)');
      }
    }

    // 3. Sequential read.
    if (options.cases.has('read') && readDirectory !== null) {
      progress('read: sequential read of the 1 KiB-record log, maxBytes 1 MiB');
      const log = await PartitionLog.open({ directory: readDirectory, config: { flush: 'always' } });
      try {
        const passes: ReadRun[] = [];
        if (log.logEndOffset !== readRecords) throw new Error(`the kept log holds ${log.logEndOffset} records, ${readRecords} were appended`);
        for (let pass = 1; pass <= 2; pass++) {
          const run = await sequentialRead(log, params.readMaxBytes, pass);
          if (run.records !== readRecords) throw new Error(`sequential read returned ${run.records} records of ${readRecords}`);
          passes.push(run);
        }
        details.read = passes;
        const best = passes.reduce((a, b) => (b.mibPerSecond > a.mibPerSecond ? b : a));
        figure(`sequential read 1 KiB records, maxBytes 1 MiB`, best.mibPerSecond, 'MiB/s', undefined, `${fmtBytes(best.bytes)}, best of ${passes.length} passes (${passes.map((p) => fmt(p.mibPerSecond, 0)).join(', ')})`);
        figure(`sequential read 1 KiB records, maxBytes 1 MiB`, best.recordsPerSecond, 'records/s', undefined, `${fmt(best.bytes / best.reads / KiB, 0)} KiB per read()`);
      } finally {
        await log.close();
        removeDirectory(readDirectory);
      }
    }

    // 4. Offset lookup latency.
    if (options.cases.has('lookup')) {
      if (!bigCasesAllowed) {
        skipped.push(`lookup: needs ${fmtBytes(bigCasesNeedBytes)} free, ${fmtBytes(machine.freeBytesAtStart)} available`);
      } else {
        const run = await lookupCase(root, poolFor(1024), params.lookupLogBytes, params.lookupSamples, params.lookupWarmupReads);
        details.lookup = run;
        const note = `${fmtBytes(run.logBytes)} log, ${run.segments} segments, ${run.samples} samples`;
        figure('lookup read(offset, 1) p50', run.latencyUs.p50, 'µs', undefined, note);
        figure('lookup read(offset, 1) p99', run.latencyUs.p99, 'µs', { op: '<=', limit: 50 });
        figure('lookup read(offset, 1) p99.9', run.latencyUs.p999, 'µs');
        figure('lookup read(offset, 1) max', run.latencyUs.max, 'µs');
      }
    }

    // 5. Reopen after a clean close.
    if (options.cases.has('reopen')) {
      const run = await reopenCase(root, params.reopenSegments, params.reopenRepetitions);
      details.reopen = run;
      const sortedOpen = [...run.openMs].sort((a, b) => a - b);
      const sortedRead = [...run.firstReadMs].sort((a, b) => a - b);
      const note = `${run.segments} segments x ${fmtBytes(run.segmentBytes)}; ${run.openMs.length} reopens: ${run.openMs.map((ms) => fmt(ms, 0)).join(', ')} ms`;
      figure(`reopen ${run.segments} segments (first)`, run.openMs[0]!, 'ms', { op: '<=', limit: 500 }, note);
      figure(`reopen ${run.segments} segments (max of ${run.openMs.length})`, sortedOpen[sortedOpen.length - 1]!, 'ms', { op: '<=', limit: 500 });
      figure('first read at a random offset after reopen (median)', sortedRead[Math.floor(sortedRead.length / 2)]!, 'ms', undefined, `max ${fmt(sortedRead[sortedRead.length - 1]!, 2)} ms`);
    }

    // 6. Recovery of an unclean active segment.
    if (options.cases.has('recovery')) {
      if (!bigCasesAllowed) {
        skipped.push(`recovery: needs ${fmtBytes(bigCasesNeedBytes)} free, ${fmtBytes(machine.freeBytesAtStart)} available`);
      } else {
        const run = await recoveryCase(root, params.recoveryActiveSegmentBytes);
        details.recovery = run;
        figure(`recovery open, ${fmtBytes(run.activeSegmentBytes)} unclean active segment`, run.openMs / 1e3, 's', { op: '<=', limit: 2 }, `${fmt(run.scanGiBPerSecond, 2)} GiB/s scanned`);
        figure('recovery segmentsScanned', run.segmentsScanned, 'count', { op: '==', limit: 1 }, `bytesTruncated ${run.bytesTruncated}`);
        figure('first read after recovery', run.firstReadMs, 'ms');
      }
    }
  } catch (error) {
    failure = error;
  } finally {
    removeDirectory(root);
  }

  console.log('');
  printTable();
  for (const message of skipped) console.log(`skipped ${message}`);
  const misses = figures.filter((f) => f.pass === false).length;
  console.log('');
  console.log(`${figures.filter((f) => f.pass !== null).length - misses} PASS, ${misses} MISS`);
  if (failure !== undefined) {
    console.log('');
    console.log(`FAILED, the figures above are partial: ${failure instanceof Error ? failure.message : String(failure)}`);
    process.exitCode = 1;
  }

  if (options.json !== null) {
    const output = {
      timestamp: new Date().toISOString(), parameters: params, machine, figures, skipped, details,
      ...(failure !== undefined ? { failure: failure instanceof Error ? failure.stack ?? failure.message : String(failure) } : {}),
    };
    fs.writeFileSync(options.json, JSON.stringify(output, null, 2) + '\n');
    console.log(`wrote ${options.json}`);
  }
}

main().catch(exitWithFailureLine('storage-bench'));
