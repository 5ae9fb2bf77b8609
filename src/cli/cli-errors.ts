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

function camelCase(name: string): string {
  return name.replace(/-+([a-z0-9])/gi, (_, letter: string) => letter.toUpperCase());
}
