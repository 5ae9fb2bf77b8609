// Goal: show that idempotent-producer state deduplicates retried batches (answering with the original
// offsets), refuses sequence gaps and fenced epochs, and keeps doing so across write groups, clean and
// unclean reopens and segment rolls; method: unit tests of ProducerState on batches built with
// buildBatch, then the same rules through a PartitionLog on real files in throwaway temp directories,
// reading the log back to count stored copies (no sleeps; concurrency via appends issued in one turn).
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { NodeFileSystem } from '../../src/storage/file-system.js';
import type { LogConfig } from '../../src/storage/log-config.js';
import { PartitionLog, type AppendResult } from '../../src/storage/partition-log.js';
import { PRODUCER_BATCH_WINDOW, PRODUCER_EXPIRATION_MS, PRODUCER_STATE_FILE, ProducerState } from '../../src/storage/producer-state.js';
import { ManualClock } from '../../src/common/clock.js';
import { decodeRecords, forEachBatch, readBatchHeader } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';

const T0 = 1_700_000_000_000;
const MAX_SEQUENCE = 2 ** 31 - 1;
const PAD = 'p'.repeat(200);

// ---------------------------------------------------------------------------------------------
// Helpers.

interface BatchSpec {
  producerId?: number;
  epoch?: number;
  sequence: number;
  count?: number;
  /** Only meaningful for unit tests: the offset ProducerState records for the batch. */
  baseOffset?: number;
  tag?: string;
}

/** An idempotent batch; the same spec always yields the same bytes (fixed timestamp). */
function batch(spec: BatchSpec): Buffer {
  const count = spec.count ?? 1;
  const records = Array.from({ length: count }, (_, index) => ({
    value: Buffer.from(`${spec.tag ?? 'r'}-${spec.producerId ?? 1}-${spec.epoch ?? 0}-${spec.sequence}-${index}-${PAD}`),
  }));
  return buildBatch(records, {
    producerId: spec.producerId ?? 1,
    producerEpoch: spec.epoch ?? 0,
    baseSequence: spec.sequence,
    timestamp: T0,
    baseOffset: spec.baseOffset ?? 0,
  });
}

/** A non-idempotent batch (producerId -1). */
function plainBatch(tag: string, count = 1): Buffer {
  return buildBatch(
    Array.from({ length: count }, (_, index) => ({ value: Buffer.from(`${tag}-${index}-${PAD}`) })),
    { timestamp: T0 },
  );
}

/** Runs `action`, which must throw a StrataError with `code` whose message holds every fragment. */
function expectThrows(action: () => unknown, code: ErrorCode, ...fragments: string[]): StrataError {
  let caught: unknown = null;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(StrataError);
  const error = caught as StrataError;
  expect(error.code).toBe(code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

async function expectRejects(promise: Promise<unknown>, code: ErrorCode, ...fragments: string[]): Promise<StrataError> {
  let caught: unknown = null;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(StrataError);
  const error = caught as StrataError;
  expect(error.code).toBe(code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

/** check + recordPending + commitPending, as the writer does for a successful write. */
function commit(state: ProducerState, buffer: Buffer): void {
  expect(state.check(buffer, 0)).toEqual({ duplicate: false });
  state.recordPending(buffer, 0);
  state.commitPending();
}

const directories: string[] = [];
const openLogs: PartitionLog[] = [];

afterEach(async () => {
  // Newest first: an "abandoned" log opened before a recovering one is closed last.
  for (const log of openLogs.splice(0).reverse()) await log.close().catch(() => undefined);
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

function tempDir(): string {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-producer-state-'));
  directories.push(directory);
  return directory;
}

async function openLog(directory: string, config: Partial<LogConfig> = {}): Promise<PartitionLog> {
  const log = await PartitionLog.open({ directory, config, name: 'producer-test-0' });
  openLogs.push(log);
  return log;
}

interface StoredBatch {
  baseOffset: number;
  lastOffset: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  values: string[];
}

/** Every batch visible in the log, oldest first. */
async function readAll(log: PartitionLog): Promise<StoredBatch[]> {
  const stored: StoredBatch[] = [];
  let offset = log.logStartOffset;
  while (offset < log.highWatermark) {
    const { batches } = await log.read(offset, 1024 * 1024);
    if (batches.length === 0) break;
    forEachBatch(batches, (position) => {
      const header = readBatchHeader(batches, position);
      if (header.lastOffset < offset) return;
      stored.push({
        baseOffset: header.baseOffset,
        lastOffset: header.lastOffset,
        producerId: header.producerId,
        producerEpoch: header.producerEpoch,
        baseSequence: header.baseSequence,
        values: decodeRecords(batches, position).map((record) => record.value!.toString()),
      });
      offset = header.lastOffset + 1;
    });
  }
  return stored;
}

function snapshotOffset(directory: string): number | null {
  const path = join(directory, PRODUCER_STATE_FILE);
  if (!nodeFs.existsSync(path)) return null;
  return ProducerState.decode(nodeFs.readFileSync(path))?.offset ?? null;
}

function expectOriginal(result: AppendResult, original: AppendResult): void {
  expect(result.duplicate).toBe(true);
  expect(result.baseOffset).toBe(original.baseOffset);
  expect(result.lastOffset).toBe(original.lastOffset);
}

// ---------------------------------------------------------------------------------------------
// ProducerState on its own.

describe('ProducerState', () => {
  it('tracks committed batches: duplicates answer with the recorded offsets, the next sequence is accepted', () => {
    const state = new ProducerState();
    commit(state, batch({ sequence: 0, count: 3, baseOffset: 10 }));
    expect(state.producerCount).toBe(1);

    expect(state.check(batch({ sequence: 0, count: 3 }), 0)).toEqual({ duplicate: true, baseOffset: 10, lastOffset: 12 });
    expect(state.check(batch({ sequence: 3, count: 2 }), 0)).toEqual({ duplicate: false });
    // Same first sequence but a different last one is neither a duplicate nor the next batch.
    expectThrows(() => state.check(batch({ sequence: 0, count: 2 }), 0), ErrorCode.FAILED_PRECONDITION, 'out-of-order sequence', 'expected 3, got 0');
    expectThrows(() => state.check(batch({ sequence: 4 }), 0), ErrorCode.FAILED_PRECONDITION, 'out-of-order sequence', 'expected 3, got 4');
  });

  it('checks against pending batches before they are committed, and counts only committed producers', () => {
    const state = new ProducerState();
    const first = batch({ sequence: 0, baseOffset: 0 });
    expect(state.check(first, 0)).toEqual({ duplicate: false });
    state.recordPending(first, 0);
    expect(state.producerCount).toBe(0);

    // A retry in the same group is a duplicate of the pending batch; the next one follows on.
    expect(state.check(batch({ sequence: 0 }), 0)).toEqual({ duplicate: true, baseOffset: 0, lastOffset: 0 });
    const second = batch({ sequence: 1, baseOffset: 1 });
    expect(state.check(second, 0)).toEqual({ duplicate: false });
    state.recordPending(second, 0);
    expectThrows(() => state.check(batch({ sequence: 3 }), 0), ErrorCode.FAILED_PRECONDITION, 'expected 2, got 3');

    state.commitPending();
    expect(state.producerCount).toBe(1);
    expect(state.check(batch({ sequence: 1 }), 0)).toEqual({ duplicate: true, baseOffset: 1, lastOffset: 1 });
    expect(state.check(batch({ sequence: 2 }), 0)).toEqual({ duplicate: false });
  });

  it('abortPending leaves no trace: neither a new producer nor new batches of a known one', () => {
    const state = new ProducerState();
    const empty = state.encode(0);

    state.recordPending(batch({ producerId: 5, sequence: 0, baseOffset: 0 }), 0);
    state.abortPending();
    expect(state.producerCount).toBe(0);
    expect(state.encode(0).equals(empty)).toBe(true);
    // Producer 5 is unknown again: any sequence is accepted, the aborted one is no duplicate.
    expect(state.check(batch({ producerId: 5, sequence: 0 }), 0)).toEqual({ duplicate: false });
    expect(state.check(batch({ producerId: 5, sequence: 77 }), 0)).toEqual({ duplicate: false });

    commit(state, batch({ producerId: 5, sequence: 0, baseOffset: 0 }));
    const committed = state.encode(1);
    state.recordPending(batch({ producerId: 5, sequence: 1, baseOffset: 1 }), 0);
    state.recordPending(batch({ producerId: 6, sequence: 9, baseOffset: 2 }), 0);
    state.abortPending();
    expect(state.encode(1).equals(committed)).toBe(true);
    expect(state.producerCount).toBe(1);
    // Sequence 1 of producer 5 is expected again (not a duplicate), producer 6 is unknown.
    expect(state.check(batch({ producerId: 5, sequence: 1 }), 0)).toEqual({ duplicate: false });
    expectThrows(() => state.check(batch({ producerId: 5, sequence: 2 }), 0), ErrorCode.FAILED_PRECONDITION, 'expected 1, got 2');
    expect(state.check(batch({ producerId: 6, sequence: 9 }), 0)).toEqual({ duplicate: false });
    expect(state.check(batch({ producerId: 6, sequence: 3 }), 0)).toEqual({ duplicate: false });
  });

  it(`remembers exactly the last ${PRODUCER_BATCH_WINDOW} batches: the one before them is then an out-of-order sequence`, () => {
    const window = PRODUCER_BATCH_WINDOW;
    expect(window).toBe(10);
    const state = new ProducerState();
    // Sequences 0..window: sequence 0 has slid out of the window.
    for (let sequence = 0; sequence <= window; sequence++) commit(state, batch({ sequence, baseOffset: 100 + sequence }));

    for (let sequence = 1; sequence <= window; sequence++) {
      expect(state.check(batch({ sequence }), 0)).toEqual({ duplicate: true, baseOffset: 100 + sequence, lastOffset: 100 + sequence });
    }
    expectThrows(() => state.check(batch({ sequence: 0 }), 0), ErrorCode.FAILED_PRECONDITION, 'out-of-order sequence', `expected ${window + 1}, got 0`);

    // The window also slides over pending batches.
    const next = window + 1;
    state.recordPending(batch({ sequence: next, baseOffset: 100 + next }), 0);
    expect(state.check(batch({ sequence: next }), 0)).toEqual({ duplicate: true, baseOffset: 100 + next, lastOffset: 100 + next });
    expectThrows(() => state.check(batch({ sequence: 1 }), 0), ErrorCode.FAILED_PRECONDITION, `expected ${next + 1}, got 1`);
    expect(state.check(batch({ sequence: 2 }), 0)).toEqual({ duplicate: true, baseOffset: 102, lastOffset: 102 });
  });

  it('wraps sequences from 2^31 - 1 to 0', () => {
    const state = new ProducerState();
    commit(state, batch({ sequence: MAX_SEQUENCE, baseOffset: 0 }));
    expect(state.check(batch({ sequence: MAX_SEQUENCE }), 0)).toEqual({ duplicate: true, baseOffset: 0, lastOffset: 0 });
    expectThrows(() => state.check(batch({ sequence: 1 }), 0), ErrorCode.FAILED_PRECONDITION, 'expected 0, got 1');
    commit(state, batch({ sequence: 0, count: 2, baseOffset: 1 }));
    expect(state.check(batch({ sequence: 2 }), 0)).toEqual({ duplicate: false });

    // A batch that spans the wrap: sequences 2^31-2, 2^31-1, 0; the next one starts at 1.
    const spanning = new ProducerState();
    commit(spanning, batch({ producerId: 2, sequence: MAX_SEQUENCE - 1, count: 3, baseOffset: 50 }));
    expect(spanning.check(batch({ producerId: 2, sequence: MAX_SEQUENCE - 1, count: 3 }), 0)).toEqual({ duplicate: true, baseOffset: 50, lastOffset: 52 });
    expect(spanning.check(batch({ producerId: 2, sequence: 1 }), 0)).toEqual({ duplicate: false });
    expectThrows(() => spanning.check(batch({ producerId: 2, sequence: MAX_SEQUENCE }), 0), ErrorCode.FAILED_PRECONDITION, 'expected 1, got 2147483647');
  });

  it('accepts an unknown producer at any sequence, but not a negative one', () => {
    const state = new ProducerState();
    for (const sequence of [0, 1, 12_345, MAX_SEQUENCE]) {
      expect(state.check(batch({ producerId: 40 + sequence, sequence }), 0)).toEqual({ duplicate: false });
    }
    commit(state, batch({ producerId: 9, sequence: 500, baseOffset: 0 }));
    // Another producer is unaffected by producer 9's state.
    expect(state.check(batch({ producerId: 10, sequence: 3 }), 0)).toEqual({ duplicate: false });
    expect(state.check(batch({ producerId: 9, sequence: 501 }), 0)).toEqual({ duplicate: false });
    expectThrows(() => state.check(batch({ producerId: 11, sequence: -1 }), 0), ErrorCode.FAILED_PRECONDITION, 'base sequence -1');
  });

  it('requires a bumped epoch to start at sequence 0 and fences older epochs', () => {
    const state = new ProducerState();
    for (let sequence = 0; sequence < 3; sequence++) commit(state, batch({ epoch: 4, sequence, baseOffset: sequence }));

    expectThrows(() => state.check(batch({ epoch: 5, sequence: 3 }), 0), ErrorCode.FAILED_PRECONDITION, 'out-of-order sequence', 'expected 0, got 3');
    commit(state, batch({ epoch: 5, sequence: 0, baseOffset: 3 }));
    expect(state.check(batch({ epoch: 5, sequence: 0 }), 0)).toEqual({ duplicate: true, baseOffset: 3, lastOffset: 3 });
    expect(state.check(batch({ epoch: 5, sequence: 1 }), 0)).toEqual({ duplicate: false });

    // The old instance is fenced, for new batches and for retries of its own batches alike.
    const fenced = expectThrows(() => state.check(batch({ epoch: 4, sequence: 3 }), 0), ErrorCode.FAILED_PRECONDITION, 'fenced');
    expect(fenced.message).toMatch(/epoch 4 is fenced/);
    expectThrows(() => state.check(batch({ epoch: 4, sequence: 2 }), 0), ErrorCode.FAILED_PRECONDITION, 'fenced');
  });

  it('round-trips through encode/decode and keeps answering duplicates with the same offsets', () => {
    const state = new ProducerState();
    commit(state, batch({ producerId: 1, sequence: 0, count: 2, baseOffset: 0 }));
    commit(state, batch({ producerId: 2, epoch: 3, sequence: 7, baseOffset: 2 }));
    commit(state, batch({ producerId: 1, sequence: 2, baseOffset: 3 }));
    // Producer 2 ends at sequence `last`, with more batches than the window after sequence 7.
    const last = 7 + PRODUCER_BATCH_WINDOW + 2;
    for (let sequence = 8; sequence <= last; sequence++) commit(state, batch({ producerId: 2, epoch: 3, sequence, baseOffset: sequence - 4 }));

    const bytes = state.encode(42);
    const decoded = ProducerState.decode(bytes);
    expect(decoded).not.toBeNull();
    expect(decoded!.offset).toBe(42);
    expect(decoded!.state.producerCount).toBe(2);
    expect(decoded!.state.encode(42).equals(bytes)).toBe(true);

    const restored = decoded!.state;
    expect(restored.check(batch({ producerId: 1, sequence: 0, count: 2 }), 0)).toEqual({ duplicate: true, baseOffset: 0, lastOffset: 1 });
    expect(restored.check(batch({ producerId: 1, sequence: 3 }), 0)).toEqual({ duplicate: false });
    expect(restored.check(batch({ producerId: 2, epoch: 3, sequence: last }), 0)).toEqual({ duplicate: true, baseOffset: last - 4, lastOffset: last - 4 });
    const oldest = last - PRODUCER_BATCH_WINDOW + 1;
    expect(restored.check(batch({ producerId: 2, epoch: 3, sequence: oldest }), 0)).toEqual({ duplicate: true, baseOffset: oldest - 4, lastOffset: oldest - 4 });
    expectThrows(() => restored.check(batch({ producerId: 2, epoch: 3, sequence: oldest - 1 }), 0), ErrorCode.FAILED_PRECONDITION, `expected ${last + 1}, got ${oldest - 1}`);
    expectThrows(() => restored.check(batch({ producerId: 2, epoch: 2, sequence: last + 1 }), 0), ErrorCode.FAILED_PRECONDITION, 'fenced');

    const empty = ProducerState.decode(new ProducerState().encode(0));
    expect(empty?.offset).toBe(0);
    expect(empty?.state.producerCount).toBe(0);
  });

  it('forgets a producer idle past its expiration, keeps one that appended since, and keeps the append times in its snapshot', () => {
    let now = T0;
    const state = new ProducerState(() => now);
    commit(state, batch({ producerId: 1, sequence: 0, baseOffset: 0 }));
    commit(state, batch({ producerId: 2, sequence: 0, baseOffset: 1 }));
    now += PRODUCER_EXPIRATION_MS - 1000;
    commit(state, batch({ producerId: 2, sequence: 1, baseOffset: 2 }));
    const snapshot = state.encode(3);
    expect(state.expire()).toBe(0);
    now += 2000; // producer 1 has been idle past the expiration, producer 2 not
    expect(state.expire()).toBe(1);
    expect(state.producerCount).toBe(1);
    // Producer 1 is unknown now: its old batch is no duplicate, any sequence goes. Producer 2 is still checked.
    expect(state.check(batch({ producerId: 1, sequence: 0 }), 0)).toEqual({ duplicate: false });
    expect(state.check(batch({ producerId: 1, sequence: 40 }), 0)).toEqual({ duplicate: false });
    expectThrows(() => state.check(batch({ producerId: 2, sequence: 5 }), 0), ErrorCode.FAILED_PRECONDITION, 'expected 2, got 5');

    // Loaded from the snapshot taken before, the same producer expires.
    const loaded = ProducerState.decode(snapshot, () => now)!;
    expect(loaded.state.producerCount).toBe(2);
    expect(loaded.state.expire()).toBe(1);
    expect(loaded.state.check(batch({ producerId: 2, sequence: 1 }), 0)).toEqual({ duplicate: true, baseOffset: 2, lastOffset: 2 });
    // A version 1 snapshot has no append times: its producers count as seen when it is loaded.
    const body = '{"version":1,"offset":1,"producers":[[1,0,[[0,0,0,0]]]]}';
    const v1 = ProducerState.decode(Buffer.from(`${crc32c(Buffer.from(body)).toString(16).padStart(8, '0')}\n${body}`), () => now)!;
    now += PRODUCER_EXPIRATION_MS;
    expect(v1.state.expire()).toBe(0);
    now += 1;
    expect(v1.state.expire()).toBe(1);
  });

  it('leaves a producer with a batch being written', () => {
    let now = T0;
    const state = new ProducerState(() => now);
    commit(state, batch({ producerId: 1, sequence: 0, baseOffset: 0 }));
    now += PRODUCER_EXPIRATION_MS + 1;
    state.recordPending(batch({ producerId: 1, sequence: 1, baseOffset: 1 }), 0);
    expect(state.expire()).toBe(0);
    state.commitPending();
    expect(state.check(batch({ producerId: 1, sequence: 1 }), 0)).toEqual({ duplicate: true, baseOffset: 1, lastOffset: 1 });
  });

  it('decodes a missing, torn or corrupt snapshot as null', () => {
    const state = new ProducerState();
    commit(state, batch({ sequence: 0, count: 2, baseOffset: 0 }));
    const bytes = state.encode(2);
    // A correct CRC line over `body`, to reach the checks behind the CRC.
    const withCrc = (body: string): Buffer => Buffer.from(`${crc32c(Buffer.from(body)).toString(16).padStart(8, '0')}\n${body}`);

    expect(ProducerState.decode(null)).toBeNull();
    expect(ProducerState.decode(Buffer.alloc(0))).toBeNull();
    // Torn: every proper prefix is refused.
    for (const length of [1, 8, 9, 10, bytes.length >> 1, bytes.length - 1]) {
      expect(ProducerState.decode(bytes.subarray(0, length))).toBeNull();
    }
    // Corrupt: a flipped byte in the body, in the CRC, or a missing newline.
    const flippedBody = Buffer.from(bytes);
    flippedBody[bytes.length - 3] ^= 0x01;
    expect(ProducerState.decode(flippedBody)).toBeNull();
    const flippedCrc = Buffer.from(bytes);
    flippedCrc[0] = flippedCrc[0] === 0x30 ? 0x31 : 0x30;
    expect(ProducerState.decode(flippedCrc)).toBeNull();
    const noNewline = Buffer.from(bytes);
    noNewline[8] = 0x20;
    expect(ProducerState.decode(noNewline)).toBeNull();
    expect(ProducerState.decode(Buffer.concat([bytes, Buffer.from('x')]))).toBeNull();
    // A valid CRC over something that is not a version-1 snapshot.
    expect(ProducerState.decode(withCrc('{"version":1,"offset":'))).toBeNull();
    expect(ProducerState.decode(withCrc('{"version":3,"offset":0,"producers":[]}'))).toBeNull();
    expect(ProducerState.decode(withCrc('{"version":2,"offset":0,"producers":[[1,0,[[0,1,0,1]]]]}'))).toBeNull(); // no append time
    expect(ProducerState.decode(withCrc('{"version":1,"offset":1.5,"producers":[]}'))).toBeNull();
    expect(ProducerState.decode(withCrc('{"version":1,"offset":0}'))).toBeNull();
    expect(ProducerState.decode(withCrc('{"version":1,"offset":0,"producers":[[1,0,"x"]]}'))).toBeNull();
    // ...and the control: the same helper over a good body decodes.
    expect(ProducerState.decode(withCrc('{"version":1,"offset":3,"producers":[]}'))?.offset).toBe(3);
  });

  it('saves atomically and loads back; a missing file loads as null', async () => {
    const directory = tempDir();
    const fs = new NodeFileSystem();
    expect(await ProducerState.load(fs, directory)).toBeNull();
    const state = new ProducerState();
    commit(state, batch({ sequence: 4, baseOffset: 0 }));
    await state.save(fs, directory, 1);
    expect(nodeFs.readdirSync(directory)).toEqual([PRODUCER_STATE_FILE]);
    const loaded = await ProducerState.load(fs, directory);
    expect(loaded?.offset).toBe(1);
    expect(loaded!.state.check(batch({ sequence: 4 }), 0)).toEqual({ duplicate: true, baseOffset: 0, lastOffset: 0 });
  });
});

// ---------------------------------------------------------------------------------------------
// Through PartitionLog.

describe('PartitionLog idempotent appends', () => {
  it('writes a batch appended twice once and answers the retry with the original offsets', async () => {
    const log = await openLog(tempDir());
    await log.append(plainBatch('before', 2));
    const first = await log.append(batch({ sequence: 0, count: 3 }));
    expect(first).toMatchObject({ baseOffset: 2, lastOffset: 4, recordCount: 3, duplicate: false });

    // append rewrote the first buffer's baseOffset in place, so the retry is rebuilt.
    const retry = await log.append(batch({ sequence: 0, count: 3 }));
    expectOriginal(retry, first);
    expect(retry.recordCount).toBe(3);
    expect(log.logEndOffset).toBe(5);

    const stored = await readAll(log);
    expect(stored.map((b) => [b.baseOffset, b.producerId, b.baseSequence])).toEqual([
      [0, -1, -1],
      [2, 1, 0],
    ]);
    expect(stored[1]!.values).toEqual([0, 1, 2].map((index) => `r-1-0-0-${index}-${PAD}`));

    const next = await log.append(batch({ sequence: 3 }));
    expect(next).toMatchObject({ baseOffset: 5, lastOffset: 5, duplicate: false });
  });

  it('writes a retry that is in flight in the same write group once', async () => {
    const log = await openLog(tempDir());
    await log.append(batch({ sequence: 0 }));
    // Both appends are queued in this turn, before the writer takes its group.
    const [original, retry, next] = await Promise.all([
      log.append(batch({ sequence: 1, count: 2 })),
      log.append(batch({ sequence: 1, count: 2 })),
      log.append(batch({ sequence: 3 })),
    ]);
    expect(original).toMatchObject({ baseOffset: 1, lastOffset: 2, duplicate: false });
    expectOriginal(retry, original);
    expect(next).toMatchObject({ baseOffset: 3, lastOffset: 3, duplicate: false });

    // Also when the original is the very first batch of an unknown producer.
    const [fresh, freshRetry] = await Promise.all([
      log.append(batch({ producerId: 2, sequence: 9, count: 2 })),
      log.append(batch({ producerId: 2, sequence: 9, count: 2 })),
    ]);
    expect(fresh).toMatchObject({ baseOffset: 4, lastOffset: 5, duplicate: false });
    expectOriginal(freshRetry, fresh);

    const stored = await readAll(log);
    expect(stored.map((b) => [b.producerId, b.baseSequence, b.baseOffset])).toEqual([
      [1, 0, 0],
      [1, 1, 1],
      [1, 3, 3],
      [2, 9, 4],
    ]);
    expect(log.logEndOffset).toBe(6);
  });

  it('refuses a sequence gap with FAILED_PRECONDITION and writes nothing', async () => {
    const log = await openLog(tempDir());
    await log.append(batch({ sequence: 0, count: 2 }));
    await expectRejects(log.append(batch({ sequence: 5 })), ErrorCode.FAILED_PRECONDITION, 'out-of-order sequence', 'expected 2, got 5');
    // A refused batch in a group does not disturb its neighbours.
    const [, accepted] = await Promise.allSettled([log.append(batch({ sequence: 3 })), log.append(batch({ sequence: 2 }))]);
    expect(accepted).toMatchObject({ status: 'fulfilled', value: { baseOffset: 2, duplicate: false } });
    expect(log.logEndOffset).toBe(3);
    const stored = await readAll(log);
    expect(stored.map((b) => b.baseSequence)).toEqual([0, 2]);

    // A fenced epoch is refused the same way, and a new epoch must start at 0.
    await log.append(batch({ epoch: 1, sequence: 0 }));
    await expectRejects(log.append(batch({ epoch: 0, sequence: 3 })), ErrorCode.FAILED_PRECONDITION, 'fenced');
    await expectRejects(log.append(batch({ epoch: 2, sequence: 1 })), ErrorCode.FAILED_PRECONDITION, 'out-of-order sequence', 'expected 0, got 1');
    expect((await readAll(log)).length).toBe(3);
  });

  it('keeps producer state across a clean close and reopen', async () => {
    const directory = tempDir();
    const log = await openLog(directory);
    const results: AppendResult[] = [];
    // Two more batches than the window: sequences 0 and 1 slide out of it.
    const count = PRODUCER_BATCH_WINDOW + 2;
    for (let sequence = 0; sequence < count; sequence++) results.push(await log.append(batch({ sequence })));
    await log.close();
    expect(snapshotOffset(directory)).toBe(count);

    const reopened = await openLog(directory);
    expect(reopened.recovery).toBeNull(); // clean: no recovery ran
    for (let sequence = 2; sequence < count; sequence++) {
      expectOriginal(await reopened.append(batch({ sequence })), results[sequence]!);
    }
    await expectRejects(reopened.append(batch({ sequence: 1 })), ErrorCode.FAILED_PRECONDITION, `expected ${count}, got 1`);
    await expectRejects(reopened.append(batch({ sequence: count + 1 })), ErrorCode.FAILED_PRECONDITION, `expected ${count}, got ${count + 1}`);
    expect(await reopened.append(batch({ sequence: count }))).toMatchObject({ baseOffset: count, duplicate: false });
    expect((await readAll(reopened)).length).toBe(count + 1);
  });

  it('rebuilds producer state after an unclean stop by replaying the log after the snapshot', async () => {
    const directory = tempDir();
    const first = await openLog(directory);
    const a = await first.append(batch({ sequence: 0, count: 2 }));
    await first.close();
    expect(snapshotOffset(directory)).toBe(2);

    const crashed = await openLog(directory);
    const b = await crashed.append(batch({ sequence: 2 }));
    const c = await crashed.append(batch({ sequence: 3, count: 3 }));
    const other = await crashed.append(batch({ producerId: 8, epoch: 2, sequence: 40 }));
    // `crashed` is never closed before the next open: no clean-shutdown marker, no new snapshot.
    expect(nodeFs.existsSync(join(directory, '.clean-shutdown'))).toBe(false);
    expect(snapshotOffset(directory)).toBe(2);

    const recovered = await openLog(directory);
    expect(recovered.recovery).not.toBeNull(); // recovery ran
    expect(recovered.logEndOffset).toBe(7);
    expectOriginal(await recovered.append(batch({ sequence: 0, count: 2 })), a); // from the snapshot
    expectOriginal(await recovered.append(batch({ sequence: 2 })), b); // from replay
    expectOriginal(await recovered.append(batch({ sequence: 3, count: 3 })), c); // from replay
    expectOriginal(await recovered.append(batch({ producerId: 8, epoch: 2, sequence: 40 })), other);
    await expectRejects(recovered.append(batch({ sequence: 7 })), ErrorCode.FAILED_PRECONDITION, 'expected 6, got 7');
    await expectRejects(recovered.append(batch({ producerId: 8, epoch: 1, sequence: 41 })), ErrorCode.FAILED_PRECONDITION, 'fenced');
    expect(await recovered.append(batch({ sequence: 6 }))).toMatchObject({ baseOffset: 7, duplicate: false });
    expect((await readAll(recovered)).map((s) => [s.producerId, s.baseSequence])).toEqual([
      [1, 0],
      [1, 2],
      [1, 3],
      [8, 40],
      [1, 6],
    ]);
  });

  it('rebuilds producer state after an unclean stop with no snapshot at all', async () => {
    const directory = tempDir();
    const crashed = await openLog(directory);
    const a = await crashed.append(batch({ sequence: 10 }));
    const b = await crashed.append(batch({ sequence: 11, count: 2 }));
    expect(snapshotOffset(directory)).toBeNull();

    const recovered = await openLog(directory);
    expect(recovered.recovery).not.toBeNull();
    expectOriginal(await recovered.append(batch({ sequence: 10 })), a);
    expectOriginal(await recovered.append(batch({ sequence: 11, count: 2 })), b);
    await expectRejects(recovered.append(batch({ sequence: 14 })), ErrorCode.FAILED_PRECONDITION, 'expected 13, got 14');
    expect((await readAll(recovered)).length).toBe(2);
  });

  it('forgets a producer idle past its expiration at a retention check', async () => {
    const clock = new ManualClock(T0);
    const log = await PartitionLog.open({ directory: tempDir(), name: 'producer-test-0', clock });
    openLogs.push(log);
    await log.append(batch({ producerId: 1, sequence: 0 }));
    clock.advance(PRODUCER_EXPIRATION_MS);
    await log.applyRetention();
    await expectRejects(log.append(batch({ producerId: 1, sequence: 5 })), ErrorCode.FAILED_PRECONDITION, 'expected 1, got 5'); // not yet
    clock.advance(1);
    await log.applyRetention();
    expect(await log.append(batch({ producerId: 1, sequence: 5 }))).toMatchObject({ baseOffset: 1, duplicate: false }); // unknown now
  });

  it('writes no producer idle past its expiration into the snapshot of a roll', async () => {
    const directory = tempDir();
    const clock = new ManualClock(T0);
    const log = await PartitionLog.open({ directory, config: { segmentBytes: 1024 }, name: 'producer-test-0', clock });
    openLogs.push(log);
    await log.append(batch({ producerId: 1, sequence: 0 }));
    await log.append(batch({ producerId: 2, sequence: 0 }));
    clock.advance(PRODUCER_EXPIRATION_MS - 1000);
    await log.append(batch({ producerId: 2, sequence: 1 }));
    clock.advance(2000);
    const segments = log.segmentCount;
    while (log.segmentCount === segments) await log.append(plainBatch('filler'));
    const snapshot = ProducerState.decode(nodeFs.readFileSync(join(directory, PRODUCER_STATE_FILE)), () => clock.nowMs())!;
    expect(snapshot.offset).toBe(log.segmentSizes().at(-1)!.baseOffset);
    expect(snapshot.state.producerCount).toBe(1);
    expect(snapshot.state.check(batch({ producerId: 2, sequence: 1 }), 0)).toMatchObject({ duplicate: true });
  });

  it('keeps producer state across segment rolls, in memory, after a clean reopen and after an unclean one', async () => {
    const directory = tempDir();
    // About 280 bytes per batch: three batches per segment.
    const config: Partial<LogConfig> = { segmentBytes: 1024 };
    const log = await openLog(directory, config);
    const results: AppendResult[] = [];
    const window = PRODUCER_BATCH_WINDOW;
    // Sequences 0..first-1; the window then holds first-window..first-1.
    const first = window + 7;
    for (let sequence = 0; sequence < first; sequence++) results.push(await log.append(batch({ sequence })));
    expect(log.segmentCount).toBeGreaterThan(2);
    // The snapshot is written at each roll, for the new active segment's base offset.
    expect(snapshotOffset(directory)).toBe(log.segmentSizes().at(-1)!.baseOffset);
    for (let sequence = first - window; sequence < first; sequence++) expectOriginal(await log.append(batch({ sequence })), results[sequence]!);
    const outOfWindow = first - window - 1;
    await expectRejects(log.append(batch({ sequence: outOfWindow })), ErrorCode.FAILED_PRECONDITION, `expected ${first}, got ${outOfWindow}`);
    await log.close();

    // Clean reopen, then a window's worth more appends, which roll again.
    const clean = await openLog(directory, config);
    expect(clean.recovery).toBeNull();
    for (let sequence = first - window; sequence < first; sequence++) expectOriginal(await clean.append(batch({ sequence })), results[sequence]!);
    const segmentsBefore = clean.segmentCount;
    const end = first + window;
    for (let sequence = first; sequence < end; sequence++) results.push(await clean.append(batch({ sequence })));
    expect(clean.segmentCount).toBeGreaterThan(segmentsBefore);
    const rollBase = clean.segmentSizes().at(-1)!.baseOffset;
    expect(snapshotOffset(directory)).toBe(rollBase);
    // The window's batches straddle the last roll: some live in the snapshot, some only in the log.
    expect(results[first]!.baseOffset).toBeLessThan(rollBase);
    expect(results[end - 1]!.baseOffset).toBeGreaterThanOrEqual(rollBase);

    // Unclean: `clean` is left open; the new instance loads the roll snapshot and replays the rest.
    const recovered = await openLog(directory, config);
    expect(recovered.recovery).not.toBeNull();
    for (let sequence = first; sequence < end; sequence++) expectOriginal(await recovered.append(batch({ sequence })), results[sequence]!);
    await expectRejects(recovered.append(batch({ sequence: first - 1 })), ErrorCode.FAILED_PRECONDITION, `expected ${end}, got ${first - 1}`);
    expect(await recovered.append(batch({ sequence: end }))).toMatchObject({ baseOffset: end, duplicate: false });
    const stored = await readAll(recovered);
    expect(stored.map((b) => b.baseSequence)).toEqual(Array.from({ length: end + 1 }, (_, index) => index));
    expect(stored.map((b) => b.baseOffset)).toEqual(Array.from({ length: end + 1 }, (_, index) => index));
  });

  it('refuses an idempotent append that carries two concatenated batches', async () => {
    const log = await openLog(tempDir());
    await expectRejects(
      log.append(Buffer.concat([batch({ sequence: 0 }), batch({ sequence: 1 })])),
      ErrorCode.INVALID_ARGUMENT,
      'exactly one batch',
    );
    await expectRejects(log.append(Buffer.concat([batch({ sequence: 0 }), plainBatch('tail')])), ErrorCode.INVALID_ARGUMENT);
    expect(log.logEndOffset).toBe(0);
    expect(await readAll(log)).toEqual([]);
    // Nothing was recorded either: the producer is still unknown.
    expect(await log.append(batch({ sequence: 20 }))).toMatchObject({ baseOffset: 0, duplicate: false });
  });

  // Any idempotent batch makes the append idempotent, wherever it sits: otherwise it would be
  // written without a sequence check or a record of it, and a retry would be written twice.
  it('refuses an append whose second batch is idempotent (plain batch first)', async () => {
    const log = await openLog(tempDir());
    await expectRejects(log.append(Buffer.concat([plainBatch('head'), batch({ producerId: 7, sequence: 5 })])), ErrorCode.INVALID_ARGUMENT);
    expect(log.logEndOffset).toBe(0);
  });

  it('never deduplicates non-idempotent batches', async () => {
    const directory = tempDir();
    const log = await openLog(directory);
    const first = await log.append(plainBatch('same', 2));
    const second = await log.append(plainBatch('same', 2));
    const [third, fourth] = await Promise.all([log.append(plainBatch('same', 2)), log.append(plainBatch('same', 2))]);
    expect([first, second, third, fourth].map((r) => [r.baseOffset, r.duplicate])).toEqual([
      [0, false],
      [2, false],
      [4, false],
      [6, false],
    ]);
    // Several plain batches in one append are fine too.
    expect(await log.append(Buffer.concat([plainBatch('same', 2), plainBatch('same', 2)]))).toMatchObject({ baseOffset: 8, lastOffset: 11, duplicate: false });
    await log.close();

    const reopened = await openLog(directory);
    expect(await reopened.append(plainBatch('same', 2))).toMatchObject({ baseOffset: 12, duplicate: false });
    const stored = await readAll(reopened);
    expect(stored.length).toBe(7);
    expect(stored.every((b) => b.producerId === -1 && b.values[0] === `same-0-${PAD}`)).toBe(true);
  });
});
