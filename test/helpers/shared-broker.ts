/**
 * The preambles of integration test files that share one in-process broker: start it and a
 * client before the file's tests, close both (and remove the data directory) after. The client
 * is a wire-level `TestClient` (`useSharedBroker`) or the project's own `Admin`
 * (`useBrokerWithAdmin`, for tests of the client library and the CLI).
 */
import { afterAll, beforeAll } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import type { ServeSettings } from '../../src/config/broker-options.js';
import { TestClient } from './grpc-client.js';
import { type TestBroker, startTestBroker } from './test-server.js';

export interface SharedBroker {
  /** The broker; available from the file's first test on (throws before beforeAll ran). */
  readonly broker: TestBroker;
  /** A client connected to `broker`. */
  readonly client: TestClient;
}

export interface BrokerWithAdmin {
  /** The broker; available from the file's first test on (throws before beforeAll ran). */
  readonly broker: TestBroker;
  /** An Admin client of `broker`. */
  readonly admin: Admin;
}

/**
 * Registers beforeAll/afterAll hooks (call it at the top level of a test file, or in a describe)
 * that start a broker with `overrides` and a client made by `connect`, and stop them afterwards.
 */
function useBroker<Client extends { close(): unknown }>(overrides: Partial<ServeSettings>, connect: (address: string) => Client): { broker(): TestBroker; client(): Client } {
  let broker: TestBroker | undefined;
  let client: Client | undefined;

  beforeAll(async () => {
    broker = await startTestBroker(overrides);
    client = connect(broker.address);
  });
  afterAll(async () => {
    await client?.close();
    await broker?.dispose();
  });

  const started = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`the shared ${what} is used before beforeAll started it`);
    return value;
  };
  return { broker: () => started(broker, 'broker'), client: () => started(client, 'client') };
}

/** A broker and a wire-level client of it, for the tests of a file or describe (see `useBroker`). */
export function useSharedBroker(overrides: Partial<ServeSettings> = {}): SharedBroker {
  const shared = useBroker(overrides, (address) => new TestClient(address));
  return {
    get broker() {
      return shared.broker();
    },
    get client() {
      return shared.client();
    },
  };
}

/** A broker and an Admin client of it, for the tests of a file or describe (see `useBroker`). */
export function useBrokerWithAdmin(overrides: Partial<ServeSettings> = {}): BrokerWithAdmin {
  const shared = useBroker(overrides, (address) => new Admin({ server: address }));
  return {
    get broker() {
      return shared.broker();
    },
    get admin() {
      return shared.client();
    },
  };
}
