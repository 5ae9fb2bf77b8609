/**
 * The JSON file of `strata serve --config` (or `STRATA_CONFIG`): one object of options, named as
 * the flags are. yargs' own reader answers every failure with "Invalid JSON config file", a
 * missing file included; this one says which file and what is wrong with it, as a usage error.
 */
import { readFileSync } from 'node:fs';
import { PROTECTING_FILE_OPTIONS, SERVE_OPTIONS } from '../config/broker-options.js';
import { UsageError } from './cli-errors.js';
import { meantOption } from './option-suggestion.js';
import { isDecimalIntegerText } from './serve-input.js';
import { systemErrorText } from '../common/errors.js';

/** Reads the options of the config file at `path` (yargs passes it resolved against the cwd). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`config file ${path}: no such file`);
    if (code === 'EISDIR') throw new UsageError(`config file ${path} is a directory; give a JSON file of options`);
    throw new UsageError(`config file ${path} could not be read: ${systemErrorText(error as NodeJS.ErrnoException)}`);
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
  const keyOfOption = new Map<string, string>();
  for (const [key, value] of Object.entries(parsed)) {
    const option = optionOf(key);
    // yargs would take one of them, and say nothing of the other.
    const twin = keyOfOption.get(option);
    if (twin !== undefined) throw new UsageError(`config file ${path}: "${twin}" and "${key}" both set --${option}; keep one`);
    keyOfOption.set(option, key);
    const problem = Object.hasOwn(SERVE_OPTIONS, option) ? valueProblem(key, option as keyof typeof SERVE_OPTIONS, value) : unknownKeyProblem(key);
    if (problem !== null) throw new UsageError(`config file ${path}: ${problem}`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * A key that names no option of `strata serve` (as a flag, or in camelCase as yargs takes it
 * too), with the option it most likely meant: yargs would refuse it without naming the file.
 */
function unknownKeyProblem(key: string): string {
  if (key === 'config') return '"config" cannot name another config file; give the options it holds here';
  const meant = meantOption(key, Object.keys(SERVE_OPTIONS));
  const hint = meant !== undefined ? `; did you mean "${meant}"?` : '; options are named as the flags of strata serve --help, like "retention-ms"';
  return `"${key}" is no option${hint}`;
}

/** The option a key names: itself, or the flag of its camelCase spelling (`retentionMs`). */
function optionOf(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/**
 * What is wrong with `value` for the option `key`, or null. yargs would make 0 of a null, a
 * false or an empty string given to a number option (a retention of 0 deletes every sealed
 * segment), take an array as the option given several times and an object as dotted options.
 */
function valueProblem(key: string, option: keyof typeof SERVE_OPTIONS, value: unknown): string | null {
  const type = SERVE_OPTIONS[option].type;
  const held = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'string' ? JSON.stringify(value) : `a ${typeof value}`;
  if (type === 'number') {
    // A string of digits is taken as its number; yargs would also take "0x10" as 16 and "1e3" as 1000.
    if (typeof value === 'number' || (typeof value === 'string' && isDecimalIntegerText(value))) return null;
    return typeof value === 'string' && value.trim() !== '' ? `"${key}" must be a number (or a string of decimal digits), not ${held}` : `"${key}" must be a number, not ${held}`;
  }
  if (typeof value !== 'string') return `"${key}" must be a string, not ${held}`;
  // Checked here, so that the line names the file and the key, not a flag nobody typed.
  const choices = (SERVE_OPTIONS[option] as { choices?: readonly string[] }).choices;
  if (choices !== undefined && !choices.includes(value)) return `"${key}" must be one of ${choices.join(', ')}, not ${held}`;
  const without = PROTECTING_FILE_OPTIONS[option];
  if (without !== undefined && value.trim() === '') return `"${key}" is empty; give the path of the file, or leave the key out (without it, ${without})`;
  return null;
}

/**
 * V8 quotes the start of the text in some messages (`Unexpected token 'r', "root:x:0:0..." is
 * not valid JSON`): a file given by mistake should not have its first bytes printed, and logged.
 */
function withoutExcerpt(message: string): string {
  return message.replace(/, (?:\.\.\.)?"[\s\S]*"(?:\.\.\.)? is not valid JSON$/, '');
}
