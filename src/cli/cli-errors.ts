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
