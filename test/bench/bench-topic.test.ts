// Goal: a benchmark never measures a topic other than the one its command line describes: an
// existing topic with another partition count or another `flush` is refused with a line naming
// the difference, one that matches is used as it is, and a missing one is created with what was
// asked. Method: a real in-process broker and the project's Admin client.
import { expect, it } from 'vitest';
import { BenchSetupError, ensureTopic } from '../../src/bench/bench-topic.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';

const shared = useBrokerWithAdmin();

it('creates a missing topic with the partition count and flush asked for', async () => {
  const topic = await ensureTopic(shared.admin, { name: 'bench-new', partitions: 3, configs: { flush: 'interval' } });
  expect(topic.created).toBe(true);
  expect(topic.description.partitions).toHaveLength(3);
  expect(topic.description.configs.flush).toBe('interval');
});

it('uses an existing topic that matches, as it is', async () => {
  await shared.admin.createTopic('bench-same', { partitions: 2, configs: { flush: 'always' } });
  const topic = await ensureTopic(shared.admin, { name: 'bench-same', partitions: 2, configs: { flush: 'always' } });
  expect(topic.created).toBe(false);
  // No partition count asked for: whatever the topic has.
  expect((await ensureTopic(shared.admin, { name: 'bench-same', partitions: null, configs: { flush: 'always' } })).description.partitions).toHaveLength(2);
});

it('refuses an existing topic with another partition count', async () => {
  await shared.admin.createTopic('bench-count', { partitions: 2 });
  await expect(ensureTopic(shared.admin, { name: 'bench-count', partitions: 4, configs: {} })).rejects.toThrow(
    new BenchSetupError('topic "bench-count" exists with 2 partitions, not the 4 asked for; give another --topic'),
  );
  await shared.admin.createTopic('bench-one', { partitions: 1 });
  await expect(ensureTopic(shared.admin, { name: 'bench-one', partitions: 4, configs: {} })).rejects.toThrow(
    new BenchSetupError('topic "bench-one" exists with 1 partition, not the 4 asked for; give another --topic'),
  );
});

it('refuses an existing topic whose flush differs from the one asked for, naming both', async () => {
  // A topic left by an earlier `--flush interval` run: a plain run would measure no fdatasync.
  await shared.admin.createTopic('bench-flush', { partitions: 1, configs: { flush: 'interval' } });
  const refusal = ensureTopic(shared.admin, { name: 'bench-flush', partitions: 1, configs: { flush: 'always' } });
  await expect(refusal).rejects.toBeInstanceOf(BenchSetupError);
  await expect(refusal).rejects.toThrow(
    'topic "bench-flush" exists with flush=interval, not the flush=always asked for; give another --topic, or alter it with strata topics alter bench-flush --config flush=always',
  );
});
