/**
 * The broker: topics and their partition logs, and the produce, fetch and offset paths that the
 * gRPC layer calls. It knows nothing of gRPC; it speaks in `StrataError`s.
 *
 * Start-up: opens the metadata store (LMDB), then every partition log of every topic it lists,
 * recovering them as needed (`ready` is false until all are open). It reconciles metadata with
 * the directories: a partition directory without metadata is reported as an orphan and left
 * alone (an operator decides; a new topic or partition of its name takes it over only if it
 * holds no records). A known partition whose directory is missing, or holds no segment log and
 * no recovery checkpoint, stops the start: its records are gone, and an empty log in its place
 * would hand out again offsets that consumers have read or committed past. `strata repair` starts it again, empty, after its highest committed offset.
 *
 * Topic deletion removes the metadata first (so the topic disappears atomically), then moves
 * the directory under `<data-dir>/deleted/` and removes it in the background; leftovers there
 * are removed at the next start.
 */
import { forEachConcurrently } from '../common/concurrently.js';
import { join } from 'node:path';
import { type Clock, TIMER_DELAY_MAX_MS, systemClock } from '../common/clock.js';
import { ErrorCode, StrataError, errnoOrMessage, fileCallErrno, isDiskFullCode } from '../common/errors.js';
import { checkIntegerRange } from '../common/integer-range.js';
import { settlesWithin } from '../common/settles-within.js';
import { DEFAULT_RECOVERY_CHECKPOINT_INTERVAL_MS, DEFAULT_RETENTION_CHECK_INTERVAL_MS, PARTITION_COUNT_MAX } from '../common/broker-limits.js';
import { DEFAULT_MAX_REQUEST_BYTES, batchRoomProblem, defaultBatchRoomProblem } from '../common/request-limits.js';
import { rootLogger, type Logger } from '../common/logger.js';
import { shellWord } from '../common/shell-word.js';
import { plural } from '../common/plural.js';
import { nodeFileSystem, type FileSystem } from '../storage/file-system.js';
import { graveyardDirectory, holdsPartitionLog, partitionDirectory, topicsDirectory } from '../storage/file-names.js';
import { DEFAULT_LOG_CONFIG, KAFKA_NAMES, type LogConfig, checkConfigSpelling, flushMsSelectsInterval, parseKafkaConfig, resolveLogConfig } from '../storage/log-config.js';
import { DIRECT_WRITE_MIN_BYTES, PartitionLog, emptyIoCalls, type AppendResult, type AppendWait, type IoCalls, type WriteFailures } from '../storage/partition-log.js';
import { PRODUCER_BATCH_WINDOW } from '../storage/producer-state.js';
import { BATCH_HEADER_BYTES, PRODUCER_ID_OFFSET, firstRecordKey, readProducerId } from '../storage/record-batch.js';
import { buildBatchFromRanges, rangeBatchBytesFloor, rangeRecordBytesFloor, rangesBytesFloorBound } from '../storage/record-batch-builder.js';
import { NULL_LENGTH, type RecordRanges } from '../storage/record-ranges.js';
import { InlineIoBudget } from '../storage/inline-io.js';
import { holdsNoRecords } from '../storage/partition-records.js';
import { DEFAULT_INDEX_CACHE_BYTES, IndexCache } from '../storage/index-cache.js';
import { DEFAULT_TAIL_CACHE_BYTES, TailCache } from '../storage/tail-cache.js';
import { DataDirectoryLock, dataDirectoryFailure } from './data-directory-lock.js';
import { METADATA_FILE, MetadataStore, PRODUCER_ID_COUNTER, type TopicRecord } from './metadata-store.js';
import { StickyPartitioner, partitionForKey } from './partitioner.js';

import { checkTopicName } from '../common/topic-name.js';


/** Missing partition directories a refused start names before it counts the rest. */
const MISSING_PARTITIONS_NAMED = 5;
/**
 * Partitions of one topic opened (created) or closed (deleted) at once: enough to keep the disk
 * busy while one waits for an fsync, few enough that the other partitions' I/O waits behind at
 * most 8 of them in libuv's thread pool (four threads), not behind thousands.
 */
const PARTITION_FILE_CALLS_CONCURRENCY = 8;
/**
 * Producer ids whose owning token a broker with tokens keeps in memory (about 100 bytes each,
 * so some 10 MB): far more producers than one broker serves at once; older ids are read again.
 */
const PRODUCER_ID_OWNERS_CACHED_MAX = 100_000;

export interface BrokerOptions {
  dataDir: string;
  /** Partitions of a topic created without a count. */
  defaultPartitions?: number;
  /** Broker-wide defaults of topic configs. */
  topicDefaults?: Partial<LogConfig>;
  /** How often retention runs over all partitions. */
  retentionCheckIntervalMs?: number;
  /** How often every partition's recovery checkpoint moves up to its durable end (default 60 s). */
  recoveryCheckpointIntervalMs?: number;
  /** Write large groups with direct (O_DIRECT) writes, bypassing the page cache (default true, as `strata serve`). */
  directWrites?: boolean;
  /**
   * Let small log writes and fdatasyncs run on the event loop, within one budget for all
   * partitions (see `inline-io.ts`; default true, as `strata serve`).
   */
  inlineIo?: boolean;
  /** Memory for the newest written bytes of all partitions, for tailing readers; 0: none. */
  tailCacheBytes?: number;
  /** Bound on the memory of sealed segments' loaded indexes, all partitions together (see `index-cache.ts`). */
  indexCacheBytes?: number;
  /**
   * The largest request the gRPC server accepts (`--max-request-bytes`, default 64 MiB). A
   * topic's max.message.bytes must leave room for a batch of that size in one ProduceRequest.
   */
  maxRequestBytes?: number;
  clock?: Clock;
  logger?: Logger;
  fs?: FileSystem;
}

export interface PartitionState {
  partition: number;
  logStartOffset: number;
  highWatermark: number;
  logEndOffset: number;
  sizeBytes: number;
  segmentCount: number;
  /** Bytes appended since the partition was opened, with direct writes and through the page cache. */
  writtenBytes: { direct: number; buffered: number };
  /** Records appended since the partition was opened (duplicates of idempotent retries are not). */
  appendedRecords: number;
  /** Bytes and records served to readers since the partition was opened. */
  served: { bytes: number; records: number };
  error: string;
}

export interface TopicDescription {
  name: string;
  configs: Record<string, string>;
  /** The names in `configs` the topic sets itself, sorted; the others are broker defaults. */
  overriddenConfigs: string[];
  partitions: PartitionState[];
  createdAtMs: number;
}

export type Acks = 'all' | 'leader' | 'none';

export interface AppendedBatch {
  partition: number;
  baseOffset: number;
  lastOffset: number;
  duplicate: boolean;
}

export interface ProduceResult {
  batches: AppendedBatch[];
  logAppendTimeMs: number;
}

export interface ProducerFields {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

interface Topic {
  record: TopicRecord;
  config: LogConfig;
  logs: PartitionLog[];
}

/**
 * RECORD_TOO_LARGE for the plain records of one partition of a produce request, whose batch is
 * `size` bytes (or at least that, `sizeIsFloor`). Its advice: to make a record smaller when one
 * cannot fit a batch on its own, else to send the records in several requests.
 */
function recordsTooLarge(records: RecordRanges, indices: Int32Array | null, partition: number, size: number, sizeIsFloor: boolean, maxMessageBytes: number): StrataError {
  const count = indices === null ? records.count : indices.length;
  const problem = `${sizeIsFloor ? 'at least ' : ''}${size} bytes, larger than max.message.bytes ${maxMessageBytes}`;
  if (count === 1) {
    return new StrataError(ErrorCode.RECORD_TOO_LARGE, `the record for partition ${partition} makes a batch of ${problem}; make it smaller or raise the topic's max.message.bytes`);
  }
  for (let at = 0; at < count; at++) {
    const index = indices === null ? at : indices[at]!;
    const alone = BATCH_HEADER_BYTES + rangeRecordBytesFloor(records, index);
    if (alone > maxMessageBytes) {
      return new StrataError(ErrorCode.RECORD_TOO_LARGE, `records[${index}] (for partition ${partition}) makes a batch of at least ${alone} bytes on its own, larger than max.message.bytes ${maxMessageBytes}; make it smaller or raise the topic's max.message.bytes`);
    }
  }
  return new StrataError(ErrorCode.RECORD_TOO_LARGE, `the ${count} records for partition ${partition} make a batch of ${problem}; send them in several requests`);
}

export class Broker {
  readonly dataDir: string;
  private readonly metadata: MetadataStore;
  /** Held from open until close has closed everything in the data directory. */
  private readonly lock: DataDirectoryLock;
  private readonly topics = new Map<string, Topic>();
  /** The latest creation time of a topic created or loaded (see nextCreatedAtMs). */
  private lastCreatedAtMs = 0;
  private readonly defaultPartitions: number;
  private readonly topicDefaults: LogConfig;
  private readonly maxRequestBytes: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly fs: FileSystem;
  private readonly directWrites: boolean;
  /** The newest written bytes of every partition, under one bound (see `tail-cache.ts`). */
  readonly tailCache: TailCache;
  readonly indexCache: IndexCache;
  /** Shared by all partitions; null when every write and fdatasync goes to the thread pool. */
  readonly inlineIo: InlineIoBudget | null;
  private readonly sticky = new StickyPartitioner();
  private retentionTimer: NodeJS.Timeout | null = null;
  /** The logger partition logs take their child of (`subsystem: 'storage'`): not the broker's, whose `subsystem` key theirs would repeat. */
  private readonly storageLogger: Logger;
  /** Timer intervals, checked: setInterval would take 0, a fraction or one too long as 1 ms. */
  private readonly retentionCheckIntervalMs: number;
  private readonly recoveryCheckpointIntervalMs: number;
  private recoveryCheckpointTimer: NodeJS.Timeout | null = null;
  /** The pass of `checkpointRecoveryPoints` under way, if any. */
  private recoveryCheckpointPass: Promise<void> | null = null;
  /** The retention pass under way, if any (`applyRetention`). */
  private retentionPass: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /** Serialises topic-level changes (create, delete, alter, add partitions). */
  private adminChain: Promise<unknown> = Promise.resolve();
  ready = false;
  /** Partition directories found without metadata at start-up. */
  readonly orphans: string[] = [];
  /**
   * The listing of the previous run's deleted topics, begun at start (their removals then go on
   * in the background): the first delete waits for it, so it never lists its own topic.
   */
  private graveyardCleared: Promise<void> = Promise.resolve();
  /** Removals of deleted topics' directories under way (see `removeInBackground`). */
  private readonly removals = new Set<Promise<void>>();
  /** Topics deleted since start: numbers their directories in the graveyard. */
  private deletedTopics = 0;
  /** The log writes and fdatasyncs of every partition, counted by the logs (see `ioCallTotals`). */
  private readonly ioCalls: IoCalls = emptyIoCalls();
  private readonly writeFailures: WriteFailures = new Map();

  private constructor(options: BrokerOptions, metadata: MetadataStore, lock: DataDirectoryLock) {
    this.dataDir = options.dataDir;
    this.metadata = metadata;
    this.lock = lock;
    this.defaultPartitions = options.defaultPartitions ?? 1;
    this.maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    this.topicDefaults = resolveLogConfig(options.topicDefaults ?? {}, DEFAULT_LOG_CONFIG);
    const defaultProblem = defaultBatchRoomProblem(this.topicDefaults.maxMessageBytes, this.maxRequestBytes);
    if (defaultProblem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, defaultProblem);
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? rootLogger).child({ subsystem: 'broker' });
    this.storageLogger = options.logger ?? rootLogger;
    this.fs = options.fs ?? nodeFileSystem;
    this.directWrites = options.directWrites ?? true;
    this.tailCache = new TailCache(options.tailCacheBytes ?? DEFAULT_TAIL_CACHE_BYTES);
    this.indexCache = new IndexCache(options.indexCacheBytes ?? DEFAULT_INDEX_CACHE_BYTES);
    this.inlineIo = (options.inlineIo ?? true) ? new InlineIoBudget() : null;
    this.retentionCheckIntervalMs = checkIntegerRange('retentionCheckIntervalMs', options.retentionCheckIntervalMs ?? DEFAULT_RETENTION_CHECK_INTERVAL_MS, 1, TIMER_DELAY_MAX_MS);
    this.recoveryCheckpointIntervalMs = checkIntegerRange('recoveryCheckpointIntervalMs', options.recoveryCheckpointIntervalMs ?? DEFAULT_RECOVERY_CHECKPOINT_INTERVAL_MS, 1, TIMER_DELAY_MAX_MS);
  }

  static async open(options: BrokerOptions): Promise<Broker> {
    const fs = options.fs ?? nodeFileSystem;
    await fs.mkdirs(topicsDirectory(options.dataDir)).catch((error: unknown) => {
      throw dataDirectoryFailure(options.dataDir, error);
    });
    // Before anything there is read.
    const lock = DataDirectoryLock.acquire(options.dataDir, 'broker', 'stop it first, or give this one another --data-dir');
    let broker: Broker;
    try {
      await checkMetadataPresent(fs, options.dataDir);
      const metadata = MetadataStore.open(options.dataDir);
      try {
        broker = new Broker(options, metadata, lock); // checks the options
      } catch (error) {
        await metadata.close();
        throw error;
      }
    } catch (error) {
      lock.release();
      throw error;
    }
    try {
      await broker.load();
    } catch (error) {
      // Close the logs opened so far and the metadata store; the load's error is the one to report.
      await broker.close().catch((closeError: unknown) => broker.logger.error({ err: closeError }, 'closing after a failed start failed'));
      throw error;
    }
    broker.retentionTimer = setInterval(() => void broker.applyRetention(), broker.retentionCheckIntervalMs);
    broker.retentionTimer.unref();
    broker.recoveryCheckpointTimer = setInterval(() => void broker.checkpointRecoveryPoints(), broker.recoveryCheckpointIntervalMs);
    broker.recoveryCheckpointTimer.unref();
    broker.ready = true;
    return broker;
  }

  private async load(): Promise<void> {
    // Not awaited here (it may hold many files), but before the next delete moves a topic in.
    this.graveyardCleared = this.clearGraveyard();
    const records = this.metadata.listTopics();
    await this.finishDeletions(records);
    await this.checkPartitionDirectories(records);
    for (const record of records) {
      this.lastCreatedAtMs = Math.max(this.lastCreatedAtMs, record.createdAtMs);
      let config: LogConfig;
      try {
        config = this.effectiveConfig(record);
      } catch (error) {
        // A config a newer version stored, say: name the topic, and what to do.
        throw new Error(`the stored config of topic "${record.name}" is not valid for this version: ${(error as Error).message}. Start the version that stored it and alter the config, or delete the topic`, { cause: error });
      }
      const problem = batchRoomProblem(config.maxMessageBytes, this.maxRequestBytes);
      if (problem !== null) this.logger.warn({ topic: record.name }, `topic "${record.name}": ${problem}; producers of full batches will fail. Lower the topic's max.message.bytes or raise --max-request-bytes`);
      const logs: PartitionLog[] = [];
      this.topics.set(record.name, { record, config, logs }); // so that close() closes what opened
      for (let partition = 0; partition < record.partitions; partition++) {
        try {
          logs.push(await this.openPartition(record.name, partition, config));
        } catch (error) {
          throw new Error(`cannot open partition ${partition} of topic "${record.name}": ${(error as Error).message}`, { cause: error });
        }
      }
    }
    await this.raiseProducerIdCounter();
    const known = new Set(records.map((record) => record.name));
    for (const name of await this.fs.readdir(topicsDirectory(this.dataDir))) {
      const topic = this.topics.get(name);
      const partitions = known.has(name) ? await this.fs.readdir(join(topicsDirectory(this.dataDir), name)) : ['*'];
      for (const partition of partitions) {
        // A partition's directory is named String(partition) (`partitionDirectory`): "01" or "1e0" is not partition 1's.
        if (topic !== undefined && String(Number(partition)) === partition && Number(partition) < topic.record.partitions) continue;
        const path = join(topicsDirectory(this.dataDir), name, partition === '*' ? '' : partition);
        this.orphans.push(path);
        this.logger.warn({ directory: path }, 'orphan directory: no topic metadata refers to it; left untouched');
      }
    }
    this.logger.info({ topics: records.length, partitions: records.reduce((sum, r) => sum + r.partitions, 0) }, 'topics loaded');
    this.logRecoverySummary();
  }

  /**
   * A metadata store older than the logs (restored from a backup) has a producer-id counter
   * below ids the partitions remember batches of: handed out again, such an id's first batches
   * would match the old producer's and be answered as duplicates, never stored. So the counter
   * goes past every id the logs remember.
   */
  private async raiseProducerIdCounter(): Promise<void> {
    let highest = 0;
    for (const { logs } of this.topics.values()) for (const log of logs) highest = Math.max(highest, log.highestProducerId);
    const counted = this.metadata.counterValue(PRODUCER_ID_COUNTER);
    if (highest <= counted) return;
    await this.metadata.raiseCounter(PRODUCER_ID_COUNTER, highest);
    this.producerIdsIssued = null; // read again from the counter
    this.logger.warn({ counted, highest }, `the metadata store's producer-id counter (${counted}) is below producer ids the logs hold batches of (up to ${highest}), as after restoring it from a backup: raised to ${highest}, so no id is handed out twice`);
  }

  /** One warning for the partitions an unclean stop left to recover, however many there are. */
  private logRecoverySummary(): void {
    let recovered = 0;
    let cut = 0;
    let bytesTruncated = 0;
    for (const { logs } of this.topics.values()) {
      for (const log of logs) {
        if (log.recovery === null) continue;
        recovered++;
        if (log.recovery.bytesTruncated > 0) cut++;
        bytesTruncated += log.recovery.bytesTruncated;
      }
    }
    if (recovered === 0) return;
    const cuts = cut === 0 ? 'none had an unfinished write to cut' : `${cut} cut an unfinished write at its end (${bytesTruncated} bytes in all; each is logged above)`;
    this.logger.warn({ recovered, cut, bytesTruncated }, `unclean shutdown: ${recovered} partition log(s) recovered; ${cuts}`);
  }

  /**
   * Refuses to start when a partition the metadata lists has no directory, or one without a
   * segment log or recovery checkpoint (removed by hand, or lost with a disk): opening the log
   * would create it empty and silently start its offsets at 0 again. The message names every
   * such partition (up to a few) and the way out.
   */
  private async checkPartitionDirectories(records: readonly TopicRecord[]): Promise<void> {
    const missing: { topic: string; partition: number }[] = [];
    for (const record of records) {
      for (let partition = 0; partition < record.partitions; partition++) {
        // Any other failure (a file in its place, EACCES) is the partition's open's to report.
        const names = await this.fs.readdir(partitionDirectory(this.dataDir, record.name, partition)).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? [] : null));
        if (names !== null && !holdsPartitionLog(names)) missing.push({ topic: record.name, partition });
      }
    }
    if (missing.length === 0) return;
    const shown = missing.slice(0, MISSING_PARTITIONS_NAMED).map(({ topic, partition }) => `topics/${topic}/${partition}`);
    const more = missing.length > shown.length ? ` and ${missing.length - shown.length} more` : '';
    const first = missing[0]!;
    const dataDir = shellWord(this.dataDir);
    const total = records.reduce((sum, record) => sum + record.partitions, 0);
    const unmounted = missing.length > 1 && missing.length === total ? ' Every partition is missing: if the topics live on a volume that is not mounted, mount it instead.' : '';
    throw new StrataError(
      ErrorCode.STORAGE_ERROR,
      `the data directory has no segment log for ${missing.length === 1 ? 'a partition' : `${missing.length} partitions`} its metadata lists (${shown.join(', ')}${more}: no directory, or one without a segment log): whatever records they held are gone, and starting them empty would give out again offsets consumers have read or committed past. ` +
        `Restore the directories from a backup, or run \`strata repair --data-dir ${dataDir} --topic ${first.topic} --partition ${first.partition}\` (with the broker stopped) for each to start it again, empty, at its highest committed offset.${unmounted}`,
    );
  }

  private async openPartition(topic: string, partition: number, config: LogConfig): Promise<PartitionLog> {
    const directory = partitionDirectory(this.dataDir, topic, partition);
    const log = await PartitionLog.open({ directory, config, clock: this.clock, logger: this.storageLogger, fs: this.fs, name: `${topic}-${partition}`, directWriteMinBytes: this.directWrites ? DIRECT_WRITE_MIN_BYTES : null, tailCache: this.tailCache, indexCache: this.indexCache, inlineIo: this.inlineIo, ioCalls: this.ioCalls, writeFailures: this.writeFailures, checkProducerId: this.checkProducerId });
    if (log.recovery !== null && log.recovery.bytesTruncated > 0) {
      this.logger.warn({ topic, partition, ...log.recovery }, 'partition recovered after an unclean stop');
    }
    return log;
  }

  /**
   * Opens partitions `from` to `to - 1` of a topic being created or grown, then runs `commit`
   * (the metadata write that makes them part of the topic). If an open or the commit fails, the
   * partitions opened are closed and the directories this call created are removed before the
   * error is passed on: a failed CreateTopic or AddPartitions (too many open files, a full disk)
   * leaves no open files behind, and no directories that a retry would adopt or a restart would
   * report as orphans.
   */
  private async openNewPartitions(topic: string, from: number, to: number, config: LogConfig, commit: () => Promise<void>): Promise<PartitionLog[]> {
    try {
      return await this.openNewPartitionsOrThrow(topic, from, to, config, commit);
    } catch (error) {
      throw this.topicChangeFailure(error, topic, from === 0 ? 'create' : 'add partitions to');
    }
  }

  /**
   * A file operation's failure in a topic change as an error a client can act on: DISK_FULL
   * (RESOURCE_EXHAUSTED) for a full disk, else STORAGE_ERROR (UNAVAILABLE: a retry may work,
   * as after EMFILE), naming the errno but not the path, which the broker log has.
   */
  private topicChangeFailure(error: unknown, topic: string, action: string): unknown {
    const code = fileCallErrno(error);
    if (code === null) return error;
    this.logger.error({ topic, err: error }, `cannot ${action} topic`);
    const diskFull = isDiskFullCode(code);
    const message = `cannot ${action} topic "${topic}": a file operation in the data directory failed with ${code}${diskFull ? ' (disk full)' : ''}; the topic is as it was, and the broker log names the file`;
    return new StrataError(diskFull ? ErrorCode.DISK_FULL : ErrorCode.STORAGE_ERROR, message, { cause: error });
  }

  private async openNewPartitionsOrThrow(topic: string, from: number, to: number, config: LogConfig, commit: () => Promise<void>): Promise<PartitionLog[]> {
    const topicDirectory = join(topicsDirectory(this.dataDir), topic);
    // Only "no such directory" means that there is none: any other failure (EMFILE, EACCES)
    // tells nothing of what is there, and cleaning up after a guess could remove a live topic.
    const existing = await this.fs.readdir(topicDirectory).then(
      (names) => new Set(names),
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return null;
        throw error;
      },
    );
    const empty: number[] = [];
    for (let partition = from; partition < to; partition++) {
      if (!existing?.has(String(partition))) continue;
      if (await holdsNoRecords(this.fs, partitionDirectory(this.dataDir, topic, partition))) {
        empty.push(partition);
        continue;
      }
      // Records no topic refers to (a topic deleted while the broker crashed, a delete whose
      // move failed): opened as the new partition, they would come back.
      const path = join('topics', topic, String(partition));
      throw new StrataError(ErrorCode.FAILED_PRECONDITION, `directory ${path} of the data directory holds records, but no topic refers to it (left by an earlier topic of this name); move it out of the data directory or remove it, then try again`);
    }
    // Directories without records (a create or AddPartitions that a crash cut off) are taken
    // over: removed first, so the new partition starts from nothing, and counted as this call's.
    for (const partition of empty) {
      const directory = partitionDirectory(this.dataDir, topic, partition);
      await this.fs.removeTree(directory);
      existing!.delete(String(partition));
      this.logger.info({ topic, partition, directory }, 'took over a partition directory without records that no topic referred to (left by a topic change a crash cut off)');
    }
    // In partition order; one failed open leaves holes where the others did not get to.
    const opened: (PartitionLog | undefined)[] = new Array(to - from);
    const logs = (): PartitionLog[] => opened.filter((log): log is PartitionLog => log !== undefined);
    try {
      const partitions = Array.from({ length: to - from }, (_, index) => from + index);
      await forEachConcurrently(partitions, PARTITION_FILE_CALLS_CONCURRENCY, async (partition) => {
        opened[partition - from] = await this.openPartition(topic, partition, config);
      });
      // The partition directories' own entries, in the topic's directory and it in topics/,
      // durable before the metadata says the topic has them: else a power loss could take a
      // directory with records acknowledged in it, and the start would make it again, empty.
      await this.fs.fsyncDirectory(topicDirectory);
      await this.fs.fsyncDirectory(topicsDirectory(this.dataDir));
      await commit();
      return logs();
    } catch (error) {
      // The topic's directory goes only when this call made it, for a new topic; otherwise
      // only the partition directories this call made.
      const madeTopicDirectory = existing === null && from === 0;
      const leftovers: string[] = madeTopicDirectory ? [topicDirectory] : [];
      for (let partition = from; !madeTopicDirectory && partition < to; partition++) {
        if (!existing?.has(String(partition))) leftovers.push(partitionDirectory(this.dataDir, topic, partition));
      }
      for (const log of logs()) await log.close().catch((failure: unknown) => this.logger.warn({ topic, err: failure }, 'closing a partition of a failed topic change failed'));
      for (const directory of leftovers) await this.fs.removeTree(directory).catch((failure: unknown) => this.logger.warn({ directory, err: failure }, 'removing the directory of a failed topic change failed'));
      throw error;
    }
  }

  private effectiveConfig(record: TopicRecord): LogConfig {
    return resolveLogConfig(parseKafkaConfig(record.configs), this.topicDefaults);
  }

  /**
   * The config of a topic being created or altered: valid, and, when `maxMessageBytesSet`, its
   * batches fit in a request. (A stored topic over the limit may still have its other configs
   * altered; start-up warns of it.)
   */
  private configForChange(record: TopicRecord, maxMessageBytesSet: boolean): LogConfig {
    const config = this.effectiveConfig(record);
    const problem = maxMessageBytesSet ? batchRoomProblem(config.maxMessageBytes, this.maxRequestBytes) : null;
    if (problem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${problem}; lower max.message.bytes or raise --max-request-bytes`);
    return config;
  }

  // -------------------------------------------------------------------------------------------
  // Topics.

  private admin<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.adminChain.then(operation, operation);
    this.adminChain = result.catch(() => undefined);
    return result;
  }

  createTopic(name: string, partitions: number, configs: Record<string, string>): Promise<TopicDescription> {
    this.checkOpen();
    checkTopicName(name);
    const count = partitions === 0 ? this.defaultPartitions : partitions;
    checkPartitionCount(count);
    checkConfigSpelling(configs);
    // Its creation time is given once the topic is sure to be created (nextCreatedAtMs).
    const record: TopicRecord = { name, partitions: count, configs: { ...configs }, createdAtMs: 0 };
    const config = this.configForChange(record, true); // validates the configs
    return this.admin(async () => {
      if (this.topics.has(name)) throw new StrataError(ErrorCode.ALREADY_EXISTS, `topic "${name}" already exists`);
      record.createdAtMs = this.nextCreatedAtMs();
      await this.beforeTopicCreated?.(name);
      const logs = await this.openNewPartitions(name, 0, count, config, async () => {
        if (!(await this.metadata.createTopic(record))) throw new StrataError(ErrorCode.ALREADY_EXISTS, `topic "${name}" already exists`);
      });
      this.topics.set(name, { record, config, logs });
      this.logger.info({ topic: name, partitions: count, configs }, 'topic created');
      this.partitionsChanged(name);
      return this.describe(name);
    });
  }

  deleteTopic(name: string): Promise<void> {
    this.checkOpen();
    checkTopicName(name);
    return this.admin(async () => {
      const topic = this.requireTopic(name);
      await this.metadata.deleteTopic(name, this.clock.nowMs());
      this.topics.delete(name);
      // Told at once, not after the files are closed: a group member's commit made meanwhile
      // then drops the topic's partitions it owned instead of failing whole with NOT_FOUND.
      this.partitionsChanged(name);
      // The topic is gone from the metadata: whatever fails from here on, its group offsets go
      // too, so that a topic of this name created later does not start from them.
      let failure: unknown = null;
      await this.retireTopicFiles(name, topic.logs).catch((error: unknown) => (failure = error));
      try {
        await this.onTopicDeleted?.(name);
      } catch (error) {
        const reason = errnoOrMessage(error);
        this.logger.error({ topic: name, err: error }, 'the topic is deleted, but removing its committed offsets failed: they are removed before a topic of this name is created again, or at the next start');
        // A failure of the files says more about what is left to do.
        failure ??= deletedTopicFailure(error, `topic "${name}" is deleted, but removing its committed offsets failed (${reason}): they are removed before a topic of this name is created again (which is refused while they cannot be), or at the next start`);
      }
      if (failure !== null) throw failure;
      this.logger.info({ topic: name }, 'topic deleted');
    });
  }

  /**
   * Closes the logs of a topic just deleted from the metadata and moves its directory into the
   * graveyard, to be removed in the background. A log that fails to close is logged and moved
   * all the same: nothing will read it again, and nothing is left for anyone to do. A failure
   * of the move is logged with what it leaves behind, then thrown.
   */
  private async retireTopicFiles(name: string, logs: readonly PartitionLog[]): Promise<void> {
    const gone = new StrataError(ErrorCode.NOT_FOUND, `topic "${name}" was deleted`);
    await forEachConcurrently(logs, PARTITION_FILE_CALLS_CONCURRENCY, (log) =>
      log.close({ reason: gone, discard: true }).catch((error: unknown) =>
        this.logger.error({ topic: name, log: log.name, err: error }, 'closing a partition of the deleted topic failed; its files are removed all the same'),
      ),
    );
    const directory = join(topicsDirectory(this.dataDir), name);
    let target: string;
    try {
      target = await this.moveToGraveyard(name);
    } catch (error) {
      this.logger.error({ topic: name, directory, err: error }, 'the topic is deleted, but moving its directory out of the topics directory failed: the next start tries again (until it is gone, a topic of this name cannot be created again; it may be removed by hand)');
      throw deletedTopicFailure(error, `topic "${name}" is deleted, but moving its directory out of the topics directory failed with ${errnoOrMessage(error)}: the broker tries again at its next start, and until the directory is gone a topic of this name cannot be created (it may be removed by hand; the broker log names it)`);
    }
    let failure: unknown = null;
    try {
      await this.fs.fsyncDirectory(topicsDirectory(this.dataDir));
    } catch (error) {
      this.logger.error({ topic: name, directory, err: error }, 'the topic is deleted and its directory moved out, but the fsync of the topics directory failed: after a crash the directory may be back, and the next start then moves it out again');
      failure = deletedTopicFailure(error, `topic "${name}" is deleted and its directory moved out, but the fsync of the topics directory failed with ${errnoOrMessage(error)}: after a crash the directory may be back, and the broker's next start then moves it out again`);
    }
    this.removeInBackground(target, 'could not remove the directory of a deleted topic; it is removed at the next start');
    if (failure !== null) throw failure;
    // Until here a restart would find the directory and move it out itself (`finishDeletions`).
    await this.metadata.deletionDone(name).catch((error: unknown) => this.logger.warn({ topic: name, err: error }, 'could not record that the deleted topic\'s directory is gone; the next start checks again'));
  }

  /** Moves a deleted topic's directory into the graveyard; returns where it went. */
  private async moveToGraveyard(name: string): Promise<string> {
    await this.graveyardCleared;
    const graveyard = graveyardDirectory(this.dataDir);
    // Unique, and within a file name's 255 bytes for a name of up to 249 characters.
    const target = join(graveyard, `${this.clock.nowMs()}-${++this.deletedTopics}-${name.slice(0, 200)}`);
    await this.fs.mkdirs(graveyard);
    await this.fs.rename(join(topicsDirectory(this.dataDir), name), target);
    return target;
  }

  /**
   * Finishes the deletions that a stop interrupted (see `MetadataStore.deleteTopic`): a topic
   * deleted from the metadata whose directory was not yet moved out of the topics directory
   * (a crash while its partitions closed, a failed rename) has it moved now, so that the name
   * can be used again. A name that a topic holds again since is left alone. A move that fails
   * is logged and tried again at the next start; until then the directory shows as an orphan.
   */
  private async finishDeletions(records: readonly TopicRecord[]): Promise<void> {
    const live = new Set(records.map((record) => record.name));
    const done: string[] = [];
    let moved = false;
    for (const { name, deletedAtMs } of this.metadata.pendingDeletions()) {
      if (!live.has(name)) {
        try {
          const target = await this.moveToGraveyard(name);
          this.logger.warn({ topic: name, deletedAt: new Date(deletedAtMs).toISOString() }, 'finishing the deletion of a topic that the last stop interrupted: its directory is removed');
          this.removeInBackground(target, 'could not remove the directory of a deleted topic; it is removed at the next start');
          moved = true;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
            this.logger.error({ topic: name, err: error }, 'could not move the directory of a deleted topic out of the topics directory; tried again at the next start');
            continue;
          }
        }
      }
      done.push(name);
    }
    // The moves are durable before their records go. A record left behind costs nothing: the
    // next start finds no directory for it, and clears it.
    try {
      if (moved) await this.fs.fsyncDirectory(topicsDirectory(this.dataDir));
      for (const name of done) await this.metadata.deletionDone(name);
    } catch (error) {
      this.logger.warn({ err: error }, 'could not record that the deleted topics\' directories are gone; the next start checks again');
    }
  }

  /**
   * Removes the topics deleted before this start, entry by entry: never the graveyard itself,
   * which a delete of this run may be moving a topic into while the removal of an earlier process
   * on this directory is still going (see `close`).
   */
  private async clearGraveyard(): Promise<void> {
    const graveyard = graveyardDirectory(this.dataDir);
    let entries: string[];
    try {
      entries = await this.fs.readdir(graveyard);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn({ directory: graveyard, err: error }, 'could not list the topics deleted before the last stop');
      return;
    }
    for (const entry of entries) this.removeInBackground(join(graveyard, entry), 'could not remove a topic deleted before the last stop; it is removed at the next start');
  }

  /**
   * Removes a directory of deleted topics without holding up the caller; a failure is logged
   * (the next start empties the graveyard again). `close` waits for every such removal.
   */
  private removeInBackground(directory: string, failure: string): void {
    const removal = this.fs
      .removeTree(directory)
      .catch((error: unknown) => this.logger.warn({ directory, err: error }, failure))
      .finally(() => this.removals.delete(removal));
    this.removals.add(removal);
  }

  /** Awaited after a topic is deleted, before the delete is answered (groups drop its offsets). */
  onTopicDeleted: ((topic: string) => Promise<void> | void) | null = null;
  /**
   * Called before a topic is created, inside its admin step; a throw refuses the creation (the
   * group coordinator removes what a failed deletion of an earlier topic of the name left).
   */
  beforeTopicCreated: ((topic: string) => Promise<void>) | null = null;

  /**
   * The log writes and fdatasyncs of every partition since the broker started, deleted topics'
   * included: the logs count into one record the broker keeps, so the totals never fall (a
   * counter that falls reads as a restart to Prometheus).
   */
  ioCallTotals(): IoCalls {
    return this.ioCalls;
  }

  /** Every partition's failed group writes since the broker started, by error code (kept as `ioCallTotals` is). */
  writeFailureTotals(): ReadonlyMap<string, number> {
    return this.writeFailures;
  }

  listTopics(): { name: string; partitions: number }[] {
    this.checkOpen();
    return [...this.topics.values()]
      .map((topic) => ({ name: topic.record.name, partitions: topic.logs.length }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  describeTopic(name: string): TopicDescription {
    this.checkOpen();
    checkTopicName(name);
    return this.describe(name);
  }

  private describe(name: string): TopicDescription {
    const topic = this.requireTopic(name);
    const configs: Record<string, string> = {};
    for (const [kafkaName, key] of Object.entries(KAFKA_NAMES)) configs[kafkaName] = String(topic.config[key]);
    return {
      name,
      configs,
      overriddenConfigs: overriddenConfigs(topic.record.configs),
      createdAtMs: topic.record.createdAtMs,
      partitions: topic.logs.map((log, partition) => ({
        partition,
        logStartOffset: log.logStartOffset,
        highWatermark: log.highWatermark,
        logEndOffset: log.logEndOffset,
        sizeBytes: log.sizeBytes,
        segmentCount: log.segmentCount,
        writtenBytes: { ...log.writtenBytes },
        appendedRecords: log.appendedRecords,
        served: { ...log.served },
        error: log.fenced?.message ?? '',
      })),
    };
  }

  /**
   * Sets the `configs` given and returns those named in `reset` to the broker default (the
   * topic's record no longer holds them). INVALID_ARGUMENT for a name both set and reset, an
   * unknown name, or nothing to change.
   */
  alterTopicConfigs(name: string, configs: Record<string, string>, reset: readonly string[] = []): Promise<TopicDescription> {
    this.checkOpen();
    checkTopicName(name);
    checkConfigChange(configs, reset);
    return this.admin(async () => {
      const topic = this.requireTopic(name);
      const kept = Object.entries(topic.record.configs).filter(([key]) => !reset.includes(key));
      const record: TopicRecord = { ...topic.record, configs: { ...Object.fromEntries(kept), ...configs } };
      if (reset.includes('flush') && flushMsSelectsInterval(record.configs)) {
        // The reset would leave the topic on interval whatever the broker's --flush, which is
        // not what a reset to the default says.
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `topic "${name}" sets flush.ms, which alone selects flush=interval: resetting flush would keep it on interval, not the broker default; reset flush.ms too, or set flush`);
      }
      const config = this.configForChange(record, 'max.message.bytes' in configs || reset.includes('max.message.bytes'));
      await this.metadata.putTopic(record);
      topic.record = record;
      topic.config = config;
      for (const log of topic.logs) log.updateConfig(config);
      this.logger.info({ topic: name, configs, reset }, 'topic configs altered');
      return this.describe(name);
    });
  }

  addPartitions(name: string, partitions: number): Promise<TopicDescription> {
    this.checkOpen();
    checkTopicName(name);
    checkPartitionCount(partitions);
    return this.admin(async () => {
      const topic = this.requireTopic(name);
      if (partitions <= topic.logs.length) {
        throw new StrataError(ErrorCode.INVALID_ARGUMENT, `topic "${name}" has ${plural(topic.logs.length, 'partition')}; the new count must be larger, got ${partitions}`);
      }
      const record: TopicRecord = { ...topic.record, partitions };
      const added = await this.openNewPartitions(name, topic.logs.length, partitions, topic.config, () => this.metadata.putTopic(record));
      topic.record = record;
      topic.logs.push(...added);
      this.logger.info({ topic: name, partitions }, 'partitions added');
      this.partitionsChanged(name);
      return this.describe(name);
    });
  }

  /** Called when a topic is created, gains partitions or is deleted (consumer groups reassign). */
  onPartitionsChanged: ((topic: string) => void) | null = null;

  /**
   * Tells `onPartitionsChanged`. A listener that throws is logged: the change is made, and a
   * delete goes on to close and move out the files and drop the offsets.
   */
  private partitionsChanged(name: string): void {
    try {
      this.onPartitionsChanged?.(name);
    } catch (error) {
      this.logger.error({ topic: name, err: error }, 'a listener of partition changes failed (consumer groups may reassign late)');
    }
  }

  /**
   * Each topic's partition count, also while the broker closes: a delete or an added partition
   * the close waits for tells the consumer groups, which count partitions then.
   */
  partitionCounts(): Map<string, number> {
    return new Map([...this.topics.values()].map((topic) => [topic.record.name, topic.logs.length]));
  }

  hasTopic(name: string): boolean {
    return this.topics.has(name);
  }

  /**
   * When the topic was created: which incarnation of the name it is. A reader that names the
   * one it means (Subscribe's `topic_created_at_ms`) is refused by another, so that it never
   * goes on at an offset of a deleted topic in one created again under its name.
   */
  topicCreatedAtMs(name: string): number {
    checkTopicName(name);
    return this.requireTopic(name).record.createdAtMs;
  }

  /**
   * NOT_FOUND unless topic `name` exists and, when `createdAtMs` is not 0, was created then: a
   * caller naming the topic it means by its creation time (a Subscribe, an offset commit) is
   * refused by a topic of that name created at another time (the one meant was deleted and the
   * name taken again). Returns the topic's creation time.
   */
  checkTopicIncarnation(name: string, createdAtMs: number): number {
    const actual = this.topicCreatedAtMs(name);
    if (createdAtMs === 0 || actual === createdAtMs) return actual;
    throw new StrataError(
      ErrorCode.NOT_FOUND,
      `topic "${name}" created at ${timeText(createdAtMs)} (topic_created_at_ms ${createdAtMs}) is gone; the topic of that name now was created at ${timeText(actual)} (${actual}): start afresh in it (its offsets are not the deleted topic's)`,
    );
  }

  /**
   * A creation time later than every topic's this broker has created or loaded: a topic deleted
   * and created again within a millisecond (or after a step back of the clock) is still told
   * from the one before.
   */
  private nextCreatedAtMs(): number {
    this.lastCreatedAtMs = Math.max(this.clock.nowMs(), this.lastCreatedAtMs + 1);
    return this.lastCreatedAtMs;
  }

  /** The partition count of a topic; INVALID_ARGUMENT for an illegal name, NOT_FOUND for an unknown one. */
  partitionCount(name: string): number {
    checkTopicName(name);
    return this.requireTopic(name).logs.length;
  }

  /** The log of a partition; NOT_FOUND for an unknown topic or partition. */
  partitionLog(topic: string, partition: number): PartitionLog {
    checkTopicName(topic);
    const entry = this.requireTopic(topic);
    checkPartitionNumber(partition);
    const log = entry.logs[partition];
    if (log === undefined) {
      throw new StrataError(ErrorCode.NOT_FOUND, `partition ${partition} of topic "${topic}" does not exist (the topic has ${entry.logs.length})`);
    }
    return log;
  }

  private requireTopic(name: string): Topic {
    const topic = this.topics.get(name);
    if (topic === undefined) throw new StrataError(ErrorCode.NOT_FOUND, `topic "${name}" not found`);
    return topic;
  }

  // -------------------------------------------------------------------------------------------
  // Producing.

  /**
   * Appends raw RecordBatch v2 bytes (one or more batches) to one partition: the explicit one,
   * or the one the first record's key maps to, or a sticky choice for a null key.
   */
  async produceBatches(topic: string, partition: number | null, batches: Buffer, acks: Acks): Promise<ProduceResult> {
    this.checkOpen();
    const count = this.requireTopicChecked(topic).logs.length;
    let target: number;
    if (partition !== null) target = partition;
    else {
      // Sequence numbers count per partition: one the broker picks could not be the one the
      // producer counted for, and a retry might land on another partition and be written twice.
      if (batches.length >= PRODUCER_ID_OFFSET + 8 && readProducerId(batches, 0) >= 0) {
        throw new StrataError(
          ErrorCode.INVALID_ARGUMENT,
          `an idempotent batch (producer id ${readProducerId(batches, 0)}) needs an explicit partition: its sequence numbers count per partition; set partition`,
        );
      }
      const key = firstRecordKey(batches);
      target = key === null ? this.sticky.nextPartition(count) : partitionForKey(key, count);
    }
    const log = this.partitionLog(topic, target);
    const result = await this.appendTo(log, batches, acks);
    return { batches: [{ partition: target, ...result.offsets }], logAppendTimeMs: result.logAppendTimeMs };
  }

  /**
   * Appends plain records: grouped by partition (explicit, else murmur2 of the key, else one
   * sticky partition for all null-key records of this call), one batch per partition. With
   * producer fields the records must go to one explicit partition.
   */
  async produceRecords(
    topic: string,
    partition: number | null,
    records: RecordRanges,
    acks: Acks,
    producer: ProducerFields | null,
  ): Promise<ProduceResult> {
    this.checkOpen();
    const { logs, config } = this.requireTopicChecked(topic);
    const count = logs.length;
    if (records.count === 0) throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'a produce request needs records or a batch');
    if (producer !== null && partition === null) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'idempotent produce of plain records needs an explicit partition (sequence numbers are per partition)');
    }
    const options = { timestamp: this.clock.nowMs(), ...(producer ?? {}) };
    const byPartition = partition === null ? this.partitionRecords(records, count) : new Map([[partition, null]]);
    // The request is all or nothing as to size: every partition's batch is checked before any
    // is appended. Records that cannot fit are refused before any is encoded (up to a request's
    // size each), the rest once their batch is.
    const { maxMessageBytes } = config;
    const mayNotFit = rangesBytesFloorBound(records) > maxMessageBytes; // else no pass over the records
    const checked = [...byPartition].map(([target, indices]) => {
      const log = this.partitionLog(topic, target); // an unknown partition is reported first
      const floor = mayNotFit ? rangeBatchBytesFloor(records, indices) : 0;
      if (floor > maxMessageBytes) throw recordsTooLarge(records, indices, target, floor, true, maxMessageBytes);
      return { target, indices, log };
    });
    const targets = checked.map(({ target, indices, log }) => {
      const batch = buildBatchFromRanges(records, indices, options);
      if (batch.length > maxMessageBytes) throw recordsTooLarge(records, indices, target, batch.length, false, maxMessageBytes);
      return { target, batch, log };
    });
    const appends = targets.map(async ({ target, batch, log }) => {
      const result = await this.appendTo(log, batch, acks);
      return { appended: { partition: target, ...result.offsets }, logAppendTimeMs: result.logAppendTimeMs };
    });
    const results = await Promise.all(appends);
    return {
      batches: results.map((result) => result.appended).sort((a, b) => a.partition - b.partition),
      logAppendTimeMs: results.reduce((max, result) => Math.max(max, result.logAppendTimeMs), 0),
    };
  }

  /**
   * The indices of `records` by partition: murmur2 of the key, else one sticky partition for
   * all null-key records. A partition that gets every record maps to null (all of them).
   */
  private partitionRecords(records: RecordRanges, partitionCount: number): Map<number, Int32Array | null> {
    const targets = new Int32Array(records.count);
    const counts = new Map<number, number>();
    let sticky = -1;
    for (let index = 0; index < records.count; index++) {
      const keyLength = records.keyLength(index);
      let target: number;
      if (keyLength !== NULL_LENGTH) target = partitionForKey(records.source, partitionCount, records.keyStart(index), keyLength);
      else target = sticky >= 0 ? sticky : (sticky = this.sticky.nextPartition(partitionCount));
      targets[index] = target;
      counts.set(target, (counts.get(target) ?? 0) + 1);
    }
    const byPartition = new Map<number, Int32Array | null>();
    if (counts.size === 1) {
      byPartition.set(targets[0]!, null);
      return byPartition;
    }
    const filled = new Map<number, number>();
    for (const [target, total] of counts) {
      byPartition.set(target, new Int32Array(total));
      filled.set(target, 0);
    }
    for (let index = 0; index < records.count; index++) {
      const target = targets[index]!;
      const at = filled.get(target)!;
      byPartition.get(target)![at] = index;
      filled.set(target, at + 1);
    }
    return byPartition;
  }

  private async appendTo(log: PartitionLog, batches: Buffer, acks: Acks): Promise<{ offsets: Omit<AppendedBatch, 'partition'>; logAppendTimeMs: number }> {
    // acks=none answers once the batches are validated and queued (offsets unknown, -1).
    const waitFor: AppendWait = acks === 'none' ? 'queued' : acks === 'leader' ? 'written' : 'durable';
    const result: AppendResult = await log.append(batches, { waitFor });
    return { offsets: { baseOffset: result.baseOffset, lastOffset: result.lastOffset, duplicate: result.duplicate }, logAppendTimeMs: result.logAppendTimeMs };
  }

  private requireTopicChecked(topic: string): Topic {
    checkTopicName(topic);
    return this.requireTopic(topic);
  }

  /** The highest producer id handed out (null until first needed). */
  private producerIdsIssued: number | null = null;

  /**
   * Producer id → the name of the token InitProducer issued it to (null: issued without
   * tokens), so that an idempotent produce on a broker with tokens needs no LMDB read: filled
   * as ids are issued, and from LMDB once per id on a miss (ids issued before a restart).
   * Bounded: past PRODUCER_ID_OWNERS_CACHED_MAX entries the oldest goes, and costs one LMDB
   * read if its producer is still at work.
   */
  private readonly producerIdOwners = new Map<number, string | null>();

  /** Refuses a producer id that InitProducer never handed out (see `PartitionLogOptions.checkProducerId`). */
  private readonly checkProducerId = (producerId: number): void => {
    // Read once, then kept by initProducer: idempotent appends need no LMDB read.
    this.producerIdsIssued ??= this.metadata.counterValue(PRODUCER_ID_COUNTER);
    const issued = this.producerIdsIssued;
    if (producerId >= 1 && producerId <= issued) return;
    const range = issued === 0 ? 'it has issued none yet' : `it has issued 1 to ${issued}`;
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `producer id ${producerId} was never handed out by this broker's InitProducer (${range}): call InitProducer for an id, or send -1 for a producer that is not idempotent`);
  };

  /**
   * Refuses (PERMISSION_DENIED) an idempotent produce under `producerId` by token `tokenName`
   * when InitProducer issued that id to another token: sending the owner's next sequence first,
   * a token would have the owner's own batch of that sequence answered `duplicate: true` and
   * never stored. An id issued without tokens is any token's; a broker without tokens
   * (`tokenName` null) checks nothing. An id never issued is left to `checkProducerId`.
   */
  checkProducerIdOwner(producerId: number, tokenName: string | null): void {
    if (tokenName === null) return;
    this.producerIdsIssued ??= this.metadata.counterValue(PRODUCER_ID_COUNTER);
    // Also false for NaN (a raw batch's id past 2^53, which validation refuses).
    if (!(producerId >= 1 && producerId <= this.producerIdsIssued)) return;
    let owner = this.producerIdOwners.get(producerId);
    if (owner === undefined) {
      owner = this.metadata.producerIdOwner(producerId);
      this.rememberProducerIdOwner(producerId, owner);
    }
    if (owner === null || owner === tokenName) return;
    // The owner is not named: another tenant's token names are none of this token's business.
    throw new StrataError(
      ErrorCode.PERMISSION_DENIED,
      `token "${tokenName}" may not produce as producer id ${producerId}: InitProducer issued that id to another token (tokens are known by name: a token renamed in the tokens file is another); call InitProducer with this token for a producer id of its own`,
    );
  }

  private rememberProducerIdOwner(producerId: number, owner: string | null): void {
    if (this.producerIdOwners.size >= PRODUCER_ID_OWNERS_CACHED_MAX) {
      // A Map iterates in insertion order: the first key is the one held longest.
      this.producerIdOwners.delete(this.producerIdOwners.keys().next().value!);
    }
    this.producerIdOwners.set(producerId, owner);
  }

  /**
   * Hands out a new producer id (durable counter) with epoch 0, and how many batches per
   * partition the producer may have in flight (the deduplication window). On a broker with
   * tokens, `ownerTokenName` is the caller's token: the id is recorded as its (in the same LMDB
   * write), and `checkProducerIdOwner` refuses it to other tokens, across restarts too.
   */
  async initProducer(ownerTokenName: string | null = null): Promise<{ producerId: number; producerEpoch: number; maxInFlightBatches: number }> {
    this.checkOpen();
    const producerId = await this.metadata.issueProducerId(ownerTokenName);
    this.producerIdsIssued = Math.max(this.producerIdsIssued ?? 0, producerId);
    if (ownerTokenName !== null) this.rememberProducerIdOwner(producerId, ownerTokenName);
    return { producerId, producerEpoch: 0, maxInFlightBatches: PRODUCER_BATCH_WINDOW };
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle.

  /** The metadata store, for subsystems that keep their own tables in it. */
  get metadataStore(): MetadataStore {
    return this.metadata;
  }

  /**
   * Applies retention to every partition, one after another. A pass still under way when the
   * next is due (one partition waiting on a slow disk) is the one waited for: passes do not
   * queue up behind it.
   */
  applyRetention(): Promise<void> {
    // Cleared in a callback of its own, which runs after the assignment even when the pass
    // finds nothing to wait for.
    this.retentionPass ??= this.applyRetentionEverywhere().finally(() => (this.retentionPass = null));
    return this.retentionPass;
  }

  private async applyRetentionEverywhere(): Promise<void> {
    for (const topic of this.topics.values()) {
      for (const log of topic.logs) {
        // Fenced, or closed: its topic deleted, or the broker stopping.
        if (!log.usable) continue;
        try {
          await log.applyRetention();
        } catch (error) {
          // One closed or fenced meanwhile says so itself (a fence is logged where it is set).
          if (log.usable) this.logger.warn({ err: error, log: log.name }, 'retention failed');
        }
      }
    }
  }

  /**
   * Moves the recovery checkpoint of every partition up to its durable end, one partition after
   * another (see `PartitionLog.checkpointRecoveryPoint`). A pass still under way when the next
   * is due is the one waited for. Failed writes are logged once a pass, with how many failed;
   * the next pass, roll or clean close writes them again.
   */
  checkpointRecoveryPoints(): Promise<void> {
    // Cleared in a callback of its own, which runs after the assignment even when the pass
    // finds nothing to wait for.
    this.recoveryCheckpointPass ??= this.checkpointEveryPartition().finally(() => (this.recoveryCheckpointPass = null));
    return this.recoveryCheckpointPass;
  }

  private async checkpointEveryPartition(): Promise<void> {
    const failures: { log: string; err: unknown }[] = [];
    for (const topic of this.topics.values()) {
      for (const log of topic.logs) {
        await log.checkpointRecoveryPoint().catch((error: unknown) => failures.push({ log: log.name, err: error }));
      }
    }
    if (failures.length > 0) {
      this.logger.warn({ ...failures[0], failed: failures.length }, `writing the recovery checkpoint failed for ${failures.length} partition(s), the first one's error shown; the next pass tries again`);
    }
  }

  private checkOpen(): void {
    if (this.closing !== null) throw new StrataError(ErrorCode.UNAVAILABLE, 'the broker is shutting down; retry on restart');
  }

  /**
   * Closes every partition log cleanly (flush, indexes, checkpoints) and the metadata store,
   * waits for the removals of deleted topics under way (up to `REMOVALS_WAIT_MS`), then lets go
   * of the data directory.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.ready = false;
      if (this.retentionTimer !== null) clearInterval(this.retentionTimer);
      if (this.recoveryCheckpointTimer !== null) clearInterval(this.recoveryCheckpointTimer);
      await this.adminChain;
      const logs = [...this.topics.values()].flatMap((topic) => topic.logs);
      const stopping = new StrataError(ErrorCode.UNAVAILABLE, 'the broker is shutting down; retry on restart');
      try {
        await Promise.all(logs.map((log) => log.close({ reason: stopping }).catch((error: unknown) => this.logger.error({ err: error, log: log.name }, 'close failed'))));
        // A pass under way goes on to logs now closed, which it leaves alone: it ends at once.
        await this.recoveryCheckpointPass;
        await this.metadata.close();
        // The lock covers the file calls in the data directory, these removals' included, but a
        // removal of a large or stalled directory does not hold up the stop past a bound: what
        // is left of it is removed at the next start.
        if (!(await settlesWithin(Promise.allSettled([...this.removals]), REMOVALS_WAIT_MS))) {
          this.logger.warn({ removals: this.removals.size, waitedMs: REMOVALS_WAIT_MS }, "stopping before the removal of deleted topics' directories finished; the next start goes on with it");
        }
      } finally {
        this.lock.release();
      }
    })();
    return this.closing;
  }
}

/** How long `close` waits for the removals of deleted topics' directories under way. */
export const REMOVALS_WAIT_MS = 1_000;

export function checkPartitionCount(count: number): void {
  if (!Number.isInteger(count) || count < 1 || count > PARTITION_COUNT_MAX) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `partition count must be from 1 to ${PARTITION_COUNT_MAX}, got ${count}`);
  }
}

/** The configs a topic sets, sorted: `flush` too when `flush.ms` alone selects interval flushing. */
function overriddenConfigs(configs: Readonly<Record<string, string>>): string[] {
  const names = new Set(Object.keys(configs));
  if (flushMsSelectsInterval(configs)) names.add('flush');
  return [...names].sort();
}

/** An alter names some config, and no config is both set and reset, or reset unknown. */
function checkConfigChange(configs: Record<string, string>, reset: readonly string[]): void {
  if (Object.keys(configs).length === 0 && reset.length === 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'give at least one config to set or reset');
  }
  for (const name of reset) {
    if (!Object.hasOwn(KAFKA_NAMES, name)) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `cannot reset unknown topic config "${name}"; known: ${Object.keys(KAFKA_NAMES).join(', ')}`);
    }
    if (Object.hasOwn(configs, name)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `config "${name}" is both set and reset; give it once`);
  }
  checkConfigSpelling(configs);
}

function checkPartitionNumber(partition: number): void {
  if (!Number.isInteger(partition) || partition < 0) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `partition must be a non-negative integer, got ${partition}`);
  }
}

/**
 * A DeleteTopic whose file calls failed after the topic left the metadata: it is deleted (a
 * retry answers NOT_FOUND), and `message` says what is left for the operator. STORAGE_ERROR,
 * as other failed file calls, not the bare INTERNAL of an unknown error.
 */
function deletedTopicFailure(error: unknown, message: string): StrataError {
  return new StrataError(ErrorCode.STORAGE_ERROR, message, { cause: error });
}

/** A time in ms since the epoch as ISO 8601, or as the number when no date has it. */
function timeText(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? `${ms} ms` : date.toISOString();
}

/**
 * A data directory with topic directories but no metadata store (`metadata.mdb` removed, or
 * emptied) is refused: opened, LMDB would make a new, empty one, and the broker would start
 * with no topics, report ready, and leave every partition as an orphan, its group offsets gone.
 * A directory restored without its metadata, or the wrong volume, looks the same.
 */
async function checkMetadataPresent(fs: FileSystem, dataDir: string): Promise<void> {
  if ((await fs.sizeOf(join(dataDir, METADATA_FILE))) > 0) return;
  const topics = await fs.readdir(topicsDirectory(dataDir));
  if (topics.length === 0) return;
  const shown = topics.slice(0, 3).join(', ') + (topics.length > 3 ? `, and ${topics.length - 3} more` : '');
  throw new Error(
    `the data directory ${dataDir} holds topic directories (${shown}) but no metadata store (${METADATA_FILE} is missing or empty): started, the broker would know none of those topics. Restore ${METADATA_FILE} from a backup, or move the topics directory out of the data directory to start empty`,
  );
}
