/**
 * The check of a client option that ends up as a timer's delay (a linger, a backoff, a request
 * timeout, a commit interval). Node.js takes a delay over `TIMER_DELAY_MAX_MS` (about 24.8 days),
 * `Infinity` included, as 1 ms, with a warning each time: a "no timeout" of `Infinity` would
 * then fire every millisecond. So such values are refused where the option is given.
 */
import { TIMER_DELAY_MAX_MS } from '../common/clock.js';
import { invalidArgument } from './errors.js';

/** `value` when it is a number of milliseconds from `minimum` to TIMER_DELAY_MAX_MS; else INVALID_ARGUMENT naming `name`. */
export function timerDelayMs(value: number, name: string, minimum = 0): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < minimum || value > TIMER_DELAY_MAX_MS) {
    throw invalidArgument(`${name} must be from ${minimum} to ${TIMER_DELAY_MAX_MS} ms (the longest delay Node.js timers take), got ${value}`);
  }
  return value;
}
