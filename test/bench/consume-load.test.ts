// Goal: the consume workload reads exactly what it was asked for or fails: the consume phase
// fills the topic from where the read starts (a group's committed offset on a second run, not the
// log start), and a read that would find fewer records than asked fails with a clear error
// instead of reporting a shorter read; a warm-up goes to a topic of its own before the measured
// phase, which alone is reported. Method: a real in-process broker over gRPC, small numbers.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readableRecords, runConsumeLoad } from '../../src/bench/consume-load.js';
import { type BenchSettings, type PhaseContext, consumePhase } from '../../src/bench/phases.js';
import { Progress } from '../../src/bench/progress.js';
import { rootLogger } from '../../src/common/logger.js';
import { benchPhaseContext } from '../helpers/bench-phase-context.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

let broker: TestBroker;

beforeAll(async () => {
  broker = await startTestBroker();
});
afterAll(async () => {
  await broker?.dispose();
});

const silent = new Progress({ write: () => true });

function context(settings: Partial<BenchSettings>): PhaseContext {
  return benchPhaseContext(broker.address, 'strata', { topic: 'consume', partitions: 2, flush: 'interval', ...settings });
}

it('fills from the group\'s committed offsets: a second run with the same group reads as many records again', async () => {
  const settings = { topic: 'consume-group-twice', group: 'bench-twice', records: 1000 };
  for (let run = 1; run <= 2; run++) {
    const { rows } = await consumePhase(context(settings));
    expect(rows.map((row) => [row.workload, row.records])).toEqual([
      ['fill', 1000],
      ['consume', 1000],
    ]);
    expect(rows[1]!.recordsPerSecond).toBeGreaterThan(0);
  }
});

it('fails when fewer records than asked for lie after the start of the read', async () => {
  await consumePhase(context({ topic: 'consume-short', records: 500 }));
  await expect(
    runConsumeLoad({ connection: { server: broker.address }, topic: 'consume-short', records: 800, group: null, fetchBytes: null, logger: rootLogger, progress: silent, label: 'consume' }),
  ).rejects.toThrow('only 500 records of "consume-short" lie after the log start, fewer than the 800 to read');
});

it('warms up with a fill and read of <topic>-warmup first, and reports the measured phase alone', async () => {
  const { rows } = await consumePhase(context({ topic: 'consume-warmed', records: 500, group: 'bench-warmed' }), 300);
  expect(rows.map((row) => [row.workload, row.records])).toEqual([
    ['fill', 500],
    ['consume', 500],
  ]);
  // Filled and read without the group, whose commits are the measured topic's.
  expect(await readableRecords({ server: broker.address }, 'consume-warmed-warmup', null)).toBe(300);
  expect(await readableRecords({ server: broker.address }, 'consume-warmed-warmup', 'bench-warmed')).toBe(300);
});
