/**
 * A warning that may come in floods, logged at most once per interval with how many were left
 * out since its last line (and, when some were, once more at the end of the interval): requests refused before any handler runs (no token or no permission;
 * a message over the receive limit), which a client retrying in a loop, or probing for tokens,
 * must not let fill the broker's log; a client consumer's failed fetches, which a broker away
 * brings for every partition at each retry. Whoever uses it still counts every occurrence
 * elsewhere (the broker's metrics, the consumer's `fetchError` events).
 */
import { type Clock, systemClock } from './clock.js';
import type { Logger } from './logger.js';

export interface ThrottledWarningOptions {
  /** At most a line per this many ms. */
  intervalMs: number;
  /** The field of a line that counts the occurrences left out since the line before. */
  countField: string;
  /** The level of its lines; `warn` by default. */
  level?: 'error' | 'warn' | 'info';
  clock?: Pick<Clock, 'monotonicMs'>;
}

export class ThrottledWarning {
  private lastLoggedAt = Number.NEGATIVE_INFINITY;
  private unlogged = 0;
  /** The latest occurrence left out, for the line at the end of the interval. */
  private lastUnlogged: Record<string, unknown> | null = null;
  private trailingTimer: NodeJS.Timeout | null = null;
  private readonly clock: Pick<Clock, 'monotonicMs'>;

  /** `message`: the line's message, the same for every occurrence. */
  constructor(
    private readonly logger: Logger,
    private readonly message: string,
    private readonly options: ThrottledWarningOptions,
  ) {
    this.clock = options.clock ?? systemClock;
  }

  /**
   * One occurrence: logged with `fields` if the interval since the last line has passed. One
   * left out is logged at the end of the interval, the latest with the count of the others, if
   * no line came meanwhile: no occurrence waits for a next one to be told.
   */
  note(fields: Record<string, unknown>): void {
    const now = this.clock.monotonicMs();
    if (now - this.lastLoggedAt < this.options.intervalMs) {
      this.unlogged++;
      this.lastUnlogged = fields;
      this.trailingTimer ??= setTimeout(() => this.logTrailing(), Math.max(0, this.lastLoggedAt + this.options.intervalMs - now));
      this.trailingTimer.unref();
      return;
    }
    this.log(fields, this.unlogged, now);
  }

  /** Its owner is closing: an occurrence left out is logged now, not by a timer after the close. */
  dispose(): void {
    if (this.trailingTimer === null) return;
    clearTimeout(this.trailingTimer);
    this.logTrailing();
  }

  private logTrailing(): void {
    this.trailingTimer = null;
    if (this.lastUnlogged === null) return;
    this.log(this.lastUnlogged, this.unlogged - 1, this.clock.monotonicMs());
  }

  private log(fields: Record<string, unknown>, leftOut: number, now: number): void {
    if (this.trailingTimer !== null) clearTimeout(this.trailingTimer);
    this.trailingTimer = null;
    this.logger[this.options.level ?? 'warn']({ ...fields, [this.options.countField]: leftOut }, this.message);
    this.lastLoggedAt = now;
    this.unlogged = 0;
    this.lastUnlogged = null;
  }
}

/** How the broker logs requests refused before any handler runs: a line per 10 s of each kind. */
export const REFUSAL_LINES: ThrottledWarningOptions = Object.freeze({ intervalMs: 10_000, countField: 'refusedSinceLastLine' });
