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
    if (code === 'ENOENT') throw new UsageError(`--config ${path}: no such file`);
    if (code === 'EISDIR') throw new UsageError(`--config ${path} is a directory; give a JSON file of options`);
    throw new UsageError(`--config ${path} could not be read (${code ?? (error as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--config ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const held = parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : `a ${typeof parsed}`;
    throw new UsageError(`--config ${path} must hold one JSON object of options, like {"data-dir": "/var/lib/strata"}; it holds ${held}`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * A problem when `serve` is given --config more than once; null otherwise. yargs reads the file
 * before any check of the command line runs, and would answer two with "Invalid JSON config
 * file: [ 'a.json', 'b.json' ]"; so `main` asks this first. Options before `--` only.
 */
export function repeatedConfigProblem(argv: readonly string[]): string | null {
  const end = argv.indexOf('--');
  const options = end < 0 ? argv : argv.slice(0, end);
  if (options.find((token) => !token.startsWith('-')) !== 'serve') return null;
  const given = options.filter((token) => token === '--config' || token.startsWith('--config=')).length;
  return given > 1 ? `--config was given ${given} times; it takes one value` : null;
}
