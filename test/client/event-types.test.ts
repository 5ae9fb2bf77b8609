// Goal: an application's listeners are typed by event name, and a misspelt event name does not
// compile; method: the listeners below are type-checked by the build (`tsc` compiles the tests,
// and a `@ts-expect-error` that no longer finds an error fails it), and run against real emits.
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { Consumer, ConsumerEvents, OffsetResetEvent, TopicPartitionOffset } from '../../src/client/consumer.js';
import type { GroupErrorEvent, PartitionsLostEvent } from '../../src/client/group-member.js';
import type { Producer, ProducerEvents, ProducerRecoveredEvent, ProducerRetryEvent } from '../../src/client/producer.js';

/** Listens to each event with a listener whose argument is checked against the payload type. */
function listenTyped(consumer: Consumer, producer: Producer): string[] {
  const heard: string[] = [];
  consumer.on('offsetReset', (event) => {
    expectTypeOf(event).toEqualTypeOf<OffsetResetEvent>();
    heard.push(`offsetReset ${event.resetTo}`);
  });
  consumer.on('partitionStarted', (event) => {
    expectTypeOf(event).toEqualTypeOf<TopicPartitionOffset>();
    heard.push(`partitionStarted ${event.offset}`);
  });
  consumer.on('groupError', (event) => {
    expectTypeOf(event).toEqualTypeOf<GroupErrorEvent>();
    heard.push(`groupError ${event.error.code}`);
  });
  consumer.on('partitionsLost', (event) => {
    expectTypeOf(event).toEqualTypeOf<PartitionsLostEvent>();
    heard.push(`partitionsLost ${event.partitions.length}`);
  });
  producer.on('retrying', (event) => {
    expectTypeOf(event).toEqualTypeOf<ProducerRetryEvent>();
    heard.push(`retrying ${event.attempt}`);
  });
  producer.once('recovered', (event) => {
    expectTypeOf(event).toEqualTypeOf<ProducerRecoveredEvent>();
    heard.push(`recovered ${event.failedAttempts}`);
  });
  // @ts-expect-error: no such event (it is 'offsetReset')
  consumer.on('offsetsReset', () => heard.push('never'));
  // @ts-expect-error: 'retrying' carries a ProducerRetryEvent, not a string
  producer.on('retrying', (event: string) => heard.push(event));
  return heard;
}

describe('event types', () => {
  it('name every event the Consumer and the Producer emit, with its payload', async () => {
    // The real classes, their connections never opened: nothing here needs a broker.
    const { Consumer } = await import('../../src/client/consumer.js');
    const { Producer } = await import('../../src/client/producer.js');
    const consumer = new Consumer({ server: '127.0.0.1:1' });
    const producer = new Producer({ server: '127.0.0.1:1' });
    try {
      const heard = listenTyped(consumer, producer);
      const emitConsumer = consumer.emit.bind(consumer) as <E extends keyof ConsumerEvents>(event: E, ...args: ConsumerEvents[E]) => boolean;
      const emitProducer = producer.emit.bind(producer) as <E extends keyof ProducerEvents>(event: E, ...args: ProducerEvents[E]) => boolean;
      emitConsumer('partitionStarted', { topic: 't', partition: 0, offset: 7 });
      emitProducer('recovered', { failedAttempts: 3 });
      expect(heard).toEqual(['partitionStarted 7', 'recovered 3']);
    } finally {
      await consumer.close();
      await producer.close();
    }
  });
});
