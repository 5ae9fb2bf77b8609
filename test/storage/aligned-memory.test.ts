// Goal: show that staging buffers for direct writes are whole blocks long, that the pool hands
// out at most its limit and reuses what is given back, and that a pool whose memory cannot be
// allocated says so (the log then warns and writes buffered); method: real pools, one of them
// asking for more address space than WebAssembly allows.
import { describe, expect, it } from 'vitest';
import { DIRECT_IO_BLOCK_BYTES, StagingPool } from '../../src/storage/aligned-memory.js';

describe('StagingPool', () => {
  it('hands out at most maxBuffers whole-block buffers and reuses those given back', () => {
    const pool = new StagingPool(100_000, 2);
    const first = pool.take()!;
    const second = pool.take()!;
    expect(first.length % DIRECT_IO_BLOCK_BYTES).toBe(0);
    expect(first.length).toBeGreaterThanOrEqual(100_000 - DIRECT_IO_BLOCK_BYTES);
    expect(second).not.toBe(first);
    expect(pool.take(), 'the limit is reached').toBeNull();
    expect(pool.unavailable).toBe(false);
    pool.give(first);
    expect(pool.take()).toBe(first);
  });

  it('reports unavailable when the memory cannot be allocated, and stops trying', () => {
    const pool = new StagingPool(2 ** 40, 4); // beyond a WebAssembly memory's 4 GiB
    expect(pool.take()).toBeNull();
    expect(pool.unavailable).toBe(true);
    expect(pool.take()).toBeNull();
  });
});
