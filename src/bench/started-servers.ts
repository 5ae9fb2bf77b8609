/**
 * The servers one `strata bench` run started (a local broker, the no-op server), and what
 * happens to them on Ctrl-C (SIGINT) or SIGTERM.
 *
 * Node's default action on either signal ends the process at once: a SIGTERM, sent to this
 * process alone, left a local broker running as an orphan, and neither signal removed the
 * broker's temporary data directory (Ctrl-C also reaches the children, which then exit
 * themselves). So while a run is under way the first signal stops every server the run started
 * or is starting (a local broker's stop removes its data directory: `LocalBroker.stop`), then
 * exits with 128 + the signal's number, 130 for SIGINT and 143 for SIGTERM, as a shell reports
 * a process a signal ended. After the signal no server is started any more: a run that goes on
 * to its next server (a baseline's broker, after its no-op server) is refused it, so none is
 * left behind when the process exits. The stops are bounded (`ServerProcess.stop` kills a
 * server that does not exit within its bound), but a local broker's may take up to that bound
 * (15 s): a second signal does not wait for it. It kills every server at once (SIGKILL),
 * removes a local broker's data directory synchronously, then exits. So does the process's
 * exit while a run is under way (a fatal error, an exit called elsewhere): an 'exit' handler may
 * only do synchronous work, and a server left running would be an orphan, its directory kept.
 * (A server still starting is not registered yet: ServerProcess kills its child on exit too.)
 */
import type { EventEmitter } from 'node:events';
import { handleStopSignals } from '../common/signal-takeover.js';

export interface Stoppable {
  stop(): Promise<void>;
  /** Ends it at once and synchronously (SIGKILL), removing what it keeps on disk. */
  kill(): void;
}

/** Where the signals and the exit are heard: the process, or a stand-in in tests. */
export type ProcessEvents = Pick<EventEmitter, 'on' | 'off'>;

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type HandledSignal = keyof typeof SIGNAL_EXIT_CODES;

export class StartedServers {
  private readonly servers = new Set<Stoppable>();
  private readonly starting = new Set<Promise<unknown>>();
  private stopping: Promise<never> | null = null;

  constructor(private readonly events: ProcessEvents = process) {}

  /**
   * Starts a server and registers it, so that a signal stops it; a signal that comes while it
   * starts waits for the start, then stops it. Refused (without calling `start`) once a signal
   * came.
   */
  track<T extends Stoppable>(start: () => Promise<T>): Promise<T> {
    if (this.stopping !== null) return Promise.reject(new Error('interrupted by a signal: no further server is started'));
    const registered = start().then((server) => {
      this.servers.add(server);
      return server;
    });
    this.starting.add(registered);
    const forget = (): void => void this.starting.delete(registered);
    registered.then(forget, forget);
    return registered;
  }

  /** Set once a signal came: never settles (the process exits when the servers have stopped). */
  get interrupted(): Promise<never> | null {
    return this.stopping;
  }

  /**
   * Runs `body` with SIGINT and SIGTERM handled. After a signal, however `body` ends (likely by
   * failing, its servers stopped under it), this waits for the stop, which ends the process with
   * the signal's code: nothing of a run the user stopped is reported, neither figures nor the
   * failure it caused.
   */
  async run<T>(body: () => Promise<T>, exit?: (code: number) => never): Promise<T> {
    const stopHandling = this.handleSignals(exit);
    try {
      return await body();
    } finally {
      if (this.stopping !== null) await this.stopping;
      stopHandling();
    }
  }

  /** Handles SIGINT and SIGTERM, and the process's exit, until the returned function is called. */
  handleSignals(exit: (code: number) => never = (code) => process.exit(code)): () => void {
    const handler = (signal: HandledSignal): void => {
      const code = SIGNAL_EXIT_CODES[signal];
      if (this.stopping !== null) {
        this.killAll();
        exit(code);
        return;
      }
      this.stopping = this.stopAll().then(() => exit(code));
    };
    const onExit = (): void => this.killAll();
    const stopHandlingSignals = handleStopSignals((signal) => handler(signal as HandledSignal), this.events);
    this.events.on('exit', onExit);
    return () => {
      stopHandlingSignals();
      this.events.off('exit', onExit);
    };
  }

  /** Kills every server started, synchronously; a server already stopped is left as it is. */
  killAll(): void {
    for (const server of this.servers) {
      try {
        server.kill();
      } catch {
        // The next one all the same: a directory that would not go stays behind, not a process.
      }
    }
  }

  /** Stops every server started (idempotent: a server's stop is), after the starts under way. */
  async stopAll(): Promise<void> {
    while (this.starting.size > 0) await Promise.allSettled([...this.starting]);
    await Promise.allSettled([...this.servers].map((server) => server.stop()));
  }
}
