/** Waiting for a count that stops growing: how a test sees back-pressure take hold. */

/** Resolves once `count()` has not changed for `quietMs` (a plateau), with its value then. */
export async function plateau(count: () => number, quietMs: number): Promise<number> {
  let last = -1;
  while (count() !== last) {
    last = count();
    await new Promise((resolve) => setTimeout(resolve, quietMs));
  }
  return last;
}
