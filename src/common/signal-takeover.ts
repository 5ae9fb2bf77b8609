/**
 * For a command that handles SIGTERM and SIGINT itself: removes the handler that ends the
 * process on them before the command's own is installed (see `exit-on-first-signals.cts`, which
 * explains why it exists, only in a process that is PID 1).
 */

/** The same registered symbol as `FIRST_SIGNALS_HANDLER` in `exit-on-first-signals.cts`. */
const FIRST_SIGNALS_HANDLER = Symbol.for('strata.exitOnFirstSignals');

/** Call before installing handlers of SIGTERM and SIGINT. Idempotent. */
export function takeOverSignals(): void {
  const holder = process as unknown as Record<symbol, ((signal: NodeJS.Signals) => void) | undefined>;
  const handler = holder[FIRST_SIGNALS_HANDLER];
  if (handler === undefined) return;
  process.off('SIGTERM', handler);
  process.off('SIGINT', handler);
  delete holder[FIRST_SIGNALS_HANDLER];
}
