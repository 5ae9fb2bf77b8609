/**
 * The `strata` command line. Each command lives in `commands/`; this file wires them into
 * yargs and turns failures into one line on stderr with the documented exit code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT_FAILURE, EXIT_USAGE, UsageError, type UsageLines, failureLine, optionSpelled, repeatedOptionProblem, usageMessage } from './cli-errors.js';
import { CLIENT_FLAG_NAMES, CLIENT_OPTION_NAMES } from './client-options.js';
import { BENCH_FLAG_NAMES, BENCH_OPTION_NAMES, benchCommand } from './commands/bench.js';
import { CONSUME_FLAG_SHORTHANDS, CONSUME_OPTION_NAMES, consumeCommand } from './commands/consume.js';
import { dumpLogCommand } from './commands/dump-log.js';
import { groupsCommand } from './commands/groups.js';
import { PRODUCE_OPTION_NAMES, produceCommand } from './commands/produce.js';
import { repairCommand } from './commands/repair.js';
import { serveCommand } from './commands/serve.js';
import { TAIL_OPTION_NAMES, tailCommand } from './commands/tail.js';
import { topicsCommand } from './commands/topics.js';
import { commandOf, filterEnvironment, flagVariablesProblem } from './environment.js';
import { markOperands, unmarkOperands, withoutMarks } from './operands.js';
import { outputAbandoned } from './output.js';
import { serveInputProblem } from './serve-input.js';
import { SERVE_OPTIONS } from '../config/broker-options.js';

/** The option names of each command, for the environment check. */
const OPTIONS_BY_COMMAND: Readonly<Record<string, readonly string[]>> = {
  serve: ['config', ...Object.keys(SERVE_OPTIONS)],
  // Only the data directory, shared with serve: which partition a repair cuts and how (`dir`,
  // `topic`, `partition`, `start-offset`, `outside-data-dir`) is given on its command line. A
  // STRATA_PARTITION exported for `consume` must not pick it, nor STRATA_DIR, a name other tools use.
  repair: ['data-dir'],
  'dump-log': ['records'],
  // Only the connection's: what a topic or group command creates or changes is given on its
  // command line. STRATA_CONFIG names serve's config file, never a topic's KEY=VALUE; a
  // STRATA_PARTITIONS set for `bench` must not raise a topic's partition count in `topics
  // alter`, nor a STRATA_PARTITION set for `consume` narrow a `groups reset-offsets`.
  topics: CLIENT_OPTION_NAMES,
  groups: CLIENT_OPTION_NAMES,
  produce: [...CLIENT_OPTION_NAMES, ...PRODUCE_OPTION_NAMES],
  consume: [...CLIENT_OPTION_NAMES, ...CONSUME_OPTION_NAMES],
  tail: [...CLIENT_OPTION_NAMES, ...TAIL_OPTION_NAMES],
  bench: BENCH_OPTION_NAMES,
};

/**
 * The options of each command that take no value, whose STRATA_* variables are read as flags
 * (`flagVariablesProblem`): a name is a flag for one command only (`records` is a count for
 * `bench`).
 */
const FLAGS_BY_COMMAND: Readonly<Record<string, readonly string[]>> = {
  'dump-log': ['records'],
  topics: CLIENT_FLAG_NAMES,
  groups: CLIENT_FLAG_NAMES,
  produce: CLIENT_FLAG_NAMES,
  consume: [...CLIENT_FLAG_NAMES, 'follow', 'print-key'],
  tail: [...CLIENT_FLAG_NAMES, 'print-key'],
  bench: BENCH_FLAG_NAMES,
};

/** The one-letter spellings of each command's flags, where it has any. */
const FLAG_SHORTHANDS_BY_COMMAND: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  consume: CONSUME_FLAG_SHORTHANDS,
};

/**
 * Drops Node's DEP0123 warning ("Setting the TLS ServerName to an IP address is not permitted"),
 * which grpc-js makes it print once for a TLS connection to `--server 127.0.0.1:50051`: the
 * certificate is still checked against the address, and the CLI's stderr is for its own line.
 */
function dropTlsServerNameWarning(): void {
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const options = args[1];
    const code = typeof options === 'object' && options !== null ? (options as { code?: unknown }).code : args[2];
    if (code === 'DEP0123') return;
    emitWarning(...args);
  }) as typeof process.emitWarning;
}

export async function main(argv: string[]): Promise<void> {
  dropTlsServerNameWarning();
  // A stderr that cannot be written (its reader gone: `2>&1 | head`, `| grep -q`) has nowhere
  // to say so: the command carries on and ends as it would have, its lines there lost. Without
  // a listener the failed write would end it at once with an uncaught EPIPE.
  process.stderr.on('error', () => undefined);
  const serveProblem = serveInputProblem(argv, process.env, Object.keys(OPTIONS_BY_COMMAND));
  if (serveProblem !== null) throw new UsageError(serveProblem);
  for (const name of filterEnvironment(argv, process.env, OPTIONS_BY_COMMAND)) {
    process.stderr.write(`strata: ignoring environment variable ${name}: no option has that name\n`);
  }
  // Like yargs' own checks, not for --help or --version, nor without a command (whose variables
  // filterEnvironment has not narrowed to its own).
  const command = commandOf(argv, Object.keys(OPTIONS_BY_COMMAND));
  if (command !== undefined && !argv.some((token) => token === '--help' || token === '-h' || token === '--version')) {
    const flagProblem = flagVariablesProblem(process.env, argv, FLAGS_BY_COMMAND[command] ?? [], FLAG_SHORTHANDS_BY_COMMAND[command]);
    if (flagProblem !== null) throw new UsageError(flagProblem);
  }
  let parser = yargs(markOperands(argv))
    .scriptName('strata')
    .strict()
    .env('STRATA')
    .demandCommand(1, 'give a command: serve, topics, produce, consume, tail, groups, bench, repair or dump-log (see --help)')
    .recommendCommands()
    .middleware((parsed) => {
      // Before validation, so that its messages name the words as typed (see operands.ts).
      // getGroups() (the running command's positional arguments are one group) and the usage
      // instance are left out of yargs' typings.
      const internals = parser as unknown as { getGroups(): Record<string, string[]>; getInternalMethods(): { getUsageInstance(): { getPositionalGroupName(): string } } };
      const positionals = internals.getGroups()[internals.getInternalMethods().getUsageInstance().getPositionalGroupName()] ?? [];
      const optionWithoutValue = unmarkOperands(parsed, positionals);
      if (optionWithoutValue !== null) throw new UsageError(`${optionSpelled(optionWithoutValue)} needs a value (the words after -- are arguments, not option values)`);
    }, true)
    .middleware((parsed) => {
      // getOptions() (the running command's options: the repeatable ones, the aliases) is left out of yargs' typings.
      const options = (parser as unknown as { getOptions(): { array: string[]; alias: Record<string, string[]> } }).getOptions();
      const problem = repeatedOptionProblem(parsed, options);
      if (problem !== null) throw new UsageError(problem);
    })
    .wrap(Math.min(140, process.stdout.columns || 140));
  // In the order --help lists them, and an unknown command's message.
  parser = serveCommand(parser, argv);
  parser = topicsCommand(parser);
  parser = produceCommand(parser);
  parser = consumeCommand(parser);
  parser = tailCommand(parser);
  parser = groupsCommand(parser);
  parser = benchCommand(parser);
  parser = repairCommand(parser);
  parser = dumpLogCommand(parser);
  await parser
    .fail((message, error, usage) => {
      if (error && error.name !== 'YError') throw error;
      // yargs' own errors (YError) are about the command line too: a config file it could not
      // read (see config-file.ts), a coercion that failed, a flag given without its value.
      // `parsed` (what yargs took from the command line), getOptions() (the running command's
      // options) and the command instance (its subcommands) are left out of yargs' typings.
      const yargsInternals = parser as unknown as {
        parsed: false | { argv: { _: unknown[] } };
        getOptions(): { key: Record<string, unknown> };
        getInternalMethods(): { getCommandInstance(): { getCommands(): string[] } };
      };
      const parsed = yargsInternals.parsed;
      throw new UsageError(
        usageMessage(withoutMarks(error ? error.message : message), {
          argv,
          env: process.env,
          usage: (usage as unknown as UsageLines).getUsage(),
          positionals: parsed === false ? [] : parsed.argv._.map((word) => withoutMarks(String(word))),
          optionNames: Object.keys(yargsInternals.getOptions().key).filter((name) => !/[A-Z]/.test(name)),
          commands: yargsInternals.getInternalMethods().getCommandInstance().getCommands(),
        }),
      );
    })
    .help()
    .alias('h', 'help')
    .version()
    .parseAsync();
}

main(hideBin(process.argv))
  .catch((error: unknown) => {
    process.stderr.write(`${failureLine(error)}\n`);
    process.exitCode = error instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  })
  .finally(() => {
    // A command stopped by a signal while its reader had stopped reading gave up on stdout
    // (OutputWriter.abandon): the writes still queued to the pipe would keep the process alive
    // until the reader took them or went away. Stderr was written: pipes take a line at once.
    if (outputAbandoned()) process.exit();
  });
