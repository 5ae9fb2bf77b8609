/**
 * Walks a run of bytes held in several buffers, taken one after another (the buffers of one
 * write).
 */

/** Bytes in the run. */
export function runBytes(buffers: readonly Buffer[]): number {
  let total = 0;
  for (const buffer of buffers) total += buffer.length;
  return total;
}

/** From byte `offset` of the run on: each buffer that holds some of it, with where in it that part starts. */
export function* buffersFrom(buffers: readonly Buffer[], offset: number): Generator<[Buffer, number]> {
  let skip = offset;
  for (const buffer of buffers) {
    if (skip >= buffer.length) {
      skip -= buffer.length;
      continue;
    }
    yield [buffer, skip];
    skip = 0;
  }
}

/** Copies bytes [from, from + length) of the run into `target` at `at`. */
export function copyRange(buffers: readonly Buffer[], from: number, length: number, target: Buffer, at: number): void {
  let remaining = length;
  for (const [buffer, start] of buffersFrom(buffers, from)) {
    if (remaining === 0) return;
    const copied = buffer.copy(target, at, start, Math.min(buffer.length, start + remaining));
    at += copied;
    remaining -= copied;
  }
}
