// Goal: an application that gives the client library no logger keeps its stdout to itself: the
// library's lines go to stderr, warnings and errors only unless STRATA_LOG_LEVEL asks for more;
// method: a child process that imports the compiled package (dist/, built by `npm test`), joins a
// group on a real broker in this process, is assigned its partition and closes.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
  await broker.broker.createTopic('logged', 1, {});
});
afterAll(async () => broker?.dispose());

/** What the application prints: one line once its consumer was assigned the partition and closed. */
const application = (server: string): string => `
import { Consumer } from ${JSON.stringify(pathToFileURL(join(PACKAGE_ROOT, 'dist', 'src', 'index.js')).href)};
const consumer = new Consumer({ server: ${JSON.stringify(server)}, groupId: 'quiet-logs', subscribe: ['logged'] });
const assigned = new Promise((resolve) => consumer.once('partitionsAssigned', resolve));
const records = consumer[Symbol.asyncIterator]();
void records.next();
await assigned;
await consumer.close();
console.log('assigned and closed');
`;

async function run(environment: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  // Without VITEST, which silences the library's logs in this process.
  const { VITEST: _vitest, STRATA_LOG_LEVEL: _level, ...inherited } = process.env;
  return promisify(execFile)(process.execPath, ['--input-type=module', '-e', application(broker.address)], { env: { ...inherited, ...environment }, timeout: 30_000 });
}

it('writes nothing to stdout, and at the default level nothing at all for a join, an assignment and a leave', async () => {
  const { stdout, stderr } = await run({});
  expect(stdout).toBe('assigned and closed\n');
  expect(stderr).toBe('');
});

it('writes the group member\'s info lines to stderr when STRATA_LOG_LEVEL=info, still nothing to stdout', async () => {
  const { stdout, stderr } = await run({ STRATA_LOG_LEVEL: 'info' });
  expect(stdout).toBe('assigned and closed\n');
  const messages = stderr
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { msg: string; service: string });
  expect(messages.map((line) => line.msg)).toEqual(expect.arrayContaining(['joined the group', 'partitions assigned']));
  expect(new Set(messages.map((line) => line.service))).toEqual(new Set(['strata-client']));
});
