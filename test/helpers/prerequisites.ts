/**
 * Tests that run programs from Debian packages (the Python client's grpcio, promtool,
 * systemd-analyze) need them installed. .ci/run installs them; these tests never do. In CI a
 * missing program fails its test with the install command; elsewhere its suite is skipped with
 * a warning, so that a developer's machine without them still runs the rest.
 */
import { execFileSync } from 'node:child_process';

export const IN_CI = process.env.CI !== undefined && !['', '0', 'false'].includes(process.env.CI.toLowerCase());

/**
 * Why `command args` cannot run, as "`shown` is not runnable (its last line of stderr, or the
 * spawn error)", or null when it can.
 */
export function notRunnable(command: string, args: readonly string[], shown = command): string | null {
  try {
    execFileSync(command, args, { stdio: 'pipe', timeout: 30_000 });
    return null;
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
    const reason = stderr === '' ? (error as Error).message.split('\n')[0]! : stderr.split('\n').pop()!;
    return `${shown} is not runnable (${reason})`;
  }
}

export interface Prerequisites {
  /** What is missing, with the command that installs it; null when nothing is. */
  missing: string | null;
  /** Whether the suite that needs them is skipped: something is missing, outside CI. */
  skip: boolean;
  /** Fails the test when something is missing (in CI, where the suite is not skipped). */
  require(): void;
}

/**
 * The prerequisites of a test file: `problems` has one entry per check, null where it passed;
 * `install` is the command that installs them. Warns, outside CI, that the file's suite is skipped.
 */
export function prerequisites(file: string, what: string, problems: readonly (string | null)[], install: string): Prerequisites {
  const found = problems.filter((problem): problem is string => problem !== null);
  const missing = found.length === 0 ? null : `${what} missing: ${found.join('; ')}. Install them (as root) with: ${install} (.ci/run does this in CI)`;
  if (missing !== null && !IN_CI) console.warn(`${file} skipped (not CI): ${missing}`);
  return {
    missing,
    skip: missing !== null && !IN_CI,
    require: () => {
      if (missing !== null) throw new Error(missing);
    },
  };
}
