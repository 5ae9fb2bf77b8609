/**
 * Kafka's default partitioner, so a key lands on the partition a Kafka producer would pick:
 * `(murmur2(key) & 0x7fffffff) % partitionCount`. Records without a key are spread by a sticky
 * choice per request (all null-key records of one request go to one partition, and the next
 * request moves on), like Kafka's sticky partitioner.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): signed 32-bit result. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = SEED ^ length;
  const whole = length & ~3;
  for (let index = 0; index < whole; index += 4) {
    let k = data[index]! | (data[index + 1]! << 8) | (data[index + 2]! << 16) | (data[index + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & 3;
  if (tail === 3) h ^= data[whole + 2]! << 16;
  if (tail >= 2) h ^= data[whole + 1]! << 8;
  if (tail >= 1) h = Math.imul(h ^ data[whole]!, M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition of a keyed record, as Kafka computes it. */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  return (murmur2(key) & 0x7fffffff) % partitionCount;
}

/** Picks a partition for null-key records: one per request, rotating across requests. */
export class StickyPartitioner {
  private next = Math.floor(Math.random() * 0x7fffffff);

  nextPartition(partitionCount: number): number {
    const partition = this.next % partitionCount;
    this.next = (this.next + 1) & 0x7fffffff;
    return partition;
  }
}
