/**
 * A server the benchmark starts as a child process: the Strata broker (`strata serve`) or the
 * no-op server. In its own process the server gets its own core on a multi-core machine and its
 * memory can be read from `/proc/<pid>/status` apart from the client's.
 *
 * The child prints JSON lines on stdout; the first line `ready` accepts gives the address. The
 * rest of stdout is drained (a full pipe would stall the child) and the last lines are kept for
 * the error message if the child exits early. RSS is sampled every 250 ms while the process
 * runs, so `memory()` gives the peak seen and the current value; on Linux `VmHWM` (the kernel's
 * own peak) is reported too. A sample every 250 ms can miss a short spike that the kernel's
 * peak keeps, so each phase starts by resetting both (`resetPeaks`: VmHWM through
 * `/proc/<pid>/clear_refs`, which Linux allows for one's own processes) and the phase's peak is
 * the larger of the two; where the reset is refused, VmHWM covers the whole life of the process
 * and the phase's peak is the sampled one alone.
 *
 * A child that exits without being asked to (`stop`, `kill`) rejects `unexpectedExit`, once its
 * output has been read to the end, so that a run using it fails at once with that output. When
 * this process exits, by a fatal error too, every child still running is killed (SIGKILL, from
 * a synchronous 'exit' handler): none is left behind as an orphan.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export const SERVER_START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const RSS_SAMPLE_INTERVAL_MS = 250;
const LOG_LINES_KEPT = 20;
/** USER_HZ, the unit of /proc/<pid>/stat times (100 on every Linux architecture Node runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

export interface ServerMemory {
  /** Resident set size now (MiB); null where /proc is not available. */
  rssMiB: number | null;
  /** Highest RSS sampled while the benchmark ran (MiB). */
  rssPeakSampledMiB: number | null;
  /** The kernel's peak RSS (VmHWM, MiB) since the phase started, or where it could not be reset, since the process started. */
  rssPeakMiB: number | null;
  /** Peak RSS during the phase (MiB): the larger of the two above where VmHWM was reset, else the sampled one. */
  rssPeakPhaseMiB: number | null;
}

export interface ServerProcessOptions {
  /** Arguments of `node` (script first). */
  args: string[];
  /** What the server is, for messages ("the broker"). */
  description: string;
  /** The address in a JSON line of the child's stdout, or null if the line is not the one. */
  ready: (line: Record<string, unknown>) => string | null;
  env?: NodeJS.ProcessEnv;
}

/** How a child ended: its exit code, or the signal that ended it. */
interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Children started and not yet exited, killed when this process exits (see the file comment). */
const runningChildren = new Set<ChildProcess>();

// Installed when this module loads, so before any 'exit' listener of the modules that use it
// (a local broker's removal of its directory during a start): the children die first.
process.on('exit', () => {
  for (const child of runningChildren) child.kill('SIGKILL');
});

export class ServerProcess {
  private readonly lines: string[];
  private readonly sampler: NodeJS.Timeout;
  private peakSampledKiB = 0;
  /** True when VmHWM was reset at the start of the phase (it then tells the phase's peak). */
  private kernelPeakIsPhase = false;
  private readonly exited: Promise<ChildExit>;
  private stopping: Promise<void> | null = null;
  private killed = false;
  /**
   * Rejects once the child has exited (and its output has been read) without `stop` or `kill`:
   * it died under whatever used it. Never settles otherwise.
   */
  readonly unexpectedExit: Promise<never>;

  private constructor(
    readonly child: ChildProcess,
    readonly address: string,
    readonly description: string,
    lines: string[],
    exited: Promise<ChildExit>,
    closed: Promise<ChildExit>,
  ) {
    this.lines = lines;
    this.exited = exited;
    this.sampler = setInterval(() => this.sample(), RSS_SAMPLE_INTERVAL_MS);
    this.sampler.unref();
    this.sample();
    this.unexpectedExit = closed.then((end) => {
      if (this.stopping !== null || this.killed) return new Promise<never>(() => undefined);
      clearInterval(this.sampler);
      throw new Error(`${this.description} exited during the run (${end.code !== null ? `exit code ${end.code}` : `signal ${end.signal}`})`);
    });
    this.unexpectedExit.catch(() => undefined); // raced by a run; nobody else need handle it
  }

  /** Starts the child and resolves once it has printed its address. */
  static async start(options: ServerProcessOptions): Promise<ServerProcess> {
    const child = spawn(process.execPath, options.args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    runningChildren.add(child);
    child.once('exit', () => runningChildren.delete(child));
    // 'close' comes after the child's stdout and stderr have ended: its last lines are kept by then.
    const closed = new Promise<ChildExit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    const lines: string[] = [];
    const keep = (line: string): void => {
      lines.push(line);
      if (lines.length > LOG_LINES_KEPT) lines.shift();
    };
    createInterface({ input: child.stderr! }).on('line', keep);
    const exited = new Promise<ChildExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${options.description} did not start within ${SERVER_START_TIMEOUT_MS} ms; last output:\n${lines.join('\n')}`));
      }, SERVER_START_TIMEOUT_MS);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${options.description} exited (${code ?? signal}) before it was ready; last output:\n${lines.join('\n')}`));
      });
      let found = false;
      createInterface({ input: child.stdout! }).on('line', (line) => {
        keep(line);
        if (found) return;
        let entry: unknown;
        try {
          entry = JSON.parse(line);
        } catch {
          return; // not a JSON line
        }
        const address = typeof entry === 'object' && entry !== null ? options.ready(entry as Record<string, unknown>) : null;
        if (address !== null) {
          found = true;
          clearTimeout(timer);
          resolve(address);
        }
      });
    });
    return new ServerProcess(child, address, options.description, lines, exited, closed);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Whether the child has exited (by itself, or stopped or killed). */
  get hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** The last lines the child printed (stdout and stderr), for error messages. */
  get recentOutput(): string {
    return this.lines.join('\n');
  }

  memory(): ServerMemory {
    this.sample();
    const status = readStatus(this.pid);
    const rssKiB = status === null ? null : statusField(status, 'VmRSS');
    const peakKiB = status === null ? null : statusField(status, 'VmHWM');
    const sampledKiB = this.peakSampledKiB > 0 ? this.peakSampledKiB : null;
    const phaseKiB = this.kernelPeakIsPhase && peakKiB !== null ? Math.max(peakKiB, sampledKiB ?? 0) : sampledKiB;
    return {
      rssMiB: toMiB(rssKiB),
      rssPeakSampledMiB: toMiB(sampledKiB),
      rssPeakMiB: toMiB(peakKiB),
      rssPeakPhaseMiB: toMiB(phaseKiB),
    };
  }

  /**
   * CPU time the process has used so far (user + system, seconds), from /proc/<pid>/stat in
   * clock ticks (USER_HZ, 100 on Linux); null where /proc is not available.
   */
  cpuSeconds(): number | null {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    } catch {
      return null;
    }
    // The command name (field 2) may hold spaces; the fields after it are space-separated.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  }

  /**
   * Restarts the sampled peak and, where Linux lets it, the kernel's (at the start of a phase);
   * returns whether the kernel's was reset.
   */
  resetPeaks(): boolean {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5'); // 5: reset the peak RSS (proc(5))
      this.kernelPeakIsPhase = true;
    } catch {
      this.kernelPeakIsPhase = false; // not Linux, too old a kernel, or not permitted
    }
    this.peakSampledKiB = 0;
    this.sample();
    return this.kernelPeakIsPhase;
  }

  /** SIGTERM, then SIGKILL if the child has not exited within the bound. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.sampler);
      if (this.hasExited) return;
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(timer);
    })();
    return this.stopping;
  }

  /**
   * SIGKILL now, without waiting (synchronous: for a second Ctrl-C, or this process's exit,
   * when there is no time for a graceful stop). Idempotent.
   */
  kill(): void {
    this.killed = true;
    clearInterval(this.sampler);
    if (!this.hasExited) this.child.kill('SIGKILL');
  }

  private sample(): void {
    const status = readStatus(this.pid);
    const rssKiB = status === null ? null : statusField(status, 'VmRSS');
    if (rssKiB !== null && rssKiB > this.peakSampledKiB) this.peakSampledKiB = rssKiB;
  }
}

function readStatus(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null; // not Linux, or the process has exited
  }
}

function statusField(status: string, field: string): number | null {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match === null ? null : Number(match[1]);
}

function toMiB(kiB: number | null): number | null {
  return kiB === null ? null : Math.round((kiB / 1024) * 10) / 10;
}
