// Goal: generic gRPC tooling can see the broker, through the standard health service and server
// reflection; method: an in-process broker queried with clients built from the standard protos
// (grpc-health-check's service definition, @grpc/reflection's reflection.proto).
import { type Client, type ClientDuplexStream, type ClientReadableStream, type ServiceDefinition, type ServiceError, credentials, loadPackageDefinition, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import { constants as http2Constants } from 'node:http2';
import protobuf from 'protobufjs/minimal.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';
import { plateau } from '../helpers/plateau.js';
import { waitUntil } from '../helpers/wait.js';
import { PausedCall, grpcFrame } from '../helpers/paused-call.js';
import { REFLECTION_REQUEST_BYTES_MAX } from '../../src/server/reflection.js';

const { Writer } = protobuf;

type Callback<T> = (error: ServiceError | null, response: T) => void;
interface HealthClient extends Client {
  check(request: { service: string }, options: { deadline: number }, callback: Callback<{ status: string }>): void;
  watch(request: { service: string }): ClientReadableStream<{ status: string }>;
}

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
  message_response: string;
}
interface ReflectionClient extends Client {
  serverReflectionInfo(): ClientDuplexStream<Record<string, unknown>, ReflectionResponse>;
}

const HealthClientConstructor = makeGenericClientConstructor(healthService as unknown as ServiceDefinition, 'grpc.health.v1.Health');

function healthClient(address: string): HealthClient {
  return new HealthClientConstructor(address, credentials.createInsecure()) as unknown as HealthClient;
}

function check(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.check({ service }, { deadline: Date.now() + 10_000 }, (error, response) => (error ? reject(error) : resolve(response.status))),
  );
}

/** The reflection proto as @grpc/reflection ships it (its own server side uses the same files). */
const REFLECTION_PROTO_ROOT = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto');

function reflectionClient(address: string, version: 'v1' | 'v1alpha'): ReflectionClient {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [REFLECTION_PROTO_ROOT] });
  const grpcPackage = loadPackageDefinition(definition) as unknown as { grpc: { reflection: Record<string, { ServerReflection: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => ReflectionClient }> } };
  return new grpcPackage.grpc.reflection[version]!.ServerReflection(address, credentials.createInsecure());
}

/** Sends one reflection request on a fresh stream and returns the one answer. */
function reflect(client: ReflectionClient, request: Record<string, unknown>): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.serverReflectionInfo();
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error('no reflection answer within 10 s'));
    }, 10_000);
    stream.once('data', (response: ReflectionResponse) => {
      clearTimeout(timer);
      resolve(response);
      stream.end();
    });
    stream.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    stream.write(request);
  });
}

describe('health and reflection', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startTestBroker({ shutdownTimeoutMs: 2_000 });
  });
  afterAll(async () => {
    await broker.dispose(); // idempotent: the shutdown test may have stopped it already
  });

  describe('grpc.health.v1.Health/Check', () => {
    let client: HealthClient;
    beforeAll(() => {
      client = healthClient(broker.address);
    });
    afterAll(() => client.close());

    it.each(['', 'strata.v1.Log', 'strata.v1.Admin'])('answers SERVING for %j', async (service) => {
      expect(await check(client, service)).toBe('SERVING');
    });

    it('answers NOT_FOUND for a service the server does not have, quoting a long name cut short', async () => {
      const failure = (service: string): Promise<ServiceError> =>
        check(client, service).then(
          () => {
            throw new Error('expected NOT_FOUND');
          },
          (error: ServiceError) => error,
        );
      const error = await failure('strata.v1.Nope');
      expect(error.code).toBe(status.NOT_FOUND);
      expect(error.details).toMatch(/^no health status for service "strata\.v1\.Nope": this server has strata\.v1\.Log, strata\.v1\.Admin, strata\.v1\.Groups and ""/);
      const long = await failure('x'.repeat(100_000));
      expect(long.code).toBe(status.NOT_FOUND);
      expect(long.details.length).toBeLessThan(1_000);
      // Over the 1 MiB that every request but a produce may have: refused as the others are.
      const huge = await failure('x'.repeat(2 * 1024 * 1024));
      expect(huge.code).toBe(status.RESOURCE_EXHAUSTED);
    });
  });

  describe('grpc.health.v1.Health/Watch', () => {
    it('tells a watcher of an unknown service SERVICE_UNKNOWN and keeps the stream open, remembering nothing of the name once it goes', async () => {
      const client = healthClient(broker.address);
      try {
        const watches = (): number => broker.server.healthWatchCount;
        const before = watches();
        for (let index = 0; index < 20; index++) {
          const watch = client.watch({ service: `random-${index}` });
          watch.on('error', () => undefined); // CANCELLED below
          const [first] = (await once(watch, 'data')) as [{ status: string }];
          expect(first.status).toBe('SERVICE_UNKNOWN');
          watch.cancel();
        }
        await vi.waitFor(() => expect(watches()).toBe(before), { timeout: 10_000, interval: 20 });
      } finally {
        client.close();
      }
    });
  });

  describe.each(['v1', 'v1alpha'] as const)('grpc.reflection.%s.ServerReflection', (version) => {
    let client: ReflectionClient;
    beforeAll(() => {
      client = reflectionClient(broker.address, version);
    });
    afterAll(() => client.close());

    it("lists Strata's services and the health service", async () => {
      const response = await reflect(client, { list_services: '*' });
      expect(response.error_response).toBeFalsy();
      const names = response.list_services_response!.service.map((service) => service.name);
      expect(names).toEqual(expect.arrayContaining(['strata.v1.Log', 'strata.v1.Admin', 'strata.v1.Groups', 'grpc.health.v1.Health']));
    });

    it('serves the file descriptor that defines grpc.health.v1.Health, so a tool can call Check without the proto', async () => {
      const response = await reflect(client, { file_containing_symbol: 'grpc.health.v1.Health' });
      expect(response.error_response).toBeFalsy();
      const files = response.file_descriptor_response!.file_descriptor_proto.map((bytes) => Buffer.from(bytes).toString('latin1'));
      const health = files.find((file) => file.includes('grpc.health.v1') && file.includes('Health'));
      expect(health).toBeDefined();
      for (const method of ['Check', 'Watch', 'List', 'HealthCheckRequest']) expect(health).toContain(method);
    });

    it('serves the file descriptor that defines strata.v1.Log', async () => {
      const response = await reflect(client, { file_containing_symbol: 'strata.v1.Log' });
      expect(response.error_response).toBeFalsy();
      const files = response.file_descriptor_response!.file_descriptor_proto.map((bytes) => Buffer.from(bytes).toString('latin1'));
      // @grpc/reflection names the synthesized file after the package, not after log.proto.
      const log = files.find((file) => file.includes('strata.v1') && file.includes('Log'));
      expect(log).toBeDefined();
      for (const method of ['Produce', 'ProduceStream', 'Fetch', 'Subscribe', 'ListOffsets', 'InitProducer']) expect(log).toContain(method);
    });

    it('answers an unknown symbol with a NOT_FOUND error response', async () => {
      const response = await reflect(client, { file_containing_symbol: 'strata.v1.NoSuchService' });
      expect(response.error_response?.error_code).toBe(status.NOT_FOUND);
    });

    it('refuses a request over 64 KiB with RESOURCE_EXHAUSTED, and answers the next stream', async () => {
      const error = await reflect(client, { file_containing_symbol: 'x'.repeat(64 * 1024) }).catch((caught: ServiceError) => caught);
      expect(error).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
      expect((error as ServiceError).details).toMatch(/^the request to grpc\.reflection\.v1(alpha)?\.ServerReflection\/ServerReflectionInfo is \d+ bytes, over the limit of 65536 bytes for this method/);
      expect((await reflect(client, { list_services: '*' })).error_response).toBeFalsy();
    });
  });

  // Last: it stops the broker.
  describe('shutdown', () => {
    it('reports NOT_SERVING to watchers as soon as shutdown begins, and ends watches and reflection streams', async () => {
      const client = healthClient(broker.address);
      try {
        const watch = client.watch({ service: '' });
        const statuses: string[] = [];
        const seen = (wanted: string): Promise<void> =>
          new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no ${wanted} within 10 s; saw ${statuses.join(', ')}`)), 10_000);
            const onData = (message: { status: string }): void => {
              statuses.push(message.status);
              if (message.status === wanted) {
                clearTimeout(timer);
                watch.off('data', onData);
                resolve();
              }
            };
            watch.on('data', onData);
          });
        await seen('SERVING');
        // A reflection stream a tool keeps open after its answer.
        const reflecting = reflectionClient(broker.address, 'v1');
        const kept = reflecting.serverReflectionInfo();
        const firstAnswer = new Promise((resolve) => kept.once('data', resolve));
        const keptEnded = new Promise<ServiceError>((resolve) => kept.once('error', resolve));
        kept.write({ list_services: '' });
        await firstAnswer;
        const notServing = seen('NOT_SERVING');
        const ended = new Promise<ServiceError>((resolve) => watch.once('error', resolve));
        const stopping = broker.stop();
        await notServing;
        expect(statuses).toEqual(['SERVING', 'NOT_SERVING']);
        // Then the broker ends the watch itself, so the graceful shutdown need not wait for it.
        expect(await ended).toMatchObject({ code: status.UNAVAILABLE, details: 'the broker is shutting down' });
        // And the reflection stream: it no longer holds the stop up until the timeout.
        expect(await keptEnded).toMatchObject({ code: status.UNAVAILABLE, details: 'the broker is shutting down' });
        reflecting.close();
        expect(await stopping).toEqual({ forced: false });
      } finally {
        client.close();
      }
    });
  });
});

describe('a reflection client that sends requests without reading the answers', () => {
  it('is read from no further than its unread answers allow, and does not hold up a graceful stop', async () => {
    const broker = await startTestBroker({ shutdownTimeoutMs: 20_000 });
    const flooder = new RawReflection(broker.address);
    try {
      // Each answer quotes its request: 60 MiB of requests would be over 120 MiB of answers
      // waiting in the broker for a client that reads none of them.
      const requests = 1024;
      flooder.send(requests, 60 * 1024).catch(() => undefined); // ends unfinished: the stream is reset
      const taken = await plateau(() => flooder.requestsSent, 500);
      // What the stream's 8 MiB window holds, what it buffers, and what was answered before the
      // broker stopped reading: a fraction of what the client had to send.
      expect(taken).toBeLessThan(requests / 2);
      expect(await broker.stop()).toEqual({ forced: false });
      expect(await flooder.closed).toBe(http2Constants.NGHTTP2_REFUSED_STREAM);
    } finally {
      flooder.close();
      await broker.dispose();
    }
  });
});

describe('a reflection request refused as too large', () => {
  it('ends its stream: the requests that came with it are not answered', async () => {
    const broker = await startTestBroker();
    const call = new RawReflection(broker.address);
    try {
      call.read();
      // One write: the refused request and three good ones, read by the broker in one go.
      const good = grpcFrame(symbolRequest(10));
      await call.writeFrames(Buffer.concat([grpcFrame(symbolRequest(REFLECTION_REQUEST_BYTES_MAX)), good, good, good]));
      await waitUntil(() => call.grpcStatus !== null, "the stream's status");
      expect(call.grpcStatus).toBe(status.RESOURCE_EXHAUSTED);
      expect(call.answers).toEqual([]);
    } finally {
      call.close();
      await broker.dispose();
    }
  });
});

describe('reflection streams open at once', () => {
  it('are at most 16: another is refused with RESOURCE_EXHAUSTED until one ends', async () => {
    const broker = await startTestBroker();
    const client = reflectionClient(broker.address, 'v1');
    const kept: ClientDuplexStream<Record<string, unknown>, ReflectionResponse>[] = [];
    try {
      for (let index = 0; index < 16; index++) {
        const stream = client.serverReflectionInfo();
        stream.on('error', () => undefined);
        kept.push(stream);
        const answered = once(stream, 'data');
        stream.write({ list_services: '*' });
        await answered; // open on the broker, not only on the client
      }
      const refused = await reflect(client, { list_services: '*' }).catch((caught: ServiceError) => caught);
      expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: '16 reflection streams are open already; end one (each gRPC tool command opens one) and try again' });
      const ended = kept.pop()!;
      const closed = once(ended, 'status');
      ended.end();
      await closed;
      await vi.waitFor(async () => expect((await reflect(client, { list_services: '*' })).error_response).toBeFalsy());
    } finally {
      for (const stream of kept) stream.cancel();
      client.close();
      await broker.dispose();
    }
  });
});

/**
 * A ServerReflectionInfo call whose answers are not read until `read()` (grpc-js's client
 * would read them into its own buffer), with its requests written one at a time as HTTP/2 flow
 * control lets them out.
 */
class RawReflection extends PausedCall {
  requestsSent = 0;

  constructor(address: string) {
    super(address, '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo');
  }

  readonly answers: Buffer[] = [];

  /** Starts reading: the answers' bytes go to `answers`, and the trailers set `grpcStatus`. */
  read(): void {
    this.readMessages((message) => this.answers.push(Buffer.from(message)));
  }

  /** Sends `count` requests for a symbol named by `nameBytes` bytes, each once the one before is out. */
  async send(count: number, nameBytes: number): Promise<void> {
    const message = symbolRequest(nameBytes);
    for (let index = 0; index < count; index++) {
      await this.write(message);
      this.requestsSent++;
    }
  }
}

/** A ServerReflectionRequest for a symbol named by `nameBytes` bytes (field 4, file_containing_symbol). */
function symbolRequest(nameBytes: number): Uint8Array {
  return Writer.create().uint32((4 << 3) | 2).string('x'.repeat(nameBytes)).finish();
}
