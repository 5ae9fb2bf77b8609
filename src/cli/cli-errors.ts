/**
 * How the CLI ends: one clear line on stderr and a documented exit code.
 *   0 success, 1 the server (or the storage) refused or failed, 2 usage error.
 */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake in the command line itself; exits with code 2. */
export class UsageError extends Error {}

export function failureLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return `strata: ${message}`;
}

/**
 * yargs names an unknown dashed option twice, as typed and camel-cased ("Unknown arguments:
 * max-records, maxRecords"): keeps the name as typed, and the singular when one is left.
 */
export function withoutCamelCaseTwins(message: string): string {
  const match = /^Unknown arguments?: (.*)$/.exec(message);
  if (match === null) return message;
  const names = match[1]!.split(', ');
  const twins = new Set(names.filter((name) => name.includes('-')).map(camelCase));
  const kept = names.filter((name) => !twins.has(name));
  return `Unknown argument${kept.length === 1 ? '' : 's'}: ${kept.join(', ')}`;
}

/**
 * A problem when an option that takes one value was typed more than once (`--listen A
 * --listen B`); null otherwise. yargs turns such an option into an array, which each command
 * would then refuse with a message about "A,B". `arrayOptions` are the repeatable ones.
 */
export function repeatedOptionProblem(args: readonly string[], parsed: Readonly<Record<string, unknown>>, arrayOptions: readonly string[]): string | null {
  const repeatable = new Set(arrayOptions);
  for (const [name, value] of Object.entries(parsed)) {
    if (!Array.isArray(value) || name === '_' || repeatable.has(name) || /[A-Z]/.test(name)) continue; // camel-case twins are checked as typed
    const given = args.filter((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`)).length;
    if (given > 1) return `--${name} was given ${given} times; it takes one value`;
  }
  return null;
}

function camelCase(name: string): string {
  return name.replace(/-+([a-z0-9])/gi, (_, letter: string) => letter.toUpperCase());
}
