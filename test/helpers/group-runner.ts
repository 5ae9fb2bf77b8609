/**
 * Helpers for consumer-group tests: a `Runner` is one group-member Consumer whose record loop
 * appends every record it processes to a log shared by all runners, tagged with the runner's
 * name and its ownership period of the partition (so a duplicate can be traced to the commit
 * that ended the period it was first processed in). `waitUntil` polls with a deadline.
 */
import { Consumer, type ConsumerOptions, type OffsetsCommittedEvent } from '../../src/client/consumer.js';
import type { PartitionsEvent, PartitionsLostEvent } from '../../src/client/group-member.js';

export interface Processed {
  runner: string;
  topic: string;
  partition: number;
  offset: number;
  /** Which ownership period of this partition (per runner) the record was processed in. */
  period: number;
}

/** One ownership period of a partition by a runner; `lastCommit` is the last offset it committed in it. */
export interface Period {
  runner: string;
  topic: string;
  partition: number;
  index: number;
  lastCommit: number | null;
  /** How it ended: 'revoked' (committed first), 'lost', 'closed', 'aborted', or null while owned. */
  end: string | null;
}

const key = (topic: string, partition: number): string => `${topic}/${partition}`;

export class Runner {
  readonly consumer: Consumer;
  /** Ownership periods per partition, in order. */
  readonly periods = new Map<string, Period[]>();
  readonly committed: OffsetsCommittedEvent[] = [];
  readonly loop: Promise<void>;
  /** Called after each processed record (e.g. to abort in the middle of the stream). */
  onRecord: ((record: Processed) => void) | null = null;

  constructor(
    readonly name: string,
    options: ConsumerOptions,
    readonly log: Processed[],
  ) {
    const consumer = new Consumer(options);
    this.consumer = consumer;
    this.consumer.on('partitionsAssigned', ({ partitions }: PartitionsEvent) => {
      for (const { topic, partition } of partitions) {
        const list = this.periods.get(key(topic, partition)) ?? [];
        list.push({ runner: name, topic, partition, index: list.length, lastCommit: null, end: null });
        this.periods.set(key(topic, partition), list);
      }
    });
    const endPeriods = (partitions: readonly { topic: string; partition: number }[], end: string): void => {
      for (const { topic, partition } of partitions) {
        const period = this.current(topic, partition);
        if (period !== null) period.end = end;
      }
    };
    this.consumer.on('partitionsRevoked', ({ partitions }: PartitionsEvent) => endPeriods(partitions, 'revoked'));
    this.consumer.on('partitionsLost', ({ partitions }: PartitionsLostEvent) => endPeriods(partitions, 'lost'));
    this.consumer.on('offsetsCommitted', (event: OffsetsCommittedEvent) => {
      this.committed.push(event);
      for (const { topic, partition, offset } of event.offsets) {
        const period = this.current(topic, partition);
        if (period !== null) period.lastCommit = offset;
      }
    });
    this.loop = (async () => {
      for await (const record of consumer) {
        const processed: Processed = {
          runner: name,
          topic: record.topic,
          partition: record.partition,
          offset: record.offset,
          period: (this.periods.get(key(record.topic, record.partition))?.length ?? 0) - 1,
        };
        log.push(processed);
        this.onRecord?.(processed);
      }
    })();
  }

  /** The open ownership period of a partition, or null. */
  current(topic: string, partition: number): Period | null {
    const list = this.periods.get(key(topic, partition));
    const last = list?.[list.length - 1];
    return last !== undefined && last.end === null ? last : null;
  }

  period(topic: string, partition: number, index: number): Period | undefined {
    return this.periods.get(key(topic, partition))?.[index];
  }

  assignment(): string[] {
    return this.consumer
      .assignment()
      .map(({ topic, partition }) => key(topic, partition))
      .sort();
  }

  async close(): Promise<void> {
    await this.consumer.close();
    await this.loop;
    for (const list of this.periods.values()) for (const period of list) period.end ??= 'closed';
  }

  async abort(): Promise<void> {
    for (const list of this.periods.values()) for (const period of list) period.end ??= 'aborted';
    await this.consumer.abort();
    await this.loop;
  }
}

/**
 * Checks the at-least-once contract on a processing log: returns the records processed more
 * than once, after asserting (by throwing) that every earlier processing of a duplicate happened
 * at or after the last commit of the ownership period it was processed in. `runners` maps a
 * runner name to its Runner.
 */
export function duplicatesAfterLastCommit(log: readonly Processed[], runners: ReadonlyMap<string, Runner>): Processed[] {
  const byRecord = new Map<string, Processed[]>();
  for (const entry of log) {
    const id = `${entry.topic}/${entry.partition}/${entry.offset}`;
    const list = byRecord.get(id) ?? [];
    list.push(entry);
    byRecord.set(id, list);
  }
  const duplicates: Processed[] = [];
  for (const list of byRecord.values()) {
    if (list.length < 2) continue;
    for (const earlier of list.slice(0, -1)) {
      duplicates.push(earlier);
      const period = runners.get(earlier.runner)?.period(earlier.topic, earlier.partition, earlier.period);
      if (period === undefined) throw new Error(`no ownership period for ${JSON.stringify(earlier)}`);
      const lastCommit = period.lastCommit ?? -1;
      if (earlier.offset < lastCommit) {
        throw new Error(`${earlier.topic}-${earlier.partition} offset ${earlier.offset} was processed again although ${earlier.runner} had committed ${lastCommit} in that period (ended: ${period.end})`);
      }
    }
  }
  return duplicates;
}
