// Goal: the e2e workload counts only the records sent after its warm-up, delivers every one of
// them, says when the measured part starts (the phase takes its CPU time from there), measures
// the sender's lag behind its schedule apart from the latency, refuses a rate and duration that
// give no measured record, and reuses a record's value only once its send has completed; method:
// a real in-process broker over gRPC (the reuse: the sender's slots alone).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SendSlots, runE2eLoad } from '../../src/bench/e2e-load.js';
import { Admin } from '../../src/client/admin.js';
import { e2eLoadOptions } from '../helpers/e2e-load-options.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

let broker: TestBroker;

beforeAll(async () => {
  broker = await startTestBroker();
});
afterAll(async () => {
  await broker?.dispose();
});

async function createTopic(name: string): Promise<void> {
  const admin = new Admin({ server: broker.address });
  try {
    await admin.createTopic(name);
  } finally {
    await admin.close();
  }
}

it('starts measuring once, when the warm-up records have been sent', async () => {
  await createTopic('e2e-warmup');
  const startedAt = performance.now();
  const measurementStarts: number[] = [];
  const figures = await runE2eLoad({
    ...e2eLoadOptions(broker.address, 'e2e-warmup', { durationSeconds: 0.5, warmupSeconds: 0.3 }),
    onMeasurementStart: () => measurementStarts.push(performance.now()),
  });
  expect(figures).toMatchObject({ warmupRecords: 300, records: 500, lost: 0 });
  expect(figures.latency.count).toBe(500);
  expect(measurementStarts).toHaveLength(1);
  // Record 300 is due 300 ms after the first one: the measurement cannot start earlier.
  expect(measurementStarts[0]! - startedAt).toBeGreaterThanOrEqual(300);
  // The sender's lag: one value per measured record.
  expect(figures.senderLag.count).toBe(500);
  expect(figures.senderLag.summary()!.p50Ms).toBeGreaterThanOrEqual(0);
});

it('reports a sender held up (the client process paused) as lag behind its schedule', async () => {
  await createTopic('e2e-held');
  const pauseMs = 60;
  const figures = await runE2eLoad({
    ...e2eLoadOptions(broker.address, 'e2e-held', { durationSeconds: 0.3, warmupSeconds: 0.05 }),
    // The event loop is blocked as the measurement starts: the records due meanwhile go late.
    onMeasurementStart: () => {
      const until = performance.now() + pauseMs;
      while (performance.now() < until);
    },
  });
  expect(figures.lost).toBe(0);
  const lag = figures.senderLag.summary()!;
  expect(lag.maxMs).toBeGreaterThanOrEqual(pauseMs - 10);
  // Counted for each record the pause held up (about 60 of the 300 measured), not once per
  // tick: the 95th percentile of the lag is well into the pause.
  expect(figures.senderLag.count).toBe(300);
  expect(lag.p95Ms).toBeGreaterThanOrEqual(pauseMs / 4);
});

it('refuses a rate and duration that give no measured record', async () => {
  await expect(runE2eLoad(e2eLoadOptions(broker.address, 'e2e-warmup', { durationSeconds: 0.0004, warmupSeconds: 0 }))).rejects.toThrow(
    'rate × duration must give at least 1 measured record',
  );
});

it("hands out a send's value again only once that send's callback has run", () => {
  const template = Buffer.from('0123456789abcdef');
  const acknowledged: number[] = [];
  const failures: Error[] = [];
  const slots = new SendSlots('t', template, (slot) => acknowledged.push(slot.sentAt), (error) => failures.push(error));
  const first = slots.take();
  const second = slots.take();
  // Each slot has a value of its own, made from the template.
  expect(second.value).not.toBe(first.value);
  expect(first.value.equals(template)).toBe(true);
  first.value.writeDoubleLE(1, 0);
  expect(second.value.equals(template)).toBe(true);
  // Still in flight: a third send gets another value.
  expect(slots.take().value).not.toBe(first.value);
  first.sentAt = 7;
  first.done(null);
  expect(acknowledged).toEqual([7]);
  expect(slots.take()).toBe(first);
  second.done(new Error('refused'));
  expect(failures.map((error) => error.message)).toEqual(['refused']);
  expect(slots.take()).toBe(second);
});
