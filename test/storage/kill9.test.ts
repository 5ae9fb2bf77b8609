// Goal: show that no append acknowledged under flush=always is ever lost or altered when the process is killed with SIGKILL at an arbitrary moment, and that a restarted writer continues at the recovered log end; method: run test/fixtures/append-child (compiled to dist/) with 8 appends in flight, SIGKILL it after a seeded-random number of acknowledgements, reopen the directory (in place, or a copy so the next child recovers it itself) and check every acknowledged batch by offset and sha256, every record's deterministic value and offset continuity, then restart the child, 2 directories x 10 rounds, a third whose child writes every group with direct (O_DIRECT) writes on the pool, and a fourth whose child writes small groups directly on the event loop.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { decodeRecords, forEachBatch, readBaseOffset, readBatchSize, readLastOffset } from '../../src/storage/record-batch.js';
import { CHILD_SEGMENT_BYTES, type ChildWriteMode, recordValue } from '../fixtures/append-child.js';
import { seedMessage, streamFor, testSeed } from '../helpers/seeded-random.js';
import { DIRECT_WRITES_WORK } from '../helpers/test-file-system.js';

const SEED = testSeed('kill9.test.ts');
const at = seedMessage(SEED);

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD_SCRIPT = join(PROJECT_ROOT, 'dist', 'test', 'fixtures', 'append-child.js');
const ROUNDS_PER_DIRECTORY = 10;

interface Ack {
  baseOffset: number;
  lastOffset: number;
  sha256: string;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Runs the child on `directory` and SIGKILLs it as soon as `targetAcks` acknowledgements were
 * printed (0: as soon as it is ready). Returns what it printed in whole lines.
 */
async function runChildUntilKilled(directory: string, targetAcks: number, what: string, mode: ChildWriteMode): Promise<{ ready: number; acks: Ack[] }> {
  const child = spawn(process.execPath, [CHILD_SCRIPT, directory, String(CHILD_SEGMENT_BYTES), mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STRATA_LOG_LEVEL: 'silent' },
  });
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  let ready = false;
  let ackCount = 0;
  let killed = false;
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      if (line.startsWith('ready ')) ready = true;
      else if (line.startsWith('ack ')) ackCount++;
    }
    if (!killed && ready && ackCount >= targetAcks) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  const { code, signal } = await closed;
  expect(signal, at(`${what}: the child must die of our SIGKILL, not exit (code ${code}); stderr: ${stderr}`)).toBe('SIGKILL');

  let readyOffset = -1;
  const acks: Ack[] = [];
  for (const line of lines) {
    const fields = line.split(' ');
    if (fields[0] === 'ready') readyOffset = Number(fields[1]);
    else if (fields[0] === 'ack') acks.push({ baseOffset: Number(fields[1]), lastOffset: Number(fields[2]), sha256: fields[3]! });
    else throw new Error(at(`${what}: unexpected child output line ${JSON.stringify(line)}`));
  }
  expect(readyOffset, at(`${what}: the child printed ready`)).toBeGreaterThanOrEqual(0);
  expect(acks.length, at(`${what}: acknowledgements seen before the kill`)).toBeGreaterThanOrEqual(targetAcks);
  return { ready: readyOffset, acks };
}

/**
 * Opens the log in `directory` and checks it: offsets contiguous from 0, every record's value
 * the child's deterministic one, every acknowledged batch present at its offset with the same
 * sha256, and a point read of each of `roundAcks`. Closes it cleanly; returns the log end.
 */
async function verifyLog(directory: string, acked: ReadonlyMap<number, Ack>, roundAcks: readonly Ack[], what: string): Promise<{ logEnd: number; segments: number }> {
  const log = await PartitionLog.open({ directory, config: { flush: 'always', segmentBytes: CHILD_SEGMENT_BYTES, indexIntervalBytes: 1024 } });
  try {
    expect(log.fenced, at(`${what}: not fenced (${log.fenced?.message})`)).toBeNull();
    expect(log.logStartOffset, at(`${what}: log start`)).toBe(0);
    const logEnd = log.logEndOffset;
    expect(log.highWatermark, at(`${what}: high watermark`)).toBe(logEnd);

    const problems: string[] = [];
    const bases = new Set<number>();
    let offset = 0;
    while (offset < logEnd && problems.length === 0) {
      const { batches } = await log.read(offset, 1024 * 1024);
      if (batches.length === 0) {
        problems.push(`read(${offset}) below the log end ${logEnd} returned nothing`);
        break;
      }
      forEachBatch(batches, (position, size) => {
        if (problems.length > 0) return;
        const batch = batches.subarray(position, position + size);
        const baseOffset = readBaseOffset(batch);
        if (baseOffset !== offset) problems.push(`batch at offset ${baseOffset} follows offset ${offset - 1}: offsets not contiguous`);
        for (const record of decodeRecords(batch)) {
          const value = record.value?.toString('utf8');
          if (value !== recordValue(record.offset)) {
            problems.push(`record ${record.offset} has value ${JSON.stringify(value?.slice(0, 40))}, expected ${JSON.stringify(recordValue(record.offset).slice(0, 40))}`);
            break;
          }
        }
        const ack = acked.get(baseOffset);
        if (ack !== undefined && (ack.lastOffset !== readLastOffset(batch) || ack.sha256 !== sha256(batch))) {
          problems.push(`acknowledged batch ${ack.baseOffset}..${ack.lastOffset} differs on disk (offsets ${baseOffset}..${readLastOffset(batch)}, sha256 ${sha256(batch)} vs ${ack.sha256})`);
        }
        bases.add(baseOffset);
        offset = readLastOffset(batch) + 1;
      });
    }
    expect(problems, at(`${what}: log contents`)).toEqual([]);
    expect(offset, at(`${what}: the walk ends at the log end`)).toBe(logEnd);

    const missing = [...acked.values()].filter((ack) => !bases.has(ack.baseOffset) || ack.lastOffset >= logEnd);
    expect(
      missing.map((ack) => `${ack.baseOffset}..${ack.lastOffset}`),
      at(`${what}: acknowledged batches missing (log end ${logEnd})`),
    ).toEqual([]);

    for (const ack of roundAcks) {
      const { batches } = await log.read(ack.baseOffset, 1);
      const batch = batches.subarray(0, batches.length === 0 ? 0 : readBatchSize(batches, 0));
      expect(batch.length > 0 && readBaseOffset(batch) === ack.baseOffset && sha256(batch) === ack.sha256, at(`${what}: read(${ack.baseOffset}) returns the acknowledged batch`)).toBe(true);
    }
    return { logEnd, segments: log.segmentCount };
  } finally {
    await log.close();
  }
}

describe(`kill -9 while appending (seed ${SEED})`, () => {
  let root: string;

  beforeAll(() => {
    if (!existsSync(CHILD_SCRIPT)) {
      try {
        execFileSync('npx', ['tsc', '-p', '.'], { cwd: PROJECT_ROOT, stdio: 'pipe' });
      } catch (error) {
        // Type errors elsewhere still emit; only a missing child is fatal.
        if (!existsSync(CHILD_SCRIPT)) throw error;
      }
    }
    root = mkdtempSync(join(tmpdir(), 'strata-kill9-'));
  }, 120_000);

  afterAll(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  // 'direct': every write of the child is a direct (O_DIRECT) write with zero padding past the
  // end of the log, which recovery must cut without losing an acknowledged batch; in
  // 'direct-inline' the small ones are made on the event loop.
  const modes: Record<string, ChildWriteMode> = { a: 'buffered', b: 'buffered', direct: 'direct', 'direct-inline': 'direct-inline' };
  for (const [name, mode] of Object.entries(modes)) {
    // Skipped only where the temp directory's file system has no O_DIRECT.
    it.skipIf(mode !== 'buffered' && !DIRECT_WRITES_WORK)(`keeps every acknowledged batch over ${ROUNDS_PER_DIRECTORY} SIGKILL rounds (directory ${name})`, async () => {
      const random = streamFor(SEED, name);
      const directory = join(root, name);
      const acked = new Map<number, Ack>();
      let logEnd = 0;
      let segments = 0;
      for (let round = 0; round < ROUNDS_PER_DIRECTORY; round++) {
        // Mostly a random number of acknowledgements; every fourth round dies right after open.
        const target = round % 4 === 3 ? 0 : 5 + Math.floor(random() * 296);
        const inPlace = random() < 0.5;
        const what = `directory ${name} round ${round} (kill after ${target} acks, verified ${inPlace ? 'in place' : 'on a copy'})`;
        const { ready, acks } = await runChildUntilKilled(directory, target, what, mode);
        expect(ready, at(`${what}: the child continues at the recovered log end`)).toBe(logEnd);
        let expectedBase = logEnd;
        for (const ack of acks) {
          expect(ack.baseOffset, at(`${what}: acknowledgements are in offset order from the log end`)).toBe(expectedBase);
          expectedBase = ack.lastOffset + 1;
          acked.set(ack.baseOffset, ack);
        }
        if (inPlace) {
          // Reopened and closed cleanly: the next child takes the clean-shutdown path.
          ({ logEnd, segments } = await verifyLog(directory, acked, acks, what));
        } else {
          // The original stays as the kill left it: the next child recovers it itself.
          const copy = join(root, `${name}-round-${round}`);
          cpSync(directory, copy, { recursive: true });
          ({ logEnd, segments } = await verifyLog(copy, acked, acks, what));
          rmSync(copy, { recursive: true, force: true });
        }
        expect(logEnd, at(`${what}: log end covers every acknowledgement`)).toBeGreaterThanOrEqual(expectedBase);
      }
      expect(segments, at(`directory ${name}: the log rolled during the test`)).toBeGreaterThan(1);
    });
  }
});
