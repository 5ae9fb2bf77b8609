// Goal: on a broker with tokens, a producer id belongs to the token InitProducer issued it to:
// another write token producing under it (records path, raw batch path, Produce and
// ProduceStream) is refused with PERMISSION_DENIED and appends nothing, so the owner's batch of
// that sequence is then stored, not answered as a duplicate and dropped; the binding survives a
// broker restart; ids issued while the broker had no tokens stay any token's; the client Producer
// takes a new id once its token is renamed. Method: in-process
// brokers with a tokens file on one data directory (real LMDB), driven over real gRPC; what a
// partition holds is read back with Fetch.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ClientDuplexStream, type ServiceError, status } from '@grpc/grpc-js';
import Long from 'long';
import { afterEach, describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { Admin } from '../../src/client/admin.js';
import type { StrataClientError } from '../../src/client/errors.js';
import { Producer } from '../../src/client/producer.js';
import { TokenAuthenticator } from '../../src/server/token-auth.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { type TestBroker, removeDirectory, startTestBroker, temporaryDirectory } from '../helpers/test-server.js';

type ProduceResponse = strata.v1.ProduceResponse;

const sha256 = (token: string): string => createHash('sha256').update(token).digest('hex');
const SECRETS = { alice: 'alice-secret', bob: 'bob-secret', operator: 'operator-secret' };
const TOPIC = 'orders';

/** Alice and Bob may both write to every topic; the operator administers and reads. */
function writeTokens(file: string): void {
  const tokens = [
    { name: 'alice', sha256: sha256(SECRETS.alice), permissions: ['write'] },
    { name: 'bob', sha256: sha256(SECRETS.bob), permissions: ['write'] },
    { name: 'operator', sha256: sha256(SECRETS.operator), permissions: ['admin'] },
  ];
  writeFileSync(file, JSON.stringify({ tokens }));
}

const refusal = (producerId: number): { code: string; details: string } => ({
  code: 'PERMISSION_DENIED',
  details: `token "bob" may not produce as producer id ${producerId}: InitProducer issued that id to another token (tokens are known by name: a token renamed in the tokens file is another); call InitProducer with this token for a producer id of its own`,
});
const outcome = (error: ServiceError): { code: string | undefined; details: string } => ({ code: status[error.code], details: error.details });

/** Brokers started one after another on one data directory, each with the tokens file unless told otherwise. */
class Brokers {
  readonly dataDir = temporaryDirectory();
  private readonly tokensDirectory = temporaryDirectory('strata-tokens-');
  private readonly tokensFile = join(this.tokensDirectory, 'tokens.json');
  private broker: TestBroker | null = null;
  private clients: TestClient[] = [];

  constructor() {
    writeTokens(this.tokensFile);
  }

  /** Stops the running broker (cleanly) and starts another on the data directory; a client per token. */
  async start(options: { tokens: boolean } = { tokens: true }): Promise<Record<keyof typeof SECRETS, TestClient>> {
    await this.stop();
    const authenticator = options.tokens ? TokenAuthenticator.fromFile(this.tokensFile) : null;
    this.broker = await startTestBroker({ dataDir: this.dataDir, authenticator });
    const address = this.broker.address;
    const as = { alice: new TestClient(address, SECRETS.alice), bob: new TestClient(address, SECRETS.bob), operator: new TestClient(address, SECRETS.operator) };
    this.clients = Object.values(as);
    return as;
  }

  async stop(): Promise<void> {
    for (const client of this.clients.splice(0)) client.close();
    await this.broker?.stop();
    this.broker = null;
  }

  async dispose(): Promise<void> {
    await this.stop();
    removeDirectory(this.dataDir);
    removeDirectory(this.tokensDirectory);
  }
}

async function initProducer(client: TestClient): Promise<number> {
  return (await client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create({}))).producerId.toNumber();
}

/** An idempotent produce of `value` to partition 0 on the records path. */
function produceRecord(client: TestClient, producerId: number, baseSequence: number, value: string): Promise<ProduceResponse> {
  return client.call('log.produce', recordRequest(producerId, baseSequence, value));
}

function recordRequest(producerId: number, baseSequence: number, value: string, correlationId = 0): strata.v1.ProduceRequest {
  return v1.ProduceRequest.create({
    topic: TOPIC,
    partition: 0,
    records: [v1.Record.create({ value: Buffer.from(value) })],
    producerId: Long.fromNumber(producerId),
    producerEpoch: 0,
    baseSequence,
    correlationId: Long.fromNumber(correlationId, true),
  });
}

/** An idempotent produce of `value` to partition 0 as a raw batch. */
function produceBatch(client: TestClient, producerId: number, baseSequence: number, value: string): Promise<ProduceResponse> {
  const batch = buildBatch([{ value: Buffer.from(value) }], { producerId, producerEpoch: 0, baseSequence });
  return client.call('log.produce', v1.ProduceRequest.create({ topic: TOPIC, partition: 0, batch }));
}

/** Each appended batch of an answer as [base offset, duplicate]. */
const appended = (response: ProduceResponse): [number, boolean][] => response.batches.map((batch) => [batch.baseOffset.toNumber(), batch.duplicate]);

/** The values partition 0 holds, in offset order, as the operator reads them. */
async function values(operator: TestClient): Promise<string[]> {
  const fetched = await operator.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: TOPIC, partition: 0, offset: Long.fromNumber(0), maxBytes: 1 << 20 }));
  return fetched.records.map((record) => Buffer.from(record.value!).toString());
}

/** The answers a ProduceStream gives `requests`, ordered by correlation id. */
async function streamed(client: TestClient, requests: readonly strata.v1.ProduceRequest[]): Promise<ProduceResponse[]> {
  const call = (client.log as unknown as { produceStream(options: object): ClientDuplexStream<strata.v1.ProduceRequest, ProduceResponse> }).produceStream({ deadline: Date.now() + 20_000 });
  const responses: ProduceResponse[] = [];
  const finished = new Promise<void>((resolve, reject) => {
    call.on('data', (response: ProduceResponse) => responses.push(response));
    call.on('end', resolve);
    call.on('error', reject);
  });
  for (const request of requests) call.write(request);
  call.end();
  await finished;
  return responses.sort((a, b) => Long.fromValue(a.correlationId).compare(Long.fromValue(b.correlationId)));
}

describe('a producer id on a broker with tokens', () => {
  let brokers: Brokers;
  afterEach(async () => {
    await brokers?.dispose();
  });

  it("refuses another token's produce under it on both paths, appends nothing, and stores the owner's batch of that sequence", async () => {
    brokers = new Brokers();
    const { alice, bob, operator } = await brokers.start();
    await operator.call('admin.createTopic', v1.CreateTopicRequest.create({ name: TOPIC, partitions: 1 }));
    const producerId = await initProducer(alice);
    expect(appended(await produceRecord(alice, producerId, 0, 'alice-0'))).toEqual([[0, false]]);

    // Bob sends Alice's next sequence first, as records and as a raw batch.
    expect(outcome(await grpcError(produceRecord(bob, producerId, 1, 'bob-1')))).toEqual(refusal(producerId));
    expect(outcome(await grpcError(produceBatch(bob, producerId, 1, 'bob-1')))).toEqual(refusal(producerId));
    // Behind a batch that is not idempotent, in one request: refused for the batch of Alice's id.
    const mixed = Buffer.concat([buildBatch([{ value: Buffer.from('plain') }]), buildBatch([{ value: Buffer.from('bob-1') }], { producerId, producerEpoch: 0, baseSequence: 1 })]);
    expect(outcome(await grpcError(bob.call('log.produce', v1.ProduceRequest.create({ topic: TOPIC, partition: 0, batch: mixed }))))).toEqual(refusal(producerId));
    expect(await values(operator)).toEqual(['alice-0']);

    // Alice's batches of those sequences are new to the partition: stored, not duplicates.
    expect(appended(await produceRecord(alice, producerId, 1, 'alice-1'))).toEqual([[1, false]]);
    expect(appended(await produceBatch(alice, producerId, 2, 'alice-2'))).toEqual([[2, false]]);
    // Her retry is still a duplicate, as ever.
    expect(appended(await produceBatch(alice, producerId, 2, 'alice-2'))).toEqual([[2, true]]);
    expect(await values(operator)).toEqual(['alice-0', 'alice-1', 'alice-2']);

    // Bob's own id is his alone in turn.
    const bobsId = await initProducer(bob);
    expect(appended(await produceRecord(bob, bobsId, 0, 'bob-0'))).toEqual([[3, false]]);
    expect(outcome(await grpcError(produceRecord(alice, bobsId, 1, 'alice-as-bob')))).toMatchObject({ code: 'PERMISSION_DENIED', details: expect.stringMatching(/^token "alice" may not produce as producer id \d+: InitProducer issued that id to another token/) });
  });

  it('refuses it on a ProduceStream as an item error, keeps the stream open, and appends nothing', async () => {
    brokers = new Brokers();
    const { alice, bob, operator } = await brokers.start();
    await operator.call('admin.createTopic', v1.CreateTopicRequest.create({ name: TOPIC, partitions: 1 }));
    const alicesId = await initProducer(alice);
    const bobsId = await initProducer(bob);
    const raw = v1.ProduceRequest.create({ topic: TOPIC, partition: 0, batch: buildBatch([{ value: Buffer.from('bob-as-alice') }], { producerId: alicesId, producerEpoch: 0, baseSequence: 0 }), correlationId: Long.fromNumber(2, true) });
    const answers = await streamed(bob, [recordRequest(alicesId, 0, 'bob-as-alice', 1), raw, recordRequest(bobsId, 0, 'bob-0', 3)]);
    expect(answers.map((answer) => (answer.error ? { code: status[answer.error.code], details: answer.error.message } : appended(answer)))).toEqual([refusal(alicesId), refusal(alicesId), [[0, false]]]);

    expect(appended(await produceRecord(alice, alicesId, 0, 'alice-0'))).toEqual([[1, false]]);
    expect(await values(operator)).toEqual(['bob-0', 'alice-0']);
  });

  it('is still refused to another token after a broker restart, and the owner goes on producing', async () => {
    brokers = new Brokers();
    let { alice, bob, operator } = await brokers.start();
    await operator.call('admin.createTopic', v1.CreateTopicRequest.create({ name: TOPIC, partitions: 1 }));
    const producerId = await initProducer(alice);
    expect(appended(await produceRecord(alice, producerId, 0, 'alice-0'))).toEqual([[0, false]]);

    // The new broker knows the owner only from LMDB.
    ({ alice, bob, operator } = await brokers.start());
    expect(outcome(await grpcError(produceRecord(bob, producerId, 1, 'bob-1')))).toEqual(refusal(producerId));
    expect(outcome(await grpcError(produceBatch(bob, producerId, 1, 'bob-1')))).toEqual(refusal(producerId));
    expect(appended(await produceRecord(alice, producerId, 1, 'alice-1'))).toEqual([[1, false]]);
    expect(appended(await produceBatch(alice, producerId, 2, 'alice-2'))).toEqual([[2, false]]);
    expect(await values(operator)).toEqual(['alice-0', 'alice-1', 'alice-2']);
  });

  it("is any token's when it was issued while the broker had no tokens", async () => {
    brokers = new Brokers();
    const open = await brokers.start({ tokens: false });
    await open.operator.call('admin.createTopic', v1.CreateTopicRequest.create({ name: TOPIC, partitions: 1 }));
    const producerId = await initProducer(open.operator);

    const { alice, bob, operator } = await brokers.start();
    expect(appended(await produceRecord(alice, producerId, 0, 'alice-0'))).toEqual([[0, false]]);
    expect(appended(await produceBatch(bob, producerId, 1, 'bob-1'))).toEqual([[1, false]]);
    expect(await values(operator)).toEqual(['alice-0', 'bob-1']);
  });

  it("is another token's once its token is renamed: the client Producer's refused batch fails, and the next send goes under a new id", async () => {
    const directory = temporaryDirectory('strata-tokens-');
    const file = join(directory, 'tokens.json');
    const named = (name: string): void =>
      writeFileSync(file, JSON.stringify({ tokens: [{ name, sha256: sha256(SECRETS.alice), permissions: ['write', 'admin'] }] }));
    named('alice');
    const authenticator = TokenAuthenticator.fromFile(file);
    const broker = await startTestBroker({ authenticator });
    const producer = new Producer({ server: broker.address, token: SECRETS.alice, deliveryTimeoutMs: 10_000 });
    const admin = new Admin({ server: broker.address, token: SECRETS.alice, deadlineMs: 10_000 });
    try {
      await admin.createTopic(TOPIC, { partitions: 1 });
      await producer.send({ topic: TOPIC, partition: 0, value: Buffer.from('as alice') });
      named('alice-renamed');
      authenticator.reload();
      const refused = await producer.send({ topic: TOPIC, partition: 0, value: Buffer.from('refused') }).then(
        () => null,
        (error: unknown) => error as StrataClientError,
      );
      expect(refused?.code).toBe('PERMISSION_DENIED');
      await producer.send({ topic: TOPIC, partition: 0, value: Buffer.from('under a new id') });
      expect((await admin.describeTopic(TOPIC)).partitions[0]!.highWatermark).toBe(2);
    } finally {
      await producer.close();
      await admin.close();
      await broker.dispose();
      removeDirectory(directory);
    }
  });
});
