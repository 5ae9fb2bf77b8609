// Goal: one process at a time opens a data directory — a second broker, in this process or
// another, or a repair beside a broker, is refused with FAILED_PRECONDITION naming the holder and
// touches nothing; the lock ends with the holder, even one killed with SIGKILL; method: real
// brokers on temp directories, `strata serve` as child processes, and the repair command.
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import yargs from 'yargs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Broker, REMOVALS_WAIT_MS } from '../../src/broker/broker.js';
import { DataDirectoryLock, LOCK_FILE } from '../../src/broker/data-directory-lock.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { repairCommand } from '../../src/cli/commands/repair.js';
import { readRecoveryCheckpoint } from '../../src/storage/checkpoint-file.js';
import { CLEAN_SHUTDOWN_FILE, RECOVERY_CHECKPOINT_FILE, TEMP_SUFFIX, partitionDirectory } from '../../src/storage/file-names.js';
import { NodeFileSystem } from '../../src/storage/file-system.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { STRATA_BIN } from '../helpers/cli.js';
import { TestFileSystem } from '../helpers/test-file-system.js';
import { removeDirectory, spawnBroker, temporaryDirectory } from '../helpers/test-server.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function dataDirectory(): string {
  const directory = temporaryDirectory('strata-lock-');
  cleanups.push(() => removeDirectory(directory));
  return directory;
}

async function openBroker(dataDir: string): Promise<Broker> {
  const broker = await Broker.open({ dataDir });
  cleanups.push(() => broker.close());
  return broker;
}

/** A broker on a new data directory through a TestFileSystem (closed at cleanup). */
async function brokerOnTestFileSystem(): Promise<{ dataDir: string; fs: TestFileSystem; broker: Broker; warnings: string[] }> {
  const dataDir = dataDirectory();
  const fs = new TestFileSystem();
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg as string) });
  const broker = await Broker.open({ dataDir, fs, logger });
  cleanups.push(() => broker.close());
  return { dataDir, fs, broker, warnings };
}

/** The open's error, or 'opened' (the broker then closed at cleanup): a readable failure either way. */
async function openOutcome(dataDir: string, options: { maxRequestBytes?: number } = {}): Promise<unknown> {
  try {
    const broker = await Broker.open({ dataDir, ...options });
    cleanups.push(() => broker.close());
    return 'opened';
  } catch (error) {
    return error;
  }
}

const BROKER_ADVICE = 'stop it first, or give this one another --data-dir';

function refusal(dataDir: string, holder: string, advice = BROKER_ADVICE, pid = process.pid): StrataError {
  return new StrataError(ErrorCode.FAILED_PRECONDITION, `data directory ${dataDir} is in use by another Strata process (${holder}, pid ${pid} on ${hostname()}); ${advice}`);
}

/** Runs `strata repair ARGS...` as main.ts does, failures thrown rather than printed. */
function repair(args: string[]): Promise<unknown> {
  const parser = repairCommand(yargs().strict().exitProcess(false)).fail((message, error) => {
    throw error ?? new Error(message);
  });
  return parser.parseAsync(['repair', ...args]);
}

/** A child process killed at cleanup if it is still running. */
function killedAtCleanup(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return exited;
}

describe('the data directory lock', () => {
  it('refuses a second broker on a data directory until the first has closed', async () => {
    const dataDir = dataDirectory();
    const first = await openBroker(dataDir);
    await first.createTopic('orders', 1, {});
    await first.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('kept') }]), 'all');

    const second = await openOutcome(dataDir);
    expect(second).toEqual(refusal(dataDir, 'broker'));
    expect(second).toMatchObject({ code: ErrorCode.FAILED_PRECONDITION });
    expect(readFileSync(join(dataDir, LOCK_FILE), 'utf8')).toBe(`broker, pid ${process.pid} on ${hostname()}\n`);
    // The refused broker opened nothing: the first goes on serving.
    await first.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('still') }]), 'all');

    await first.close();
    const third = await openBroker(dataDir);
    expect(third.partitionLog('orders', 0).logEndOffset).toBe(2);
  });

  it('is let go when a start fails after taking it', async () => {
    const dataDir = dataDirectory();
    expect(await openOutcome(dataDir, { maxRequestBytes: 1 })).toMatchObject({ message: expect.stringMatching(/--max-request-bytes/) });
    expect(await openOutcome(dataDir)).toBe('opened');
  });

  it('refuses a data directory that is a file, or whose topics/ is, with FAILED_PRECONDITION saying so', async () => {
    const parent = dataDirectory();
    const file = join(parent, 'a-file');
    writeFileSync(file, 'x');
    const inTheWay = expect.objectContaining({ code: ErrorCode.FAILED_PRECONDITION, message: expect.stringMatching(/: a file stands where a directory must be/) });
    expect(await openOutcome(file)).toEqual(inTheWay);
    expect(await openOutcome(join(file, 'below'))).toEqual(inTheWay);
    const withFileTopics = join(parent, 'data');
    mkdirSync(withFileTopics);
    writeFileSync(join(withFileTopics, 'topics'), 'x');
    expect(await openOutcome(withFileTopics)).toEqual(expect.objectContaining({ message: `cannot use data directory ${withFileTopics}: a file stands where a directory must be (the directory, one above it, or its topics/)` }));
  });

  it('release is idempotent, and a new lock can be taken after it', () => {
    const dataDir = dataDirectory();
    const lock = DataDirectoryLock.acquire(dataDir, 'test', 'wait');
    expect(() => DataDirectoryLock.acquire(dataDir, 'other', 'wait')).toThrow(refusal(dataDir, 'test', 'wait'));
    lock.release();
    lock.release();
    DataDirectoryLock.acquire(dataDir, 'other', 'wait').release();
  });

  it('keeps `strata repair` off a data directory a broker has open', async () => {
    const dataDir = dataDirectory();
    const broker = await openBroker(dataDir);
    await broker.createTopic('orders', 1, {});
    await broker.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('kept') }]), 'all');
    const partition = join(dataDir, 'topics', 'orders', '0');
    const before = readdirSync(partition).sort();
    await expect(repair(['--data-dir', dataDir, '--topic', 'orders', '--partition', '0'])).rejects.toThrow(refusal(dataDir, 'broker', 'stop the broker first'));
    await expect(repair(['--dir', partition])).rejects.toThrow(/ is in use by another Strata process \(broker, pid \d+ on .*\); stop the broker first$/);
    // Through a symbolic link to the partition, too.
    const link = join(dataDirectory(), 'link-to-partition');
    symlinkSync(partition, link);
    await expect(repair(['--dir', link])).rejects.toThrow(/ is in use by another Strata process \(broker, pid \d+ on .*\); stop the broker first$/);
    expect(readdirSync(partition).sort()).toEqual(before);
  });

  it('keeps `strata repair` off a data directory whose topics directory is a symbolic link', async () => {
    const dataDir = dataDirectory();
    const elsewhere = join(dataDirectory(), 'topics-on-another-volume');
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(dataDir, 'topics'));
    const broker = await openBroker(dataDir);
    await broker.createTopic('orders', 1, {});
    await broker.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('kept') }]), 'all');
    await expect(repair(['--data-dir', dataDir, '--topic', 'orders', '--partition', '0'])).rejects.toThrow(refusal(dataDir, 'broker', 'stop the broker first'));
    await expect(repair(['--dir', join(dataDir, 'topics', 'orders', '0')])).rejects.toThrow(refusal(dataDir, 'broker', 'stop the broker first'));
    // By its real path, where no data directory can be found: refused, not repaired unlocked.
    const real = join(elsewhere, 'orders', '0');
    const before = readdirSync(real).sort();
    await expect(repair(['--dir', real])).rejects.toThrow(`cannot tell which data directory holds ${real} (none has its metadata two levels above it), so cannot make sure no broker has it open`);
    expect(readdirSync(real).sort()).toEqual(before);
  });

  it('lets `strata repair --dir --outside-data-dir` repair a partition copied out of a data directory without locking anything', async () => {
    const dataDir = dataDirectory();
    const broker = await openBroker(dataDir);
    await broker.createTopic('orders', 1, {});
    await broker.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('kept') }]), 'all');
    // A copy under a directory named "topics" that is not a data directory (no metadata store).
    const copy = join(dataDirectory(), 'topics', 'orders', '0');
    mkdirSync(join(copy, '..'), { recursive: true });
    cpSync(join(dataDir, 'topics', 'orders', '0'), copy, { recursive: true });
    await expect(repair(['--dir', copy])).rejects.toThrow(/add --outside-data-dir$/);
    await repair(['--dir', copy, '--outside-data-dir']);
    expect(readdirSync(join(copy, '..', '..', '..'))).toEqual(['topics']); // no .lock written beside it
  });

  it("is held until the removal of a deleted topic's directory has finished", async () => {
    const { dataDir, fs, broker } = await brokerOnTestFileSystem();
    await broker.createTopic('doomed', 2, {});
    const held = fs.hold('removeTree');
    await broker.deleteTopic('doomed'); // answered before the removal, which goes on in the background
    await held.reached;
    let metadataClosed!: () => void;
    const metadataClosing = new Promise<void>((resolve) => (metadataClosed = resolve));
    const store = broker.metadataStore;
    const close = store.close.bind(store);
    store.close = async () => {
      await close();
      metadataClosed();
    };
    let closeReturned = false;
    const closing = broker.close().then(() => (closeReturned = true));
    try {
      await metadataClosing; // the close's last step before it waits for the removal
      await new Promise((resolve) => setImmediate(resolve));
      expect(closeReturned, 'the close waits for the removal').toBe(false);
      expect(await openOutcome(dataDir)).toEqual(refusal(dataDir, 'broker'));
    } finally {
      held.release();
    }
    await closing;
    expect(readdirSync(join(dataDir, 'deleted'))).toEqual([]);
    expect(await openOutcome(dataDir)).toBe('opened');
  });

  it('is held until a recovery checkpoint pass under way has written its checkpoint', async () => {
    const { dataDir, fs, broker } = await brokerOnTestFileSystem();
    await broker.createTopic('orders', 2, {});
    for (const partition of [0, 1]) await broker.produceBatches('orders', partition, buildBatch([{ value: Buffer.from('x') }]), 'all');
    // The pass's write of partition 0's checkpoint is held at its rename.
    const held = fs.hold('rename', join('orders', '0', RECOVERY_CHECKPOINT_FILE));
    const pass = broker.checkpointRecoveryPoints();
    await held.reached;
    let closeReturned = false;
    const closing = broker.close().then(() => (closeReturned = true));
    try {
      // Partition 1 closes cleanly meanwhile; the close as a whole waits for partition 0.
      const otherClosed = join(partitionDirectory(dataDir, 'orders', 1), CLEAN_SHUTDOWN_FILE);
      await vi.waitFor(() => expect(existsSync(otherClosed)).toBe(true), { timeout: 10_000 });
      expect(closeReturned, 'the close waits for the pass').toBe(false);
      expect(await openOutcome(dataDir)).toEqual(refusal(dataDir, 'broker'));
    } finally {
      held.release();
    }
    await Promise.all([pass, closing]);
    for (const partition of [0, 1]) {
      const directory = partitionDirectory(dataDir, 'orders', partition);
      expect(readdirSync(directory).filter((name) => name.endsWith(TEMP_SUFFIX)), `partition ${partition}: no checkpoint write left half done`).toEqual([]);
      expect(existsSync(join(directory, CLEAN_SHUTDOWN_FILE)), `partition ${partition} closed cleanly`).toBe(true);
      expect(await readRecoveryCheckpoint(new NodeFileSystem(), directory), `partition ${partition}'s checkpoint`).toBe(1);
    }
    expect(await openOutcome(dataDir)).toBe('opened');
  });

  it("logs a failed removal of a deleted topic's directory and goes on; the next start removes it", async () => {
    const { dataDir, fs, broker, warnings } = await brokerOnTestFileSystem();
    await broker.createTopic('doomed', 1, {});
    fs.removeTreeError = 'EACCES';
    const failed = fs.next('removeTree');
    await broker.deleteTopic('doomed');
    await failed;
    await broker.createTopic('after', 1, {}); // still serving
    await vi.waitFor(() => expect(warnings).toContain('could not remove the directory of a deleted topic; it is removed at the next start'));
    await broker.close();
    expect(readdirSync(join(dataDir, 'deleted'))).toHaveLength(1);
    expect(await openOutcome(dataDir)).toBe('opened');
    await vi.waitFor(() => expect(readdirSync(join(dataDir, 'deleted'))).toEqual([]), { timeout: 10_000 });
  });

  it(`stops waiting for a stalled removal after ${REMOVALS_WAIT_MS} ms, and the next start removes what is left`, async () => {
    const { dataDir, fs, broker, warnings } = await brokerOnTestFileSystem();
    await broker.createTopic('doomed', 1, {});
    const held = fs.hold('removeTree');
    try {
      await broker.deleteTopic('doomed');
      await held.reached;
      const closing = performance.now();
      await broker.close(); // returns with the removal still held
      // It waited its bound first (timers never fire early; a millisecond of rounding aside), and said so.
      expect(performance.now() - closing).toBeGreaterThanOrEqual(REMOVALS_WAIT_MS - 2);
      expect(warnings).toContain("stopping before the removal of deleted topics' directories finished; the next start goes on with it");
      expect(readdirSync(join(dataDir, 'deleted'))).toHaveLength(1);
      expect(await openOutcome(dataDir)).toBe('opened');
      await vi.waitFor(() => expect(readdirSync(join(dataDir, 'deleted'))).toEqual([]), { timeout: 10_000 });
    } finally {
      held.release();
    }
  });

  it('refuses a second `strata serve` with one line and exit code 1, and ends with a holder killed by SIGKILL', async () => {
    const dataDir = dataDirectory();
    const holder = await spawnBroker(dataDir);
    void killedAtCleanup(holder.child);

    const second = spawn(process.execPath, [STRATA_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STRATA_LOG_LEVEL: 'silent' },
    });
    const exited = killedAtCleanup(second);
    let stderr = '';
    second.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    second.stdout.resume();
    expect(await exited).toBe(1);
    expect(stderr).toBe(`strata: ${refusal(dataDir, 'broker', BROKER_ADVICE, holder.child.pid).message}\n`);

    holder.child.kill('SIGKILL');
    await holder.exited;
    const next = await spawnBroker(dataDir);
    void killedAtCleanup(next.child);
    next.child.kill('SIGTERM');
    expect(await next.exited).toEqual({ code: 0, signal: null });
  });
});
