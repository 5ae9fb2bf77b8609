/**
 * Runs the compiled `strata` CLI (bin/strata.js → dist/, built by `npm test`) as a child process,
 * for the CLI tests: `runCli` waits for the exit and returns the code and both outputs;
 * `startCli` returns a handle on a long-running command (consume --follow, tail) whose stdout
 * lines can be awaited with a deadline, and which can be interrupted like Ctrl-C.
 *
 * The child gets this process's environment without any STRATA_* variable, so a variable of the
 * test run (STRATA_TEST_SEED...) cannot change what the CLI prints.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';

export const STRATA_BIN = join(PACKAGE_ROOT, 'bin', 'strata.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /**
   * Bytes or text for stdin, `{ file }` to stream a file into it, or 'open' to leave stdin open
   * for the test to write (`child.stdin`); stdin is empty otherwise.
   */
  input?: string | Buffer | { file: string } | 'open';
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Kills the child (SIGKILL) and fails after this long. Default 60 s. */
  timeoutMs?: number;
  /**
   * `startCli` only: leave stdout unread, a reader that stopped reading (`| less` on its first
   * page); `child.stdout` is the test's to read, and `lines` stays empty.
   */
  unreadStdout?: boolean;
}

function childEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('STRATA_')) env[name] = value;
  return { ...env, ...extra };
}

function spawnCli(args: readonly string[], options: CliOptions): ChildProcess {
  const child = spawn(process.execPath, [STRATA_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnvironment(options.env) });
  const input = options.input;
  child.stdin!.on('error', () => undefined); // the child may exit before reading everything
  if (input === undefined) child.stdin!.end();
  else if (input === 'open') return child;
  else if (typeof input === 'object' && !Buffer.isBuffer(input)) createReadStream(input.file).pipe(child.stdin!);
  else child.stdin!.end(input);
  return child;
}

/** Runs `strata ARGS...` to completion. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const child = spawnCli(args, options);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
  return new Promise<CliResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`strata ${args.join(' ')} did not finish within ${timeoutMs} ms; stderr: ${Buffer.concat(stderr).toString()}`));
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') });
    });
  });
}

/** A running CLI command whose stdout is read line by line. */
export class CliProcess {
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly args: readonly string[],
    readonly child: ChildProcess,
    unreadStdout = false,
  ) {
    // 'exit', not 'close': an unread stdout is not closed until the test reads it.
    this.exited = new Promise((resolve) => child.once(unreadStdout ? 'exit' : 'close', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => this.notify());
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    if (unreadStdout) return;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.notify();
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves with the index of the first line (from `from`) that matches; fails at the deadline or if the process exits first. */
  waitForLine(matches: (line: string) => boolean, timeoutMs = 15_000, from = 0): Promise<number> {
    return this.waitFor(() => {
      for (let index = from; index < this.lines.length; index++) if (matches(this.lines[index]!)) return index;
      return null;
    }, `a matching line`, timeoutMs);
  }

  /** Resolves once at least `count` lines have arrived. */
  async waitForLineCount(count: number, timeoutMs = 15_000): Promise<void> {
    await this.waitFor(() => (this.lines.length >= count ? count : null), `${count} lines`, timeoutMs);
  }

  private waitFor<T>(check: () => T | null, what: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let exited = false;
      void this.exited.then(() => (exited = true));
      const attempt = (): void => {
        const found = check();
        if (found !== null) return finish(() => resolve(found));
        if (exited || this.child.exitCode !== null) {
          finish(() => reject(new Error(`strata ${this.args.join(' ')} exited before ${what}; got ${this.lines.length} lines; stderr: ${this.stderr}`)));
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`no ${what} from strata ${this.args.join(' ')} within ${timeoutMs} ms; got ${this.lines.length} lines; stderr: ${this.stderr}`))),
        timeoutMs,
      );
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(attempt);
        settle();
      };
      this.waiters.add(attempt);
      attempt();
    });
  }

  /** Sends SIGINT (Ctrl-C), or `signal`, and waits for the exit; kills the process (SIGKILL) after `timeoutMs`. */
  async interrupt(timeoutMs = 15_000, signal: NodeJS.Signals = 'SIGINT'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves with the exit once the process has ended on its own; fails after `timeoutMs`. */
  async exitWithin(timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`strata ${this.args.join(' ')} did not exit within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the process if still running (test cleanup). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** Starts `strata ARGS...` and returns at once. */
export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  return new CliProcess(args, spawnCli(args, options), options.unreadStdout);
}
