/**
 * Time as an injectable dependency: storage asks a `Clock` for "now" so retention, segment age and
 * timestamps can be driven deterministically in tests.
 */
/**
 * The longest delay or period Node.js timers take (2^31 - 1 ms, about 24.8 days); a longer one
 * is taken as 1 ms.
 */
export const TIMER_DELAY_MAX_MS = 2_147_483_647;

export interface Clock {
  /** Milliseconds since the Unix epoch: for timestamps, and ages compared with them. */
  nowMs(): number;
  /**
   * Milliseconds since an arbitrary start, never going back and not moved by changes of the
   * system time (an NTP step, a VM resumed): for timeouts measured within this process, such
   * as consumer group sessions.
   */
  monotonicMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now(), monotonicMs: () => performance.now() };

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  private currentMs: number;
  private elapsedMs = 0;

  constructor(startMs = 1_700_000_000_000) {
    this.currentMs = startMs;
  }

  nowMs(): number {
    return this.currentMs;
  }

  monotonicMs(): number {
    return this.elapsedMs;
  }

  /** Time passes: both readings move. */
  advance(ms: number): void {
    this.currentMs += ms;
    this.elapsedMs += ms;
  }

  /** The system time is set, as by NTP or an operator: the monotonic reading does not move. */
  set(ms: number): void {
    this.currentMs = ms;
  }
}
