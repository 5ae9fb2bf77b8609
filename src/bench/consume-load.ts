/**
 * The consume workload (after Kafka's kafka-consumer-perf-test): a catch-up read of `records`
 * records with the client `Consumer` (src/client/consumer.ts), which follows each partition
 * with a Subscribe stream of raw batches, checks each batch's CRC and decodes every record,
 * handing them over a pushed chunk at a time (`nextBatch()`).
 *
 * Without a group the consumer assigns itself every partition of the topic from the earliest
 * offset. With a group it joins as the group's member, starts each assigned partition at the
 * group's committed offset (earliest when none), and commits where it stopped before leaving.
 *
 * The read stops after `records` records (or a little more: batches are taken whole). It fails
 * at once when fewer than `records` records lie between its start offsets and the end offsets
 * the topic has when it starts, rather than report a shorter read as if it were the one asked
 * for: `readableRecords` tells the consume phase how many it must fill first. The time runs
 * from the assignment to the last batch. Throughput counts key and value bytes of the records
 * read.
 */
import type { Logger } from '../common/logger.js';
import { Connection, type ConnectionOptions } from '../client/connection.js';
import { Consumer } from '../client/consumer.js';
import { type TopicDescription, describeTopic } from '../client/admin.js';
import { BenchGroupMember, committedOffsets } from './group-member.js';
import type { LoadFigures } from './produce-load.js';
import type { Progress } from './progress.js';

/** A read that gets no record for this long has stalled. */
const STALL_TIMEOUT_MS = 30_000;
const GROUP_JOIN_TIMEOUT_MS = 30_000;

export interface ConsumeLoadOptions {
  connection: ConnectionOptions;
  topic: string;
  records: number;
  /** Join this consumer group (null: assign every partition, no group). */
  group: string | null;
  /** The consumer's maxBytesPerPartition (null: the client's default). */
  fetchBytes: number | null;
  logger: Logger;
  progress: Progress;
  label: string;
}

export interface ConsumeFigures extends LoadFigures {
  /** The partitions read and where each started. */
  startOffsets: Record<string, number>;
}

/**
 * Where the read starts in each partition: with a group, its committed offset (kept within the
 * log's start and end offsets), else the log start offset.
 */
async function startOffsets(connection: Connection, description: TopicDescription, group: string | null): Promise<Map<number, number>> {
  const committed = group === null ? new Map<number, number>() : await committedOffsets(connection, group, description.name);
  return new Map(
    description.partitions.map((partition) => {
      const offset = committed.get(partition.partition) ?? partition.logStartOffset;
      return [partition.partition, Math.min(partition.highWatermark, Math.max(partition.logStartOffset, offset))];
    }),
  );
}

/** Records between `starts` and the high watermarks, over `partitions`. */
function recordsAfter(description: TopicDescription, starts: ReadonlyMap<number, number>, partitions: readonly number[]): number {
  const ends = new Map(description.partitions.map((partition) => [partition.partition, partition.highWatermark]));
  return partitions.reduce((sum, partition) => sum + Math.max(0, ends.get(partition)! - starts.get(partition)!), 0);
}

/**
 * Records a read of the topic would find now: from the group's committed offsets with a group
 * (the benchmark, its only member, is assigned every partition), else from the log start.
 */
export async function readableRecords(options: ConnectionOptions, topic: string, group: string | null): Promise<number> {
  const connection = new Connection(options);
  try {
    const description = await describeTopic(connection, topic);
    const starts = await startOffsets(connection, description, group);
    return recordsAfter(description, starts, description.partitions.map((partition) => partition.partition));
  } finally {
    connection.close();
  }
}

export async function runConsumeLoad(options: ConsumeLoadOptions): Promise<ConsumeFigures> {
  const connection = new Connection(options.connection);
  let member: BenchGroupMember | null = null;
  let consumer: Consumer | null = null;
  let stopProgress = (): void => undefined;
  try {
    const description = await describeTopic(connection, options.topic);
    let partitions = description.partitions.map((partition) => partition.partition);
    if (options.group !== null) {
      member = await BenchGroupMember.join(connection, options.group, options.topic, GROUP_JOIN_TIMEOUT_MS);
      partitions = [...member.partitions];
    }
    const starts = await startOffsets(connection, description, options.group);
    const available = recordsAfter(description, starts, partitions);
    if (available < options.records) {
      const from = options.group === null ? 'the log start' : `group "${options.group}"'s committed offsets`;
      throw new Error(`only ${available} records of "${options.topic}" lie after ${from}, fewer than the ${options.records} to read`);
    }
    const target = options.records;
    consumer = new Consumer({
      connection,
      resetPolicy: 'earliest',
      ...(options.fetchBytes !== null ? { maxBytesPerPartition: options.fetchBytes } : {}),
      initialPosition: ({ partition }) => starts.get(partition) ?? null,
      logger: options.logger,
    });
    let records = 0;
    let bytes = 0;
    const positions = new Map<number, number>();
    stopProgress = options.progress.start(options.label, () => records);
    const startedAt = performance.now();
    await consumer.assign(partitions.map((partition) => ({ topic: options.topic, partition })));
    while (records < target) {
      const batch = await consumer.nextBatch({ timeoutMs: STALL_TIMEOUT_MS });
      if (batch === null) throw new Error(`the read stalled: no record for ${STALL_TIMEOUT_MS} ms after ${records} of ${target} records`);
      const list = batch.records;
      for (let index = 0; index < list.length; index++) {
        const record = list[index]!;
        bytes += (record.key?.length ?? 0) + (record.value?.length ?? 0);
      }
      records += list.length;
      positions.set(batch.partition, list[list.length - 1]!.offset + 1);
    }
    const endedAt = performance.now();
    stopProgress();
    if (member !== null) {
      if (member.revoked.length > 0) throw new Error(`the group took partitions ${member.revoked.join(', ')} away during the read (another member joined "${options.group}")`);
      await member.commitAndLeave(positions);
      member = null;
    }
    return {
      records,
      bytes,
      seconds: (endedAt - startedAt) / 1000,
      latency: null,
      startOffsets: Object.fromEntries(partitions.map((partition) => [String(partition), starts.get(partition)!])),
    };
  } finally {
    stopProgress();
    await consumer?.close();
    if (member !== null) await member.commitAndLeave(new Map()).catch(() => undefined);
    connection.close();
  }
}
