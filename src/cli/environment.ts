/**
 * `STRATA_*` environment variables set options (`STRATA_DATA_DIR` is `--data-dir`). Variables
 * with the prefix that name no option are left out of option parsing, so the strict parser does
 * not refuse to start because of an unrelated variable, and each is reported on stderr so that a
 * typo (`STRATA_DATADIR`) does not pass silently. A variable for another command's option
 * (`STRATA_DATA_DIR`, set for `serve` by the Docker image, while running `strata topics list`) is
 * left out silently: it is meant for that command, and the strict parser would refuse it.
 */
import { optionGiven } from './option-spellings.js';

const ENVIRONMENT_PREFIX = 'STRATA_';

export function environmentName(option: string): string {
  return ENVIRONMENT_PREFIX + option.toUpperCase().replace(/-/g, '_');
}

/** Whether the option `name` came from its STRATA_* variable: set there, and not named on the command line (in any spelling). */
export function givenByEnvironment(name: string, argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  return env[environmentName(name)] !== undefined && !optionGiven(argv, name);
}

/** The `STRATA_*` variables in `environment` that name none of `knownOptions`. */
function unknownOptionVariables(environment: NodeJS.ProcessEnv, knownOptions: Iterable<string>): string[] {
  const known = new Set([...knownOptions].map(environmentName));
  return Object.keys(environment).filter((name) => name.startsWith(ENVIRONMENT_PREFIX) && !known.has(name));
}

/**
 * The command `argv` runs: its first entry that names one. Not merely the first entry without a
 * dash, which is the value of an option given before the command (`--server HOST:PORT topics`).
 */
export function commandOf(argv: readonly string[], commands: Iterable<string>): string | undefined {
  const names = new Set(commands);
  return argv.find((argument) => names.has(argument));
}

/**
 * Removes from `environment` the `STRATA_*` variables that the command in `argv` must not see:
 * those naming no option (returned, to be reported) and those naming only other commands' options.
 */
export function filterEnvironment(argv: readonly string[], environment: NodeJS.ProcessEnv, optionsByCommand: Readonly<Record<string, readonly string[]>>): string[] {
  const knownOptions = [...new Set(Object.values(optionsByCommand).flat())];
  const unknown = unknownOptionVariables(environment, knownOptions);
  for (const name of unknown) delete environment[name]; // yargs would refuse it as an unknown argument
  const command = commandOf(argv, Object.keys(optionsByCommand));
  const ownOptions = command === undefined ? undefined : optionsByCommand[command];
  if (ownOptions !== undefined) {
    const own = new Set(ownOptions.map(environmentName));
    for (const name of knownOptions.map(environmentName)) if (!own.has(name)) delete environment[name];
  }
  return unknown;
}

/**
 * The names of the options in `options` (yargs definitions) that take no value: flags. yargs
 * reads their variables as true only when they are exactly "true": `STRATA_TLS=1` or
 * `STRATA_FOLLOW=yes` would be taken as false, and a client connect in plaintext, or consume end
 * instead of following, without a word (see `flagVariablesProblem`).
 */
export function flagNames(options: Readonly<Record<string, object>>): string[] {
  return Object.entries(options)
    .filter(([, option]) => (option as { type?: unknown }).type === 'boolean')
    .map(([name]) => name);
}

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

/**
 * Rewrites the variables of `flags` in `environment` as "true" or "false" for yargs, from any of
 * true/false, 1/0, yes/no, on/off (any case); returns the problem with the first that is none of
 * these (an empty one included: an unset shell variable), or null. A flag given in `argv` wins
 * over its variable, which is then left alone; `shorthands` has the one-letter spelling of those
 * that have one (`follow`: `f`).
 */
export function flagVariablesProblem(environment: NodeJS.ProcessEnv, argv: readonly string[], flags: readonly string[], shorthands: Readonly<Record<string, string>> = {}): string | null {
  const end = argv.indexOf('--');
  const options = end < 0 ? argv : argv.slice(0, end);
  for (const flag of flags) {
    const name = environmentName(flag);
    const value = environment[name];
    if (value === undefined) continue;
    if (optionGiven(options, flag, shorthands[flag])) continue;
    const word = value.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) environment[name] = 'true';
    else if (FALSE_WORDS.has(word)) environment[name] = 'false';
    else return `${name} must be true or false (1 or 0, yes or no, on or off also do), got ${JSON.stringify(value)}; set it so, or unset it`;
  }
  return null;
}
