/**
 * `strata tail TOPIC [-n N]`: prints the last N records of the topic across all partitions,
 * ordered by timestamp, then follows it like `tail -f` until interrupted.
 *
 * Method: one Subscribe stream (server push, no polling) per partition, each starting N records
 * before the partition's high watermark as it was when the command started (or at the log start
 * when the partition holds fewer). Records below those watermarks are the history: once every
 * partition has delivered its history, the last N of them by timestamp are printed, then
 * whatever arrived meanwhile, then each pushed record as soon as it arrives. Starting from the
 * captured watermarks (rather than from "latest" after reading the history separately) leaves no
 * gap and no duplicate between history and follow.
 *
 * Memory: the history kept is cut back to the newest N by timestamp whenever it reaches 2N, and a
 * partition done with its history reads no further until the history is printed (its stream
 * waits on flow control), so a busy topic holds about 2N records, and each partition that waits
 * one pushed message (up to `SUBSCRIBE_BYTES`) and what grpc-js has read ahead of it. If
 * retention removes the start of a partition's history before it is read, that partition's
 * history goes on from its earliest offset still stored.
 *
 * Partitions added while it runs (AddPartitions) are found by describing the topic every
 * `NEW_PARTITIONS_CHECK_MS` once the history is printed, and followed from their first record:
 * everything in them was produced after the command started.
 *
 * A broker that goes away (it stops, restarts or cannot be reached) is waited for, as `consume
 * --follow` does: one line on stderr says so, each partition subscribes again from where it
 * was, with backoff, naming the topic by its creation time (a topic deleted and created again
 * meanwhile ends the command), and one line says when records flow again.
 *
 * Ctrl-C cancels the streams and exits 0. A stream that ends otherwise (topic deleted, a
 * refusal) exits 1 with the broker's message.
 */
import { setTimeout } from 'node:timers/promises';
import type { Argv } from 'yargs';
import { describeTopic, listOffsets } from '../../client/admin.js';
import type { ConsumerRecord } from '../../client/consumer.js';
import { type StrataClientError, isBrokenStream, isRetriable, isStrataClientError } from '../../client/errors.js';
import { type Subscription, subscribe } from '../../client/subscription.js';
import { UsageError } from '../cli-errors.js';
import { onInterrupt, transportReason, withClientOptions, withConnection } from '../client-options.js';
import { OutputWriter } from '../output.js';
import { RECORD_FORMATS, RecordPrinter, type RecordFormat } from '../record-format.js';
import { integerRangeProblem } from '../../common/integer-range.js';

/** Option names of this command, for the environment check in main.ts. */
export const TAIL_OPTION_NAMES = ['n', 'lines', 'format', 'print-key'];

/**
 * Most bytes of one pushed message: what a partition waiting for the history to be printed
 * holds, besides grpc-js's read-ahead. Plenty for a terminal to follow.
 */
const SUBSCRIBE_BYTES = 256 * 1024;

/** How often the topic is described to find partitions added since the command started. */
const NEW_PARTITIONS_CHECK_MS = 2_000;

/** First and longest wait before a partition subscribes again after losing the broker. */
const RESUBSCRIBE_BACKOFF_MS = 250;
const RESUBSCRIBE_BACKOFF_MAX_MS = 5_000;

/** Bound on -n: up to 2N records of history are held in memory before they are sorted. */
const TAIL_LINES_MAX = 1_000_000;

interface TailArgs {
  server: string;
  topic: string;
  n: number;
  format: RecordFormat;
  'print-key': boolean;
}

export function tailCommand(yargs: Argv): Argv {
  return yargs.command(
    'tail <topic>',
    'Print the last records of a topic (ordered by timestamp), then follow new ones until Ctrl-C',
    (command) =>
      withClientOptions(command)
        .positional('topic', { type: 'string', demandOption: true, describe: 'Topic to follow' })
        .option('n', { alias: 'lines', type: 'number', default: 10, describe: 'How many past records to print first', requiresArg: true })
        .option('format', { choices: RECORD_FORMATS, default: 'text' as RecordFormat, describe: 'text: values; json: one object per record', requiresArg: true })
        .option('print-key', { type: 'boolean', default: false, describe: 'Text output: print KEY<TAB>VALUE' })
        .example('strata tail orders', 'the last 10 records, then new ones as they arrive')
        .example('strata tail orders -n 0 --format json', 'only new records, as JSON lines'),
    async (argv) => tail(argv as unknown as TailArgs),
  );
}

async function tail(argv: TailArgs): Promise<void> {
  const count = argv.n;
  const problem = integerRangeProblem('-n', count, 0, TAIL_LINES_MAX);
  if (problem !== null) throw new UsageError(problem);
  const writer = new OutputWriter(process.stdout);
  const printer = new RecordPrinter(writer, argv.format, argv['print-key']);
  await withConnection(argv, async (connection, contact) => {
    const description = await describeTopic(connection, argv.topic);
    contact.reached = true;
    /** Each partition's current subscription (the one after a lost broker replaces the one before). */
    const subscriptions = new Map<number, Subscription>();
    let stopped = false;
    let startFollowing = (): void => undefined;
    /** Settles once the history is printed: partitions done with theirs wait for it. */
    const following = new Promise<void>((resolve) => (startFollowing = resolve));
    /** Ends the wait between two looks for new partitions. */
    const stopWatching = new AbortController();
    const stopAll = (): void => {
      stopped = true;
      for (const subscription of subscriptions.values()) subscription.cancel();
      startFollowing(); // partitions waiting for the history end too
      stopWatching.abort();
    };
    // An interrupt ends the command now, not once a reader that stopped reading takes the output.
    const removeInterrupt = onInterrupt(() => {
      writer.abandon();
      stopAll();
    });
    /** Set while the broker is away: said once on stderr, and once when records flow again. */
    let lostBroker = false;
    const brokerLost = (error: StrataClientError): void => {
      if (lostBroker || stopped) return;
      lostBroker = true;
      process.stderr.write(`strata: lost the broker at ${argv.server} (${transportReason(error.message)}); following ${argv.topic} again once it is back\n`);
    };
    const brokerBack = (): void => {
      if (!lostBroker) return;
      lostBroker = false;
      process.stderr.write(`strata: the broker is back; following ${argv.topic} again\n`);
    };
    let history: ConsumerRecord[] = [];
    /** Records past the watermarks that came in a partition's last batch of history. */
    const early: ConsumerRecord[] = [];
    let partitionsInHistory = description.partitions.length;

    const printRecords = async (records: readonly ConsumerRecord[]): Promise<void> => {
      for (const record of records) printer.print(record);
      await writer.drain();
      if (writer.closed) stopAll();
    };
    const historyDone = async (): Promise<void> => {
      if (--partitionsInHistory > 0) return;
      const printed = newest(history, count);
      history = [];
      await printRecords(printed);
      await printRecords(early.splice(0));
      startFollowing();
    };

    /**
     * Where a partition goes on when `start` has left its log. Below the log start, retention
     * removed the history not yet read (or a new partition's first records), or, while it
     * followed, records it had not printed yet: it goes on from what is still stored. Past the
     * log's end, a restarted broker lost records it had printed (a power loss under
     * `flush=interval`, a log cut by `strata repair`), whose offsets it gives out again: it goes
     * on from the end, so the records written there are printed. Said on stderr when records it
     * would have printed are passed.
     */
    const resumeAfterOutOfRange = async (partition: number, start: number, inHistory: boolean): Promise<number> => {
      const { logStartOffset, highWatermark: end } = await listOffsets(connection, argv.topic, partition, 'latest');
      const name = `${argv.topic}-${partition}`;
      if (start > end) {
        process.stderr.write(`strata: ${name} now ends at offset ${end}, before offset ${start} that was printed up to (records lost in a crash, or cut by a repair); following from ${end}\n`);
        return end;
      }
      if (!inHistory) process.stderr.write(`strata: retention deleted ${name} offsets ${start} to ${logStartOffset - 1} before they were printed; following from ${logStartOffset}\n`);
      return logStartOffset;
    };

    /**
     * Follows one partition: its history, the records below `highWatermark`, first, then what
     * comes. A partition added since the start (`highWatermark` null) has no history: all of it
     * is new, followed from its first record.
     */
    const followPartition = async (partition: number, logStartOffset: number, highWatermark: number | null): Promise<void> => {
      let start = highWatermark === null ? logStartOffset : Math.max(logStartOffset, highWatermark - count);
      let inHistory = highWatermark !== null;
      const endHistory = async (): Promise<void> => {
        inHistory = false;
        await historyDone();
      };
      if (highWatermark !== null && start >= highWatermark) await endHistory();
      let failures = 0;
      for (;;) {
        const subscription = subscribe(connection, { topic: argv.topic, partitions: [partition], start: { offset: start }, maxBytes: SUBSCRIBE_BYTES, topicCreatedAtMs: description.createdAtMs });
        subscriptions.set(partition, subscription);
        if (stopped) subscription.cancel();
        try {
          for await (const batch of subscription) {
            failures = 0;
            brokerBack();
            start = batch.nextOffset; // where a subscription after a lost broker goes on
            if (!inHistory) {
              await following;
              if (stopped) break;
              await printRecords(batch.records);
              continue;
            }
            for (const record of batch.records) (record.offset < highWatermark! ? history : early).push(record);
            if (history.length >= 2 * Math.max(count, 1)) history = newest(history, count);
            if (batch.nextOffset >= highWatermark!) await endHistory();
          }
          return;
        } catch (error) {
          if (stopped) return;
          if (isStrataClientError(error) && (isRetriable(error) || isBrokenStream(error))) {
            brokerLost(error);
            const delayMs = Math.min(RESUBSCRIBE_BACKOFF_MAX_MS, RESUBSCRIBE_BACKOFF_MS * 2 ** Math.min(failures++, 10));
            await setTimeout(delayMs, undefined, { signal: stopWatching.signal }).catch(() => undefined);
            continue;
          }
          if (!isStrataClientError(error, 'OUT_OF_RANGE')) throw error;
          start = await resumeAfterOutOfRange(partition, start, inHistory);
          if (inHistory && start >= highWatermark!) await endHistory();
        }
      }
    };
    /** Looks for partitions added since the start, once the history is printed, until stopped. */
    const watchNewPartitions = async (): Promise<void> => {
      await following;
      let known = description.partitions.length;
      while (!stopped) {
        try {
          await setTimeout(NEW_PARTITIONS_CHECK_MS, undefined, { signal: stopWatching.signal });
          const now = await describeTopic(connection, argv.topic, stopWatching.signal);
          for (const { partition, logStartOffset } of now.partitions) {
            if (partition < known || stopped) continue;
            track(followPartition(partition, logStartOffset, null));
          }
          known = Math.max(known, now.partitions.length);
        } catch {
          // Stopped, or the broker did not answer: a deleted topic or a lost connection ends the
          // partitions' streams, which report it; otherwise the next look tries again.
        }
      }
    };
    const tasks: Promise<void>[] = [];
    let failure: unknown = null;
    /** The first failure of any partition (one found late included) stops them all, and is thrown. */
    const track = (task: Promise<void>): void => {
      tasks.push(
        task.catch((error: unknown) => {
          failure ??= error;
          stopAll();
        }),
      );
    };
    for (const { partition, logStartOffset, highWatermark } of description.partitions) track(followPartition(partition, logStartOffset, highWatermark));
    track(watchNewPartitions());

    try {
      // The list grows as new partitions are found: wait until a pass adds none.
      for (let waited = 0; waited < tasks.length; ) {
        const upTo = tasks.length;
        await Promise.all(tasks.slice(waited, upTo));
        waited = upTo;
      }
    } finally {
      removeInterrupt();
      await writer.flushed(); // the last write's failure, too, must be known before the check below
    }
    if (failure !== null) throw failure;
  });
  writer.throwIfFailed(); // stdout failed (not a closed reader): one line, exit 1
}

/** The newest `count` of `records` by timestamp (partition and offset break ties), oldest first. */
function newest(records: ConsumerRecord[], count: number): ConsumerRecord[] {
  records.sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset);
  return records.slice(Math.max(0, records.length - count));
}
