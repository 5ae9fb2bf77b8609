/**
 * `consume --group G`: the command as a member of a consumer group, through the client
 * Consumer's group membership (`groupId` + `subscribe`). The broker assigns the partitions and
 * moves them as members come and go; the Consumer starts each at the group's committed offset
 * (the reset policy for partitions without one), commits automatically every
 * `AUTO_COMMIT_INTERVAL_MS` and before a partition is revoked, and on close commits the final
 * positions and leaves the group, so the partitions pass to the other members at once.
 *
 * Exactly what was printed is committed: a batch is counted as processed when the next one is
 * asked for, which happens only once stdout has reported all of it written, and a batch printed
 * only in part (the count or the end reached inside it) first moves its partition back to just
 * after the last printed record. When stdout closes (EPIPE, `| head`) or fails inside a batch,
 * the partition moves back to the first record whose line was not written, so close() commits
 * no record the reader did not get (at-least-once: what the reader took from the pipe and
 * dropped unseen, as `head` does, is counted as printed; nothing can tell it apart). An
 * interrupt (Ctrl-C, SIGTERM) or a failure that ends the command while a batch waits for stdout
 * moves the partition back the same way, to the first record stdout had not taken then, before
 * the member closes (lines the reader takes later are delivered again). An interrupt also gives
 * up on stdout (`OutputWriter.abandon`), so the command ends without waiting for the reader.
 *
 * Without --follow the member stops once it owns partitions and each of them has reached the
 * high watermark it had when the command started.
 */
import type { Connection } from '../../client/connection.js';
import { Consumer, type ConsumerBatch, type ConsumerRecord } from '../../client/consumer.js';
import { clientLogger, onInterrupt } from '../client-options.js';
import { watchConsumer } from '../consumer-failures.js';
import type { OutputWriter } from '../output.js';
import { type ReadState, type RecordPrinter, printBatch, reachedEnd } from '../record-format.js';

/** How long a member may hold no partition after joining before the command says so. */
export const NO_PARTITIONS_NOTICE_MS = 3_000;
/** How often positions are committed while consuming. */
const AUTO_COMMIT_INTERVAL_MS = 1_000;
/** How long one wait for records lasts before the end condition is checked again. */
const END_CHECK_INTERVAL_MS = 200;
const FETCH_BYTES = 4 * 1024 * 1024;

/** A batch handed to stdout: where each printed record's line ends in the output, and where printing stopped (the count or the end reached inside it). */
interface PrintedBatch {
  batch: ConsumerBatch;
  lineEnds: readonly number[];
  stoppedAt: number | null;
}

export interface GroupConsumeOptions {
  connection: Connection;
  topic: string;
  groupId: string;
  resetPolicy: 'earliest' | 'latest';
  printer: RecordPrinter;
  writer: OutputWriter;
  state: ReadState;
}

export async function groupConsumer(options: GroupConsumeOptions): Promise<void> {
  const { connection, topic, printer, writer, state } = options;
  const consumer = new Consumer({
    connection,
    groupId: options.groupId,
    subscribe: [topic],
    autoCommit: true,
    autoCommitIntervalMs: AUTO_COMMIT_INTERVAL_MS,
    resetPolicy: options.resetPolicy,
    clientId: 'strata-cli',
    maxBytesPerPartition: FETCH_BYTES,
    logger: clientLogger(),
  });
  let stopping = false;
  /** The batch being printed. */
  let printing: PrintedBatch | null = null;
  /** Moves the batch's partition back to its first record stdout has not taken (or that was not printed). */
  const leaveUnwritten = ({ batch, lineEnds, stoppedAt }: PrintedBatch): void => {
    const resumeAt = firstUnwritten(batch.records, lineEnds, writer.writtenBytes) ?? stoppedAt;
    if (resumeAt === null) return;
    try {
      consumer.seek(topic, batch.partition, resumeAt);
    } catch {
      // revoked meanwhile (the revocation committed the batch's start, nothing is skipped), or closed
    }
  };
  const stop = (): void => {
    stopping = true;
    // close() counts a batch in hand as processed and commits its end: a batch still waiting
    // for stdout (a reader that stopped reading, or dies with the same Ctrl-C) is first left to
    // the group from its first record not yet written.
    if (printing !== null) leaveUnwritten(printing);
    void consumer.close();
  };
  // An interrupt ends the command now, not once a reader that stopped reading takes the
  // output: the batch waiting for stdout is left to the group from its first record not written
  // (stop), then stdout is given up on, and the member commits and leaves as it closes.
  const removeInterrupt = onInterrupt(() => {
    stop();
    writer.abandon();
  });
  const watch = watchConsumer(consumer, { follow: state.follow, stop });
  const stopNotice = noticeNoPartitions(consumer, options.groupId, topic);
  try {
    while (!stopping && state.remaining > 0 && !writer.closed) {
      if (!state.follow && allAssignedAtEnd(consumer, state)) break;
      const batch = await consumer.nextBatch(state.follow ? {} : { timeoutMs: END_CHECK_INTERVAL_MS });
      if (batch === null) continue; // timed out (check the end again) or closed (stopping)
      watch.delivered();
      try {
        // Where each printed record's line ends in the output, to find the first one not written.
        const lineEnds: number[] = [];
        const stoppedAt = printBatch(batch, printer, state, () => lineEnds.push(writer.appendedBytes));
        const printed: PrintedBatch = { batch, lineEnds, stoppedAt };
        printing = printed;
        await writer.flushed();
        // Leave the rest of the batch to the group: commit just after the last record printed and written.
        if (!stopping) leaveUnwritten(printed);
      } finally {
        printing = null;
      }
    }
  } finally {
    removeInterrupt();
    stopNotice();
    await consumer.close();
    watch.dispose();
  }
  const failure = watch.failure();
  if (failure !== null) throw failure;
}

/**
 * Says once on stderr when the member still has no partition `NO_PARTITIONS_NOTICE_MS` after it
 * joined (more members than partitions, or partitions still being given up by others): the
 * command would otherwise wait without a word. Returns what stops watching.
 */
function noticeNoPartitions(consumer: Consumer, groupId: string, topic: string): () => void {
  let timer: NodeJS.Timeout | null = null;
  let said = false;
  const onJoined = (): void => {
    if (said || timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      if (consumer.assignment().length > 0) return;
      said = true;
      process.stderr.write(`strata: this member of group "${groupId}" has no partition of ${topic} yet (other members own them all, or are still giving them up); waiting for one\n`);
    }, NO_PARTITIONS_NOTICE_MS);
    timer.unref();
  };
  consumer.on('groupJoined', onJoined);
  return () => {
    consumer.off('groupJoined', onJoined);
    if (timer !== null) clearTimeout(timer);
  };
}

/** True once the member owns partitions and every one of them has nothing left for this run. */
function allAssignedAtEnd(consumer: Consumer, state: ReadState): boolean {
  const assigned = consumer.assignment();
  if (assigned.length === 0) return false;
  return assigned.every(({ topic, partition }) => {
    const position = consumer.position(topic, partition);
    return position !== null && reachedEnd(state, partition, position);
  });
}

/**
 * The offset of the first printed record whose line the stream did not report written, or null
 * when all were. `lineEnds[i]` is the output position just after record i's line; the stream
 * writes in order, so its written bytes are a prefix of the output.
 */
function firstUnwritten(records: readonly ConsumerRecord[], lineEnds: readonly number[], writtenBytes: number): number | null {
  for (let index = 0; index < lineEnds.length; index++) {
    if (lineEnds[index]! > writtenBytes) return records[index]!.offset;
  }
  return null;
}
