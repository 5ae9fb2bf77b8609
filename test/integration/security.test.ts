// Goal: a broker started with TLS and tokens serves only clients that trust its certificate and
// carry a token whose permission covers the call: producers with a write token, consumers in a
// group with a read token, topic administration with an admin token; every refusal is the
// documented status with a message a person can act on, counted in the metrics, while probes
// and the health service need no token; `strata bench` runs against such a broker; SIGHUP reads
// the tokens file and renewed TLS files again, and a broker with neither serves on; method:
// real brokers in this process or spawned, with the test CAs' certificates, the client library
// and the compiled CLI over real gRPC.
import { X509Certificate, createHash } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { basename, join } from 'node:path';
import { type Client, Metadata, type ServiceDefinition, type ServiceError, credentials, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { StrataClientError } from '../../src/client/errors.js';
import { Producer } from '../../src/client/producer.js';
import { Consumer } from '../../src/client/consumer.js';
import type { GroupErrorEvent } from '../../src/client/group-member.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { ServerTls } from '../../src/server/tls-material.js';
import { TokenAuthenticator } from '../../src/server/token-auth.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { groupsServiceDefinition, logServiceDefinition } from '../../src/server/service-definitions.js';
import { v1 } from '../helpers/grpc-client.js';
import { runCli } from '../helpers/cli.js';
import { waitUntil } from '../helpers/wait.js';
import { type BrokerProcess, type TestBroker, removeDirectory, spawnBroker, startTestBroker, temporaryDirectory, testSettings } from '../helpers/test-server.js';
import { runBroker } from '../../src/server/run-broker.js';
import { pino } from 'pino';
import Long from 'long';

const FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures', 'tls');
const fixture = (name: string): string => join(FIXTURES, name);
const CA = readFileSync(fixture('ca.pem'));
const sha256 = (token: string): string => createHash('sha256').update(token).digest('hex');
const TOKENS = { reader: 'reader-token-1', writer: 'writer-token-2', operator: 'operator-token-3' };

function tlsMaterial(clientCertificates: boolean): ServerTls | null {
  return ServerTls.fromFiles({ certFile: fixture('server.pem'), keyFile: fixture('server-key.pem'), clientCaFile: clientCertificates ? fixture('ca.pem') : '' }, Date.now());
}

/** A file beside a spawned broker's data directory (not in it: that is the broker's). */
function besideDataDir(dataDir: string, name: string): string {
  return join(dataDir, '..', `${basename(dataDir)}-${name}`);
}

/** Stops a spawned broker, removes its data directory and `files`; resolves with how it exited. */
async function stopSpawned(broker: BrokerProcess, dataDir: string, files: readonly string[] = []): Promise<Awaited<BrokerProcess['exited']>> {
  broker.child.kill('SIGTERM');
  const exit = await broker.exited;
  for (const file of files) rmSync(file, { force: true });
  removeDirectory(dataDir);
  return exit;
}

async function refusal(promise: Promise<unknown>): Promise<StrataClientError> {
  const error = await promise.then(
    () => null,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(StrataClientError);
  return error as StrataClientError;
}

describe('TLS with tokens', () => {
  let broker: TestBroker;
  const admins: Admin[] = [];
  const admin = (token: string | undefined, tls = true): Admin => {
    const made = new Admin({ server: broker.address.replace('127.0.0.1', 'localhost'), deadlineMs: 10_000, ...(token !== undefined ? { token } : {}), ...(tls ? { tls: { ca: CA } } : {}) });
    admins.push(made);
    return made;
  };
  const cli = (args: string[], env: Record<string, string> = {}) => runCli([...args, '--server', broker.address, '--tls-ca-file', fixture('ca.pem')], { env });

  beforeAll(async () => {
    broker = await startTestBroker({
      tls: tlsMaterial(false),
      authenticator: new TokenAuthenticator([
        { name: 'billing-reader', sha256: sha256(TOKENS.reader), permissions: ['read'] },
        { name: 'orders-writer', sha256: sha256(TOKENS.writer), permissions: ['write'] },
        { name: 'operator', sha256: sha256(TOKENS.operator), permissions: ['admin'] },
      ]),
    });
  });
  afterAll(async () => {
    for (const made of admins) await made.close();
    await broker?.dispose();
  });

  it('serves each token the calls its permission covers, end to end through the CLI', async () => {
    expect((await cli(['topics', 'create', 'secure', '--partitions', '2'], { STRATA_TOKEN: TOKENS.operator })).stdout).toBe('created topic "secure" with 2 partitions\n');
    const produced = await cli(['produce', 'secure', 'a', 'b', 'c', '--key', 'k'], { STRATA_TOKEN: TOKENS.writer });
    expect(produced.code, produced.stderr).toBe(0);
    const consumed = await cli(['consume', 'secure', '--group', 'billing', '--count', '3'], { STRATA_TOKEN: TOKENS.reader });
    expect(consumed.code, consumed.stderr).toBe(0);
    expect(consumed.stdout).toBe('a\nb\nc\n');
    const described = await cli(['groups', 'describe', 'billing'], { STRATA_TOKEN: TOKENS.reader });
    expect(described.stdout).toMatch(/^total lag +0$/m);
  });

  it('refuses a call without a token, or with one it does not know, with UNAUTHENTICATED', async () => {
    for (const token of [undefined, 'not-a-token']) {
      const error = await refusal(admin(token).listTopics());
      expect({ code: error.code, fromBroker: error.fromBroker }).toEqual({ code: 'UNAUTHENTICATED', fromBroker: true });
    }
    const missing = await cli(['topics', 'list']);
    expect({ code: missing.code, stderr: missing.stderr }).toEqual({ code: 1, stderr: 'strata: this broker needs a token: send it as "authorization: Bearer <token>" metadata (the strata CLI reads STRATA_TOKEN)\n' });
  });

  it('refuses a call its token has no permission for with PERMISSION_DENIED, naming the token and what is needed, and changes nothing', async () => {
    const created = await refusal(admin(TOKENS.writer).createTopic('not-made'));
    expect({ code: created.code, message: created.message }).toEqual({ code: 'PERMISSION_DENIED', message: 'token "orders-writer" may not call Admin/CreateTopic: that needs the admin permission, and it has write' });
    expect((await admin(TOKENS.operator).listTopics()).map((topic) => topic.name)).not.toContain('not-made');
    const producer = new Producer({ server: broker.address.replace('127.0.0.1', 'localhost'), tls: { ca: CA }, token: TOKENS.reader, deliveryTimeoutMs: 10_000 });
    try {
      const sent = await refusal(producer.send({ topic: 'secure', partition: 0, value: Buffer.from('x') }));
      expect(sent.code).toBe('PERMISSION_DENIED');
      expect(sent.message).toMatch(/token "billing-reader" may not call Log\/(InitProducer|Produce|ProduceStream): that needs the write or admin permission, and it has read/);
    } finally {
      await producer.close().catch(() => undefined);
    }
    const reset = await cli(['groups', 'reset-offsets', 'billing', '--topic', 'secure', '--to', 'earliest'], { STRATA_TOKEN: TOKENS.reader });
    expect({ code: reset.code, stderr: reset.stderr }).toEqual({ code: 1, stderr: 'strata: token "billing-reader" may not call Groups/ResetOffsets: that needs the admin permission, and it has read\n' });
  });

  it('counts refusals in strata_requests_total by method and code', async () => {
    const counts = async (): Promise<number[]> => {
      const metrics = await (await fetch(`http://${broker.metricsAddress}/metrics`)).text();
      return ['method="ListTopics",code="UNAUTHENTICATED"', 'method="CreateTopic",code="PERMISSION_DENIED"'].map((labels) => Number(metrics.split('\n').find((line) => line.startsWith(`strata_requests_total{${labels}} `))?.split(' ')[1] ?? 0));
    };
    const before = await counts();
    await refusal(admin(undefined).listTopics());
    await refusal(admin(TOKENS.writer).createTopic('not-made-either'));
    expect(await counts()).toEqual([before[0]! + 1, before[1]! + 1]);
  });

  it('is benchmarked by strata bench given a token and the CA: produce, and e2e read over Subscribe', async () => {
    const json = join(temporaryDirectory(), 'figures.json');
    try {
      const produced = await cli(['bench', 'produce', '--topic', 'bench-secure', '--records', '2000', '--json', json, '--token', TOKENS.operator]);
      expect(produced.code, produced.stderr).toBe(0);
      const written = readFileSync(json, 'utf8');
      expect((JSON.parse(written) as { results: { records: number }[] }).results.map((row) => row.records)).toEqual([2000]);
      // The command line in the report leaves the token out.
      expect(written).not.toContain(TOKENS.operator);
      expect((JSON.parse(written) as { command: string }).command).toContain('--token ***');
      const e2e = await cli(['bench', 'e2e', '--topic', 'bench-secure', '--duration', '1', '--rate', '200', '--warmup-seconds', '0', '--reader', 'subscribe', '--json', json, `--token=${TOKENS.operator}`]);
      expect(e2e.code, e2e.stderr).toBe(0);
      const e2eReport = JSON.parse(readFileSync(json, 'utf8')) as { command: string; results: { records: number; lost: number }[] };
      expect(e2eReport.results).toMatchObject([{ records: 200, lost: 0 }]);
      expect(e2eReport.command).toContain('--token=***');
      expect(e2eReport.command).not.toContain(TOKENS.operator);
      // A token given before the command is left out as well.
      const before = await runCli(['--token', TOKENS.operator, 'bench', 'produce', '--topic', 'bench-secure', '--records', '100', '--json', json, '--server', broker.address, '--tls-ca-file', fixture('ca.pem')]);
      expect(before.code, before.stderr).toBe(0);
      expect(readFileSync(json, 'utf8')).not.toContain(TOKENS.operator);
    } finally {
      removeDirectory(join(json, '..'));
    }
    const refused = await cli(['bench', 'produce', '--topic', 'bench-secure', '--records', '10']);
    expect([refused.code, refused.stderr]).toEqual([1, 'strata: this broker needs a token: send it as "authorization: Bearer <token>" metadata (the strata CLI reads STRATA_TOKEN)\n']);
    // The no-op server of a baseline is plaintext: the ratio would count TLS.
    const baseline = await cli(['bench', 'baseline', '--records', '10'], { STRATA_TOKEN: TOKENS.operator });
    expect([baseline.code, baseline.stderr]).toEqual([2, 'strata: baseline compares with a plaintext no-op server, so against a broker serving TLS its ratio would count TLS too: run produce, consume or e2e against it instead\n']);
  });

  it('answers health checks without a token, and refuses plaintext clients', async () => {
    type HealthClient = Client & { check(request: { service: string }, options: { deadline: number }, callback: (error: ServiceError | null, response: { status: string }) => void): void };
    const Health = makeGenericClientConstructor(healthService as unknown as ServiceDefinition, 'grpc.health.v1.Health');
    const health = new Health(broker.address.replace('127.0.0.1', 'localhost'), credentials.createSsl(CA)) as unknown as HealthClient;
    try {
      const answer = await new Promise<string>((resolve, reject) => health.check({ service: '' }, { deadline: Date.now() + 10_000 }, (error, response) => (error ? reject(error) : resolve(response.status))));
      expect(answer).toBe('SERVING');
    } finally {
      health.close();
    }
    const plaintext = await refusal(admin(TOKENS.operator, false).listTopics());
    expect(plaintext.code).toBe('UNAVAILABLE');
    const cliPlaintext = await runCli(['topics', 'list', '--server', broker.address], { env: { STRATA_TOKEN: TOKENS.operator } });
    expect(cliPlaintext.code).toBe(1);
    expect(cliPlaintext.stderr).toMatch(/^strata: cannot reach the broker at 127\.0\.0\.1:\d+ \(.*\); is it running\? Set --server or STRATA_SERVER; if the broker serves TLS, add --tls or --tls-ca-file\n$/);
    const untrusted = await runCli(['topics', 'list', '--server', broker.address, '--tls'], { env: { STRATA_TOKEN: TOKENS.operator } });
    expect(untrusted.stderr).toMatch(/; its certificate is not trusted, or does not name this address: give --tls-ca-file with the CA that signed it, and a --server the certificate names\n$/);
  });

  it('refuses a certificate that does not name the address asked for', async () => {
    const misnamed = new Admin({ server: broker.address, deadlineMs: 10_000, tls: { ca: CA }, token: TOKENS.operator, channelOptions: { 'grpc.ssl_target_name_override': 'broker.example' } });
    try {
      expect((await refusal(misnamed.listTopics())).code).toBe('UNAVAILABLE');
    } finally {
      await misnamed.close();
    }
  });

  it('refuses, over the wire, each kind of call a token lacks the permission for: unary, server stream and bidi stream', async () => {
    const metadata = (token: string): Metadata => {
      const made = new Metadata();
      made.set('authorization', `Bearer ${token}`);
      return made;
    };
    const LogClient = makeGenericClientConstructor(logServiceDefinition, 'strata.v1.Log');
    const log = new LogClient(broker.address.replace('127.0.0.1', 'localhost'), credentials.createSsl(CA)) as unknown as Record<string, (...args: unknown[]) => unknown>;
    try {
      const unary = await new Promise<ServiceError | null>((resolve) =>
        (log.fetch as (request: unknown, metadata: Metadata, options: object, callback: (error: ServiceError | null) => void) => void).call(log, v1.FetchRequest.create({ topic: 'secure' }), metadata(TOKENS.writer), { deadline: Date.now() + 10_000 }, resolve),
      );
      expect([unary?.code, unary?.details]).toEqual([status.PERMISSION_DENIED, 'token "orders-writer" may not call Log/Fetch: that needs the read or admin permission, and it has write']);
      const streamEnd = (call: { on(event: string, listener: (value: ServiceError) => void): unknown }): Promise<ServiceError> => new Promise((resolve) => call.on('error', resolve));
      const subscription = (log.subscribe as (request: unknown, metadata: Metadata) => { on(event: string, listener: (value: ServiceError) => void): unknown }).call(log, v1.SubscribeRequest.create({ topic: 'secure' }), metadata(TOKENS.writer));
      expect((await streamEnd(subscription)).code).toBe(status.PERMISSION_DENIED);
      const produceStream = (log.produceStream as (metadata: Metadata) => { on(event: string, listener: (value: ServiceError) => void): unknown; write(message: unknown): void }).call(log, metadata(TOKENS.reader));
      produceStream.write(v1.ProduceRequest.create({ topic: 'secure', partition: 0, records: [v1.Record.create({ value: Buffer.from('never') })] }));
      const produceRefusal = await streamEnd(produceStream);
      expect([produceRefusal.code, produceRefusal.details]).toEqual([status.PERMISSION_DENIED, 'token "billing-reader" may not call Log/ProduceStream: that needs the write or admin permission, and it has read']);
    } finally {
      (log as unknown as Client).close();
    }
    // Nothing of the refused produce was written.
    const described = await admin(TOKENS.operator).describeTopic('secure');
    expect(described.partitions.reduce((sum, partition) => sum + partition.highWatermark, 0)).toBe(3);
  });
});

describe('mutual TLS', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startTestBroker({ tls: tlsMaterial(true) });
  });
  afterAll(async () => {
    await broker?.dispose();
  });

  it('serves a client that presents a certificate the CA signed, and no other', async () => {
    const server = broker.address.replace('127.0.0.1', 'localhost');
    const withCertificate = new Admin({ server, deadlineMs: 10_000, tls: { ca: CA, cert: readFileSync(fixture('client.pem')), key: readFileSync(fixture('client-key.pem')) } });
    const without = new Admin({ server, deadlineMs: 10_000, tls: { ca: CA } });
    try {
      await withCertificate.createTopic('mutual');
      expect((await withCertificate.listTopics()).map((topic) => topic.name)).toEqual(['mutual']);
      expect((await refusal(without.listTopics())).code).toBe('UNAVAILABLE');
    } finally {
      await withCertificate.close();
      await without.close();
    }
    const args = ['topics', 'list', '--server', broker.address, '--tls-ca-file', fixture('ca.pem')];
    const cliWith = await runCli([...args, '--tls-client-cert-file', fixture('client.pem'), '--tls-client-key-file', fixture('client-key.pem')]);
    expect(cliWith.code, cliWith.stderr).toBe(0);
    expect(cliWith.stdout).toMatch(/^mutual +1$/m);
    const cliHalf = await runCli([...args, '--tls-client-cert-file', fixture('client.pem')]);
    expect({ code: cliHalf.code, stderr: cliHalf.stderr }).toEqual({ code: 2, stderr: 'strata: give both --tls-client-cert-file and --tls-client-key-file, or neither\n' });
    // Files that cannot serve are one line naming the option (exit 2), before any connection:
    // not OpenSSL's text, nor a failed handshake that points at an option already given.
    const unusable = async (extra: string[]) => {
      const result = await runCli(['topics', 'list', '--server', broker.address, ...extra]);
      return { code: result.code, stderr: result.stderr };
    };
    const [cert, key, otherKey, ca] = [fixture('client.pem'), fixture('client-key.pem'), fixture('server-key.pem'), fixture('ca.pem')];
    expect(await unusable(['--tls-ca-file', ca, '--tls-client-cert-file', cert, '--tls-client-key-file', otherKey])).toEqual({ code: 2, stderr: `strata: --tls-client-key-file ${otherKey} is not the private key of the certificate in --tls-client-cert-file ${cert}\n` });
    expect(await unusable(['--tls-ca-file', ca, '--tls-client-cert-file', key, '--tls-client-key-file', key])).toEqual({ code: 2, stderr: `strata: --tls-client-cert-file ${key} holds no PEM certificate\n` });
    expect(await unusable(['--tls-ca-file', ca, '--tls-client-cert-file', cert, '--tls-client-key-file', cert])).toEqual({ code: 2, stderr: expect.stringMatching(new RegExp(`^strata: --tls-client-key-file ${cert.replace(/[.]/g, '\\.')} holds no PEM private key \\(.*\\)\n$`)) });
    expect(await unusable(['--tls-ca-file', key])).toEqual({ code: 2, stderr: `strata: --tls-ca-file ${key} holds no PEM certificate\n` });
    // Refused for want of a client certificate, or for one the broker's CA did not sign: the
    // advice is about the client certificate, not the CA of the server's.
    const cliWithout = await runCli(args);
    expect(cliWithout.code, cliWithout.stderr).toBe(1);
    expect(cliWithout.stderr).toMatch(/\(TLS: tlsv13 alert certificate required\); the broker asks for a client certificate: give --tls-client-cert-file and --tls-client-key-file, of a certificate signed by a CA its --tls-client-ca-file holds\n$/);
    const cliUntrusted = await runCli([...args, '--tls-client-cert-file', fixture('server-renewed.pem'), '--tls-client-key-file', fixture('server-renewed-key.pem')]);
    expect(cliUntrusted.code, cliUntrusted.stderr).toBe(1);
    expect(cliUntrusted.stderr).toMatch(/; (the broker refused the|the connection was closed during the TLS start, most likely by the broker refusing the) client certificate: give --tls-client-cert-file and --tls-client-key-file of one in date and signed by a CA its --tls-client-ca-file holds( \(if no broker listens there, set --server or STRATA_SERVER\))?\n$/);
  });
});

describe('tokens limited to topics and groups', () => {
  const LIMITED = { ordersWriter: 'orders-writer-secret', billing: 'billing-reader-secret', teamAdmin: 'team-admin-secret', operator: 'operator-secret' };
  let broker: TestBroker;
  const clients: { close(): Promise<void> }[] = [];
  const admin = (token: string): Admin => {
    const made = new Admin({ server: broker.address, deadlineMs: 10_000, token });
    clients.push(made);
    return made;
  };
  const cli = (args: string[], token: string) => runCli([...args, '--server', broker.address], { env: { STRATA_TOKEN: token } });
  const highWatermark = async (topic: string): Promise<number> => (await admin(LIMITED.operator).describeTopic(topic)).partitions.reduce((sum, partition) => sum + partition.highWatermark, 0);
  /** A call of strata.v1.Groups with `token`, over the wire: for what the client library does not send. */
  const groupsCall = async <Response>(method: string, request: object, token: string): Promise<{ error: ServiceError | null; response: Response | undefined }> => {
    const GroupsClient = makeGenericClientConstructor(groupsServiceDefinition, 'strata.v1.Groups');
    const groups = new GroupsClient(broker.address, credentials.createInsecure()) as unknown as Client & Record<string, (...args: unknown[]) => void>;
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    try {
      return await new Promise((resolve) => groups[method]!(request, metadata, { deadline: Date.now() + 10_000 }, (error: ServiceError | null, response?: Response) => resolve({ error, response })));
    } finally {
      groups.close();
    }
  };

  beforeAll(async () => {
    broker = await startTestBroker({
      authenticator: new TokenAuthenticator([
        { name: 'orders-writer', sha256: sha256(LIMITED.ordersWriter), permissions: ['write'], topics: ['orders'] },
        { name: 'billing', sha256: sha256(LIMITED.billing), permissions: ['read'], topics: ['orders', 'audit.*'], groups: ['billing-*'] },
        { name: 'team-admin', sha256: sha256(LIMITED.teamAdmin), permissions: ['admin'], topics: ['team-a.*'], groups: ['team-a-*'] },
        { name: 'operator', sha256: sha256(LIMITED.operator), permissions: ['admin'] },
      ]),
    });
    const operator = admin(LIMITED.operator);
    for (const topic of ['orders', 'payments', 'audit.eu']) await operator.createTopic(topic, { partitions: 1 });
  });
  afterAll(async () => {
    for (const made of clients) await made.close();
    await broker?.dispose();
  });

  it('lets a producer write only to its topics, refusing the others whether or not they exist, and appends nothing refused', async () => {
    const producer = new Producer({ server: broker.address, token: LIMITED.ordersWriter, deliveryTimeoutMs: 10_000 });
    clients.push(producer);
    await producer.send({ topic: 'orders', partition: 0, value: Buffer.from('kept') });
    for (const topic of ['payments', 'no-such-topic']) {
      const refused = await refusal(producer.send({ topic, partition: 0, value: Buffer.from('refused') }));
      expect({ code: refused.code, message: refused.message }).toEqual({
        code: 'PERMISSION_DENIED',
        message: `token "orders-writer" may not use topic "${topic}": its topics are "orders" (see its entry in --auth-tokens-file)`,
      });
    }
    // The same producer's stream goes on: a refused request does not end it.
    await producer.send({ topic: 'orders', partition: 0, value: Buffer.from('after') });
    expect([await highWatermark('orders'), await highWatermark('payments')]).toEqual([2, 0]);
    expect((await admin(LIMITED.operator).listTopics()).map((topic) => topic.name)).not.toContain('no-such-topic');
    const produced = await cli(['produce', 'payments', 'x'], LIMITED.ordersWriter);
    expect([produced.code, produced.stderr]).toEqual([1, 'strata: token "orders-writer" may not use topic "payments": its topics are "orders" (see its entry in --auth-tokens-file)\n']);
    // Listing shows its topics alone, which is what a producer looks up.
    expect((await admin(LIMITED.ordersWriter).listTopics()).map((topic) => topic.name)).toEqual(['orders']);
  });

  it('lets a consumer read its topics in its groups, and refuses another topic and another group', async () => {
    const billing = admin(LIMITED.billing);
    const consumed = await cli(['consume', 'orders', '--group', 'billing-eu', '--count', '2'], LIMITED.billing);
    expect([consumed.code, consumed.stdout], consumed.stderr).toEqual([0, 'kept\nafter\n']);
    expect((await billing.fetchOffsets('billing-eu')).map((entry) => [entry.topic, entry.offset])).toEqual([['orders', 2]]);
    const otherTopic = await cli(['consume', 'payments', '--from', 'earliest', '--count', '1'], LIMITED.billing);
    expect([otherTopic.code, otherTopic.stderr]).toEqual([1, 'strata: token "billing" may not use topic "payments": its topics are "orders", "audit.*" (see its entry in --auth-tokens-file)\n']);
    const otherGroup = await cli(['consume', 'orders', '--group', 'shipping', '--count', '1'], LIMITED.billing);
    expect(otherGroup.code).toBe(1);
    expect(otherGroup.stderr).toContain('token "billing" may not use group "shipping": its groups are "billing-*" (see its entry in --auth-tokens-file)');
    expect((await refusal(billing.listOffsets('payments', 0, 'latest'))).code).toBe('PERMISSION_DENIED');
  });

  it('assigns a member subscribed by a regex only the topics its token may use; the group gives the others to a member whose token may', async () => {
    const regex = 'orders|payments|audit\\..*';
    const limited = new Consumer({ server: broker.address, token: LIMITED.billing, groupId: 'billing-regex', subscribe: { regex } });
    clients.push(limited);
    const errors: GroupErrorEvent[] = [];
    limited.on('groupError', (event: GroupErrorEvent) => errors.push(event));
    const topicsOf = (consumer: Consumer): string[] => consumer.assignment().map(({ topic }) => topic).sort();
    await waitUntil(() => topicsOf(limited).join() === 'audit.eu,orders', 'the limited member to be assigned orders and audit.eu');
    const payments = async (): Promise<string[]> => {
      const described = await admin(LIMITED.operator).describeGroup('billing-regex');
      return described.members.filter((member) => member.assignment.some((entry) => entry.topic === 'payments')).map((member) => member.memberId);
    };
    expect(await payments()).toEqual([]);
    const open = new Consumer({ server: broker.address, token: LIMITED.operator, groupId: 'billing-regex', subscribe: { regex } });
    clients.push(open);
    await waitUntil(async () => (await payments()).join() === open.memberId && topicsOf(limited).length + topicsOf(open).length === 3, 'payments to go to the open member');
    expect(topicsOf(limited)).not.toContain('payments');
    expect(errors).toEqual([]);
  });

  it("refuses a commit of another topic's offset in its group, unary or streamed, and moves nothing", async () => {
    const operator = admin(LIMITED.operator);
    await operator.resetOffsets('billing-commits', 'payments', 'earliest');
    const refusedMessage = 'token "billing" may not use topic "payments": its topics are "orders", "audit.*" (see its entry in --auth-tokens-file)';
    const unary = await groupsCall('commitOffsets', v1.CommitOffsetsRequest.create({ groupId: 'billing-commits', offsets: [v1.OffsetCommit.create({ topic: 'orders', partition: 0, offset: Long.fromNumber(1) }), v1.OffsetCommit.create({ topic: 'payments', partition: 0, offset: Long.fromNumber(1) })] }), LIMITED.billing);
    expect([unary.error?.code, unary.error?.details]).toEqual([status.PERMISSION_DENIED, refusedMessage]);
    // The client library commits over CommitOffsetsStream.
    const assigned = new Consumer({ server: broker.address, token: LIMITED.billing, groupId: 'billing-commits' });
    clients.push(assigned);
    const streamed = await refusal(assigned.commit([{ topic: 'payments', partition: 0, offset: 1 }]));
    expect([streamed.code, streamed.message]).toEqual(['PERMISSION_DENIED', refusedMessage]);
    expect((await operator.fetchOffsets('billing-commits')).map((entry) => [entry.topic, entry.offset])).toEqual([['payments', 0]]);
  });

  it("shows a consumer only its groups, and of its group only what concerns its topics: offsets, lag, members' assignments", async () => {
    const operator = admin(LIMITED.operator);
    const billing = admin(LIMITED.billing);
    await operator.resetOffsets('shipping', 'orders', 'earliest');
    // A member with every topic, in a group the billing token may use.
    const everything = new Consumer({ server: broker.address, token: LIMITED.operator, groupId: 'billing-shared', subscribe: ['orders', 'payments'] });
    clients.push(everything);
    // NOT_FOUND until the member has joined.
    const assignedTopics = async (): Promise<string[]> => {
      const described = await operator.describeGroup('billing-shared').catch(() => null);
      return (described?.members ?? []).flatMap((member) => member.assignment.map((entry) => entry.topic)).sort();
    };
    await waitUntil(async () => (await assignedTopics()).join() === 'orders,payments', 'the member to be assigned both topics');
    await operator.resetOffsets('billing-eu', 'payments', 'earliest');
    // Lag on payments, which the total must leave out.
    const producer = new Producer({ server: broker.address, token: LIMITED.operator, deliveryTimeoutMs: 10_000 });
    clients.push(producer);
    await producer.send({ topic: 'payments', partition: 0, value: Buffer.from('unread') });
    // A member subscribed by a regex: the regex may name other topics.
    const byRegex = new Consumer({ server: broker.address, token: LIMITED.operator, groupId: 'billing-by-regex', subscribe: { regex: '^pay' } });
    clients.push(byRegex);
    await waitUntil(async () => ((await operator.describeGroup('billing-by-regex').catch(() => null))?.members.length ?? 0) === 1, 'the regex member to join');

    const listed = (await billing.listGroups()).map((group) => group.groupId);
    expect(listed).toEqual(expect.arrayContaining(['billing-eu', 'billing-shared']));
    expect(listed.filter((groupId) => !groupId.startsWith('billing-'))).toEqual([]);
    expect((await operator.listGroups()).map((group) => group.groupId)).toContain('shipping');
    expect((await refusal(billing.describeGroup('shipping'))).code).toBe('PERMISSION_DENIED');
    // Its group's offsets of other topics are left out of what it reads, lag and its total included.
    expect((await billing.fetchOffsets('billing-eu')).map((entry) => entry.topic)).toEqual(['orders']);
    expect((await operator.fetchOffsets('billing-eu')).map((entry) => entry.topic).sort()).toEqual(['orders', 'payments']);
    const described = await billing.describeGroup('billing-eu');
    expect(described.partitions.map((entry) => entry.topic)).toEqual(['orders']);
    expect(described.totalLag).toBe(described.partitions[0]!.lag);
    expect((await operator.describeGroup('billing-eu')).totalLag).toBe(described.totalLag + 1);
    expect((await operator.describeGroup('billing-by-regex')).members.map((member) => member.subscribedTopicRegex)).toEqual(['^pay']);
    expect((await billing.describeGroup('billing-by-regex')).members.map((member) => [member.subscribedTopicRegex, member.assignment])).toEqual([['', []]]);
    const shared = await billing.describeGroup('billing-shared');
    expect(shared.members.map((member) => [member.assignment.map((entry) => entry.topic), member.subscribedTopicNames])).toEqual([[['orders'], ['orders']]]);
    // Its id and epoch can be read from a description, but are not enough to heartbeat as that
    // member (group-member-tokens.test.ts has the rest); its token's heartbeats are answered
    // with its topics alone (there too).
    const member = (await operator.describeGroup('billing-shared')).members[0]!;
    const heartbeat = await groupsCall('heartbeat', v1.HeartbeatRequest.create({ groupId: 'billing-shared', memberId: member.memberId, memberEpoch: member.memberEpoch, keepSubscription: true }), LIMITED.billing);
    expect(heartbeat.error?.code).toBe(status.PERMISSION_DENIED);
    expect((await operator.describeGroup('billing-shared')).members.map((entry) => [entry.memberEpoch, entry.assignment.map(({ topic }) => topic)])).toEqual([[member.memberEpoch, ['orders', 'payments']]]);
  });

  it('lets an administrator limited to a prefix administer those topics and groups alone, without saying whether others exist', async () => {
    const team = admin(LIMITED.teamAdmin);
    await team.createTopic('team-a.events', { partitions: 2 });
    expect((await team.addPartitions('team-a.events', 3)).partitions).toHaveLength(3);
    expect((await team.listTopics()).map((topic) => topic.name)).toEqual(['team-a.events']);
    for (const [name, call] of [
      ['create', () => team.createTopic('team-b.events')],
      ['alter', () => team.alterTopicConfigs('orders', { 'retention.ms': '1000' })],
      ['add partitions', () => team.addPartitions('orders', 2)],
      ['describe an existing topic', () => team.describeTopic('payments')],
      ['describe a missing topic', () => team.describeTopic('team-b.missing')],
      ['delete', () => team.deleteTopic('orders')],
      ['reset a group outside its groups', () => team.resetOffsets('billing-eu', 'team-a.events', 'earliest')],
      ['delete offsets of a topic outside its topics', () => team.deleteOffsets('team-a-jobs', ['orders'])],
      ['delete a group outside its groups', () => team.deleteGroup('billing-eu')],
    ] as const) {
      const refused = await refusal(call());
      expect([name, refused.code]).toEqual([name, 'PERMISSION_DENIED']);
    }
    // Deleting a group, or all its offsets (no topics, on the wire), needs every topic it has offsets for.
    const operator = admin(LIMITED.operator);
    for (const topic of ['team-a.events', 'orders']) await operator.resetOffsets('team-a-jobs', topic, 'earliest');
    // The refusal names none of the group's other topics.
    const ordersRefusal = 'token "team-admin" may not remove every offset of group "team-a-jobs": the group has offsets of topics other than its topics, "team-a.*"; those must be deleted by a token that may use them (see its entry in --auth-tokens-file)';
    const everyTopic = await groupsCall('deleteOffsets', v1.DeleteOffsetsRequest.create({ groupId: 'team-a-jobs' }), LIMITED.teamAdmin);
    expect([everyTopic.error?.code, everyTopic.error?.details]).toEqual([status.PERMISSION_DENIED, ordersRefusal]);
    const deleted = await refusal(team.deleteGroup('team-a-jobs'));
    expect([deleted.code, deleted.message]).toEqual(['PERMISSION_DENIED', ordersRefusal]);
    expect(new Set((await operator.fetchOffsets('team-a-jobs')).map((entry) => entry.topic))).toEqual(new Set(['orders', 'team-a.events']));
    await operator.deleteOffsets('team-a-jobs', ['orders']);
    await team.deleteGroup('team-a-jobs');
    expect((await operator.listGroups()).map((group) => group.groupId)).not.toContain('team-a-jobs');
    const topics = (await admin(LIMITED.operator).listTopics()).map((topic) => topic.name);
    expect(topics).toEqual(['audit.eu', 'orders', 'payments', 'team-a.events']);
    expect((await admin(LIMITED.operator).describeGroup('billing-eu')).groupId).toBe('billing-eu');
  });
});

describe('a token narrowed or revoked while its streams are open', () => {
  it('refuses the next request of an open stream and ends an open subscription as a new call would be refused, once the file is read again', async () => {
    const dataDir = temporaryDirectory();
    const tokensFile = besideDataDir(dataDir, 'tokens.json');
    const writeTokens = (writerTopics: string[], withReader: boolean): void =>
      writeFileSync(
        tokensFile,
        JSON.stringify({
          tokens: [
            { name: 'writer', sha256: sha256('narrowed-writer'), permissions: ['write', 'read'], topics: writerTopics },
            { name: 'operator', sha256: sha256(TOKENS.operator), permissions: ['admin'] },
            ...(withReader ? [{ name: 'leaving-reader', sha256: sha256('leaving-reader'), permissions: ['read'] }] : []),
          ],
        }),
      );
    writeTokens(['orders', 'payments'], true);
    const authenticator = TokenAuthenticator.fromFile(tokensFile);
    const broker = await startTestBroker({ dataDir, authenticator });
    const operator = new Admin({ server: broker.address, token: TOKENS.operator, deadlineMs: 10_000 });
    const producer = new Producer({ server: broker.address, token: 'narrowed-writer', deliveryTimeoutMs: 10_000, retries: 0 });
    const fresh = new Admin({ server: broker.address, token: 'narrowed-writer', deadlineMs: 10_000 });
    const clientsToClose: Client[] = [];
    const LogClient = makeGenericClientConstructor(logServiceDefinition, 'strata.v1.Log');
    const log = new LogClient(broker.address, credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown>;
    /** A Subscribe to payments from earliest with `token`; resolves `started` at its first message, `ended` with its status. */
    const subscribe = (token: string): { started: Promise<void>; ended: Promise<ServiceError> } => {
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${token}`);
      const call = (log.subscribe as (request: unknown, metadata: Metadata) => NodeJS.EventEmitter).call(log, v1.SubscribeRequest.create({ topic: 'payments', start: v1.StartPosition.create({ earliest: true }) }), metadata);
      return { started: new Promise((resolve) => call.once('data', () => resolve())), ended: new Promise((resolve) => call.on('error', resolve)) };
    };
    try {
      await operator.createTopic('payments', { partitions: 1 });
      await operator.createTopic('orders', { partitions: 1 });
      await producer.send({ topic: 'payments', partition: 0, value: Buffer.from('before') });
      const narrowed = subscribe('narrowed-writer');
      const revoked = subscribe('leaving-reader');
      await Promise.all([narrowed.started, revoked.started]);
      // A commit stream of the writer's, open and used before the reload.
      const GroupsClient = makeGenericClientConstructor(groupsServiceDefinition, 'strata.v1.Groups');
      const groups = new GroupsClient(broker.address, credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown>;
      clientsToClose.push(groups as unknown as Client);
      const commitMetadata = new Metadata();
      commitMetadata.set('authorization', 'Bearer narrowed-writer');
      const commits = (groups.commitOffsetsStream as (metadata: Metadata) => NodeJS.EventEmitter & { write(request: unknown): void }).call(groups, commitMetadata);
      const commitAnswers: { correlationId: number; code: number | null }[] = [];
      const answered = (count: number): Promise<void> =>
        waitUntil(() => commitAnswers.length >= count, `${count} commit answers`);
      commits.on('data', (answer: { correlationId: Long; error: { code: number } | null }) => commitAnswers.push({ correlationId: answer.correlationId.toNumber(), code: answer.error?.code ?? null }));
      const commit = (topic: string, correlationId: number): void =>
        commits.write(v1.CommitOffsetsRequest.create({ groupId: 'reload-commits', offsets: [v1.OffsetCommit.create({ topic, partition: 0, offset: Long.fromNumber(0) })], correlationId: Long.fromNumber(correlationId) }));
      commit('payments', 1);
      await answered(1);

      writeTokens(['orders'], false);
      authenticator.reload(); // what SIGHUP does
      const [narrowedEnd, revokedEnd] = await Promise.all([narrowed.ended, revoked.ended]);
      expect([status[narrowedEnd.code], narrowedEnd.details]).toEqual(['PERMISSION_DENIED', expect.stringMatching(/^token "writer" may not .*"payments"/)]);
      expect([status[revokedEnd.code], revokedEnd.details]).toEqual([
        'UNAUTHENTICATED',
        'token "leaving-reader" is no longer accepted: the broker read its tokens file again since this call began, and the token is not in it; use a token it lists',
      ]);
      // The producer's stream, open since before, is checked against the file as it is now.
      expect((await refusal(producer.send({ topic: 'payments', partition: 0, value: Buffer.from('on the open stream') }))).code).toBe('PERMISSION_DENIED');
      await producer.send({ topic: 'orders', partition: 0, value: Buffer.from('still allowed') });
      // The commit stream likewise: payments refused, orders taken, the stream open throughout.
      commit('payments', 2);
      commit('orders', 3);
      await answered(3);
      expect(commitAnswers).toEqual([
        { correlationId: 1, code: null },
        { correlationId: 2, code: status.PERMISSION_DENIED },
        { correlationId: 3, code: null },
      ]);
      expect((await operator.describeTopic('payments')).partitions[0]!.highWatermark).toBe(1);
      expect((await operator.describeTopic('orders')).partitions[0]!.highWatermark).toBe(1);
      // A call made now is checked against the file as it is.
      expect((await refusal(fresh.describeTopic('payments'))).code).toBe('PERMISSION_DENIED');
    } finally {
      (log as unknown as Client).close();
      for (const client of clientsToClose) client.close();
      for (const client of [producer, operator, fresh]) await client.close();
      await broker.dispose();
      rmSync(tokensFile, { force: true });
    }
  });
});

describe('a token revoked while a Subscribe looks up its start', () => {
  it('ends the subscription once it starts, as if the reload had come after', async () => {
    const dataDir = temporaryDirectory();
    const tokensFile = besideDataDir(dataDir, 'tokens.json');
    const writeTokens = (withReader: boolean): void =>
      writeFileSync(
        tokensFile,
        JSON.stringify({
          tokens: [
            { name: 'operator', sha256: sha256(TOKENS.operator), permissions: ['admin'] },
            ...(withReader ? [{ name: 'leaving-reader', sha256: sha256('leaving-reader'), permissions: ['read'] }] : []),
          ],
        }),
      );
    writeTokens(true);
    const authenticator = TokenAuthenticator.fromFile(tokensFile);
    const broker = await startTestBroker({ dataDir, authenticator });
    const operator = new Admin({ server: broker.address, token: TOKENS.operator, deadlineMs: 10_000 });
    const LogClient = makeGenericClientConstructor(logServiceDefinition, 'strata.v1.Log');
    const log = new LogClient(broker.address, credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown>;
    // The lookup of a start by time is held until the tokens have been read again.
    const lookup = PartitionLog.prototype.offsetForTimestamp;
    let entered!: () => void;
    const inLookup = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    PartitionLog.prototype.offsetForTimestamp = async function (this: PartitionLog, timestamp: number) {
      entered();
      await released;
      return lookup.call(this, timestamp);
    };
    try {
      await operator.createTopic('revoked-at-start', { partitions: 1 });
      const metadata = new Metadata();
      metadata.set('authorization', 'Bearer leaving-reader');
      const call = (log.subscribe as (request: unknown, metadata: Metadata) => NodeJS.EventEmitter).call(
        log,
        v1.SubscribeRequest.create({ topic: 'revoked-at-start', start: v1.StartPosition.create({ timestamp: Long.fromNumber(0) }) }),
        metadata,
      );
      const ended = new Promise<ServiceError>((resolve) => call.on('error', resolve));
      await inLookup;
      writeTokens(false);
      authenticator.reload();
      release();
      const end = await ended;
      expect([status[end.code], end.details]).toEqual(['UNAUTHENTICATED', expect.stringMatching(/^token "leaving-reader" is no longer accepted/)]);
    } finally {
      PartitionLog.prototype.offsetForTimestamp = lookup;
      release();
      (log as unknown as Client).close();
      await operator.close();
      await broker.dispose();
      rmSync(tokensFile, { force: true });
    }
  });
});

describe('tokens over plaintext', () => {
  it('warns at start when the address reaches beyond loopback, and logs refusals once per 10 s however many come', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const broker = await runBroker(
      testSettings(temporaryDirectory(), {
        listen: '0.0.0.0:0',
        authenticator: new TokenAuthenticator([{ name: 'operator', sha256: sha256(TOKENS.operator), permissions: ['admin'] }]),
      }),
      logger,
    );
    const admin = new Admin({ server: `127.0.0.1:${broker.server.port}`, deadlineMs: 10_000 });
    try {
      const parsed = (): { msg: string; refusedSinceLastLine?: number; peer?: string }[] => lines.map((line) => JSON.parse(line) as { msg: string });
      expect(parsed().filter((entry) => /tokens are asked for, but gRPC is served in plaintext/.test(entry.msg))).toHaveLength(1);
      for (let call = 0; call < 3; call++) expect((await refusal(admin.listTopics())).code).toBe('UNAUTHENTICATED');
      const refusals = parsed().filter((entry) => entry.msg.startsWith('request refused'));
      expect(refusals).toHaveLength(1);
      expect(refusals[0]).toMatchObject({ refusedSinceLastLine: 0, peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) as unknown as string });
      // Counted, and not timed: no handler ran, and their near-zero times would pull the method's latency down.
      const metrics = await (await fetch(`http://${broker.metricsAddress}/metrics`)).text();
      expect(metrics).toMatch(/^strata_requests_total\{method="ListTopics",code="UNAUTHENTICATED"\} 3$/m);
      expect(metrics).not.toMatch(/^strata_request_duration_seconds_count\{method="ListTopics"\}/m);
      // A CLI speaking TLS to this plaintext broker is told so.
      const overTls = await runCli(['topics', 'list', '--server', `127.0.0.1:${broker.server.port}`, '--tls-ca-file', fixture('ca.pem')]);
      expect(overTls.stderr).toMatch(/^strata: cannot reach the broker at 127\.0\.0\.1:\d+ \(TLS: [^)]+\); it does not seem to serve TLS: leave out --tls and the --tls-\* options for a plaintext broker\n$/);
    } finally {
      await admin.close();
      await broker.stop();
      removeDirectory(broker.broker.dataDir);
    }
  });
});

describe('the CLI with a token and no TLS', () => {
  it('warns once that the token goes in plaintext to an address beyond loopback, and not to loopback', async () => {
    const away = await runCli(['topics', 'list', '--server', '0.0.0.0:1'], { env: { STRATA_TOKEN: 'some-token' } });
    expect(away.code).toBe(1);
    expect(away.stderr.split('\n')[0]).toBe('strata: warning: the token goes to 0.0.0.0:1 in plaintext, where anyone on the way can read it; add --tls or --tls-ca-file if the broker serves TLS');
    const local = await runCli(['topics', 'list', '--server', '127.0.0.1:1'], { env: { STRATA_TOKEN: 'some-token' } });
    expect(local.stderr).toMatch(/^strata: cannot reach the broker at 127\.0\.0\.1:1 /);
  });
});

describe('strata serve with TLS and tokens', () => {
  it('logs which files it serves TLS and tokens from at start, never a key', async () => {
    const dataDir = temporaryDirectory();
    const tokens = besideDataDir(dataDir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({ tokens: [{ name: 'operator', sha256: sha256(TOKENS.operator), permissions: ['admin'] }] }));
    const broker = await spawnBroker(dataDir, ['--tls-cert-file', fixture('server.pem'), '--tls-key-file', fixture('server-key.pem'), '--auth-tokens-file', tokens]);
    try {
      const entries = broker.logLines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { msg?: string; config?: Record<string, unknown>; tls?: boolean; tokens?: boolean });
      const starting = entries.find((entry) => entry.msg === 'starting strata');
      expect(starting?.config).toMatchObject({ tls: { certFile: fixture('server.pem'), keyFile: fixture('server-key.pem'), clientCaFile: '' }, authenticator: { file: tokens, tokens: 1 } });
      expect(entries.find((entry) => entry.msg === 'listening')).toMatchObject({ tls: true, tokens: true });
      const everything = broker.logLines.join('\n');
      expect(everything).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
      expect(everything).not.toContain(sha256(TOKENS.operator));
    } finally {
      await stopSpawned(broker, dataDir, [tokens]);
    }
  });
});

describe('tokens read again on SIGHUP', () => {
  it('takes a changed tokens file without a restart, and keeps the tokens before when the file is wrong', async () => {
    const dataDir = temporaryDirectory();
    const tokens = besideDataDir(dataDir, 'reload.json');
    const write = (names: (keyof typeof TOKENS)[]): void =>
      writeFileSync(tokens, JSON.stringify({ tokens: names.map((name) => ({ name, sha256: sha256(TOKENS[name]), permissions: ['admin'] })) }));
    write(['operator']);
    const broker = await spawnBroker(dataDir, ['--auth-tokens-file', tokens]);
    const as = (name: keyof typeof TOKENS): Admin => new Admin({ server: broker.address, deadlineMs: 10_000, token: TOKENS[name] });
    const [operator, writer] = [as('operator'), as('writer')];
    const answer = async (admin: Admin): Promise<string> => admin.listTopics().then(() => 'OK', (error: StrataClientError) => error.code);
    try {
      expect([await answer(operator), await answer(writer)]).toEqual(['OK', 'UNAUTHENTICATED']);
      // The operator's token revoked, the writer's added.
      write(['writer']);
      broker.child.kill('SIGHUP');
      await waitUntil(async () => (await answer(operator)) === 'UNAUTHENTICATED' && (await answer(writer)) === 'OK', 'the new tokens taken');
      expect(broker.logLines.some((line) => line.includes('SIGHUP: tokens read again'))).toBe(true);
      // A file that does not parse: logged, and the writer's token still works.
      writeFileSync(tokens, '{"tokens": [');
      broker.child.kill('SIGHUP');
      await waitUntil(async () => broker.logLines.some((line) => line.includes('SIGHUP: the tokens file was not taken, the tokens before stay')), 'the refusal logged');
      expect([await answer(operator), await answer(writer)]).toEqual(['UNAUTHENTICATED', 'OK']);
    } finally {
      await operator.close();
      await writer.close();
      await stopSpawned(broker, dataDir, [tokens]);
    }
  });
});

describe('certificates read again on SIGHUP', () => {
  it('serves renewed TLS files to new connections without a restart, and keeps the certificate before when the files are wrong', async () => {
    const dataDir = temporaryDirectory();
    const certFile = besideDataDir(dataDir, 'cert.pem');
    const keyFile = besideDataDir(dataDir, 'key.pem');
    copyFileSync(fixture('server.pem'), certFile);
    copyFileSync(fixture('server-key.pem'), keyFile);
    const broker = await spawnBroker(dataDir, ['--tls-cert-file', certFile, '--tls-key-file', keyFile]);
    const port = Number(broker.address.split(':').pop());
    const fingerprint = (name: string): string => new X509Certificate(readFileSync(fixture(name))).fingerprint256;
    // The certificate a new TLS connection is served, whoever signed it.
    const served = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
          resolve(socket.getPeerCertificate().fingerprint256);
          socket.destroy();
        });
        socket.once('error', reject);
      });
    const listed = async (ca: Buffer): Promise<string> => {
      const admin = new Admin({ server: broker.address.replace('127.0.0.1', 'localhost'), deadlineMs: 10_000, tls: { ca } });
      try {
        return await admin.listTopics().then(() => 'OK', (error: StrataClientError) => error.code);
      } finally {
        await admin.close();
      }
    };
    const metricsAddress = broker.logLines.map((line) => JSON.parse(line) as { msg?: string; metricsAddress?: string }).find((entry) => entry.msg === 'listening')!.metricsAddress!;
    const expiry = async (): Promise<string | undefined> =>
      (await (await fetch(`http://${metricsAddress}/metrics`)).text()).match(/^strata_tls_certificate_expiry_timestamp_seconds\{file="([^"]+)"\} (\S+)$/m)?.slice(1).join(' ');
    // Connected before the renewal, trusting only the first CA: its connection stays open.
    const connectedBefore = new Admin({ server: broker.address.replace('127.0.0.1', 'localhost'), deadlineMs: 10_000, tls: { ca: CA } });
    try {
      expect(await served()).toBe(fingerprint('server.pem'));
      expect(await listed(CA)).toBe('OK');
      await connectedBefore.listTopics();
      expect(await expiry()).toBe(`${certFile} ${Date.parse(new X509Certificate(readFileSync(fixture('server.pem'))).validTo) / 1000}`);
      // Renewed files, from another CA: a client that trusts only it connects once they are taken.
      copyFileSync(fixture('server-renewed.pem'), certFile);
      copyFileSync(fixture('server-renewed-key.pem'), keyFile);
      expect(await listed(readFileSync(fixture('ca-renewed.pem')))).toBe('UNAVAILABLE');
      broker.child.kill('SIGHUP');
      await waitUntil(async () => (await served()) === fingerprint('server-renewed.pem'), 'the renewed certificate served');
      expect(await listed(readFileSync(fixture('ca-renewed.pem')))).toBe('OK');
      expect(await listed(CA)).toBe('UNAVAILABLE');
      expect(await connectedBefore.listTopics()).toEqual([]);
      expect(broker.logLines.some((line) => line.includes('SIGHUP: TLS files read again'))).toBe(true);
      // The renewed certificate ends in 2125, a year before the first.
      expect(await expiry()).toBe(`${certFile} ${Date.parse(new X509Certificate(readFileSync(fixture('server-renewed.pem'))).validTo) / 1000}`);
      // A key that is not the certificate's: logged, and the renewed certificate is still served.
      copyFileSync(fixture('server-key.pem'), keyFile);
      broker.child.kill('SIGHUP');
      await waitUntil(async () => broker.logLines.some((line) => line.includes('SIGHUP: the TLS files were not taken, the certificate before stays')), 'the refusal logged');
      expect(broker.logLines.find((line) => line.includes('the TLS files were not taken'))).toContain('is not the private key of the certificate');
      expect(await served()).toBe(fingerprint('server-renewed.pem'));
      expect(await listed(readFileSync(fixture('ca-renewed.pem')))).toBe('OK');
    } finally {
      await connectedBefore.close();
      await stopSpawned(broker, dataDir, [certFile, keyFile]);
    }
  });
});

describe('SIGHUP without tokens or TLS', () => {
  it('is logged as nothing to read, and the broker serves on', async () => {
    const dataDir = temporaryDirectory();
    const broker = await spawnBroker(dataDir);
    const admin = new Admin({ server: broker.address, deadlineMs: 10_000 });
    try {
      broker.child.kill('SIGHUP');
      await waitUntil(() => broker.logLines.some((line) => line.includes('SIGHUP: nothing to read again')), 'the SIGHUP logged');
      expect(await admin.listTopics()).toEqual([]);
    } finally {
      await admin.close();
      expect(await stopSpawned(broker, dataDir)).toEqual({ code: 0, signal: null });
    }
  });
});
