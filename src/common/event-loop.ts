/** Lets the event loop run a turn (I/O, immediates queued before this one) before continuing. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
