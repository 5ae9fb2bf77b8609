// Goal: `subscribe()` pushes a topic's records in order, and a call that fails (an unknown
// topic, a cancel) never ends the process: its error surfaces on iteration whenever the
// iteration starts, and a cancelled subscription ends quietly; method: the client against a
// real broker on a loopback port, the end of the call awaited on its stream's status event.
import type { EventEmitter } from 'node:events';
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Connection } from '../../src/client/connection.js';
import { Producer } from '../../src/client/producer.js';
import { type SubscribeOptions, type Subscription, subscribe } from '../../src/client/subscription.js';
import { ATTRIBUTES_OFFSET, CRC_OFFSET, RECORD_COUNT_OFFSET } from '../../src/storage/record-batch.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';

const shared = useBrokerWithAdmin();
let connection: Connection;

beforeAll(() => {
  connection = new Connection({ server: shared.broker.address });
});

afterAll(() => connection.close());

/** Waits for the end of the subscription's call (grpc-js reports its status after the error of a failed one). */
async function untilEnded(subscription: Subscription): Promise<void> {
  // Not events.once, which would reject at the 'error' event before the status.
  await new Promise((resolve) => (subscription as unknown as { stream: EventEmitter }).stream.once('status', resolve));
}

async function collect(subscription: Subscription, count: number): Promise<string[]> {
  const values: string[] = [];
  for await (const batch of subscription) {
    for (const record of batch.records) values.push(record.value!.toString());
    if (values.length >= count) break;
  }
  return values;
}

describe('subscribe', () => {
  it('pushes the records of a partition in order, from the earliest', async () => {
    await shared.admin.createTopic('subscribed', { partitions: 1 });
    const producer = new Producer({ server: shared.broker.address });
    try {
      for (let index = 0; index < 5; index++) await producer.send({ topic: 'subscribed', value: `v${index}` });
    } finally {
      await producer.close();
    }
    expect(await collect(subscribe(connection, { topic: 'subscribed', start: 'earliest' }), 5)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
  });

  it('throws the error of a call that failed before the iteration started (NOT_FOUND for an unknown topic)', async () => {
    const subscription = subscribe(connection, { topic: 'never-created' });
    await untilEnded(subscription);
    await expect(collect(subscription, 1)).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/topic "never-created" not found/) });
  });

  it('fails with DATA_LOSS, naming the partition, on a pushed batch whose CRC holds but whose records do not decode', async () => {
    await shared.admin.createTopic('undecodable', { partitions: 1 });
    const producer = new Producer({ server: shared.broker.address });
    try {
      await producer.send({ topic: 'undecodable', value: 'only one' });
    } finally {
      await producer.close();
    }
    // The pushed batch claims two records, its CRC sealed again: the damage only decoding finds.
    const claimingTwo: Interceptor = (options, nextCall) =>
      new InterceptingCall(nextCall(options), {
        start(metadata, _listener, next) {
          next(metadata, {
            onReceiveMessage: (message: { batches: Uint8Array }, nextMessage) => {
              const batches = Buffer.from(message.batches);
              batches.writeInt32BE(2, RECORD_COUNT_OFFSET);
              batches.writeUInt32BE(crc32c(batches.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
              message.batches = batches; // (a copy would lose the fields protobufjs keeps on the prototype)
              nextMessage(message);
            },
          });
        },
      });
    const damaged = new Connection({ server: shared.broker.address, interceptors: [claimingTwo] });
    try {
      await expect(collect(subscribe(damaged, { topic: 'undecodable', start: 'earliest' }), 1)).rejects.toMatchObject({
        code: 'DATA_LOSS',
        message: expect.stringMatching(/^pushed batch of undecodable-0 at byte 0 does not decode: batch at offset 0 does not decode: /),
      });
    } finally {
      damaged.close();
    }
  });

  it('ends quietly when cancelled, iterated or not', async () => {
    await shared.admin.createTopic('cancelled-subscription', { partitions: 1 });
    const subscription = subscribe(connection, { topic: 'cancelled-subscription' });
    subscription.cancel();
    await untilEnded(subscription); // grpc-js reports the cancel as a CANCELLED error
    expect(await collect(subscription, 1)).toEqual([]);
  });

  it('refuses partitions, max bytes and timestamps the wire would carry as something else, before any call', () => {
    for (const [options, message] of [
      [{ partitions: [2 ** 32] }, /partition must be an integer from 0 to 2147483647, got 4294967296/],
      [{ partitions: [1.5] }, /partition must be an integer/],
      [{ maxBytes: 2 ** 32 }, /maxBytes/],
      [{ maxBytes: 0 }, /maxBytes/],
      [{ start: { timestamp: -1 } }, /start.timestamp must be a time in ms since the epoch, got -1 \(use 'latest' or 'earliest'/],
      [{ start: 'begin' }, /^start must be 'latest', 'earliest', \{ offset \} or \{ timestamp \}, got "begin"$/],
    ] as const) {
      expect(() => subscribe(connection, { topic: 't', ...options } as SubscribeOptions), JSON.stringify(options)).toThrow(message);
    }
  });

  it('reads at most one message ahead of a slow iteration, not grpc-js\'s sixteen', () => {
    const subscription = subscribe(connection, { topic: 'never-created' });
    try {
      expect((subscription as unknown as { stream: { readableHighWaterMark: number } }).stream.readableHighWaterMark).toBe(1);
    } finally {
      subscription.cancel();
    }
  });
});
