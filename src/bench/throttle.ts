/**
 * Holds a sender to a fixed rate, as Kafka's ThroughputThrottler does: the sender asks, before
 * each chunk, how long to wait so that `sent` records are not ahead of `rate` × elapsed time.
 * A sender that falls behind is not made to catch up in a burst beyond what the schedule says.
 */
export class Throttle {
  private readonly startedAt = performance.now();

  /** `rate`: records per second (> 0). */
  constructor(readonly rate: number) {}

  /** Records the schedule allows by now: those whose `dueAt` has come (record 0 is due at once). */
  allowed(now = performance.now()): number {
    return Math.floor(((now - this.startedAt) * this.rate) / 1000) + 1;
  }

  /** Milliseconds to wait before record number `sent` (0-based) is due; 0 when it is due now. */
  delayMs(sent: number, now = performance.now()): number {
    return Math.max(0, this.dueAt(sent) - now);
  }

  /** When record number `index` (0-based) is due, on the performance.now() clock. */
  dueAt(index: number): number {
    return this.startedAt + (index * 1000) / this.rate;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
