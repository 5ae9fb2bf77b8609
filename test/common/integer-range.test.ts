// Goal: the shared range check names the setting, its range and what it got, and takes only
// safe integers within the range; method: the function on its edges.
import { describe, expect, it } from 'vitest';
import { integerRangeProblem, shownNumber } from '../../src/common/integer-range.js';

describe('integerRangeProblem', () => {
  it('takes the range, ends included', () => {
    for (const value of [1, 5, 10]) expect(integerRangeProblem('--n', value, 1, 10)).toBeNull();
  });

  it('names what it got otherwise: out of range, a fraction, a non-number, an unsafe integer', () => {
    expect(integerRangeProblem('--n', 0, 1, 10)).toBe('--n must be an integer from 1 to 10, got 0');
    expect(integerRangeProblem('--n', 11, 1, 10)).toBe('--n must be an integer from 1 to 10, got 11');
    expect(integerRangeProblem('--n', 1.5, 1, 10)).toBe('--n must be an integer from 1 to 10, got 1.5');
    expect(integerRangeProblem('pageSize', Number.NaN, 0, 4000)).toBe('pageSize must be an integer from 0 to 4000, got a non-number');
    expect(integerRangeProblem('x', 2 ** 53, 0, Number.POSITIVE_INFINITY)).toBe('x must be an integer from 0 to Infinity, got a number past 2^53 - 1 (about 9.007e+15)');
  });

  // Past 2^53 - 1 a number is another than the one written: "9223372036854775808" was quoted
  // back as 9223372036854776000, and 1e16 as 10000000000000000, a non-negative integer.
  it('does not quote a number past 2^53 - 1 as if it were the one given', () => {
    expect(integerRangeProblem('retention.ms', Number('9223372036854775808'), -1, Number.MAX_SAFE_INTEGER)).toBe(
      'retention.ms must be an integer from -1 to 9007199254740991, got a number past 2^53 - 1 (about 9.223e+18)',
    );
    expect(integerRangeProblem('--n', -1e16, 0, 10)).toBe('--n must be an integer from 0 to 10, got a number past -(2^53 - 1) (about -1.000e+16)');
  });
});

describe('shownNumber', () => {
  it('quotes a safe number as it is, and names NaN and non-numbers plainly', () => {
    expect([shownNumber(42), shownNumber(-1.5), shownNumber(Number.NaN), shownNumber('abc'), shownNumber(Number.MAX_SAFE_INTEGER)]).toEqual(['42', '-1.5', 'a non-number', 'abc', '9007199254740991']);
  });
});
