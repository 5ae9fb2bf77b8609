// Goal: a local broker killed (a second Ctrl-C, the bench process exiting) is gone at once with
// its data directory, removed before kill() returns; method: the compiled broker (dist/, built
// by `npm test`) started by startLocalBroker under a directory of the test's own. Linux only
// (/proc).
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { startLocalBroker } from '../../src/bench/local-broker.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';
import { waitUntil } from '../helpers/wait.js';
import { running } from '../helpers/processes.js';

const parent = temporaryDirectory('strata-local-broker-test-');
afterAll(() => removeDirectory(parent));


it.skipIf(!existsSync('/proc/self/status'))('kill: SIGKILL and the data directory removed, synchronously', async () => {
  const broker = await startLocalBroker({ parentDirectory: parent });
  const pid = broker.server.pid;
  try {
    expect(existsSync(broker.dataDirectory)).toBe(true);
    broker.kill();
    expect(existsSync(broker.dataDirectory)).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
    await waitUntil(() => !running(pid), 'the broker to be gone');
  } finally {
    if (running(pid)) process.kill(pid, 'SIGKILL');
  }
});
