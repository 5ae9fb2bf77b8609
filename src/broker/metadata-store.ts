/**
 * Broker metadata in LMDB: topics (partition count, config overrides, creation time) and the
 * producer-id counter. One LMDB environment per data directory (`<data-dir>/metadata.mdb`), so
 * other subsystems (consumer-group offsets) add their own named databases to it.
 *
 * Durability: lmdb-js resolves a write's promise once its transaction is committed and flushed
 * to disk (the default sync mode), so an awaited write survives a crash.
 */
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

export interface TopicRecord {
  name: string;
  partitions: number;
  /** Config overrides with Kafka names; unset configs take the broker defaults. */
  configs: Record<string, string>;
  createdAtMs: number;
}

export const METADATA_FILE = 'metadata.mdb';

export class MetadataStore {
  private constructor(
    readonly root: RootDatabase,
    private readonly topics: Database<TopicRecord, string>,
    private readonly counters: Database<number, string>,
  ) {}

  static open(dataDir: string): MetadataStore {
    const root = open({ path: join(dataDir, METADATA_FILE), compression: false });
    return new MetadataStore(
      root,
      root.openDB<TopicRecord, string>({ name: 'topics', encoding: 'msgpack' }),
      root.openDB<number, string>({ name: 'counters', encoding: 'msgpack' }),
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
    await this.topics.put(record.name, record);
  }

  /** Inserts only if absent; false when the topic exists. */
  async createTopic(record: TopicRecord): Promise<boolean> {
    return this.topics.ifNoExists(record.name, () => {
      this.topics.put(record.name, record);
    });
  }

  async deleteTopic(name: string): Promise<void> {
    await this.topics.remove(name);
  }

  /** Returns the next value of a durable counter (1, 2, 3...). */
  async nextCounter(name: string): Promise<number> {
    return this.counters.transaction(() => {
      const next = (this.counters.get(name) ?? 0) + 1;
      this.counters.put(name, next);
      return next;
    });
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
