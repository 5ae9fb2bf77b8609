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
 * The price: while the call runs, the broker does nothing else. So a call runs inline only when
 * the loop would otherwise just wait for it, briefly:
 * - it is small (latency workloads; throughput workloads write megabytes per group and stay on
 *   the pool, where the loop keeps receiving while the disk works);
 * - no other partition is writing or syncing. With several busy, the pool syncs them in
 *   parallel while the loop serves requests; on the loop they would run one after another
 *   (4 producers × 16 partitions of 16 KiB batches: 0.73–0.82 M records/s instead of 1.2 M);
 * - the broker's syncs are spaced out: on average, the time between two syncs less the time
 *   writes take is at least one sync's duration. A broker that syncs back to back (a throughput
 *   workload, on one partition or many) has requests waiting behind every sync and write; on
 *   the pool the loop serves them meanwhile (1 producer of 16 KiB batches: 573,000 records/s
 *   with its syncs on the loop, 728,000 on the pool). The writes' time is left out because a
 *   direct write holds the device time that a buffered one leaves to the fdatasync: counted as
 *   spacing, it made syncs look cheap and far apart, and that workload ran 3,300 of its writes
 *   on the loop instead of 250–400;
 * - calls of its kind have been quick: the moving average of their recent durations (inline or
 *   pooled) is at most `expectedMsMax`. A disk that slows down (under a load of parallel syncs,
 *   or in trouble) sends them to the pool until they are quick again;
 * - the loop has credit: it accrues at `shareOfLoop` ms per ms that passes, up to `burstMs`, and
 *   an inline call spends what it took, so inline calls take at most that share of the loop's
 *   time on average.
 *
 * One budget is shared by every partition of a broker: it is the loop's time that it bounds.
 */
export interface InlineIoSettings {
  /** Largest call (bytes written, or bytes an fdatasync covers) done on the loop. */
  bytesMax: number;
  /** Calls of a kind run inline only while their moving average duration is at most this (ms). */
  expectedMsMax: number;
  /** Average share of the loop's time inline calls may take (0–1). */
  shareOfLoop: number;
  /** Most credit (ms of inline calls) the budget builds up while the loop is idle. */
  burstMs: number;
}

export const DEFAULT_INLINE_IO: InlineIoSettings = {
  bytesMax: 32 * 1024,
  expectedMsMax: 1,
  shareOfLoop: 0.5,
  burstMs: 5,
};

export type InlineIoOperation = 'write' | 'fdatasync';

/** Weight of the newest duration in the moving average: about the last 10 calls count. */
const AVERAGE_WEIGHT = 0.1;
/** Longest gap between two syncs that counts in full: after an idle spell, a burst is seen soon. */
const SYNC_GAP_COUNTED_MAX_MS = 10;

export class InlineIoBudget {
  private readonly settings: InlineIoSettings;
  private readonly now: () => number;
  /** Loop time (ms) inline calls may still take; negative after an expensive call. */
  private creditMs: number;
  private creditAt: number;
  /** Moving average of recent durations (ms), per kind of call. */
  private readonly averageMs: Record<InlineIoOperation, number> = { write: 0, fdatasync: 0 };
  /** Logs whose writer runs or whose fdatasync is under way (`noteBusy`). */
  private busyLogs = 0;
  /**
   * How far apart the fdatasyncs of all logs are: a moving average of the gaps between them (0
   * for one that starts while another runs), from `syncStarting` and `syncEnded`.
   */
  private averageSyncGapMs = SYNC_GAP_COUNTED_MAX_MS;
  private lastSyncEndedAt: number;
  private syncsRunning = 0;

  constructor(options: { settings?: Partial<InlineIoSettings>; now?: () => number } = {}) {
    this.settings = { ...DEFAULT_INLINE_IO, ...options.settings };
    this.now = options.now ?? (() => performance.now());
    this.creditMs = this.settings.burstMs;
    this.creditAt = this.now();
    this.lastSyncEndedAt = this.now();
  }

  /** Whether a call of `bytes`, by a log that is busy itself, may run on the loop now. */
  allows(operation: InlineIoOperation, bytes: number): boolean {
    return (
      bytes <= this.settings.bytesMax &&
      this.busyLogs <= 1 &&
      this.averageMs[operation] <= this.settings.expectedMsMax &&
      this.averageSyncGapMs >= this.averageMs.write + this.averageMs.fdatasync &&
      this.hasCredit()
    );
  }

  /** A log's fdatasync starts (before `allows` is asked about it). */
  syncStarting(): void {
    const gapMs = this.syncsRunning > 0 ? 0 : Math.min(SYNC_GAP_COUNTED_MAX_MS, this.now() - this.lastSyncEndedAt);
    this.averageSyncGapMs += AVERAGE_WEIGHT * (gapMs - this.averageSyncGapMs);
    this.syncsRunning++;
  }

  /** A log's fdatasync ended. */
  syncEnded(): void {
    this.syncsRunning--;
    this.lastSyncEndedAt = this.now();
  }

  /** A log started (true) or finished (false) writing or syncing. */
  noteBusy(busy: boolean): void {
    this.busyLogs += busy ? 1 : -1;
  }

  /** Runs `call` (one that `allows` let through) on the loop; its time is charged and averaged. */
  runInline<T>(operation: InlineIoOperation, call: () => T): T {
    const started = this.now();
    try {
      return call();
    } finally {
      const ms = this.now() - started;
      this.creditMs -= ms;
      this.observe(operation, ms);
    }
  }

  /** Runs `call` on the pool; its time (hand-offs included) is averaged. */
  async runPooled<T>(operation: InlineIoOperation, call: () => Promise<T>): Promise<T> {
    const started = this.now();
    try {
      return await call();
    } finally {
      this.observe(operation, this.now() - started);
    }
  }

  private observe(operation: InlineIoOperation, ms: number): void {
    this.averageMs[operation] += AVERAGE_WEIGHT * (ms - this.averageMs[operation]);
  }

  private hasCredit(): boolean {
    const now = this.now();
    this.creditMs = Math.min(this.settings.burstMs, this.creditMs + (now - this.creditAt) * this.settings.shareOfLoop);
    this.creditAt = now;
    return this.creditMs > 0;
  }
}
