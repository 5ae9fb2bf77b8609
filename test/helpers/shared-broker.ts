/**
 * The preamble of integration test files that share one in-process broker: start it and a
 * wire-level client before the file's tests, close both (and remove the data directory) after.
 */
import { afterAll, beforeAll } from 'vitest';
import type { ServeSettings } from '../../src/config/broker-options.js';
import { TestClient } from './grpc-client.js';
import { type TestBroker, startTestBroker } from './test-server.js';

export interface SharedBroker {
  /** The broker; available from the file's first test on (throws before beforeAll ran). */
  readonly broker: TestBroker;
  /** A client connected to `broker`. */
  readonly client: TestClient;
}

/**
 * Registers beforeAll/afterAll hooks (call it at the top level of a test file, or in a describe)
 * that start a broker with `overrides` and a client for it, and stop them afterwards.
 */
export function useSharedBroker(overrides: Partial<ServeSettings> = {}): SharedBroker {
  let broker: TestBroker | undefined;
  let client: TestClient | undefined;

  beforeAll(async () => {
    broker = await startTestBroker(overrides);
    client = new TestClient(broker.address);
  });
  afterAll(async () => {
    client?.close();
    await broker?.dispose();
  });

  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`the shared ${what} is used before beforeAll started it`);
    return value;
  };
  return {
    get broker() {
      return started(broker, 'broker');
    },
    get client() {
      return started(client, 'client');
    },
  };
}
