// Goal: the plain-records path of the produce workload finishes or fails, never hangs: a producer
// whose share is 0 records is done at once, and a ProduceStream that the server ends while
// answers are owed fails the load; at a --rate it sends about a millisecond's worth of records
// per request, not a whole batch's worth in one burst. Method: the no-op server (or a gRPC server
// that ends every ProduceStream) in this process, the real load over gRPC.
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type NoopServer, NoopState, startNoopServer } from '../../src/bench/noop-server.js';
import { type ProduceLoadOptions, runProduceLoad } from '../../src/bench/produce-load.js';
import { Progress } from '../../src/bench/progress.js';
import { rootLogger } from '../../src/common/logger.js';
import type { strata } from '../../src/generated/strata.js';
import { logServiceDefinition } from '../../src/server/service-definitions.js';

/**
 * The no-op server's state, keeping the size of every plain-records request by topic. With
 * `hold` set, it blocks the event loop (the server runs in this process, as the load does) for
 * `ms` at that request of that topic.
 */
class RequestSizes extends NoopState {
  readonly sizes = new Map<string, number[]>();
  hold: { topic: string; request: number; ms: number } | null = null;

  override produce(request: strata.v1.ProduceRequest): strata.v1.ProduceResponse {
    if (request.records.length > 0) {
      const sizes = this.sizes.get(request.topic) ?? [];
      this.sizes.set(request.topic, [...sizes, request.records.length]);
      if (this.hold?.topic === request.topic && this.hold.request === sizes.length + 1) {
        const until = performance.now() + this.hold.ms;
        while (performance.now() < until);
      }
    }
    return super.produce(request);
  }
}

let state: RequestSizes;
let server: NoopServer;

beforeAll(async () => {
  state = new RequestSizes();
  server = await startNoopServer('127.0.0.1:0', state);
});
afterAll(() => server?.stop());

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
    logger: rootLogger,
    progress: new Progress({ write: () => true }),
    label: 'produce',
    ...overrides,
  };
}

it('finishes when some producers have no record to send', { timeout: 10_000 }, async () => {
  const figures = await runProduceLoad(recordsPath(server.address, { topic: 'zero-share', records: 3, producers: 4 }));
  expect(figures.records).toBe(3);
  expect(state.partition('zero-share', 0).endOffset).toBe(3);
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
  await runProduceLoad(recordsPath(server.address, { topic: 'paced', records: 300, rate: 3000 }));
  const sizes = state.sizes.get('paced') ?? [];
  expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(300);
  expect(Math.max(...sizes)).toBeLessThanOrEqual(3);
});

it('reports, at a rate, how late each request went against its schedule: a sender held up shows there', async () => {
  const pauseMs = 60;
  // The process is blocked at the 20th request of a 0.2 s run: the requests due meanwhile go late.
  state.hold = { topic: 'held-up', request: 20, ms: pauseMs };
  try {
    const figures = await runProduceLoad(recordsPath(server.address, { topic: 'held-up', records: 400, rate: 2000 }));
    const lag = figures.senderLag!.summary()!;
    expect(figures.senderLag!.count).toBe(state.sizes.get('held-up')!.length); // one per request
    expect(lag.maxMs).toBeGreaterThanOrEqual(pauseMs - 10);
  } finally {
    state.hold = null;
  }
  // Without a rate there is no schedule to be behind.
  expect((await runProduceLoad(recordsPath(server.address, { topic: 'unpaced', records: 100 }))).senderLag).toBeNull();
});
