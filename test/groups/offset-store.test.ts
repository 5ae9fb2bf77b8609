// Goal: show that a committed offset, a topic record and a producer-id counter are flushed to
// disk before their write resolves, not only committed (lmdb-js's overlappingSync resolves its
// own promise at commit, before the flush); method: real LMDB in a temporary directory, the
// environment's `flushed` promise taken while each write is under way must have resolved by the
// time the write has.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetadataStore } from '../../src/broker/metadata-store.js';
import { OffsetStore } from '../../src/groups/offset-store.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

describe('LMDB writes resolve once flushed', () => {
  let directory: string;
  let metadata: MetadataStore;

  beforeEach(() => {
    directory = temporaryDirectory('strata-offset-store-');
    metadata = MetadataStore.open(directory);
  });

  afterEach(async () => {
    await metadata.close();
    removeDirectory(directory);
  });

  /** Runs `write` 20 times; each time, whether the flush covering it had finished when it resolved. */
  async function flushedWhenResolved(write: (round: number) => Promise<unknown>): Promise<boolean[]> {
    const seen: boolean[] = [];
    for (let round = 0; round < 20; round++) {
      let flushed = false;
      const written = write(round);
      void Promise.resolve(metadata.root.flushed).then(() => (flushed = true));
      await written;
      seen.push(flushed);
    }
    return seen;
  }

  it('offset commits', async () => {
    const offsets = new OffsetStore(metadata.root);
    const seen = await flushedWhenResolved((round) => offsets.commit('g', [{ topic: 't', partition: 0, offset: round, metadata: '', commitTimeMs: 1 }]));
    expect(seen).toEqual(Array<boolean>(20).fill(true));
    expect(offsets.get('g', 't', 0)?.offset).toBe(19);
  });

  it('topic records and counters', async () => {
    const topics = await flushedWhenResolved((round) => metadata.putTopic({ name: `t${round}`, partitions: 1, configs: {}, createdAtMs: 1 }));
    const counters = await flushedWhenResolved(() => metadata.nextCounter('producer-id'));
    expect([...topics, ...counters]).toEqual(Array<boolean>(40).fill(true));
  });
});
