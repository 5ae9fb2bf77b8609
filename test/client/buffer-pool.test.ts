// Goal: the producer's buffer pool hands out buffers by size class, reuses given ones and keeps
// at most its bound; method: take, give back, take again, and compare identities.
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../src/client/buffer-pool.js';

describe('BufferPool', () => {
  it('hands out the smallest size class that holds a request, powers of two up to the full size', () => {
    const pool = new BufferPool(8_192, 1_049_088, 4 * 1_049_088);
    expect(pool.take(100)!.length).toBe(8_192);
    expect(pool.take(8_192)!.length).toBe(8_192);
    expect(pool.take(8_193)!.length).toBe(16_384);
    expect(pool.take(21_000)!.length).toBe(32_768);
    expect(pool.take(600_000)!.length).toBe(1_048_576);
    expect(pool.take(1_048_577)!.length).toBe(1_049_088); // past the last power of two below it
    expect(pool.take(1_049_088)!.length).toBe(1_049_088);
    expect(pool.take(1_049_089)).toBeNull(); // over the full size: the caller allocates
    expect(() => new BufferPool(10_000, 20_000, 0)).toThrow(RangeError);
  });

  it('hands back given buffers of each class, keeps at most maxHeldBytes, and ignores foreign buffers', () => {
    const pool = new BufferPool(1_024, 4_096, 6_144);
    const [a, b, c] = [pool.take(4_096)!, pool.take(4_096)!, pool.take(1_000)!];
    expect(new Set([a, b, c]).size).toBe(3);
    pool.give(a);
    pool.give(c);
    pool.give(b); // over the bound: dropped
    pool.give(Buffer.alloc(512)); // not a size class
    pool.give(Buffer.alloc(8_192).subarray(0, 2_048)); // a view of a larger buffer
    expect(pool.size).toBe(5_120);
    expect(pool.take(3_000)).toBe(a); // the same buffers, not copies
    expect(pool.take(700)).toBe(c);
    expect(pool.size).toBe(0);
    expect(pool.take(4_096)).not.toBe(b);
  });
});
