// Goal: the broker's lifecycle behaves as operators expect — deleting a topic ends its readers at
// once with NOT_FOUND, a graceful stop is not held up by subscriptions or long polls, and
// `strata serve` exits 0 on SIGTERM leaving clean-shutdown markers; method: real brokers (in
// process and as a child process) on ephemeral ports, real gRPC.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { type ServiceError, status } from '@grpc/grpc-js';
import Long from 'long';
import { afterEach, describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { constants as http2Constants } from 'node:http2';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { waitUntil } from '../helpers/wait.js';
import { PausedSubscription } from '../helpers/paused-subscription.js';
import { plateau } from '../helpers/plateau.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { StartAborted, runBroker } from '../../src/server/run-broker.js';
import { TokenAuthenticator } from '../../src/server/token-auth.js';
import { DIRECT_WRITES_WORK } from '../helpers/test-file-system.js';
import { type BrokerProcess, type TestBroker, removeDirectory, spawnBroker, startTestBroker, temporaryDirectory, testSettings, unusedPort } from '../helpers/test-server.js';

type Subscription = NodeJS.EventEmitter & { cancel(): void };

function subscribe(client: TestClient, topic: string): Subscription {
  return (client.log as unknown as { subscribe(request: unknown): Subscription }).subscribe(
    v1.SubscribeRequest.create({ topic, start: v1.StartPosition.create({ earliest: true }) }),
  );
}

/** Resolves with the error that ends a subscription (fails if it ends without one). */
function subscriptionError(call: Subscription): Promise<ServiceError> {
  return new Promise((resolve, reject) => {
    call.on('data', () => undefined);
    call.on('error', resolve);
    call.on('end', () => reject(new Error('subscription ended without an error')));
  });
}

/** Whether `mkfifo` works here (the start-up test holds recovery on a named pipe). */
function fifoWorks(): boolean {
  const directory = temporaryDirectory('strata-fifo-');
  try {
    execFileSync('mkfifo', [join(directory, 'probe')], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    removeDirectory(directory);
  }
}

/** Resolves once the broker has a waiter on the partition (the subscription is idle, waiting). */
async function untilWaiting(broker: TestBroker, topic: string): Promise<void> {
  const log = broker.broker.partitionLog(topic, 0) as unknown as { highWatermarkListeners: Set<unknown> };
  const deadline = Date.now() + 10_000;
  while (log.highWatermarkListeners.size === 0) {
    if (Date.now() > deadline) throw new Error('the subscription never started waiting');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('broker lifecycle', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /**
   * A broker the test stops itself (cleanup removes its data directory), a client, and a
   * one-partition topic. With `token`, the broker checks tokens and the client sends that one.
   */
  async function brokerWithTopic(topic: string, token?: string): Promise<{ broker: TestBroker; client: TestClient }> {
    const broker = await startTestBroker(
      token === undefined ? {} : { authenticator: new TokenAuthenticator([{ name: 'operator', sha256: createHash('sha256').update(token).digest('hex'), permissions: ['admin'] }]) },
    );
    cleanups.push(() => removeDirectory(broker.dataDir));
    const client = new TestClient(broker.address, token);
    cleanups.push(() => client.close());
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions: 1 }));
    return { broker, client };
  }

  it('ends subscriptions and long polls on a deleted topic at once with NOT_FOUND', async () => {
    const broker = await startTestBroker();
    cleanups.push(() => broker.dispose());
    const client = new TestClient(broker.address);
    cleanups.push(() => client.close());
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'doomed', partitions: 1 }));
    const subscription = subscribe(client, 'doomed');
    const ended = subscriptionError(subscription);
    await untilWaiting(broker, 'doomed');
    const longPoll = grpcError(client.call('log.fetch', v1.FetchRequest.create({ topic: 'doomed', partition: 0, offset: Long.ZERO, maxWaitMs: 60_000 }), 60_000));
    await client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'doomed' }));
    const error = await ended;
    expect(error.code).toBe(status.NOT_FOUND);
    expect(error.details).toMatch(/topic "doomed" was deleted/);
    const pollError = await longPoll;
    expect([status.NOT_FOUND]).toContain(pollError.code);
  });

  it('stops gracefully (not forced) while a subscription is open, ending it with UNAVAILABLE', async () => {
    const { broker, client } = await brokerWithTopic('open');
    const ended = subscriptionError(subscribe(client, 'open'));
    await untilWaiting(broker, 'open');
    const result = await broker.stop();
    expect(result.forced).toBe(false);
    const error = await ended;
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.details).toMatch(/shutting down/);
    expect(error.metadata.get('strata-error')).toEqual(['UNAVAILABLE']); // the broker's answer, not a dropped connection
  });

  // With tokens, the token check wraps the call the stream is found through.
  it.each([
    ['without', undefined],
    ['with', 'operator-secret'],
  ])('stops gracefully (not forced) while a subscription\'s reader has stopped reading, resetting only that stream as refused (UNAVAILABLE), %s tokens', async (_tokens, token) => {
    const { broker, client } = await brokerWithTopic('stalled', token);
    // 1 MiB in 64 batches: far more than the reader's 64 KiB HTTP/2 window.
    for (let index = 0; index < 64; index++) {
      await client.call('log.produce', v1.ProduceRequest.create({ topic: 'stalled', partition: 0, batch: buildBatch([{ value: Buffer.alloc(16 * 1024, index) }]) }));
    }
    const reader = new PausedSubscription(broker.address, { topic: 'stalled', partitions: [0], start: v1.StartPosition.create({ earliest: true }), raw: true, maxBytes: 32 * 1024 }, token);
    cleanups.push(() => reader.close());
    // A subscription that reads everything and then waits, whose status is not held up: it still ends with it.
    const idle = subscriptionError(subscribe(client, 'stalled'));
    const served = broker.broker.partitionLog('stalled', 0).served;
    await waitUntil(() => served.records >= 64, 'the reading subscription has every record');
    await plateau(() => served.records, 200); // and the stalled one what the reader's window and max_bytes hold
    const result = await broker.stop();
    expect(result.forced, 'a reader that does not read does not hold up the stop').toBe(false);
    expect(await reader.closed).toBe(http2Constants.NGHTTP2_REFUSED_STREAM);
    expect((await idle).metadata.get('strata-error')).toEqual(['UNAVAILABLE']);
  });

  it('stops gracefully (not forced) while a subscription is still looking up where to start', async () => {
    const { broker, client } = await brokerWithTopic('starting');
    const log = broker.broker.partitionLog('starting', 0);
    let release!: () => void;
    const reached = new Promise<void>((arrived) => {
      log.offsetForTimestamp = () => {
        arrived();
        return new Promise((resolve) => (release = () => resolve(null)));
      };
    });
    const call = (client.log as unknown as { subscribe(request: unknown): Subscription }).subscribe(
      v1.SubscribeRequest.create({ topic: 'starting', start: v1.StartPosition.create({ timestamp: Long.fromNumber(Date.now()) }) }),
    );
    const ended = subscriptionError(call);
    await reached;
    const stopped = broker.stop(); // the call's signal aborts now, before its partition follows
    release();
    expect((await stopped).forced).toBe(false);
    expect((await ended).code).toBe(status.UNAVAILABLE);
  });

  it('stops gracefully (not forced) while idle ProduceStream and CommitOffsetsStream calls are open, ending them', async () => {
    const { broker, client } = await brokerWithTopic('piped');
    type Duplex = NodeJS.EventEmitter & { write(message: unknown): void };
    const produce = (client.log as unknown as { produceStream(): Duplex }).produceStream();
    const commit = (client.groups as unknown as { commitOffsetsStream(): Duplex }).commitOffsetsStream();
    /** Resolves with the first answer, then with the status the stream ends with. */
    const follow = (call: Duplex) => {
      const answered = new Promise<unknown>((resolve) => call.once('data', resolve));
      const ended = new Promise<{ code: number }>((resolve) => {
        call.on('status', resolve);
        call.on('error', () => undefined); // the status says it
        call.on('data', () => undefined);
      });
      return { answered, ended };
    };
    const produced = follow(produce);
    const committed = follow(commit);
    produce.write(v1.ProduceRequest.create({ topic: 'piped', partition: 0, correlationId: Long.fromNumber(1, true), records: [v1.Record.create({ value: Buffer.from('x') })] }));
    commit.write(v1.CommitOffsetsRequest.create({ groupId: 'piped-group', offsets: [v1.OffsetCommit.create({ topic: 'piped', partition: 0, offset: Long.ZERO })], correlationId: Long.fromNumber(1, true) }));
    expect((await produced.answered as strata.v1.ProduceResponse).error).toBeFalsy();
    expect((await committed.answered as strata.v1.CommitOffsetsResponse).error).toBeFalsy();

    const result = await broker.stop();
    expect(result.forced).toBe(false);
    expect((await produced.ended).code).toBe(status.OK);
    expect((await committed.ended).code).toBe(status.OK);
  });

  it('a shutdown answers every ProduceStream request it started, and writes none it did not answer', async () => {
    const { broker, client } = await brokerWithTopic('drained');
    type Duplex = NodeJS.EventEmitter & { write(message: unknown): void };
    const call = (client.log as unknown as { produceStream(): Duplex }).produceStream();
    const answers: strata.v1.ProduceResponse[] = [];
    const firstAnswer = new Promise<void>((resolve) => call.once('data', () => resolve()));
    const ended = new Promise<{ code: number }>((resolve) => {
      call.on('data', (answer: strata.v1.ProduceResponse) => answers.push(answer));
      call.on('status', resolve);
      call.on('error', () => undefined); // the status says it
    });
    const sent = 2_000;
    for (let index = 0; index < sent; index++) {
      call.write(v1.ProduceRequest.create({ topic: 'drained', partition: 0, correlationId: Long.fromNumber(index, true), records: [v1.Record.create({ value: Buffer.from(`r${index}`) })] }));
    }
    await firstAnswer;
    expect((await broker.stop()).forced).toBe(false);
    expect((await ended).code).toBe(status.OK);
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.filter((answer) => answer.error)).toEqual([]); // nothing answered UNAVAILABLE ahead of earlier requests

    const reopened = await startTestBroker({ dataDir: broker.dataDir });
    cleanups.push(async () => {
      await reopened.stop();
    });
    const again = new TestClient(reopened.address);
    cleanups.push(() => again.close());
    const latest = await again.call<strata.v1.ListOffsetsResponse>('log.listOffsets', v1.ListOffsetsRequest.create({ topic: 'drained', partition: 0, position: v1.StartPosition.create({ latest: true }) }));
    expect(latest.offset.toNumber()).toBe(answers.length); // every answered record is there, and nothing else
    const offsets = answers.map((answer) => answer.batches[0]!.baseOffset.toNumber()).sort((x, y) => x - y);
    expect(offsets).toEqual(Array.from({ length: answers.length }, (_, offset) => offset));
  });

  it('strata serve exits 0 on SIGTERM after writing clean-shutdown markers, and restarts without recovery', async () => {
    const dataDir = temporaryDirectory();
    cleanups.push(() => removeDirectory(dataDir));
    const first = await spawnBroker(dataDir);
    const client = new TestClient(first.address);
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'kept', partitions: 2 }));
    await client.call('log.produce', v1.ProduceRequest.create({ topic: 'kept', partition: 1, records: [v1.Record.create({ value: Buffer.from('v') })] }));
    client.close();
    first.child.kill('SIGTERM');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(join(dataDir, 'topics', 'kept', '1', '.clean-shutdown'))).toBe(true);
    expect(first.logLines.some((line) => line.includes('"msg":"stopped"'))).toBe(true);

    const second = await spawnBroker(dataDir);
    cleanups.push(async () => {
      second.child.kill('SIGTERM');
      await second.exited;
    });
    expect(second.logLines.some((line) => line.includes('unclean shutdown'))).toBe(false);
    const again = new TestClient(second.address);
    cleanups.push(() => again.close());
    const described = await again.call<strata.v1.TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'kept' }));
    expect(described.partitions.map((partition) => partition.logEndOffset.toNumber())).toEqual([0, 1]);
  });

  it('strata serve logs a second SIGTERM during a graceful stop and goes on with the stop, not killed by it', async () => {
    const dataDir = temporaryDirectory();
    cleanups.push(() => removeDirectory(dataDir));
    const broker = await spawnBroker(dataDir, ['--shutdown-timeout-ms', '2000']);
    cleanups.push(async () => {
      broker.child.kill('SIGKILL');
      await broker.exited;
    });
    const client = new TestClient(broker.address);
    cleanups.push(() => client.close());
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'held', partitions: 1 }));
    // A producer that reads none of its answers holds the stop up until the timeout: the
    // answers to the requests it has in flight cannot be sent.
    const stuck = (client.log as unknown as { produceStream(): NodeJS.EventEmitter & { write(request: unknown): void; pause(): void } }).produceStream();
    stuck.on('data', () => undefined);
    stuck.on('error', () => undefined);
    stuck.pause();
    for (let id = 1; id <= 20_000; id++) {
      stuck.write(v1.ProduceRequest.create({ topic: 'held', partition: 0, acks: v1.Acks.ACKS_LEADER, correlationId: Long.fromNumber(id, true), records: [v1.Record.create({ value: Buffer.alloc(2_000) })] }));
    }
    const logEnd = async (): Promise<number> => Number(/^strata_partition_log_end_offset\{[^}]*topic="held"[^}]*\} (\d+)$/m.exec(await scrapeMetrics(broker))?.[1] ?? 0);
    let last = -1;
    for (let now = await logEnd(); now === 0 || now !== last; now = await logEnd()) {
      last = now;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    expect(last).toBeLessThan(20_000);
    const seen = (text: string): Promise<void> => waitUntil(() => broker.logLines.some((line) => line.includes(text)), text, 15_000);
    broker.child.kill('SIGTERM');
    await seen('"msg":"shutting down"');
    broker.child.kill('SIGTERM');
    await seen('SIGTERM while stopping: already stopping');
    // Forced at the timeout (exit 1), after a stop that closed the logs.
    expect(await broker.exited).toEqual({ code: 1, signal: null });
    expect(broker.logLines.some((line) => line.includes('"msg":"stopped"') && line.includes('"forced":true'))).toBe(true);
  });

  /** kill -9s a spawned broker and starts another on its data directory; returns a client of it. */
  async function killAndRestart(broker: BrokerProcess, dataDir: string): Promise<TestClient> {
    broker.child.kill('SIGKILL');
    await broker.exited;
    const second = await spawnBroker(dataDir);
    cleanups.push(async () => {
      second.child.kill('SIGTERM');
      await second.exited;
    });
    const client = new TestClient(second.address);
    cleanups.push(() => client.close());
    return client;
  }

  /** The /metrics page of a spawned broker (its address is in the "listening" log line). */
  async function scrapeMetrics(broker: BrokerProcess): Promise<string> {
    const listening = broker.logLines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { msg?: string; metricsAddress?: string }).find((entry) => entry.msg === 'listening');
    return (await fetch(`http://${listening!.metricsAddress!}/metrics`)).text();
  }

  // Skipped only where the temp directory's file system has no O_DIRECT.
  it.skipIf(!DIRECT_WRITES_WORK)('strata serve --write-mode direct writes a large produce directly, and kill -9 loses none of it', async () => {
    const dataDir = temporaryDirectory();
    cleanups.push(() => removeDirectory(dataDir));
    const first = await spawnBroker(dataDir, ['--write-mode', 'direct']);
    cleanups.push(async () => {
      first.child.kill('SIGKILL');
      await first.exited;
    });
    const client = new TestClient(first.address);
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'big', partitions: 1 }));
    const value = (index: number): Buffer => Buffer.alloc(1000 + (index % 7), `record-${index};`);
    // 500 records of about 1 KB in one request: one write group above the direct-write minimum.
    const records = Array.from({ length: 500 }, (_, index) => v1.Record.create({ value: value(index) }));
    await client.call('log.produce', v1.ProduceRequest.create({ topic: 'big', partition: 0, records }));
    const described = await client.call<strata.v1.TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'big' }));
    const logBytes = described.partitions[0]!.sizeBytes.toNumber();
    client.close();
    const metrics = await scrapeMetrics(first);
    expect(metrics).toContain(`strata_partition_written_bytes_total{topic="big",partition="0",mode="direct"} ${logBytes}`);
    // A direct write covers whole 4 KiB blocks: the file ends on a block boundary, past the log.
    const fileBytes = statSync(join(dataDir, 'topics', 'big', '0', '00000000000000000000.log')).size;
    expect(fileBytes % 4096).toBe(0);
    expect(fileBytes).toBeGreaterThan(logBytes);
    const again = await killAndRestart(first, dataDir);
    const seen: Buffer[] = [];
    while (seen.length < 500) {
      const fetched = await again.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'big', partition: 0, offset: Long.fromNumber(seen.length) }));
      expect(fetched.records.length).toBeGreaterThan(0);
      for (const record of fetched.records) seen.push(Buffer.from(record.value ?? []));
    }
    expect(seen.every((bytes, index) => bytes.equals(value(index)))).toBe(true);
    const after = await again.call<strata.v1.TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'big' }));
    expect(after.partitions[0]!.logEndOffset.toNumber()).toBe(500);
  });

  it.each([
    ['strata serve', 'event loop', [], 'event_loop', 'thread_pool'],
    ['strata serve --small-io thread-pool', 'thread pool', ['--small-io', 'thread-pool'], 'thread_pool', 'event_loop'],
  ])('%s writes and fdatasyncs small produces on the %s, and kill -9 loses none of them', async (_command, _where, args, thread, other) => {
    const dataDir = temporaryDirectory();
    cleanups.push(() => removeDirectory(dataDir));
    const first = await spawnBroker(dataDir, args);
    cleanups.push(async () => {
      first.child.kill('SIGKILL');
      await first.exited;
    });
    const client = new TestClient(first.address);
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'small', partitions: 1 }));
    // acks=all (the default) one record at a time: each answer waits for its own fdatasync.
    for (let index = 0; index < 20; index++) {
      await client.call('log.produce', v1.ProduceRequest.create({ topic: 'small', partition: 0, records: [v1.Record.create({ value: Buffer.from(`small-${index}`) })] }));
    }
    client.close();
    const metrics = await scrapeMetrics(first);
    const calls = (operation: string, label: string): number => Number(new RegExp(`^strata_log_io_calls_total\\{operation="${operation}",thread="${label}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    for (const operation of ['write', 'fdatasync']) {
      expect(calls(operation, thread) + calls(operation, other)).toBe(20);
      if (thread === 'thread_pool') expect(calls(operation, other)).toBe(0);
    }
    // On the event loop: at least the first write, whose budget starts fresh. The fdatasyncs
    // too, unless that write or the disk was slow (a loaded machine took the first sync's credit
    // and kept them all on the pool in one full run); the storage tests pin those rules.
    if (thread === 'event_loop') expect(calls('write', 'event_loop')).toBeGreaterThan(0);
    const again = await killAndRestart(first, dataDir);
    const fetched = await again.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'small', partition: 0, offset: Long.fromNumber(0) }));
    expect(fetched.records.map((record) => Buffer.from(record.value ?? []).toString())).toEqual(Array.from({ length: 20 }, (_, index) => `small-${index}`));
  });

  /** A data directory with topic `name` (1 partition), its broker stopped cleanly; removed after the test. */
  async function stoppedBrokerWithTopic(name: string): Promise<string> {
    const seeded = await startTestBroker();
    const dataDir = seeded.dataDir;
    cleanups.push(() => removeDirectory(dataDir));
    const client = new TestClient(seeded.address);
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions: 1 }));
    client.close();
    await seeded.stop();
    return dataDir;
  }

  it('a start on an address in use stops with the listener\'s flag and the reason, and leaves the data directory to the next start', async () => {
    const { broker } = await brokerWithTopic('occupant');
    cleanups.push(async () => void (await broker.stop()));
    const dataDir = temporaryDirectory('strata-bind-');
    cleanups.push(() => removeDirectory(dataDir));
    await expect(runBroker(testSettings(dataDir, { listen: broker.address }))).rejects.toThrow(
      `cannot listen on ${broker.address} (--listen): the address is in use (by another broker or another program); give another --listen`,
    );
    await expect(runBroker(testSettings(dataDir, { metricsListen: broker.metricsAddress! }))).rejects.toThrow(
      `cannot listen on ${broker.metricsAddress} (--metrics-listen): the address is in use (by another broker or another program); give another --metrics-listen`,
    );
    // The failed starts closed what they had opened, the data directory's lock included.
    const next = await runBroker(testSettings(dataDir));
    await next.stop();
  });

  it('a start called off during recovery rejects with StartAborted, closes the probe server at once and the logs once they have opened', async () => {
    const dataDir = await stoppedBrokerWithTopic('kept');
    const marker = join(dataDir, 'topics', 'kept', '0', '.clean-shutdown');
    expect(existsSync(marker)).toBe(true);

    // The signal comes while the logs load: the last line the load logs aborts the start.
    const startup = new AbortController();
    const logger = pino({ level: 'info' }, { write: (line: string) => (line.includes('"msg":"topics loaded"') ? startup.abort() : undefined) });
    const metricsPort = await unusedPort();
    const started = runBroker(testSettings(dataDir, { metricsListen: `127.0.0.1:${metricsPort}` }), logger, startup.signal);
    const error = await started.catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(StartAborted);
    expect((error as StartAborted).phase).toBe('log recovery');
    await expect(fetch(`http://127.0.0.1:${metricsPort}/healthz`)).rejects.toThrow();
    // The open finished in the background and its logs were closed cleanly (marker written again).
    await waitUntil(() => existsSync(marker), 'the logs opened after the start was called off to be closed');
  });

  // Recovery is held on a named pipe in place of a segment's index: reading it blocks until a
  // writer opens it, so the signal lands during start-up every time. Skipped without mkfifo.
  it.skipIf(!fifoWorks())('strata serve logs a SIGTERM during start-up, stops the start and exits 1 (it did nothing as PID 1, or died silently)', async () => {
    const dataDir = await stoppedBrokerWithTopic('held');
    const index = join(dataDir, 'topics', 'held', '0', '00000000000000000000.index');
    rmSync(index);
    execFileSync('mkfifo', [index]);
    /** Opens and closes the pipe for writing: a reader blocked on it goes on (ENXIO when none waits). */
    const releasePipe = (): void => {
      try {
        closeSync(openSync(index, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // nobody is reading it
      }
    };

    const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'bin', 'strata.js'), 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STRATA_LOG_LEVEL: 'info' },
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    cleanups.push(async () => {
      child.kill('SIGKILL');
      releasePipe(); // (the exit may wait for a thread blocked on the pipe)
      await exited;
    });
    const lines: string[] = [];
    const waiters = new Set<() => void>();
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      for (const waiter of [...waiters]) waiter();
    });
    /** Resolves once a line holding `text` has been logged. */
    const seen = (text: string): Promise<void> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line with ${text}; got:\n${lines.join('\n')}`)), 15_000);
        const check = (): void => {
          if (!lines.some((line) => line.includes(text))) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      });
    await seen('"msg":"starting strata"'); // the handlers are in place from here on
    child.kill('SIGTERM');
    await seen('SIGTERM during start-up');
    releasePipe(); // the exit waits for the thread blocked on the pipe
    expect(await exited).toEqual({ code: 1, signal: null });
    expect(lines.filter((line) => line.includes('during start-up')), lines.join('\n')).toHaveLength(1);
    expect(lines.some((line) => line.includes('"msg":"listening"'))).toBe(false);
  });
});

describe('signals before a command handles them (the process as PID 1, a container entrypoint)', () => {
  const exitOnFirstSignals = join(PACKAGE_ROOT, 'dist', 'src', 'common', 'exit-on-first-signals.cjs');
  const signalTakeover = join(PACKAGE_ROOT, 'dist', 'src', 'common', 'signal-takeover.js');

  /** Runs `script` in a child node, waits for its "ready" line, sends SIGTERM; resolves with how it ended and what it printed. */
  async function sigtermAfterReady(script: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    const ready = new Promise<void>((resolve) =>
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready\n')) resolve();
      }),
    );
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    await ready;
    child.kill('SIGTERM');
    return { ...(await exited), output };
  }

  it('end the process with 128 + the signal until a command takes them over; then only its own handler runs, until it hands them back', async () => {
    const installed = `import { createRequire } from 'node:module';
      createRequire(import.meta.url)(${JSON.stringify(exitOnFirstSignals)}).exitOnFirstSignals(true);
      setInterval(() => undefined, 1000);
      console.log('ready');`;
    expect(await sigtermAfterReady(installed)).toMatchObject({ code: 143, signal: null });
    const takenOver = `import { createRequire } from 'node:module';
      createRequire(import.meta.url)(${JSON.stringify(exitOnFirstSignals)}).exitOnFirstSignals(true);
      const { handleStopSignals } = await import(${JSON.stringify(signalTakeover)});
      handleStopSignals(() => { console.log('own handler'); process.exit(0); });
      setInterval(() => undefined, 1000);
      console.log('ready');`;
    expect(await sigtermAfterReady(takenOver)).toEqual({ code: 0, signal: null, output: 'ready\nown handler\n' });
    const handedBack = `import { createRequire } from 'node:module';
      createRequire(import.meta.url)(${JSON.stringify(exitOnFirstSignals)}).exitOnFirstSignals(true);
      const { handleStopSignals } = await import(${JSON.stringify(signalTakeover)});
      const stopHandling = handleStopSignals(() => { console.log('own handler'); process.exit(0); });
      stopHandling();
      setInterval(() => undefined, 1000);
      console.log('ready');`;
    expect(await sigtermAfterReady(handedBack)).toEqual({ code: 143, signal: null, output: 'ready\n' });
  });

  // A new PID namespace makes the broker PID 1, where the kernel drops a signal it has no handler for.
  const pidNamespaces = ((): boolean => {
    try {
      execFileSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.runIf(pidNamespaces)('strata serve as PID 1 ends on a SIGTERM sent while it loads, before its own handler is installed', async () => {
    const dataDir = temporaryDirectory();
    try {
      await sigtermWhileLoading(dataDir);
    } finally {
      removeDirectory(dataDir);
    }
  });

  async function sigtermWhileLoading(dataDir: string): Promise<void> {
    const launcher = spawn('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, join(PACKAGE_ROOT, 'bin', 'strata.js'), 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', ''], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    launcher.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => launcher.once('exit', (code, signal) => resolve({ code, signal })));
    let done = false;
    void exited.then(() => (done = true));
    // unshare's child is the broker, PID 1 in its namespace. From here it has its usual pid.
    let brokerPid: number | null = null;
    await waitUntil(() => {
      if (done) return true;
      const children = readFileSafely(`/proc/${launcher.pid}/task/${launcher.pid}/children`).trim();
      brokerPid = children === '' ? null : Number(children.split(' ')[0]);
      return brokerPid !== null;
    }, 'the broker process to start');
    // A SIGTERM every 20 ms from the start: the first ones may come before node runs any code
    // (dropped); the half second of loading modules that follows takes one of the next.
    while (!done) {
      try {
        process.kill(brokerPid!, 'SIGTERM');
      } catch {
        break; // gone
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // 128 + 15: ended by the early handler. Without it the signals of the loading half second
    // are dropped, and serve's own handler stops the start (exit 1) or a started broker (exit 0).
    expect(await exited, stderr).toEqual({ code: 143, signal: null });
  }
});

function readFileSafely(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
