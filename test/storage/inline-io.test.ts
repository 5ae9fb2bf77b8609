// Goal: show that the inline I/O budget lets a call run on the event loop only when it is small,
// no other log is busy, calls of its kind have been quick and the loop has credit (its share of
// the time, capped at burstMs); method: a budget driven by a hand-moved clock, with calls that
// "take" a set time by moving it.
import { describe, expect, it } from 'vitest';
import { InlineIoBudget, type InlineIoSettings } from '../../src/storage/inline-io.js';

const SETTINGS: InlineIoSettings = { bytesMax: 1000, expectedMsMax: 1, shareOfLoop: 0.5, burstMs: 4 };

function budget(settings: Partial<InlineIoSettings> = {}) {
  let now = 1_000;
  const inlineIo = new InlineIoBudget({ settings: { ...SETTINGS, ...settings }, now: () => now });
  inlineIo.noteBusy(true); // the log making the calls
  /** Runs an fdatasync that takes `ms`, inline if the budget allows it; returns whether it did. */
  const call = (ms: number, bytes = 100): boolean => {
    if (!inlineIo.allows('fdatasync', bytes)) return false;
    inlineIo.runInline('fdatasync', () => {
      now += ms;
    });
    return true;
  };
  /** Runs an fdatasync that takes `ms` on the pool. */
  const pooled = (ms: number): Promise<void> =>
    inlineIo.runPooled('fdatasync', async () => {
      now += ms;
    });
  /** A log's fdatasync of `ms` between syncStarting and syncEnded; returns whether it ran inline. */
  const sync = (ms: number): boolean => {
    inlineIo.syncStarting();
    const inline = call(ms);
    if (!inline) now += ms;
    inlineIo.syncEnded();
    return inline;
  };
  return { inlineIo, call, pooled, sync, advance: (ms: number) => (now += ms) };
}

describe('inline I/O budget', () => {
  it('lets calls up to bytesMax run on the loop and sends larger ones to the pool', () => {
    const { inlineIo } = budget();
    expect(inlineIo.allows('write', 1000)).toBe(true);
    expect(inlineIo.allows('write', 1001)).toBe(false);
  });

  it('sends calls to the pool while another log is writing or syncing', () => {
    const { inlineIo } = budget();
    inlineIo.noteBusy(true);
    expect(inlineIo.allows('fdatasync', 100)).toBe(false);
    inlineIo.noteBusy(false);
    expect(inlineIo.allows('fdatasync', 100)).toBe(true);
  });

  it("holds the loop's time in inline calls to its share: credit accrues at shareOfLoop per ms and is capped at burstMs", () => {
    const { call, advance } = budget({ expectedMsMax: 10 });
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
    const { call, advance } = budget({ expectedMsMax: 10 });
    expect(call(8)).toBe(true); // 4 - 8 + 4 earned meanwhile = 0 ms: 1 ms of idle loop earns 0.5
    expect(call(1)).toBe(false);
    advance(1);
    expect(call(1)).toBe(true);
  });

  it('sends calls of a kind to the pool once they have become slow, and back to the loop once pooled ones are quick again', async () => {
    const { inlineIo, call, pooled, advance } = budget();
    expect(call(0.2)).toBe(true);
    advance(100);
    expect(call(12)).toBe(true); // the average jumps above 1 ms
    advance(100);
    expect(call(0.2)).toBe(false);
    expect(inlineIo.allows('write', 100)).toBe(true); // writes have their own average
    let pooledCalls = 0;
    while (!inlineIo.allows('fdatasync', 100)) {
      await pooled(0.3);
      pooledCalls++;
    }
    // 0.02 + 0.1 × (12 - 0.02) = 1.22 ms, then each 0.3 ms call takes a tenth of the gap: 1.13, 1.04, 0.97.
    expect(pooledCalls).toBe(3);
  });

  it('sends calls to the pool while fdatasyncs follow each other closely, and back once they are spaced out', () => {
    // Credit never runs out here (share 1): only the spacing decides.
    const { inlineIo, sync, advance } = budget({ expectedMsMax: 10, shareOfLoop: 1, burstMs: 1000 });
    // The average gap starts at 10 ms (nothing synced yet) and falls by a tenth per sync back
    // to back; the average duration climbs towards 2 ms. They cross at the 18th sync:
    // 10 × 0.9^18 = 1.50 ms < 2 × (1 - 0.9^17) = 1.67 ms.
    const backToBack = Array.from({ length: 18 }, () => sync(2));
    expect(backToBack.indexOf(false)).toBe(17);
    expect(inlineIo.allows('write', 100)).toBe(false); // writes wait behind the syncs too
    advance(10); // one gap of 10 ms lifts the average gap to 2.35 ms: spaced out again
    expect(sync(2)).toBe(true);
  });

  it('counts the time writes take between fdatasyncs as taken, not as spacing', () => {
    const { inlineIo, sync, advance } = budget({ expectedMsMax: 10, shareOfLoop: 1, burstMs: 1000 });
    /** Idle for `idleMs`, a 1 ms write (a direct write holds the device's time), a 1 ms sync. */
    const cycle = (idleMs: number): boolean => {
      advance(idleMs);
      inlineIo.runInline('write', () => advance(1));
      return sync(1);
    };
    // Syncs 1.5 ms apart, of which 1 ms is a write: 0.5 ms idle, less than a sync's duration.
    for (let index = 0; index < 60; index++) cycle(0.5);
    expect(cycle(0.5)).toBe(false);
    // 2 ms idle between a sync and the next write: spaced out.
    for (let index = 0; index < 60; index++) cycle(2);
    expect(cycle(2)).toBe(true);
  });

  it('counts an fdatasync that starts while another runs (several logs on the pool) as back to back', () => {
    const { inlineIo, advance } = budget({ expectedMsMax: 10, burstMs: 1000 });
    inlineIo.runInline('fdatasync', () => advance(10)); // average duration 1 ms
    inlineIo.syncStarting(); // one log's long sync on the pool
    for (let index = 0; index < 40; index++) {
      advance(10); // another log syncs every 10 ms: spaced out, were it alone
      inlineIo.syncStarting();
      advance(1);
      inlineIo.syncEnded();
    }
    expect(inlineIo.allows('fdatasync', 100)).toBe(false);
  });

  it('charges and times a call that throws, and passes its error on', () => {
    const { inlineIo, call } = budget({ expectedMsMax: 10 });
    expect(() =>
      inlineIo.runInline('fdatasync', () => {
        throw new Error('EIO');
      }),
    ).toThrow('EIO');
    expect(call(1)).toBe(true);
  });
});
