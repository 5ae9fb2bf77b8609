// Goal: `strata repair --dir` opens only a partition directory, and leaves any other directory
// exactly as it was; method: the repair command from the sources run through yargs on temporary
// directories, and checkPartitionDirectory on the shapes a partition directory takes.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yargs from 'yargs';
import { afterEach, describe, expect, it } from 'vitest';
import { checkPartitionDirectory, repairCommand } from '../../src/cli/commands/repair.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) removeDirectory(directory);
});

function dataDirectory(): string {
  const directory = temporaryDirectory('strata-repair-');
  directories.push(directory);
  return directory;
}

/** Runs `strata repair ARGS...` as main.ts does, failures thrown rather than printed. */
function repair(args: string[]): Promise<unknown> {
  const parser = repairCommand(yargs().strict().exitProcess(false)).fail((message, error) => {
    throw error ?? new Error(message);
  });
  return parser.parseAsync(['repair', ...args]);
}

describe('repair --dir', () => {
  it('refuses a directory that is not a partition\'s, and writes nothing into it', async () => {
    const topics = join(dataDirectory(), 'topics');
    mkdirSync(join(topics, 'orders', '0'), { recursive: true });
    await expect(repair(['--dir', topics])).rejects.toThrow(
      `${topics} is not a partition directory: it holds no segment log (00000000000000000000.log) and no recovery-point.checkpoint; a partition directory is <data-dir>/topics/<topic>/<partition>`,
    );
    expect(readdirSync(topics)).toEqual(['orders']);
  });
});

describe('checkPartitionDirectory', () => {
  it('accepts a directory with a segment log or a recovery checkpoint', () => {
    const withLog = dataDirectory();
    writeFileSync(join(withLog, '00000000000000000100.log'), '');
    expect(() => checkPartitionDirectory(withLog)).not.toThrow();
    const withCheckpoint = dataDirectory();
    writeFileSync(join(withCheckpoint, 'recovery-point.checkpoint'), '');
    expect(() => checkPartitionDirectory(withCheckpoint)).not.toThrow();
  });

  it('refuses an empty directory, one with other .log files, and a file', () => {
    const empty = dataDirectory();
    expect(() => checkPartitionDirectory(empty)).toThrow(/is not a partition directory/);
    const logs = dataDirectory();
    writeFileSync(join(logs, 'server.log'), 'a log of something else');
    expect(() => checkPartitionDirectory(logs)).toThrow(/is not a partition directory/);
    expect(() => checkPartitionDirectory(join(logs, 'server.log'))).toThrow(/^cannot read .*server\.log: ENOTDIR \(not a directory\)$/);
  });
});
