// Goal: the server RSS a phase reports includes a spike shorter than the 250 ms sampling interval
// (the kernel's peak, VmHWM, reset at the start of each phase), and a spike before the phase is not
// counted in it; a child that exits unasked says so (with how it ended) and one stopped or killed
// does not; a child outlives no fatal error of the process that started it. Method: a child node
// process that touches 128 MiB and frees it within a few milliseconds on SIGUSR2, watched by
// ServerProcess; idle children killed from outside; a process (the compiled ServerProcess, from
// dist/) that starts a child and then crashes. Linux only (/proc).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ServerProcess } from '../../src/bench/server-process.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { waitUntil } from '../helpers/wait.js';
import { running } from '../helpers/processes.js';

const SPIKE_MIB = 128;
const CHILD = `
process.on('SIGUSR2', () => {
  let spike = Buffer.alloc(${SPIKE_MIB} * 1024 * 1024, 1); // filled: every page resident
  spike = null;
  gc();
  console.log(JSON.stringify({ msg: 'spiked' }));
});
console.log(JSON.stringify({ address: 'none' }));
setInterval(() => undefined, 1000);
`;

let server: ServerProcess;

beforeAll(async () => {
  if (!existsSync('/proc/self/status')) return;
  server = await ServerProcess.start({ args: ['--expose-gc', '-e', CHILD], description: 'the test child', ready: (entry) => (typeof entry.address === 'string' ? entry.address : null) });
});
afterAll(async () => {
  await server?.stop();
});

/**
 * Signals the child to spike and waits until it has freed the memory again: it says so, and its
 * RSS is back under the spike (V8 may hand the pages back a moment after the collection).
 */
async function spike(): Promise<void> {
  const before = server.recentOutput.split('spiked').length;
  server.child.kill('SIGUSR2');
  await waitUntil(() => server.recentOutput.split('spiked').length > before && server.memory().rssMiB! < SPIKE_MIB, () => `a spike whose memory is freed; output: ${server.recentOutput}`);
}

it.skipIf(!existsSync('/proc/self/status'))('reports a short spike during the phase, not one before it', async (context) => {
  await spike();
  if (!server.resetPeaks()) context.skip(); // the kernel refused to reset its peak (clear_refs)
  const afterReset = server.memory();
  expect(afterReset.rssPeakPhaseMiB!).toBeLessThan(SPIKE_MIB);
  await spike();
  const memory = server.memory();
  expect(memory.rssMiB!).toBeLessThan(SPIKE_MIB);
  expect(memory.rssPeakPhaseMiB!).toBeGreaterThan(SPIKE_MIB);
});

/** A child that prints a line, says it is ready, and idles. */
const IDLE_CHILD = "console.error('idling'); console.log(JSON.stringify({ address: 'none' })); setInterval(() => undefined, 1000);";

function startIdleChild(): Promise<ServerProcess> {
  return ServerProcess.start({ args: ['-e', IDLE_CHILD], description: 'the test child', ready: (entry) => (typeof entry.address === 'string' ? entry.address : null) });
}


it.skipIf(!existsSync('/proc/self/status'))('says when the child exits unasked, and how; not when it was stopped or killed', async () => {
  const dying = await startIdleChild();
  process.kill(dying.pid, 'SIGKILL');
  await expect(dying.unexpectedExit).rejects.toThrow('the test child exited during the run (signal SIGKILL)');
  expect(dying.hasExited).toBe(true);
  expect(dying.recentOutput).toContain('idling');

  for (const end of ['stop', 'kill'] as const) {
    const child = await startIdleChild();
    let rejected = false;
    child.unexpectedExit.catch(() => (rejected = true));
    const closed = new Promise((resolve) => child.child.once('close', resolve));
    if (end === 'stop') await child.stop();
    else child.kill();
    await closed;
    await new Promise((resolve) => setImmediate(resolve)); // the handlers of the exit have run
    expect(rejected).toBe(false);
  }
});

it.skipIf(!existsSync('/proc/self/status'))('kills its child when the process that started it dies of a fatal error', async () => {
  const script = `
    import { ServerProcess } from ${JSON.stringify(join(PACKAGE_ROOT, 'dist', 'src', 'bench', 'server-process.js'))};
    const server = await ServerProcess.start({ args: ['-e', ${JSON.stringify(IDLE_CHILD)}], description: 'the child', ready: (entry) => (typeof entry.address === 'string' ? entry.address : null) });
    console.log(JSON.stringify({ pid: server.pid }));
    setTimeout(() => { throw new Error('a fatal error'); }, 0);
  `;
  const parent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let childPid: number | null = null;
  try {
    const exited = new Promise<number | null>((resolve) => parent.once('close', (code) => resolve(code)));
    createInterface({ input: parent.stdout! }).on('line', (line) => (childPid ??= (JSON.parse(line) as { pid: number }).pid));
    expect(await exited).toBe(1);
    expect(childPid).not.toBeNull();
    await waitUntil(() => !running(childPid!), `the child ${childPid} to be gone`);
  } finally {
    parent.kill('SIGKILL');
    if (childPid !== null && running(childPid)) process.kill(childPid, 'SIGKILL');
  }
});
