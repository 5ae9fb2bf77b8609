/** What a promise was rejected with, checked to be an instance of the type a test expects. */
import { expect } from 'vitest';

/** What `promise` was rejected with: an instance of `type` (a fulfilled promise fails the test). */
export async function rejectedWith<T extends Error>(promise: Promise<unknown>, type: abstract new (...args: never[]) => T): Promise<T> {
  const error = await promise.then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error, 'the promise was fulfilled, or rejected with another type').toBeInstanceOf(type);
  return error as T;
}
