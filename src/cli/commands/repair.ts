/**
 * `strata repair`: recovers a fenced partition. Opens the partition log with repair enabled:
 * the bytes from the first corrupt batch to the end of its segment, and every later segment,
 * are moved to `<partition>/quarantine/<time>/` (nothing is deleted), the log is truncated at
 * the damage, and it is closed cleanly. Run it with the broker stopped: it takes the data
 * directory's lock, so it refuses to run beside a broker on it. A directory holding no
 * segment log and no recovery checkpoint is refused: it is not a partition's.
 *
 * A partition the metadata lists whose directory is missing or holds no segment log and no
 * recovery checkpoint (the broker refuses to start then), named by `--topic`/`--partition`, is
 * started again, empty, at the highest offset any group has committed for it, or at
 * `--start-offset` (not below that): its records are gone, but committed offsets stay valid and
 * no group skips records produced from then on. Offsets between the highest committed one and
 * the old log end are given out again unless `--start-offset` is at or past that end (the
 * metric `strata_partition_log_end_offset` had it).
 */
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Argv } from 'yargs';
import { DataDirectoryLock } from '../../broker/data-directory-lock.js';
import { METADATA_FILE, MetadataStore } from '../../broker/metadata-store.js';
import { rootLogger } from '../../common/logger.js';
import { OffsetStore } from '../../groups/offset-store.js';
import { writeRecoveryCheckpoint } from '../../storage/checkpoint-file.js';
import { nodeFileSystem } from '../../storage/file-system.js';
import { checkTopicName } from '../../common/topic-name.js';
import { LOG_SUFFIX, RECOVERY_CHECKPOINT_FILE, offsetFileStem, holdsPartitionLog, partitionDirectory, topicsDirectory } from '../../storage/file-names.js';
import { PartitionLog } from '../../storage/partition-log.js';
import { UsageError } from '../cli-errors.js';
import { printLine } from '../output.js';
import { systemErrorText } from '../../common/errors.js';

export function repairCommand(yargs: Argv): Argv {
  return yargs.command(
    'repair',
    'Repair a fenced partition: quarantine the damaged bytes and everything after them, then truncate (broker stopped)',
    (command) =>
      command
        .option('data-dir', { type: 'string', default: './data', describe: 'Broker data directory', requiresArg: true })
        .option('topic', { type: 'string', describe: 'Topic of the partition', requiresArg: true })
        .option('partition', { type: 'number', describe: 'Partition number', requiresArg: true })
        .option('dir', { type: 'string', describe: 'Partition directory (instead of --data-dir/--topic/--partition)', requiresArg: true })
        .option('start-offset', { type: 'number', requiresArg: true, describe: 'Where a partition whose segment log is missing starts again (default: the highest offset committed for it)' })
        .option('outside-data-dir', {
          type: 'boolean',
          default: false,
          describe: "With --dir: the directory is a copy outside any broker's data directory, so there is no lock to take",
        })
        .example('strata repair --data-dir /var/lib/strata --topic orders --partition 3', 'repair orders-3'),
    async (argv) => {
      if (argv.dir !== undefined && (argv.topic !== undefined || argv.partition !== undefined)) {
        throw new UsageError('give --dir, or --topic and --partition (with --data-dir), not both: they could name different partitions');
      }
      if (argv['outside-data-dir'] && argv.dir === undefined) throw new UsageError('--outside-data-dir goes with --dir (a partition directory copied out of a data directory)');
      const directory = argv.dir ?? resolvePartition(argv['data-dir'], argv.topic, argv.partition);
      const startOffset = argv['start-offset'];
      if (startOffset !== undefined && (!Number.isSafeInteger(startOffset) || startOffset < 0)) throw new UsageError(`--start-offset must be a non-negative integer, got ${startOffset}`);
      if (startOffset !== undefined && argv.dir !== undefined) throw new UsageError('--start-offset goes with --topic and --partition (a partition whose segment log is missing, which the metadata must list), not with --dir');
      const contents = partitionDirectoryContents(directory);
      if (argv.dir === undefined && contents !== 'a log') {
        await printLine(await restartMissingPartition(argv['data-dir'], argv.topic!, argv.partition!, startOffset));
        return;
      }
      checkPartitionDirectory(directory, contents);
      if (startOffset !== undefined) throw new UsageError('--start-offset is only for a partition whose segment log is missing; this one has its log, which the repair keeps');
      const lock = argv.dir === undefined ? DataDirectoryLock.acquire(argv['data-dir'], 'strata repair', REPAIR_ADVICE) : lockDataDirectoryOf(directory);
      if (lock === null && !argv['outside-data-dir']) {
        // Repairing beside a live broker would cut and move files it appends to.
        throw new Error(
          `cannot tell which data directory holds ${directory} (none has its metadata two levels above it), so cannot make sure no broker has it open: name the partition with --data-dir, --topic and --partition, or, for a copy outside any data directory, add --outside-data-dir`,
        );
      }
      let summary: string;
      try {
        const log = await PartitionLog.open({ directory, repair: true });
        try {
          // A safeguard: the scan from offset 0 cuts or quarantines damage before the producer-state
          // replay can meet it, but a fence left all the same must not pass for a repair.
          if (log.fenced !== null) throw new Error(`the repair could not clear the damage: ${log.fenced.message}`);
          summary = repairSummary(log);
        } finally {
          await log.close();
        }
      } finally {
        lock?.release();
      }
      await printLine(summary);
    },
  );
}

/**
 * Starts again a partition the metadata lists whose directory is missing or holds no segment
 * log and no recovery checkpoint: an empty log at `requested`, or else the highest offset
 * committed for it (by way of a recovery checkpoint, which an empty log starts at), its
 * directory and the ones above it fsynced. Returns what it did, in one line.
 */
async function restartMissingPartition(dataDir: string, topic: string, partition: number, requested: number | undefined): Promise<string> {
  const directory = partitionDirectory(dataDir, topic, partition);
  const unknown = `no partition ${partition} of topic "${topic}" in ${dataDir}: its metadata lists no such partition`;
  // Opening the metadata store creates one: a mistyped --data-dir would get an empty store.
  if (!existsSync(join(dataDir, METADATA_FILE))) throw new Error(`no partition ${partition} of topic "${topic}" in ${dataDir}: it is not a data directory (no ${METADATA_FILE})`);
  const lock = DataDirectoryLock.acquire(dataDir, 'strata repair', REPAIR_ADVICE);
  try {
    const metadata = MetadataStore.open(dataDir);
    let committed: number;
    try {
      const record = metadata.getTopic(topic);
      if (record === undefined || partition >= record.partitions) throw new Error(unknown);
      committed = OffsetStore.highestCommitted(metadata.root, topic, partition) ?? 0;
    } finally {
      await metadata.close();
    }
    if (requested !== undefined && requested < committed) {
      throw new UsageError(`--start-offset ${requested} is below offset ${committed}, which a group has committed for this partition: start at ${committed} or later, so that its committed offset stays within the log`);
    }
    const startOffset = requested ?? committed;
    await nodeFileSystem.mkdirs(directory);
    if (startOffset > 0) await writeRecoveryCheckpoint(nodeFileSystem, directory, startOffset);
    // Silent: its one warning (an empty log at a checkpoint) says what the summary says.
    const log = await PartitionLog.open({ directory, logger: rootLogger.child({}, { level: 'silent' }) });
    await log.close();
    await nodeFileSystem.fsyncDirectory(dirname(directory));
    await nodeFileSystem.fsyncDirectory(topicsDirectory(dataDir));
    const where =
      requested !== undefined ? `offset ${startOffset}, as asked` : startOffset > 0 ? `offset ${startOffset}, the highest any group had committed for it` : 'offset 0 (no group had committed an offset for it)';
    const reused = requested === undefined ? '; offsets the old log had above that are given out again (--start-offset starts past them)' : '';
    return `re-created: partition ${partition} of topic "${topic}" had no segment log; its records are gone, and its log starts again, empty, at ${where}${reused}`;
  } finally {
    lock.release();
  }
}

/** What the repair did, in one line. */
function repairSummary(log: PartitionLog): string {
  const report = log.recovery;
  const lifted = report?.liftedFence ? '; the fence a read recorded before is lifted' : '';
  if (report?.quarantined) {
    return `repaired: offsets from ${report.quarantined.fromOffset} (${report.quarantined.bytes} bytes) moved to ${report.quarantined.directory}; log now ends at ${log.logEndOffset}${lifted}`;
  }
  if (lifted !== '') return `nothing to repair: log ${log.logStartOffset}..${log.logEndOffset} is consistent (the damage a read found is no longer in it: retention may have removed its segment)${lifted}`;
  return `nothing to repair: log ${log.logStartOffset}..${log.logEndOffset} is consistent`;
}

/** What a directory holds, as a repair sees it; `'missing'` when it does not exist. */
type DirectoryContents = 'missing' | 'a log' | 'no log';

/**
 * What `directory` holds: a partition's log (a segment log, or a recovery checkpoint), no log,
 * or nothing at all (it is missing). Every partition directory holds a segment log from its
 * creation on, and a recovery checkpoint once flushed. Throws, saying why, when the directory
 * exists but cannot be read.
 */
function partitionDirectoryContents(directory: string): DirectoryContents {
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw new Error(`cannot read ${directory}: ${systemErrorText(error as NodeJS.ErrnoException)}`);
  }
  return holdsPartitionLog(names) ? 'a log' : 'no log';
}

/**
 * Refuses a directory that is not a partition's: opening a log there would write segment files,
 * checkpoints and a clean-shutdown marker into it (`--dir data/topics`, say), and opening one
 * that does not exist would create it (a mistyped name would make an empty partition).
 */
export function checkPartitionDirectory(directory: string, contents = partitionDirectoryContents(directory)): void {
  if (contents === 'missing') throw new Error(`no partition directory ${directory}`);
  if (contents === 'no log') {
    throw new Error(
      `${directory} is not a partition directory: it holds no segment log (${offsetFileStem(0)}${LOG_SUFFIX}) and no ${RECOVERY_CHECKPOINT_FILE}; a partition directory is <data-dir>/topics/<topic>/<partition>`,
    );
  }
}

const REPAIR_ADVICE = 'stop the broker first';

/**
 * The lock of the data directory holding `partitionDir` (`<data-dir>/topics/<topic>/<partition>`),
 * so that a repair refuses to run beside a broker on it. The data directory is looked for both
 * along the path as given and along the path with symbolic links followed (a link may be the
 * partition, or stand for the topics directory), and recognised by its metadata store; null for
 * a partition directory outside any data directory (one copied out for repair, say).
 */
function lockDataDirectoryOf(partitionDir: string): DataDirectoryLock | null {
  for (const path of [resolve(partitionDir), realpathSync(partitionDir)]) {
    const topics = resolve(path, '..', '..');
    const dataDir = dirname(topics);
    if (basename(topics) === basename(topicsDirectory('.')) && existsSync(join(dataDir, METADATA_FILE))) {
      return DataDirectoryLock.acquire(dataDir, 'strata repair', REPAIR_ADVICE);
    }
  }
  return null;
}

function resolvePartition(dataDir: string, topic: string | undefined, partition: number | undefined): string {
  if (topic === undefined || partition === undefined) throw new UsageError('give --topic and --partition, or --dir');
  if (!Number.isInteger(partition) || partition < 0) throw new UsageError(`--partition must be a non-negative integer, got ${partition}`);
  try {
    checkTopicName(topic); // also keeps the path inside the data directory
  } catch (error) {
    throw new UsageError(`--topic: ${(error as Error).message}`);
  }
  return partitionDirectory(dataDir, topic, partition);
}
