// Goal: one process at a time opens a data directory — a second broker, in this process or
// another, or a repair beside a broker, is refused with FAILED_PRECONDITION naming the holder and
// touches nothing; the lock ends with the holder, even one killed with SIGKILL; method: real
// brokers on temp directories, `strata serve` as child processes, and the repair command.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import yargs from 'yargs';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { DataDirectoryLock, LOCK_FILE } from '../../src/broker/data-directory-lock.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { repairCommand } from '../../src/cli/commands/repair.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { STRATA_BIN } from '../helpers/cli.js';
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

function refusal(dataDir: string, holder: string): StrataError {
  return new StrataError(
    ErrorCode.FAILED_PRECONDITION,
    `data directory ${dataDir} is in use by another Strata process (${holder}, pid ${process.pid}); stop it first, or give this one another --data-dir`,
  );
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
    expect(readFileSync(join(dataDir, LOCK_FILE), 'utf8')).toBe(`broker, pid ${process.pid}\n`);
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

  it('release is idempotent, and a new lock can be taken after it', () => {
    const dataDir = dataDirectory();
    const lock = DataDirectoryLock.acquire(dataDir, 'test');
    expect(() => DataDirectoryLock.acquire(dataDir, 'other')).toThrow(refusal(dataDir, 'test'));
    lock.release();
    lock.release();
    DataDirectoryLock.acquire(dataDir, 'other').release();
  });

  it('keeps `strata repair` off a data directory a broker has open', async () => {
    const dataDir = dataDirectory();
    const broker = await openBroker(dataDir);
    await broker.createTopic('orders', 1, {});
    await broker.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('kept') }]), 'all');
    const partition = join(dataDir, 'topics', 'orders', '0');
    const before = readdirSync(partition).sort();
    const parser = repairCommand(yargs().strict().exitProcess(false)).fail((message, error) => {
      throw error ?? new Error(message);
    });
    await expect(parser.parseAsync(['repair', '--data-dir', dataDir, '--topic', 'orders', '--partition', '0'])).rejects.toThrow(refusal(dataDir, 'broker'));
    await expect(parser.parseAsync(['repair', '--dir', partition])).rejects.toThrow(/ is in use by another Strata process \(broker, pid \d+\)/);
    expect(readdirSync(partition).sort()).toEqual(before);
  });

  it('refuses a second `strata serve` with one line and exit code 1, and ends with a holder killed by SIGKILL', async () => {
    const dataDir = dataDirectory();
    const holder = await spawnBroker(dataDir);
    cleanups.push(async () => {
      holder.child.kill('SIGKILL');
      await holder.exited;
    });

    const second = spawn(process.execPath, [STRATA_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STRATA_LOG_LEVEL: 'silent' },
    });
    let stderr = '';
    second.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    second.stdout.resume();
    const code = await new Promise<number | null>((resolve) => second.once('exit', (exitCode) => resolve(exitCode)));
    expect(code).toBe(1);
    expect(stderr).toBe(
      `strata: data directory ${dataDir} is in use by another Strata process (broker, pid ${holder.child.pid}); stop it first, or give this one another --data-dir\n`,
    );

    holder.child.kill('SIGKILL');
    await holder.exited;
    const next = await spawnBroker(dataDir);
    next.child.kill('SIGTERM');
    expect(await next.exited).toEqual({ code: 0, signal: null });
  });
});
