// Goal: the shared range check names the setting, its range and what it got, and takes only
// safe integers within the range; method: the function on its edges.
import { describe, expect, it } from 'vitest';
import { integerRangeProblem } from '../../src/common/integer-range.js';

describe('integerRangeProblem', () => {
  it('takes the range, ends included', () => {
    for (const value of [1, 5, 10]) expect(integerRangeProblem('--n', value, 1, 10)).toBeNull();
  });

  it('names what it got otherwise: out of range, a fraction, a non-number, an unsafe integer', () => {
    expect(integerRangeProblem('--n', 0, 1, 10)).toBe('--n must be an integer from 1 to 10, got 0');
    expect(integerRangeProblem('--n', 11, 1, 10)).toBe('--n must be an integer from 1 to 10, got 11');
    expect(integerRangeProblem('--n', 1.5, 1, 10)).toBe('--n must be an integer from 1 to 10, got 1.5');
    expect(integerRangeProblem('pageSize', Number.NaN, 0, 4000)).toBe('pageSize must be an integer from 0 to 4000, got a non-number');
    expect(integerRangeProblem('x', 2 ** 53, 0, Number.POSITIVE_INFINITY)).toBe(`x must be an integer from 0 to Infinity, got ${2 ** 53}`);
  });
});
