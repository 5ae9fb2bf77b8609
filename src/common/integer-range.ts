import { ErrorCode, StrataError } from './errors.js';

/**
 * The one check of an integer setting against its range, for every layer that takes one (serve's
 * flags, topic configs, broker and client options, CLI arguments), each of which throws its own
 * kind of error with the problem this returns: "NAME must be an integer from MIN to MAX, got
 * VALUE", or null when `value` is such an integer.
 */
export function integerRangeProblem(name: string, value: number, minimum: number, maximum: number): string | null {
  if (Number.isSafeInteger(value) && value >= minimum && value <= maximum) return null;
  return `${name} must be an integer from ${minimum} to ${maximum}, got ${shownNumber(value)}`;
}

/**
 * `value` as a message quotes it. NaN is what yargs makes of a number flag given something
 * else. Past 2^53 - 1 a number is no longer the one written (`9223372036854775808` reads as
 * 9223372036854776000), so it is said to be past that, not quoted as another number.
 */
export function shownNumber(value: unknown): string {
  if (typeof value !== 'number') return String(value);
  if (Number.isNaN(value)) return 'a non-number';
  if (Number.isFinite(value) && Math.abs(value) > Number.MAX_SAFE_INTEGER) return `a number past ${value < 0 ? '-(2^53 - 1)' : '2^53 - 1'} (about ${value.toExponential(3)})`;
  return String(value);
}

/**
 * Whether `text` is an integer written in decimal digits, with an optional minus: how a number
 * given as text must be written (JavaScript's `Number` would take `0x10` as 16 and `1e3` as
 * 1000, so a slip would quietly set another value).
 */
export function isDecimalInteger(text: string): boolean {
  return /^-?\d+$/.test(text);
}

/** `value` when it is an integer from `minimum` to `maximum`; else INVALID_ARGUMENT naming `name`. */
export function checkIntegerRange(name: string, value: number, minimum: number, maximum: number): number {
  const problem = integerRangeProblem(name, value, minimum, maximum);
  if (problem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, problem);
  return value;
}
