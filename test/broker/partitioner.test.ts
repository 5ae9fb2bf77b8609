// Goal: show the partitioner maps keys exactly as Kafka's default partitioner does and spreads
// null-key requests by rotation; method: Kafka's published murmur2 test vectors, a cross-check of
// murmur2 and key placement against kafkajs's independent implementation on random keys, and
// range/rotation checks of partitionForKey and StickyPartitioner.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StickyPartitioner, murmur2, partitionForKey } from '../../src/broker/partitioner.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { mulberry32 } from '../helpers/seeded-random.js';

const require = createRequire(import.meta.url);
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: Buffer) => number;
const createKafkajsPartitioner = require('kafkajs/src/producer/partitioners/default/index.js') as () => (args: {
  topic: string;
  partitionMetadata: { partitionId: number; leader: number }[];
  message: { key: Buffer | null; partition?: number | null };
}) => number;

function randomKey(random: () => number, length: number): Buffer {
  const key = Buffer.alloc(length);
  for (let index = 0; index < length; index++) key[index] = Math.floor(random() * 256);
  return key;
}

describe('murmur2', () => {
  // From Kafka's UtilsTest.testMurmur2.
  const vectors: [string, number][] = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ];

  it.each(vectors)('murmur2(%j) is %d, as in Kafka', (input, expected) => {
    expect(murmur2(Buffer.from(input, 'utf8'))).toBe(expected);
  });

  it('returns a signed 32-bit integer', () => {
    const random = mulberry32(1);
    for (let round = 0; round < 500; round++) {
      const hash = murmur2(randomKey(random, Math.floor(random() * 40)));
      expect(Number.isInteger(hash)).toBe(true);
      expect(hash).toBe(hash | 0);
    }
  });

  it('agrees with kafkajs on random keys of every tail length, including bytes >= 0x80', () => {
    const random = mulberry32(42);
    for (let length = 0; length <= 67; length++) {
      for (let round = 0; round < 20; round++) {
        const key = randomKey(random, length);
        expect(murmur2(key), `key ${key.toString('hex')}`).toBe(kafkajsMurmur2(key));
      }
    }
    const allHigh = Buffer.alloc(13, 0xff);
    expect(murmur2(allHigh)).toBe(kafkajsMurmur2(allHigh));
  });

  it('hashes the bytes of a view, not its whole underlying buffer', () => {
    const backing = Buffer.from('xxfoobarxx', 'utf8');
    expect(murmur2(backing.subarray(2, 8))).toBe(-790332482);
    expect(murmur2(new Uint8Array(backing.buffer, backing.byteOffset + 2, 6))).toBe(-790332482);
  });

  it('hashes a range given by start and length as it hashes that range copied out', () => {
    const random = mulberry32(9);
    const backing = randomKey(random, 200);
    for (let round = 0; round < 300; round++) {
      const start = Math.floor(random() * 200);
      const length = Math.floor(random() * (200 - start));
      const copy = Buffer.from(backing.subarray(start, start + length));
      expect(murmur2(backing, start, length), `start ${start} length ${length}`).toBe(murmur2(copy));
      expect(partitionForKey(backing, 12, start, length)).toBe(partitionForKey(copy, 12));
    }
  });
});

describe('partitionForKey', () => {
  it('is (murmur2(key) & 0x7fffffff) % partitions, also for keys with a negative hash', () => {
    const key = Buffer.from('21', 'utf8'); // murmur2 is negative
    for (const partitions of [1, 2, 3, 7, 12, 100, 10_000]) {
      expect(partitionForKey(key, partitions)).toBe((-973932308 & 0x7fffffff) % partitions);
    }
    expect(partitionForKey(Buffer.from('abc'), 12)).toBe(479470107 % 12);
  });

  it('stays in [0, partitions) and matches kafkajs DefaultPartitioner', () => {
    const random = mulberry32(7);
    const kafkajs = createKafkajsPartitioner();
    for (const partitions of [1, 2, 3, 5, 12, 64, 1000, 10_000]) {
      const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0 }));
      for (let round = 0; round < 200; round++) {
        const key = randomKey(random, 1 + Math.floor(random() * 30));
        const partition = partitionForKey(key, partitions);
        expect(Number.isInteger(partition)).toBe(true);
        expect(partition).toBeGreaterThanOrEqual(0);
        expect(partition).toBeLessThan(partitions);
        expect(partition).toBe(kafkajs({ topic: 't', partitionMetadata, message: { key } }));
      }
    }
  });

  it('maps a key to partition 0 when there is one partition', () => {
    const random = mulberry32(9);
    for (let round = 0; round < 100; round++) expect(partitionForKey(randomKey(random, 8), 1)).toBe(0);
  });

  it('spreads many keys over all partitions', () => {
    const seen = new Set<number>();
    for (let index = 0; index < 1000; index++) seen.add(partitionForKey(Buffer.from(`key-${index}`), 12));
    expect([...seen].sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
  });
});

describe('StickyPartitioner', () => {
  it('rotates: each call moves to the next partition, covering all of them in turn', () => {
    for (const partitions of [1, 2, 5, 12]) {
      const sticky = new StickyPartitioner();
      const picks = Array.from({ length: 3 * partitions }, () => sticky.nextPartition(partitions));
      for (const pick of picks) {
        expect(Number.isInteger(pick)).toBe(true);
        expect(pick).toBeGreaterThanOrEqual(0);
        expect(pick).toBeLessThan(partitions);
      }
      for (let index = 1; index < picks.length; index++) expect(picks[index]).toBe((picks[index - 1]! + 1) % partitions);
      expect(new Set(picks.slice(0, partitions)).size).toBe(partitions);
    }
  });

  it('stays in range when the partition count changes between calls', () => {
    const sticky = new StickyPartitioner();
    for (const partitions of [3, 3, 7, 1, 12, 2, 10_000, 5]) {
      const pick = sticky.nextPartition(partitions);
      expect(pick).toBeGreaterThanOrEqual(0);
      expect(pick).toBeLessThan(partitions);
    }
  });

  it('does not start every instance at the same partition', () => {
    // The start is random; 20 instances all picking the same first of 1000 partitions would be a
    // fixed start (chance about 1e-57 otherwise).
    const firsts = new Set(Array.from({ length: 20 }, () => new StickyPartitioner().nextPartition(1000)));
    expect(firsts.size).toBeGreaterThan(1);
  });
});

describe("the README's grpcurl quick start", () => {
  it('fetches the partition its produced key lands on', () => {
    const readme = readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8');
    const partitions = Number(/"name":"orders","partitions":(\d+)/.exec(readme)?.[1]);
    const key = /"key":"'\$\(echo -n (\w+)\|base64\)'"/.exec(readme)?.[1];
    const fetched = Number(/-d '\{"topic":"orders","partition":(\d+),"offset":0\}' 127\.0\.0\.1:50051 strata\.v1\.Log\/Fetch/.exec(readme)?.[1]);
    expect({ partitions, key }).toEqual({ partitions: 3, key: 'k1' });
    expect(fetched).toBe(partitionForKey(Buffer.from(key!), partitions));
  });
});
