// Goal: a signal during a benchmark run leaves no server behind: the servers started, and one
// still starting, are stopped before the process exits, and no server is started after the
// signal; method: StartedServers with stand-in servers that record their stops, the signal
// emitted on this process, and the exit injected.
import { afterEach, expect, it } from 'vitest';
import { StartedServers, type Stoppable } from '../../src/bench/started-servers.js';

class StandInServer implements Stoppable {
  stopped = false;
  async stop(): Promise<void> {
    this.stopped = true;
  }
}

let stopHandling: (() => void) | null = null;
afterEach(() => {
  stopHandling?.();
  stopHandling = null;
});

it('stops the servers started and the one starting, refuses a new start, then exits 143', async () => {
  const servers = new StartedServers();
  let exitCode: number | null = null;
  let exited!: () => void;
  const exit = new Promise<void>((resolve) => (exited = resolve));
  stopHandling = servers.handleSignals(((code: number) => {
    exitCode = code;
    exited();
  }) as (code: number) => never);

  const running = await servers.track(async () => new StandInServer());
  let finishStart!: (server: StandInServer) => void;
  const starting = servers.track(() => new Promise<StandInServer>((resolve) => (finishStart = resolve)));

  process.emit('SIGTERM');
  expect(servers.interrupted).not.toBeNull();
  let startedAfterSignal = false;
  await expect(servers.track(async () => {
    startedAfterSignal = true;
    return new StandInServer();
  })).rejects.toThrow(/interrupted by a signal/);
  expect(startedAfterSignal).toBe(false);

  // The exit waits for the start under way, and for its stop.
  expect(exitCode).toBeNull();
  const late = new StandInServer();
  finishStart(late);
  await starting;
  await exit;
  expect(exitCode).toBe(143);
  expect(running.stopped).toBe(true);
  expect(late.stopped).toBe(true);
});

it('run: after a signal, a body that fails waits for the stop and the exit instead of reporting its failure first', async () => {
  const servers = new StartedServers();
  const events: string[] = [];
  const outcome = servers.run(
    async () => {
      // A stop that takes a while, as a real server's does.
      await servers.track(async () => ({ stop: () => new Promise<void>((resolve) => setTimeout(() => resolve(void events.push('stopped')), 20)) }));
      process.emit('SIGTERM');
      throw new Error('the load failed: its server went away');
    },
    ((code: number) => void events.push(`exit ${code}`)) as (code: number) => never,
  );
  // The exit injected here returns, so the run goes on to settle once the process would have ended.
  const failure = await outcome.then(
    () => null,
    (error: Error) => ({ message: error.message, eventsThen: [...events] }),
  );
  expect(failure).toEqual({ message: 'the load failed: its server went away', eventsThen: ['stopped', 'exit 143'] });
});
