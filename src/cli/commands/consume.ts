/**
 * `strata consume TOPIC`: prints records, one per line (see record-format.ts).
 *
 * Without `--group` the command assigns itself every partition (or `--partition P`) and starts
 * at `--from` (earliest by default; latest, an offset, or the first record at or after an
 * ISO-8601 time). With `--group G` it joins the consumer group through the client Consumer: the
 * broker assigns it partitions, it starts at the group's committed offsets (`--from earliest` or
 * `latest` for partitions with none), commits as it goes, and leaves the group on exit.
 *
 * When to stop: after `--count` records, or, without `--follow`, when every partition it reads
 * has reached the high watermark it had when the command started (records produced later are
 * not waited for). With `--follow` it runs until `--count` or Ctrl-C.
 *
 * Speed: records are taken a fetched batch at a time and appended to one output chunk, written
 * when full; the loop then waits for stdout to drain, so a slow reader slows the consumer instead
 * of filling memory. A batch only partly printed (the count or the end reached inside it) moves
 * the partition back to just after the last printed record, so a group commits exactly what was
 * printed.
 */
import type { Argv } from 'yargs';
import { type OffsetSpec, describeTopic } from '../../client/admin.js';
import { Connection } from '../../client/connection.js';
import { UsageError } from '../cli-errors.js';
import { connectionOptions, describeFailure, withClientOptions } from '../client-options.js';
import { OutputWriter, nonNegativeInteger, parsePosition, partitionFlag } from '../output.js';
import { RECORD_FORMATS, type ReadState, RecordPrinter, type RecordFormat } from '../record-format.js';
import { assignedConsumer } from './consume-assigned.js';
import { groupConsumer } from './consume-group.js';
import { plural } from '../../common/plural.js';

/** Option names of this command, for the environment check in main.ts. */
export const CONSUME_OPTION_NAMES = ['group', 'from', 'partition', 'count', 'follow', 'format', 'print-key'];
/** The one-letter spellings of consume's flags. */
export const CONSUME_FLAG_SHORTHANDS: Readonly<Record<string, string>> = { follow: 'f' };

interface ConsumeArgs {
  server: string;
  topic: string;
  group?: string;
  from?: string;
  partition?: number;
  count?: number;
  follow: boolean;
  format: RecordFormat;
  'print-key': boolean;
}

export function consumeCommand(yargs: Argv): Argv {
  return yargs.command(
    'consume <topic>',
    'Print records of a topic, from --from (or the group\'s committed offsets) to the end, or --follow',
    (command) =>
      withClientOptions(command)
        .positional('topic', { type: 'string', demandOption: true, describe: 'Topic to read' })
        .option('group', { type: 'string', describe: 'Consume as a member of this consumer group (partitions shared with other members, offsets committed)', requiresArg: true })
        .option('from', { type: 'string', describe: 'earliest (default), latest, an offset, or an ISO-8601 time; with --group: where partitions without a committed offset start (earliest or latest)', requiresArg: true })
        .option('partition', { type: 'number', describe: 'Read only this partition (not with --group)', requiresArg: true })
        .option('count', { type: 'number', describe: 'Stop after this many records', requiresArg: true })
        .option('follow', { alias: CONSUME_FLAG_SHORTHANDS['follow']!, type: 'boolean', default: false, describe: 'Keep waiting for new records (until --count or Ctrl-C)' })
        .option('format', { choices: RECORD_FORMATS, default: 'text' as RecordFormat, describe: 'text: values; json: {"topic","partition","offset","timestamp","key","value","headers"} per line', requiresArg: true })
        .option('print-key', { type: 'boolean', default: false, describe: 'Text output: print KEY<TAB>VALUE' })
        .conflicts('group', 'partition')
        .example('strata consume orders', 'everything stored now, then exit')
        .example('strata consume orders --from latest --follow', 'only new records, until Ctrl-C')
        .example('strata consume orders --from 2024-05-01T00:00:00Z --count 100', '100 records from a point in time')
        .example('strata consume orders --group billing --follow --format json', 'share the partitions with other members of "billing"'),
    async (argv) => consume(argv as unknown as ConsumeArgs),
  );
}

function startSpec(text: string | undefined): OffsetSpec {
  return parsePosition(text ?? 'earliest', '--from');
}

async function consume(argv: ConsumeArgs): Promise<void> {
  const options = connectionOptions(argv);
  const count = nonNegativeInteger(argv.count, '--count');
  const only = partitionFlag(argv.partition, '--partition');
  const start = startSpec(argv.from);
  if (argv.group !== undefined && typeof start === 'object') {
    throw new UsageError('with --group, --from is earliest or latest (where partitions without a committed offset start); move committed offsets with `strata groups reset-offsets`');
  }
  if (argv.group === '') throw new UsageError('--group must not be empty');
  const writer = new OutputWriter(process.stdout);
  const printer = new RecordPrinter(writer, argv.format, argv['print-key']);
  const connection = new Connection(options);
  const contact = { reached: false };
  try {
    const description = await describeTopic(connection, argv.topic);
    contact.reached = true;
    const partitions = description.partitions.map((entry) => entry.partition);
    if (only !== undefined && !partitions.includes(only)) {
      throw new Error(`partition ${only} of topic "${argv.topic}" not found: it has ${plural(partitions.length, 'partition')}`);
    }
    const state: ReadState = {
      remaining: count ?? Number.POSITIVE_INFINITY,
      follow: argv.follow,
      endOffsets: new Map(description.partitions.map((entry) => [entry.partition, entry.highWatermark])),
    };
    if (state.remaining === 0) return;
    if (argv.group !== undefined) {
      await groupConsumer({ connection, topic: argv.topic, groupId: argv.group, resetPolicy: start as 'earliest' | 'latest', printer, writer, state });
    } else {
      await assignedConsumer({ connection, topic: argv.topic, partitions: only === undefined ? partitions : [only], start, printer, writer, state });
    }
  } catch (error) {
    throw describeFailure(error, options, contact);
  } finally {
    await writer.flushed(); // the last write's failure, too, must be known before the check below
    connection.close();
  }
  writer.throwIfFailed(); // stdout failed (not a closed reader): one line, exit 1
}
