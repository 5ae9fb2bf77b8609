/**
 * `strata groups list|describe|reset-offsets|delete`: consumer-group administration over the
 * Groups service. `describe` shows the members and, per partition, the committed offset, the end
 * offset (high watermark) and the lag in records and in time (the age of the oldest record not
 * yet committed). Resetting offsets and deleting a group (or, with `--topic`, only its offsets of
 * those topics) work only on a group with no members;
 * the broker refuses otherwise and the command exits 1 with its message.
 */
import type { Argv } from 'yargs';
import { Admin, type GroupDescription, type ResetSpec } from '../../client/admin.js';
import { UsageError } from '../cli-errors.js';
import { withClientOptions, withConnection } from '../client-options.js';
import { shownNumber } from '../../common/integer-range.js';
import { formatDuration, formatFields, formatTable, parsePosition, partitionFlag, printLine } from '../output.js';

export function groupsCommand(yargs: Argv): Argv {
  return yargs.command('groups', 'List, describe, reset and delete consumer groups', (groups) =>
    withClientOptions(groups)
      .command(
        'list',
        'List consumer groups with their state and member count',
        (command) => command.example('strata groups list', ''),
        async (argv) => {
          const list = await withConnection(argv, (connection) => new Admin({ connection }).listGroups());
          await printLine(formatTable(['GROUP', 'STATE', 'MEMBERS'], list.map((group) => [group.groupId, group.state, group.members])));
        },
      )
      .command(
        'describe <group>',
        'Describe a group: per partition the committed offset, end offset and lag (records and time), and its members',
        (command) => command.positional('group', { type: 'string', demandOption: true, describe: 'Group id' }).example('strata groups describe billing', ''),
        async (argv) => {
          const description = await withConnection(argv, (connection) => new Admin({ connection }).describeGroup(argv.group));
          await printLine(describeText(description));
        },
      )
      .command(
        'reset-offsets <group>',
        'Move the committed offsets of a group with no members',
        (command) =>
          command
            .positional('group', { type: 'string', demandOption: true, describe: 'Group id' })
            .option('topic', { type: 'string', demandOption: true, describe: 'Topic whose offsets move', requiresArg: true })
            .option('to', { type: 'string', describe: 'earliest, latest, an offset (clamped to the log), or an ISO-8601 time (UTC unless it names a zone)', requiresArg: true })
            .option('shift-by', { type: 'number', describe: 'Instead of --to: move each committed offset by N records (negative = back), clamped to the log', requiresArg: true })
            .option('partition', { type: 'number', array: true, nargs: 1, describe: 'Only these partitions (repeatable); all partitions of the topic when absent', requiresArg: true })
            .option('dry-run', { type: 'boolean', default: false, describe: 'Print the offsets the reset would set, and change nothing' })
            .conflicts('to', 'shift-by')
            .check((argv) => {
              if (argv.to === undefined && argv['shift-by'] === undefined) throw new UsageError('give --to earliest|latest|OFFSET|TIME (or --shift-by N)');
              return true;
            })
            .example('strata groups reset-offsets billing --topic orders --to earliest --dry-run', 'see where it would go first')
            .example('strata groups reset-offsets billing --topic orders --to earliest', 'reprocess everything')
            .example('strata groups reset-offsets billing --topic orders --to 2024-05-01T00:00:00Z', 'from a point in time')
            .example('strata groups reset-offsets billing --topic orders --to 1500 --partition 2', 'one partition to an offset'),
        async (argv) => {
          const to = resetSpec(argv.to, argv['shift-by']);
          const partitions = (argv.partition ?? []).map((partition) => partitionFlag(partition, '--partition')!);
          const dryRun = argv['dry-run'];
          const { offsets, known } = await withConnection(argv, async (connection) => {
            const admin = new Admin({ connection });
            // Groups with members or committed offsets: a misspelt id would otherwise be given offsets silently, as a new group.
            const known = (await admin.listGroups()).some(({ groupId }) => groupId === argv.group);
            return { offsets: await admin.resetOffsets(argv.group, argv.topic, to, partitions, { dryRun }), known };
          });
          if (!known) process.stderr.write(`strata: group "${argv.group}" had no members and no committed offsets: ${dryRun ? 'it would be made with' : 'it was made with'} these (check the name)\n`);
          const table = formatTable(['TOPIC', 'PARTITION', dryRun ? 'WOULD BE' : 'NEW OFFSET'], offsets.map((entry) => [entry.topic, entry.partition, entry.offset]));
          await printLine(table);
          if (dryRun) process.stderr.write('strata: dry run: nothing was changed\n');
        },
      )
      .command(
        'delete <group>',
        'Delete a group with no members and all its committed offsets, or with --topic only the offsets of those topics',
        (command) =>
          command
            .positional('group', { type: 'string', demandOption: true, describe: 'Group id' })
            .option('topic', { type: 'string', array: true, nargs: 1, describe: 'Only the committed offsets of this topic (repeatable); the group stays', requiresArg: true })
            .example('strata groups delete billing', '')
            .example('strata groups delete billing --topic orders', "forget the group's offsets of one topic (Kafka's --delete-offsets)"),
        async (argv) => {
          const topics = argv.topic ?? [];
          if (topics.length === 0) {
            await withConnection(argv, (connection) => new Admin({ connection }).deleteGroup(argv.group));
            await printLine(`deleted group "${argv.group}"`);
            return;
          }
          await withConnection(argv, (connection) => new Admin({ connection }).deleteOffsets(argv.group, topics));
          await printLine(`deleted the committed offsets of group "${argv.group}" for ${topics.map((topic) => `"${topic}"`).join(', ')}`);
        },
      )
      .demandCommand(1, 'give a groups command: list, describe, reset-offsets or delete'),
  );
}

function resetSpec(to: string | undefined, shiftBy: number | undefined): ResetSpec {
  if (shiftBy !== undefined) {
    if (!Number.isSafeInteger(shiftBy)) throw new UsageError(`--shift-by must be an integer, got ${shownNumber(shiftBy)}`);
    return { shiftBy };
  }
  return parsePosition(to!, '--to');
}

function describeText(description: GroupDescription): string {
  const header = formatFields([
    ['group', description.groupId],
    ['state', description.state],
    ['members', description.members.length],
    ['group epoch', description.groupEpoch],
    ['assignor', description.assignor],
    ['total lag', description.totalLag],
  ]);
  const clients = new Map(description.members.map((member) => [member.memberId, member]));
  const partitions = formatTable(
    ['TOPIC', 'PARTITION', 'COMMITTED', 'END OFFSET', 'LAG', 'LAG TIME', 'MEMBER'],
    description.partitions.map((entry) => [
      entry.topic,
      entry.partition,
      entry.committedOffset < 0 ? '-' : entry.committedOffset,
      entry.logEndOffset,
      entry.lag,
      entry.lag === 0 ? '-' : entry.lagMs < 0 ? '?' : formatDuration(entry.lagMs),
      entry.memberId === '' ? '-' : memberLabel(entry.memberId, clients.get(entry.memberId)?.clientId),
    ]),
    ['COMMITTED', 'LAG TIME'],
  );
  const sections = [header, partitions];
  if (description.members.length > 0) {
    sections.push(
      formatTable(
        ['MEMBER', 'CLIENT', 'HOST', 'EPOCH', 'ASSIGNMENT'],
        description.members.map((member) => [
          member.memberId + (member.instanceId ? ` (${member.instanceId})` : ''),
          member.clientId || '-',
          member.host || '-',
          member.memberEpoch,
          member.assignment.map((entry) => `${entry.topic}-${entry.partition}`).join(',') || '-',
        ]),
      ),
    );
  }
  return sections.join('\n\n');
}

function memberLabel(memberId: string, clientId: string | undefined): string {
  return clientId ? `${memberId} (${clientId})` : memberId;
}
