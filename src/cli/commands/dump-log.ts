/** `strata dump-log FILE`: prints every batch of a segment `.log` (see storage/dump-log.ts). */
import type { Argv } from 'yargs';
import { dumpLogFile } from '../../storage/dump-log.js';
import { OUTPUT_CHUNK_BYTES, OutputWriter } from '../output.js';

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
      const writer = new OutputWriter(process.stdout);
      for await (const line of dumpLogFile(argv.file as string, { records: argv.records })) {
        writer.text(line);
        writer.newline();
        // Once a chunk's worth waits on the stream: lines are short, and each drain() hands the
        // stream the chunk held so far (a write, and a fresh chunk) however little it holds.
        if (writer.appendedBytes - writer.writtenBytes >= OUTPUT_CHUNK_BYTES) await writer.drain();
        if (writer.closed) break; // `| head`, or a failed write reported below
      }
      await writer.flushed();
      writer.throwIfFailed();
    },
  );
}
