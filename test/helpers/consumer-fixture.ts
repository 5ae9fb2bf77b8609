/**
 * The preamble of the client Consumer's test files: one in-process broker, an Admin, a Producer
 * that sends only when flushed (a long linger: each flush makes one batch per partition),
 * consumers made with `consumer()` on top of the file's defaults, all closed after the file's
 * tests, and topics of fresh names.
 */
import { afterAll, beforeAll } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import type { ConnectionOptions } from '../../src/client/connection.js';
import { Consumer, type ConsumerOptions, type ConsumerSettings } from '../../src/client/consumer.js';
import { Producer } from '../../src/client/producer.js';
import type { ServeSettings } from '../../src/config/broker-options.js';
import { type TestBroker, startTestBroker } from './test-server.js';

export type ConsumerOverrides = ConsumerSettings & Partial<ConnectionOptions>;

export interface ConsumerFixture {
  /** Available from the file's first test on (each throws before beforeAll ran). */
  readonly broker: TestBroker;
  readonly admin: Admin;
  readonly producer: Producer;
  /** A consumer of the broker with the file's defaults and `options`, closed after the file. */
  consumer(options?: ConsumerOverrides): Consumer;
  /** A topic name no other test of the file uses (the topic is not created). */
  newTopicName(): string;
  /** Creates a topic of a name no other test of the file uses. */
  topic(partitions: number): Promise<string>;
}

/** Registers the hooks (at the top level of a test file) and returns the fixture. */
export function useConsumerFixture(settings: { topicPrefix: string; broker?: Partial<ServeSettings>; defaults?: ConsumerOverrides }): ConsumerFixture {
  let broker: TestBroker | undefined;
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  const consumers: Consumer[] = [];
  let topics = 0;

  beforeAll(async () => {
    broker = await startTestBroker(settings.broker);
    admin = new Admin({ server: broker.address });
    producer = new Producer({ server: broker.address, lingerMs: 60_000 });
  });
  afterAll(async () => {
    await Promise.all(consumers.map((consumer) => consumer.close()));
    await producer?.close();
    await admin?.close();
    await broker?.dispose();
  });

  const newTopicName = (): string => `${settings.topicPrefix}-${++topics}`;
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the consumer fixture is available from the first test on');
    return value;
  };
  return {
    get broker() {
      return started(broker);
    },
    get admin() {
      return started(admin);
    },
    get producer() {
      return started(producer);
    },
    consumer(options = {}) {
      const created = new Consumer({ server: started(broker).address, deadlineMs: 10_000, ...settings.defaults, ...options } as ConsumerOptions);
      consumers.push(created);
      return created;
    },
    newTopicName,
    async topic(partitions) {
      const name = newTopicName();
      await started(admin).createTopic(name, { partitions });
      return name;
    },
  };
}
