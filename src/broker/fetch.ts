/**
 * The read side of the broker: long-poll fetches and start positions. A fetch that finds less
 * than `minBytes` waits for the partition's high watermark to move (an event from the log, no
 * polling interval) until `maxWaitMs` has passed or the caller goes away.
 */
import { ErrorCode, StrataError } from '../common/errors.js';
import type { PartitionLog, ReadResult } from '../storage/partition-log.js';
import { nextOffsetAfter } from '../storage/record-batch.js';

export const FETCH_BYTES_DEFAULT = 1024 * 1024;
export const FETCH_WAIT_MAX_MS = 5 * 60 * 1000;

export interface FetchOptions {
  offset: number;
  maxBytes: number;
  minBytes: number;
  maxWaitMs: number;
  signal?: AbortSignal;
}

/** Resolves when the high watermark of `log` advances, `timeoutMs` passes, or `signal` aborts. */
export function waitForHighWatermark(log: PartitionLog, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const finish = (): void => {
      clearTimeout(timer);
      unsubscribe();
      signal?.removeEventListener('abort', finish);
      resolve();
    };
    const timer = setTimeout(finish, timeoutMs);
    const unsubscribe = log.onHighWatermark(finish);
    signal?.addEventListener('abort', finish, { once: true });
  });
}

/**
 * Reads from `offset`, waiting up to `maxWaitMs` for at least `minBytes` of batches. While it
 * waits it counts the bytes each advance of the high watermark makes visible, and reads again
 * only once they may make up `minBytes`, or at the end of the wait: a read of up to `maxBytes`
 * per small append would copy the growing range again and again. A read that stopped short of
 * what was visible when it began (at `maxBytes`, or at the end of a segment) is answered at
 * once: reading again at the same offset returns no more, however long it waits.
 */
export async function fetchWithWait(log: PartitionLog, options: FetchOptions): Promise<ReadResult> {
  const minBytes = Math.min(Math.max(1, options.minBytes), options.maxBytes);
  // On the monotonic clock: a step of the system time neither lengthens nor cuts the wait.
  const deadline = performance.now() + options.maxWaitMs;
  // Taken before each read: bytes made visible during it are counted as arrived after it.
  let readAt = log.visibleBytesTotal;
  /** Reads from `offset`; `stoppedShort`: it returned batches but ended before `visible`, the high watermark before it. */
  const read = async (visible: number): Promise<{ result: ReadResult; stoppedShort: boolean }> => {
    const result = await log.read(options.offset, options.maxBytes);
    return { result, stoppedShort: result.batches.length > 0 && nextOffsetAfter(result.batches, options.offset) < visible };
  };
  let { result, stoppedShort } = await read(log.highWatermark);
  while (result.batches.length < minBytes && !options.signal?.aborted) {
    if (stoppedShort) return result;
    // Every byte made visible since the last read lies after what it returned, those made
    // visible before the wait below began (whose wake-up it would miss) included. A log closed
    // or fenced meanwhile (its topic deleted, say) is read all the same: the read says why,
    // and the fetch fails with it rather than wait on.
    const arrived = log.visibleBytesTotal - readAt;
    if (log.usable && result.batches.length + arrived < minBytes) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      await waitForHighWatermark(log, remaining, options.signal);
      continue;
    }
    readAt = log.visibleBytesTotal;
    ({ result, stoppedShort } = await read(log.highWatermark));
  }
  // The wait ended short of min_bytes (its time, or the call's end): what arrived is read.
  if (result.batches.length < minBytes && log.visibleBytesTotal !== readAt) result = await log.read(options.offset, options.maxBytes);
  return result;
}

export type StartSpec =
  | { kind: 'earliest' }
  | { kind: 'latest' }
  | { kind: 'offset'; offset: number }
  | { kind: 'timestamp'; timestamp: number };

/**
 * The offset a start position names; OUT_OF_RANGE for an offset outside the log. A fenced
 * partition answers with its fence, as its reads do: offsets of a partition that serves no read
 * would let a lag dashboard or an offset reset carry on as if it were healthy.
 */
export async function resolveStart(log: PartitionLog, start: StartSpec): Promise<number> {
  log.checkUsable();
  switch (start.kind) {
    case 'earliest':
      return log.logStartOffset;
    case 'latest':
      return log.highWatermark;
    case 'timestamp':
      return (await log.offsetForTimestamp(start.timestamp)) ?? log.highWatermark;
    case 'offset':
      if (start.offset < log.logStartOffset || start.offset > log.logEndOffset) {
        throw new StrataError(ErrorCode.OFFSET_OUT_OF_RANGE, `offset ${start.offset} is out of range for ${log.name}: valid offsets are ${log.logStartOffset} to ${log.logEndOffset} (${log.logEndOffset} is the log end, where the next record goes)`);
      }
      return start.offset;
  }
}
