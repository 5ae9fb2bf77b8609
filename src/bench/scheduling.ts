/**
 * The CPU scheduling policy a benchmark ran under. Latency figures depend on it: on a small
 * machine the broker and the client take turns on the same cores, and a real-time policy
 * (`chrt -f 1`) changes who waits for whom. The report names it, so that a figure measured
 * under `SCHED_FIFO` is not read as one of the default scheduler. A local broker inherits the
 * client's policy.
 */
import { readFileSync } from 'node:fs';

/** Linux's policy numbers (`sched_setscheduler(2)`), by the names `chrt` prints. */
const POLICY_NAMES: Record<number, string> = {
  0: 'SCHED_OTHER',
  1: 'SCHED_FIFO',
  2: 'SCHED_RR',
  3: 'SCHED_BATCH',
  5: 'SCHED_IDLE',
  6: 'SCHED_DEADLINE',
};

export interface Scheduling {
  /** `SCHED_OTHER`, `SCHED_FIFO`, ... */
  policy: string;
  /** Nice value (what counts under SCHED_OTHER and SCHED_BATCH). */
  nice: number;
  /** Real-time priority, 1–99 under SCHED_FIFO and SCHED_RR, else 0. */
  realtimePriority: number;
}

/**
 * Reads a `/proc/<pid>/stat` line: the process name, in parentheses, may itself hold spaces and
 * parentheses, so the fields are counted from the last `)`. Null when the line is not one.
 */
export function parseProcStatScheduling(stat: string): Scheduling | null {
  const nameEnd = stat.lastIndexOf(')');
  if (nameEnd < 0) return null;
  // After the name: field 3 (state) is index 0, so field n is index n - 3.
  const fields = stat.slice(nameEnd + 1).trim().split(/\s+/);
  const nice = Number(fields[19 - 3]);
  const realtimePriority = Number(fields[40 - 3]);
  const policy = Number(fields[41 - 3]);
  if (!Number.isInteger(nice) || !Number.isInteger(realtimePriority) || !Number.isInteger(policy)) return null;
  return { policy: POLICY_NAMES[policy] ?? `policy ${policy}`, nice, realtimePriority };
}

/** This process's scheduling; null where `/proc` does not tell (other platforms). */
export function processScheduling(): Scheduling | null {
  try {
    return parseProcStatScheduling(readFileSync('/proc/self/stat', 'utf8'));
  } catch {
    return null;
  }
}

/** `SCHED_OTHER, nice 0` or `SCHED_FIFO, priority 1`. */
export function formatScheduling(scheduling: Scheduling | null): string {
  if (scheduling === null) return 'unknown';
  const realtime = scheduling.policy === 'SCHED_FIFO' || scheduling.policy === 'SCHED_RR';
  return realtime ? `${scheduling.policy}, priority ${scheduling.realtimePriority}` : `${scheduling.policy}, nice ${scheduling.nice}`;
}
