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
 * left behind when the process exits. A second signal exits at once. The stops are bounded
 * (`ServerProcess.stop` kills a server that does not exit within its bound).
 */

export interface Stoppable {
  stop(): Promise<void>;
}

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type HandledSignal = keyof typeof SIGNAL_EXIT_CODES;

export class StartedServers {
  private readonly servers = new Set<Stoppable>();
  private readonly starting = new Set<Promise<unknown>>();
  private stopping: Promise<never> | null = null;

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

  /** Handles SIGINT and SIGTERM until the returned function is called. */
  handleSignals(exit: (code: number) => never = (code) => process.exit(code)): () => void {
    const handler = (signal: HandledSignal): void => {
      const code = SIGNAL_EXIT_CODES[signal];
      if (this.stopping !== null) exit(code);
      this.stopping = this.stopAll().then(() => exit(code));
    };
    const onSigint = (): void => handler('SIGINT');
    const onSigterm = (): void => handler('SIGTERM');
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    return () => {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
    };
  }

  /** Stops every server started (idempotent: a server's stop is), after the starts under way. */
  async stopAll(): Promise<void> {
    while (this.starting.size > 0) await Promise.allSettled([...this.starting]);
    await Promise.allSettled([...this.servers].map((server) => server.stop()));
  }
}
