// Goal: the broker-wide produce memory counts bytes taken and given back, is full at its bound,
// wakes the streams waiting for room only once it is below half, each once, and forgets a
// stream that ended while it waited. Method: the class alone, with callbacks counting wake-ups.
import { describe, expect, it } from 'vitest';
import { RequestMemory } from '../../src/server/request-memory.js';

describe('request memory', () => {
  it('is full at its bound and wakes waiting streams once below half, each once', () => {
    const memory = new RequestMemory(1_000);
    const woken: string[] = [];
    const first = (): void => void woken.push('first');
    const second = (): void => void woken.push('second');
    memory.take(600);
    expect(memory.full).toBe(false);
    memory.take(400);
    expect(memory.full).toBe(true);
    memory.waitForRoom(first);
    memory.waitForRoom(first);
    memory.waitForRoom(second);
    expect(memory.pauses).toBe(2);
    memory.give(400); // 600: not below half
    expect(woken).toEqual([]);
    memory.give(200); // 400
    expect(woken).toEqual(['first', 'second']);
    memory.give(400);
    expect(woken).toEqual(['first', 'second']);
    expect(memory.bytes).toBe(0);
  });

  it('does not wake a stream it was told to forget', () => {
    const memory = new RequestMemory(100);
    let woken = 0;
    const resume = (): void => void woken++;
    memory.take(100);
    memory.waitForRoom(resume);
    memory.forget(resume);
    memory.give(100);
    expect(woken).toBe(0);
  });
});
