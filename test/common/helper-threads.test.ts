// Goal: a broker started from bin/strata.js, and the benchmark's no-op server, run V8's helper
// threads 10 nice steps below the event-loop thread, while the loop thread and libuv's thread
// pool (which the loop thread starts later, and which writes and fdatasyncs large groups) keep
// the priority they were started with; method: start the real processes and read each thread's nice value from
// /proc/<pid>/task/<tid>/stat.
import { createRequire } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { describe, expect, it } from 'vitest';
import { startLocalBroker } from '../../src/bench/local-broker.js';
import { startNoopServerProcess } from '../../src/bench/noop-server.js';
import { parseProcStatScheduling } from '../../src/bench/scheduling.js';

// The compiled module, as bin/strata.js loads it (vitest does not compile CommonJS TypeScript).
const { helperThreadNice } = createRequire(import.meta.url)('../../dist/src/common/helper-threads.cjs') as typeof import('../../src/common/helper-threads.cjs');

/** Nice value of every thread of `pid` but the main one, and of the main one. */
function threadNices(pid: number): { main: number; others: number[] } {
  const nice = (tid: string) => parseProcStatScheduling(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'))!.nice;
  const others = readdirSync(`/proc/${pid}/task`).filter((tid) => Number(tid) !== pid);
  return { main: nice(String(pid)), others: others.map(nice) };
}

/**
 * What both processes should show: the main thread at the nice it was started with; V8's helpers
 * (a delayed-task thread and 4 workers at Node's defaults) 10 steps lower; libuv's pool (4
 * threads, which start-up has used) at the starting nice.
 */
function expectHelpersLowered(pid: number, startedWith: number): void {
  const { main, others } = threadNices(pid);
  const lowered = helperThreadNice(startedWith);
  expect(main).toBe(startedWith);
  expect(others.filter((nice) => nice === lowered).length).toBeGreaterThanOrEqual(5);
  expect(others.filter((nice) => nice === startedWith).length).toBeGreaterThanOrEqual(4);
  expect(others.every((nice) => nice === startedWith || nice === lowered)).toBe(true);
}

const startedWith = getPriority();
// Where threads cannot be told apart by nice (no /proc, or this process already at 19), skip.
const canTell = process.platform === 'linux' && helperThreadNice(startedWith) > startedWith;

describe.runIf(canTell)('helper threads below the event loop', () => {
  it('bin/strata.js lowers the broker’s V8 helper threads and leaves its thread pool alone', async () => {
    const broker = await startLocalBroker();
    try {
      expectHelpersLowered(broker.server.pid, startedWith);
    } finally {
      await broker.stop();
    }
  });

  it('the no-op server of `strata bench baseline` gets the same, through its preload', async () => {
    const server = await startNoopServerProcess();
    try {
      // Its pool starts when its ES-module entry loads (after the preload).
      expectHelpersLowered(server.pid, startedWith);
    } finally {
      await server.stop();
    }
  });
});
