// Goal: a long-poll fetch waiting for min_bytes reads the log again only once enough may have
// arrived (or its wait ends), not once per append, still answers with everything that arrived,
// counts what arrived while it read, answers at once when max_bytes or a segment's end cut its
// read short, and fails at once when the log is fenced meanwhile; a start position of a fenced
// partition is refused with the fence; method: a real PartitionLog
// in a temporary directory (a failing fdatasync or a held read injected), its reads counted,
// small appends made while a fetch waits. A fetch that would wait instead is given 60 s and
// checked to settle within 10.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type StartSpec, fetchWithWait, resolveStart } from '../../src/broker/fetch.js';
import { ErrorCode } from '../../src/common/errors.js';
import { settlesWithin } from '../../src/common/settles-within.js';
import type { LogConfig } from '../../src/storage/log-config.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { decodeBatches } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestFileSystem } from '../helpers/test-file-system.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function countedLog(fs?: TestFileSystem, config: Partial<LogConfig> = {}): Promise<{ log: PartitionLog; reads: () => number }> {
  const directory = temporaryDirectory('strata-fetch-');
  const log = await PartitionLog.open({ directory, config, ...(fs !== undefined ? { fs } : {}) });
  cleanups.push(() => removeDirectory(directory), () => log.close());
  let reads = 0;
  const read = log.read.bind(log);
  log.read = (offset, maxBytes) => {
    reads++;
    return read(offset, maxBytes);
  };
  return { log, reads: () => reads };
}

const batch = (index: number): Buffer => buildBatch([{ value: Buffer.from(`record ${index}`) }], { timestamp: 1_700_000_000_000 });

describe('fetchWithWait', () => {
  it('reads again once the appends may make up min_bytes, not after each of them', async () => {
    const { log, reads } = await countedLog();
    const appends = 50;
    const minBytes = appends * batch(0).length;
    const fetched = fetchWithWait(log, { offset: 0, maxBytes: 1024 * 1024, minBytes, maxWaitMs: 60_000 });
    for (let index = 0; index < appends - 1; index++) await log.append(batch(index));
    expect(reads()).toBe(1); // the first, which found nothing
    await log.append(batch(appends - 1));
    const result = await fetched;
    expect(reads()).toBe(2);
    expect(decodeBatches(result.batches).map((record) => record.value!.toString())).toEqual(Array.from({ length: appends }, (_, index) => `record ${index}`));
  });

  it('ends its wait after max_wait_ms when the system time steps back meanwhile (it is timed on the monotonic clock)', async () => {
    const { log } = await countedLog();
    vi.useFakeTimers({ toFake: ['Date'] }); // Date alone: timers and performance.now() run as they do
    try {
      const fetched = fetchWithWait(log, { offset: 0, maxBytes: 1024, minBytes: 1, maxWaitMs: 200 });
      vi.setSystemTime(Date.now() - 60 * 60 * 1000); // an NTP step of an hour back
      expect(await settlesWithin(fetched, 10_000), 'answered once its 200 ms were up, not an hour later').toBe(true);
      expect((await fetched).batches.length).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('fails at once with the fence when the log is fenced while it waits', async () => {
    const fs = new TestFileSystem();
    const { log } = await countedLog(fs);
    const fetched = fetchWithWait(log, { offset: 0, maxBytes: 1024 * 1024, minBytes: 1024 * 1024, maxWaitMs: 60_000 });
    fs.failFdatasync = true;
    await expect(log.append(batch(0))).rejects.toMatchObject({ code: ErrorCode.PARTITION_FENCED });
    await expect(fetched).rejects.toMatchObject({ code: ErrorCode.PARTITION_FENCED });
  });

  it('answers with what arrived when its wait ends short of min_bytes', async () => {
    const { log } = await countedLog();
    const ended = new AbortController();
    const fetched = fetchWithWait(log, { offset: 0, maxBytes: 1024 * 1024, minBytes: 1024 * 1024, maxWaitMs: 60_000, signal: ended.signal });
    for (let index = 0; index < 3; index++) await log.append(batch(index));
    ended.abort();
    const result = await fetched;
    expect(decodeBatches(result.batches).map((record) => record.value!.toString())).toEqual(['record 0', 'record 1', 'record 2']);
  });

  it('answers at once when max_bytes cut its read short of min_bytes: reading again returns no more', async () => {
    const { log, reads } = await countedLog();
    for (let index = 0; index < 10; index++) await log.append(batch(index));
    const maxBytes = Math.floor(3.5 * batch(0).length);
    const fetched = fetchWithWait(log, { offset: 0, maxBytes, minBytes: maxBytes, maxWaitMs: 60_000 });
    expect(await settlesWithin(fetched, 10_000), 'answered without waiting').toBe(true);
    expect(decodeBatches((await fetched).batches).map((record) => record.value!.toString())).toEqual(['record 0', 'record 1', 'record 2']);
    expect(reads()).toBe(1);
  });

  it("answers at once when its read stopped at the end of a segment, with more in the next", async () => {
    const { log, reads } = await countedLog(undefined, { segmentBytes: 1024 });
    const perSegment = Math.ceil(1024 / batch(0).length);
    for (let index = 0; index < 3 * perSegment; index++) await log.append(batch(index));
    const fetched = fetchWithWait(log, { offset: 1, maxBytes: 1024 * 1024, minBytes: 1024 * 1024, maxWaitMs: 60_000 });
    expect(await settlesWithin(fetched, 10_000), 'answered without waiting').toBe(true);
    const values = decodeBatches((await fetched).batches).map((record) => record.value!.toString());
    expect(values[0]).toBe('record 1');
    expect(values.length).toBeLessThan(3 * perSegment - 1); // the first segment's rest only
    expect(reads()).toBe(1);
  });

  it('counts what became visible while it read, whose advance came before its wait began', async () => {
    const fs = new TestFileSystem();
    const directory = temporaryDirectory('strata-fetch-');
    // Without a tail cache every read goes to the segment file: the fetch's is held there.
    const log = await PartitionLog.open({ directory, fs, tailCache: null });
    cleanups.push(() => removeDirectory(directory), () => log.close());
    await log.append(batch(0));
    const held = fs.hold('read');
    const fetched = fetchWithWait(log, { offset: 0, maxBytes: 1024 * 1024, minBytes: 2 * batch(0).length, maxWaitMs: 60_000 });
    try {
      await held.reached;
      await log.append(batch(1)); // durable and visible before the read returns
    } finally {
      held.release();
    }
    expect(await settlesWithin(fetched, 10_000), 'answered without waiting for another append').toBe(true);
    expect(decodeBatches((await fetched).batches).map((record) => record.value!.toString())).toEqual(['record 0', 'record 1']);
  });
});

describe('resolveStart', () => {
  it('answers every start position of a fenced partition with the fence, as its reads are', async () => {
    const fs = new TestFileSystem();
    const { log } = await countedLog(fs);
    await log.append(batch(0));
    await log.append(batch(1));
    expect(await Promise.all(STARTS.map((start) => resolveStart(log, start)))).toEqual([0, 2, 1, 0]);
    fs.failFdatasync = true;
    await expect(log.append(batch(2))).rejects.toMatchObject({ code: ErrorCode.PARTITION_FENCED });
    for (const start of STARTS) await expect(resolveStart(log, start), start.kind).rejects.toMatchObject({ code: ErrorCode.PARTITION_FENCED });
  });
});

const STARTS: StartSpec[] = [{ kind: 'earliest' }, { kind: 'latest' }, { kind: 'offset', offset: 1 }, { kind: 'timestamp', timestamp: 0 }];
