/**
 * Broker benchmark: produce and catch-up read throughput of a real Strata broker over gRPC,
 * against a no-op gRPC server with the same message shapes started in the same run (the
 * transport ceiling of this machine).
 *
 *   node dist/bench/broker-bench.js [--quick] [--records N] [--record-size B] [--batch-bytes B]
 *                                   [--in-flight N] [--json FILE] [--profile-server DIR]
 *
 * --profile-server DIR writes a V8 CPU profile of the broker process into DIR (open it in
 * Chrome DevTools) to see where its time goes.
 *
 * The broker and the no-op server each run in their own process (`strata serve` from dist/),
 * the client in this one, so on a 2-core machine client and server each get a core.
 *
 * Cases:
 *   baseline   ProduceStream of raw batches to the no-op server
 *   raw        ProduceStream of raw RecordBatch v2 batches to Strata, 1 partition, acks=ALL,
 *              flush=always (every acknowledgement follows an fdatasync)
 *   records    Produce of plain protobuf records (the easy path), acks=ALL, flush=always
 *   fetch      catch-up read of everything the raw case wrote, raw batches via Fetch
 *   subscribe  the same via Subscribe (server push)
 *   decoded    the same via Subscribe with decoded records (raw = false: what a client in another
 *              language reads), decoded by protobufjs in this process
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { randomBytes } from 'node:crypto';
import { type Client, type ClientDuplexStream, type ServiceError, credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import Long from 'long';
import { startLocalBroker } from '../src/bench/local-broker.js';
import { startNoopServerProcess } from '../src/bench/noop-server.js';
import { StartedServers } from '../src/bench/started-servers.js';
import { exitWithFailureLine } from './failure-line.js';
import { strata } from '../src/generated/strata.js';
import { logServiceDefinition, adminServiceDefinition } from '../src/server/service-definitions.js';
import { forEachBatch, readRecordCount } from '../src/storage/record-batch.js';
import { buildBatch } from '../src/storage/record-batch-builder.js';

const v1 = strata.v1;

interface Options {
  records: number;
  recordSize: number;
  batchBytes: number;
  inFlight: number;
  json: string | null;
  profileServer: string | null;
  flush: 'always' | 'interval';
  acks: 'all' | 'leader';
}

function parseArgs(argv: string[]): Options {
  const options: Options = { records: 5_000_000, recordSize: 100, batchBytes: 64 * 1024, inFlight: 8, json: null, profileServer: null, flush: 'always', acks: 'all' };
  for (let index = 0; index < argv.length; index++) {
    const flag = argv[index]!;
    const value = (): string => {
      const next = argv[++index];
      if (next === undefined) throw new Error(`${flag} needs a value`);
      return next;
    };
    const positiveInteger = (): number => {
      const text = value();
      const number = Number(text);
      if (!Number.isSafeInteger(number) || number <= 0) throw new Error(`${flag} must be a positive integer, got ${text}`);
      return number;
    };
    const oneOf = <T extends string>(choices: readonly T[]): T => {
      const text = value();
      if (!(choices as readonly string[]).includes(text)) throw new Error(`${flag} must be one of ${choices.join(', ')}, got ${text}`);
      return text as T;
    };
    if (flag === '--quick') options.records = 500_000;
    else if (flag === '--records') options.records = positiveInteger();
    else if (flag === '--record-size') options.recordSize = positiveInteger();
    else if (flag === '--batch-bytes') options.batchBytes = positiveInteger();
    else if (flag === '--in-flight') options.inFlight = positiveInteger();
    else if (flag === '--json') options.json = value();
    else if (flag === '--profile-server') options.profileServer = value();
    else if (flag === '--flush') options.flush = oneOf(['always', 'interval'] as const);
    else if (flag === '--acks') options.acks = oneOf(['all', 'leader'] as const);
    else throw new Error(`unknown option ${flag}`);
  }
  return options;
}

// ---------------------------------------------------------------------------------------------

const CHANNEL_OPTIONS = { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1, 'grpc-node.flow_control_window': 8 * 1024 * 1024 };

function logClient(address: string): Client {
  const LogClient = makeGenericClientConstructor(logServiceDefinition, 'strata.v1.Log');
  return new LogClient(address, credentials.createInsecure(), CHANNEL_OPTIONS);
}

function unary<Response>(client: Client, method: string, request: unknown): Promise<Response> {
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, (r: unknown, cb: (e: ServiceError | null, v: Response) => void) => void>)[method]!.call(client, request, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

interface LoadResult {
  records: number;
  bytes: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** Sends `requests` over one ProduceStream keeping `inFlight` outstanding. */
async function streamLoad(client: Client, requests: readonly strata.v1.ProduceRequest[], total: number, recordsPerRequest: number, inFlight: number): Promise<LoadResult> {
  const stream = (client as unknown as { produceStream(): ClientDuplexStream<strata.v1.ProduceRequest, strata.v1.ProduceResponse> }).produceStream();
  const sentAt = new Float64Array(total);
  const latencies = new Float64Array(total);
  let sent = 0;
  let done = 0;
  let bytes = 0;
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const send = (): void => {
      while (sent < total && sent - done < inFlight) {
        // A fresh message per send: grpc-js may serialise it after write() returns.
        const template = requests[sent % requests.length]!;
        const request = v1.ProduceRequest.create({ topic: template.topic, partition: template.partition, batch: template.batch, records: template.records, acks: template.acks, correlationId: Long.fromNumber(sent) });
        sentAt[sent] = performance.now();
        bytes += request.batch?.length ?? 0;
        sent++;
        stream.write(request);
      }
    };
    stream.on('data', (response: strata.v1.ProduceResponse) => {
      if (response.error) return reject(new Error(`produce failed: ${response.error.message}`));
      const id = response.correlationId.toNumber();
      latencies[id] = performance.now() - sentAt[id]!;
      done++;
      if (done === total) resolve();
      else send();
    });
    stream.on('error', reject);
    send();
  });
  const seconds = (performance.now() - start) / 1000;
  stream.end();
  const sorted = latencies.sort();
  return {
    records: total * recordsPerRequest,
    bytes,
    seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    p999Ms: percentile(sorted, 0.999),
    maxMs: sorted[sorted.length - 1]!,
  };
}

function line(name: string, result: LoadResult, recordSize: number, note = ''): string {
  const rate = result.records / result.seconds;
  return `${name.padEnd(10)} ${Math.round(rate).toLocaleString('en-US').padStart(11)} rec/s ${((rate * recordSize) / 1e6).toFixed(1).padStart(7)} MB/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  p99.9 ${result.p999Ms.toFixed(2)} ms  max ${result.maxMs.toFixed(1)} ms ${note}`;
}

async function main(): Promise<void> {
  let options: Options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`broker-bench: ${(error as Error).message}`); // one line, no stack: a usage error
    process.exit(2);
  }
  const figures: Record<string, unknown> = { parameters: options, machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version } };
  // Every server started is stopped (the broker's data directory removed with it), however the
  // run ends (the broker failing to start, Ctrl-C and SIGTERM included), as in `strata bench --local`.
  const servers = new StartedServers();
  try {
    await servers.run(async () => {
      const noop = await servers.track(() => startNoopServerProcess());
      const broker = (await servers.track(() => startLocalBroker({ profileDirectory: options.profileServer }))).server;
      const recordsPerBatch = Math.max(1, Math.floor(options.batchBytes / (options.recordSize + 10)));
      const pool = Array.from({ length: 16 }, () =>
        buildBatch(Array.from({ length: recordsPerBatch }, () => ({ value: randomBytes(options.recordSize) }))),
      );
      const batchCount = Math.ceil(options.records / recordsPerBatch);
      const acks = options.acks === 'leader' ? v1.Acks.ACKS_LEADER : v1.Acks.ACKS_ALL;
      const rawRequests = pool.map((batch) => v1.ProduceRequest.create({ topic: 'bench', partition: 0, batch, acks }));
      console.log(`machine: ${cpus()[0]?.model} x${cpus().length}, node ${process.version}`);
      console.log(`records ${options.records} x ${options.recordSize} B, ${recordsPerBatch} records per ${pool[0]!.length} B batch, ${options.inFlight} in flight\n`);

      // Baseline: the no-op server.
      const noopClient = logClient(noop.address);
      await streamLoad(noopClient, rawRequests, Math.min(200, batchCount), recordsPerBatch, options.inFlight); // warm-up
      const baseline = await streamLoad(noopClient, rawRequests, batchCount, recordsPerBatch, options.inFlight);
      console.log(line('baseline', baseline, options.recordSize, '(no-op gRPC server)'));
      noopClient.close();

      // Strata: raw batches.
      const AdminClient = makeGenericClientConstructor(adminServiceDefinition, 'strata.v1.Admin');
      const admin = new AdminClient(broker.address, credentials.createInsecure());
      await unary(admin, 'createTopic', v1.CreateTopicRequest.create({ name: 'bench', partitions: 1, configs: { flush: options.flush } }));
      await unary(admin, 'createTopic', v1.CreateTopicRequest.create({ name: 'bench-records', partitions: 1, configs: { flush: options.flush } }));
      await unary(admin, 'createTopic', v1.CreateTopicRequest.create({ name: 'bench-warmup', partitions: 1, configs: { flush: options.flush } }));
      const client = logClient(broker.address);
      // Warmed up as the no-op server was, on a topic of its own so the catch-up reads below
      // read the measured batches only.
      const warmupRequests = pool.map((batch) => v1.ProduceRequest.create({ topic: 'bench-warmup', partition: 0, batch, acks }));
      await streamLoad(client, warmupRequests, Math.min(200, batchCount), recordsPerBatch, options.inFlight);
      broker.resetPeaks();
      const raw = await streamLoad(client, rawRequests, batchCount, recordsPerBatch, options.inFlight);
      const rss = broker.memory().rssPeakPhaseMiB ?? Number.NaN;
      console.log(line('raw', raw, options.recordSize, `(acks=${options.acks}, flush=${options.flush}; ratio to baseline ${(raw.records / raw.seconds / (baseline.records / baseline.seconds)).toFixed(2)}; server peak RSS ${rss.toFixed(0)} MiB)`));

      // Strata: plain records.
      const recordsPerRequest = 500;
      const recordRequests = Array.from({ length: 8 }, () =>
        v1.ProduceRequest.create({
          topic: 'bench-records',
          partition: 0,
          records: Array.from({ length: recordsPerRequest }, () => v1.Record.create({ value: randomBytes(options.recordSize) })),
        }),
      );
      const recordsTotal = Math.ceil(Math.min(options.records, 2_000_000) / recordsPerRequest);
      const records = await streamLoad(client, recordRequests, recordsTotal, recordsPerRequest, options.inFlight);
      console.log(line('records', records, options.recordSize, '(plain protobuf records, acks=all)'));

      // Catch-up read via Fetch.
      const fetchStart = performance.now();
      let offset = 0;
      let fetched = 0;
      const end = raw.records;
      while (offset < end) {
        const response = await unary<strata.v1.FetchResponse>(client, 'fetch', v1.FetchRequest.create({ topic: 'bench', partition: 0, offset: Long.fromNumber(offset), maxBytes: 4 * 1024 * 1024, raw: true }));
        const batches = Buffer.from(response.batches!);
        forEachBatch(batches, (position) => (fetched += readRecordCount(batches, position)));
        offset = response.nextOffset.toNumber();
      }
      const fetchSeconds = (performance.now() - fetchStart) / 1000;
      console.log(`fetch      ${Math.round(fetched / fetchSeconds).toLocaleString('en-US').padStart(11)} rec/s ${((fetched * options.recordSize) / fetchSeconds / 1e6).toFixed(1).padStart(7)} MB/s  (raw batches, 4 MiB per Fetch)`);

      // Catch-up reads via Subscribe: raw batches, then decoded records (what other languages read).
      const subscribed = await subscribeAll(client, true, end);
      console.log(`subscribe  ${Math.round(subscribed.recordsPerSecond).toLocaleString('en-US').padStart(11)} rec/s ${((subscribed.recordsPerSecond * options.recordSize) / 1e6).toFixed(1).padStart(7)} MB/s  (server push, raw batches)`);
      const decoded = await subscribeAll(client, false, end);
      console.log(`decoded    ${Math.round(decoded.recordsPerSecond).toLocaleString('en-US').padStart(11)} rec/s ${((decoded.recordsPerSecond * options.recordSize) / 1e6).toFixed(1).padStart(7)} MB/s  (server push, records decoded by protobufjs here)`);
      client.close();
      admin.close();
      Object.assign(figures, {
        baseline,
        raw: { ...raw, serverPeakRssMiB: rss, ratioToBaseline: raw.records / raw.seconds / (baseline.records / baseline.seconds) },
        records,
        fetch: { records: fetched, seconds: fetchSeconds, recordsPerSecond: fetched / fetchSeconds },
        subscribe: subscribed,
        subscribeDecoded: decoded,
      });
      if (options.json !== null) writeFileSync(options.json, JSON.stringify(figures, null, 2));
    });
  } finally {
    await servers.stopAll();
  }
}

/** Reads the partition from earliest to `end` with one Subscribe stream. */
async function subscribeAll(client: Client, raw: boolean, end: number): Promise<{ records: number; seconds: number; recordsPerSecond: number }> {
  const start = performance.now();
  let records = 0;
  await new Promise<void>((resolve, reject) => {
    const call = (client as unknown as { subscribe(r: unknown): NodeJS.EventEmitter & { cancel(): void } }).subscribe(
      v1.SubscribeRequest.create({ topic: 'bench', partitions: [0], start: v1.StartPosition.create({ earliest: true }), raw, maxBytes: 4 * 1024 * 1024 }),
    );
    call.on('data', (message: strata.v1.SubscribeResponse) => {
      if (raw) {
        const batches = Buffer.from(message.batches!);
        forEachBatch(batches, (position) => (records += readRecordCount(batches, position)));
      } else {
        records += message.records.length;
      }
      if (message.nextOffset.toNumber() >= end) {
        call.cancel();
        resolve();
      }
    });
    call.on('error', (error: ServiceError) => (error.code === 1 ? resolve() : reject(error)));
  });
  const seconds = (performance.now() - start) / 1000;
  return { records, seconds, recordsPerSecond: records / seconds };
}

main().catch(exitWithFailureLine('broker-bench'));
