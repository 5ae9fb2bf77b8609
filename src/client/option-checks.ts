/**
 * Checks of client arguments whose limits come from outside the client:
 * - a timer's delay (a linger, a backoff, a request timeout, a commit interval): Node.js takes a
 *   delay over `TIMER_DELAY_MAX_MS` (about 24.8 days), `Infinity` included, as 1 ms, with a
 *   warning each time, so a "no timeout" of `Infinity` would fire every millisecond;
 * - a partition number or count: the wire carries an int32, and protobufjs would send a larger
 *   number cut to its low 32 bits, and a fraction cut to an integer, naming another partition.
 */
import { PARTITION_COUNT_MAX } from '../common/broker-limits.js';
import { TIMER_DELAY_MAX_MS } from '../common/clock.js';
import { invalidArgument } from './errors.js';

/** `value` when it is a number of milliseconds from `minimum` to TIMER_DELAY_MAX_MS; else INVALID_ARGUMENT naming `name`. */
export function timerDelayMs(value: number, name: string, minimum = 0): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < minimum || value > TIMER_DELAY_MAX_MS) {
    throw invalidArgument(`${name} must be from ${minimum} to ${TIMER_DELAY_MAX_MS} ms (the longest delay Node.js timers take), got ${value}`);
  }
  return value;
}

/**
 * `count` when it is a partition count a topic can have (1 to PARTITION_COUNT_MAX; 0 too when
 * `zeroMeans` says what 0 asks for); else INVALID_ARGUMENT naming `name`. Checked here, not
 * left to the broker: the wire's int32 would carry 2^32 + 3 as 3, and 6.5 as 6.
 */
export function checkPartitionCount(count: number, name: string, zeroMeans: string | null = null): number {
  const minimum = zeroMeans === null ? 1 : 0;
  if (!Number.isInteger(count) || count < minimum || count > PARTITION_COUNT_MAX) {
    throw invalidArgument(`${name} must be an integer from 1 to ${PARTITION_COUNT_MAX}${zeroMeans === null ? '' : ` (or 0 for ${zeroMeans})`}, got ${count}`);
  }
  return count;
}

/** The largest partition number the wire's int32 carries. */
export const PARTITION_MAX = 0x7fffffff;

/** `partition` when it is an integer from 0 to PARTITION_MAX; else INVALID_ARGUMENT. */
export function checkPartition(partition: number): number {
  if (!Number.isInteger(partition) || partition < 0 || partition > PARTITION_MAX) {
    throw invalidArgument(`partition must be an integer from 0 to ${PARTITION_MAX}, got ${partition}`);
  }
  return partition;
}
