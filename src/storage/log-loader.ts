/**
 * Start-up and recovery of one partition directory, and nothing else. Runs in passes:
 *
 * 1. Clean up: delete `*.deleted` (interrupted segment deletes), `*.tmp` (interrupted checkpoint
 *    writes) and index files whose log is gone.
 * 2. Load: one `LogSegment` per `.log`, oldest first. Sealed segments stay lazy (no file is read).
 * 3. If the `.clean-shutdown` marker exists, trust the segments: only the active segment's index
 *    and the few bytes after its last index entry are read and checked (the whole segment is
 *    scanned when its index files are missing or fail their checks). The marker is then
 *    removed, so a crash from here on is seen as unclean.
 * 4. Otherwise recover: every segment from the one holding the recovery checkpoint onwards is
 *    scanned (frames, CRCs, offset continuity) and its indexes are rebuilt.
 *    - Active segment: an invalid tail (torn write, garbage, zeros) is truncated to the last
 *      valid batch, with a warning giving the bytes dropped. Those bytes were never acknowledged
 *      under `flush=always`: the writer never has more than `UNSYNCED_WINDOW_BYTES` written but
 *      not fdatasynced, so damage followed by a valid batch further away than that is not a torn
 *      tail but corruption of acknowledged data, and is treated as below. So is damage below the
 *      recovery checkpoint (or a log that ends below it): everything under it was fdatasynced
 *      before the checkpoint was written, so no unfinished write can lie there.
 *    - A sealed segment, or the active one in the cases above: the partition is fenced. Nothing
 *      is truncated or skipped; reads and appends fail with the file and byte position until an
 *      operator runs the repair (`repair: true`), which scans every segment (marker or not),
 *      moves the bytes from the damage onwards into `quarantine/`, lowers the checkpoint to the
 *      end of what is kept, and truncates there.
 *    - Then the active segment is fdatasynced: its valid tail may never have been (sealed
 *      segments were, when they were sealed).
 * 5. A fence marker (a read found corrupt data before the restart, see `fence-marker.ts`)
 *    fences the log wherever the damage is; a repair, having scanned it all, removes it.
 */
import { basename, join } from 'node:path';
import { errnoOrMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { isDirectWritePadding } from './direct-writer.js';
import { loadRecoveryCheckpoint, writeRecoveryCheckpoint } from './checkpoint-file.js';
import { type FenceRecord, readFenceMarker, removeFenceMarker } from './fence-marker.js';
import { readSyncFailureMarker, removeSyncFailureMarker, writeSyncFailureMarker } from './sync-failure-marker.js';
import {
  CLEAN_SHUTDOWN_FILE,
  DELETED_SUFFIX,
  FENCE_FILE,
  LOG_SUFFIX,
  RECOVERY_CHECKPOINT_FILE,
  SYNC_FAILED_FILE,
  TEMP_SUFFIX,
  offsetFileStem,
  parseSegmentFileName,
} from './file-names.js';
import { type FileSystem, readFully } from './file-system.js';
import { BATCH_HEADER_BYTES, readRecordCount } from './record-batch.js';
import { LogSegment, type SegmentOptions } from './segment.js';
import { SegmentList } from './segment-list.js';

/** Most bytes the writer leaves written but not yet fdatasynced (see the file comment). */
export const UNSYNCED_WINDOW_BYTES = 32 * 1024 * 1024;

export interface FenceInfo {
  file: string;
  position: number;
  problem: string;
}

export interface RecoveryReport {
  segmentsScanned: number;
  bytesTruncated: number;
  /** Records the torn batch claimed, when its header was readable. */
  recordsTruncated: number;
  /** Records and bytes moved to quarantine by a repair. */
  quarantined: { directory: string; fromOffset: number; bytes: number } | null;
  /** The fence a read had recorded (see `fence-marker.ts`), lifted by a repair. */
  liftedFence: FenceRecord | null;
}

export interface LoadedLog {
  segments: SegmentList;
  cleanShutdown: boolean;
  recovery: RecoveryReport | null;
  fence: FenceInfo | null;
  /** The offset in `recovery-point.checkpoint` once loaded (0 when there is none, or it is not valid). */
  recoveryPoint: number;
}

export interface LoadOptions {
  fs: FileSystem;
  directory: string;
  segmentOptions: SegmentOptions;
  logger: Logger;
  /** Truncate at mid-log corruption (after quarantining the bytes) instead of fencing. */
  repair: boolean;
  nowMs: number;
}

export async function loadLog(options: LoadOptions): Promise<LoadedLog> {
  const { fs, directory, logger } = options;
  await fs.mkdirs(directory);
  await checkSyncFailure(options);
  const baseOffsets = await cleanDirectory(fs, directory, logger);
  // Read once, here: every path below needs it.
  const stored = await loadRecoveryCheckpoint(fs, directory);
  const checkpoint = stored.recoveryPoint ?? 0;
  if (stored.damaged) {
    logger.warn(
      { file: join(directory, RECOVERY_CHECKPOINT_FILE) },
      'the recovery checkpoint is damaged: recovering the whole log, and fencing rather than cutting damage at its end, since whether those bytes were acknowledged cannot be told',
    );
  }
  const segments = new SegmentList();
  try {
    if (baseOffsets.length === 0) return await startEmpty(segments, options, checkpoint);
    await addSegments(segments, baseOffsets, options);
    return await checkSegments(segments, options, checkpoint, stored.damaged);
  } catch (error) {
    // The caller never gets the segments: close the files opened so far.
    await segments.closeAll((segment, closeError) => logger.warn({ err: closeError, file: segment.logPath }, 'closing a segment failed'));
    throw error;
  }
}

/**
 * A partition whose fdatasync failed before this start (see `sync-failure-marker.ts`). On the
 * same boot, the kernel may still hold pages it failed to write, marked clean, and recovery
 * would read them back as valid: the log is not opened (a repair neither, which would read them
 * too). After the machine restarted, the marker goes and recovery reads what the disk holds.
 */
async function checkSyncFailure(options: LoadOptions): Promise<void> {
  const { fs, directory, logger } = options;
  const recorded = await readSyncFailureMarker(fs, directory);
  if (recorded === null) return;
  const boot = fs.bootId();
  const failed = `an fdatasync of this partition's log failed before the broker restarted (${recorded.problem})`;
  const risk = 'the kernel may still hold bytes it failed to write, and a recovery would serve them';
  if (recorded.boot === null || boot === null) {
    throw new Error(`${failed}, and whether the machine has restarted since cannot be told: ${risk}. Check the disk and restart the machine, then remove ${join(directory, SYNC_FAILED_FILE)}`);
  }
  if (recorded.boot === boot) throw new Error(`${failed}, and the machine has not restarted since: ${risk}. Check the disk, then restart the machine, not only the broker`);
  logger.warn({ directory, problem: recorded.problem }, 'an fdatasync of this partition failed before the machine restarted: recovering the log from what the disk holds');
  await removeSyncFailureMarker(fs, directory);
}

/**
 * A new log: one empty segment at offset 0. A directory with a recovery checkpoint but no
 * segment log had its log files removed by hand: the log starts empty at the checkpoint, so
 * the offsets below it (records consumers may have read or committed past) are not given out
 * again, and a later recovery does not read the checkpoint as records lost below it. A fence
 * marker left there goes too: the damaged records it was for went with the files.
 */
async function startEmpty(segments: SegmentList, options: LoadOptions, recoveryPoint: number): Promise<LoadedLog> {
  const { fs, directory, logger } = options;
  if (recoveryPoint > 0) {
    logger.warn({ directory, recoveryPoint }, `the partition has a recovery checkpoint at offset ${recoveryPoint} but no segment log (its files were removed): starting an empty log at offset ${recoveryPoint}; the records stored before are gone`);
  }
  segments.append(await LogSegment.create(fs, directory, recoveryPoint, options.segmentOptions));
  await fs.unlink(join(directory, FENCE_FILE));
  // The open log has no clean-shutdown marker: its removal is made durable with the rest.
  await fs.unlink(join(directory, CLEAN_SHUTDOWN_FILE));
  await fs.fsyncDirectory(directory);
  return { segments, cleanShutdown: true, recovery: null, fence: null, recoveryPoint };
}

/** Pass 2: one lazy segment per log file, oldest first. */
async function addSegments(segments: SegmentList, baseOffsets: readonly number[], options: LoadOptions): Promise<void> {
  const { fs, directory, logger } = options;
  for (let index = 0; index < baseOffsets.length; index++) {
    const baseOffset = baseOffsets[index]!;
    const sizeBytes = await fs.sizeOf(join(directory, offsetFileStem(baseOffset) + LOG_SUFFIX));
    const nextOffset = index + 1 < baseOffsets.length ? baseOffsets[index + 1]! : -1;
    const segment = LogSegment.existing(fs, directory, baseOffset, options.segmentOptions, sizeBytes, nextOffset);
    segment.onIndexRebuild = (rebuilt, reason) =>
      logger.warn({ file: rebuilt.indexPath, reason }, 'rebuilding index from the log');
    segments.append(segment);
  }
}

/** Passes 3 and 4: trusts the segments after a clean shutdown, else recovers them. */
async function checkSegments(segments: SegmentList, options: LoadOptions, checkpoint: number, checkpointDamaged: boolean): Promise<LoadedLog> {
  const { fs, directory, logger } = options;
  const markerPath = join(directory, CLEAN_SHUTDOWN_FILE);
  const cleanShutdown = (await fs.sizeOf(markerPath)) >= 0;
  let result: LoadedLog;
  // A repair checks everything: the damage it is run for may lie anywhere, a read having found it.
  if (!options.repair && cleanShutdown && (await loadActiveAfterCleanShutdown(segments.last(), logger)) && reachesCheckpoint(segments.last(), options, checkpoint)) {
    result = { segments, cleanShutdown: true, recovery: null, fence: null, recoveryPoint: checkpoint };
  } else {
    result = await recover(segments, options, cleanShutdown, checkpoint, checkpointDamaged);
  }
  // Remove the marker before any append, so a crash from now on is recovered.
  await fs.unlink(markerPath);
  await fs.fsyncDirectory(directory);
  await applyFenceMarker(result, options);
  return result;
}

/**
 * A fence a read recorded before the restart (see `fence-marker.ts`) fences the log again,
 * where the scan above may not have looked; a repair, which has looked everywhere, lifts it.
 */
async function applyFenceMarker(result: LoadedLog, options: LoadOptions): Promise<void> {
  const { fs, directory } = options;
  const recorded = await readFenceMarker(fs, directory);
  if (recorded === null) return;
  if (options.repair) {
    await removeFenceMarker(fs, directory);
    if (result.recovery !== null) result.recovery.liftedFence = recorded;
    return;
  }
  result.fence ??= {
    file: recorded.file === '' ? directory : join(directory, recorded.file),
    position: -1,
    problem: `${recorded.problem} (found by a read before the broker restarted; it stays fenced until repaired)`,
  };
}

/** Pass 1: removes leftovers and returns the base offsets of the segment logs, ascending. */
async function cleanDirectory(fs: FileSystem, directory: string, logger: Logger): Promise<number[]> {
  const names = await fs.readdir(directory);
  const logs = new Set<number>();
  const indexFiles: { name: string; baseOffset: number }[] = [];
  for (const name of names) {
    if (name.endsWith(DELETED_SUFFIX) || name.endsWith(TEMP_SUFFIX)) {
      logger.info({ file: name }, 'removing leftover of an interrupted operation');
      await fs.unlink(join(directory, name));
      continue;
    }
    const parsed = parseSegmentFileName(name);
    if (parsed === null) continue;
    if (parsed.suffix === LOG_SUFFIX) logs.add(parsed.baseOffset);
    else indexFiles.push({ name, baseOffset: parsed.baseOffset });
  }
  for (const { name, baseOffset } of indexFiles) {
    if (!logs.has(baseOffset)) {
      logger.info({ file: name }, 'removing index file without a log');
      await fs.unlink(join(directory, name));
    }
  }
  return [...logs].sort((a, b) => a - b);
}

async function loadActiveAfterCleanShutdown(active: LogSegment, logger: Logger): Promise<boolean> {
  try {
    const problem = await active.loadAfterCleanShutdown();
    if (problem === null) return true;
    logger.warn({ file: active.logPath, problem }, 'clean-shutdown marker found but the active segment disagrees; recovering');
  } catch (error) {
    logger.warn({ file: active.logPath, err: error }, 'could not load the active segment after a clean shutdown; recovering');
  }
  return false;
}

/**
 * Whether the log, trusted after a clean shutdown, reaches its recovery checkpoint (which the
 * clean close wrote at its end). One that ends below it lost its newest segment files after the
 * close: recovery then fences it rather than give those offsets out again.
 */
function reachesCheckpoint(active: LogSegment, options: LoadOptions, checkpoint: number): boolean {
  if (active.nextOffset >= checkpoint) return true;
  options.logger.warn({ file: active.logPath, logEndOffset: active.nextOffset, recoveryPoint: checkpoint }, 'clean-shutdown marker found but the log ends below its recovery checkpoint; recovering');
  return false;
}

/** Pass 4: scans segments from the recovery point. */
async function recover(segments: SegmentList, options: LoadOptions, sawMarker: boolean, checkpoint: number, checkpointDamaged: boolean): Promise<LoadedLog> {
  const { fs, directory, logger } = options;
  // Every offset below the checkpoint was fdatasynced before it was written (at a roll, at the
  // clean close that also left the marker, or by a periodic move), so it bounds what can be a
  // torn tail. After a marker whose active segment disagrees, the scan starts at 0 all the
  // same: something is off.
  // A repair scans from the start: a read or a retention pass may have fenced the partition
  // for damage below the checkpoint, where an unclean start does not look.
  const scanFrom = sawMarker || options.repair ? 0 : checkpoint;
  const firstIndex = Math.max(0, segments.floorIndex(scanFrom));
  if (options.repair) logger.info({ recoveryPoint: checkpoint, segments: segments.count - firstIndex }, 'repair: scanning every segment of the log');
  // A marker not to be trusted is news; a log without one after kill -9 or a power loss is
  // routine (the broker sums them up in one warning, and warns of each cut tail).
  else if (sawMarker) logger.warn({ recoveryPoint: checkpoint, segments: segments.count - firstIndex }, 'the clean-shutdown marker was not to be trusted: recovering the log');
  else logger.info({ recoveryPoint: checkpoint, segments: segments.count - firstIndex }, 'unclean shutdown: recovering the log');
  let recoveryPoint = checkpoint;
  const report: RecoveryReport = { segmentsScanned: 0, bytesTruncated: 0, recordsTruncated: 0, quarantined: null, liftedFence: null };
  const lastIndex = segments.count - 1;
  // A read that met damage before the restart recorded it (see `fence-marker.ts`). Reads stop
  // at the high watermark, so damage found in the active segment lies in acknowledged data,
  // whatever lies after it: it must not be taken for an unfinished write and cut.
  const recordedFence = await readFenceMarker(fs, directory);

  for (let index = firstIndex; index <= lastIndex; index++) {
    const segment = segments.at(index);
    const scan = await segment.scan();
    report.segmentsScanned++;
    const isActive = index === lastIndex;
    const expectedNext = isActive ? -1 : segments.at(index + 1).baseOffset;
    let problem = scan.problem;
    if (problem === null && !isActive && scan.nextOffset !== expectedNext) {
      problem = `segment ends at offset ${scan.nextOffset} but the next segment starts at ${expectedNext}`;
    }
    if (problem === null && isActive && scan.nextOffset < checkpoint) {
      problem = `the log ends at offset ${scan.nextOffset}, but records up to the recovery point ${checkpoint} were made durable`;
    }
    if (problem === null) continue;

    // A torn tail can only lie past the checkpoint: below it, damage hit synced, acknowledged data.
    const belowCheckpoint = scan.nextOffset < checkpoint;
    if (belowCheckpoint && scan.problem !== null) {
      problem = `${problem} (offset ${scan.nextOffset} is below the recovery point ${checkpoint}, so this is not an unfinished write)`;
    }
    const foundByRead = recordedFence !== null && (recordedFence.file === '' || recordedFence.file === basename(segment.logPath));
    if (isActive && !belowCheckpoint && foundByRead && scan.problem !== null) {
      problem = `${problem} (a read found damage in this segment before the restart, so this is not an unfinished write)`;
    }
    let tornTail = false;
    if (isActive && !belowCheckpoint && !foundByRead) {
      // Valid batches within the unsynced window may be unacknowledged writes that reached the
      // disk out of order; one beyond it proves the damage sits under acknowledged data.
      const resync = await segment.findValidBatchAfter(scan.validBytes + UNSYNCED_WINDOW_BYTES, scan.nextOffset);
      tornTail = resync < 0;
    }
    if (tornTail && (await isDirectWritePadding(fs, await segment.fileDescriptor(), scan.validBytes, scan.fileBytes))) {
      logger.info({ file: segment.logPath, position: scan.validBytes, bytes: scan.fileBytes - scan.validBytes }, 'cutting the zero padding of a direct write at the end of the log');
      await segment.truncateTo(scan.validBytes);
      continue;
    }
    // Without a checkpoint to bound it, such a tail may be acknowledged records, damaged.
    if (tornTail && checkpointDamaged) {
      problem = `${problem} (the recovery checkpoint is damaged, so whether these bytes were acknowledged cannot be told)`;
    }
    // A repair keeps what it removes: even a tail that looks unfinished goes to quarantine.
    if (tornTail && !checkpointDamaged && !options.repair) {
      report.bytesTruncated = scan.fileBytes - scan.validBytes;
      report.recordsTruncated = await claimedRecords(fs, segment, scan.validBytes, scan.fileBytes);
      logger.warn(
        { file: segment.logPath, position: scan.validBytes, bytesDropped: report.bytesTruncated, recordsDropped: report.recordsTruncated, problem, logEndOffset: scan.nextOffset },
        'truncating an unfinished write at the end of the log (never acknowledged)',
      );
      await segment.truncateTo(scan.validBytes);
      continue;
    }
    const fence = { file: segment.logPath, position: scan.validBytes, problem };
    if (!options.repair) {
      logger.error(fence, 'corruption in the middle of the log: partition fenced until repaired');
      return { segments, cleanShutdown: false, recovery: report, fence, recoveryPoint: checkpoint };
    }
    report.quarantined = await quarantineFrom(fs, directory, segments, index, scan.validBytes, scan.nextOffset, options.nowMs);
    logger.warn({ ...fence, ...report.quarantined }, 'repair: moved the damaged bytes and everything after them to quarantine');
    // Lowered before the cut: a checkpoint above the end of the log would make the next torn
    // tail look like damage to durable data and fence the partition again.
    if (belowCheckpoint) {
      await writeRecoveryCheckpoint(fs, directory, scan.nextOffset);
      recoveryPoint = scan.nextOffset;
    }
    await segment.truncateTo(scan.validBytes);
    break;
  }
  // What the scan found valid at the end may be a write that the crash caught before its
  // fdatasync: still in the page cache (or the device's cache), never acknowledged. The log is
  // about to publish it (the high watermark covers it, and a producer's retry of it is answered
  // as a duplicate), so it is made durable first.
  const active = segments.last();
  try {
    await fs.fdatasync(await active.fileDescriptor());
  } catch (error) {
    const reason = errnoOrMessage(error);
    // So that a start on the same boot does not take what the kernel kept for durable.
    await writeSyncFailureMarker(fs, directory, { boot: fs.bootId(), problem: `recovery could not fdatasync ${active.logPath} (${reason})` }).catch((markerError: unknown) =>
      logger.error({ err: markerError }, 'could not record the failed fdatasync on disk: restart the machine before the broker'),
    );
    throw new Error(`recovery could not fdatasync ${active.logPath} (${reason}): the log is not opened, since its tail would be served without being durable; check the disk, then restart the machine, not only the broker`, { cause: error });
  }
  return { segments, cleanShutdown: false, recovery: report, fence: null, recoveryPoint };
}

async function claimedRecords(fs: FileSystem, segment: LogSegment, position: number, fileBytes: number): Promise<number> {
  if (fileBytes - position < BATCH_HEADER_BYTES) return 0;
  const header = Buffer.alloc(BATCH_HEADER_BYTES);
  await fs.read(await segment.fileDescriptor(), header, 0, BATCH_HEADER_BYTES, position);
  const count = readRecordCount(header);
  return count > 0 && count < 1_000_000_000 ? count : 0;
}

/**
 * Repair: copies bytes [position, end) of segment `index` and moves every later segment into
 * `quarantine/<time>/`, then drops the later segments from the list. The caller truncates.
 */
async function quarantineFrom(
  fs: FileSystem,
  directory: string,
  segments: SegmentList,
  index: number,
  position: number,
  fromOffset: number,
  nowMs: number,
): Promise<{ directory: string; fromOffset: number; bytes: number }> {
  const quarantine = join(directory, 'quarantine', new Date(nowMs).toISOString().replace(/[:.]/g, '-'));
  await fs.mkdirs(quarantine);
  const segment = segments.at(index);
  const fd = await segment.fileDescriptor();
  const fileBytes = await fs.fileSize(fd);
  const stem = offsetFileStem(segment.baseOffset);
  await copyRangeDurably(fs, fd, segment.logPath, position, fileBytes - position, join(quarantine, `${stem}.log.from-byte-${position}`));
  let bytes = fileBytes - position;
  const later: LogSegment[] = [];
  for (let next = index + 1; next < segments.count; next++) later.push(segments.at(next));
  for (const moved of later) {
    await moved.close();
    bytes += Math.max(0, await fs.sizeOf(moved.logPath));
    for (const path of [moved.logPath, moved.indexPath, moved.timeIndexPath]) {
      if ((await fs.sizeOf(path)) >= 0) await fs.rename(path, join(quarantine, path.slice(directory.length + 1)));
    }
  }
  segments.truncateAfter(index);
  // The copies' entries, then quarantine/<time>'s own entry in quarantine/, then quarantine/'s
  // in the partition directory: all durable before the caller cuts the original bytes.
  await fs.fsyncDirectory(quarantine);
  await fs.fsyncDirectory(join(directory, 'quarantine'));
  await fs.fsyncDirectory(directory);
  return { directory: quarantine, fromOffset, bytes };
}

/** How much of a damaged segment a repair holds in memory at once while copying it. */
const QUARANTINE_COPY_CHUNK_BYTES = 8 * 1024 * 1024;

/**
 * Copies bytes [position, position + length) of `path` (open as `fd`) to a new file `target`,
 * in chunks (a segment may be gigabytes), and fdatasyncs it.
 */
export async function copyRangeDurably(fs: FileSystem, fd: number, path: string, position: number, length: number, target: string): Promise<void> {
  const chunk = Buffer.allocUnsafe(Math.min(QUARANTINE_COPY_CHUNK_BYTES, Math.max(1, length)));
  const out = await fs.open(target, { create: true });
  try {
    await fs.ftruncate(out, 0);
    for (let copied = 0; copied < length; ) {
      const want = Math.min(chunk.length, length - copied);
      const filled = await readFully(fs, fd, chunk, 0, want, position + copied);
      if (filled < want) {
        throw new Error(`repair could not copy ${path} to quarantine: the file ended at byte ${position + copied + filled}, expected ${position + length}; nothing was cut, retry the repair`);
      }
      await fs.writev(out, [chunk.subarray(0, want)], copied); // (it finishes short writes)
      copied += want;
    }
    await fs.fdatasync(out);
  } finally {
    await fs.close(out);
  }
}
