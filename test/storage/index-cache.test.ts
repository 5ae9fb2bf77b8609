// Goal: show that the index cache keeps the memory of sealed segments' loaded indexes within
// its bound (least recently used dropped first, never one in use), and that a partition log
// under a small bound still reads every record right, reloading dropped indexes from their
// files, while its active segment keeps taking appends; method: the cache alone with plain
// owners, then real partition logs on temp directories, with a gated file system to hold reads.
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IndexCache, type UnloadableIndexes } from '../../src/storage/index-cache.js';
import { ManualClock } from '../../src/common/clock.js';
import { PartitionLog, type PartitionLogOptions } from '../../src/storage/partition-log.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { decodeBatches } from '../../src/storage/record-batch.js';
import { TestFileSystem } from '../helpers/test-file-system.js';

const directories: string[] = [];
const openLogs: PartitionLog[] = [];

afterEach(async () => {
  for (const log of openLogs.splice(0)) await log.close().catch(() => undefined);
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

/** An owner that unloads unless `busy`, and remembers that it did. */
class Owner implements UnloadableIndexes {
  busy = false;
  unloaded = 0;
  constructor(readonly name: string) {}
  unloadIndexes(): boolean {
    if (this.busy) return false;
    this.unloaded++;
    return true;
  }
}

describe('IndexCache', () => {
  it('unloads the least recently used segments while over its bound, never the one just used', () => {
    const cache = new IndexCache(25);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => new Owner(name)) as [Owner, Owner, Owner, Owner];
    cache.used(a, 10, true);
    cache.used(b, 10, true);
    expect(cache.bytes).toBe(20);
    cache.used(c, 10, true);
    expect([a.unloaded, b.unloaded, c.unloaded]).toEqual([1, 0, 0]);
    expect(cache.bytes).toBe(20);
    // A use moves b to the newest end: c is now the least recently used.
    cache.used(b, 10, false);
    cache.used(d, 10, true);
    expect([b.unloaded, c.unloaded, d.unloaded]).toEqual([0, 1, 0]);
    expect({ bytes: cache.bytes, segments: cache.segments, loads: cache.loads, unloads: cache.unloads }).toEqual({ bytes: 20, segments: 2, loads: 4, unloads: 2 });
    // One larger than the whole bound stays while in use: the others go.
    const big = new Owner('big');
    cache.used(big, 40, true);
    expect([b.unloaded, d.unloaded, big.unloaded]).toEqual([1, 1, 0]);
    expect(cache.bytes).toBe(40);
  });

  it('skips a segment in use and unloads it at a later use of another once free', () => {
    const cache = new IndexCache(15);
    const held = new Owner('held');
    const other = new Owner('other');
    held.busy = true;
    cache.used(held, 10, true);
    cache.used(other, 10, true);
    expect(cache.bytes).toBe(20);
    expect(held.unloaded).toBe(0);
    held.busy = false;
    cache.used(other, 10, false);
    expect(held.unloaded).toBe(1);
    expect(cache.bytes).toBe(10);
  });

  it('counts a segment again when its size changes, and not at all once forgotten', () => {
    const cache = new IndexCache(100);
    const owner = new Owner('a');
    cache.used(owner, 10, true);
    cache.used(owner, 30, false);
    expect(cache.bytes).toBe(30);
    cache.forget(owner);
    cache.forget(owner);
    expect({ bytes: cache.bytes, segments: cache.segments }).toEqual({ bytes: 0, segments: 0 });
  });

  it('refuses a bound that is not a whole number of bytes', () => {
    for (const bad of [-1, 1.5, Number.NaN]) expect(() => new IndexCache(bad)).toThrow(/whole number of bytes/);
  });
});

// ---------------------------------------------------------------------------------------------
// A partition log under the bound.

/** Segments of 4 KiB and an index entry every 256 bytes: a few hundred bytes of indexes each. */
const SMALL = { segmentBytes: 4096, indexIntervalBytes: 256 };
const valueFor = (offset: number): string => `value-${offset}-${'x'.repeat(40)}`;

function tempDir(): string {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-index-cache-'));
  directories.push(directory);
  return directory;
}

async function openLog(directory: string, indexCache: IndexCache | null, fs?: TestFileSystem, more: Partial<PartitionLogOptions> = {}): Promise<PartitionLog> {
  const log = await PartitionLog.open({ directory, config: SMALL, name: 'test-0', indexCache, ...(fs !== undefined ? { fs } : {}), ...more });
  openLogs.push(log);
  return log;
}

async function appendRecords(log: PartitionLog, count: number): Promise<void> {
  for (let index = 0; index < count; index++) {
    const offset = log.logEndOffset;
    await log.append(buildBatch([{ key: Buffer.from(`k${offset}`), value: Buffer.from(valueFor(offset)) }], { timestamp: 1_700_000_000_000 + offset }));
  }
}

/** The value of the record at `offset`, read alone. */
async function valueAt(log: PartitionLog, offset: number): Promise<string> {
  const { batches } = await log.read(offset, 1);
  const record = decodeBatches(batches).find((decoded) => decoded.offset === offset);
  return record?.value?.toString() ?? `no record at ${offset}`;
}

/** A log of `records` records over many sealed segments, closed cleanly: its index files are on disk. */
async function writtenLog(records: number): Promise<string> {
  const directory = tempDir();
  const log = await openLog(directory, null);
  await appendRecords(log, records);
  expect(log.segmentCount).toBeGreaterThan(10);
  await log.close();
  openLogs.splice(openLogs.indexOf(log), 1);
  return directory;
}

describe('a partition log with an index cache', () => {
  it('reads every record of a long log while the loaded indexes stay within the bound, reloading the ones it dropped', async () => {
    const directory = await writtenLog(600);
    const cache = new IndexCache(1200);
    const log = await openLog(directory, cache);
    for (let pass = 0; pass < 2; pass++) {
      for (let offset = 0; offset < 600; offset += 7) {
        expect(await valueAt(log, offset)).toBe(valueFor(offset));
        expect(cache.bytes).toBeLessThanOrEqual(cache.bytesMax);
      }
    }
    const sealed = log.segmentCount - 1;
    // Each pass loaded every sealed segment's indexes, the second pass again the ones dropped.
    expect(cache.loads).toBeGreaterThan(sealed);
    expect(cache.unloads).toBeGreaterThan(0);
    expect(cache.segments).toBeLessThan(sealed);
    // A lookup by time goes through the same indexes.
    expect(await log.offsetForTimestamp(1_700_000_000_000 + 5)).toBe(5);
    expect(await log.offsetForTimestamp(1_700_000_000_000 + 590)).toBe(590);
  });

  it('closes the log of a sealed segment whose indexes it drops: a replay of the whole log leaves few descriptors open', async () => {
    const directory = await writtenLog(600);
    const fs = new TestFileSystem();
    const cache = new IndexCache(0); // every sealed segment's indexes are dropped at the next use of another
    const log = await openLog(directory, cache, fs);
    const sealed = log.segmentCount - 1;
    for (let offset = 0; offset < 600; offset += 7) expect(await valueAt(log, offset)).toBe(valueFor(offset));
    // The active segment's log, and the last sealed one read.
    await expect.poll(() => fs.openFds.size).toBeLessThanOrEqual(2);
    expect(sealed).toBeGreaterThan(10);
    // Read again, they open again.
    for (let offset = 0; offset < 600; offset += 50) expect(await valueAt(log, offset)).toBe(valueFor(offset));
    await expect.poll(() => fs.openFds.size).toBeLessThanOrEqual(2);
  });

  it('does not load again the indexes of sealed segments a lookup by time already found too old, once dropped', async () => {
    const directory = await writtenLog(600);
    const cache = new IndexCache(0); // every sealed segment's indexes are dropped at the next use of another
    const log = await openLog(directory, cache);
    const sealed = log.segmentCount - 1;
    expect(await log.offsetForTimestamp(1_700_000_000_000 + 590)).toBe(590);
    const firstLoads = cache.loads;
    expect(firstLoads).toBe(sealed); // the first search learns every sealed segment's largest timestamp
    expect(await log.offsetForTimestamp(1_700_000_000_000 + 590)).toBe(590);
    expect(await log.offsetForTimestamp(1_700_000_000_000 + 595)).toBe(595);
    expect(cache.loads).toBe(firstLoads);
    // One in an older segment loads that segment's indexes alone.
    expect(await log.offsetForTimestamp(1_700_000_000_000 + 300)).toBe(300);
    expect(cache.loads).toBe(firstLoads + 1);
  });

  it('keeps the indexes of a segment a read holds, and brings the total back within the bound once the reads end', async () => {
    const directory = await writtenLog(600);
    const fs = new TestFileSystem();
    const cache = new IndexCache(0);
    const log = await openLog(directory, cache, fs);
    // Each read loads its segment's indexes (a whole-file read), then stops at the gated log read.
    const gate = fs.hold('read');
    const offsets = [0, 150, 300, 450];
    const reads = offsets.map((offset) => valueAt(log, offset));
    await gate.reached;
    // All four reads load their indexes and wait at the gate: the bound of 0 cannot drop any.
    await expect.poll(() => cache.segments, { timeout: 10_000 }).toBe(offsets.length);
    expect(cache.unloads).toBe(0);
    gate.release();
    expect(await Promise.all(reads)).toEqual(offsets.map(valueFor));
    // The next use finds them free: only its own segment stays.
    expect(await valueAt(log, 520)).toBe(valueFor(520));
    expect(cache.segments).toBe(1);
    expect(cache.unloads).toBe(offsets.length);
  });

  it('takes segments sealed by its own rolls into the cache and goes on appending to the active one', async () => {
    const cache = new IndexCache(1200);
    const log = await openLog(tempDir(), cache);
    for (let round = 0; round < 6; round++) {
      await appendRecords(log, 100);
      for (let offset = 0; offset < log.logEndOffset; offset += 13) expect(await valueAt(log, offset)).toBe(valueFor(offset));
      expect(cache.bytes).toBeLessThanOrEqual(cache.bytesMax);
    }
    expect(log.segmentCount).toBeGreaterThan(10);
    expect(cache.unloads).toBeGreaterThan(0);
    // The active segment's indexes were never dropped: the newest records are found by offset and time.
    expect(await valueAt(log, log.logEndOffset - 1)).toBe(valueFor(log.logEndOffset - 1));
    expect(await log.offsetForTimestamp(1_700_000_000_000 + log.logEndOffset - 2)).toBe(log.logEndOffset - 2);
  });

  it('never takes in an active segment whose roll failed, however the cache fills', async () => {
    const cache = new IndexCache(0);
    const fs = new TestFileSystem();
    const clock = new ManualClock(1_700_000_000_000);
    const log = await openLog(tempDir(), cache, fs, { clock, config: { ...SMALL, retentionMs: 60_000 } });
    await appendRecords(log, 3);
    // Retention rolls the expired active segment, but the next segment's file cannot be opened:
    // the segment stays active, and appends go on into it.
    clock.advance(24 * 60 * 60 * 1000);
    fs.openError = { pathIncludes: `${String(log.logEndOffset).padStart(20, '0')}.log`, code: 'EMFILE' };
    expect(await log.applyRetention()).toBe(0);
    fs.openError = null;
    expect(log.segmentCount).toBe(1);
    // Another partition's reads fill the cache: under a bound of 0, each use unloads all others.
    const other = await openLog(await writtenLog(600), cache);
    for (let offset = 0; offset < 600; offset += 100) expect(await valueAt(other, offset)).toBe(valueFor(offset));
    expect(cache.unloads).toBeGreaterThan(0);
    await appendRecords(log, 2);
    for (let offset = 0; offset < 5; offset++) expect(await valueAt(log, offset)).toBe(valueFor(offset));
  });

  it('writes the indexes it had to rebuild, so that a sealed segment without index files can still be unloaded', async () => {
    const directory = await writtenLog(600);
    const removed = nodeFs.readdirSync(directory).filter((name) => name.endsWith('.index') || name.endsWith('.timeindex'));
    for (const name of removed) nodeFs.rmSync(join(directory, name));
    const cache = new IndexCache(0);
    const log = await openLog(directory, cache);
    for (let pass = 0; pass < 2; pass++) {
      for (let offset = 0; offset < 600; offset += 25) expect(await valueAt(log, offset)).toBe(valueFor(offset));
    }
    // The sealed segments' files are back (the active one's are written when it is sealed)...
    const active = nodeFs.readdirSync(directory).filter((name) => name.endsWith('.log')).sort().at(-1)!.replace('.log', '');
    const back = nodeFs.readdirSync(directory).filter((name) => name.endsWith('.index') || name.endsWith('.timeindex'));
    expect(back.sort()).toEqual(removed.filter((name) => !name.startsWith(active)).sort());
    // ...and the cache kept to its bound: only the segment used last stays loaded.
    expect(cache.segments).toBe(1);
    // A lookup by time through a rewritten time index.
    expect(await log.offsetForTimestamp(1_700_000_000_000 + 123)).toBe(123);
  });

  it('forgets the segments of a log that closes', async () => {
    const directory = await writtenLog(600);
    const cache = new IndexCache(1024 * 1024);
    const log = await openLog(directory, cache);
    for (let offset = 0; offset < 600; offset += 50) await valueAt(log, offset);
    expect(cache.segments).toBeGreaterThan(0);
    await log.close();
    expect({ bytes: cache.bytes, segments: cache.segments }).toEqual({ bytes: 0, segments: 0 });
  });
});
