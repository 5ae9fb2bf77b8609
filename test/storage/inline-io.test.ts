// Goal: show that the inline I/O budget lets only small calls run on the event loop, bounds the
// loop's time in them to its share (credit capped at burstMs), and sends every call to the
// thread pool for a cool-down after a slow one, saying so in the log; method: a budget driven by
// a hand-moved clock, with calls that "take" a set time by moving it.
import { InlineIoBudget, type InlineIoSettings } from '../../src/storage/inline-io.js';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

const SETTINGS: InlineIoSettings = { bytesMax: 1000, shareOfLoop: 0.5, burstMs: 4, slowMs: 20, coolDownMs: 10_000 };

function budget(settings: Partial<InlineIoSettings> = {}) {
  let now = 1_000;
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const inlineIo = new InlineIoBudget({ settings: { ...SETTINGS, ...settings }, now: () => now, logger });
  /** Runs a call that takes `ms` of loop time, if the budget allows it; returns whether it ran inline. */
  const call = (ms: number, bytes = 100): boolean => {
    if (!inlineIo.allows(bytes)) return false;
    inlineIo.runInline('fdatasync', () => {
      now += ms;
    });
    return true;
  };
  return { inlineIo, call, advance: (ms: number) => (now += ms), lines };
}

describe('inline I/O budget', () => {
  it('lets calls up to bytesMax run on the loop and sends larger ones to the pool', () => {
    const { inlineIo } = budget();
    expect(inlineIo.allows(1000)).toBe(true);
    expect(inlineIo.allows(1001)).toBe(false);
  });

  it('holds the loop\'s time in inline calls to its share: credit accrues at shareOfLoop per ms and is capped at burstMs', () => {
    const { call, advance } = budget();
    // Back to back, 1 ms calls cost 1 ms and earn 0.5: 4 ms of credit lasts 8 calls.
    const runs = (count: number) => Array.from({ length: count }, () => call(1));
    expect(runs(9)).toEqual([true, true, true, true, true, true, true, true, false]);
    advance(1);
    expect(call(1)).toBe(true);
    // Idle time never builds more than burstMs.
    advance(60_000);
    expect(runs(9)).toEqual([true, true, true, true, true, true, true, true, false]);
  });

  it('a call that takes more than the credit makes the loop earn it back before the next', () => {
    const { call, advance } = budget();
    expect(call(10)).toBe(true); // 4 - 10 + 5 earned meanwhile = -1 ms: 2 ms of idle loop to earn back
    advance(2);
    expect(call(1)).toBe(false);
    advance(1);
    expect(call(1)).toBe(true);
  });

  it('after a call slower than slowMs, sends every call to the pool for coolDownMs and says why', () => {
    const { call, advance, lines } = budget();
    expect(call(25)).toBe(true);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        operation: 'fdatasync',
        ms: 25,
        msg: 'an fdatasync on the event loop took 25.0 ms (the disk is slow); writes and fdatasyncs go to the thread pool for the next 10 s',
      }),
    ]);
    advance(9_000);
    expect(call(1)).toBe(false);
    advance(1_000);
    expect(call(1)).toBe(true);
  });

  it('charges a call that throws, and passes its error on', () => {
    const { inlineIo, call } = budget();
    expect(inlineIo.allows(10)).toBe(true);
    expect(() =>
      inlineIo.runInline('write', () => {
        throw new Error('EIO');
      }),
    ).toThrow('EIO');
    expect(call(1)).toBe(true);
  });
});
