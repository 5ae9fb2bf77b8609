// Goal: a broker started with TLS and tokens serves only clients that trust its certificate and
// carry a token whose permission covers the call: producers with a write token, consumers in a
// group with a read token, topic administration with an admin token; every refusal is the
// documented status with a message a person can act on, counted in the metrics, while probes
// and the health service need no token; method: real brokers in this process with the test
// CA's certificates, the client library and the compiled CLI over real gRPC.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ServiceDefinition, credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { StrataClientError } from '../../src/client/errors.js';
import { Producer } from '../../src/client/producer.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { loadTlsMaterial } from '../../src/server/tls-material.js';
import { TokenAuthenticator } from '../../src/server/token-auth.js';
import { runCli } from '../helpers/cli.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

const FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures', 'tls');
const fixture = (name: string): string => join(FIXTURES, name);
const CA = readFileSync(fixture('ca.pem'));
const sha256 = (token: string): string => createHash('sha256').update(token).digest('hex');
const TOKENS = { reader: 'reader-token-1', writer: 'writer-token-2', operator: 'operator-token-3' };

function tlsMaterial(clientCertificates: boolean) {
  return loadTlsMaterial({ certFile: fixture('server.pem'), keyFile: fixture('server-key.pem'), clientCaFile: clientCertificates ? fixture('ca.pem') : '' }, Date.now());
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
    await refusal(admin(undefined).listTopics());
    const metrics = await (await fetch(`http://${broker.metricsAddress}/metrics`)).text();
    expect(metrics).toMatch(/^strata_requests_total\{method="ListTopics",code="UNAUTHENTICATED"\} [1-9]\d*$/m);
    expect(metrics).toMatch(/^strata_requests_total\{method="CreateTopic",code="PERMISSION_DENIED"\} [1-9]\d*$/m);
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
    expect(cliPlaintext.stderr).toMatch(/^strata: cannot reach the broker at 127\.0\.0\.1:\d+ \(.*\); /);
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
  });
});
