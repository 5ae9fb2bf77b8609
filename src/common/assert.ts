/**
 * Assertions are for programmer errors: states the code must never reach. They crash loudly
 * instead of letting a broken invariant reach the disk. Conditions the world can cause (bad input,
 * I/O failures) are `StrataError`s, never assertions.
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === 'function' ? message() : message);
}
