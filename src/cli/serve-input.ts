/**
 * Checks of `strata serve`'s command line and environment that must run before yargs parses
 * them, because yargs would answer badly or not at all:
 * - it reads the config file before any other check, so it would answer two with "Invalid JSON
 *   config file: [ 'a.json', 'b.json' ]" and one without a path with "Invalid JSON config
 *   file: true", and it skips an empty path (the broker would start on its defaults, in
 *   ./data, where a script meant a file);
 * - it makes 0 of an empty value given to a number option (`--retention-ms=`,
 *   `STRATA_RETENTION_MS=` from an unset shell variable), and a retention of 0 deletes every
 *   sealed segment; and it reads a number as JavaScript does, so `0x10` is 16 and `1e3` 1000:
 *   a slip of a hex or exponent form would quietly set a retention of 16 ms;
 * - it reads `--no-retention-ms` (meant as "no retention") as false, which a number option takes
 *   as 0, and `--no-data-dir` as false, which no later check expects;
 * - it takes each option in camelCase too (`--retentionMs=`), past checks of the dashed name;
 * - it takes an empty `STRATA_METRICS_LISTEN` (an unset shell variable) as "", which turns the
 *   probe server off, and with it the health checks of a deployment;
 * - it takes an empty TLS or tokens file (`--auth-tokens-file=`, `STRATA_AUTH_TOKENS_FILE=`) as
 *   none, which serves in plaintext or asks for no token: the broker would start open.
 * Options before `--` only. `--help` and `--version` skip these checks, as they skip yargs' own.
 */
import { PROTECTING_FILE_OPTIONS, SERVE_OPTIONS } from '../config/broker-options.js';
import { isDecimalInteger } from '../common/integer-range.js';
import { repeatedProblem } from './cli-errors.js';
import { spellings } from './option-spellings.js';
import { commandOf, environmentName } from './environment.js';

/** The first problem found, as the one line the CLI prints; null when there is none. */
export function serveInputProblem(argv: readonly string[], env: NodeJS.ProcessEnv, commands: Iterable<string>): string | null {
  const end = argv.indexOf('--');
  const options = end < 0 ? argv : argv.slice(0, end);
  if (commandOf(options, commands) !== 'serve') return null;
  if (options.some((token) => token === '--help' || token === '--version')) return null;
  return configProblem(options, env) ?? negatedProblem(options) ?? numberTextProblem(options, env) ?? emptyMetricsListenProblem(options, env) ?? emptyProtectingFileProblem(options, env);
}

function negatedProblem(options: readonly string[]): string | null {
  for (const name of Object.keys(SERVE_OPTIONS)) {
    for (const spelling of spellings(name)) {
      const negated = `--no-${spelling}`;
      if (options.some((token) => token === negated || token.startsWith(`${negated}=`))) {
        return `${negated} is not an option: every option of serve takes a value; give --${name} one (see strata serve --help)`;
      }
    }
  }
  return null;
}

function emptyMetricsListenProblem(options: readonly string[], env: NodeJS.ProcessEnv): string | null {
  const variable = environmentName('metrics-listen');
  if (env[variable]?.trim() !== '') return null;
  // The flag, given, wins over the variable.
  if (options.some((_, index) => optionValue(options, index, 'metrics-listen') !== null)) return null;
  return `${variable} is set but empty; give host:port, or unset it (--metrics-listen "" turns the probe server off)`;
}

function emptyProtectingFileProblem(options: readonly string[], env: NodeJS.ProcessEnv): string | null {
  for (const [name, without] of Object.entries(PROTECTING_FILE_OPTIONS)) {
    let given = false;
    for (let index = 0; index < options.length; index++) {
      const value = optionValue(options, index, name);
      if (value === null) continue;
      // yargs never takes a token that starts with a dash as a long option's value.
      if (value === undefined || value.trim() === '' || value.startsWith('-')) return `--${name} was given no path; give the file, or leave the option out (without it, ${without})`;
      given = true;
    }
    const variable = environmentName(name);
    if (!given && env[variable]?.trim() === '') return `${variable} is set but empty; give the path of the file, or unset it (without it, ${without})`;
  }
  return null;
}

function configProblem(options: readonly string[], env: NodeJS.ProcessEnv): string | null {
  let given = 0;
  for (let index = 0; index < options.length; index++) {
    const value = optionValue(options, index, 'config');
    if (value === null) continue;
    // yargs never takes a token that starts with a dash as a long option's value.
    if (value === undefined || value.startsWith('-')) return '--config needs the path of a JSON file of options';
    if (value === '') return '--config was given an empty path; give the path of a JSON file of options';
    given++;
  }
  if (given > 1) return repeatedProblem('--config', given);
  if (given === 0 && env.STRATA_CONFIG === '') return 'STRATA_CONFIG is set but empty; give the path of a JSON file of options, or unset it';
  return null;
}

/**
 * Whether `text` is how a number option must be written, on the command line, in a STRATA_*
 * variable or as a string in the config file: an integer in decimal digits (every number
 * option of serve is an integer), with a minus sign for a negative one (`-1`: for ever).
 */
export function isDecimalIntegerText(text: string): boolean {
  return isDecimalInteger(text.trim());
}

const DECIMAL_INTEGER = 'an integer in decimal digits';

function numberTextProblem(options: readonly string[], env: NodeJS.ProcessEnv): string | null {
  for (const [name, option] of Object.entries(SERVE_OPTIONS)) {
    if (option.type !== 'number') continue;
    for (let index = 0; index < options.length; index++) {
      const value = optionValue(options, index, name);
      if (value === null || value === undefined) continue;
      // An option where the value should be (`--retention-ms --listen ...`): yargs says it needs
      // one. A word like `-.1e1` is a value to yargs, as is anything after `=`.
      if (!options[index]!.includes('=') && /^-[A-Za-z-]/.test(value)) continue;
      if (value.trim() === '') return `--${name} was given an empty value; give a number`;
      if (!isDecimalIntegerText(value)) return `--${name} must be ${DECIMAL_INTEGER}, got ${JSON.stringify(value)}`;
    }
    const variable = environmentName(name);
    const text = env[variable];
    if (text === undefined) continue;
    if (text.trim() === '') return `${variable} is set but empty; give a number, or unset it`;
    if (!isDecimalIntegerText(text)) return `${variable} must be ${DECIMAL_INTEGER}, got ${JSON.stringify(text)}`;
  }
  return null;
}

/**
 * The value given to `--name` (or its camelCase spelling) by the token at `index`: after `=`,
 * or the next token (undefined when there is none); null when that token is not the option.
 */
function optionValue(options: readonly string[], index: number, name: string): string | undefined | null {
  const token = options[index]!;
  for (const spelling of spellings(name)) {
    if (token === `--${spelling}`) return options[index + 1];
    if (token.startsWith(`--${spelling}=`)) return token.slice(spelling.length + 3);
  }
  return null;
}
