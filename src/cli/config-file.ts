/**
 * The JSON file of `strata serve --config` (or `STRATA_CONFIG`): one object of options, named as
 * the flags are. yargs' own reader answers every failure with "Invalid JSON config file", a
 * missing file included; this one says which file and what is wrong with it, as a usage error.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './cli-errors.js';

/** Reads the options of the config file at `path` (yargs passes it resolved against the cwd). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`config file ${path}: no such file`);
    if (code === 'EISDIR') throw new UsageError(`config file ${path} is a directory; give a JSON file of options`);
    throw new UsageError(`config file ${path} could not be read (${code ?? (error as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`config file ${path} is not valid JSON: ${withoutExcerpt((error as Error).message)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const held = parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : `a ${typeof parsed}`;
    throw new UsageError(`config file ${path} must hold one JSON object of options, like {"data-dir": "/var/lib/strata"}; it holds ${held}`);
  }
  for (const [key, value] of Object.entries(parsed)) {
    // yargs would take an array as the option given several times, an object as dotted options.
    if (value !== null && typeof value === 'object') {
      throw new UsageError(`config file ${path}: "${key}" must be a string, a number or a boolean, not ${Array.isArray(value) ? 'an array' : 'an object'}`);
    }
  }
  return parsed as Record<string, unknown>;
}

/**
 * V8 quotes the start of the text in some messages (`Unexpected token 'r', "root:x:0:0..." is
 * not valid JSON`): a file given by mistake should not have its first bytes printed, and logged.
 */
function withoutExcerpt(message: string): string {
  return message.replace(/, "[\s\S]*" is not valid JSON$/, '');
}

/** The command names `main` knows, to find the command among options given before it. */
export type CommandNames = ReadonlySet<string>;

/**
 * A problem with `serve`'s --config that yargs would not report well; null otherwise. yargs
 * reads the file before any check of the command line runs, so it would answer two files with
 * "Invalid JSON config file: [ 'a.json', 'b.json' ]" and one without a name with "Invalid JSON
 * config file: true", and it skips an empty name: the broker would then start on its defaults
 * (data in ./data) where a script meant a file. Options before `--` only.
 */
export function configOptionProblem(argv: readonly string[], env: NodeJS.ProcessEnv, commands: CommandNames): string | null {
  const end = argv.indexOf('--');
  const options = end < 0 ? argv : argv.slice(0, end);
  if (options.find((token) => commands.has(token)) !== 'serve') return null;
  let given = 0;
  for (let index = 0; index < options.length; index++) {
    const token = options[index]!;
    let value: string | undefined;
    if (token === '--config') {
      value = options[index + 1];
      if (value === undefined || (value.startsWith('-') && value !== '-')) return '--config needs the path of a JSON file of options';
    } else if (token.startsWith('--config=')) {
      value = token.slice('--config='.length);
    } else {
      continue;
    }
    given++;
    if (value === '') return '--config was given an empty path; give the path of a JSON file of options';
  }
  if (given > 1) return `--config was given ${given} times; it takes one value`;
  if (given === 0 && env.STRATA_CONFIG === '') return 'STRATA_CONFIG is set but empty; give the path of a JSON file of options, or unset it';
  return null;
}
