/**
 * Ends the process on SIGTERM or SIGINT until a command takes those signals over, when the
 * process runs as PID 1.
 *
 * Why: PID 1 (a container's entrypoint, as `node bin/strata.js serve` is in the image) gets no
 * default action for a signal it has no handler for: the kernel drops it. `strata serve`
 * handles SIGTERM once its modules have loaded and its options are read, about half a second
 * after the start; a `docker stop` or a pod deletion before that would be ignored and end only
 * in SIGKILL when the grace period runs out. So `bin/strata.js` loads this first, and a command
 * that handles the signals itself does so through `handleStopSignals` (`signal-takeover.ts`),
 * which takes this handler off meanwhile: the two must not both run, or this one would end a
 * graceful stop at once.
 * Anywhere but PID 1 the default action already ends the process, and nothing is installed.
 *
 * The handler is kept on `process` under a registered symbol, so the ES modules of the CLI can
 * take it off without loading this CommonJS file.
 */
import { constants } from 'node:os';

const FIRST_SIGNALS_HANDLER = Symbol.for('strata.exitOnFirstSignals');

/** The signals handled, each ending the process as its default action would say: 128 + its number. */
const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/** Installs the handler when `asInit` (by default: when this process is PID 1). */
export function exitOnFirstSignals(asInit: boolean = process.pid === 1): void {
  if (!asInit) return;
  const handler = (signal: NodeJS.Signals): void => process.exit(128 + constants.signals[signal]);
  for (const signal of SIGNALS) process.on(signal, handler);
  (process as unknown as Record<symbol, unknown>)[FIRST_SIGNALS_HANDLER] = handler;
}
