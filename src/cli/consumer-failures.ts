/**
 * What ends `strata consume` with exit 1 that the client Consumer itself only reports as events,
 * since an application would retry or alert on them, while a command must end and say so:
 * - a partition whose fetch, or a group member whose heartbeat, fails for good: its topic
 *   deleted (`NOT_FOUND`), or any code a retry cannot mend; the Consumer would retry it
 *   forever, the command would hang;
 * - without `--follow`, a broker that stays unreachable, or keeps refusing the group member's
 *   join (a member whose session has not ended holds its id; said once on stderr, and waited
 *   for with `--follow`), for `UNREACHABLE_GIVE_UP_MS`: fetches or
 *   heartbeats failing with no gap of `FAILURE_GAP_MS` between failures and no records between
 *   (with `--follow` the command waits for it, as for new records), timed on the monotonic clock;
 * - a partition whose last commit of printed positions failed (a later one that succeeded for
 *   it makes that good), the final one above all: the group would deliver those records again, and the command
 *   would have said nothing (the Consumer logs it at a level the CLI does not print). A failed
 *   commit of an offset no higher than one the group already took for the partition is no
 *   failure: nothing would be delivered again. The Consumer commits every position when it
 *   closes, changed or not, so a broker lost after the last commit (Ctrl-C then) fails a commit
 *   of what was already committed.
 *
 * A partition whose position left the log (retention removed records before they were read) is
 * not a failure: the Consumer moves it by its reset policy, and the command goes on after one
 * line on stderr saying which records it will not print, or may print again.
 */
import type { CommitFailedEvent, Consumer, FetchErrorEvent, OffsetResetEvent, OffsetsCommittedEvent } from '../client/consumer.js';
import { StrataClientError, isRetriable } from '../client/errors.js';
import type { GroupErrorEvent } from '../client/group-member.js';

/** How long a run without --follow waits for a broker that cannot be reached. */
export const UNREACHABLE_GIVE_UP_MS = 30_000;
/**
 * A gap between failures this long starts a new spell of them: a heartbeat that succeeds
 * says nothing, and failing ones come at least every heartbeat interval (5 s by default).
 */
export const FAILURE_GAP_MS = 15_000;

/** Codes a retry can mend: the broker away or restarting, a stream reset (INTERNAL). */
function mendable(error: StrataClientError): boolean {
  return isRetriable(error) || error.code === 'CANCELLED' || error.code === 'RESOURCE_EXHAUSTED' || error.code === 'INTERNAL';
}

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
  /** The offset of each partition's last successful commit. */
  const committed = new Map<string, number>();
  let lastCommitError: CommitFailedEvent['error'] | null = null;
  let unreachableSince: number | null = null;
  let lastFailureAt = 0;
  const fail = (error: Error): void => {
    if (fetchFailure !== null) return;
    fetchFailure = error;
    options.stop();
  };
  /** A fetch or heartbeat failed with `error`, doing `what`. */
  const failed = (error: StrataClientError, what: string): void => {
    if (!mendable(error)) {
      fail(error);
      return;
    }
    if (options.follow) return;
    const now = performance.now();
    if (unreachableSince === null || now - lastFailureAt >= FAILURE_GAP_MS) unreachableSince = now;
    lastFailureAt = now;
    if (now - unreachableSince >= UNREACHABLE_GIVE_UP_MS) {
      fail(new StrataClientError(error.code, `${error.message} (${what} failed for ${UNREACHABLE_GIVE_UP_MS / 1000} s; giving up)`));
    }
  };
  const onFetchError = (event: FetchErrorEvent): void => failed(event.error, `fetching ${event.topic}-${event.partition}`);
  /** Whether the refusal of the current spell of refused joins has been said. */
  let refusalSaid = false;
  const onGroupError = (event: GroupErrorEvent): void => {
    if (event.joinRefused !== true) return failed(event.error, 'the group heartbeat');
    // A refused join is retried by the Consumer and mended by waiting (a member whose session
    // has not ended yet holds the id): said once, then waited for, as a broker away is.
    if (!refusalSaid) process.stderr.write(`strata: the broker refused the join (${event.error.message}); trying again\n`);
    refusalSaid = true;
    if (!options.follow) failed(new StrataClientError('UNAVAILABLE', event.error.message), 'joining the group');
  };
  const reachable = (): void => {
    unreachableSince = null;
    refusalSaid = false;
  };
  const onCommitFailed = (event: CommitFailedEvent): void => {
    for (const { topic, partition, offset } of event.offsets) {
      const key = `${topic}-${partition}`;
      if (offset <= (committed.get(key) ?? -1)) continue; // already committed: nothing is lost
      commitFailures.add(key);
      lastCommitError = event.error;
    }
  };
  const onCommitted = (event: OffsetsCommittedEvent): void => {
    for (const { topic, partition, offset } of event.offsets) {
      const key = `${topic}-${partition}`;
      commitFailures.delete(key);
      committed.set(key, offset);
    }
  };
  const onReset = (event: OffsetResetEvent): void => {
    process.stderr.write(`${resetNotice(event)}\n`);
  };
  consumer.on('fetchError', onFetchError);
  consumer.on('groupError', onGroupError);
  consumer.on('offsetReset', onReset);
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
      consumer.off('groupError', onGroupError);
      consumer.off('offsetReset', onReset);
      consumer.off('partitionStarted', reachable);
      consumer.off('commitFailed', onCommitFailed);
      consumer.off('offsetsCommitted', onCommitted);
    },
  };
}

/** The line that tells the user a partition's position left the log, and what that costs. */
function resetNotice(event: OffsetResetEvent): string {
  const where = `${event.topic}-${event.partition}`;
  const cost =
    event.resetTo > event.offset
      ? `records ${event.offset} to ${event.resetTo - 1} of ${where} are not printed`
      : `records of ${where} from ${event.resetTo} on may be printed again`;
  return `strata: ${event.reason}; going on from offset ${event.resetTo} (the ${event.policy} offset): ${cost}`;
}
