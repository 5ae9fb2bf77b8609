/**
 * Committed consumer-group offsets in LMDB (the broker's metadata environment, database
 * `group-offsets`). Keys are [group, topic, partition] tuples, so one group's offsets are one
 * ordered range. A commit writes all its partitions in one transaction and resolves only when
 * that transaction is flushed to disk (`durably`: lmdb-js's own promise resolves at commit,
 * before the flush), so an acknowledged commit survives a power loss. Concurrent commits share
 * LMDB's batched commits and flushes, which is what makes tens of thousands of commits per
 * second possible.
 */
import type { Database, RootDatabase } from 'lmdb';
import { durably } from '../broker/metadata-store.js';

export interface CommittedOffset {
  topic: string;
  partition: number;
  offset: number;
  metadata: string;
  commitTimeMs: number;
}

type Key = [string, string, number];

interface StoredOffset {
  offset: number;
  metadata: string;
  commitTimeMs: number;
}

export class OffsetStore {
  private readonly db: Database<StoredOffset, Key>;

  constructor(private readonly root: RootDatabase) {
    this.db = root.openDB<StoredOffset, Key>({ name: 'group-offsets', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
  }

  /** Writes every offset of one commit in one durable transaction. */
  async commit(group: string, offsets: readonly CommittedOffset[]): Promise<void> {
    // `batch` joins LMDB's asynchronous write batch: all puts of this commit land in one
    // transaction, shared with concurrent commits.
    await durably(
      this.root,
      this.db.batch(() => {
        for (const entry of offsets) {
          this.db.put([group, entry.topic, entry.partition], { offset: entry.offset, metadata: entry.metadata, commitTimeMs: entry.commitTimeMs });
        }
      }),
    );
  }

  get(group: string, topic: string, partition: number): CommittedOffset | undefined {
    const stored = this.db.get([group, topic, partition]);
    return stored === undefined ? undefined : { topic, partition, ...stored };
  }

  /** Offsets of a group, optionally only for `topics`, ordered by topic and partition. */
  list(group: string, topics?: ReadonlySet<string>): CommittedOffset[] {
    const result: CommittedOffset[] = [];
    for (const { key, value } of this.db.getRange({ start: [group], end: [group, '\uffff'] })) {
      const [, topic, partition] = key;
      if (topics === undefined || topics.has(topic)) result.push({ topic, partition, ...value });
    }
    return result;
  }

  /** Every group that has committed offsets. */
  groups(): string[] {
    const groups: string[] = [];
    let last: string | null = null;
    for (const key of this.db.getKeys()) {
      if (key[0] !== last) groups.push((last = key[0]));
    }
    return groups;
  }

  async deleteGroupOffsets(group: string, topics?: ReadonlySet<string>): Promise<void> {
    // Listed inside the transaction, so a commit that lands first is deleted with the rest.
    await durably(
      this.root,
      this.db.transaction(() => {
        for (const entry of this.list(group, topics)) this.db.remove([group, entry.topic, entry.partition]);
      }),
    );
  }

  /**
   * Deletes a group's offsets if none of them was committed after `cutoffMs`; returns whether it
   * did. Decided inside the transaction, so a commit that lands first keeps them all.
   */
  async expireGroupOffsets(group: string, cutoffMs: number): Promise<boolean> {
    return durably(
      this.root,
      this.db.transaction(() => {
        const entries = this.list(group);
        if (entries.length === 0 || entries.some((entry) => entry.commitTimeMs > cutoffMs)) return false;
        for (const entry of entries) this.db.remove([group, entry.topic, entry.partition]);
        return true;
      }),
    );
  }

  /**
   * The highest offset any group has committed for a partition, or null when none has. Reads
   * every group's offsets: for a repair, not for a request path.
   */
  highestCommitted(topic: string, partition: number): number | null {
    let highest: number | null = null;
    for (const { key, value } of this.db.getRange()) {
      if (key[1] === topic && key[2] === partition && (highest === null || value.offset > highest)) highest = value.offset;
    }
    return highest;
  }

  /**
   * Lowers every committed offset above its partition's end (`endOf`; null leaves the partition
   * alone) to that end, keeping its metadata and commit time, in one durable transaction.
   * Returns what it lowered. For the start, before any commit can come: the offsets are read
   * before the transaction, and most starts find nothing to lower, so open none (nor wait for a sync).
   */
  async lowerPastEnds(endOf: (topic: string, partition: number) => number | null): Promise<{ group: string; topic: string; partition: number; committed: number; end: number }[]> {
    const lowered: { key: Key; value: StoredOffset; committed: number }[] = [];
    for (const { key, value } of this.db.getRange()) {
      const end = endOf(key[1], key[2]);
      if (end !== null && value.offset > end) lowered.push({ key, value: { ...value, offset: end }, committed: value.offset });
    }
    if (lowered.length === 0) return [];
    await durably(
      this.root,
      this.db.transaction(() => {
        for (const { key, value } of lowered) this.db.put(key, value);
      }),
    );
    return lowered.map(({ key: [group, topic, partition], value, committed }) => ({ group, topic, partition, committed, end: value.offset }));
  }

  /** Every topic some group has committed offsets for. */
  topics(): string[] {
    const topics = new Set<string>();
    for (const key of this.db.getKeys()) topics.add(key[1]);
    return [...topics];
  }

  /** Removes every group's offsets of a deleted topic. */
  async deleteTopic(topic: string): Promise<void> {
    // Listed inside the transaction, so a commit that lands first is deleted with the rest.
    await durably(
      this.root,
      this.db.transaction(() => {
        const doomed: Key[] = [];
        for (const key of this.db.getKeys()) if (key[1] === topic) doomed.push(key);
        for (const key of doomed) this.db.remove(key);
      }),
    );
  }
}
