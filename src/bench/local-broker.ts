/**
 * `--local`: a Strata broker the benchmark starts itself, as a child process running
 * `strata serve` from this package on a temporary data directory with ephemeral ports. The
 * directory is removed when the broker stops, or at once after `kill` (SIGKILL). With `profileDirectory` the broker runs under
 * `node --cpu-prof` and writes a V8 CPU profile there when it exits (open it in Chrome DevTools).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../common/package-root.js';
import { ServerProcess } from './server-process.js';
import { BROKER_NODE_FLAGS } from '../config/node-flags.js';

export interface LocalBrokerOptions {
  /** Further `strata serve` flags (e.g. ['--flush', 'interval']). */
  serveArgs?: readonly string[];
  /** Write a V8 CPU profile of the broker into this directory. */
  profileDirectory?: string | null;
  /** Parent of the temporary data directory; the OS temp directory by default. */
  parentDirectory?: string;
}

export interface LocalBroker {
  server: ServerProcess;
  dataDirectory: string;
  /** HOST:PORT of its metrics and probes endpoint (null if it did not name one). */
  metricsAddress: string | null;
  /** Stops the broker (gracefully) and removes its data directory. Idempotent. */
  stop(): Promise<void>;
  /** Kills the broker (SIGKILL) and removes its data directory, synchronously. Idempotent. */
  kill(): void;
}

export async function startLocalBroker(options: LocalBrokerOptions = {}): Promise<LocalBroker> {
  const dataDirectory = mkdtempSync(join(options.parentDirectory ?? tmpdir(), 'strata-bench-'));
  const profile = options.profileDirectory ? ['--cpu-prof', '--cpu-prof-dir', options.profileDirectory] : [];
  const args = [
    ...BROKER_NODE_FLAGS,
    ...profile,
    join(PACKAGE_ROOT, 'bin', 'strata.js'),
    'serve',
    '--data-dir',
    dataDirectory,
    '--listen',
    '127.0.0.1:0',
    '--metrics-listen',
    '127.0.0.1:0',
    '--log-level',
    'info', // the 'listening' line gives the address; the broker logs nothing per request
    ...(options.serveArgs ?? []),
  ];
  // The child takes its settings from the flags alone, not from this process's STRATA_* variables.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('STRATA_')));
  let server: ServerProcess;
  let metricsAddress: string | null = null;
  // Until the start returns (and the run's StartedServers holds the broker), an exit of this
  // process (a second Ctrl-C during the start) would leave the directory: remove it then.
  const removeOnExit = (): void => removeDataDirectory(dataDirectory);
  process.on('exit', removeOnExit);
  try {
    server = await ServerProcess.start({
      args,
      description: 'the local broker',
      env,
      ready: (entry) => {
        if (entry.msg !== 'listening' || typeof entry.address !== 'string') return null;
        metricsAddress = typeof entry.metricsAddress === 'string' ? entry.metricsAddress : null;
        return entry.address;
      },
    });
  } catch (error) {
    removeDataDirectory(dataDirectory);
    throw error;
  } finally {
    process.off('exit', removeOnExit);
  }
  let stopping: Promise<void> | null = null;
  return {
    server,
    dataDirectory,
    metricsAddress,
    stop: () => {
      stopping ??= server.stop().finally(() => removeDataDirectory(dataDirectory));
      return stopping;
    },
    kill: () => {
      server.kill();
      removeDataDirectory(dataDirectory);
    },
  };
}

/**
 * Removes the broker's data directory. A broker just killed may live a moment after the signal
 * and add a file meanwhile: the removal then finds a directory not empty, and tries again.
 */
function removeDataDirectory(dataDirectory: string): void {
  rmSync(dataDirectory, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
}
