// Goal: the e2e workload counts only the records sent after its warm-up, delivers every one of
// them, says when the measured part starts (the phase takes its CPU time from there), measures
// the sender's lag behind its schedule apart from the latency, refuses a rate and duration that
// give no measured record, reuses a record's value only once its send has completed, stops with
// the backlog when more is outstanding than its bound, counts records that never arrive in
// the latency rather than leave them out, and a run that failed ends with its failure without
// waiting for the producer, whose records a stalled broker may never acknowledge; method: a real
// in-process broker over gRPC (the reuse: the sender's slots alone; the lost records: the no-op
// server in this process, made to drop a request's batch on its way to the reader; a stalled
// broker: client interceptors that withhold the broker's acknowledgements and fail the reader's
// stream).
import { InterceptingCall, type Interceptor, Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SendSlots, outstandingRecordsMax, runE2eLoad } from '../../src/bench/e2e-load.js';
import { NoopState, startNoopServer } from '../../src/bench/noop-server.js';
import { Admin } from '../../src/client/admin.js';
import { methods } from '../../src/client/connection.js';
import type { strata } from '../../src/generated/strata.js';
import { crc32c } from '@node-rs/crc32';
import { ATTRIBUTES_OFFSET, CRC_OFFSET, forEachBatch, readRecordCount } from '../../src/storage/record-batch.js';
import { e2eLoadOptions } from '../helpers/e2e-load-options.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

let broker: TestBroker;

beforeAll(async () => {
  broker = await startTestBroker();
});
afterAll(async () => {
  await broker?.dispose();
});

async function createTopic(name: string, server = broker.address): Promise<void> {
  const admin = new Admin({ server });
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

it('bounds what is outstanding: a second of records at the rate beyond the linger, at most what the buffer holds', () => {
  expect(outstandingRecordsMax(10_000, 0, 32 << 20, 100)).toBe(10_000);
  expect(outstandingRecordsMax(10_000, 500, 32 << 20, 100)).toBe(15_000);
  // 1 KiB records in a 4 MiB buffer: 4 MiB / (1,024 + 32 bytes of framing at most).
  expect(outstandingRecordsMax(100_000, 0, 4 << 20, 1024)).toBe(3971);
  expect(outstandingRecordsMax(0.5, 0, 32 << 20, 100)).toBe(1);
});

it('stops with the backlog, in one line, when the broker does not keep up with the rate', async () => {
  await createTopic('e2e-backlog');
  // Two million records a second: each 1 ms tick has 2,000 due, four times what a 64 KiB
  // buffer holds, and no acknowledgement can come in while a tick sends.
  const options = { ...e2eLoadOptions(broker.address, 'e2e-backlog', { durationSeconds: 0.01, warmupSeconds: 0 }), rate: 2_000_000, bufferBytes: 64 * 1024 };
  const bound = outstandingRecordsMax(options.rate, options.lingerMs, options.bufferBytes, options.recordSize);
  expect(bound).toBe(496);
  await expect(runE2eLoad(options)).rejects.toThrow(
    new RegExp(`^the broker did not keep up with --rate 2,000,000: ${bound} records sent and not acknowledged \\(at most what --buffer-bytes holds\\), the oldest sent [\\d,]+ ms ago; no figures are given for a rate that was not held$`),
  );
});

/** The no-op server's state, sending one request's batch of `topic` elsewhere: its records never reach a reader. */
class DroppingState extends NoopState {
  private requests = 0;

  constructor(
    private readonly lossyTopic: string,
    private readonly dropped: number,
  ) {
    super();
  }

  override produce(request: strata.v1.ProduceRequest): strata.v1.ProduceResponse {
    if (request.topic === this.lossyTopic && ++this.requests === this.dropped) request.topic = `${this.lossyTopic}-dropped`;
    return super.produce(request);
  }
}

it('counts records that never arrive in the latency, at the time waited for them (a lower bound)', async () => {
  const server = await startNoopServer('127.0.0.1:0', new DroppingState('e2e-lossy', 5));
  try {
    await createTopic('e2e-lossy', server.address);
    const drainTimeoutMs = 200;
    const figures = await runE2eLoad({ ...e2eLoadOptions(server.address, 'e2e-lossy', { durationSeconds: 0.2, warmupSeconds: 0 }), reader: 'subscribe', drainTimeoutMs });
    expect(figures.records).toBe(200);
    expect(figures.lost).toBeGreaterThanOrEqual(1);
    expect(figures.consumed + figures.lost).toBe(200);
    // Every measured record is in the latency, the lost ones at no less than the wait for them
    // (less the millisecond by which a timer may fire early: libuv's clock is cached in whole ones).
    const latency = figures.latency.summary()!;
    expect(latency.count).toBe(200);
    expect(latency.maxMs).toBeGreaterThanOrEqual(drainTimeoutMs - 1);
  } finally {
    server.stop();
  }
});

/**
 * The broker's answers on ProduceStream (the producer's acknowledgements) held back until
 * `release`: a broker that takes the records, and makes them readable, but never acknowledges
 * them, as a stalled one would look to the producer.
 */
class WithheldAcknowledgements {
  /** Answers held back so far (grpc-js reads no further answer of a call while one is held). */
  withheld = 0;
  private readonly held: (() => void)[] = [];
  private released = false;

  readonly interceptor: Interceptor = (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== methods.produceStream.path) return new InterceptingCall(call);
    return new InterceptingCall(call, {
      start: (metadata, _listener, next) => {
        next(metadata, {
          onReceiveMessage: (message, nextMessage) => {
            if (this.released) return nextMessage(message);
            this.withheld++;
            this.held.push(() => nextMessage(message));
          },
        });
      },
    });
  };

  /** Lets the answers through, so that the producer left closing in the background can finish. */
  release(): void {
    this.released = true;
    for (const deliver of this.held.splice(0)) deliver();
  }
}

/** Fails the reader's Subscribe stream (UNAVAILABLE) once it has brought `records` records. */
function failSubscribeAfter(records: number): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== methods.subscribe.path) return new InterceptingCall(call);
    let received = 0;
    let failed = false;
    return new InterceptingCall(call, {
      start: (metadata, listener, next) => {
        next(metadata, {
          onReceiveMessage: (message: strata.v1.SubscribeResponse, nextMessage) => {
            if (failed) return;
            nextMessage(message);
            const batches = Buffer.from(message.batches.buffer, message.batches.byteOffset, message.batches.byteLength);
            forEachBatch(batches, (position) => (received += readRecordCount(batches, position)));
            if (received < records) return;
            failed = true;
            listener.onReceiveStatus({ code: status.UNAVAILABLE, details: 'injected: the reader failed', metadata: new Metadata() });
            call.cancelWithStatus(status.UNAVAILABLE, 'injected: the reader failed');
          },
          onReceiveStatus: (value, nextStatus) => {
            if (!failed) nextStatus(value);
          },
        });
      },
    });
  };
}

/**
 * How `run` settled within `deadlineMs`: the error it was rejected with, or 'fulfilled', or
 * 'still running' (a run waiting for the producer, whose request timeout is far beyond that).
 */
async function settledWithin(run: Promise<unknown>, deadlineMs: number): Promise<Error | 'fulfilled' | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), deadlineMs)));
  try {
    return await Promise.race([run.then((): 'fulfilled' => 'fulfilled', (error: Error) => error), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

describe('a failed run does not wait for the producer, whose records a stalled broker never acknowledges', () => {
  // The producer's request timeout is the connection's deadline: a run that waited for the
  // producer's flush or close would wait for that, ten minutes, before its failure came out.
  const stalledProducerMs = 600_000;
  const deadlineMs = 10_000;

  it('the backlog bound: the run fails with it, the records still unacknowledged', async () => {
    await createTopic('e2e-stalled');
    const acknowledgements = new WithheldAcknowledgements();
    // 16 KiB of producer buffer: the run fails once 124 records are outstanding (the run itself
    // would last a minute).
    const options = {
      ...e2eLoadOptions(broker.address, 'e2e-stalled', { durationSeconds: 60, warmupSeconds: 0 }),
      connection: { server: broker.address, deadlineMs: stalledProducerMs, interceptors: [acknowledgements.interceptor] },
      bufferBytes: 16 * 1024,
    };
    const bound = outstandingRecordsMax(options.rate, options.lingerMs, options.bufferBytes, options.recordSize);
    expect(bound).toBe(124);
    try {
      const outcome = await settledWithin(runE2eLoad(options), deadlineMs);
      expect(outcome).toBeInstanceOf(Error);
      expect((outcome as Error).message).toMatch(new RegExp(`^the broker did not keep up with --rate 1,000: ${bound} records sent and not acknowledged `));
      // The broker's answers were held back all along: those records were still unacknowledged.
      expect(acknowledgements.withheld).toBeGreaterThanOrEqual(1);
    } finally {
      acknowledgements.release();
    }
  });

  it("the reader's failure while the producer flushes: the run fails with it, not waiting for the flush", async () => {
    await createTopic('e2e-reader-fails');
    const acknowledgements = new WithheldAcknowledgements();
    // 100 records lingering in one batch (a linger of a minute): they reach the broker, and the
    // reader, only once the sender has finished and the producer's flush sends them. The
    // reader's stream fails once it has brought them all: while the flush waits for their
    // acknowledgement.
    const options = {
      ...e2eLoadOptions(broker.address, 'e2e-reader-fails', { durationSeconds: 0.1, warmupSeconds: 0 }),
      connection: { server: broker.address, deadlineMs: stalledProducerMs, interceptors: [acknowledgements.interceptor, failSubscribeAfter(100)] },
      lingerMs: 60_000,
      reader: 'subscribe' as const,
    };
    try {
      const outcome = await settledWithin(runE2eLoad(options), deadlineMs);
      expect(outcome).toBeInstanceOf(Error);
      expect(outcome).toMatchObject({ code: 'UNAVAILABLE', message: 'injected: the reader failed' });
      expect(acknowledgements.withheld).toBeGreaterThanOrEqual(1);
    } finally {
      acknowledgements.release();
    }
  });
});

/**
 * Marks every batch the reader's Subscribe streams bring as snappy-compressed (which the client
 * does not read), with its CRC made to match: batches that pass the client's checks when fetched
 * but whose records do not decode, so the Consumer's `nextBatch` throws DATA_LOSS.
 */
const undecodableBatches: Interceptor = (options, nextCall) => {
  const call = nextCall(options);
  if (options.method_definition.path !== methods.subscribe.path) return new InterceptingCall(call);
  return new InterceptingCall(call, {
    start: (metadata, _listener, next) => {
      next(metadata, {
        onReceiveMessage: (message: strata.v1.SubscribeResponse, nextMessage) => {
          const batches = Buffer.from(message.batches.buffer, message.batches.byteOffset, message.batches.byteLength);
          forEachBatch(batches, (position, size) => {
            batches.writeUInt16BE(batches.readUInt16BE(position + ATTRIBUTES_OFFSET) | 2, position + ATTRIBUTES_OFFSET);
            batches.writeUInt32BE(crc32c(batches.subarray(position + ATTRIBUTES_OFFSET, position + size)), position + CRC_OFFSET);
          });
          nextMessage(message);
        },
      });
    },
  });
};

it("fails with the client Consumer's error when it cannot read what it fetched, rather than leave it unhandled", async () => {
  await createTopic('e2e-undecodable');
  const options = {
    ...e2eLoadOptions(broker.address, 'e2e-undecodable', { durationSeconds: 0.2, warmupSeconds: 0 }),
    connection: { server: broker.address, interceptors: [undecodableBatches] },
    // A run that missed the error would wait this long for the records it never delivered.
    drainTimeoutMs: 600_000,
  };
  expect(options.reader).toBe('consumer');
  const outcome = await settledWithin(runE2eLoad(options), 10_000);
  expect(outcome).toMatchObject({ code: 'DATA_LOSS', message: expect.stringMatching(/does not decode: compression codec 2 is not supported/) });
});
