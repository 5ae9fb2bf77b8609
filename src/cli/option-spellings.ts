/**
 * How yargs lets an option be written on the command line: its dashed name and its camelCase
 * spelling (`--tls-ca-file`, `--tlsCaFile`), with a value after `=` or as the next token, and a
 * flag negated (`--no-tls`). Checks that look at the command line before yargs parses it (or
 * past what it tells) use these, so that every spelling counts the same.
 */
import { camelCase } from './cli-errors.js';

/** `name` and its camelCase spelling, both of which yargs takes (without the dashes). */
export function spellings(name: string): string[] {
  const camel = camelCase(name);
  return camel === name ? [name] : [name, camel];
}

/**
 * Whether `options` (command-line tokens before any `--`) give the option `name`, in any
 * spelling, negated too, or as its one-letter `shorthand` (`-f`, alone or in a group: `-fv`).
 */
export function optionGiven(options: readonly string[], name: string, shorthand?: string): boolean {
  if (shorthand !== undefined && options.some((token) => /^-[A-Za-z]+(=|$)/.test(token) && token.includes(shorthand))) return true;
  return spellings(name).some((spelling) => options.some((token) => token === `--${spelling}` || token.startsWith(`--${spelling}=`) || token === `--no-${spelling}`));
}
