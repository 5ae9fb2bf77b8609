/**
 * When the event loop may do a small log write or fdatasync itself instead of handing it to
 * libuv's thread pool.
 *
 * Why: a pooled call costs two thread hand-offs (wake a pool thread, then wake the loop with the
 * result). On a busy machine a woken thread can wait a scheduler slice for a core, so those
 * hand-offs, not the disk, made most of the append latency's tail: on the project's 2-core test
 * machine, with 10,000 records/s of 100 B and fdatasync before every acknowledgement, a pooled
 * fdatasync took p50 0.21 / p99 0.46–1.1 ms as seen from the loop, the same call made on the loop
 * 0.16–0.19 / 0.34–0.41 ms, and a 1.2 KB pooled write 0.06 ms for a copy of a few microseconds.
 * Redis (`appendfsync always`) syncs on its event loop for the same reason; Kafka writes on its
 * request threads.
 *
 * The price: while the call runs, the broker does nothing else. So only small calls run inline
 * (latency workloads; throughput workloads write megabytes per group and stay on the pool, where
 * the loop keeps receiving while the disk works), and a budget bounds the loop's time in them:
 * - a token bucket: credit accrues at `shareOfLoop` ms per ms that passes, up to `burstMs`, and
 *   an inline call spends what it took; without credit, calls go to the pool. So inline calls
 *   take at most that share of the loop's time on average;
 * - a slow call (over `slowMs`: a disk in trouble) sends every call to the pool for
 *   `coolDownMs`, so a failing disk cannot freeze the loop one call after another.
 *
 * One budget is shared by every partition of a broker: it is the loop's time that it bounds.
 */
import type { Logger } from '../common/logger.js';

export interface InlineIoSettings {
  /** Largest call (bytes written, or bytes an fdatasync covers) done on the loop. */
  bytesMax: number;
  /** Average share of the loop's time inline calls may take (0–1). */
  shareOfLoop: number;
  /** Most credit (ms of inline calls) the budget builds up while the loop is idle. */
  burstMs: number;
  /** A call that took longer (ms) sends all calls to the pool for `coolDownMs`. */
  slowMs: number;
  coolDownMs: number;
}

export const DEFAULT_INLINE_IO: InlineIoSettings = {
  bytesMax: 32 * 1024,
  shareOfLoop: 0.5,
  burstMs: 5,
  slowMs: 20,
  coolDownMs: 10_000,
};

export type InlineIoOperation = 'write' | 'fdatasync';

export class InlineIoBudget {
  private readonly settings: InlineIoSettings;
  private readonly now: () => number;
  private readonly logger: Logger | null;
  /** Loop time (ms) inline calls may still take; negative after an expensive call. */
  private creditMs: number;
  private creditAt: number;
  private coolDownUntil = Number.NEGATIVE_INFINITY;

  constructor(options: { settings?: Partial<InlineIoSettings>; now?: () => number; logger?: Logger | null } = {}) {
    this.settings = { ...DEFAULT_INLINE_IO, ...options.settings };
    this.now = options.now ?? (() => performance.now());
    this.logger = options.logger ?? null;
    this.creditMs = this.settings.burstMs;
    this.creditAt = this.now();
  }

  /** Whether a call of `bytes` may run on the loop now. */
  allows(bytes: number): boolean {
    return bytes <= this.settings.bytesMax && this.hasCredit();
  }

  /** Runs `call` (one that `allows` let through) on the loop and charges the time it took. */
  runInline<T>(operation: InlineIoOperation, call: () => T): T {
    const started = this.now();
    try {
      return call();
    } finally {
      this.spent(operation, this.now() - started);
    }
  }

  /** Charges an inline call that took `ms` of loop time. */
  private spent(operation: InlineIoOperation, ms: number): void {
    this.creditMs -= ms;
    if (ms > this.settings.slowMs) {
      this.coolDownUntil = this.now() + this.settings.coolDownMs;
      this.logger?.warn(
        { operation, ms: Math.round(ms * 10) / 10, coolDownMs: this.settings.coolDownMs },
        `${operation === 'write' ? 'a write' : 'an fdatasync'} on the event loop took ${ms.toFixed(1)} ms (the disk is slow); writes and fdatasyncs go to the thread pool for the next ${this.settings.coolDownMs / 1000} s`,
      );
    }
  }

  private hasCredit(): boolean {
    const now = this.now();
    if (now < this.coolDownUntil) return false;
    this.creditMs = Math.min(this.settings.burstMs, this.creditMs + (now - this.creditAt) * this.settings.shareOfLoop);
    this.creditAt = now;
    return this.creditMs > 0;
  }
}
