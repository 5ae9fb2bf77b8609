/**
 * Runs `task` on each item, at most `limit` at a time, starting them in order. After the first
 * failure no more are started; the ones under way are waited for, then it rejects with that
 * failure. Used where a topic's partitions each take a few file calls and fsyncs (opened for a
 * new topic): one after another, 5,000 took 7 s, heading for a client's 30 s deadline at
 * 10,000, and all at once they would queue thousands of calls in the thread pool the other
 * partitions' I/O waits on.
 */
export async function forEachConcurrently<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async (): Promise<void> => {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await task(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure !== null) throw (failure as { error: unknown }).error;
}
