/**
 * The `strata` command line. Each command lives in `commands/`; this file wires them into
 * yargs and turns failures into one line on stderr with the documented exit code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_FAILURE, EXIT_USAGE, UsageError, failureLine } from './cli-errors.js';
import { dumpLogCommand } from './commands/dump-log.js';
import { repairCommand } from './commands/repair.js';
import { serveCommand } from './commands/serve.js';

export async function main(argv: string[]): Promise<void> {
  let parser = yargs(argv)
    .scriptName('strata')
    .strict()
    .env('STRATA')
    .config('config', 'Path to a JSON file of options (flags and STRATA_* variables win over it)')
    .demandCommand(1, 'give a command (see --help)');
  parser = serveCommand(parser);
  parser = repairCommand(parser);
  parser = dumpLogCommand(parser);
  await parser
    .fail((message, error) => {
      if (error) throw error;
      throw new UsageError(message);
    })
    .help()
    .version()
    .parseAsync();
}

main(hideBin(process.argv)).catch((error: unknown) => {
  process.stderr.write(`${failureLine(error)}\n`);
  process.exitCode = error instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
});
