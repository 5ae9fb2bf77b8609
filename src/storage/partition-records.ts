/**
 * Whether a partition directory holds records. A create or an AddPartitions that a crash cut
 * off between making its directories and writing the topic's metadata leaves directories with
 * empty segments only; a new topic of that name may take those over, while a directory with
 * records (a topic deleted while the broker crashed) must not come back as a new partition.
 */
import { join } from 'node:path';
import type { FileSystem } from './file-system.js';
import { CLEAN_SHUTDOWN_FILE, LOG_SUFFIX, RECOVERY_CHECKPOINT_FILE, parseSegmentFileName } from './file-names.js';
import { PRODUCER_STATE_FILE } from './producer-state.js';

/** Files derived from the segments or describing them: they hold no records of their own. */
const BOOKKEEPING_FILES = new Set([RECOVERY_CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, PRODUCER_STATE_FILE]);

/**
 * True only when every segment log in `directory` is empty and every other file is an index or
 * bookkeeping. Anything else (a file it does not know, a `.deleted` log, a directory it cannot
 * read) counts as records: the answer decides whether the directory may be removed.
 */
export async function holdsNoRecords(fs: FileSystem, directory: string): Promise<boolean> {
  let names: string[];
  try {
    names = await fs.readdir(directory);
  } catch {
    return false;
  }
  for (const name of names) {
    if (BOOKKEEPING_FILES.has(name)) continue;
    const segment = parseSegmentFileName(name);
    if (segment === null) return false;
    if (segment.suffix !== LOG_SUFFIX) continue;
    if ((await fs.sizeOf(join(directory, name)).catch(() => -1)) !== 0) return false;
  }
  return true;
}
