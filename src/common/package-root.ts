/**
 * The package's root directory (where package.json and proto/ live), found from this module's
 * location so it works from the TypeScript sources and from the compiled dist/ alike.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  let directory = start;
  for (;;) {
    if (existsSync(join(directory, 'package.json')) && existsSync(join(directory, 'proto'))) return directory;
    const parent = dirname(directory);
    if (parent === directory) throw new Error(`cannot find the strata package root above ${start}`);
    directory = parent;
  }
}

export const PACKAGE_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
export const PROTO_ROOT = join(PACKAGE_ROOT, 'proto');

/** The package's version, from its package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}
