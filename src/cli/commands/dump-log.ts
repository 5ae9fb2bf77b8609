/** `strata dump-log FILE`: prints every batch of a segment `.log` (see storage/dump-log.ts). */
import { statSync } from 'node:fs';
import type { Argv } from 'yargs';
import { UsageError } from '../cli-errors.js';
import { dumpLogFile } from '../../storage/dump-log.js';
import { OutputWriter } from '../output.js';

export function dumpLogCommand(yargs: Argv): Argv {
  return yargs.command(
    'dump-log <file>',
    'Describe every record batch of a segment .log file (read-only triage)',
    (command) =>
      command
        .positional('file', { type: 'string', demandOption: true, describe: 'Path of a .log segment file, a copy of one, or a file a repair moved to quarantine (positions count from its own start)' })
        .option('records', { type: 'boolean', default: false, describe: 'Also print every record' })
        .example('strata dump-log data/topics/orders/0/00000000000000000000.log --records', ''),
    async (argv) => {
      const file = argv.file as string;
      if (statSync(file, { throwIfNoEntry: false })?.isDirectory()) {
        throw new UsageError(`${file} is a directory: give one of its segment .log files (a partition directory holds 00000000000000000000.log and later ones)`);
      }
      const writer = new OutputWriter(process.stdout);
      try {
        await writeLines(dumpLogFile(file, { records: argv.records }), writer);
      } finally {
        // The lines before a failure are what the operator needs to see next to it.
        await writer.flushed();
      }
      writer.throwIfFailed();
    },
  );
}

/**
 * Appends each line to `writer`, waiting only when its stream is backed up: full chunks go to
 * the stream as they fill, so short lines cost no write of their own.
 */
export async function writeLines(lines: AsyncIterable<string>, writer: OutputWriter): Promise<void> {
  for await (const line of lines) {
    writer.text(line);
    writer.newline();
    if (writer.backedUp) await writer.waitForRoom();
    if (writer.closed) break; // `| head`, or a failed write reported by the caller
  }
}
