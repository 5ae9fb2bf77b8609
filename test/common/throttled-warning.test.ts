// Goal: requests refused before their handler runs are logged at most once per 10 s, each line
// saying how many were refused since the one before, so a client retrying in a loop cannot fill
// the broker's log; method: ThrottledWarning as the broker sets it (REFUSAL_LINES) with a manual
// clock and a logger that keeps its lines.
import { pino } from 'pino';
import { expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { REFUSAL_LINES, ThrottledWarning } from '../../src/common/throttled-warning.js';

it('logs the first refusal, then at most a line per 10 s with the count of those left out', () => {
  const lines: { msg: string; method: string; refusedSinceLastLine: number }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
  const clock = new ManualClock();
  const log = new ThrottledWarning(logger, 'request refused', { ...REFUSAL_LINES, clock });
  log.note({ method: 'Fetch' });
  for (let refusal = 0; refusal < 5; refusal++) {
    clock.advance(1_000);
    log.note({ method: 'Produce' });
  }
  expect(lines.map(({ msg, method, refusedSinceLastLine }) => ({ msg, method, refusedSinceLastLine }))).toEqual([{ msg: 'request refused', method: 'Fetch', refusedSinceLastLine: 0 }]);
  clock.advance(5_000); // 10 s since the line
  log.note({ method: 'Produce' });
  log.note({ method: 'Produce' });
  expect(lines.map(({ method, refusedSinceLastLine }) => ({ method, refusedSinceLastLine }))).toEqual([
    { method: 'Fetch', refusedSinceLastLine: 0 },
    { method: 'Produce', refusedSinceLastLine: 5 },
  ]);
});

it('logs an occurrence left out when its owner closes (dispose), not by a timer after the close', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  try {
    const lines: { method: string; refusedSinceLastLine: number }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const clock = new ManualClock();
    const log = new ThrottledWarning(logger, 'request refused', { ...REFUSAL_LINES, clock });
    log.dispose(); // nothing left out: nothing logged
    log.note({ method: 'Fetch' });
    log.note({ method: 'Produce' });
    log.note({ method: 'Heartbeat' });
    log.dispose();
    expect(lines.map(({ method, refusedSinceLastLine }) => ({ method, refusedSinceLastLine }))).toEqual([
      { method: 'Fetch', refusedSinceLastLine: 0 },
      { method: 'Heartbeat', refusedSinceLastLine: 1 },
    ]);
    vi.advanceTimersByTime(60_000);
    expect(lines).toHaveLength(2);
  } finally {
    vi.useRealTimers();
  }
});
