// Goal: show that a committed offset, a topic record and a producer-id counter are flushed to
// disk before their write resolves, not only committed (lmdb-js's overlappingSync resolves its
// own promise at commit, before the flush); method: real LMDB in a temporary directory, the
// environment's `flushed` promise taken while each write is under way must have resolved by the
// time the write has. Also that deleting a topic's or a group's offsets takes with it a commit
// still on its way to LMDB.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetadataStore } from '../../src/broker/metadata-store.js';
import { OffsetStore } from '../../src/groups/offset-store.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

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

describe('LMDB writes resolve once flushed', () => {
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

describe('deletions', () => {
  // A commit checked before its topic was deleted may still be on its way to LMDB when the
  // deletion starts: it must go with the rest, or a topic created again under the name would
  // start from it.
  it("delete a commit still being written when they start, a topic's and a group's", async () => {
    const offsets = new OffsetStore(metadata.root);
    const commit = (group: string, topic: string): Promise<void> => offsets.commit(group, [{ topic, partition: 0, offset: 3, metadata: '', commitTimeMs: 1 }]);
    await Promise.all([commit('g', 't'), offsets.deleteTopic('t')]);
    expect(offsets.list('g')).toEqual([]);
    await Promise.all([commit('h', 't'), offsets.deleteGroupOffsets('h')]);
    expect(offsets.list('h')).toEqual([]);
    await Promise.all([commit('i', 't'), commit('i', 'u'), offsets.deleteGroupOffsets('i', new Set(['t']))]);
    expect(offsets.list('i').map(({ topic }) => topic)).toEqual(['u']);
  });
});
