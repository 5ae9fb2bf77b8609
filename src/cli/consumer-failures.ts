/**
 * What ends `strata consume` with exit 1 that the client Consumer itself only reports as events,
 * since an application would retry or alert on them, while a command must end and say so:
 * - a partition whose fetch fails for good: its topic deleted (`NOT_FOUND`), or any code a
 *   retry cannot mend; the Consumer would retry it forever, the command would hang;
 * - without `--follow`, a broker that stays unreachable for `UNREACHABLE_GIVE_UP_MS` (with
 *   `--follow` the command waits for it, as for new records);
 * - a partition whose last commit of printed positions failed (a later one that succeeded for
 *   it makes that good), the final one above all: the group would deliver those records again, and the command
 *   would have said nothing (the Consumer logs it at a level the CLI does not print).
 */
import type { CommitFailedEvent, Consumer, FetchErrorEvent } from '../client/consumer.js';
import { StrataClientError } from '../client/errors.js';

/** How long a run without --follow waits for a broker that cannot be reached. */
export const UNREACHABLE_GIVE_UP_MS = 30_000;

/** Codes a fetch retry can mend: the broker away or restarting, a stream reset (INTERNAL). */
const RETRIABLE = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED', 'RESOURCE_EXHAUSTED', 'INTERNAL']);

export interface ConsumerWatch {
  /** Why the command must fail, or null. */
  failure(): Error | null;
  /** Records came: the broker is reachable (call for each batch taken). */
  delivered(): void;
  /** Stops listening. */
  dispose(): void;
}

/** Watches `consumer`; `stop` is called once a failure ends the command (it closes the consumer). */
export function watchConsumer(consumer: Consumer, options: { follow: boolean; stop: () => void }): ConsumerWatch {
  let fetchFailure: Error | null = null;
  /** The partitions whose last commit failed, and the latest failure. */
  const commitFailures = new Set<string>();
  let lastCommitError: CommitFailedEvent['error'] | null = null;
  let unreachableSince: number | null = null;
  const fail = (error: Error): void => {
    if (fetchFailure !== null) return;
    fetchFailure = error;
    options.stop();
  };
  const onFetchError = (event: FetchErrorEvent): void => {
    if (!RETRIABLE.has(event.error.code)) {
      fail(event.error);
      return;
    }
    if (options.follow) return;
    unreachableSince ??= Date.now();
    if (Date.now() - unreachableSince >= UNREACHABLE_GIVE_UP_MS) {
      fail(new StrataClientError(event.error.code, `${event.error.message} (fetching ${event.topic}-${event.partition} failed for ${UNREACHABLE_GIVE_UP_MS / 1000} s; giving up)`));
    }
  };
  const reachable = (): void => {
    unreachableSince = null;
  };
  const onCommitFailed = (event: CommitFailedEvent): void => {
    for (const { topic, partition } of event.offsets) commitFailures.add(`${topic}-${partition}`);
    lastCommitError = event.error;
  };
  const onCommitted = (event: { offsets: readonly { topic: string; partition: number }[] }): void => {
    for (const { topic, partition } of event.offsets) commitFailures.delete(`${topic}-${partition}`);
  };
  consumer.on('fetchError', onFetchError);
  consumer.on('partitionStarted', reachable);
  consumer.on('commitFailed', onCommitFailed);
  consumer.on('offsetsCommitted', onCommitted);
  return {
    failure() {
      if (fetchFailure !== null) return fetchFailure;
      if (commitFailures.size === 0) return null;
      const partitions = [...commitFailures].join(', ');
      const error = lastCommitError!;
      return new StrataClientError(error.code, `could not commit the positions of the records printed from ${partitions} (${error.message}); the group will deliver them again`);
    },
    delivered: reachable,
    dispose() {
      consumer.off('fetchError', onFetchError);
      consumer.off('partitionStarted', reachable);
      consumer.off('commitFailed', onCommitFailed);
      consumer.off('offsetsCommitted', onCommitted);
    },
  };
}
