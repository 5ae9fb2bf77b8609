/**
 * A warning that may come in floods, logged at most once per interval with how many were left
 * out since its last line: requests refused before any handler runs (no token or no permission;
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
  clock?: Pick<Clock, 'monotonicMs'>;
}

export class ThrottledWarning {
  private lastLoggedAt = Number.NEGATIVE_INFINITY;
  private unlogged = 0;
  private readonly clock: Pick<Clock, 'monotonicMs'>;

  /** `message`: the line's message, the same for every occurrence. */
  constructor(
    private readonly logger: Logger,
    private readonly message: string,
    private readonly options: ThrottledWarningOptions,
  ) {
    this.clock = options.clock ?? systemClock;
  }

  /** One occurrence: logged with `fields` if the interval since the last line has passed. */
  note(fields: Record<string, unknown>): void {
    const now = this.clock.monotonicMs();
    if (now - this.lastLoggedAt < this.options.intervalMs) {
      this.unlogged++;
      return;
    }
    this.logger.warn({ ...fields, [this.options.countField]: this.unlogged }, this.message);
    this.lastLoggedAt = now;
    this.unlogged = 0;
  }
}

/** How the broker logs requests refused before any handler runs: a line per 10 s of each kind. */
export const REFUSAL_LINES: ThrottledWarningOptions = Object.freeze({ intervalMs: 10_000, countField: 'refusedSinceLastLine' });
