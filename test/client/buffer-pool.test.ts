// Goal: the producer's buffer pool reuses buffers of its one size and keeps at most its bound;
// method: take, give back, take again, and compare identities.
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../src/client/buffer-pool.js';

describe('BufferPool', () => {
  it('hands back given buffers, keeps at most maxBuffers, and ignores other sizes', () => {
    const pool = new BufferPool(1_024, 2);
    const [a, b, c] = [pool.take(), pool.take(), pool.take()];
    expect(a.length).toBe(1_024);
    expect(new Set([a, b, c]).size).toBe(3);
    pool.give(a);
    pool.give(b);
    pool.give(c); // over the bound: dropped
    pool.give(Buffer.alloc(512)); // not this pool's size
    expect(pool.size).toBe(2);
    const again = [pool.take(), pool.take()];
    expect(again.includes(a) && again.includes(b)).toBe(true); // the same buffers, not copies
    expect(pool.size).toBe(0);
    expect(pool.take()).not.toBe(c);
  });
});
