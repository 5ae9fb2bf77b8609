/** `strata dump-log FILE`: prints every batch of a segment `.log` (see storage/dump-log.ts). */
import type { Argv } from 'yargs';
import { dumpLogFile } from '../../storage/dump-log.js';

export function dumpLogCommand(yargs: Argv): Argv {
  return yargs.command(
    'dump-log <file>',
    'Describe every record batch of a segment .log file (read-only triage)',
    (command) =>
      command
        .positional('file', { type: 'string', demandOption: true, describe: 'Path of a .log segment file' })
        .option('records', { type: 'boolean', default: false, describe: 'Also print every record' })
        .example('strata dump-log data/topics/orders/0/00000000000000000000.log --records', ''),
    async (argv) => {
      for await (const line of dumpLogFile(argv.file as string, { records: argv.records })) {
        process.stdout.write(`${line}\n`);
      }
    },
  );
}
