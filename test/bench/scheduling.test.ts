// Goal: the benchmark report names the CPU scheduling it ran under, read correctly from
// /proc/<pid>/stat; method: stat lines of known processes, including names with spaces and
// parentheses, and this process's own line.
import { getPriority } from 'node:os';
import { describe, expect, it } from 'vitest';
import { formatScheduling, parseProcStatScheduling, processScheduling } from '../../src/bench/scheduling.js';

/** A /proc/<pid>/stat line with `name`, nice (field 19), rt_priority (40) and policy (41). */
function statLine(name: string, nice: number, realtimePriority: number, policy: number): string {
  const fields = Array.from({ length: 52 - 2 }, (_, index) => String(index + 3));
  fields[19 - 3] = String(nice);
  fields[40 - 3] = String(realtimePriority);
  fields[41 - 3] = String(policy);
  fields[0] = 'S';
  return `4242 (${name}) ${fields.join(' ')}\n`;
}

describe('CPU scheduling of a benchmark', () => {
  it('reads policy, nice and real-time priority, counting fields from the end of the name', () => {
    expect(parseProcStatScheduling(statLine('node', 0, 0, 0))).toEqual({ policy: 'SCHED_OTHER', nice: 0, realtimePriority: 0 });
    expect(parseProcStatScheduling(statLine('node', 0, 1, 1))).toEqual({ policy: 'SCHED_FIFO', nice: 0, realtimePriority: 1 });
    expect(parseProcStatScheduling(statLine('a (b) c', -5, 0, 3))).toEqual({ policy: 'SCHED_BATCH', nice: -5, realtimePriority: 0 });
    expect(parseProcStatScheduling(statLine('x', 0, 0, 9))?.policy).toBe('policy 9');
  });

  it('refuses a line that is not a stat line', () => {
    expect(parseProcStatScheduling('')).toBeNull();
    expect(parseProcStatScheduling('42 (node) S 1 2')).toBeNull();
  });

  it('formats real-time policies with their priority and the others with their nice value', () => {
    expect(formatScheduling({ policy: 'SCHED_FIFO', nice: 0, realtimePriority: 1 })).toBe('SCHED_FIFO, priority 1');
    expect(formatScheduling({ policy: 'SCHED_RR', nice: 0, realtimePriority: 10 })).toBe('SCHED_RR, priority 10');
    expect(formatScheduling({ policy: 'SCHED_OTHER', nice: 5, realtimePriority: 0 })).toBe('SCHED_OTHER, nice 5');
    expect(formatScheduling(null)).toBe('unknown');
  });

  it.runIf(process.platform === 'linux')("reads this process's own line", () => {
    const own = processScheduling();
    expect(own).not.toBeNull();
    expect(own!.policy).toMatch(/^SCHED_/);
    // The nice value agrees with the one the kernel reports through getpriority(2).
    expect(own!.nice).toBe(getPriority());
  });
});
