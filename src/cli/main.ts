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
import { unknownOptionVariables } from './environment.js';
import { SERVE_OPTIONS } from '../config/broker-options.js';

/** Every option name of every command, for the environment check. */
const KNOWN_OPTIONS = ['config', ...Object.keys(SERVE_OPTIONS)];

export async function main(argv: string[]): Promise<void> {
  for (const name of unknownOptionVariables(process.env, KNOWN_OPTIONS)) {
    process.stderr.write(`strata: ignoring environment variable ${name}: no option has that name\n`);
    delete process.env[name]; // yargs would refuse it as an unknown argument
  }
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
