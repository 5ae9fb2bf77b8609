// Goal: the server RSS a phase reports includes a spike shorter than the 250 ms sampling interval
// (the kernel's peak, VmHWM, reset at the start of each phase), and a spike before the phase is not
// counted in it. Method: a child node process that touches 128 MiB and frees it within a few
// milliseconds on SIGUSR2, watched by ServerProcess; Linux only (/proc).
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ServerProcess } from '../../src/bench/server-process.js';
import { waitUntil } from '../helpers/wait.js';

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
