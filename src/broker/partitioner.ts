/**
 * Kafka's default partitioner, so a key lands on the partition a Kafka producer would pick:
 * `(murmur2(key) & 0x7fffffff) % partitionCount`. Records without a key are spread by a sticky
 * choice per request (all null-key records of one request go to one partition, and the next
 * request moves on), like Kafka's sticky partitioner.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/**
 * Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`) of `length` bytes of `data`
 * from `start` (default: all of it): signed 32-bit result.
 */
export function murmur2(data: Uint8Array, start = 0, length = data.length - start): number {
  let h = SEED ^ length;
  const whole = start + (length & ~3);
  for (let index = start; index < whole; index += 4) {
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

/** The partition of a keyed record, as Kafka computes it; the key is `length` bytes of `data` from `start`. */
export function partitionForKey(data: Uint8Array, partitionCount: number, start = 0, length = data.length - start): number {
  return (murmur2(data, start, length) & 0x7fffffff) % partitionCount;
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
