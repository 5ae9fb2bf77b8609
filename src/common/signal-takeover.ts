/**
 * For a command that handles SIGTERM and SIGINT itself: removes the handler that ends the
 * process on them before the command's own is installed, and puts it back once the command's
 * are removed (see `exit-on-first-signals.cts`, which explains why it exists, only in a process
 * that is PID 1).
 */

/** The same registered symbol as `FIRST_SIGNALS_HANDLER` in `exit-on-first-signals.cts`. */
const FIRST_SIGNALS_HANDLER = Symbol.for('strata.exitOnFirstSignals');

type Handler = (signal: NodeJS.Signals) => void;

/**
 * Call before installing handlers of SIGTERM and SIGINT; call what it returns after removing
 * them, so that the process (as PID 1) still ends on a signal while it finishes.
 */
export function takeOverSignals(): () => void {
  const holder = process as unknown as Record<symbol, Handler | undefined>;
  const handler = holder[FIRST_SIGNALS_HANDLER];
  if (handler === undefined) return () => undefined;
  process.off('SIGTERM', handler);
  process.off('SIGINT', handler);
  delete holder[FIRST_SIGNALS_HANDLER];
  return () => {
    if (holder[FIRST_SIGNALS_HANDLER] !== undefined) return;
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
    holder[FIRST_SIGNALS_HANDLER] = handler;
  };
}
