/**
 * Shared helpers for integration tests: a real broker (storage, LMDB, gRPC) on an ephemeral
 * loopback port with a temporary data directory, in this process (`startTestBroker`) or as a
 * child process running the compiled CLI (`spawnBroker`, for kill -9 and signal tests).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { DEFAULT_RECOVERY_CHECKPOINT_INTERVAL_MS } from '../../src/common/broker-limits.js';
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PRODUCE_MEMORY_BYTES } from '../../src/common/request-limits.js';
import { type ServeSettings } from '../../src/config/broker-options.js';
import { DEFAULT_LOG_CONFIG } from '../../src/storage/log-config.js';
import { DEFAULT_INDEX_CACHE_BYTES } from '../../src/storage/index-cache.js';
import { DEFAULT_TAIL_CACHE_BYTES } from '../../src/storage/tail-cache.js';
import { type RunningBroker, runBroker } from '../../src/server/run-broker.js';

export function temporaryDirectory(prefix = 'strata-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A loopback port nothing listens on (bound, then closed): free to listen on, refused to connect to. */
export async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function removeDirectory(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

export function testSettings(dataDir: string, overrides: Partial<ServeSettings> = {}): ServeSettings {
  return {
    dataDir,
    listen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    defaultPartitions: 1,
    topicDefaults: { ...DEFAULT_LOG_CONFIG },
    // As `strata serve`: direct writes for large groups, with the tail cache serving them.
    directWrites: true,
    // As `strata serve`: small writes and fdatasyncs on the event loop.
    inlineIo: true,
    tailCacheBytes: DEFAULT_TAIL_CACHE_BYTES,
    indexCacheBytes: DEFAULT_INDEX_CACHE_BYTES,
    maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
    produceMemoryBytes: DEFAULT_PRODUCE_MEMORY_BYTES,
    retentionCheckIntervalMs: 60 * 60 * 1000,
    recoveryCheckpointIntervalMs: DEFAULT_RECOVERY_CHECKPOINT_INTERVAL_MS,
    shutdownTimeoutMs: 5_000,
    groupSessionTimeoutMs: 45_000,
    groupHeartbeatIntervalMs: 5_000,
    offsetsRetentionMs: 7 * 24 * 60 * 60 * 1000,
    tls: null,
    authenticator: null,
    ...overrides,
  };
}

export interface TestBroker extends RunningBroker {
  dataDir: string;
  /** Stops the broker and removes its data directory. */
  dispose(): Promise<void>;
}

/** A broker in this process. Pass `dataDir` to reopen an existing directory. */
export async function startTestBroker(overrides: Partial<ServeSettings> = {}): Promise<TestBroker> {
  const dataDir = overrides.dataDir ?? temporaryDirectory();
  const running = await runBroker(testSettings(dataDir, overrides));
  return {
    ...running,
    dataDir,
    dispose: async () => {
      await running.stop();
      removeDirectory(dataDir);
    },
  };
}

export interface BrokerProcess {
  child: ChildProcess;
  address: string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Lines the broker logged (JSON), for assertions on logs. */
  logLines: string[];
}

/**
 * Runs `strata serve` from dist/ (built by `npm test`'s build step) on a free port (or the
 * `--listen` of `extraArgs`) and resolves once it logs that it is listening.
 */
export async function spawnBroker(dataDir: string, extraArgs: string[] = [], timeoutMs = 30_000): Promise<BrokerProcess> {
  // A free port unless `extraArgs` names one (a restart on the address clients know).
  const listen = extraArgs.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'bin', 'strata.js'), 'serve', '--data-dir', dataDir, ...listen, '--metrics-listen', '127.0.0.1:0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STRATA_LOG_LEVEL: 'info' },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const logLines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker did not start within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
    void exited.then(({ code, signal }) => reject(new Error(`broker exited (${code ?? signal}) before listening; stderr: ${stderr}; log: ${logLines.join('\n')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logLines.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === 'listening' && entry.address) {
          clearTimeout(timer);
          resolve(entry.address);
        }
      } catch {
        // not a log line
      }
    });
  });
  return { child, address, exited, logLines };
}
