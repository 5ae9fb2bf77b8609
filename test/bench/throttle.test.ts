// Goal: the throttle's two views of its schedule agree: a record is allowed exactly when it is
// due (so a sender's lag, now − the due time of the record it sends, is 0 for a sender on time),
// and a sender asking how long to wait is told the time to that record's due time; method: the
// throttle alone, asked at chosen instants (no waiting).
import { expect, it } from 'vitest';
import { Throttle } from '../../src/bench/throttle.js';

it('allows each record from its due time on, the first one at once', () => {
  const throttle = new Throttle(1_000); // one record a millisecond
  const start = throttle.dueAt(0);
  expect(throttle.allowed(start)).toBe(1);
  expect(throttle.allowed(throttle.dueAt(5) - 0.01)).toBe(5);
  expect(throttle.allowed(throttle.dueAt(5))).toBe(6);
  expect(throttle.delayMs(5, start)).toBeCloseTo(5, 9);
  expect(throttle.delayMs(5, throttle.dueAt(5))).toBe(0);
});
