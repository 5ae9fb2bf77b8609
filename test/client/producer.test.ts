// Goal: the client Producer delivers every record exactly once, in send order per partition, at
// the offsets it reports, with client-side partitioning, batching, bounded buffering and
// idempotent retries; method: a real in-process broker over real gRPC, the log read back as raw
// batches with Fetch, and grpc-js client interceptors that lose responses or requests or break
// the stream to force retries (no sleeps: waits are on promises the producer resolves).
import { InterceptingCall, type Interceptor, type Listener, Metadata, status } from '@grpc/grpc-js';
import Long from 'long';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { murmur2 } from '../../src/broker/partitioner.js';
import { Admin } from '../../src/client/admin.js';
import { BufferPool } from '../../src/client/buffer-pool.js';
import { StrataClientError } from '../../src/client/errors.js';
import { Connection, type ConnectionOptions } from '../../src/client/connection.js';
import { Producer, type ProducerOptions, type ProducerRecord, type ProducerRecoveredEvent, type ProducerRetryEvent, RECONFIRM_AFTER_IDLE_MS, type ProducerSettings, type SendResult } from '../../src/client/producer.js';
import type { strata } from '../../src/generated/strata.js';
import { type BatchHeader, type DecodedRecord, decodeRecords, forEachBatch, readBatchHeader } from '../../src/storage/record-batch.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { refuseFirstCall } from '../helpers/interceptors.js';
import { type TestBroker, removeDirectory, startTestBroker, unusedPort } from '../helpers/test-server.js';
import { waitUntil } from '../helpers/wait.js';

let broker: TestBroker;
let admin: Admin;
let wire: TestClient;
const producers: Producer[] = [];

beforeAll(async () => {
  broker = await startTestBroker();
  admin = new Admin({ server: broker.address });
  wire = new TestClient(broker.address);
});
afterAll(async () => {
  await Promise.all(producers.map((producer) => producer.close()));
  await admin?.close();
  wire?.close();
  await broker?.dispose();
});

function producer(options: ProducerSettings & Partial<ConnectionOptions> = {}): Producer {
  const created = new Producer({ server: broker.address, deadlineMs: 10_000, ...options } as ProducerOptions);
  producers.push(created);
  return created;
}

let topicCounter = 0;
async function topic(partitions: number, configs: Record<string, string> = {}): Promise<string> {
  const name = `producer-${++topicCounter}`;
  await admin.createTopic(name, { partitions, configs });
  return name;
}

interface LogContents {
  batches: BatchHeader[];
  records: DecodedRecord[];
}

/** Every batch and record of a partition up to its high watermark, read as raw batches. */
async function readLog(name: string, partition: number): Promise<LogContents> {
  const contents: LogContents = { batches: [], records: [] };
  let offset = 0;
  for (;;) {
    const response = await wire.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: name, partition, offset: Long.fromNumber(offset), raw: true }));
    const bytes = Buffer.from(response.batches);
    forEachBatch(bytes, (position) => {
      contents.batches.push(readBatchHeader(bytes, position));
      contents.records.push(...decodeRecords(bytes, position));
    });
    const next = response.nextOffset.toNumber();
    if (next === offset || next >= response.highWatermark.toNumber()) return contents;
    offset = next;
  }
}

const text = (bytes: Buffer | null): string | null => (bytes === null ? null : bytes.toString('utf8'));
const values = (contents: LogContents): (string | null)[] => contents.records.map((record) => text(record.value));

/** Sends `count` records to each partition, interleaved; returns the results per partition. */
async function sendInterleaved(target: Producer, name: string, partitions: number, count: number, size = 0): Promise<SendResult[][]> {
  const pad = 'x'.repeat(size);
  const sends: Promise<SendResult>[][] = Array.from({ length: partitions }, () => []);
  for (let index = 0; index < count; index++) {
    for (let partition = 0; partition < partitions; partition++) {
      sends[partition]!.push(target.send({ topic: name, partition, value: `p${partition}-${index}${pad}` }));
    }
  }
  return Promise.all(sends.map((list) => Promise.all(list)));
}

function expectExactlyOnceInOrder(contents: LogContents, partition: number, count: number, size = 0): void {
  const pad = 'x'.repeat(size);
  expect(values(contents)).toEqual(Array.from({ length: count }, (_, index) => `p${partition}-${index}${pad}`));
  expect(contents.records.map((record) => record.offset)).toEqual(Array.from({ length: count }, (_, index) => index));
}

const PRODUCE_STREAM = '/strata.v1.Log/ProduceStream';

/** Loses the first `count` ProduceStream responses (the broker wrote those batches) and breaks the stream with UNAVAILABLE each time. */
function loseResponses(count: number, stats: { lost: number; duplicates: number }): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== PRODUCE_STREAM) return new InterceptingCall(call);
    return new InterceptingCall(call, {
      start(metadata, listener, next) {
        next(metadata, {
          onReceiveMessage(message: strata.v1.ProduceResponse, nextMessage) {
            if (stats.lost < count) {
              stats.lost++;
              // The status goes straight to the application: grpc-js holds back a status
              // from below while a message is being intercepted, and this one never completes.
              listener.onReceiveStatus({ code: status.UNAVAILABLE, details: 'injected: response lost', metadata: new Metadata() });
              call.cancelWithStatus(status.UNAVAILABLE, 'injected: response lost');
              return;
            }
            if (message.batches[0]?.duplicate) stats.duplicates++;
            nextMessage(message);
          },
        });
      },
    });
  };
}

/** Gives every ProduceStream `listener` (grpc-js passes on what it leaves out). */
function onProduceStream(listener: Listener): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== PRODUCE_STREAM) return new InterceptingCall(call);
    return new InterceptingCall(call, {
      start(metadata, _listener, next) {
        next(metadata, listener);
      },
    });
  };
}

/** Hands each ProduceStream answer to `handle`, which passes it on (or another, or none) with `nextMessage`. */
function onProduceAnswers(handle: (message: strata.v1.ProduceResponse, nextMessage: (message: unknown) => void) => void): Interceptor {
  return onProduceStream({ onReceiveMessage: handle });
}

/** Breaks the first `count` ProduceStreams with UNAVAILABLE before their first request leaves. */
function breakStreamsBeforeSending(count: number, stats: { broken: number }): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== PRODUCE_STREAM) return new InterceptingCall(call);
    let broken = false;
    return new InterceptingCall(call, {
      sendMessage(message, next) {
        if (!broken && stats.broken < count) {
          broken = true;
          stats.broken++;
          // A turn later: a stream cancelled in the very turn it was opened holds up the
          // server's graceful shutdown until its timeout (grpc-js behaviour, seen in 1.14).
          setImmediate(() => call.cancelWithStatus(status.UNAVAILABLE, 'injected: stream broke before sending'));
        }
        if (!broken) next(message);
      },
    });
  };
}

describe('round trip', () => {
  it('writes keys, values and headers as given, at the offsets send reports', async () => {
    const name = await topic(1);
    const target = producer();
    const results = await Promise.all([
      target.send({ topic: name, key: 'k1', value: 'v1', headers: { trace: 'abc', bin: Buffer.from([0, 1, 2]), empty: null }, timestamp: 1_000 }),
      target.send({ topic: name, key: Buffer.from([0xff, 0x00]), value: Buffer.from('binary'), headers: [{ key: 'dup', value: 'a' }, { key: 'dup', value: 'b' }] }),
      target.send({ topic: name, key: null, value: null }),
      target.send({ topic: name, value: new Uint8Array([104, 105]) }),
    ]);
    expect(results.map((result) => result.offset)).toEqual([0, 1, 2, 3]);
    expect(results.every((result) => result.partition === 0)).toBe(true);

    const { records } = await readLog(name, 0);
    expect(records).toHaveLength(4);
    expect(text(records[0]!.key)).toBe('k1');
    expect(text(records[0]!.value)).toBe('v1');
    expect(records[0]!.timestamp).toBe(1_000);
    expect(records[0]!.headers.map((header) => [header.key, header.value === null ? null : header.value.toString('hex')])).toEqual([
      ['trace', Buffer.from('abc').toString('hex')],
      ['bin', '000102'],
      ['empty', null],
    ]);
    expect(records[1]!.key).toEqual(Buffer.from([0xff, 0x00]));
    expect(records[1]!.headers.map((header) => [header.key, text(header.value)])).toEqual([['dup', 'a'], ['dup', 'b']]);
    expect(records[1]!.timestamp).toBeGreaterThan(1_000);
    expect(records[2]!.key).toBeNull();
    expect(records[2]!.value).toBeNull();
    expect(text(records[3]!.value)).toBe('hi');
  });

  it('partitions keys with murmur2 as Kafka does; an explicit partition wins', async () => {
    const name = await topic(5);
    const target = producer();
    const keys = Array.from({ length: 60 }, (_, index) => `user-${index}`);
    const results = await Promise.all(keys.map((key) => target.send({ topic: name, key, value: key })));
    for (let index = 0; index < keys.length; index++) {
      expect(results[index]!.partition).toBe((murmur2(Buffer.from(keys[index]!)) & 0x7fffffff) % 5);
    }
    expect(new Set(results.map((result) => result.partition)).size).toBeGreaterThan(1);
    for (let partition = 0; partition < 5; partition++) {
      const { records } = await readLog(name, partition);
      for (const record of records) expect((murmur2(record.key!) & 0x7fffffff) % 5).toBe(partition);
    }
    expect((await target.send({ topic: name, key: 'user-0', value: 'pinned', partition: 4 })).partition).toBe(4);
  });

  it('sends null-key records of one batch to one (sticky) partition', async () => {
    const name = await topic(4);
    const target = producer({ lingerMs: 60_000 });
    const sends = Array.from({ length: 20 }, (_, index) => target.send({ topic: name, value: `n${index}` }));
    await target.flush();
    const results = await Promise.all(sends);
    expect(new Set(results.map((result) => result.partition)).size).toBe(1);
    expect(results.map((result) => result.offset)).toEqual(Array.from({ length: 20 }, (_, index) => index));
  });

  it('reports offsets that are exact and in send order per partition', async () => {
    const name = await topic(3);
    const target = producer({ lingerMs: 1, batchBytes: 2_048 });
    const results = await sendInterleaved(target, name, 3, 300, 20);
    for (let partition = 0; partition < 3; partition++) {
      expect(results[partition]!.map((result) => result.offset)).toEqual(Array.from({ length: 300 }, (_, index) => index));
      expect(results[partition]!.every((result) => result.partition === partition)).toBe(true);
      expectExactlyOnceInOrder(await readLog(name, partition), partition, 300, 20);
    }
  });

  it('fails sends to a missing topic with the broker NOT_FOUND message', async () => {
    const target = producer();
    const keyed = await target.send({ topic: 'producer-missing', key: 'k', value: 'v' }).catch((error: unknown) => error);
    expect(keyed).toBeInstanceOf(StrataClientError);
    expect((keyed as StrataClientError).code).toBe('NOT_FOUND');
    expect((keyed as StrataClientError).message).toBe('topic "producer-missing" not found');
    const explicit = await target.send({ topic: 'producer-missing', partition: 0, value: 'v' }).catch((error: unknown) => error);
    expect((explicit as StrataClientError).code).toBe('NOT_FOUND');
    // The producer is still usable afterwards.
    const name = await topic(1);
    expect((await target.send({ topic: name, value: 'after' })).offset).toBe(0);
  });

  it('refuses a partition the wire cannot carry; nothing is written where its low bits point', async () => {
    const name = await topic(2);
    const target = producer();
    // As an int32 on the wire, 2^32 would arrive as partition 0.
    const refused = await target.send({ topic: name, partition: 2 ** 32, value: 'x' }).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'partition must be an integer from 0 to 2147483647, got 4294967296' });
    expect((await target.send({ topic: name, partition: 1, value: 'y' })).offset).toBe(0);
    expect((await readLog(name, 0)).records).toHaveLength(0);
  });

  it('refuses a record without a value field (a misspelt field is not a record without a value); null is one', async () => {
    const name = await topic(1);
    const target = producer();
    const refused = await target.send({ topic: name, vaule: 'typo' } as unknown as ProducerRecord).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'value is required: bytes, a string, or null for a record without a value' });
    expect(await target.send({ topic: name, value: null })).toEqual({ partition: 0, offset: 0 });
    expect((await readLog(name, 0)).records.map((record) => record.value)).toEqual([null]);
  });

  it('refuses a partition past the count on fresh metadata; one added meanwhile is found once the metadata is read again', async () => {
    const calls = { describeTopic: 0 };
    const countDescribeTopic = countingDescribeTopic(calls);
    const name = await topic(2);
    const target = producer({ interceptors: [countDescribeTopic] });
    expect((await target.send({ topic: name, partition: 1, value: 'a' })).offset).toBe(0);
    expect(calls.describeTopic).toBe(1);
    const refused = await Promise.all(Array.from({ length: 5 }, () => target.send({ topic: name, partition: 2, value: 'b' }).catch((error: unknown) => error)));
    for (const each of refused) expect(each).toMatchObject({ code: 'NOT_FOUND', message: `partition 2 of topic "${name}" does not exist (the topic has 2: 0 to 1)` });
    expect(calls.describeTopic).toBe(1); // judged on the metadata just read: no lookup for the five
    // The refusal was the producer's own: partition 1 carries on in sequence.
    expect((await target.send({ topic: name, partition: 1, value: 'c' })).offset).toBe(1);
    // A partition added since the producer last looked is found by the next look (metadata
    // older than retryBackoffMs, 100 ms, is read again): polled, refused until then.
    await admin.addPartitions(name, 3);
    const deadline = Date.now() + 10_000;
    let written: SendResult | null = null;
    while (written === null && Date.now() < deadline) {
      written = await target.send({ topic: name, partition: 2, value: 'd' }).catch((error: unknown) => {
        expect(error).toMatchObject({ code: 'NOT_FOUND' });
        return null;
      });
      if (written === null) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(written).toMatchObject({ partition: 2, offset: 0 });
    expect(calls.describeTopic).toBeGreaterThan(1);
    expect(values(await readLog(name, 2))).toEqual(['d']);
  });

  it('calls back a send refused for a partition past the count after send() has returned, not inside it', async () => {
    const name = await topic(2);
    const target = producer({ retryBackoffMs: 60_000, retryBackoffMaxMs: 60_000 }); // the metadata stays fresh
    await target.send({ topic: name, partition: 0, value: 'a' });
    let returned = false;
    const calledAfterReturn = new Promise<boolean>((resolve) => target.send({ topic: name, partition: 2, value: 'b' }, (error) => resolve(returned && error !== null)));
    returned = true;
    expect(await calledAfterReturn).toBe(true);
  });

  it('sends to a topic deleted under the producer do not each ask the broker for its metadata again', async () => {
    const calls = { describeTopic: 0 };
    const countDescribeTopic = countingDescribeTopic(calls);
    const name = await topic(1);
    const target = producer({ retryBackoffMaxMs: 60_000, interceptors: [countDescribeTopic] });
    expect((await target.send({ topic: name, value: 'a' })).offset).toBe(0);
    await admin.deleteTopic(name);
    for (let index = 0; index < 20; index++) {
      const refused = await target.send({ topic: name, value: 'b' }).catch((error: unknown) => error);
      expect(refused).toMatchObject({ code: 'NOT_FOUND' });
    }
    // The first lookup, and one refresh after the first refusal; the failed refresh waits
    // retryBackoffMaxMs before the next.
    expect(calls.describeTopic).toBeLessThanOrEqual(3);
  });

  // The producer times its metadata on the wall clock (it reads it per record anyway). A step
  // back (NTP) must not stretch a refusal, or the age of what it knows, by the step: an hour here.
  it('a system time stepped back holds neither a missing-topic refusal nor a past-count refusal for the length of the step', async () => {
    const target = producer({ retryBackoffMs: 60_000 });
    const missing = `producer-${++topicCounter}`;
    const grown = await topic(1);
    vi.useFakeTimers({ toFake: ['Date'] }); // Date alone, and standing still: timers run as they do
    try {
      await expect(target.send({ topic: missing, value: 'v' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect((await target.send({ topic: grown, partition: 0, value: 'a' })).offset).toBe(0);
      await admin.createTopic(missing, { partitions: 1, configs: {} });
      await admin.addPartitions(grown, 2);
      vi.setSystemTime(Date.now() - 60 * 60 * 1000);
      // Without the step, both would be refused for retryBackoffMs (a minute) yet.
      expect((await target.send({ topic: missing, value: 'v' })).offset).toBe(0);
      expect((await target.send({ topic: grown, partition: 1, value: 'b' })).offset).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a system time stepped back makes the metadata due for its background refresh, not an hour younger', async () => {
    const calls = { describeTopic: 0 };
    const target = producer({ metadataMaxAgeMs: 60_000, interceptors: [countingDescribeTopic(calls)] });
    const name = await topic(1);
    vi.useFakeTimers({ toFake: ['Date'] }); // Date alone, and standing still: timers run as they do
    try {
      expect((await target.send({ topic: name, value: 'a' })).offset).toBe(0);
      expect(calls.describeTopic).toBe(1);
      vi.setSystemTime(Date.now() - 60 * 60 * 1000);
      // Without the step, the metadata would be fresh for a minute yet; with it, its age is unknown.
      expect((await target.send({ topic: name, value: 'b' })).offset).toBe(1);
      await vi.waitFor(() => expect(calls.describeTopic).toBe(2), { timeout: 10_000 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses timer settings Node.js would fire every millisecond (Infinity, or over 2^31 - 1 ms), and a request timeout of 0', () => {
    const bound = '2147483647 ms (the longest delay Node.js timers take)';
    expect(() => producer({ requestTimeoutMs: Number.POSITIVE_INFINITY })).toThrow(`requestTimeoutMs must be from 1 to ${bound}, got Infinity`);
    expect(() => producer({ requestTimeoutMs: 0 })).toThrow(`requestTimeoutMs must be from 1 to ${bound}, got 0`);
    expect(() => producer({ lingerMs: 2 ** 31 })).toThrow(`lingerMs must be from 0 to ${bound}, got 2147483648`);
    expect(() => producer({ retryBackoffMaxMs: Number.POSITIVE_INFINITY })).toThrow(`retryBackoffMaxMs must be from 0 to ${bound}, got Infinity`);
    expect(() => producer({ deadlineMs: 1e12 })).toThrow(`deadlineMs must be from 1 to ${bound}, got 1000000000000`);
    // The connection's reconnect backoffs, which grpc-js hands to setTimeout with up to 20 % more.
    const backoffBound = '1789569705 ms (grpc-js adds up to 20 % to it, and Node.js timers take at most 2147483647 ms)';
    expect(() => producer({ initialReconnectBackoffMs: 3e9 })).toThrow(`initialReconnectBackoffMs must be from 1 to ${backoffBound}, got 3000000000`);
    expect(() => producer({ maxReconnectBackoffMs: 2e9 })).toThrow(`maxReconnectBackoffMs must be from 1 to ${backoffBound}, got 2000000000`);
    expect(() => producer({ maxReconnectBackoffMs: 0 })).toThrow(`maxReconnectBackoffMs must be from 1 to ${backoffBound}, got 0`);
    // Budgets that are only compared with elapsed time may be unbounded.
    expect(() => producer({ deliveryTimeoutMs: Number.POSITIVE_INFINITY, retries: Number.POSITIVE_INFINITY })).not.toThrow();
  });

  it('a burst of sends to a missing topic costs one DescribeTopic, and the topic is found once it exists', async () => {
    const calls = { describeTopic: 0 };
    const countDescribeTopic = countingDescribeTopic(calls);
    const target = producer({ retryBackoffMs: 2_000, interceptors: [countDescribeTopic] });
    const name = `producer-${++topicCounter}`;
    const outcomes = await Promise.all(Array.from({ length: 200 }, (_, index) => target.send({ topic: name, key: `k${index}`, value: 'v' }).catch((error: unknown) => error)));
    expect(outcomes.every((outcome) => outcome instanceof StrataClientError && outcome.code === 'NOT_FOUND' && outcome.message === `topic "${name}" not found`)).toBe(true);
    expect(calls.describeTopic).toBe(1);
    expect(new Set(outcomes).size).toBe(200); // each send gets its own error object

    // A caller that retries at once does not starve the event loop meanwhile: a timer fires.
    let timerFired = false;
    setTimeout(() => (timerFired = true), 20);
    let retries = 0;
    while (!timerFired) {
      await target.send({ topic: name, value: 'again' }).catch(() => undefined);
      retries++;
    }
    expect(retries).toBeGreaterThan(0);
    expect(calls.describeTopic).toBe(1);

    await admin.createTopic(name, { partitions: 1, configs: {} });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const outcome = await target.send({ topic: name, value: 'v' }).catch((error: unknown) => error);
      if (!(outcome instanceof StrataClientError)) break;
      expect(outcome.code).toBe('NOT_FOUND'); // until the refusal has aged out
      if (Date.now() > deadline) throw new Error('the producer never found the created topic');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
});

describe('batching', () => {
  it('lingerMs gathers a burst into few batches', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 60_000 });
    const sends = Array.from({ length: 100 }, (_, index) => target.send({ topic: name, value: `r${index}` }));
    await target.flush();
    await Promise.all(sends);
    const { batches, records } = await readLog(name, 0);
    expect(records).toHaveLength(100);
    expect(batches).toHaveLength(1);
    expect(batches[0]!.recordCount).toBe(100);
  });

  it('lingerMs 0 still coalesces what arrives in one turn', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 0 });
    await Promise.all(Array.from({ length: 50 }, (_, index) => target.send({ topic: name, value: `r${index}` })));
    const { batches, records } = await readLog(name, 0);
    expect(records).toHaveLength(50);
    expect(batches.length).toBeLessThan(50);
  });

  it('batchBytes bounds each batch', async () => {
    const name = await topic(1);
    const batchBytes = 1_024;
    const target = producer({ lingerMs: 60_000, batchBytes });
    const value = 'v'.repeat(100);
    const sends = Array.from({ length: 100 }, () => target.send({ topic: name, value }));
    await target.flush();
    await Promise.all(sends);
    const { batches, records } = await readLog(name, 0);
    expect(records).toHaveLength(100);
    expect(batches.length).toBeGreaterThanOrEqual(Math.ceil((100 * 100) / batchBytes));
    for (const batch of batches) expect(batch.sizeBytes).toBeLessThanOrEqual(batchBytes);
  });

  it("a topic's max.message.bytes lowers batchBytes for its batches, explicit partitions included", async () => {
    const name = await topic(2, { 'max.message.bytes': '2048' });
    const target = producer({ lingerMs: 60_000 }); // the default batchBytes is far larger
    const sends = Array.from({ length: 200 }, (_, index) => target.send({ topic: name, partition: index % 2, value: 'm'.repeat(100) }));
    await target.flush();
    expect((await Promise.all(sends)).every((result) => result.offset >= 0)).toBe(true);
    for (const partition of [0, 1]) {
      const { batches, records } = await readLog(name, partition);
      expect(records).toHaveLength(100);
      expect(batches.length).toBeGreaterThan(1);
      for (const batch of batches) expect(batch.sizeBytes).toBeLessThanOrEqual(2048);
    }
  });

  it('small batches, started in reused buffers, arrive intact, several in flight and across lost responses', async () => {
    const name = await topic(1);
    const stats = { lost: 0, duplicates: 0 };
    const target = producer({ lingerMs: 0, retryBackoffMs: 5, retryBackoffMaxMs: 20, interceptors: [loseResponses(3, stats)] });
    const take = vi.spyOn(BufferPool.prototype, 'take');
    const sent: string[] = [];
    const round = (): Promise<SendResult>[] =>
      Array.from({ length: 4 }, () => {
        const value = randomBytes(1_500).toString('hex'); // 3 KB: a round's batch takes a pooled buffer
        sent.push(value);
        return target.send({ topic: name, value });
      });
    for (let index = 0; index < 15; index++) await Promise.all(round()); // one batch at a time
    const overlapping: Promise<SendResult>[] = [];
    for (let index = 0; index < 15; index++) {
      overlapping.push(...round());
      await new Promise((resolve) => setImmediate(resolve)); // the next round is a batch of its own
    }
    await Promise.all(overlapping);
    const taken = take.mock.results.map((result) => result.value as Buffer | null);
    take.mockRestore();
    expect(stats.lost).toBe(3);
    const { batches, records } = await readLog(name, 0);
    expect(batches.length).toBeGreaterThanOrEqual(15);
    expect(records.map((record) => text(record.value))).toEqual(sent);
    // The batches after the first (a 1 KiB start, carved from Node's slab) were started in
    // small pooled buffers, and buffers came back to be reused.
    expect(taken.length).toBeGreaterThanOrEqual(batches.length - 1);
    // About twice a round's batch (12 KB): far below a full-size (1 MiB) buffer.
    expect(taken.every((buffer) => buffer !== null && buffer.length <= 128 * 1024)).toBe(true);
    expect(new Set(taken).size).toBeLessThan(taken.length);
  });

  it('writes idempotent batches: producer id, epoch and contiguous sequences', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 0, batchBytes: 256 });
    await Promise.all(Array.from({ length: 40 }, (_, index) => target.send({ topic: name, value: `value-${index}-${'z'.repeat(30)}` })));
    const { batches } = await readLog(name, 0);
    expect(batches.length).toBeGreaterThan(1);
    let expected = 0;
    for (const batch of batches) {
      expect(batch.producerId).toBeGreaterThanOrEqual(0);
      expect(batch.producerId).toBe(batches[0]!.producerId);
      expect(batch.baseSequence).toBe(expected);
      expected += batch.recordCount;
    }
  });
});

describe('send with a callback', () => {
  it('calls back once per record with its offset, in order, and reports errors the same way', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 0 });
    const results: [Error | null, SendResult | undefined][] = [];
    for (let index = 0; index < 50; index++) {
      const returned: unknown = target.send({ topic: name, value: `cb-${index}` }, (error, result) => results.push([error, result]));
      expect(returned).toBeUndefined();
    }
    await target.flush();
    expect(results.map(([error]) => error)).toEqual(Array.from({ length: 50 }, () => null));
    expect(results.map(([, result]) => result)).toEqual(Array.from({ length: 50 }, (_, offset) => ({ partition: 0, offset })));
    expect(values(await readLog(name, 0))).toEqual(Array.from({ length: 50 }, (_, index) => `cb-${index}`));

    const failed = await new Promise<Error | null>((resolve) => target.send({ topic: name, partition: -1, value: 'x' }, (error) => resolve(error)));
    expect((failed as StrataClientError).code).toBe('INVALID_ARGUMENT');
    expect(() => target.send({ topic: name, value: 'x' }, 'not a function' as never)).toThrow(/callback must be a function/);
  });

  it('a callback that throws is logged and the producer carries on', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 0 });
    target.send({ topic: name, value: 'first' }, () => {
      throw new Error('application bug');
    });
    const second = await target.send({ topic: name, value: 'second' });
    expect(second).toEqual({ partition: 0, offset: 1 });
    expect(values(await readLog(name, 0))).toEqual(['first', 'second']);
  });
});

describe('flush and close', () => {
  it('flush resolves after every earlier send settled; flush and close are idempotent', async () => {
    const name = await topic(2);
    const target = producer({ lingerMs: 60_000 });
    await target.flush(); // nothing pending
    let settled = 0;
    const sends = Array.from({ length: 30 }, (_, index) => target.send({ topic: name, partition: index % 2, value: `f${index}` }).then((result) => (settled++, result)));
    await Promise.all([target.flush(), target.flush()]);
    expect(settled).toBe(30);
    await Promise.all(sends);

    const late = target.send({ topic: name, partition: 0, value: 'before-close' });
    await Promise.all([target.close(), target.close()]);
    expect((await late).offset).toBe(15);
    await target.close();
    const refused = await target.send({ topic: name, value: 'after-close' }).catch((error: unknown) => error);
    expect((refused as StrataClientError).code).toBe('FAILED_PRECONDITION');
    expect((await readLog(name, 0)).records).toHaveLength(16);
  });

  it('close() does not wait long for the end of a stream a hung broker never ends', async () => {
    const name = await topic(1);
    // Every status of the produce stream is held back, as from a broker that stopped answering
    // after acknowledging: close() would wait the whole connection deadline for it.
    const target = producer({ deadlineMs: 600_000, interceptors: [onProduceStream({ onReceiveStatus: () => undefined })] });
    expect(await target.send({ topic: name, value: 'acknowledged' })).toEqual({ partition: 0, offset: 0 });
    await target.close();
  });
});

describe('shared connection', () => {
  it('is left open by the producer; once its owner closes it, sends fail instead of hanging', async () => {
    const name = await topic(1);
    const connection = new Connection({ server: broker.address });
    const target = new Producer({ connection });
    expect((await target.send({ topic: name, value: 'shared' })).offset).toBe(0);
    await target.close();
    expect(connection.isClosed).toBe(false);
    const orphan = new Producer({ connection, lingerMs: 0 });
    connection.close();
    const sends = [orphan.send({ topic: name, partition: 0, value: 'x' }), orphan.send({ topic: name, key: 'k', value: 'x' })];
    for (const error of (await Promise.all(sends.map((send) => send.catch((caught: unknown) => caught)))) as StrataClientError[]) {
      expect(error).toBeInstanceOf(StrataClientError);
      expect(error.code).toBe('FAILED_PRECONDITION');
    }
    await orphan.close();
  });
});

describe('backpressure', () => {
  it('never holds more than bufferBytes; waiting sends complete in order', async () => {
    const name = await topic(2);
    const bufferBytes = 4_096;
    const target = producer({ lingerMs: 0, batchBytes: 1_024, bufferBytes });
    // The first send to a topic waits for its metadata; after it, a burst is taken at once.
    await target.send({ topic: name, partition: 0, value: 'warm-up' });
    let peak = 0;
    const observe = (): void => {
      peak = Math.max(peak, target.bufferedBytes);
    };
    const sends: Promise<SendResult>[] = [];
    for (let index = 0; index < 300; index++) {
      sends.push(target.send({ topic: name, partition: index % 2, value: `b${index}-${'y'.repeat(200)}` }).then((result) => (observe(), result)));
      observe();
    }
    expect(target.bufferedBytes).toBeLessThanOrEqual(bufferBytes);
    expect(target.bufferedBytes).toBeGreaterThan(bufferBytes / 2); // the burst filled the buffer
    // The rest wait, outside bufferBytes, and are counted for a caller that paces itself.
    expect(target.waitingSends).toBeGreaterThan(0);
    const results = await Promise.all(sends);
    expect(target.waitingSends).toBe(0);
    expect(peak).toBeLessThanOrEqual(bufferBytes);
    expect(target.bufferedBytes).toBe(0);
    for (let partition = 0; partition < 2; partition++) {
      const mine = results.filter((result) => result.partition === partition).map((result) => result.offset);
      expect(mine).toEqual(Array.from({ length: 150 }, (_, index) => index + (partition === 0 ? 1 : 0)));
    }
  });

  it('refuses a record larger than the whole buffer', async () => {
    const name = await topic(1);
    const target = producer({ bufferBytes: 1_024 });
    const error = await target.send({ topic: name, value: Buffer.alloc(2_000) }).catch((caught: unknown) => caught);
    expect((error as StrataClientError).code).toBe('RESOURCE_EXHAUSTED');
  });
});

/** Counts the DescribeTopic calls made through it in `calls`. */
function countingDescribeTopic(calls: { describeTopic: number }): Interceptor {
  return (options, nextCall) => {
    if (options.method_definition.path === '/strata.v1.Admin/DescribeTopic') calls.describeTopic++;
    return new InterceptingCall(nextCall(options));
  };
}

/** Counts InitProducer calls in `counter`, and lets `change` rewrite the first one's answer. */
function rewriteFirstInitProducer(counter: { calls: number }, change: (message: strata.v1.InitProducerResponse) => void): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== '/strata.v1.Log/InitProducer') return new InterceptingCall(call);
    const first = ++counter.calls === 1;
    return new InterceptingCall(call, {
      start(metadata, _listener, next) {
        next(metadata, {
          onReceiveMessage(message: strata.v1.InitProducerResponse, nextMessage) {
            if (first) change(message);
            nextMessage(message);
          },
        });
      },
    });
  };
}

/**
 * Counts ProduceStream requests sent and answered, keeping the most ever unanswered (and, with
 * `sentWith`, how many were unanswered as each was sent, itself included); with `window` set,
 * also rewrites InitProducer's answer to state that window (0: unstated).
 */
function watchInFlight(stats: { outstanding: number; most: number; sentWith?: number[] }, window?: number): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    const path = options.method_definition.path;
    if (path === '/strata.v1.Log/InitProducer' && window !== undefined) {
      return new InterceptingCall(call, {
        start(metadata, _listener, next) {
          next(metadata, {
            onReceiveMessage(message: strata.v1.InitProducerResponse, nextMessage) {
              message.maxInFlightBatches = window;
              nextMessage(message);
            },
          });
        },
      });
    }
    if (path !== PRODUCE_STREAM) return new InterceptingCall(call);
    return new InterceptingCall(call, {
      start(metadata, _listener, next) {
        next(metadata, {
          onReceiveMessage(message, nextMessage) {
            stats.outstanding--;
            nextMessage(message);
          },
        });
      },
      sendMessage(message, next) {
        stats.most = Math.max(stats.most, ++stats.outstanding);
        stats.sentWith?.push(stats.outstanding);
        next(message);
      },
    });
  };
}

describe('batches in flight', () => {
  // 30 one-record batches for one partition, queued in one turn: the first goes alone (the
  // broker does not know the producer yet), and its answer releases as many as the limit allows.
  async function mostInFlight(options: ProducerSettings, window?: number): Promise<number> {
    const name = await topic(1);
    const stats = { outstanding: 0, most: 0 };
    const target = producer({ lingerMs: 0, batchBytes: 256, ...options, interceptors: [watchInFlight(stats, window)] });
    const value = 'v'.repeat(200);
    const results = await Promise.all(Array.from({ length: 30 }, () => target.send({ topic: name, value })));
    expect(results.map((result) => result.offset)).toEqual(Array.from({ length: 30 }, (_, index) => index));
    expect((await readLog(name, 0)).batches).toHaveLength(30);
    return stats.most;
  }

  it('InitProducer states how many batches the broker remembers; the producer keeps that many in flight', async () => {
    const answer = await wire.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create());
    expect(answer.maxInFlightBatches).toBe(10);
    expect(await mostInFlight({})).toBe(10);
  });

  it('a smaller window from the broker, an unstated one (Kafka: 5) or maxInFlightPerPartition bounds it', async () => {
    expect(await mostInFlight({}, 3)).toBe(3);
    expect(await mostInFlight({}, 0)).toBe(5);
    expect(await mostInFlight({ maxInFlightPerPartition: 4 })).toBe(4);
    expect(() => producer({ maxInFlightPerPartition: 11 })).toThrow(/at most 10 with idempotence/);
  });

  it('after an idle hour the next batch goes alone again (the broker forgets a producer idle a day), then the window opens', async () => {
    vi.useFakeTimers({ toFake: ['performance', 'Date'] }); // the clocks alone: timers run as they do
    try {
      const name = await topic(1);
      const stats = { outstanding: 0, most: 0, sentWith: [] as number[] };
      const target = producer({ lingerMs: 0, batchBytes: 256, interceptors: [watchInFlight(stats)] });
      const value = 'v'.repeat(200);
      // As each of a burst's 5 one-record batches was sent, how many were unanswered.
      const burst = async (): Promise<number[]> => {
        stats.sentWith.length = 0;
        await Promise.all(Array.from({ length: 5 }, () => target.send({ topic: name, value })));
        return [...stats.sentWith];
      };
      expect(await burst()).toEqual([1, 1, 2, 3, 4]);
      vi.advanceTimersByTime(RECONFIRM_AFTER_IDLE_MS - 1);
      expect(await burst()).toEqual([1, 2, 3, 4, 5]);
      vi.advanceTimersByTime(RECONFIRM_AFTER_IDLE_MS);
      expect(await burst()).toEqual([1, 1, 2, 3, 4]);
      // An hour on the wall clock alone counts too: the monotonic clock stands still while the
      // machine sleeps, and the broker forgets producers by the wall clock.
      expect(await burst()).toEqual([1, 2, 3, 4, 5]);
      vi.setSystemTime(Date.now() + RECONFIRM_AFTER_IDLE_MS);
      expect(await burst()).toEqual([1, 1, 2, 3, 4]);
      expect((await readLog(name, 0)).records.map((record) => record.offset)).toEqual(Array.from({ length: 25 }, (_, index) => index));
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('idempotent retries', () => {
  it('lost responses (the broker wrote the batches) are retried without duplicates or reordering', async () => {
    const name = await topic(3);
    const stats = { lost: 0, duplicates: 0 };
    const target = producer({ lingerMs: 0, batchBytes: 512, retryBackoffMs: 5, retryBackoffMaxMs: 20, interceptors: [loseResponses(6, stats)] });
    const results = await sendInterleaved(target, name, 3, 200, 10);
    expect(stats.lost).toBe(6);
    expect(stats.duplicates).toBeGreaterThan(0); // the broker recognised resent batches
    for (let partition = 0; partition < 3; partition++) {
      expect(results[partition]!.map((result) => result.offset)).toEqual(Array.from({ length: 200 }, (_, index) => index));
      expectExactlyOnceInOrder(await readLog(name, partition), partition, 200, 10);
    }
  });

  it('streams that break before sending are retried; records arrive once and in order', async () => {
    const name = await topic(2);
    const stats = { broken: 0 };
    const target = producer({ lingerMs: 0, batchBytes: 512, retryBackoffMs: 5, retryBackoffMaxMs: 20, interceptors: [breakStreamsBeforeSending(4, stats)] });
    const results = await sendInterleaved(target, name, 2, 150, 10);
    expect(stats.broken).toBe(4);
    for (let partition = 0; partition < 2; partition++) {
      expect(results[partition]!.map((result) => result.offset)).toEqual(Array.from({ length: 150 }, (_, index) => index));
      expectExactlyOnceInOrder(await readLog(name, partition), partition, 150, 10);
    }
  });

  it('a request lost inside the stream gives out-of-order replies that are resent, not renumbered', async () => {
    const name = await topic(1);
    // Lose the fourth request inside a healthy stream (it is redirected to a missing topic and
    // its answer discarded): the broker sees the batches behind it with a sequence gap and
    // answers FAILED_PRECONDITION; the producer must resend from the lost one, same sequences.
    let requests = 0;
    let outOfOrder = 0;
    let lostId: Long | null = null;
    const interceptor: Interceptor = (options, nextCall) => {
      const call = nextCall(options);
      if (options.method_definition.path !== PRODUCE_STREAM) return new InterceptingCall(call);
      return new InterceptingCall(call, {
        sendMessage(message: Buffer, next) {
          // The producer sends encoded requests (a pass-through serializer).
          if (++requests !== 4) return next(message);
          const request = v1.ProduceRequest.decode(message);
          lostId = request.correlationId;
          next(Buffer.from(v1.ProduceRequest.encode({ topic: 'producer-lost-in-transit', partition: 0, batch: request.batch, correlationId: request.correlationId }).finish()));
        },
        start(metadata, _listener, next) {
          next(metadata, {
            onReceiveMessage(message: strata.v1.ProduceResponse, nextMessage) {
              // (A message an interceptor never passes on would stall the stream's reads, so
              // the lost request's answer becomes one for a correlation id nobody waits for.)
              // (A batch keeps its correlation id when resent: only the first answer is lost.)
              if (lostId !== null && message.correlationId.equals(lostId)) {
                lostId = null;
                return nextMessage(v1.ProduceResponse.create({ correlationId: Long.UZERO }));
              }
              if (message.error?.code === status.FAILED_PRECONDITION) outOfOrder++;
              nextMessage(message);
            },
          });
        },
      });
    };
    const target = producer({ lingerMs: 0, batchBytes: 256, retryBackoffMs: 5, retryBackoffMaxMs: 20, requestTimeoutMs: 5_000, interceptors: [interceptor] });
    const results = await sendInterleaved(target, name, 1, 120, 10);
    expect(outOfOrder).toBeGreaterThan(0);
    expect(results[0]!.map((result) => result.offset)).toEqual(Array.from({ length: 120 }, (_, index) => index));
    expectExactlyOnceInOrder(await readLog(name, 0), 0, 120, 10);
  });

  it('a response that never comes counts as DEADLINE_EXCEEDED after requestTimeoutMs and is retried', async () => {
    const name = await topic(1);
    let swallowed = 0;
    const interceptor = onProduceAnswers((message, nextMessage) => {
      if (swallowed++ < 1) return; // the stream stays up, the answer never arrives
      nextMessage(message);
    });
    const target = producer({ lingerMs: 0, requestTimeoutMs: 200, retryBackoffMs: 5, interceptors: [interceptor] });
    const results = await Promise.all(Array.from({ length: 10 }, (_, index) => target.send({ topic: name, value: `p0-${index}` })));
    expect(results.map((result) => result.offset)).toEqual(Array.from({ length: 10 }, (_, index) => index));
    expectExactlyOnceInOrder(await readLog(name, 0), 0, 10);
  });

  it('a batch the broker never answers fails at deliveryTimeoutMs, though requestTimeoutMs is far longer (a hung broker)', async () => {
    const name = await topic(1);
    // The stream stays up and no answer ever arrives, as from a broker stopped (SIGSTOP) mid-stream.
    const target = producer({ lingerMs: 0, deliveryTimeoutMs: 300, requestTimeoutMs: 600_000, retryBackoffMs: 5, interceptors: [onProduceAnswers(() => undefined)] });
    const sends = ['unanswered', 'behind it'].map((value) => target.send({ topic: name, value }).catch((caught: unknown) => caught as StrataClientError));
    const [unanswered, behind] = await Promise.all(sends);
    expect(unanswered).toMatchObject({
      code: 'DEADLINE_EXCEEDED',
      message: expect.stringMatching(/^gave up on producer-\d+-0 after 1 attempt over \d+ ms, the last of which failed with: no answer within deliveryTimeoutMs \(300 ms\); its records may have been written/),
    });
    // Behind the first (one batch in flight until the broker has answered one), whether still
    // queued or sent on the next stream, it fails at its own deadline, not the request timeout's.
    expect(behind).toMatchObject({ code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/no answer within deliveryTimeoutMs \(300 ms\)/) });
    await target.close();
    expect(target.bufferedBytes).toBe(0);
  });

  it('without idempotence, each batch whose budget is spent fails on its own; every send settles', async () => {
    const name = await topic(1);
    // Every answer is swallowed: each attempt ends with the request timeout.
    const swallowAnswers = onProduceAnswers(() => undefined);
    const target = producer({ idempotent: false, acks: 'leader', retries: 0, requestTimeoutMs: 100, retryBackoffMs: 1, retryBackoffMaxMs: 5, lingerMs: 0, batchBytes: 128, interceptors: [swallowAnswers] });
    const sends = Array.from({ length: 4 }, (_, index) => target.send({ topic: name, value: `lost-${index}-${'z'.repeat(80)}` }).then(
      () => 'acknowledged',
      (error: StrataClientError) => error.code,
    ));
    expect(await Promise.all(sends)).toEqual(['DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED', 'DEADLINE_EXCEEDED']);
    await target.flush();
    expect(target.bufferedBytes).toBe(0);
  });

  it('a metadata lookup that fails with UNAVAILABLE is retried, not passed on to the send', async () => {
    const name = await topic(1);
    const stats = { refused: 0 };
    const target = producer({ retryBackoffMs: 1, interceptors: [refuseFirstCall('/strata.v1.Admin/DescribeTopic', status.UNAVAILABLE, stats)] });
    expect(await target.send({ topic: name, partition: 0, value: 'after a retry' })).toEqual({ partition: 0, offset: 0 });
    expect(stats.refused).toBe(1);
  });

  it('a failure callback that sends again is not lost (the retry goes through)', async () => {
    const name = await topic(1);
    // The first InitProducer is refused (not retriable): the queued send fails.
    const stats = { refused: 0 };
    const target = producer({ lingerMs: 0, interceptors: [refuseFirstCall('/strata.v1.Log/InitProducer', status.PERMISSION_DENIED, stats)] });
    const outcome = await new Promise<string>((resolve) => {
      target.send({ topic: name, value: 'first try' }, (error) => {
        if (error === null) return resolve('acknowledged at once');
        target.send({ topic: name, value: 'second try' }, (again, result) => resolve(again === null ? `resent at ${result!.offset}` : `resend failed: ${again.message}`));
      });
    });
    expect(stats.refused).toBe(1);
    expect(outcome).toBe('resent at 0');
    expect(await target.send({ topic: name, value: 'later' })).toEqual({ partition: 0, offset: 1 });
    expect(values(await readLog(name, 0))).toEqual(['second try', 'later']);
    expect(target.bufferedBytes).toBe(0);
  });

  // Kafka bumps a partition's epoch only once its in-flight batches are done. Were the next
  // epoch's batches sent while older ones are unanswered, a broken stream would make the broker
  // refuse the resent older ones as fenced, though it wrote them the first time.
  it('after a refused batch, the next epoch waits for the batches sent before it', async () => {
    const name = await topic(1);
    const requests: { stream: number; value: string; epoch: number }[] = [];
    let streams = 0;
    // First stream: b's answer is held back and c's lost; d goes to a missing topic, its answer
    // becomes a refusal, and b's answer follows the refusal.
    let heldAnswer: strata.v1.ProduceResponse | null = null;
    let lostAnswers = 0;
    const interceptor: Interceptor = (options, nextCall) => {
      const call = nextCall(options);
      if (options.method_definition.path !== PRODUCE_STREAM) return new InterceptingCall(call);
      const stream = ++streams;
      const sent: number[] = [];
      let application: { onReceiveMessage(message: unknown): void } | null = null;
      return new InterceptingCall(call, {
        start(metadata, listener, next) {
          application = listener;
          next(metadata, {
            onReceiveMessage(message: strata.v1.ProduceResponse, nextMessage) {
              const index = stream === 1 ? sent.indexOf(message.correlationId.toNumber()) : -1;
              if (index === 1 || index === 2) {
                if (index === 1) heldAnswer = message;
                else lostAnswers++;
                return nextMessage(v1.ProduceResponse.create({ correlationId: Long.UZERO })); // an answer nobody waits for
              }
              if (index === 3) {
                const held = heldAnswer!;
                setImmediate(() => application!.onReceiveMessage(held));
                return nextMessage(v1.ProduceResponse.create({ correlationId: message.correlationId, error: { code: status.INVALID_ARGUMENT, message: 'injected: refused' } }));
              }
              nextMessage(message);
            },
          });
        },
        sendMessage(message: Buffer, next) {
          const request = v1.ProduceRequest.decode(message);
          sent.push(request.correlationId.toNumber());
          const batch = Buffer.from(request.batch);
          requests.push({ stream, value: text(decodeRecords(batch, 0)[0]!.value)!, epoch: readBatchHeader(batch, 0).producerEpoch });
          if (stream !== 1 || sent.length !== 4) return next(message);
          next(Buffer.from(v1.ProduceRequest.encode({ topic: 'producer-refused-in-transit', partition: 0, batch: request.batch, correlationId: request.correlationId }).finish()));
        },
      });
    };
    const target = producer({ lingerMs: 0, requestTimeoutMs: 500, retryBackoffMs: 5, interceptors: [interceptor] });
    expect(await target.send({ topic: name, value: 'a' })).toEqual({ partition: 0, offset: 0 });
    const b = target.send({ topic: name, value: 'b' });
    await new Promise((resolve) => setImmediate(resolve));
    const c = target.send({ topic: name, value: 'c' });
    const deadline = Date.now() + 10_000;
    while (heldAnswer === null || lostAnswers === 0) {
      if (Date.now() > deadline) throw new Error('the broker did not answer b and c');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const d = target.send({ topic: name, value: 'd' }).catch((error: unknown) => error);
    expect(await d).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'injected: refused' });
    const e = target.send({ topic: name, value: 'e' }); // queued before b's answer arrives
    // c is unanswered until the request timeout; it is then resent at its epoch, the broker
    // answers it as the duplicate it is, and only then does e, of the next epoch, go out.
    expect(await Promise.all([b, c, e])).toEqual([{ partition: 0, offset: 1 }, { partition: 0, offset: 2 }, { partition: 0, offset: 3 }]);
    expect(values(await readLog(name, 0))).toEqual(['a', 'b', 'c', 'e']);
    const first = requests[0]!.epoch;
    expect(requests).toEqual([
      { stream: 1, value: 'a', epoch: first },
      { stream: 1, value: 'b', epoch: first },
      { stream: 1, value: 'c', epoch: first },
      { stream: 1, value: 'd', epoch: first },
      { stream: 2, value: 'c', epoch: first },
      { stream: 2, value: 'e', epoch: first + 1 },
    ]);
  });

  it('gives up after the retry budget with a clear error', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 0, retries: 2, retryBackoffMs: 1, retryBackoffMaxMs: 5, interceptors: [breakStreamsBeforeSending(1_000, { broken: 0 })] });
    const error = await target.send({ topic: name, value: 'doomed' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StrataClientError);
    expect((error as StrataClientError).code).toBe('UNAVAILABLE');
    expect((error as StrataClientError).message).toMatch(/gave up on producer-\d+-0 after 3 attempts .*; its records may have been written/);
    expect(target.bufferedBytes).toBe(0);
  });

  it('fails batches still queued after deliveryTimeoutMs at once (not written), not one per retry', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 0, batchBytes: 160, retries: 1_000, deliveryTimeoutMs: 200, retryBackoffMs: 20, retryBackoffMaxMs: 20, interceptors: [breakStreamsBeforeSending(1_000_000, { broken: 0 })] });
    // Each record fills a batch: one goes out, the others wait in the queue.
    const sends = Array.from({ length: 20 }, (_, index) => target.send({ topic: name, value: String(index).repeat(100).slice(0, 100) }).catch((caught: unknown) => caught as StrataClientError));
    const errors = (await Promise.all(sends)) as StrataClientError[];
    expect(errors[0]!.message).toMatch(/gave up on producer-\d+-0 after \d+ attempts?/);
    const notSent = errors.filter((error) => /^not sent within deliveryTimeoutMs \(200 ms\)/.test(error.message));
    expect(notSent.length).toBeGreaterThanOrEqual(15);
    await target.flush();
    expect(target.bufferedBytes).toBe(0);
    expect(values(await readLog(name, 0))).toEqual([]);
  });

  it('fails sends that waited deliveryTimeoutMs for buffer room at once, when the room frees, rather than letting them start a budget of their own', async () => {
    const name = await topic(1);
    // Room for about ten 100-byte records: the other fifty wait for it.
    const target = producer({ lingerMs: 0, batchBytes: 160, bufferBytes: 1_200, retries: 1_000, deliveryTimeoutMs: 300, retryBackoffMs: 20, retryBackoffMaxMs: 20, interceptors: [breakStreamsBeforeSending(1_000_000, { broken: 0 })] });
    const sentAt = performance.now();
    const sends = Array.from({ length: 60 }, (_, index) =>
      target.send({ topic: name, value: String(index).repeat(100).slice(0, 100) }).then(
        () => null,
        (caught: unknown) => ({ error: caught as StrataClientError, afterMs: performance.now() - sentAt }),
      ),
    );
    const failures = await Promise.all(sends);
    expect(failures.every((failure) => failure !== null)).toBe(true);
    // The batches sent give up at the deadline; a send still waiting for room then fails at once,
    // saying so, and one let in when room freed just before keeps its budget (its batch is past
    // the deadline too). None gets a budget of its own: in five lots of ten, each lot starting
    // one, the last would fail after 1.5 s.
    for (const { error } of failures as { error: StrataClientError }[]) {
      expect(error.message).toMatch(/^(gave up on \S+ after \d+ attempts? over \d+ ms|not sent within deliveryTimeoutMs \(300 ms\): (it waited for room in the producer's bufferBytes \(1200\)|\S+ could not be written))/);
    }
    expect(failures.filter((failure) => /it waited for room/.test(failure!.error.message)).length).toBeGreaterThan(0);
    expect(Math.max(...failures.map((failure) => failure!.afterMs))).toBeLessThan(900);
    await target.flush();
    expect(target.bufferedBytes).toBe(0);
    expect(values(await readLog(name, 0))).toEqual([]);
  });

  it('when it gives up on unanswered batches, says that they and the ones behind them may have been written', async () => {
    const name = await topic(1);
    const stats = { lost: 1_000, duplicates: 0 };
    const target = producer({ lingerMs: 0, batchBytes: 160, retries: 2, retryBackoffMs: 1, retryBackoffMaxMs: 5, interceptors: [loseResponses(1_000, stats)] });
    await target.send({ topic: name, value: 'answered' }); // the partition now takes batches in parallel
    stats.lost = 0; // from here on, every answer is lost
    // Each record fills a batch of its own: two batches in flight together.
    const first = target.send({ topic: name, value: 'd'.repeat(100) }).catch((caught: unknown) => caught as StrataClientError);
    const second = target.send({ topic: name, value: 'e'.repeat(100) }).catch((caught: unknown) => caught as StrataClientError);
    expect(((await first) as StrataClientError).message).toMatch(/gave up on producer-\d+-0 after 3 attempts .*; its records may have been written/);
    expect(((await second) as StrataClientError).message).toMatch(/^outcome unknown: an earlier batch of producer-\d+-0 failed without an answer .*; these records may have been written too/);
    // And they were: only the answers were lost.
    expect(values(await readLog(name, 0))).toEqual(['answered', 'd'.repeat(100), 'e'.repeat(100)]);
  });

  it('a batch refused by a fenced partition fails those behind it as "outcome unknown", not "not written": the fence may keep what was written', async () => {
    const name = await topic(1);
    let fence = false;
    // Once `fence` is set, the next answer becomes the refusal a partition gives when an
    // fdatasync fails under a group of batches; the broker really wrote them (this one included).
    const interceptor = onProduceAnswers((message, nextMessage) => {
      if (!fence) return nextMessage(message);
      fence = false;
      const refusal = `partition ${name}-0 is fenced: fdatasync of the segment failed (EIO); check the disk, then restart the machine, not only the broker, to recover`;
      nextMessage(v1.ProduceResponse.create({ correlationId: message.correlationId, error: { code: status.FAILED_PRECONDITION, message: refusal } }));
    });
    const target = producer({ lingerMs: 0, batchBytes: 160, interceptors: [interceptor] });
    await target.send({ topic: name, value: 'answered' }); // the partition now takes batches in parallel
    fence = true;
    // Each record fills a batch of its own: both are in flight when the first answer comes.
    const first = target.send({ topic: name, value: 'd'.repeat(100) }).catch((caught: unknown) => caught as StrataClientError);
    const second = target.send({ topic: name, value: 'e'.repeat(100) }).catch((caught: unknown) => caught as StrataClientError);
    expect(await first).toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringMatching(/^partition producer-\d+-0 is fenced: fdatasync/) as unknown as string });
    const behind = (await second) as StrataClientError;
    expect(behind).toBeInstanceOf(StrataClientError);
    expect(behind.message).toMatch(/^outcome unknown: an earlier batch of producer-\d+-0 was refused by the fenced partition, which may keep what it wrote of these records too \(partition .* is fenced: /);
    // Here the broker writes both: "not written" would have been wrong. The second may still be
    // on its way to the log when its send fails (it fails with the first's answer).
    await vi.waitFor(async () => expect(values(await readLog(name, 0))).toEqual(['answered', 'd'.repeat(100), 'e'.repeat(100)]), { timeout: 10_000 });
  });

  it('a batch the broker refuses fails its sends and those behind it ("not written"); the partition then carries on', async () => {
    const name = await topic(1, { 'max.message.bytes': '4096' });
    const target = producer({ lingerMs: 60_000, batchBytes: 2_100, metadataMaxAgeMs: 3_600_000 }); // the big record fills a batch
    const first = target.send({ topic: name, value: 'small-1' });
    await target.flush();
    expect((await first).offset).toBe(0); // the metadata is known now: 4096
    await admin.alterTopicConfigs(name, { 'max.message.bytes': '1024' }); // the producer does not know yet
    const big = target.send({ topic: name, value: 'B'.repeat(2_000) }).catch((caught: unknown) => caught as StrataClientError);
    const behind = target.send({ topic: name, value: 'small-2' }).catch((caught: unknown) => caught as StrataClientError);
    await target.flush();
    const bigError = await big;
    expect(bigError).toBeInstanceOf(StrataClientError);
    expect((bigError as StrataClientError).code).toBe('RESOURCE_EXHAUSTED');
    expect((bigError as StrataClientError).message).toContain('max.message.bytes');
    const behindError = (await behind) as StrataClientError;
    expect(behindError).toBeInstanceOf(StrataClientError);
    expect(behindError.message).toMatch(/^not written: an earlier batch of .* was refused/);
    // Both are the broker's refusal, the second in the producer's words.
    expect([(bigError as StrataClientError).fromBroker, behindError.fromBroker]).toEqual([true, true]);
    const afterSends = [target.send({ topic: name, value: 'after-1' }), target.send({ topic: name, value: 'after-2' })];
    await target.flush();
    const after = await Promise.all(afterSends);
    expect(after.map((result) => result.offset)).toEqual([1, 2]);
    expect(values(await readLog(name, 0))).toEqual(['small-1', 'after-1', 'after-2']);
  });

  it('a partition that has used up every epoch of its producer id carries on under a new id, from epoch 0', async () => {
    // The broker hands out epoch 0; this answer says 32767, the last, so one refusal uses it up.
    const initProducer = { calls: 0 };
    const lastEpochFirst = rewriteFirstInitProducer(initProducer, (message) => (message.producerEpoch = 0x7fff));
    const name = await topic(1, { 'max.message.bytes': '4096' });
    const target = producer({ lingerMs: 60_000, batchBytes: 2_100, metadataMaxAgeMs: 3_600_000, interceptors: [lastEpochFirst] });
    const first = target.send({ topic: name, value: 'small-1' });
    await target.flush();
    expect((await first).offset).toBe(0);
    await admin.alterTopicConfigs(name, { 'max.message.bytes': '1024' }); // refused by the broker: the producer does not know yet
    const big = target.send({ topic: name, value: 'B'.repeat(2_000) }).catch((caught: unknown) => caught as StrataClientError);
    await target.flush();
    expect(await big).toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    const afterSends = [target.send({ topic: name, value: 'after-1' }), target.send({ topic: name, value: 'after-2' })];
    await target.flush();
    expect((await Promise.all(afterSends)).map((result) => result.offset)).toEqual([1, 2]);
    expect(initProducer.calls).toBe(2);
    const { batches } = await readLog(name, 0);
    expect(batches.map((batch) => batch.producerEpoch)).toEqual([0x7fff, 0]);
    expect(batches[1]!.producerId).toBeGreaterThan(batches[0]!.producerId);
    expect(batches[1]!.baseSequence).toBe(0);
  });

  it('a producer id the broker does not know (its metadata was lost) is replaced by a new one', async () => {
    const initProducer = { calls: 0 };
    const unknownIdFirst = rewriteFirstInitProducer(initProducer, (message) => (message.producerId = Long.fromNumber(1_000_000_000)));
    const name = await topic(1);
    const target = producer({ interceptors: [unknownIdFirst] });
    const refused = await target.send({ topic: name, value: 'a' }).catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^producer id 1000000000 was never handed out/) });
    expect(await target.send({ topic: name, value: 'b' })).toMatchObject({ offset: 0 });
    expect(initProducer.calls).toBe(2);
    const { batches } = await readLog(name, 0);
    expect(batches).toHaveLength(1);
    expect(batches[0]!.producerId).toBeLessThan(1_000_000_000);
  });

  it("refuses at send() a record over the topic's max.message.bytes, and the records after it are written", async () => {
    const name = await topic(1, { 'max.message.bytes': '1024' });
    const target = producer({ lingerMs: 60_000, batchBytes: 1_500 });
    const first = target.send({ topic: name, value: 'small-1' });
    const big = target.send({ topic: name, value: 'B'.repeat(2_000) }).catch((caught: unknown) => caught as StrataClientError);
    const behind = target.send({ topic: name, value: 'small-2' });
    await target.flush();
    const bigError = (await big) as StrataClientError;
    expect(bigError).toBeInstanceOf(StrataClientError);
    expect(bigError.code).toBe('RESOURCE_EXHAUSTED');
    expect(bigError.message).toMatch(/exceeds topic ".*"'s max\.message\.bytes of 1024; it was not sent/);
    expect([(await first).offset, (await behind).offset]).toEqual([0, 1]);
    expect(values(await readLog(name, 0))).toEqual(['small-1', 'small-2']);
  });

  it("counts headers against max.message.bytes, fails a gzip batch that grew past it and a record over it however well it compresses unsent; the next records are written", async () => {
    const name = await topic(1, { 'max.message.bytes': '1024' });
    const plain = producer({ lingerMs: 0 });
    const headers = await plain.send({ topic: name, value: 'v', headers: { trace: 'h'.repeat(2_000) } }).catch((caught: unknown) => caught as StrataClientError);
    expect(headers).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/a record of at least \d+ bytes \(in a batch of its own\) exceeds topic ".*"'s max\.message\.bytes of 1024; it was not sent/) });
    expect(await plain.send({ topic: name, value: 'plain' })).toEqual({ partition: 0, offset: 0 });

    const gzip = producer({ lingerMs: 0, compression: 'gzip' });
    const incompressible = randomBytes(1_000);
    const grown = await gzip.send({ topic: name, value: incompressible }).catch((caught: unknown) => caught as StrataClientError);
    expect(grown).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/a batch of 1 records is \d+ bytes \(gzip\), over topic ".*"'s max\.message\.bytes of 1024; it was not sent/) });
    // The broker would refuse it once inflated: a record must fit in max.message.bytes by itself.
    // A value of 1,018 bytes makes a record of 1,025 (3 bytes of attributes and deltas, a null
    // key, 2 bytes of value length, no headers); one byte less fits exactly, and is written.
    const large = await gzip.send({ topic: name, value: 'z'.repeat(1_018) }).catch((caught: unknown) => caught as StrataClientError);
    expect(large).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/^a record of at least 1025 bytes exceeds topic ".*"'s max\.message\.bytes of 1024 \(compressed or not, a record must fit in it\); it was not sent$/) });
    // Its batch over 1024 bytes uncompressed, under once compressed: it fits.
    expect(await gzip.send({ topic: name, value: 'z'.repeat(1_017) })).toEqual({ partition: 0, offset: 1 });
    expect(values(await readLog(name, 0))).toEqual(['plain', 'z'.repeat(1_017)]);
  });

  it("refuses unsent a record timestamped further ahead of its clock than the topic's message.timestamp.after.max.ms; the next records are written", async () => {
    const name = await topic(1, { 'message.timestamp.after.max.ms': '60000' });
    const target = producer({ lingerMs: 0 });
    const ahead = await target.send({ topic: name, value: 'ahead', timestamp: Date.now() * 1000 }).catch((caught: unknown) => caught as StrataClientError);
    expect(ahead).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/^a record timestamped \d+ is \d+ ms ahead of this client's clock, more than topic ".*"'s message\.timestamp\.after\.max\.ms of 60000: timestamps are milliseconds since the epoch; it was not sent$/),
    });
    expect(await target.send({ topic: name, value: 'now' })).toEqual({ partition: 0, offset: 0 });
    expect(await target.send({ topic: name, value: 'a second ahead', timestamp: Date.now() + 1_000 })).toEqual({ partition: 0, offset: 1 });
    expect(values(await readLog(name, 0))).toEqual(['now', 'a second ahead']);
  });

  it('refuses a timestamp that is negative, a fraction or past 2^53 - 1, saying which, and sends nothing', async () => {
    const name = await topic(1);
    const target = producer({ lingerMs: 0 });
    const refusedWith = async (timestamp: number): Promise<unknown> => target.send({ topic: name, value: 'x', timestamp }).catch((caught: unknown) => caught);
    expect(await refusedWith(-1)).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'timestamp must be a non-negative integer (ms) up to 2^53 - 1, got -1' });
    expect(await refusedWith(1.5)).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'timestamp must be a non-negative integer (ms) up to 2^53 - 1, got 1.5' });
    // 1e16 reads as 10000000000000000, a non-negative integer: the message says what is wrong with it.
    expect(await refusedWith(1e16)).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'timestamp must be a non-negative integer (ms) up to 2^53 - 1, got a number past 2^53 - 1 (about 1.000e+16)' });
    expect(await target.send({ topic: name, value: 'sent' })).toEqual({ partition: 0, offset: 0 });
  });

  it('learns a lowered max.message.bytes after a refusal, also when sending to an explicit partition', async () => {
    const name = await topic(1, { 'max.message.bytes': '4096' });
    const target = producer({ lingerMs: 0, metadataMaxAgeMs: 3_600_000 });
    await target.send({ topic: name, partition: 0, value: 'first' });
    await admin.alterTopicConfigs(name, { 'max.message.bytes': '1024' });
    const refused = (await target.send({ topic: name, partition: 0, value: 'C'.repeat(2_000) }).catch((caught: unknown) => caught)) as StrataClientError;
    expect(refused.message).toContain('max.message.bytes'); // by the broker: the producer did not know
    // The refusal made the metadata stale: the next send fetches it and refuses at once.
    const deadline = Date.now() + 5_000;
    let message = '';
    while (!message.includes('it was not sent') && Date.now() < deadline) {
      message = ((await target.send({ topic: name, partition: 0, value: 'C'.repeat(2_000) }).catch((caught: unknown) => caught)) as StrataClientError).message;
    }
    expect(message).toContain('it was not sent');
  });

  it('learns a raised max.message.bytes or message.timestamp.after.max.ms after refusing a record itself', async () => {
    const name = await topic(1, { 'max.message.bytes': '1024', 'message.timestamp.after.max.ms': '60000' });
    const target = producer({ lingerMs: 0, metadataMaxAgeMs: 3_600_000 });
    const record = { topic: name, partition: 0, value: 'R'.repeat(2_000) };
    const ahead = { topic: name, partition: 0, value: 'ahead', timestamp: Date.now() + 600_000 };
    for (const send of [record, ahead]) expect(await target.send(send).catch((caught: unknown) => (caught as StrataClientError).message)).toMatch(/it was not sent$/);
    await admin.alterTopicConfigs(name, { 'max.message.bytes': '4096', 'message.timestamp.after.max.ms': '3600000' });
    // Each refusal made the metadata stale: a later send fetches it (in the background) and goes through.
    for (const send of [record, ahead]) {
      const deadline = Date.now() + 5_000;
      let outcome: unknown;
      do outcome = await target.send(send).catch((caught: unknown) => caught);
      while (outcome instanceof StrataClientError && Date.now() < deadline);
      expect(outcome).toMatchObject({ partition: 0 });
    }
    expect(values(await readLog(name, 0))).toEqual(['R'.repeat(2_000), 'ahead']);
  });
});

describe('a broker restarting', () => {
  /** A broker on a fixed loopback port, with a topic, that the test stops and starts again on the same data directory. */
  async function restartableBroker(topicName: string, partitions: number): Promise<{ listen: string; stop(): Promise<void>; start(): Promise<void>; dispose(): Promise<void> }> {
    const listen = `127.0.0.1:${await unusedPort()}`;
    let running: TestBroker | null = await startTestBroker({ listen });
    const dataDir = running.dataDir;
    const setup = new Admin({ server: listen });
    await setup.createTopic(topicName, { partitions });
    await setup.close();
    return {
      listen,
      stop: async () => {
        await running?.stop();
        running = null;
      },
      start: async () => {
        running = await startTestBroker({ dataDir, listen });
      },
      dispose: async () => {
        await running?.stop();
        removeDirectory(dataDir);
      },
    };
  }

  it('close() flushes a send waiting for its topic metadata while the broker is down, once it is back', async () => {
    const broker = await restartableBroker('restarting', 1);
    const calls = { describeTopic: 0 };
    const target = new Producer({ server: broker.listen, deadlineMs: 10_000, retryBackoffMs: 20, retryBackoffMaxMs: 100, interceptors: [countingDescribeTopic(calls)] });
    const retries: ProducerRetryEvent[] = [];
    const recoveries: ProducerRecoveredEvent[] = [];
    target.on('retrying', (event: ProducerRetryEvent) => retries.push(event));
    target.on('recovered', (event: ProducerRecoveredEvent) => recoveries.push(event));
    try {
      await broker.stop();
      const sent = target.send({ topic: 'restarting', value: 'across the restart' });
      const closed = target.close();
      // A second lookup means the first failed and the send is still waiting, close() or not.
      await waitUntil(() => calls.describeTopic >= 2, 'the producer never looked the topic up again');
      // Each failed lookup is told, as a failed stream is: the send does not wait in silence.
      expect(retries[0]).toMatchObject({ code: 'UNAVAILABLE', attempt: 1, partitions: 0 });
      await broker.start();
      expect(await sent).toEqual({ partition: 0, offset: 0 });
      await closed;
      expect(retries.map((event) => event.attempt)).toEqual(Array.from({ length: retries.length }, (_, index) => index + 1));
      expect(recoveries).toEqual([{ failedAttempts: retries.length }]);
    } finally {
      await target.close();
      await broker.dispose();
    }
  });

  it("emits 'retrying' at each failed attempt while the broker is down, and 'recovered' once with the first acknowledgement after", async () => {
    const broker = await restartableBroker('retried', 1);
    const target = new Producer({ server: broker.listen, deadlineMs: 10_000, retryBackoffMs: 20, retryBackoffMaxMs: 100 });
    const retries: ProducerRetryEvent[] = [];
    const recoveries: ProducerRecoveredEvent[] = [];
    target.on('retrying', (event: ProducerRetryEvent) => retries.push(event));
    target.on('recovered', (event: ProducerRecoveredEvent) => recoveries.push(event));
    try {
      expect(await target.send({ topic: 'retried', value: 'before' })).toEqual({ partition: 0, offset: 0 });
      await broker.stop();
      const sent = target.send({ topic: 'retried', value: 'while down' });
      await waitUntil(() => retries.length >= 2, 'two failed attempts');
      expect(recoveries).toEqual([]);
      expect(retries[0]).toMatchObject({ code: 'UNAVAILABLE', attempt: 1, partitions: 1 });
      expect(retries[1]).toMatchObject({ code: 'UNAVAILABLE', attempt: 2, partitions: 1 });
      await broker.start();
      expect(await sent).toEqual({ partition: 0, offset: 1 });
      const attempts = retries.length;
      expect(recoveries).toEqual([{ failedAttempts: attempts }]);
      expect(retries.map((event) => event.attempt)).toEqual(Array.from({ length: attempts }, (_, index) => index + 1));
      expect(await target.send({ topic: 'retried', value: 'after' })).toEqual({ partition: 0, offset: 2 });
      expect(recoveries).toHaveLength(1);
    } finally {
      await target.close();
      await broker.dispose();
    }
  });

  it('a send to a partition past the known count waits out a broker restart (the partition may have been added)', async () => {
    const broker = await restartableBroker('growing', 1);
    const target = new Producer({ server: broker.listen, deadlineMs: 10_000, retryBackoffMs: 20, retryBackoffMaxMs: 100 });
    try {
      expect(await target.send({ topic: 'growing', partition: 0, value: 'known' })).toEqual({ partition: 0, offset: 0 });
      const metadataReadBy = Date.now();
      const grow = new Admin({ server: broker.listen });
      await grow.addPartitions('growing', 2);
      await grow.close();
      await broker.stop();
      // Metadata younger than retryBackoffMs is taken as it is (a burst of such sends costs one
      // lookup): this send must come later, for the producer to look the count up again.
      await waitUntil(() => Date.now() - metadataReadBy > 20, 'the metadata to be older than retryBackoffMs');
      const sent = target.send({ topic: 'growing', partition: 1, value: 'in the new partition' });
      await broker.start();
      expect(await sent).toEqual({ partition: 1, offset: 0 });
    } finally {
      await target.close();
      await broker.dispose();
    }
  });
});

describe('sends refused at once', () => {
  it('flush() settles after the callbacks of sends refused before it, which run a turn of the event loop later', async () => {
    const name = await topic(1, { 'message.timestamp.after.max.ms': '60000' });
    const target = producer({ lingerMs: 0 });
    await target.send({ topic: name, value: 'first' }); // the topic's limits are known from here
    const called: string[] = [];
    target.send({ topic: name, value: 'ahead', timestamp: Date.now() + 600_000 }, (error) => called.push(error?.message ?? 'no error'));
    expect(called).toEqual([]);
    await target.flush();
    expect(called).toEqual([expect.stringMatching(/it was not sent$/)]);
  });

  it('sends refused one after another look the topic up at most once a retryBackoffMs', async () => {
    const name = await topic(1, { 'message.timestamp.after.max.ms': '60000' });
    const lookups = { calls: 0 };
    const counting: Interceptor = (options, nextCall) => {
      if (options.method_definition.path === '/strata.v1.Admin/DescribeTopic') lookups.calls++;
      return new InterceptingCall(nextCall(options));
    };
    const target = producer({ lingerMs: 0, retryBackoffMs: 50, retryBackoffMaxMs: 50, interceptors: [counting] });
    await target.send({ topic: name, value: 'first' });
    const before = lookups.calls;
    const startedAt = performance.now();
    let refusals = 0;
    while (performance.now() - startedAt < 500) {
      const refused = await target.send({ topic: name, value: 'ahead', timestamp: Date.now() + 600_000 }).catch((caught: unknown) => caught);
      expect(refused).toBeInstanceOf(StrataClientError);
      refusals++;
    }
    const elapsedMs = performance.now() - startedAt;
    expect(refusals).toBeGreaterThan(lookups.calls - before);
    expect(lookups.calls - before).toBeGreaterThan(0); // each refusal marks the metadata stale
    expect(lookups.calls - before).toBeLessThanOrEqual(Math.floor(elapsedMs / 50) + 2);
  });
});

describe('acks', () => {
  it("refuses acks 'none' with idempotence", () => {
    expect(() => new Producer({ server: broker.address, acks: 'none' })).toThrow(/acks 'none' cannot be idempotent/);
  });

  it("acks 'leader' reports offsets; acks 'none' without idempotence reports -1 but writes", async () => {
    const name = await topic(1);
    const leader = producer({ acks: 'leader' });
    expect((await leader.send({ topic: name, value: 'l' })).offset).toBe(0);
    const fireAndForget = producer({ acks: 'none', idempotent: false });
    expect(await fireAndForget.send({ topic: name, partition: 0, value: 'n' })).toEqual({ partition: 0, offset: -1 });
    await fireAndForget.close();
    // acks=none answers before the write, acks=leader before the fsync: a durable send behind
    // them proves both writes happened and moves the high watermark past them.
    expect((await producer().send({ topic: name, value: 'l2' })).offset).toBe(2);
    expect(values(await readLog(name, 0))).toEqual(['l', 'n', 'l2']);
  });
});
