/**
 * `strata topics create|list|describe|alter|delete`: topic administration over the Admin
 * service (`alter` changes configs or raises the partition count). Lists and descriptions are
 * aligned tables on stdout; confirmations of changes are one line on stdout. A refusal (unknown
 * topic, bad config, topic exists, a partition count not above the current one) exits 1 with the
 * broker's message.
 */
import type { Argv } from 'yargs';
import { Admin, type TopicDescription } from '../../client/admin.js';
import { UsageError } from '../cli-errors.js';
import { withConnection, withClientOptions } from '../client-options.js';
import { shownNumber } from '../../common/integer-range.js';
import { formatBytes, formatFields, formatTable, parsePairs, printLine } from '../output.js';
import { plural } from '../../common/plural.js';
import { PARTITION_COUNT_MAX } from '../../common/broker-limits.js';

interface TopicArgs {
  server: string;
  name: string;
}

export function topicsCommand(yargs: Argv): Argv {
  return yargs.command('topics', 'Create, list, describe, alter and delete topics', (topics) =>
    withClientOptions(topics)
      .command(
        'create <name>',
        'Create a topic',
        (command) =>
          command
            .positional('name', { type: 'string', demandOption: true, describe: 'Topic name ([a-zA-Z0-9._-], at most 249 characters)' })
            .option('partitions', { type: 'number', describe: 'Partition count (1 to 10000); the broker default when absent', requiresArg: true })
            .option('config', { type: 'string', array: true, nargs: 1, describe: 'A topic config KEY=VALUE (Kafka names: retention.ms, segment.bytes, ...); repeatable', requiresArg: true })
            .example('strata topics create orders --partitions 6', 'a topic with 6 partitions')
            .example('strata topics create audit --config retention.ms=86400000 --config flush=always', 'with config overrides'),
        async (argv) => {
          const partitions = argv.partitions === undefined ? undefined : checkPartitionsFlag(argv.partitions);
          const configs = parsePairs(argv.config, '--config');
          const created = await withConnection(argv, (connection) =>
            new Admin({ connection }).createTopic(argv.name, { ...(partitions !== undefined ? { partitions } : {}), configs }),
          );
          await printLine(`created topic "${created.name}" with ${plural(created.partitions.length, 'partition')}`);
        },
      )
      .command(
        'list',
        'List topics with their partition counts',
        (command) => command.example('strata topics list', '').example('STRATA_SERVER=broker-1:50051 strata topics list', 'another broker'),
        async (argv) => {
          const topics = await withConnection(argv, (connection) => new Admin({ connection }).listTopics());
          const rows = [...topics].sort((a, b) => a.name.localeCompare(b.name)).map((topic) => [topic.name, topic.partitions]);
          await printLine(formatTable(['TOPIC', 'PARTITIONS'], rows));
        },
      )
      .command(
        'describe <name>',
        'Describe a topic: configs, and per partition its offsets, size and segments',
        (command) => command.positional('name', { type: 'string', demandOption: true, describe: 'Topic name' }).example('strata topics describe orders', ''),
        async (argv) => {
          const description = await withConnection(argv as TopicArgs, (connection) => new Admin({ connection }).describeTopic(argv.name));
          await printLine(describeText(description));
        },
      )
      .command(
        'alter <name>',
        'Change topic configs (set some, return others to the broker default), or raise the partition count',
        (command) =>
          command
            .positional('name', { type: 'string', demandOption: true, describe: 'Topic name' })
            .option('config', { type: 'string', array: true, nargs: 1, describe: 'A topic config KEY=VALUE to set; repeatable', requiresArg: true })
            .option('reset', { type: 'string', array: true, nargs: 1, describe: 'A topic config KEY to return to the broker default; repeatable', requiresArg: true })
            .option('partitions', { type: 'number', describe: 'The new partition count, larger than the current one (keys may map to other partitions afterwards)', requiresArg: true })
            .conflicts('partitions', ['config', 'reset'])
            .example('strata topics alter orders --config retention.ms=3600000', 'keep one hour')
            .example('strata topics alter orders --reset retention.ms', "follow the broker's --retention-ms again")
            .example('strata topics alter orders --partitions 12', 'raise the partition count to 12'),
        async (argv) => {
          if (argv.partitions !== undefined) {
            const partitions = checkPartitionsFlag(argv.partitions);
            const grown = await withConnection(argv, (connection) => new Admin({ connection }).addPartitions(argv.name, partitions));
            await printLine(`topic "${grown.name}" now has ${plural(grown.partitions.length, 'partition')}; records with a key may go to another partition than before`);
            return;
          }
          const configs = parsePairs(argv.config, '--config');
          const reset = argv.reset ?? [];
          if (Object.keys(configs).length === 0 && reset.length === 0) throw new UsageError('give at least one --config KEY=VALUE or --reset KEY, or --partitions N');
          const altered = await withConnection(argv, (connection) => new Admin({ connection }).alterTopicConfigs(argv.name, configs, reset));
          const changes = [
            ...Object.keys(configs).map((key) => `${key}=${altered.configs[key] ?? configs[key]}`),
            ...reset.map((key) => `${key}=${altered.configs[key] ?? '?'} (broker default)`),
          ];
          // flush.ms alone selects interval flushing (acks=all then answered before the fdatasync), and its reset may end that: say what flush is now.
          const flushTouched = 'flush.ms' in configs || reset.includes('flush.ms');
          const flushNow = !('flush' in configs) && flushTouched ? `; flush is now ${altered.configs['flush'] ?? '?'}${altered.configs['flush'] === 'interval' ? ` (acks=all answers before the fdatasync, which comes every flush.ms)` : ''}` : '';
          await printLine(`altered topic "${altered.name}": ${changes.join(', ')}${flushNow}`);
        },
      )
      .command(
        'delete <name>',
        'Delete a topic and all its data',
        (command) => command.positional('name', { type: 'string', demandOption: true, describe: 'Topic name' }).example('strata topics delete orders', ''),
        async (argv) => {
          await withConnection(argv as TopicArgs, (connection) => new Admin({ connection }).deleteTopic(argv.name));
          await printLine(`deleted topic "${argv.name}"`);
        },
      )
      .demandCommand(1, 'give a topics command: create, list, describe, alter or delete'),
  );
}

function checkPartitionsFlag(partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > PARTITION_COUNT_MAX) {
    throw new UsageError(`--partitions must be an integer from 1 to ${PARTITION_COUNT_MAX}, got ${shownNumber(partitions)}`);
  }
  return partitions;
}

function describeText(description: TopicDescription): string {
  const partitions = description.partitions;
  const totalBytes = partitions.reduce((sum, partition) => sum + partition.sizeBytes, 0);
  const totalRecords = partitions.reduce((sum, partition) => sum + partition.highWatermark - partition.logStartOffset, 0);
  const header = formatFields([
    ['topic', description.name],
    ['partitions', partitions.length],
    ['records', totalRecords],
    ['size', formatBytes(totalBytes)],
    ['created', description.createdAtMs > 0 ? new Date(description.createdAtMs).toISOString() : '-'],
  ]);
  const overridden = new Set(description.overriddenConfigs);
  const configs = formatTable(
    ['CONFIG', 'VALUE', 'SOURCE'],
    Object.keys(description.configs)
      .sort()
      .map((key) => [key, description.configs[key]!, overridden.has(key) ? 'topic' : 'broker default']),
  );
  const rows = partitions.map((partition) => [
    partition.partition,
    partition.logStartOffset,
    partition.highWatermark,
    partition.logEndOffset,
    partition.highWatermark - partition.logStartOffset,
    formatBytes(partition.sizeBytes),
    partition.segmentCount,
    partition.error === '' ? 'ok' : partition.error,
  ]);
  const table = formatTable(['PARTITION', 'START OFFSET', 'HIGH WATERMARK', 'END OFFSET', 'RECORDS', 'SIZE', 'SEGMENTS', 'STATUS'], rows, ['SIZE']);
  return `${header}\n\n${configs}\n\n${table}`;
}
