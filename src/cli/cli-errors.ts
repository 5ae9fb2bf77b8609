/**
 * How the CLI ends: one clear line on stderr and a documented exit code.
 *   0 success, 1 the server (or the storage) refused or failed, 2 usage error.
 */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake in the command line itself; exits with code 2. */
export class UsageError extends Error {}

/** `<tool>: <message>`, the one line a failure prints (the developer benchmarks name themselves). */
export function failureLine(error: unknown, tool = 'strata'): string {
  const message = error instanceof Error ? error.message : String(error);
  return `${tool}: ${message}`;
}

/** What yargs' usage object gives a failure handler: the running command's usage lines (`$0 topics create <name>`). */
export interface UsageLines {
  getUsage(): [string, string][];
}

/**
 * yargs' message for a wrong command line as one line a person can act on: on one line
 * ("Invalid values:\n  Argument: ..."), without camel-case twins, without the options that
 * STRATA_* variables gave and the command line did not name (an unknown command lists them as
 * unknown too), with the command's usage for a missing argument and "unknown command" before
 * a suggestion.
 */
export function usageMessage(message: string, argv: readonly string[], env: NodeJS.ProcessEnv, usage: [string, string][]): string {
  const text = withoutEnvironmentOptions(withoutCamelCaseTwins(message.replace(/\s*\n\s*/g, ' ').trim()), argv, env);
  const suggestion = /^Did you mean (.+)\?$/.exec(text);
  if (suggestion !== null) return `unknown command; did you mean ${suggestion[1]}?`;
  const command = usage[0]?.[0];
  if (/^Not enough non-option arguments/.test(text) && command !== undefined && /[<[]/.test(command)) {
    return `an argument is missing: ${command.replace(/^\$0\b/, 'strata')} (see --help)`;
  }
  return text;
}

/** "Unknown arguments: server, frobnicate" without `server` when only STRATA_SERVER gave it. */
function withoutEnvironmentOptions(message: string, argv: readonly string[], env: NodeJS.ProcessEnv): string {
  const fromEnvironment = (name: string): boolean =>
    env[`STRATA_${name.replace(/-/g, '_').toUpperCase()}`] !== undefined && !argv.some((word) => word === `--${name}` || word.startsWith(`--${name}=`));
  return keepingUnknownArguments(message, (names) => names.filter((name) => !fromEnvironment(name)));
}

/** An "Unknown arguments: ..." message with only the names `keep` keeps (as it was if none), singular for one. */
function keepingUnknownArguments(message: string, keep: (names: string[]) => string[]): string {
  const match = /^Unknown arguments?: (.*)$/.exec(message);
  if (match === null) return message;
  const kept = keep(match[1]!.split(', '));
  return kept.length === 0 ? message : `Unknown argument${kept.length === 1 ? '' : 's'}: ${kept.join(', ')}`;
}

/**
 * yargs names an unknown dashed option twice, as typed and camel-cased ("Unknown arguments:
 * max-records, maxRecords"): keeps the name as typed, and the singular when one is left.
 */
function withoutCamelCaseTwins(message: string): string {
  return keepingUnknownArguments(message, (names) => {
    const twins = new Set(names.filter((name) => name.includes('-')).map(camelCase));
    return names.filter((name) => !twins.has(name));
  });
}

/**
 * A problem when an option that takes one value was given more than once (`--count 1 --count
 * 2`, `-n 5 --lines 6`); null otherwise. yargs turns such an option into an array, which each
 * command would then refuse with a message about "1,2". `options` are yargs' own: the
 * repeatable options (`array`) and each option's aliases (`alias`).
 */
export function repeatedOptionProblem(parsed: Readonly<Record<string, unknown>>, options: { array: readonly string[]; alias: Readonly<Record<string, readonly string[]>> }): string | null {
  const repeatable = new Set(options.array);
  for (const [name, value] of Object.entries(parsed)) {
    // Camel-case twins ("maxRecords") carry the same values as the name as declared.
    if (!Array.isArray(value) || name === '_' || repeatable.has(name) || /[A-Z]/.test(name)) continue;
    const canonical = Object.keys(options.alias).find((key) => key === name || options.alias[key]!.includes(name)) ?? name;
    const names = [canonical, ...(options.alias[canonical] ?? [])].filter((alias) => !/[A-Z]/.test(alias));
    const spelled = names.map((alias) => (alias.length === 1 ? `-${alias}` : `--${alias}`)).join('/');
    return repeatedProblem(spelled, value.length);
  }
  return null;
}

/** The problem of an option that takes one value given `times` times. */
export function repeatedProblem(spelled: string, times: number): string {
  return `${spelled} was given ${times} times; it takes one value`;
}

export function camelCase(name: string): string {
  return name.replace(/-+([a-z0-9])/gi, (_, letter: string) => letter.toUpperCase());
}
