/**
 * The `strata` command line. Each command lives in `commands/`; this file wires them into
 * yargs and turns failures into one line on stderr with the documented exit code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_FAILURE, EXIT_USAGE, UsageError, failureLine, withoutCamelCaseTwins } from './cli-errors.js';
import { CLIENT_OPTION_NAMES } from './client-options.js';
import { BENCH_OPTION_NAMES, benchCommand } from './commands/bench.js';
import { CONSUME_OPTION_NAMES, consumeCommand } from './commands/consume.js';
import { dumpLogCommand } from './commands/dump-log.js';
import { GROUPS_OPTION_NAMES, groupsCommand } from './commands/groups.js';
import { PRODUCE_OPTION_NAMES, produceCommand } from './commands/produce.js';
import { repairCommand } from './commands/repair.js';
import { serveCommand } from './commands/serve.js';
import { TAIL_OPTION_NAMES, tailCommand } from './commands/tail.js';
import { TOPICS_OPTION_NAMES, topicsCommand } from './commands/topics.js';
import { environmentName, unknownOptionVariables } from './environment.js';
import { SERVE_OPTIONS } from '../config/broker-options.js';

/** The option names of each command, for the environment check. */
const OPTIONS_BY_COMMAND: Readonly<Record<string, readonly string[]>> = {
  serve: ['config', ...Object.keys(SERVE_OPTIONS)],
  repair: ['data-dir', 'topic', 'partition', 'dir'],
  'dump-log': ['records'],
  topics: [...CLIENT_OPTION_NAMES, ...TOPICS_OPTION_NAMES],
  groups: [...CLIENT_OPTION_NAMES, ...GROUPS_OPTION_NAMES],
  produce: [...CLIENT_OPTION_NAMES, ...PRODUCE_OPTION_NAMES],
  consume: [...CLIENT_OPTION_NAMES, ...CONSUME_OPTION_NAMES],
  tail: [...CLIENT_OPTION_NAMES, ...TAIL_OPTION_NAMES],
  bench: BENCH_OPTION_NAMES,
};

/** Every option name of every command. */
const KNOWN_OPTIONS = [...new Set(Object.values(OPTIONS_BY_COMMAND).flat())];

export async function main(argv: string[]): Promise<void> {
  for (const name of unknownOptionVariables(process.env, KNOWN_OPTIONS)) {
    process.stderr.write(`strata: ignoring environment variable ${name}: no option has that name\n`);
    delete process.env[name]; // yargs would refuse it as an unknown argument
  }
  // A variable for another command's option (STRATA_DATA_DIR while running `strata topics list`)
  // is left out silently: it is meant for that command, and the strict parser would refuse it.
  const command = argv.find((argument) => !argument.startsWith('-'));
  const ownOptions = command === undefined ? undefined : OPTIONS_BY_COMMAND[command];
  if (ownOptions !== undefined) {
    const own = new Set(ownOptions.map(environmentName));
    for (const name of KNOWN_OPTIONS.map(environmentName)) if (!own.has(name)) delete process.env[name];
  }
  let parser = yargs(argv)
    .scriptName('strata')
    .strict()
    .env('STRATA')
    .demandCommand(1, 'give a command (see --help)')
    .recommendCommands()
    .wrap(Math.min(140, process.stdout.columns || 140));
  parser = serveCommand(parser);
  parser = repairCommand(parser);
  parser = dumpLogCommand(parser);
  parser = topicsCommand(parser);
  parser = produceCommand(parser);
  parser = consumeCommand(parser);
  parser = tailCommand(parser);
  parser = groupsCommand(parser);
  parser = benchCommand(parser);
  await parser
    .fail((message, error) => {
      if (error) throw error;
      // yargs spreads some messages over lines ("Invalid values:\n  Argument: ..."): keep one line.
      throw new UsageError(withoutCamelCaseTwins(message.replace(/\s*\n\s*/g, ' ').trim()));
    })
    .help()
    .version()
    .parseAsync();
}

main(hideBin(process.argv)).catch((error: unknown) => {
  process.stderr.write(`${failureLine(error)}\n`);
  process.exitCode = error instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
});
