/**
 * The recovery checkpoint: an offset below which every record is durable, and every segment
 * before the one holding it is sealed, with durable indexes. A roll writes it at the new
 * segment's base, a clean close at the log end, and the broker moves it up to the durable end
 * every `--recovery-checkpoint-interval-ms`. After an unclean stop, segments from the one
 * holding this offset onwards are scanned; earlier ones are trusted (their indexes still get a
 * sanity check on load). Damage below it is damage to durable data, never a torn tail.
 *
 * Format (text, so an operator can read it):
 *   strata-recovery-checkpoint 1
 *   recovery-point <offset>
 *   crc32c <8 hex digits of the CRC32C of the lines above, newlines included>
 *
 * Written atomically: temp file, fsync, rename over the old one, fsync the directory. A missing
 * checkpoint reads as "recover everything" (recovery point 0), which is slow but safe. A damaged
 * one (present, not valid: being written atomically, never torn by a crash) reads the same, and
 * is reported as damaged: without it, recovery cannot tell an unfinished write at the end of
 * the log from damage to acknowledged records there, so it cuts nothing (see log-loader.ts).
 */
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { RECOVERY_CHECKPOINT_FILE } from './file-names.js';
import { type FileSystem, replaceFileDurably } from './file-system.js';

const HEADER = 'strata-recovery-checkpoint 1';

export function encodeCheckpoint(recoveryPoint: number): string {
  const body = `${HEADER}\nrecovery-point ${recoveryPoint}\n`;
  return `${body}crc32c ${crc32c(Buffer.from(body)).toString(16).padStart(8, '0')}\n`;
}

/** The recovery point in `text`, or null when the text is not a valid checkpoint. */
export function decodeCheckpoint(text: string): number | null {
  const match = /^(strata-recovery-checkpoint 1\nrecovery-point (\d+)\n)crc32c ([0-9a-f]{8})\n$/.exec(text);
  if (match === null) return null;
  const expected = crc32c(Buffer.from(match[1]!)).toString(16).padStart(8, '0');
  if (expected !== match[3]) return null;
  const recoveryPoint = Number(match[2]);
  return Number.isSafeInteger(recoveryPoint) ? recoveryPoint : null;
}

export async function readRecoveryCheckpoint(fs: FileSystem, directory: string): Promise<number | null> {
  return (await loadRecoveryCheckpoint(fs, directory)).recoveryPoint;
}

/** The recovery point (null when there is none, or it is damaged), and whether a checkpoint file is there but damaged. */
export async function loadRecoveryCheckpoint(fs: FileSystem, directory: string): Promise<{ recoveryPoint: number | null; damaged: boolean }> {
  const bytes = await fs.readFile(join(directory, RECOVERY_CHECKPOINT_FILE));
  if (bytes === null) return { recoveryPoint: null, damaged: false };
  const recoveryPoint = decodeCheckpoint(bytes.toString('utf8'));
  return { recoveryPoint, damaged: recoveryPoint === null };
}

/**
 * `syncDirectory: false` (a periodic move): a crash may then keep the checkpoint before it, a
 * lower one, which only makes recovery scan more.
 */
export async function writeRecoveryCheckpoint(fs: FileSystem, directory: string, recoveryPoint: number, options = { syncDirectory: true }): Promise<void> {
  await replaceFileDurably(fs, join(directory, RECOVERY_CHECKPOINT_FILE), Buffer.from(encodeCheckpoint(recoveryPoint)), options);
}
