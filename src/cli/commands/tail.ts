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
 * Ctrl-C cancels the streams and exits 0. A stream that ends otherwise (topic deleted, broker
 * shutting down) exits 1 with the broker's message.
 */
import type { Argv } from 'yargs';
import { describeTopic } from '../../client/admin.js';
import type { ConsumerRecord } from '../../client/consumer.js';
import { type Subscription, subscribe } from '../../client/subscription.js';
import { UsageError } from '../cli-errors.js';
import { onInterrupt, withConnection, withServerOption } from '../client-options.js';
import { OutputWriter } from '../output.js';
import { RECORD_FORMATS, RecordPrinter, type RecordFormat } from '../record-format.js';
import { integerRangeProblem } from '../../common/integer-range.js';

/** Option names of this command, for the environment check in main.ts. */
export const TAIL_OPTION_NAMES = ['n', 'lines', 'format', 'print-key'];

/** Bound on -n: the history is held in memory before it is sorted. */
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
      withServerOption(command)
        .positional('topic', { type: 'string', demandOption: true, describe: 'Topic to follow' })
        .option('n', { alias: 'lines', type: 'number', default: 10, describe: 'How many past records to print first', requiresArg: true })
        .option('format', { choices: RECORD_FORMATS, default: 'text' as RecordFormat, describe: 'text: values; json: one object per record' })
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
  await withConnection(argv, async (connection) => {
    const description = await describeTopic(connection, argv.topic);
    const subscriptions: Subscription[] = [];
    let stopped = false;
    const removeInterrupt = onInterrupt(() => {
      stopped = true;
      for (const subscription of subscriptions) subscription.cancel();
    });
    const history: ConsumerRecord[] = [];
    /** Records past the watermarks that arrived before the history was printed. */
    const early: ConsumerRecord[] = [];
    let partitionsInHistory = description.partitions.length;
    let following = false;

    const printRecords = async (records: readonly ConsumerRecord[]): Promise<void> => {
      for (const record of records) printer.print(record);
      await writer.drain();
      if (writer.closed) {
        stopped = true;
        for (const subscription of subscriptions) subscription.cancel();
      }
    };
    const historyDone = async (): Promise<void> => {
      if (--partitionsInHistory > 0) return;
      history.sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset);
      await printRecords(history.slice(Math.max(0, history.length - count)));
      history.length = 0;
      // Streams may push more while this prints; they queue in `early` until it is empty.
      while (early.length > 0) await printRecords(early.splice(0));
      following = true;
    };

    try {
      await Promise.all(
        description.partitions.map(async ({ partition, logStartOffset, highWatermark }) => {
          const from = Math.max(logStartOffset, highWatermark - count);
          const subscription = subscribe(connection, { topic: argv.topic, partitions: [partition], start: { offset: from } });
          subscriptions.push(subscription);
          if (stopped) subscription.cancel();
          let inHistory = true;
          if (from >= highWatermark) {
            inHistory = false;
            await historyDone();
          }
          for await (const batch of subscription) {
            if (!inHistory) {
              if (following) await printRecords(batch.records);
              else for (const record of batch.records) early.push(record);
              continue;
            }
            for (const record of batch.records) (record.offset < highWatermark ? history : early).push(record);
            if (batch.nextOffset >= highWatermark) {
              inHistory = false;
              await historyDone();
            }
          }
        }),
      );
    } catch (error) {
      for (const subscription of subscriptions) subscription.cancel();
      throw error;
    } finally {
      removeInterrupt();
      await writer.flushed(); // the last write's failure, too, must be known before the check below
    }
  });
  writer.throwIfFailed(); // stdout failed (not a closed reader): one line, exit 1
}
