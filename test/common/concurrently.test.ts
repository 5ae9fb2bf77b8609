// Goal: forEachConcurrently runs at most `limit` tasks at once, in order of starting, and after
// a failure starts no more, waits for those under way and rejects with the first failure;
// method: tasks that resolve when the test lets them, counting how many run at once.
import { expect, it } from 'vitest';
import { forEachConcurrently } from '../../src/common/concurrently.js';

it('runs every item, at most limit at once, starting them in order', async () => {
  const started: number[] = [];
  let running = 0;
  let most = 0;
  await forEachConcurrently([0, 1, 2, 3, 4, 5, 6], 3, async (item) => {
    started.push(item);
    most = Math.max(most, ++running);
    await new Promise((resolve) => setImmediate(resolve));
    running--;
  });
  expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
  expect(most).toBe(3);
});

it('after a failure starts no more, lets those under way finish, and rejects with the first failure', async () => {
  const started: number[] = [];
  const finished: number[] = [];
  const run = forEachConcurrently([0, 1, 2, 3, 4, 5], 2, async (item) => {
    started.push(item);
    await new Promise((resolve) => setImmediate(resolve));
    if (item === 1 || item === 2) throw new Error(`item ${item} failed`);
    finished.push(item);
  });
  await expect(run).rejects.toThrow('item 1 failed');
  expect(started).toEqual([0, 1, 2]);
  expect(finished).toEqual([0]);
});

it('does nothing for no items', async () => {
  await expect(forEachConcurrently([], 4, () => Promise.reject(new Error('not called')))).resolves.toBeUndefined();
});
