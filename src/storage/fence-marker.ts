/**
 * The fence marker: a partition fenced at run time for corrupt data (a read, a lookup by time or
 * retention met it) records that in `<partition>/fenced`, so that a restart keeps it fenced.
 * Without it, a start looks for damage only from the recovery checkpoint on, and the partition
 * would serve again (and take appends) until a read met the damage once more. Only
 * `strata repair`, which scans every segment, removes it.
 *
 * Format (text, so an operator can read it):
 *   strata-fence 1
 *   file <name of the segment log>
 *   problem <what the read found, on one line>
 *
 * The marker's presence is what fences; its lines only make the message. One that is torn or
 * does not parse still fences, with a message that says so. Written like the checkpoint
 * (`replaceFileDurably`).
 */
import { join } from 'node:path';
import { FENCE_FILE } from './file-names.js';
import { type FileSystem, replaceFileDurably } from './file-system.js';

const HEADER = 'strata-fence 1';

export interface FenceRecord {
  /** Name of the segment log the damage was found in ('' when the marker does not say). */
  file: string;
  problem: string;
}

function encodeFenceMarker(record: FenceRecord): string {
  return `${HEADER}\nfile ${oneLine(record.file)}\nproblem ${oneLine(record.problem)}\n`;
}

/** What the marker's text says; a text that does not parse still stands for a fence. */
function decodeFenceMarker(text: string): FenceRecord {
  const match = /^strata-fence 1\nfile ([^\n]*)\nproblem ([^\n]*)\n$/.exec(text);
  if (match === null) return { file: '', problem: 'the fence marker recorded before the last restart does not parse' };
  return { file: match[1]!, problem: match[2]! };
}

export async function readFenceMarker(fs: FileSystem, directory: string): Promise<FenceRecord | null> {
  const bytes = await fs.readFile(join(directory, FENCE_FILE));
  return bytes === null ? null : decodeFenceMarker(bytes.toString('utf8'));
}

export async function writeFenceMarker(fs: FileSystem, directory: string, record: FenceRecord): Promise<void> {
  await replaceFileDurably(fs, join(directory, FENCE_FILE), Buffer.from(encodeFenceMarker(record)));
}

/** Removes the marker (none is fine), durably. */
export async function removeFenceMarker(fs: FileSystem, directory: string): Promise<void> {
  await fs.unlink(join(directory, FENCE_FILE));
  await fs.fsyncDirectory(directory);
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}
