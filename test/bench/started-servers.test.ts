// Goal: a signal during a benchmark run leaves no server behind: the servers started, and one
// still starting, are stopped before the process exits, and no server is started after the
// signal; a second signal does not wait for a slow stop but kills every server at once, as the
// process's exit does; method: StartedServers with stand-in servers that record their stops and
// kills, the signal emitted on this process (or on a stand-in for it), and the exit injected.
import { EventEmitter } from 'node:events';
import { afterEach, expect, it } from 'vitest';
import { StartedServers, type Stoppable } from '../../src/bench/started-servers.js';

class StandInServer implements Stoppable {
  stopped = false;
  killed = false;
  async stop(): Promise<void> {
    this.stopped = true;
  }
  kill(): void {
    this.killed = true;
  }
}

/** A server whose stop never ends (a broker taking its time). */
class SlowServer extends StandInServer {
  override stop(): Promise<void> {
    this.stopped = true;
    return new Promise(() => undefined);
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
      await servers.track(async () => ({ stop: () => new Promise<void>((resolve) => setTimeout(() => resolve(void events.push('stopped')), 20)), kill: () => undefined }));
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

it('a second signal kills every server at once, without waiting for the stop under way, then exits', async () => {
  const events = new EventEmitter();
  const servers = new StartedServers(events);
  const exits: number[] = [];
  stopHandling = servers.handleSignals(((code: number) => void exits.push(code)) as (code: number) => never);
  const slow = await servers.track(async () => new SlowServer());
  const quick = await servers.track(async () => new StandInServer());
  events.emit('SIGINT');
  expect(slow.stopped).toBe(true);
  expect(exits).toEqual([]); // the first waits for the stops
  events.emit('SIGINT');
  expect(exits).toEqual([130]);
  expect([slow.killed, quick.killed]).toEqual([true, true]);
});

it("kills every server when the process exits during a run (a fatal error): an 'exit' handler cannot wait for a stop", async () => {
  const events = new EventEmitter();
  const servers = new StartedServers(events);
  let server!: StandInServer;
  await servers.run(async () => {
    server = await servers.track(async () => new StandInServer());
    events.emit('exit', 1);
  });
  expect(server.killed).toBe(true);
  expect(server.stopped).toBe(false);
  // Once the run is over, its servers are nobody's to kill at exit.
  const after = await servers.track(async () => new StandInServer());
  events.emit('exit', 0);
  expect(after.killed).toBe(false);
});
