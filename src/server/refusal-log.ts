/**
 * The log of requests refused before any handler runs (no token or no permission; a message
 * over the receive limit). A client retrying such a request in a loop, or probing for tokens,
 * must not fill the broker's log: each kind is logged at `warn` at most once per
 * `LOG_INTERVAL_MS`, with how many were refused since its last line. Every refusal is counted
 * in the metrics all the same (`BrokerMetrics.countRefusal`).
 */
import { type Clock, systemClock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';

export class RefusalLog {
  static readonly LOG_INTERVAL_MS = 10_000;
  private lastLoggedAt = Number.NEGATIVE_INFINITY;
  private unlogged = 0;

  /** `message`: the line's message, the same for every refusal of this kind. */
  constructor(
    private readonly logger: Logger,
    private readonly message: string,
    private readonly clock: Pick<Clock, 'monotonicMs'> = systemClock,
  ) {}

  refused(fields: Record<string, unknown>): void {
    const now = this.clock.monotonicMs();
    if (now - this.lastLoggedAt < RefusalLog.LOG_INTERVAL_MS) {
      this.unlogged++;
      return;
    }
    this.logger.warn({ ...fields, refusedSinceLastLine: this.unlogged }, this.message);
    this.lastLoggedAt = now;
    this.unlogged = 0;
  }
}
