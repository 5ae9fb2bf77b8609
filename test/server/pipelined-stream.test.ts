// Goal: the shared handler behind ProduceStream and CommitOffsetsStream keeps its promises: at
// most `inFlightMax` requests run at once (reading stops, so HTTP/2 flow control holds the
// client back) and reading resumes as they finish, a request counting until its response is
// sent (so a client that reads no responses is held back too); with a memory shared by the
// streams, one stops reading while the others fill it, and a cancelled stream gives back what
// its unsent answers held; failures are answered in-band;
// on shutdown it stops reading, answers every request it started and ends with OK, never
// running one it did not answer. Method: a real grpc-js server and client on loopback with a
// tiny service (a request is a correlation id) whose handler completes when the test says so.
import { type ClientDuplexStream, type MethodDefinition, Server, ServerCredentials, credentials, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { rootLogger } from '../../src/common/logger.js';
import { StrataError, ErrorCode } from '../../src/common/errors.js';
import { BrokerMetrics } from '../../src/server/metrics.js';
import { pipelinedStream } from '../../src/server/pipelined-stream.js';
import { RequestMemory } from '../../src/server/request-memory.js';
import { plateau } from '../helpers/plateau.js';
import { waitUntil } from '../helpers/wait.js';

interface Answer {
  id: number;
  code: number;
}

const u32 = (value: number): Buffer => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
};

/** The method; each answer is padded to `answerBytes` (at least 8) so a test can fill HTTP/2 windows quickly. */
const methodAnswering = (answerBytes: number): MethodDefinition<number, Answer> => ({
  path: '/test.Pipelined/Run',
  requestStream: true,
  responseStream: true,
  requestSerialize: u32,
  requestDeserialize: (bytes) => bytes.readUInt32BE(0),
  responseSerialize: ({ id, code }) => Buffer.concat([u32(id), u32(code), Buffer.alloc(answerBytes - 8)]),
  responseDeserialize: (bytes) => ({ id: bytes.readUInt32BE(0), code: bytes.readUInt32BE(4) }),
});

/**
 * A server whose requests finish when `release` is called (or at once with `answerAtOnce`);
 * `started` lists the ids run.
 */
async function startServer(
  inFlightMax: number,
  {
    answerAtOnce = false,
    answerBytes = 8,
    inFlightBytesMax = undefined as number | undefined,
    requestBytes = undefined as ((id: number) => number) | undefined,
    sharedMemory = null as RequestMemory | null,
    metrics = null as BrokerMetrics | null,
  } = {},
) {
  const method = methodAnswering(answerBytes);
  const stopping = new AbortController();
  const started: number[] = [];
  const waiting = new Map<number, () => void>();
  let onStart: (() => void) | null = null;
  const handler = pipelinedStream<number, Answer>({ logger: rootLogger.child({ level: 'silent' }), metrics }, stopping.signal, {
    method: 'Run',
    inFlightMax,
    ...(inFlightBytesMax === undefined ? {} : { inFlightBytesMax }),
    ...(requestBytes === undefined ? {} : { requestBytes }),
    sharedMemory,
    handle: (id) =>
      new Promise<Answer>((resolve, reject) => {
        started.push(id);
        const release = (): void => (id % 10 === 7 ? reject(new StrataError(ErrorCode.INVALID_ARGUMENT, `request ${id} is refused`)) : resolve({ id, code: 0 }));
        if (answerAtOnce) release();
        else waiting.set(id, release);
        onStart?.();
      }),
    failed: (id, code) => ({ id, code }),
  });
  const server = new Server();
  server.addService({ run: method }, { run: handler });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  const Client = makeGenericClientConstructor({ run: method }, 'Pipelined');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  return {
    started,
    stopping,
    server,
    client,
    open: () => (client as unknown as { run(): ClientDuplexStream<number, Answer> }).run(),
    /** Finishes the requests `ids` (started already). */
    release(ids: number[]): void {
      for (const id of ids) {
        const release = waiting.get(id);
        waiting.delete(id);
        release?.();
      }
    },
    /** Finishes every request started so far. */
    releaseAll(): void {
      const now = [...waiting.values()];
      waiting.clear();
      for (const release of now) release();
    },
    /** Resolves once `count` requests have started (the test fails on its timeout otherwise). */
    untilStarted(count: number): Promise<void> {
      return new Promise((resolve) => {
        const check = (): void => {
          if (started.length >= count) resolve();
        };
        onStart = check;
        check();
      });
    },
  };
}

function collect(call: ClientDuplexStream<number, Answer>) {
  const answers: Answer[] = [];
  call.on('data', (answer: Answer) => answers.push(answer));
  const ended = new Promise<number>((resolve) => {
    call.on('status', ({ code }: { code: number }) => resolve(code));
    call.on('error', () => undefined); // the status says it
  });
  return { answers, ended };
}

/**
 * Sends requests 1 to `total` and ends its side; checks that `limit` start and no more while
 * they are held (the wait is only a window in which one more would show up, not
 * synchronisation); then releases requests until all have run, and returns the answers once the
 * stream ended with OK.
 */
async function runHeldBack(target: Awaited<ReturnType<typeof startServer>>, total: number, limit: number): Promise<Answer[]> {
  const call = target.open();
  const { answers, ended } = collect(call);
  for (let id = 1; id <= total; id++) call.write(id);
  call.end();
  await target.untilStarted(limit);
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(target.started).toHaveLength(limit);
  while (target.started.length < total) {
    const before = target.started.length;
    target.releaseAll();
    await target.untilStarted(Math.min(total, before + 1));
  }
  target.releaseAll();
  expect(await ended).toBe(status.OK);
  return answers;
}

describe('pipelined stream handler', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it('runs at most inFlightMax requests at once, reads on as they finish, and answers failures in-band', async () => {
    const target = await startServer(8);
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    const total = 40;
    const answers = await runHeldBack(target, total, 8);
    expect(answers.map(({ id }) => id).sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, index) => index + 1));
    for (const { id, code } of answers) expect(code, `request ${id}`).toBe(id % 10 === 7 ? status.INVALID_ARGUMENT : status.OK);
    expect(target.started).toEqual(Array.from({ length: total }, (_, index) => index + 1)); // in order, each once
  });

  it('also stops reading once inFlightBytesMax bytes of requests are unanswered, and reads again below half', async () => {
    // Each request counts 1,000 bytes: at most 3 of 3,000 run at once, far below the count limit.
    const target = await startServer(100, { inFlightBytesMax: 3_000, requestBytes: () => 1_000 });
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    expect(await runHeldBack(target, 12, 3)).toHaveLength(12);
  });

  it('counts a request in flight until its response is sent, so a client that reads no responses stops the stream', async () => {
    // 1 KiB answers: the default 64 KiB HTTP/2 windows and the buffers on both sides hold a few
    // hundred. Counted off when merely handed to grpc-js, the answers to all 5,000 requests
    // would pile up in the server instead.
    const target = await startServer(8, { answerAtOnce: true, answerBytes: 1024 });
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    const call = target.open();
    const { answers, ended } = collect(call);
    // Paused at once: the 'data' listener still starts one read, after which grpc-js holds up to
    // 16 answers and stops reading from HTTP/2. (A client call never read at all buffers all it
    // is sent: a grpc-js quirk that would hide the server's side.)
    call.pause();
    const total = 5_000;
    for (let id = 1; id <= total; id++) call.write(id);
    call.end();
    await target.untilStarted(8);
    const runWhileUnread = await plateau(() => target.started.length, 200);
    expect(runWhileUnread).toBeLessThan(total / 5);
    expect(answers).toHaveLength(0);
    call.resume();
    expect(await ended).toBe(status.OK);
    expect(target.started).toHaveLength(total);
    expect(answers.map(({ id }) => id).sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, index) => index + 1));
  });

  it('with a shared memory, stops reading a stream while other streams fill it, and reads it again below half', async () => {
    // Each request counts 1,000 bytes of 3,000 shared, far below each stream's own limits.
    const memory = new RequestMemory(3_000);
    const target = await startServer(100, { requestBytes: () => 1_000, sharedMemory: memory });
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    const first = target.open();
    const firstAnswers = collect(first);
    for (let id = 1; id <= 3; id++) first.write(id);
    first.end();
    await target.untilStarted(3);
    expect(memory.full).toBe(true);
    const second = target.open();
    const secondAnswers = collect(second);
    for (let id = 101; id <= 106; id++) second.write(id);
    second.end();
    // The second stream's first request is read (and run) before the stream stops.
    await target.untilStarted(4);
    expect(await plateau(() => target.started.length, 200)).toBe(4);
    expect(memory.pauses).toBe(2);
    while (target.started.length < 9) {
      const before = target.started.length;
      target.releaseAll();
      await target.untilStarted(before + 1);
    }
    target.releaseAll();
    expect(await firstAnswers.ended).toBe(status.OK);
    expect(await secondAnswers.ended).toBe(status.OK);
    expect(secondAnswers.answers.map(({ id }) => id)).toEqual([101, 102, 103, 104, 105, 106]);
    expect(memory.bytes).toBe(0);
  });

  it('a stream woken by the shared memory while its own requests still held it back reads again once they finish, the memory not full', async () => {
    // Stream A sends small requests (1 byte), stream B large ones (1,000 bytes of 4,000 shared).
    const memory = new RequestMemory(4_000);
    const target = await startServer(4, { requestBytes: (id) => (id > 100 ? 1_000 : 1), sharedMemory: memory });
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    const small = target.open();
    const large = target.open();
    const smallAnswers = collect(small);
    const largeAnswers = collect(large);
    for (let id = 1; id <= 3; id++) small.write(id);
    await target.untilStarted(3);
    for (let id = 101; id <= 104; id++) large.write(id);
    await target.untilStarted(7); // the memory is full: the large stream stops
    // A's 4th request reaches its own bound and finds the memory full: it waits for both.
    small.write(4);
    small.write(5);
    await target.untilStarted(8);
    // B's requests finish: the memory is below half, but A's own four still hold it back.
    target.release([101, 102, 103, 104]);
    for (let id = 105; id <= 107; id++) large.write(id);
    await target.untilStarted(11); // 3,000 + 4 bytes held: above half, not full
    // A's own requests finish: with room in the memory, it reads its 5th.
    target.release([1, 2, 3, 4]);
    await target.untilStarted(12);
    expect(target.started.at(-1)).toBe(5);
    small.end();
    large.end();
    target.releaseAll();
    expect(await smallAnswers.ended).toBe(status.OK);
    expect(await largeAnswers.ended).toBe(status.OK);
    expect(memory.bytes).toBe(0);
  });

  it('gives the shared memory back for answers a cancelled stream never sent', async () => {
    // A client that reads no answers holds its requests' bytes until the memory is full.
    const memory = new RequestMemory(300_000);
    const target = await startServer(1_000, { answerAtOnce: true, answerBytes: 1024, requestBytes: () => 1_000, sharedMemory: memory });
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    const stuck = target.open();
    collect(stuck);
    stuck.pause();
    const total = 5_000;
    for (let id = 1; id <= total; id++) stuck.write(id);
    await target.untilStarted(8);
    expect(await plateau(() => target.started.length, 200)).toBeLessThan(total);
    expect(memory.full).toBe(true);
    stuck.cancel();
    await waitUntil(() => memory.bytes === 0, 'the cancelled stream to give back its memory');
    // Another stream is read as before.
    const next = target.open();
    const nextAnswers = collect(next);
    for (let id = 10_001; id <= 10_020; id++) next.write(id);
    next.end();
    expect(await nextAnswers.ended).toBe(status.OK);
    expect(nextAnswers.answers).toHaveLength(20);
  });

  it('counts requests by code and failures by error code; those of a stream the client cancelled count as CANCELLED, their failures by error code still', async () => {
    const metrics = new BrokerMetrics();
    const target = await startServer(8, { metrics });
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    const counted = async (name: string, labels: Record<string, string>): Promise<number> => {
      const { values } = await metrics.registry.getSingleMetric(name)!.get();
      return values.find((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))?.value ?? 0;
    };
    const answered = target.open();
    const answers = collect(answered);
    answered.write(1);
    answered.write(17); // refused: INVALID_ARGUMENT
    await target.untilStarted(2);
    target.releaseAll();
    answered.end();
    expect(await answers.ended).toBe(status.OK);
    expect(await counted('strata_requests_total', { method: 'Run', code: 'OK' })).toBe(1);
    expect(await counted('strata_requests_total', { method: 'Run', code: 'INVALID_ARGUMENT' })).toBe(1);
    expect(await counted('strata_request_errors_total', { method: 'Run', error: 'INVALID_ARGUMENT' })).toBe(1);

    const cancelled = target.open();
    collect(cancelled);
    cancelled.write(2);
    cancelled.write(27);
    await target.untilStarted(4);
    cancelled.cancel();
    // The server has seen the cancel once the stream's call closed there.
    await waitUntil(async () => (await counted('strata_grpc_active_calls', { method: 'Run' })) === 0, 'the server to see the cancel');
    target.releaseAll();
    await waitUntil(async () => (await counted('strata_requests_total', { method: 'Run', code: 'CANCELLED' })) >= 2, 'the requests of the cancelled stream to be counted');
    expect(await counted('strata_requests_total', { method: 'Run', code: 'OK' })).toBe(1);
    // A failure still counts by its error code: a disk that stalls past clients' deadlines fails all the same.
    expect(await counted('strata_request_errors_total', { method: 'Run', error: 'INVALID_ARGUMENT' })).toBe(2);
  });

  it('on shutdown stops reading, answers every request it started, ends with OK, and runs none it leaves unanswered', async () => {
    const target = await startServer(8);
    cleanups.push(() => target.client.close(), () => target.server.forceShutdown());
    const call = target.open();
    const { answers, ended } = collect(call);
    for (let id = 1; id <= 30; id++) call.write(id);
    await target.untilStarted(8);
    target.stopping.abort();
    target.releaseAll();
    expect(await ended).toBe(status.OK);
    expect(target.started).toHaveLength(8);
    expect(answers.map(({ id }) => id).sort((x, y) => x - y)).toEqual(target.started);
    expect(answers.every(({ id, code }) => code === (id % 10 === 7 ? status.INVALID_ARGUMENT : status.OK))).toBe(true);
  });
});
