import { afterAll, beforeAll } from 'vitest';
import { type NoopServer, type NoopState, startNoopServer } from '../../src/bench/noop-server.js';

/**
 * A no-op server on an ephemeral loopback port for the tests of one file: started before them
 * with the state `makeState` gives, stopped after them. Read `state` and `server` in tests.
 */
export function useNoopServer<State extends NoopState>(makeState: () => State): { readonly state: State; readonly server: NoopServer } {
  let started: { state: State; server: NoopServer } | null = null;
  beforeAll(async () => {
    const state = makeState();
    started = { state, server: await startNoopServer('127.0.0.1:0', state) };
  });
  afterAll(() => started?.server.stop());
  const get = (): { state: State; server: NoopServer } => {
    if (started === null) throw new Error('the no-op server is started in beforeAll; read it inside a test');
    return started;
  };
  return {
    get state() {
      return get().state;
    },
    get server() {
      return get().server;
    },
  };
}
