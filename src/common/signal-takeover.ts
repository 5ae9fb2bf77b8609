/**
 * How a command handles SIGTERM and SIGINT itself (`handleStopSignals`): the handler that ends
 * the process on them (`exit-on-first-signals.cts`, which explains why it exists, only in a
 * process that is PID 1) is taken off while the command's is on, and put back after, so that
 * the two never both run (that one would end a graceful stop at once) and the process still
 * ends on a signal once the command has stopped handling them.
 */
import type { EventEmitter } from 'node:events';

/** The same registered symbol as in `exit-on-first-signals.cts`. */
const FIRST_SIGNALS_HANDLER = Symbol.for('strata.exitOnFirstSignals');

type SignalHandler = (signal: NodeJS.Signals) => void;

/** Where the signals are heard: the process, or a stand-in in tests. */
export type SignalEvents = Pick<EventEmitter, 'on' | 'off'>;

/** Handles SIGTERM and SIGINT with `handler` (given the signal) until the returned function is called. */
export function handleStopSignals(handler: SignalHandler, events: SignalEvents = process): () => void {
  const handBack = takeOverSignals();
  // Each named here, not taken from the listener's argument (an emitter in a test may give none).
  const onSigterm = (): void => handler('SIGTERM');
  const onSigint = (): void => handler('SIGINT');
  events.on('SIGTERM', onSigterm);
  events.on('SIGINT', onSigint);
  return () => {
    events.off('SIGTERM', onSigterm);
    events.off('SIGINT', onSigint);
    handBack();
  };
}

/** Takes the early exit handler off the process, if it is on; returns how to put it back. */
function takeOverSignals(): () => void {
  const holder = process as unknown as Record<symbol, SignalHandler | undefined>;
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
