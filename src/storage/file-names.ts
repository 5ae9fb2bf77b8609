/**
 * Names of the files in a partition directory, and nothing else.
 *
 *   <data-dir>/topics/<topic>/<partition>/
 *     00000000000000000000.log         record batches of the segment with base offset 0
 *     00000000000000000000.index       its sparse offset index
 *     00000000000000000000.timeindex   its time index
 *     recovery-point.checkpoint        offset below which everything is flushed
 *     .clean-shutdown                  present only after a clean close
 *     fenced                           present while fenced for corrupt data a read found
 *     sync-failed                      present after an fdatasync of the log failed (see sync-failure-marker.ts)
 *     *.deleted, *.tmp                 leftovers of interrupted deletes / checkpoint writes
 */
import { join } from 'node:path';

export const LOG_SUFFIX = '.log';
export const INDEX_SUFFIX = '.index';
export const TIME_INDEX_SUFFIX = '.timeindex';
export const DELETED_SUFFIX = '.deleted';
export const TEMP_SUFFIX = '.tmp';
export const RECOVERY_CHECKPOINT_FILE = 'recovery-point.checkpoint';
export const CLEAN_SHUTDOWN_FILE = '.clean-shutdown';
export const FENCE_FILE = 'fenced';
export const SYNC_FAILED_FILE = 'sync-failed';

const OFFSET_DIGITS = 20;
const SEGMENT_FILE_PATTERN = /^(\d{20})\.(log|index|timeindex)$/;

export function offsetFileStem(baseOffset: number): string {
  return String(baseOffset).padStart(OFFSET_DIGITS, '0');
}

export function segmentFilePath(directory: string, baseOffset: number, suffix: string): string {
  return join(directory, offsetFileStem(baseOffset) + suffix);
}

/** Parses `00000000000000000042.log` into { baseOffset: 42, suffix: '.log' }. */
export function parseSegmentFileName(name: string): { baseOffset: number; suffix: string } | null {
  const match = SEGMENT_FILE_PATTERN.exec(name);
  if (match === null) return null;
  const baseOffset = Number(match[1]);
  if (!Number.isSafeInteger(baseOffset)) return null;
  return { baseOffset, suffix: `.${match[2]}` };
}

/**
 * Whether a directory of these file names is a partition's log: every partition directory holds
 * a segment log from its creation on, and a recovery checkpoint once flushed (which a log whose
 * segment files were removed by hand starts again at).
 */
export function holdsPartitionLog(names: readonly string[]): boolean {
  return names.some((name) => name === RECOVERY_CHECKPOINT_FILE || parseSegmentFileName(name)?.suffix === LOG_SUFFIX);
}

export function topicsDirectory(dataDir: string): string {
  return join(dataDir, 'topics');
}

/** Where deleted topics' directories are moved before they are removed (emptied at start). */
export function graveyardDirectory(dataDir: string): string {
  return join(dataDir, 'deleted');
}

export function partitionDirectory(dataDir: string, topic: string, partition: number): string {
  return join(topicsDirectory(dataDir), topic, String(partition));
}
