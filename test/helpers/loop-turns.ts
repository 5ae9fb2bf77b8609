/**
 * Runs `action` and counts the event loop's turns (one `setImmediate` callback per turn) until
 * its promise settles: 0 when it held the loop all along, more when it waited off the loop.
 */
export async function countingLoopTurns<T>(action: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let running = true;
  const turn = (): void => {
    if (!running) return;
    turns++;
    setImmediate(turn);
  };
  setImmediate(turn);
  try {
    return { result: await action(), turns };
  } finally {
    running = false;
  }
}
