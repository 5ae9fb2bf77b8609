/**
 * Lowers the CPU priority of the process's helper threads, so that the event-loop thread comes
 * first when both want a core.
 *
 * Why: Strata serves every request on the event-loop thread; V8 runs its optimizing compiler and
 * parts of garbage collection (freeing dead Buffers' memory among them) on helper threads of its
 * own. On a machine with few cores they take turns with the loop. A scheduler trace caught a
 * helper keeping the core where the loop thread last ran for 0.7 ms while the loop thread, woken
 * by a request, waited and the other core sat idle. Measured on the project's 2-core test
 * machine, e2e at 10,000 1 KiB records/s with broker and client both lowered: the share of
 * records over 1 ms fell in each of 17 interleaved pairs, in both orders (for instance 0.51–0.60 %
 * against 0.92–0.96 %, or 0.48–0.58 % against 0.87–1.23 %). Short traces did not show that
 * one kind of wait explained all of it; the pairs are the evidence.
 *
 * Ten steps below the loop thread (nice 10 beside 0), not 19: at 19 the helpers starved while
 * 4 producers kept both cores busy, and the broker's RSS grew from 174 to 194–203 MiB (the dead
 * Buffers' memory was freed late); at 10 it stayed at 174–175 MiB, and the e2e gain held.
 *
 * Only the threads that exist when this runs are lowered: it must run first in the entry
 * module, before Node.js starts libuv's thread pool, which then takes the loop thread's
 * priority (the pool writes and fdatasyncs large groups: lowered with the helpers, 100-byte
 * produce lost 5–10 % of its throughput). An ES-module entry is too late (the ESM loader reads
 * files on the pool), which is why `bin/strata.js` is a CommonJS module, and this file too.
 *
 * Raising a thread's nice value needs no privilege; lowering it again does, so this is one way.
 * Linux only (per-thread nice through `setpriority(2)` on a thread id); elsewhere it does nothing.
 */
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How far below the loop thread helper threads run, in nice steps. */
const HELPER_THREAD_NICE_STEPS = 10;

/** The nice value helpers get beside a loop thread at `loopNice` (at most 19, the lowest). */
export function helperThreadNice(loopNice: number): number {
  return Math.min(19, loopNice + HELPER_THREAD_NICE_STEPS);
}

/** Sets every thread of this process but the main one to `helperThreadNice` of the main one's. */
export function lowerHelperThreadPriority(): void {
  if (process.platform !== 'linux') return;
  let threads: string[];
  try {
    threads = readdirSync('/proc/self/task');
  } catch {
    return; // no /proc: leave the threads as they are
  }
  const nice = helperThreadNice(getPriority());
  for (const thread of threads) {
    const threadId = Number(thread);
    if (threadId === process.pid) continue;
    try {
      setPriority(threadId, nice);
    } catch {
      // The thread ended in between, or the platform refused: a missed helper costs latency only.
    }
  }
}
