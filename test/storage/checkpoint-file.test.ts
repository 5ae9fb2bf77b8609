// Goal: show the recovery checkpoint round-trips, rejects any damage (a changed character,
// truncation) as "no checkpoint", and is written atomically to disk; method: encode/decode
// directly, mutate the text systematically, and write/read through `nodeFileSystem` in a temp dir.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  decodeCheckpoint,
  encodeCheckpoint,
  readRecoveryCheckpoint,
  writeRecoveryCheckpoint,
} from '../../src/storage/checkpoint-file.js';
import { RECOVERY_CHECKPOINT_FILE } from '../../src/storage/file-names.js';
import { nodeFileSystem } from '../../src/storage/file-system.js';

describe('encodeCheckpoint / decodeCheckpoint', () => {
  it('round-trips recovery points', () => {
    for (const point of [0, 1, 42, 4096, 2 ** 32, 1_234_567_890_123, Number.MAX_SAFE_INTEGER]) {
      expect(decodeCheckpoint(encodeCheckpoint(point))).toBe(point);
    }
  });

  it('is human-readable text in the documented format', () => {
    const text = encodeCheckpoint(123);
    expect(text).toMatch(/^strata-recovery-checkpoint 1\nrecovery-point 123\ncrc32c [0-9a-f]{8}\n$/);
  });

  it('decodes any changed character as null', () => {
    const text = encodeCheckpoint(9876543210);
    for (let index = 0; index < text.length; index++) {
      const code = text.charCodeAt(index);
      for (const replacement of [code ^ 1, code ^ 0x20, '0'.charCodeAt(0), '9'.charCodeAt(0)]) {
        if (replacement === code) continue;
        const damaged = text.slice(0, index) + String.fromCharCode(replacement) + text.slice(index + 1);
        expect(decodeCheckpoint(damaged), `char ${index} -> ${JSON.stringify(String.fromCharCode(replacement))}`).toBeNull();
      }
    }
  });

  it('decodes truncated or extended text as null', () => {
    const text = encodeCheckpoint(77);
    for (let length = 0; length < text.length; length++) {
      expect(decodeCheckpoint(text.slice(0, length)), `length ${length}`).toBeNull();
    }
    expect(decodeCheckpoint(text + '\n')).toBeNull();
    expect(decodeCheckpoint(text + text)).toBeNull();
    expect(decodeCheckpoint(' ' + text)).toBeNull();
  });

  it('decodes a valid-looking text with a recovery point beyond 2^53 as null', () => {
    expect(decodeCheckpoint(encodeCheckpoint(2 ** 53 + 2))).toBeNull();
  });
});

describe('writeRecoveryCheckpoint / readRecoveryCheckpoint', () => {
  const directories: string[] = [];
  afterEach(() => {
    for (const directory of directories.splice(0)) fs.rmSync(directory, { recursive: true, force: true });
  });
  const tempDir = (): string => {
    const directory = fs.mkdtempSync(join(os.tmpdir(), 'strata-checkpoint-'));
    directories.push(directory);
    return directory;
  };

  it('reads null when there is no checkpoint', async () => {
    expect(await readRecoveryCheckpoint(nodeFileSystem, tempDir())).toBeNull();
  });

  it('writes, overwrites and reads back, leaving no temp file', async () => {
    const directory = tempDir();
    await writeRecoveryCheckpoint(nodeFileSystem, directory, 1000);
    expect(await readRecoveryCheckpoint(nodeFileSystem, directory)).toBe(1000);
    await writeRecoveryCheckpoint(nodeFileSystem, directory, 5);
    expect(await readRecoveryCheckpoint(nodeFileSystem, directory)).toBe(5);
    expect(fs.readdirSync(directory)).toEqual([RECOVERY_CHECKPOINT_FILE]);
    expect(fs.readFileSync(join(directory, RECOVERY_CHECKPOINT_FILE), 'utf8')).toBe(encodeCheckpoint(5));
  });

  it('reads a damaged or torn file as null', async () => {
    const directory = tempDir();
    await writeRecoveryCheckpoint(nodeFileSystem, directory, 31337);
    const path = join(directory, RECOVERY_CHECKPOINT_FILE);
    const text = fs.readFileSync(path, 'utf8');
    fs.writeFileSync(path, text.replace('31337', '31338'));
    expect(await readRecoveryCheckpoint(nodeFileSystem, directory)).toBeNull();
    fs.writeFileSync(path, text.slice(0, text.length - 4));
    expect(await readRecoveryCheckpoint(nodeFileSystem, directory)).toBeNull();
    fs.writeFileSync(path, '');
    expect(await readRecoveryCheckpoint(nodeFileSystem, directory)).toBeNull();
  });
});
