/** How far a client's server stream reads ahead of its consumer. */
import type { Readable } from 'node:stream';

/**
 * grpc-js's streams read up to 16 messages ahead of their consumer, even paused. One is enough
 * to keep a stream busy, and keeps a paused partition's memory small. (Its option for this is
 * Node's `highWaterMark`, which grpc-js does not expose; a test checks this still takes.)
 */
export function limitReadAhead(stream: Readable): void {
  const state = (stream as unknown as { _readableState?: { highWaterMark?: unknown } })._readableState;
  if (state !== undefined && typeof state.highWaterMark === 'number') state.highWaterMark = 1;
}
