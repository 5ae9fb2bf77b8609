/**
 * Broker metadata in LMDB: topics (partition count, config overrides, creation time), the
 * topics deleted whose directories may not have been moved out yet, the producer-id counter and,
 * on a broker with tokens, the name of the token each producer id was issued to. One LMDB
 * environment per data directory (`<data-dir>/metadata.mdb`), so other subsystems
 * (consumer-group offsets) add their own named databases to it.
 *
 * Durability: with lmdb-js's default `overlappingSync` (on Linux) a write's promise resolves
 * when its transaction is committed and visible, and the flush to disk follows. Every write here
 * therefore also waits for `flushed` (`durably`), so what it answers survives a power loss; the
 * flushes still overlap the next transactions. Other stores on this environment do the same.
 */
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { ErrorCode, StrataError } from '../common/errors.js';

export interface TopicRecord {
  name: string;
  partitions: number;
  /** Config overrides with Kafka names; unset configs take the broker defaults. */
  configs: Record<string, string>;
  createdAtMs: number;
}

export const METADATA_FILE = 'metadata.mdb';

/** The durable counter InitProducer's producer ids come from. */
export const PRODUCER_ID_COUNTER = 'producer-id';

export class MetadataStore {
  private constructor(
    readonly root: RootDatabase,
    private readonly topics: Database<TopicRecord, string>,
    private readonly counters: Database<number, string>,
    /** Topic name → when it was deleted (ms), until its directory has been moved out (`deletionDone`). */
    private readonly deletions: Database<number, string>,
    /**
     * Producer id → the name of the token InitProducer issued it to. Ids issued without tokens
     * have no entry: any token may use them (as every caller could when they were issued).
     */
    private readonly producerIdOwners: Database<string, number>,
  ) {}

  static open(dataDir: string): MetadataStore {
    keepFailedCommitsFromEndingTheProcess();
    const root = open({ path: join(dataDir, METADATA_FILE), compression: false });
    return new MetadataStore(
      root,
      root.openDB<TopicRecord, string>({ name: 'topics', encoding: 'msgpack' }),
      root.openDB<number, string>({ name: 'counters', encoding: 'msgpack' }),
      root.openDB<number, string>({ name: 'topic-deletions', encoding: 'msgpack' }),
      root.openDB<string, number>({ name: 'producer-id-owners', encoding: 'msgpack' }),
    );
  }

  listTopics(): TopicRecord[] {
    const records: TopicRecord[] = [];
    for (const { value } of this.topics.getRange()) records.push(value);
    return records;
  }

  getTopic(name: string): TopicRecord | undefined {
    return this.topics.get(name);
  }

  async putTopic(record: TopicRecord): Promise<void> {
    await durably(this.root, this.topics.put(record.name, record));
  }

  /** Inserts only if absent; false when the topic exists. */
  async createTopic(record: TopicRecord): Promise<boolean> {
    return durably(
      this.root,
      this.topics.ifNoExists(record.name, () => {
        this.topics.put(record.name, record);
      }),
    );
  }

  /**
   * Removes the topic and, in the same transaction, records its deletion: a broker stopped
   * before the topic's directory was moved out finishes that at its next start.
   */
  async deleteTopic(name: string, nowMs: number): Promise<void> {
    await durably(
      this.root,
      this.topics.transaction(() => {
        this.topics.remove(name);
        this.deletions.put(name, nowMs);
      }),
    );
  }

  /** Deleted topics whose directories may still be in the topics directory, with when each was deleted. */
  pendingDeletions(): { name: string; deletedAtMs: number }[] {
    return [...this.deletions.getRange()].map(({ key, value }) => ({ name: key, deletedAtMs: value }));
  }

  /** The deleted topic's directory is out of the topics directory (or was never there). */
  async deletionDone(name: string): Promise<void> {
    await durably(this.root, this.deletions.remove(name));
  }

  /** The last value a durable counter handed out (0 before its first). */
  counterValue(name: string): number {
    return this.counters.get(name) ?? 0;
  }

  /** Returns the next value of a durable counter (1, 2, 3...). */
  async nextCounter(name: string): Promise<number> {
    return durably(
      this.root,
      this.counters.transaction(() => {
        const next = (this.counters.get(name) ?? 0) + 1;
        this.counters.put(name, next);
        return next;
      }),
    );
  }

  /** Raises a durable counter to `value` if it is below it; returns whether it did. */
  async raiseCounter(name: string, value: number): Promise<boolean> {
    return durably(
      this.root,
      this.counters.transaction(() => {
        if ((this.counters.get(name) ?? 0) >= value) return false;
        this.counters.put(name, value);
        return true;
      }),
    );
  }

  /**
   * Hands out the next producer id (`PRODUCER_ID_COUNTER`) and, given a token name, records in
   * the same transaction that the id is that token's: no crash leaves an id issued with its
   * owner lost, and a reader that sees the id counted sees its owner. Without an owner it is the
   * counter's write alone, as `nextCounter`.
   */
  async issueProducerId(ownerTokenName: string | null): Promise<number> {
    return durably(
      this.root,
      this.counters.transaction(() => {
        const producerId = (this.counters.get(PRODUCER_ID_COUNTER) ?? 0) + 1;
        this.counters.put(PRODUCER_ID_COUNTER, producerId);
        if (ownerTokenName !== null) this.producerIdOwners.put(producerId, ownerTokenName);
        return producerId;
      }),
    );
  }

  /** The name of the token `producerId` was issued to; null for an id issued without tokens (or never issued). */
  producerIdOwner(producerId: number): string | null {
    return this.producerIdOwners.get(producerId) ?? null;
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

/**
 * `write`'s result once the transaction is also flushed to disk, not only committed. A
 * transaction LMDB could not commit (an I/O error, a full disk) wrote nothing: that is
 * STORAGE_ERROR (UNAVAILABLE to a client, whose retry may succeed), not an unexplained INTERNAL.
 */
export async function durably<T>(root: RootDatabase, write: Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await write;
  } catch (error) {
    throw await commitFailure(error);
  }
  await root.flushed;
  return result;
}

/** The message lmdb-js rejects the writes of a transaction it could not commit with. */
const LMDB_COMMIT_FAILED = 'Commit failed (see commitError for details)';

let failedCommitsKept = false;

/**
 * lmdb-js rejects, when a commit fails (a full disk), promises that no caller holds as well as
 * the writes' own: the batch's own promise, which it makes for a batch of only conditional
 * writes, and the promise of each write made inside a `batch()` callback. Unhandled, one of
 * those would end the process, every partition with it, while the write's own promise tells its
 * caller (STORAGE_ERROR or DISK_FULL, see `durably`). So such a rejection is let go here; any
 * other unhandled rejection still ends the process, as it would have.
 */
function keepFailedCommitsFromEndingTheProcess(): void {
  if (failedCommitsKept) return;
  failedCommitsKept = true;
  process.on('unhandledRejection', (reason) => {
    const commitError = reason instanceof Error && reason.message === LMDB_COMMIT_FAILED ? (reason as { commitError?: unknown }).commitError : undefined;
    if (!(commitError instanceof Promise)) throw reason;
    commitError.catch(() => undefined);
  });
}

/** How long a failed write waits for lmdb-js to name the cause of its failed commit. */
const COMMIT_ERROR_WAIT_MS = 500;

/**
 * lmdb-js rejects every write of a failed transaction with "Commit failed (see commitError for
 * details)", `commitError` being a promise that rejects with LMDB's own error once the write
 * thread reports it. It is read here (so that rejection is never left unhandled, which would
 * stop the process) for a message that names the cause, waiting a bounded time for it.
 */
async function commitFailure(error: unknown): Promise<unknown> {
  const commitError = (error as { commitError?: unknown } | null)?.commitError;
  // Anything else was thrown by a transaction's own callback, and is passed on as it is.
  if (!(commitError instanceof Promise)) return error;
  let timer: NodeJS.Timeout | undefined;
  const cause = await Promise.race([
    commitError.then(
      () => error,
      (lmdbError: unknown) => lmdbError,
    ),
    new Promise<unknown>((resolve) => (timer = setTimeout(() => resolve(error), COMMIT_ERROR_WAIT_MS).unref())),
  ]);
  clearTimeout(timer);
  const reason = cause instanceof Error ? cause.message : String(cause);
  // LMDB names a full disk by its errno (ENOSPC, 28) in `code`.
  if ((cause as { code?: unknown } | null)?.code === 28) {
    return new StrataError(ErrorCode.DISK_FULL, `the broker's metadata store (LMDB) could not commit a write: the disk is full (${reason}); nothing of it was stored. Free space on the data directory's file system, then retry`, { cause });
  }
  return new StrataError(ErrorCode.STORAGE_ERROR, `the broker's metadata store (LMDB) could not commit a write (${reason}); nothing of it was stored, retry (the broker log may say more)`, { cause });
}
