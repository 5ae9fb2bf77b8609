/**
 * Tests that run programs from Debian packages (the Python client's grpcio, promtool,
 * systemd-analyze) need them installed. .ci/run installs them; these tests never do. In CI a
 * missing program fails its test with the install command; elsewhere its suite is skipped with
 * a warning, so that a developer's machine without them still runs the rest.
 */
import { execFileSync } from 'node:child_process';

export const IN_CI = process.env.CI !== undefined && !['', '0', 'false'].includes(process.env.CI.toLowerCase());

/** Why `command args` cannot run (its last line of stderr, or the spawn error), or null when it can. */
export function cannotRun(command: string, args: readonly string[]): string | null {
  try {
    execFileSync(command, args, { stdio: 'pipe', timeout: 30_000 });
    return null;
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
    return stderr === '' ? (error as Error).message.split('\n')[0]! : stderr.split('\n').pop()!;
  }
}

/**
 * What a test file says of its missing prerequisites, or null when none is missing: `missing`
 * lists them, `install` is the command that installs them. Warns, outside CI, that the file's
 * suite is skipped.
 */
export function missingPrerequisites(file: string, what: string, missing: readonly string[], install: string): string | null {
  if (missing.length === 0) return null;
  const message = `${what} missing: ${missing.join('; ')}. Install them (as root) with: ${install} (.ci/run does this in CI)`;
  if (!IN_CI) console.warn(`${file} skipped (not CI): ${message}`);
  return message;
}
