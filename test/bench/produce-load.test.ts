// Goal: the plain-records path of the produce workload finishes or fails, never hangs: a producer
// whose share is 0 records is done at once, and a ProduceStream that the server ends while
// answers are owed fails the load; at a --rate it sends about a millisecond's worth of records
// per request, not a whole batch's worth in one burst, and a record's latency starts at its
// scheduled time, so a sender held up counts in the latency of what it sent late (both paths);
// the warm-up goes before the measured window, over the same producers. Method: the no-op server
// (or a gRPC server that ends every ProduceStream) in this process, the real load over gRPC; a
// hold-up is the process's event loop blocked for a while inside the server.
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { NoopState } from '../../src/bench/noop-server.js';
import { useNoopServer } from '../helpers/noop-server.js';
import { type ProduceLoadOptions, runProduceLoad } from '../../src/bench/produce-load.js';
import { Progress } from '../../src/bench/progress.js';
import { rootLogger } from '../../src/common/logger.js';
import type { strata } from '../../src/generated/strata.js';
import { logServiceDefinition } from '../../src/server/service-definitions.js';

/** Blocks this process's event loop (the server's and the load's) for `ms`. */
function blockFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

/**
 * The no-op server's state, keeping the size of every plain-records request by topic. With
 * `hold` set, it blocks the event loop (the server runs in this process, as the load does) for
 * `ms` at that request (plain records or raw batches) of that topic; with `holdProducerIdMs`,
 * at the next InitProducer.
 */
class RequestSizes extends NoopState {
  readonly sizes = new Map<string, number[]>();
  private readonly requests = new Map<string, number>();
  hold: { topic: string; request: number; ms: number } | null = null;
  holdProducerIdMs = 0;

  override produce(request: strata.v1.ProduceRequest): strata.v1.ProduceResponse {
    const count = (this.requests.get(request.topic) ?? 0) + 1;
    this.requests.set(request.topic, count);
    if (request.records.length > 0) this.sizes.set(request.topic, [...(this.sizes.get(request.topic) ?? []), request.records.length]);
    if (this.hold?.topic === request.topic && this.hold.request === count) blockFor(this.hold.ms);
    return super.produce(request);
  }

  override producerId(): number {
    blockFor(this.holdProducerIdMs);
    this.holdProducerIdMs = 0;
    return super.producerId();
  }
}

const noop = useNoopServer(() => new RequestSizes());

function recordsPath(address: string, overrides: Partial<ProduceLoadOptions>): ProduceLoadOptions {
  return {
    connection: { server: address },
    topic: 'records-path',
    partitions: 1,
    records: 100,
    recordSize: 100,
    rate: null,
    producers: 1,
    acks: 'all',
    batchBytes: 512 * 1024,
    lingerMs: 0,
    bufferBytes: 1 << 20,
    path: 'records',
    warmupRecords: 0,
    logger: rootLogger,
    progress: new Progress({ write: () => true }),
    label: 'produce',
    ...overrides,
  };
}

it('finishes when some producers have no record to send', { timeout: 10_000 }, async () => {
  const figures = await runProduceLoad(recordsPath(noop.server.address, { topic: 'zero-share', records: 3, producers: 4 }));
  expect(figures.records).toBe(3);
  expect(noop.state.partition('zero-share', 0).endOffset).toBe(3);
});

it('fails when the server ends the stream with requests unanswered', { timeout: 10_000 }, async () => {
  const ending = new Server();
  ending.addService(logServiceDefinition, {
    produceStream: (call: ServerDuplexStream<strata.v1.ProduceRequest, strata.v1.ProduceResponse>) => call.once('data', () => call.end()),
  });
  const port = await new Promise<number>((resolve, reject) => ending.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  try {
    await expect(runProduceLoad(recordsPath(`127.0.0.1:${port}`, {}))).rejects.toThrow('the ProduceStream ended with 1 requests unanswered');
  } finally {
    ending.forceShutdown();
  }
});

it('sends at most a millisecond\'s worth of records per request at a rate', async () => {
  await runProduceLoad(recordsPath(noop.server.address, { topic: 'paced', records: 300, rate: 3000 }));
  const sizes = noop.state.sizes.get('paced') ?? [];
  expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(300);
  expect(Math.max(...sizes)).toBeLessThanOrEqual(3);
});

it('reports, at a rate, how late each request went against its schedule: a sender held up shows there', async () => {
  const pauseMs = 60;
  // The process is blocked at the 20th request of a 0.2 s run: the requests due meanwhile go late.
  noop.state.hold = { topic: 'held-up', request: 20, ms: pauseMs };
  try {
    const figures = await runProduceLoad(recordsPath(noop.server.address, { topic: 'held-up', records: 400, rate: 2000 }));
    const lag = figures.senderLag!.summary()!;
    expect(figures.senderLag!.count).toBe(noop.state.sizes.get('held-up')!.length); // one per request
    expect(lag.maxMs).toBeGreaterThanOrEqual(pauseMs - 10);
  } finally {
    noop.state.hold = null;
  }
  // Without a rate there is no schedule to be behind.
  expect((await runProduceLoad(recordsPath(noop.server.address, { topic: 'unpaced', records: 100 }))).senderLag).toBeNull();
});

describe('at a rate, latency runs from the schedule (no coordinated omission)', () => {
  // Blocked for 60 ms at the 20th request of a 0.2 s run at 2,000 records/s: the ~120 records
  // due meanwhile all go late. Timed from when each went, only the few in flight during the
  // pause would show it; timed from when each was due, those due in its first 40 ms wait at
  // least 20 ms, a fifth of the 400 records, so the 95th percentile is at least 20 ms.
  const pauseMs = 60;
  for (const path of ['records', 'raw'] as const) {
    it(`${path} path: the records a pause held back count it in their latency`, async () => {
      const topic = `from-schedule-${path}`;
      noop.state.createTopic(topic, 1); // the Producer asks for its metadata
      noop.state.hold = { topic, request: 20, ms: pauseMs };
      try {
        const figures = await runProduceLoad(recordsPath(noop.server.address, { topic, path, records: 400, rate: 2000, batchBytes: path === 'raw' ? 16 * 1024 : 512 * 1024 }));
        const latency = figures.latency!.summary()!;
        expect(latency.count).toBe(400);
        expect(latency.p95Ms).toBeGreaterThanOrEqual(pauseMs / 3);
        expect(latency.maxMs).toBeGreaterThanOrEqual(pauseMs - 10);
        // The sender's lag is still reported on its own.
        expect(figures.senderLag!.summary()!.maxMs).toBeGreaterThanOrEqual(pauseMs - 10);
      } finally {
        noop.state.hold = null;
      }
    });
  }
});

describe('warm-up', () => {
  it('sends the warm-up records first, over the same producers, and measures only the others', async () => {
    // InitProducer is held for a while: the set-up it stands for must be over, and the warm-up
    // acknowledged, when the measurement starts.
    noop.state.createTopic('warmed-raw', 1);
    noop.state.holdProducerIdMs = 100;
    let atMeasurementStart: { initProducerCalled: boolean; endOffset: number } | null = null;
    const figures = await runProduceLoad({
      ...recordsPath(noop.server.address, { topic: 'warmed-raw', path: 'raw', records: 300, warmupRecords: 200, batchBytes: 16 * 1024 }),
      onMeasurementStart: () => (atMeasurementStart = { initProducerCalled: noop.state.holdProducerIdMs === 0, endOffset: noop.state.partition('warmed-raw', 0).endOffset }),
    });
    expect(atMeasurementStart).toEqual({ initProducerCalled: true, endOffset: 200 });
    expect(noop.state.partition('warmed-raw', 0).endOffset).toBe(500);
    expect(figures.records).toBe(300);
    expect(figures.latency!.summary()!.count).toBe(300);
  });

  it('on the records path, over the same stream', async () => {
    const figures = await runProduceLoad(recordsPath(noop.server.address, { topic: 'warmed-records', records: 300, warmupRecords: 200, producers: 2 }));
    expect(noop.state.partition('warmed-records', 0).endOffset).toBe(500);
    expect(figures.latency!.summary()!.count).toBe(300);
  });
});
