// Goal: show that only a partition directory of empty segments and bookkeeping counts as holding
// no records (the broker removes such a directory when a new partition takes its place);
// method: real directories in a temp dir, checked with `holdsNoRecords`.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeFileSystem } from '../../src/storage/file-system.js';
import { holdsNoRecords } from '../../src/storage/partition-records.js';

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function partitionWith(files: Record<string, string | Buffer>): string {
  const directory = mkdtempSync(join(os.tmpdir(), 'strata-partition-records-'));
  directories.push(directory);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(directory, name), content);
  return directory;
}

const stem = '00000000000000000000';

describe('holdsNoRecords', () => {
  it('is true for empty segments with their indexes and bookkeeping files, and for an empty directory', async () => {
    expect(await holdsNoRecords(nodeFileSystem, partitionWith({}))).toBe(true);
    const directory = partitionWith({
      [`${stem}.log`]: '',
      [`${stem}.index`]: Buffer.alloc(80, 1),
      [`${stem}.timeindex`]: Buffer.alloc(120, 1),
      '00000000000000000042.log': '',
      'recovery-point.checkpoint': 'x',
      'producer-state.checkpoint': 'x',
      '.clean-shutdown': '',
    });
    expect(await holdsNoRecords(nodeFileSystem, directory)).toBe(true);
  });

  it('is false when a segment log has bytes, a log awaits deletion, or a file is not one the broker writes', async () => {
    expect(await holdsNoRecords(nodeFileSystem, partitionWith({ [`${stem}.log`]: '', '00000000000000000042.log': 'records' }))).toBe(false);
    expect(await holdsNoRecords(nodeFileSystem, partitionWith({ [`${stem}.log.deleted`]: '' }))).toBe(false);
    expect(await holdsNoRecords(nodeFileSystem, partitionWith({ [`${stem}.log`]: '', 'notes.txt': '' }))).toBe(false);
    const withSubdirectory = partitionWith({});
    mkdirSync(join(withSubdirectory, 'nested'));
    expect(await holdsNoRecords(nodeFileSystem, withSubdirectory)).toBe(false);
  });

  it('is false for a directory it cannot read', async () => {
    expect(await holdsNoRecords(nodeFileSystem, join(partitionWith({}), 'missing'))).toBe(false);
    const file = partitionWith({ 'not-a-directory': 'x' });
    expect(await holdsNoRecords(nodeFileSystem, join(file, 'not-a-directory'))).toBe(false);
  });
});
