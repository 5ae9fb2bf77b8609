// Goal: show that a segment whose indexes are rebuilt from a damaged log stays as it was (no
// partial index, no size cut to the valid prefix), so every later use meets the damage again
// instead of reading past it; method: write a real sealed segment through a PartitionLog, damage
// one byte and remove its time index, then load it as `LogSegment.existing` does at open.
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { nodeFileSystem } from '../../src/storage/file-system.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { LogSegment, type SegmentOptions } from '../../src/storage/segment.js';

const T0 = 1_700_000_000_000;
const OPTIONS: SegmentOptions = { indexIntervalBytes: 256, maxIndexEntries: 1024, tailCache: null, indexCache: null };
const directories: string[] = [];

afterEach(() => {
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

/** A closed log of several 4 KiB segments; returns the path of the first and where the second starts. */
async function sealedSegment(): Promise<{ directory: string; logPath: string; nextBase: number }> {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-segment-'));
  directories.push(directory);
  const log = await PartitionLog.open({ directory, config: { segmentBytes: 4096, indexIntervalBytes: 256 } });
  for (let index = 0; index < 60; index++) {
    await log.append(buildBatch([{ value: Buffer.alloc(100, index) }, { value: Buffer.alloc(100, index) }], { timestamp: T0 + index }));
  }
  const nextBase = log.segmentSizes()[1]!.baseOffset;
  await log.close();
  return { directory, logPath: join(directory, `${'0'.padStart(20, '0')}.log`), nextBase };
}

async function errorOf(promise: Promise<unknown>): Promise<StrataError | null> {
  return promise.then(() => null, (thrown: unknown) => thrown as StrataError);
}

describe('loading the indexes of a damaged sealed segment', () => {
  it('throws PARTITION_FENCED every time and leaves the size, the end offset and the indexes as they were', async () => {
    const { directory, logPath, nextBase } = await sealedSegment();
    const bytes = nodeFs.readFileSync(logPath);
    const damagedAt = bytes.length - 50; // in the last batch's records
    bytes[damagedAt] = bytes[damagedAt]! ^ 0xff;
    nodeFs.writeFileSync(logPath, bytes);
    nodeFs.unlinkSync(logPath.replace(/\.log$/, '.timeindex')); // so the indexes are rebuilt from the log
    const segment = LogSegment.existing(nodeFileSystem, directory, 0, OPTIONS, bytes.length, nextBase);
    try {
      const first = await errorOf(segment.loadIndexes());
      expect(first?.code).toBe(ErrorCode.PARTITION_FENCED);
      expect(first?.message).toContain(logPath);
      expect(segment.sizeBytes, 'the size is not cut to the valid prefix').toBe(bytes.length);
      expect(segment.nextOffset, 'the end offset is not moved back').toBe(nextBase);
      // A partial index taken from the failed scan would make this load succeed, and a read
      // use it.
      expect((await errorOf(segment.loadIndexes()))?.code, 'the next load').toBe(ErrorCode.PARTITION_FENCED);
      expect((await errorOf(segment.read(nextBase - 2, 1 << 20, segment.sizeBytes, false)))?.code, 'a read').toBe(ErrorCode.PARTITION_FENCED);
    } finally {
      await segment.close();
    }
  });
});
