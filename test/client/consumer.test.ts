// Goal: the client Consumer delivers the records of its assigned partitions in offset order from
// the right start (seek, earliest, latest, initialPosition, reset on OUT_OF_RANGE), through
// async iteration and the batch API, skips records below its position inside a fetched batch,
// hands revoked positions to its commit hook, resubscribes after a broken stream without losing
// or repeating records, and stops cleanly on close; method: a real in-process broker over gRPC,
// records written with the client Producer, a grpc-js interceptor that breaks streams, and waits
// on the consumer's own events and promises (no sleeps).
import { once } from 'node:events';
import { InterceptingCall, type Interceptor, Metadata, status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { Connection, methods } from '../../src/client/connection.js';
import {
  Consumer,
  type ConsumerRecord,
  type CommitFailedEvent,
  type FetchErrorEvent,
  type OffsetResetEvent,
  type TopicPartitionOffset,
} from '../../src/client/consumer.js';
import { strata } from '../../src/generated/strata.js';
import { StrataClientError } from '../../src/client/errors.js';
import { FETCH_BYTES_MAX } from '../../src/common/request-limits.js';
import { TIMER_DELAY_MAX_MS } from '../../src/common/clock.js';
import { Producer } from '../../src/client/producer.js';
import { limitReadAhead } from '../../src/client/read-ahead.js';
import { failFirstCallAfter, holdCalls, holdStatus, refuseFirstCall } from '../helpers/interceptors.js';
import { plateau } from '../helpers/plateau.js';
import { useConsumerFixture } from '../helpers/consumer-fixture.js';
import { waitUntil } from '../helpers/wait.js';

const v1 = strata.v1;

// A long linger and explicit flushes: each `produce` call below becomes one batch per partition.
const fixture = useConsumerFixture({ topicPrefix: 'consumer' });
const { consumer, topic } = fixture;

/** Writes `count` records `<partition>-<index>` (index from `from`) to a partition, as one batch. */
async function produce(name: string, partition: number, count: number, from = 0): Promise<void> {
  const sends = Array.from({ length: count }, (_, index) => fixture.producer.send({ topic: name, partition, key: `k${from + index}`, value: `${partition}-${from + index}`, headers: { n: String(from + index) } }));
  await fixture.producer.flush();
  await Promise.all(sends);
}

/** The next `count` records of async iteration; leaves the loop (the consumer stays open). */
async function take(source: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  if (count === 0) return records;
  for await (const record of source) {
    records.push(record);
    if (records.length === count) break;
  }
  return records;
}

const valueOf = (record: ConsumerRecord): string => record.value!.toString('utf8');

describe('options', () => {
  it('refuses a maxBytesPerPartition over the broker\'s Subscribe limit at once, rather than retrying a refused subscription for ever', async () => {
    const refused = (() => {
      try {
        consumer({ maxBytesPerPartition: FETCH_BYTES_MAX + 1 });
        return null;
      } catch (error) {
        return error;
      }
    })();
    expect(refused).toBeInstanceOf(StrataClientError);
    expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', message: `maxBytesPerPartition must be an integer from 1 to ${FETCH_BYTES_MAX}, got ${FETCH_BYTES_MAX + 1}` });
    // At the limit it reads.
    const name = await topic(1);
    await produce(name, 0, 2);
    const reader = consumer({ maxBytesPerPartition: FETCH_BYTES_MAX, resetPolicy: 'earliest' });
    reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 2)).map(valueOf)).toEqual(['0-0', '0-1']);
  });

  it("refuses a partition the wire's int32 cannot carry (it would read the partition its low bits name)", async () => {
    const name = await topic(1);
    const reader = consumer({ resetPolicy: 'earliest' });
    expect(() => reader.assign([{ topic: name, partition: 2 ** 32 }])).toThrow('partition must be an integer from 0 to 2147483647, got 4294967296');
    expect(reader.assignment()).toEqual([]);
  });

  it('assign refuses what is not a list of partitions, and a topic name that can never exist, rather than retrying it for ever', async () => {
    const reader = consumer();
    expect(() => reader.assign('a-topic' as unknown as [])).toThrow('assign takes an array of { topic, partition }');
    expect(() => reader.assign([undefined] as unknown as [])).toThrow('assign takes an array of { topic, partition }');
    expect(() => reader.assign([{ topic: 'bad name', partition: 0 }])).toThrow('topic name "bad name" has characters outside [a-zA-Z0-9._-]');
  });
});

describe('start positions', () => {
  it('assign + seek starts at the sought offset; position follows what was yielded', async () => {
    const name = await topic(1);
    await produce(name, 0, 20);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    reader.seek(name, 0, 5);
    expect(reader.position(name, 0)).toBe(5);
    const records = await take(reader, 15);
    expect(records.map((record) => record.offset)).toEqual(Array.from({ length: 15 }, (_, index) => index + 5));
    expect(records[0]).toMatchObject({ topic: name, partition: 0, offset: 5 });
    expect(records[0]!.key!.toString()).toBe('k5');
    expect(valueOf(records[0]!)).toBe('0-5');
    expect(records[0]!.headers.map((header) => [header.key, header.value?.toString()])).toEqual([['n', '5']]);
    expect(records[0]!.timestamp).toBeGreaterThan(0);
    expect(reader.position(name, 0)).toBe(20);
  });

  it("'earliest' starts at the log start, 'latest' at the end", async () => {
    const name = await topic(1);
    await produce(name, 0, 10);
    const early = consumer({ resetPolicy: 'earliest' });
    const late = consumer({ resetPolicy: 'latest' });
    const [earlyStart, lateStart] = [once(early, 'partitionStarted'), once(late, 'partitionStarted')];
    await early.assign([{ topic: name, partition: 0 }]);
    await late.assign([{ topic: name, partition: 0 }]);
    expect(((await earlyStart)[0] as TopicPartitionOffset).offset).toBe(0);
    expect(((await lateStart)[0] as TopicPartitionOffset).offset).toBe(10);
    await produce(name, 0, 3, 10);
    expect((await take(early, 13)).map((record) => record.offset)).toEqual(Array.from({ length: 13 }, (_, index) => index));
    expect((await take(late, 3)).map(valueOf)).toEqual(['0-10', '0-11', '0-12']);
  });

  it('initialPosition (the group hook) wins over the reset policy', async () => {
    const name = await topic(1);
    await produce(name, 0, 10);
    const asked: string[] = [];
    const reader = consumer({
      resetPolicy: 'latest',
      initialPosition: ({ topic: t, partition }) => {
        asked.push(`${t}-${partition}`);
        return 7;
      },
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 3)).map((record) => record.offset)).toEqual([7, 8, 9]);
    expect(asked).toEqual([`${name}-0`]);
  });

  it('initialPosition returning something other than an offset or null is a fetchError that says so, for as long as it does', async () => {
    const name = await topic(1);
    await produce(name, 0, 3);
    const answers: unknown[] = [-1, '1', 1.5];
    const reader = consumer({ retryBackoffMs: 10, retryBackoffMaxMs: 10, initialPosition: () => (answers.shift() ?? 1) as number });
    const errors: string[] = [];
    reader.on('fetchError', (event: FetchErrorEvent) => errors.push(`${event.error.code}: ${event.error.message}`));
    await reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 2)).map((record) => record.offset)).toEqual([1, 2]);
    const told = (returned: string): string => `INVALID_ARGUMENT: initialPosition returned ${returned} for ${name}-0: it must return an offset (a non-negative integer), or null for the reset policy`;
    expect(errors).toEqual([told('-1'), told('"1"'), told('1.5')]);
  });

  it('an offset out of range applies the reset policy and says so', async () => {
    const name = await topic(1);
    await produce(name, 0, 4);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    const reset = once(reader, 'offsetReset');
    reader.seek(name, 0, 1_000);
    const event = (await reset)[0] as OffsetResetEvent;
    expect(event).toMatchObject({ topic: name, partition: 0, offset: 1_000, resetTo: 0, policy: 'earliest' });
    expect(event.reason).toContain('out of range');
    expect((await take(reader, 4)).map((record) => record.offset)).toEqual([0, 1, 2, 3]);
  });
});

describe('a topic deleted and created again', () => {
  it("forgets the deleted topic's position: the topic created under its name is read from its first record, not from the old offsets", async () => {
    const name = await topic(1);
    await produce(name, 0, 5);
    // Once the topic is deleted, the consumer's next calls wait here until it exists again with records.
    const gate: { held: Promise<void> | null } = { held: null };
    const held = holdCalls(['/strata.v1.Log/Subscribe', '/strata.v1.Log/ListOffsets'], gate);
    const reader = consumer({ resetPolicy: 'earliest', retryBackoffMs: 5, retryBackoffMaxMs: 5, interceptors: [held] });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 5)).map(valueOf)).toEqual(['0-0', '0-1', '0-2', '0-3', '0-4']);
    let release = (): void => undefined;
    gate.held = new Promise<void>((resolve) => (release = resolve));
    const gone = new Promise<FetchErrorEvent>((resolve) => {
      reader.on('fetchError', (event: FetchErrorEvent) => {
        if (event.error.code === 'NOT_FOUND') resolve(event);
      });
    });
    await fixture.admin.deleteTopic(name);
    expect((await gone).error.message).toContain('deleted');
    await fixture.admin.createTopic(name, { partitions: 1 });
    await produce(name, 0, 8, 100); // more records than the old topic had: offset 5 exists again
    gate.held = null;
    release();
    const batch = await reader.nextBatch({ timeoutMs: 10_000 });
    expect(batch?.records[0]?.offset).toBe(0);
    expect(valueOf(batch!.records[0]!)).toBe('0-100');
    expect(reader.position(name, 0)).toBe(batch!.records.at(-1)!.offset + 1);
  });
});

describe('a topic deleted and created again while no stream of the consumer was open', () => {
  it('is told from the topic its position belongs to: the new topic is read from its first record, not from the old offset', async () => {
    const name = await topic(1);
    await produce(name, 0, 5);
    // The stream breaks (UNAVAILABLE, as at a broker restart) after the first message; the next
    // Subscribe then waits while the topic is deleted and created again, with more records than before.
    const gate: { held: Promise<void> | null } = { held: null };
    const reader = consumer({
      resetPolicy: 'earliest',
      retryBackoffMs: 5,
      retryBackoffMaxMs: 5,
      interceptors: [failFirstCallAfter('/strata.v1.Log/Subscribe', 1, status.UNAVAILABLE, { failed: 0 }), holdCalls(['/strata.v1.Log/Subscribe'], gate)],
    });
    let release = (): void => undefined;
    const broken = new Promise<FetchErrorEvent>((resolve) => {
      reader.once('fetchError', (event: FetchErrorEvent) => {
        gate.held = new Promise<void>((resolve) => (release = resolve));
        resolve(event);
      });
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 5)).map(valueOf)).toEqual(['0-0', '0-1', '0-2', '0-3', '0-4']);
    expect((await broken).error.code).toBe('UNAVAILABLE');
    await fixture.admin.deleteTopic(name);
    await fixture.admin.createTopic(name, { partitions: 1 });
    await produce(name, 0, 8, 100);
    const gone = new Promise<FetchErrorEvent>((resolve) => reader.once('fetchError', resolve));
    gate.held = null;
    release();
    expect((await gone).error).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(new RegExp(`^topic "${name}" created at .+ is gone; the topic of that name now was created at `)) });
    const batch = await reader.nextBatch({ timeoutMs: 10_000 });
    expect(batch?.records.map(valueOf)).toEqual(['0-100', '0-101', '0-102', '0-103', '0-104', '0-105', '0-106', '0-107']);
  });
});

describe('a deleted topic, while its partition waits to subscribe again', () => {
  it("commits none of the deleted topic's positions, even once a topic of the name exists again", async () => {
    const name = await topic(1);
    await produce(name, 0, 5);
    const groupId = `gone-${name}`;
    // A long backoff: the partition stays in its wait after the NOT_FOUND while the test commits.
    const reader = consumer({ groupId, autoCommit: false, resetPolicy: 'earliest', retryBackoffMs: 120_000, retryBackoffMaxMs: 120_000 });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect(await take(reader, 5)).toHaveLength(5);
    const gone = once(reader, 'fetchError');
    await fixture.admin.deleteTopic(name);
    expect(((await gone)[0] as FetchErrorEvent).error.code).toBe('NOT_FOUND');
    await fixture.admin.createTopic(name, { partitions: 1 });
    await reader.commit();
    expect(await fixture.admin.fetchOffsets(groupId)).toEqual([]);
  });

  it("has the broker refuse a commit of the deleted topic's position that the consumer makes before it hears of the deletion", async () => {
    const name = await topic(1);
    await produce(name, 0, 5);
    const groupId = `unheard-${name}`;
    // The Subscribe's end (NOT_FOUND, at the deletion) reaches the consumer only when the test lets it.
    let release = (): void => undefined;
    const gate: { held: Promise<void> | null } = { held: new Promise<void>((resolve) => (release = resolve)) };
    const reader = consumer({ groupId, autoCommit: false, resetPolicy: 'earliest', retryBackoffMs: 5, retryBackoffMaxMs: 5, interceptors: [holdStatus('/strata.v1.Log/Subscribe', gate)] });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect(await take(reader, 3)).toHaveLength(3);
    await fixture.admin.deleteTopic(name);
    await fixture.admin.createTopic(name, { partitions: 1 });
    await produce(name, 0, 8, 100);
    // The consumer still takes offset 3 for its position in the topic it read.
    expect(reader.position(name, 0)).toBe(3);
    const refused = await reader.commit().then(
      () => null,
      (error: unknown) => error as StrataClientError,
    );
    expect(refused).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(new RegExp(`^topic "${name}" created at .+ is gone; the topic of that name now was created at `)) });
    expect(await fixture.admin.fetchOffsets(groupId)).toEqual([]);
    gate.held = null;
    release();
    // What it fetched of the old topic before the deletion comes first, then the new topic from its first record.
    const values: string[] = [];
    while (!values.includes('0-107')) {
      const batch = await reader.nextBatch({ timeoutMs: 10_000 });
      if (batch === null) break;
      values.push(...batch.records.map(valueOf));
    }
    const old = values.filter((value) => Number(value.slice(2)) < 100);
    expect(old).toEqual(['0-3', '0-4'].slice(0, old.length));
    expect(values.slice(old.length)).toEqual(['0-100', '0-101', '0-102', '0-103', '0-104', '0-105', '0-106', '0-107']);
  });

  it("keeps the topicCreatedAtMs of offsets the application commits: a position named by a deleted topic's creation time is refused", async () => {
    const name = await topic(1);
    await produce(name, 0, 3);
    const before = (await fixture.admin.describeTopic(name)).createdAtMs;
    const groupId = `explicit-${name}`;
    const reader = consumer({ groupId, autoCommit: false });
    await fixture.admin.deleteTopic(name);
    await fixture.admin.createTopic(name, { partitions: 1 });
    await produce(name, 0, 3, 100);
    const refused = await reader.commit([{ topic: name, partition: 0, offset: 2, topicCreatedAtMs: before }]).then(
      () => null,
      (error: unknown) => error as StrataClientError,
    );
    expect(refused?.code).toBe('NOT_FOUND');
    expect(await fixture.admin.fetchOffsets(groupId)).toEqual([]);
    await reader.commit([{ topic: name, partition: 0, offset: 2 }]);
    expect((await fixture.admin.fetchOffsets(groupId)).map(({ offset }) => offset)).toEqual([2]);
  });

  it('keeps a position the application sought on a partition that does not exist yet', async () => {
    const name = fixture.newTopicName(); // created below, after the consumer asked for it
    // After the first NOT_FOUND, the next Subscribe waits until the topic exists with its records.
    const gate: { held: Promise<void> | null } = { held: null };
    const reader = consumer({ resetPolicy: 'earliest', retryBackoffMs: 5, retryBackoffMaxMs: 5, interceptors: [holdCalls(['/strata.v1.Log/Subscribe'], gate)] });
    await reader.assign([{ topic: name, partition: 0 }]);
    reader.seek(name, 0, 3);
    let release = (): void => undefined;
    const missing = new Promise<FetchErrorEvent>((resolve) => {
      reader.once('fetchError', (event: FetchErrorEvent) => {
        gate.held = new Promise<void>((resolve) => (release = resolve));
        resolve(event);
      });
    });
    expect((await missing).error.code).toBe('NOT_FOUND');
    await fixture.admin.createTopic(name, { partitions: 1 });
    await produce(name, 0, 5);
    gate.held = null;
    release();
    const batch = await reader.nextBatch({ timeoutMs: 10_000 });
    expect(batch?.records.map((record) => record.offset)).toEqual([3, 4]);
  });
});

describe('a reset after records were fetched', () => {
  it('delivers the records fetched before an offset out of range, then applies the reset policy', async () => {
    const name = await topic(1);
    for (let batch = 0; batch < 3; batch++) await produce(name, 0, 4, batch * 4);
    // One batch a message; the first stream ends with OUT_OF_RANGE after two of them.
    const stats = { failed: 0 };
    const reader = consumer({ resetPolicy: 'earliest', maxBytesPerPartition: 1, prefetchBatches: 4, interceptors: [failFirstCallAfter('/strata.v1.Log/Subscribe', 2, status.OUT_OF_RANGE, stats)] });
    const delivered: number[] = [];
    const resetsAfter: number[] = [];
    reader.on('offsetReset', () => resetsAfter.push(delivered.length));
    await reader.assign([{ topic: name, partition: 0 }]);
    // The application takes nothing until the failure has come: the reset then waits for the
    // two chunks fetched before it (or, were it not held, has dropped them already).
    const waitingResets = (): number => (reader as unknown as { drainWaiters?: Set<unknown> }).drainWaiters?.size ?? 0;
    const held = waitUntil(() => stats.failed === 1 && waitingResets() === 1, 'the reset to be held for the fetched records');
    await Promise.race([held, once(reader, 'offsetReset')]);
    for await (const record of reader) {
      delivered.push(record.offset);
      if (delivered.length === 20) break;
      await fixture.admin.describeTopic(name); // the application's own I/O: the reset's lookup may land meanwhile
    }
    expect(delivered).toEqual([...Array(8).keys(), ...Array(12).keys()]); // the reset goes to the earliest
    expect(resetsAfter).toEqual([8]);
  });

  it('a stream subscribed again while the fetched chunks wait starts paused: no more than prefetchBatches wait', async () => {
    const name = await topic(1);
    for (let batch = 0; batch < 4; batch++) await produce(name, 0, 4, batch * 4);
    const stats = { failed: 0 };
    let subscribes = 0;
    const countSubscribes: Interceptor = (options, nextCall) => {
      if (options.method_definition.path === '/strata.v1.Log/Subscribe') subscribes++;
      return new InterceptingCall(nextCall(options));
    };
    const reader = consumer({
      resetPolicy: 'earliest',
      maxBytesPerPartition: 1,
      prefetchBatches: 2,
      retryBackoffMs: 5,
      interceptors: [countSubscribes, failFirstCallAfter('/strata.v1.Log/Subscribe', 2, status.UNAVAILABLE, stats)],
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    const waiting = (): number => (reader as unknown as { fetchers: Map<string, { waitingChunks: number }> }).fetchers.get(`0:${name}`)!.waitingChunks;
    await waitUntil(() => stats.failed === 1 && subscribes === 2 && waiting() === 2, 'the partition to be subscribed again');
    expect(await plateau(waiting, 200)).toBe(2);
    expect((await take(reader, 16)).map((record) => record.offset)).toEqual([...Array(16).keys()]);
  });
});

describe('delivery', () => {
  it('iterates across partitions, each in offset order', async () => {
    const name = await topic(3);
    for (let partition = 0; partition < 3; partition++) await produce(name, partition, 30);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([0, 1, 2].map((partition) => ({ topic: name, partition })));
    const records = await take(reader, 90);
    for (let partition = 0; partition < 3; partition++) {
      const mine = records.filter((record) => record.partition === partition);
      expect(mine.map(valueOf)).toEqual(Array.from({ length: 30 }, (_, index) => `${partition}-${index}`));
      expect(reader.position(name, partition)).toBe(30);
    }
    // New records keep coming through the same consumer.
    await produce(name, 1, 2, 30);
    expect((await take(reader, 2)).map(valueOf)).toEqual(['1-30', '1-31']);
  });

  it('the batch API returns one partition at a time and advances positions', async () => {
    const name = await topic(2);
    await produce(name, 0, 5);
    await produce(name, 1, 7);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    const seen = new Map<number, number[]>();
    for await (const batch of reader.batches()) {
      expect(batch.topic).toBe(name);
      expect(batch.records.every((record) => record.partition === batch.partition)).toBe(true);
      expect(batch.highWatermark).toBe(batch.partition === 0 ? 5 : 7);
      seen.set(batch.partition, [...(seen.get(batch.partition) ?? []), ...batch.records.map((record) => record.offset)]);
      expect(reader.position(name, batch.partition)).toBe(batch.records[batch.records.length - 1]!.offset + 1);
      if ((seen.get(0)?.length ?? 0) + (seen.get(1)?.length ?? 0) === 12) break;
    }
    expect(seen.get(0)).toEqual([0, 1, 2, 3, 4]);
    expect(seen.get(1)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(await reader.nextBatch({ timeoutMs: 0 })).toBeNull();
  });

  it('nextBatch waits out a timeout longer than Node.js timers take (no timer over their limit, so none every millisecond), and refuses one that is not a duration', async () => {
    const name = await topic(1);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    await expect(reader.nextBatch({ timeoutMs: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'timeoutMs must be a number of milliseconds, 0 or more (Infinity: no timeout), got -1' });
    await expect(reader.nextBatch({ timeoutMs: Number.NaN })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const delays: number[] = [];
    const setTimer = globalThis.setTimeout;
    const spy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((callback: () => void, delayMs?: number) => {
      delays.push(delayMs ?? 0);
      return setTimer(callback, delayMs);
    }) as typeof setTimeout);
    try {
      const pending = reader.nextBatch({ timeoutMs: Number.MAX_SAFE_INTEGER });
      await waitUntil(() => delays.includes(TIMER_DELAY_MAX_MS), 'the wait for records to be timed');
      await produce(name, 0, 1);
      expect((await pending)!.records.map((record) => record.offset)).toEqual([0]);
      expect(delays.filter((delayMs) => delayMs > TIMER_DELAY_MAX_MS)).toEqual([]);
    } finally {
      spy.mockRestore();
    }
  });

  it('skips the records below the position inside a fetched batch', async () => {
    const name = await topic(1);
    await produce(name, 0, 10); // one batch: offsets 0..9
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    reader.seek(name, 0, 6);
    const batch = await reader.nextBatch();
    expect(batch!.records.map((record) => record.offset)).toEqual([6, 7, 8, 9]);
    expect(batch!.records.map(valueOf)).toEqual(['0-6', '0-7', '0-8', '0-9']);
  });

  it('leaving the loop early keeps the rest of the batch for the next read', async () => {
    const name = await topic(1);
    await produce(name, 0, 10);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 4)).map((record) => record.offset)).toEqual([0, 1, 2, 3]);
    expect(reader.position(name, 0)).toBe(4);
    expect((await reader.nextBatch())!.records.map((record) => record.offset)).toEqual([4, 5, 6, 7, 8, 9]);
  });

  it('seek drops what was prefetched and rereads from the new position', async () => {
    const name = await topic(1);
    await produce(name, 0, 6);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 6)).map((record) => record.offset)).toEqual([0, 1, 2, 3, 4, 5]);
    reader.seek(name, 0, 2);
    expect((await take(reader, 4)).map((record) => record.offset)).toEqual([2, 3, 4, 5]);
  });

  it('seekToTime moves to the first record stamped at or after the time, or to the end when none is', async () => {
    const name = await topic(1);
    const stamped = Array.from({ length: 6 }, (_, index) => fixture.producer.send({ topic: name, partition: 0, value: `at-${index}`, timestamp: 1_700_000_000_000 + index * 1_000 }));
    await fixture.producer.flush();
    await Promise.all(stamped);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect((await take(reader, 6)).map(valueOf)).toEqual(['at-0', 'at-1', 'at-2', 'at-3', 'at-4', 'at-5']);
    expect(await reader.seekToTime(name, 0, 1_700_000_002_500)).toBe(3);
    expect((await take(reader, 3)).map(valueOf)).toEqual(['at-3', 'at-4', 'at-5']);
    expect(await reader.seekToTime(name, 0, 1_800_000_000_000)).toBe(6);
    await produce(name, 0, 1, 6);
    expect((await take(reader, 1)).map((record) => record.offset)).toEqual([6]);
    const refusals = await Promise.allSettled([reader.seekToTime(name, 0, -1), reader.seekToTime(name, 1, 0)]);
    expect(refusals.map((result) => (result.status === 'rejected' ? (result.reason as StrataClientError).code : 'ok'))).toEqual(['INVALID_ARGUMENT', 'FAILED_PRECONDITION']);
  });

  it("with resetPolicy 'none', a partition with no position fetches nothing and says so until the application seeks it", async () => {
    const name = await topic(1);
    await produce(name, 0, 4);
    const reader = consumer({ resetPolicy: 'none' });
    const errors: FetchErrorEvent[] = [];
    reader.on('fetchError', (event: FetchErrorEvent) => errors.push(event));
    await reader.assign([{ topic: name, partition: 0 }]);
    await waitUntil(() => errors.length === 1, 'the partition to report that it waits for a seek');
    expect(errors[0]!.error.code).toBe('OUT_OF_RANGE');
    expect(errors[0]!.error.message).toBe(`${name}-0 has no position to start from (no committed offset) and resetPolicy is 'none': it fetches nothing until seek() gives it an offset`);
    expect(await reader.nextBatch({ timeoutMs: 200 })).toBeNull();
    expect(reader.position(name, 0)).toBeNull();
    reader.seek(name, 0, 1);
    expect((await take(reader, 3)).map((record) => record.offset)).toEqual([1, 2, 3]);
    // An offset outside the log is not reset either: it waits for another seek.
    reader.seek(name, 0, 99);
    await waitUntil(() => errors.length === 2, 'the out-of-range offset to be reported');
    expect(errors[1]!.error.message).toMatch(new RegExp(`^${name}-0: .*; resetPolicy is 'none': it fetches nothing until seek\\(\\) gives it an offset$`));
    reader.seek(name, 0, 0);
    expect((await take(reader, 1)).map((record) => record.offset)).toEqual([0]);
    expect(errors).toHaveLength(2);
  });

  it('decodes gzip-compressed batches', async () => {
    const name = await topic(1);
    const zipper = new Producer({ server: fixture.broker.address, compression: 'gzip', lingerMs: 60_000 });
    const sends = Array.from({ length: 50 }, (_, index) => zipper.send({ topic: name, value: `zip-${index}-${'z'.repeat(100)}` }));
    await zipper.close();
    await Promise.all(sends);
    const reader = consumer({ resetPolicy: 'earliest' });
    await reader.assign([{ topic: name, partition: 0 }]);
    const records = await take(reader, 50);
    expect(records.map(valueOf)).toEqual(Array.from({ length: 50 }, (_, index) => `zip-${index}-${'z'.repeat(100)}`));
  });
});

describe('assignment', () => {
  it('abort() ends a close() that waits on a beforeRevoke hook that never settles', async () => {
    const name = await topic(1);
    let hookCalled: () => void = () => undefined;
    const called = new Promise<void>((resolve) => (hookCalled = resolve));
    const reader = consumer({
      resetPolicy: 'earliest',
      beforeRevoke: () => {
        hookCalled();
        return new Promise<void>(() => undefined); // a hook with a bug: it never settles
      },
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    let closed = false;
    const closing = reader.close().then(() => (closed = true));
    await called;
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    await reader.abort();
    await closing;
    expect(closed).toBe(true);
  });

  it('close() called from a beforeRevoke hook of an assign() does not wait for that hook: both end', async () => {
    const name = await topic(2);
    await produce(name, 1, 2);
    const groupId = `closing-from-hook-${name}`;
    let reader: Consumer;
    reader = consumer({
      groupId,
      resetPolicy: 'earliest',
      beforeRevoke: async (positions) => {
        if (positions.some(({ partition }) => partition === 1)) await reader.close();
      },
    });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    expect(await take(reader, 2)).toHaveLength(2);
    const failed: CommitFailedEvent[] = [];
    reader.on('commitFailed', (event: CommitFailedEvent) => failed.push(event));
    await reader.assign([{ topic: name, partition: 0 }]);
    await reader.close();
    // The close committed what it revoked itself; the hook's own revocation commits after the
    // close has ended, and is refused.
    expect((await fixture.admin.fetchOffsets(groupId)).map(({ partition, offset }) => ({ partition, offset }))).toEqual([{ partition: 0, offset: 0 }]);
    expect(failed.map(({ offsets }) => offsets)).toEqual([[{ topic: name, partition: 1, offset: 2, topicCreatedAtMs: expect.any(Number) }]]);
  });

  it("close() after a partition was assigned again while assign()'s revocation of it ran commits the newer position last", async () => {
    const name = await topic(1);
    await produce(name, 0, 3);
    const groupId = `reassigned-${name}`;
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let revocations = 0;
    const reader = consumer({
      groupId,
      resetPolicy: 'earliest',
      beforeRevoke: async () => {
        if (++revocations === 1) await released; // the first revocation's hook is slow
      },
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect(await take(reader, 1)).toHaveLength(1);
    const revoking = reader.assign([]); // position 1, its hook held
    await reader.assign([{ topic: name, partition: 0 }]); // from the committed offset: none yet, so earliest
    expect((await take(reader, 3)).map((record) => record.offset)).toEqual([0, 1, 2]);
    const closing = reader.close();
    release();
    await Promise.all([revoking, closing]);
    expect((await fixture.admin.fetchOffsets(groupId)).map(({ offset }) => offset)).toEqual([3]);
  });

  it("close() waits for a revocation assign() started: the revoked partition's position is committed too", async () => {
    const name = await topic(2);
    await produce(name, 0, 2);
    await produce(name, 1, 3);
    const groupId = `closing-${name}`;
    let hookCalled: () => void = () => undefined;
    const called = new Promise<void>((resolve) => (hookCalled = resolve));
    let closing: Promise<void> = Promise.resolve();
    let closeCalled: () => void = () => undefined;
    const closeStarted = new Promise<void>((resolve) => (closeCalled = resolve));
    let closed = false;
    let closedFirst = false;
    const reader = consumer({
      groupId,
      resetPolicy: 'earliest',
      beforeRevoke: async (positions) => {
        if (!positions.some(({ partition }) => partition === 1)) return;
        hookCalled();
        // The application finishing its work on partition 1 after close() was called: a close
        // that does not wait for it ends first (a wait far longer than its own few calls).
        await closeStarted;
        await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 500))]);
        closedFirst = closed;
      },
    });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    expect(await take(reader, 5)).toHaveLength(5);
    const reassigned = reader.assign([{ topic: name, partition: 0 }]);
    await called;
    closing = reader.close().then(() => void (closed = true));
    closeCalled();
    await Promise.all([reassigned, closing]);
    expect(closedFirst).toBe(false);
    const committed = await fixture.admin.fetchOffsets(groupId);
    expect(committed.map(({ partition, offset }) => ({ partition, offset })).sort((a, b) => a.partition - b.partition)).toEqual([
      { partition: 0, offset: 2 },
      { partition: 1, offset: 3 },
    ]);
  });

  it("a revocation and close() do not wait for a partition's start lookup still under way (here a hook that never settles)", async () => {
    const name = await topic(1);
    let lookups = 0;
    let lookedUp: () => void = () => undefined;
    const looking = new Promise<void>((resolve) => (lookedUp = resolve));
    const reader = consumer({
      initialPosition: () => {
        lookups++;
        lookedUp();
        return new Promise<number>(() => undefined); // a committed offset that never comes back
      },
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    await looking;
    await reader.assign([]); // released at once, not after the lookup
    expect(reader.assignment()).toEqual([]);
    await reader.assign([{ topic: name, partition: 0 }]);
    // The partition assigned again starts a lookup of its own, not held up by the first.
    await waitUntil(() => lookups === 2, 'the second start lookup');
    await reader.close();
    expect(lookups).toBe(2);
  });

  it("a beforeRevoke hook that throws in assign()'s revocation is logged, though the caller does not await assign()", async () => {
    const name = await topic(2);
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(`${JSON.parse(line).msg}: ${JSON.parse(line).err?.message}`) });
    const reader = consumer({
      logger,
      beforeRevoke: () => {
        throw new Error('a bug in the hook');
      },
    });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    const released = reader.assign([{ topic: name, partition: 1 }]); // not awaited, as an application may do
    await waitUntil(() => warnings.length > 0, 'a warning');
    expect(warnings).toEqual(['beforeRevoke failed while assign() released partitions: a bug in the hook']);
    await expect(released).rejects.toThrow('a bug in the hook'); // and the promise still says so
  });

  it('assign replaces the assignment; revoked positions reach beforeRevoke before release, named by the topic they were read from', async () => {
    const name = await topic(2);
    const { createdAtMs } = await fixture.admin.describeTopic(name);
    await produce(name, 0, 3);
    await produce(name, 1, 3);
    const revoked: TopicPartitionOffset[][] = [];
    const reader = consumer({
      resetPolicy: 'earliest',
      beforeRevoke: (positions) => {
        // Still assigned while the hook runs? No: fetching stopped, but positions are final.
        revoked.push(positions);
      },
    });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    const first = await take(reader, 6);
    expect(first).toHaveLength(6);
    await reader.assign([{ topic: name, partition: 1 }]);
    // Its creation time too: committed by the hook, a position of a topic deleted and created again meanwhile is refused.
    expect(revoked).toEqual([[{ topic: name, partition: 0, offset: 3, topicCreatedAtMs: createdAtMs }]]);
    expect(reader.assignment()).toEqual([{ topic: name, partition: 1 }]);
    expect(() => reader.position(name, 0)).toThrow(StrataClientError);
    await produce(name, 0, 2, 3);
    await produce(name, 1, 1, 3);
    expect((await take(reader, 1)).map(valueOf)).toEqual(['1-3']);
    expect(await reader.nextBatch({ timeoutMs: 0 })).toBeNull();
  });

  it('addAssignment and revokeAssignment work incrementally (the group component path)', async () => {
    const name = await topic(2);
    await produce(name, 0, 2);
    await produce(name, 1, 2);
    const revoked: TopicPartitionOffset[][] = [];
    const reader = consumer({ resetPolicy: 'earliest', beforeRevoke: (positions) => void revoked.push(positions) });
    reader.addAssignment([{ topic: name, partition: 0 }]);
    reader.addAssignment([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    expect(reader.assignment()).toHaveLength(2);
    expect(await take(reader, 4)).toHaveLength(4);
    await reader.revokeAssignment([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    expect(revoked).toEqual([
      [
        { topic: name, partition: 0, offset: 2, topicCreatedAtMs: expect.any(Number) },
        { topic: name, partition: 1, offset: 2, topicCreatedAtMs: expect.any(Number) },
      ],
    ]);
    expect(reader.assignment()).toEqual([]);
  });
});

describe('assignment while a revocation is under way', () => {
  it('a partition assigned again before its revocation finished is fetched, not dropped', async () => {
    const name = await topic(1);
    await produce(name, 0, 2);
    let releaseRevoke!: () => void;
    const revoking = new Promise<void>((resolve) => (releaseRevoke = resolve));
    const reader = consumer({ resetPolicy: 'earliest', beforeRevoke: () => revoking });
    await reader.assign([{ topic: name, partition: 0 }]);
    const first = reader.assign([]);
    await reader.assign([{ topic: name, partition: 0 }]);
    releaseRevoke();
    await first;
    expect(reader.assignment()).toEqual([{ topic: name, partition: 0 }]);
    expect((await take(reader, 2)).map(valueOf)).toEqual(['0-0', '0-1']);
  });
});

describe('fetch failures in the log', () => {
  it('are logged at most a line a second for the whole consumer, naming how many failed since; each is still a fetchError', async () => {
    const name = await topic(20);
    const lines: { msg: string; othersSinceLastLine?: number }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    // Every Subscribe is refused at once, as by a broker going away: all twenty partitions fail together, again and again.
    const refuseAll: Interceptor = (options, nextCall) => {
      const call = nextCall(options);
      if (options.method_definition.path !== '/strata.v1.Log/Subscribe') return new InterceptingCall(call);
      return new InterceptingCall(call, {
        start(_metadata, listener) {
          setImmediate(() => listener.onReceiveStatus({ code: status.UNAVAILABLE, details: 'injected: broker away', metadata: new Metadata() }));
        },
      });
    };
    const reader = consumer({ logger, retryBackoffMs: 5, retryBackoffMaxMs: 5, interceptors: [refuseAll] });
    let failures = 0;
    reader.on('fetchError', () => void failures++);
    await reader.assign(Array.from({ length: 20 }, (_, partition) => ({ topic: name, partition })));
    await waitUntil(() => failures >= 60, 'sixty fetch failures');
    await reader.close();
    const logged = lines.filter((line) => line.msg === 'fetching failed; subscribing again after a backoff');
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.length).toBeLessThan(failures / 10);
    expect(logged.slice(1).every((line) => (line.othersSinceLastLine ?? 0) > 0)).toBe(true);
  });
});

describe('event listeners', () => {
  it('a throwing fetchError listener is logged; the partition is subscribed again and its records arrive', async () => {
    const name = await topic(1);
    await produce(name, 0, 3);
    const refuseFirstSubscribe = refuseFirstCall('/strata.v1.Log/Subscribe', status.UNAVAILABLE, { refused: 0 });
    const reader = consumer({ resetPolicy: 'earliest', retryBackoffMs: 5, interceptors: [refuseFirstSubscribe] });
    let thrown = 0;
    reader.on('fetchError', () => {
      thrown++;
      throw new Error('a listener bug');
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    const records: ConsumerRecord[] = [];
    while (records.length < 3) {
      const batch = await reader.nextBatch({ timeoutMs: 10_000 });
      if (batch === null) break;
      records.push(...batch.records);
    }
    expect(records.map(valueOf)).toEqual(['0-0', '0-1', '0-2']);
    expect(thrown).toBe(1);
  });

  it('a seek from a fetchError listener starts over at once, without waiting out the backoff', async () => {
    const name = await topic(1);
    await produce(name, 0, 2);
    const refuseFirstSubscribe = refuseFirstCall('/strata.v1.Log/Subscribe', status.UNAVAILABLE, { refused: 0 });
    const reader = consumer({ resetPolicy: 'latest', retryBackoffMs: 120_000, retryBackoffMaxMs: 120_000, interceptors: [refuseFirstSubscribe] });
    reader.on('fetchError', () => reader.seek(name, 0, 0)); // 'latest' started it at the end
    await reader.assign([{ topic: name, partition: 0 }]);
    const batch = await reader.nextBatch({ timeoutMs: 30_000 }); // far less than the 2-minute backoff
    expect(batch?.records.map(valueOf)).toEqual(['0-0', '0-1']);
  });

  it('automatic commits send positions that have not moved again once autoCommitRefreshMs has passed, so the broker does not expire them', async () => {
    const name = await topic(1);
    await produce(name, 0, 2);
    const created = performance.now();
    const reader = consumer({ groupId: `refresh-${name}`, resetPolicy: 'earliest', autoCommitIntervalMs: 20, autoCommitRefreshMs: 300 });
    const commits: TopicPartitionOffset[][] = [];
    const committedAt: number[] = [];
    reader.on('offsetsCommitted', ({ offsets }: { offsets: TopicPartitionOffset[] }) => {
      commits.push(offsets);
      committedAt.push(performance.now());
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    await take(reader, 2);
    // The moved position is committed at the next interval; later intervals (every 20 ms) send
    // nothing until the refresh, 300 ms after the consumer was made, sends the same position again.
    // (Offset 1 may be committed first: an interval can come between the two records.)
    const position = [{ topic: name, partition: 0, offset: 2 }];
    const atPosition = (): number[] => commits.flatMap((offsets, index) => (JSON.stringify(offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset }))) === JSON.stringify(position) ? [index] : []));
    await vi.waitFor(() => expect(atPosition().length).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 20 });
    const [first, again] = atPosition();
    expect(commits.slice(0, first).every((offsets) => offsets.every(({ offset }) => offset < 2))).toBe(true);
    expect(committedAt[again!]! - created).toBeGreaterThanOrEqual(300); // not sent again at the next intervals
  });

  it('a throwing offsetsCommitted listener does not make a commit that succeeded fail', async () => {
    const name = await topic(1);
    await produce(name, 0, 1);
    const reader = consumer({ groupId: `throwing-listener-${name}`, resetPolicy: 'earliest', autoCommit: false });
    reader.on('offsetsCommitted', () => {
      throw new Error('a listener bug');
    });
    await reader.assign([{ topic: name, partition: 0 }]);
    await take(reader, 1);
    await reader.commit([{ topic: name, partition: 0, offset: 1 }]);
    expect(await fixture.admin.fetchOffsets(`throwing-listener-${name}`)).toMatchObject([{ topic: name, partition: 0, offset: 1 }]);
  });
});

describe('lifecycle', () => {
  it('close ends a waiting iteration, is idempotent, and refuses later calls', async () => {
    const name = await topic(1);
    const reader = consumer({ resetPolicy: 'latest' });
    const started = once(reader, 'partitionStarted');
    await reader.assign([{ topic: name, partition: 0 }]);
    await started;
    const iteration = (async () => {
      const records: ConsumerRecord[] = [];
      for await (const record of reader) records.push(record);
      return records;
    })();
    const pending = reader.nextBatch();
    await Promise.all([reader.close(), reader.close()]);
    expect(await iteration).toEqual([]);
    expect(await pending).toBeNull();
    expect(await reader.nextBatch()).toBeNull();
    expect(() => reader.seek(name, 0, 0)).toThrow(/closed/);
    expect(() => reader.assign([{ topic: name, partition: 0 }])).toThrow(StrataClientError);
    await reader.close();
  });
});

describe('subscribe streams', () => {
  it('a broken stream is resubscribed from the next offset: nothing lost, nothing repeated', async () => {
    const name = await topic(1);
    for (let batch = 0; batch < 5; batch++) await produce(name, 0, 10, batch * 10);
    // Break each of the first two streams right after its first pushed message.
    let broken = 0;
    const interceptor: Interceptor = (options, nextCall) => {
      const call = nextCall(options);
      if (options.method_definition.path !== '/strata.v1.Log/Subscribe') return new InterceptingCall(call);
      let messages = 0;
      return new InterceptingCall(call, {
        start(metadata, _listener, next) {
          next(metadata, {
            onReceiveMessage(message, nextMessage) {
              nextMessage(message);
              if (++messages === 1 && broken < 2) {
                broken++;
                call.cancelWithStatus(status.UNAVAILABLE, 'test: the connection was lost');
              }
            },
          });
        },
      });
    };
    const errors: FetchErrorEvent[] = [];
    // Small messages: one batch each, so a stream has more to push after its first.
    const reader = consumer({ resetPolicy: 'earliest', maxBytesPerPartition: 100, retryBackoffMs: 5, interceptors: [interceptor] });
    reader.on('fetchError', (event: FetchErrorEvent) => errors.push(event));
    await reader.assign([{ topic: name, partition: 0 }]);
    const records = await take(reader, 50);
    expect(records.map(valueOf)).toEqual(Array.from({ length: 50 }, (_, index) => `0-${index}`));
    expect(records.map((record) => record.offset)).toEqual(Array.from({ length: 50 }, (_, index) => index));
    expect(broken).toBe(2);
    expect(errors.map((event) => event.error.code)).toEqual(['UNAVAILABLE', 'UNAVAILABLE']);
  });

  it('a stream reads at most one message ahead of its consumer', async () => {
    const name = await topic(1);
    const connection = new Connection({ server: fixture.broker.address });
    try {
      const stream = connection.serverStream(methods.subscribe, v1.SubscribeRequest.create({ topic: name, raw: true }));
      expect(stream.readableHighWaterMark).toBeGreaterThan(1); // grpc-js's default
      limitReadAhead(stream);
      expect(stream.readableHighWaterMark).toBe(1);
      stream.on('error', () => undefined);
      stream.cancel();
    } finally {
      connection.close();
    }
  });
});
