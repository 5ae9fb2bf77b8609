/**
 * `consume` without `--group`: the command assigns itself every partition (or `--partition P`)
 * through the client Consumer, each starting at `--from`, and reads until each has reached the
 * high watermark it had at the start (or `--count`, or with `--follow` until Ctrl-C).
 *
 * A partition whose position leaves the log while it is read (retention deleted the records
 * before they were printed, say) goes on from the earliest offset kept: the records still stored
 * are printed, not skipped for the end, and the command says on stderr what it could not print
 * (consumer-failures.ts). A reset that lands at or past the partition's end finishes it, as a
 * printed record there would. An offset past the end of every partition is an error (exit 1),
 * as it is for the one partition of --partition; with --follow, said on stderr, and followed
 * from their ends.
 */
import { type OffsetLookup, type OffsetSpec, listOffsets } from '../../client/admin.js';
import type { Connection } from '../../client/connection.js';
import { Consumer, type OffsetResetEvent } from '../../client/consumer.js';
import { isStrataClientError } from '../../client/errors.js';
import { clientLogger, onInterrupt } from '../client-options.js';
import { watchConsumer } from '../consumer-failures.js';
import type { OutputWriter } from '../output.js';
import { type ReadState, type RecordPrinter, printBatch, reachedEnd } from '../record-format.js';

/** Fetch sizes for throughput: a few MiB per partition in flight, two chunks waiting. */
const FETCH_BYTES = 4 * 1024 * 1024;
const PREFETCH_BATCHES = 2;

export interface AssignedConsumeOptions {
  connection: Connection;
  topic: string;
  partitions: readonly number[];
  start: OffsetSpec;
  printer: RecordPrinter;
  writer: OutputWriter;
  state: ReadState;
}

export async function assignedConsumer(options: AssignedConsumeOptions): Promise<void> {
  const { connection, topic, partitions, start, printer, writer, state } = options;
  // Start offsets, and the ends as of now from the same answers.
  const starts = new Map<number, number>();
  let pastEnd = 0;
  let furthestEnd = 0;
  await Promise.all(
    partitions.map(async (partition) => {
      const lookup = await startOffset(connection, topic, partition, start, partitions.length > 1);
      starts.set(partition, lookup.offset);
      state.endOffsets.set(partition, lookup.highWatermark);
      if (lookup.pastEnd) pastEnd++;
      furthestEnd = Math.max(furthestEnd, lookup.offset);
    }),
  );
  if (pastEnd === partitions.length && pastEnd > 0) {
    // Each was moved to its end: nothing at or after the offset, which was likely a mistake.
    const offset = (start as { offset: number }).offset;
    const problem = `offset ${offset} is past the end of every partition of "${topic}" (the furthest ends at ${furthestEnd})`;
    if (!state.follow) throw new Error(`${problem}; give a smaller --from, or --partition for one partition's range`);
    process.stderr.write(`strata: ${problem}; following from their ends\n`);
  }
  const pending = new Set(partitions.filter((partition) => !reachedEnd(state, partition, starts.get(partition)!)));
  if (pending.size === 0) return;
  const consumer = new Consumer({
    connection,
    initialPosition: ({ partition }) => starts.get(partition) ?? null,
    resetPolicy: 'earliest',
    maxBytesPerPartition: FETCH_BYTES,
    prefetchBatches: PREFETCH_BATCHES,
    logger: clientLogger(),
  });
  const stop = (): void => void consumer.close();
  /** `partition` has nothing more to print in this run. */
  const finished = (partition: number): void => {
    if (!pending.delete(partition)) return;
    if (pending.size > 0) void consumer.revokeAssignment([{ topic, partition }]);
    else void consumer.close(); // ends a wait for records that would not come
  };
  const onReset = (event: OffsetResetEvent): void => {
    if (reachedEnd(state, event.partition, event.resetTo)) finished(event.partition);
  };
  consumer.on('offsetReset', onReset);
  // An interrupt ends the command now, not once a reader that stopped reading takes the output.
  const removeInterrupt = onInterrupt(() => {
    writer.abandon();
    stop();
  });
  const watch = watchConsumer(consumer, { follow: state.follow, stop });
  try {
    await consumer.assign([...pending].map((partition) => ({ topic, partition })));
    while (pending.size > 0 && state.remaining > 0 && !writer.closed) {
      const batch = await consumer.nextBatch();
      if (batch === null) break; // closed: Ctrl-C, every partition finished, or a failure the watch reports below
      watch.delivered();
      const stoppedAt = printBatch(batch, printer, state);
      const next = stoppedAt ?? batch.records[batch.records.length - 1]!.offset + 1;
      if (reachedEnd(state, batch.partition, next)) finished(batch.partition);
      await writer.drain();
    }
  } finally {
    removeInterrupt();
    await consumer.close();
    consumer.off('offsetReset', onReset);
    watch.dispose();
  }
  const failure = watch.failure();
  if (failure !== null) throw failure;
}

/**
 * Where a partition starts. An explicit offset given for several partitions is clamped to each
 * one's stored range (it is out of range on some of them more often than not); for the one
 * partition of --partition it must lie within the range.
 */
async function startOffset(connection: Connection, topic: string, partition: number, start: OffsetSpec, clamp: boolean): Promise<OffsetLookup & { pastEnd: boolean }> {
  try {
    return { ...(await listOffsets(connection, topic, partition, start)), pastEnd: false };
  } catch (error) {
    if (!clamp || typeof start !== 'object' || !('offset' in start) || !isStrataClientError(error, 'OUT_OF_RANGE')) throw error;
    const latest = await listOffsets(connection, topic, partition, 'latest');
    if (start.offset < latest.logStartOffset) return { ...latest, offset: latest.logStartOffset, pastEnd: false };
    return { ...latest, pastEnd: true };
  }
}
