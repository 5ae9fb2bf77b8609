// Goal: FifoQueue hands items back in the order they were pushed, with the right length and
// indexed access, at any size and across its internal compaction; method: compare with a plain
// array model.
import { describe, expect, it } from 'vitest';
import { FifoQueue } from '../../src/common/fifo-queue.js';

describe('FifoQueue', () => {
  it('is empty at first: length 0, peek and shift give undefined', () => {
    const queue = new FifoQueue<number>();
    expect(queue.length).toBe(0);
    expect(queue.peek()).toBeUndefined();
    expect(queue.shift()).toBeUndefined();
  });

  it('returns items in push order through long runs of pushes and shifts, past compaction', () => {
    const queue = new FifoQueue<{ n: number }>();
    // The model: every number pushed, and the index of the oldest not yet shifted.
    const model: number[] = [];
    let modelHead = 0;
    let next = 0;
    // Grow to 50,000 (well past the size where arrays shift slowly), drain most, regrow, drain.
    const phases: [push: number, shift: number][] = [
      [50_000, 0],
      [0, 45_000],
      [30_000, 10_000],
      [1, 25_001],
      [2_000, 0],
    ];
    for (const [pushes, shifts] of phases) {
      for (let index = 0; index < pushes; index++) {
        queue.push({ n: next });
        model.push(next++);
      }
      for (let index = 0; index < shifts; index++) {
        expect(queue.peek()?.n).toBe(model[modelHead]);
        expect(queue.shift()?.n).toBe(model[modelHead++]);
      }
      expect(queue.length).toBe(model.length - modelHead);
      // Indexed access counts from the oldest item, whatever was shifted or compacted away.
      for (const index of [0, 1, Math.floor(queue.length / 2), queue.length - 1]) {
        if (index >= 0 && index < queue.length) expect(queue.at(index)?.n).toBe(model[modelHead + index]);
      }
      expect(queue.at(queue.length)).toBeUndefined();
      expect(queue.at(-1)).toBeUndefined();
    }
    const rest: number[] = [];
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) rest.push(item.n);
    expect(rest).toEqual(model.slice(modelHead));
    expect(queue.length).toBe(0);
    queue.push({ n: -1 });
    expect(queue.peek()?.n).toBe(-1);
    expect(queue.length).toBe(1);
  });
});
