/**
 * The sync-failure marker: a partition fenced because an fdatasync of its log failed records
 * that in `<partition>/sync-failed`, with the boot the failure happened in. Linux may keep the
 * pages it failed to write in its page cache, marked clean: a broker restarted on the same boot
 * would read them back during recovery, find them valid and serve them (and answer a
 * producer's retry of them as a duplicate), though the disk never got them. So a start on the
 * same boot refuses to open the partition; a start after the machine restarted removes the
 * marker and recovers the log from what the disk holds. Where the boot cannot be told
 * (no `/proc/sys/kernel/random/boot_id`), a start refuses until the marker is removed by hand.
 *
 * Format (text, so an operator can read it):
 *   strata-sync-failed 1
 *   boot <boot id, or "unknown">
 *   problem <the fence's message, on one line>
 *
 * Its presence is what counts; one that is torn or does not parse is taken as written on an
 * unknown boot. Written like the checkpoint (`replaceFileDurably`).
 */
import { join } from 'node:path';
import { SYNC_FAILED_FILE } from './file-names.js';
import { type FileSystem, replaceFileDurably } from './file-system.js';

const UNKNOWN_BOOT = 'unknown';

export interface SyncFailureRecord {
  /** The boot the fdatasync failed in (`FileSystem.bootId`); null when it could not be told. */
  boot: string | null;
  problem: string;
}

export async function writeSyncFailureMarker(fs: FileSystem, directory: string, record: SyncFailureRecord): Promise<void> {
  const text = `strata-sync-failed 1\nboot ${record.boot ?? UNKNOWN_BOOT}\nproblem ${record.problem.replace(/[\r\n]+/g, ' ')}\n`;
  await replaceFileDurably(fs, join(directory, SYNC_FAILED_FILE), Buffer.from(text));
}

export async function readSyncFailureMarker(fs: FileSystem, directory: string): Promise<SyncFailureRecord | null> {
  const bytes = await fs.readFile(join(directory, SYNC_FAILED_FILE));
  if (bytes === null) return null;
  const match = /^strata-sync-failed 1\nboot ([^\n]*)\nproblem ([^\n]*)\n$/.exec(bytes.toString('utf8'));
  if (match === null) return { boot: null, problem: 'an fdatasync failed (the marker that records it does not parse)' };
  return { boot: match[1] === UNKNOWN_BOOT ? null : match[1]!, problem: match[2]! };
}

/** Removes the marker (none is fine), durably. */
export async function removeSyncFailureMarker(fs: FileSystem, directory: string): Promise<void> {
  await fs.unlink(join(directory, SYNC_FAILED_FILE));
  await fs.fsyncDirectory(directory);
}
