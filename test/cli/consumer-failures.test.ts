// Goal: `strata consume` ends with the reason when fetching or a group heartbeat fails for good,
// when the broker stays unreachable without --follow, and when a commit of printed positions
// failed and no later one succeeded (a failed commit of offsets already committed is none);
// method: the watch on a real (unconnected) Consumer, fed the events the Consumer emits, with a
// fake monotonic clock for the unreachable bound.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FAILURE_GAP_MS, UNREACHABLE_GIVE_UP_MS, watchConsumer } from '../../src/cli/consumer-failures.js';
import { Consumer } from '../../src/client/consumer.js';
import { StrataClientError } from '../../src/client/errors.js';

const consumers: Consumer[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const consumer of consumers.splice(0)) await consumer.close();
});

function watched(follow: boolean): { consumer: Consumer; stops: () => number; watch: ReturnType<typeof watchConsumer> } {
  const consumer = new Consumer({ server: '127.0.0.1:1' });
  consumers.push(consumer);
  let stops = 0;
  const watch = watchConsumer(consumer, { follow, stop: () => stops++ });
  return { consumer, stops: () => stops, watch };
}

/**
 * `emit` every `intervalMs` of fake time for `spanMs`, the last at its end: a failure repeating
 * as the consumer's retries or heartbeats repeat it.
 */
function failingFor(emit: () => void, spanMs: number, intervalMs: number): void {
  for (let elapsed = 0; elapsed < spanMs; elapsed += intervalMs) {
    emit();
    vi.advanceTimersByTime(Math.min(intervalMs, spanMs - elapsed));
  }
  emit();
}

const fetchError = (code: string, message: string) => ({ topic: 't', partition: 3, error: new StrataClientError(code as 'UNAVAILABLE', message) });

describe('watchConsumer', () => {
  it('fails at once on a fetch error a retry cannot mend, and stops the consumer once', () => {
    const { consumer, stops, watch } = watched(true);
    consumer.emit('fetchError', fetchError('NOT_FOUND', 'topic "t" was deleted'));
    consumer.emit('fetchError', fetchError('NOT_FOUND', 'topic "t" was deleted'));
    expect(watch.failure()?.message).toBe('topic "t" was deleted');
    expect(stops()).toBe(1);
  });

  it('waits out a join the broker refused (retried by the Consumer), saying so once per spell; without --follow, for the bound', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const refused = { error: new StrataClientError('FAILED_PRECONDITION', 'instance id "pod-1" is held by a member whose session has not ended'), joinRefused: true };
      const following = watched(true);
      failingFor(() => following.consumer.emit('groupError', refused), 60_000, 1_000);
      expect(following.watch.failure()).toBeNull();
      expect(following.stops()).toBe(0);
      expect(stderr.mock.calls.map(([line]) => line)).toEqual([`strata: the broker refused the join (${refused.error.message}); trying again\n`]);
      following.consumer.emit('partitionStarted', { topic: 't', partition: 0, offset: 0 });
      following.consumer.emit('groupError', refused);
      expect(stderr).toHaveBeenCalledTimes(2); // a new spell
      const once = watched(false);
      failingFor(() => once.consumer.emit('groupError', refused), UNREACHABLE_GIVE_UP_MS, 1_000);
      expect(once.watch.failure()?.message).toBe(`${refused.error.message} (joining the group failed for 30 s; giving up)`);
      // Another group error of a code no retry mends still ends the command.
      const member = watched(true);
      member.consumer.emit('groupError', { error: refused.error });
      expect(member.watch.failure()?.message).toBe(refused.error.message);
    } finally {
      stderr.mockRestore();
    }
  });

  it('without --follow, gives up on an unreachable broker after the bound, unless records came meanwhile', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const { consumer, stops, watch } = watched(false);
    // Fetches failing a second apart, as the Consumer's retries do.
    const unreachable = () => consumer.emit('fetchError', fetchError('UNAVAILABLE', 'cannot reach the broker'));
    failingFor(unreachable, UNREACHABLE_GIVE_UP_MS - 1, 1_000);
    watch.delivered();
    failingFor(unreachable, UNREACHABLE_GIVE_UP_MS - 1, 1_000);
    expect(watch.failure()).toBeNull();
    vi.advanceTimersByTime(1);
    consumer.emit('fetchError', fetchError('UNAVAILABLE', 'cannot reach the broker'));
    expect(watch.failure()?.message).toBe('cannot reach the broker (fetching t-3 failed for 30 s; giving up)');
    expect(stops()).toBe(1);
  });

  it('without --follow, gives up when group heartbeats keep failing (a member with no partition never fetches), and fails at once on one a retry cannot mend', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const { consumer, stops, watch } = watched(false);
    const groupError = (code: string, message: string) => ({ error: new StrataClientError(code as 'UNAVAILABLE', message) });
    // Failures further apart than the gap are separate spells: no giving up.
    for (let spell = 0; spell < 4; spell++) {
      consumer.emit('groupError', groupError('UNAVAILABLE', 'cannot reach the broker'));
      vi.advanceTimersByTime(FAILURE_GAP_MS);
    }
    expect(watch.failure()).toBeNull();
    // Failing on and on, a heartbeat interval apart: given up after the bound.
    failingFor(() => consumer.emit('groupError', groupError('UNAVAILABLE', 'cannot reach the broker')), UNREACHABLE_GIVE_UP_MS + 5_000, 5_000);
    expect(watch.failure()?.message).toBe('cannot reach the broker (the group heartbeat failed for 30 s; giving up)');
    expect(stops()).toBe(1);

    const refused = watched(true);
    refused.consumer.emit('groupError', groupError('PERMISSION_DENIED', 'not allowed'));
    expect(refused.watch.failure()?.message).toBe('not allowed');
  });

  it('with --follow, waits for an unreachable broker', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const { consumer, watch } = watched(true);
    consumer.emit('fetchError', fetchError('UNAVAILABLE', 'cannot reach the broker'));
    vi.advanceTimersByTime(10 * UNREACHABLE_GIVE_UP_MS);
    consumer.emit('fetchError', fetchError('UNAVAILABLE', 'cannot reach the broker'));
    expect(watch.failure()).toBeNull();
  });

  it('reports a partition whose last commit failed, until a later commit for it succeeds', () => {
    const { consumer, watch } = watched(true);
    const both = [{ topic: 't', partition: 0, offset: 5 }, { topic: 't', partition: 1, offset: 7 }];
    const further = [{ topic: 't', partition: 0, offset: 6 }, { topic: 't', partition: 1, offset: 9 }];
    const unavailable = new StrataClientError('UNAVAILABLE', 'cannot reach the broker');
    consumer.emit('commitFailed', { offsets: both, error: unavailable });
    consumer.emit('offsetsCommitted', { offsets: both });
    expect(watch.failure()).toBeNull();
    consumer.emit('commitFailed', { offsets: further, error: unavailable });
    expect(watch.failure()?.message).toBe('could not commit the positions of the records printed from t-0, t-1 (cannot reach the broker); the group will deliver them again');
    // A commit of the other partition alone does not make p1's good.
    consumer.emit('offsetsCommitted', { offsets: [further[0]!] });
    expect(watch.failure()?.message).toBe('could not commit the positions of the records printed from t-1 (cannot reach the broker); the group will deliver them again');
  });

  it('takes a failed commit of offsets the group already took for no failure (the Consumer commits every position as it closes, changed or not)', () => {
    const { consumer, watch } = watched(true);
    const unavailable = new StrataClientError('UNAVAILABLE', 'cannot reach the broker');
    consumer.emit('offsetsCommitted', { offsets: [{ topic: 't', partition: 0, offset: 5 }, { topic: 't', partition: 1, offset: 7 }] });
    // The broker lost after that commit: the final one, of the same positions, fails.
    consumer.emit('commitFailed', { offsets: [{ topic: 't', partition: 0, offset: 5 }, { topic: 't', partition: 1, offset: 7 }], error: unavailable });
    expect(watch.failure()).toBeNull();
    // A position further on than the last commit is another matter: those records would come again.
    consumer.emit('commitFailed', { offsets: [{ topic: 't', partition: 0, offset: 5 }, { topic: 't', partition: 1, offset: 8 }], error: unavailable });
    expect(watch.failure()?.message).toBe('could not commit the positions of the records printed from t-1 (cannot reach the broker); the group will deliver them again');
  });

  it('takes a stream reset (INTERNAL) as something a retry mends', () => {
    const { consumer, watch } = watched(true);
    consumer.emit('fetchError', fetchError('INTERNAL', 'Received RST_STREAM with code 2'));
    expect(watch.failure()).toBeNull();
  });
});
