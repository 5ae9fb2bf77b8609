/**
 * `STRATA_*` environment variables set options (`STRATA_DATA_DIR` is `--data-dir`). Variables
 * with the prefix that name no option are left out of option parsing, so the strict parser does
 * not refuse to start because of an unrelated variable, and each is reported on stderr so that a
 * typo (`STRATA_DATADIR`) does not pass silently.
 */
export const ENVIRONMENT_PREFIX = 'STRATA_';

export function environmentName(option: string): string {
  return ENVIRONMENT_PREFIX + option.toUpperCase().replace(/-/g, '_');
}

/** The `STRATA_*` variables in `environment` that name none of `knownOptions`. */
export function unknownOptionVariables(environment: NodeJS.ProcessEnv, knownOptions: Iterable<string>): string[] {
  const known = new Set([...knownOptions].map(environmentName));
  return Object.keys(environment).filter((name) => name.startsWith(ENVIRONMENT_PREFIX) && !known.has(name));
}
