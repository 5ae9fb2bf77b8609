/**
 * A broker restart for integration tests: what one broker wrote, read back by the next broker
 * opened on its data directory.
 */
import { TestClient } from './grpc-client.js';
import { type TestBroker, startTestBroker } from './test-server.js';

/**
 * Runs `before` with a client of a new broker, stops that broker cleanly, opens a broker on the
 * same data directory and runs `after` with a client of it, given what `before` returned.
 * Clients and brokers are closed, and the directory removed, whatever happens.
 */
export async function acrossRestart<T>(
  before: (client: TestClient, broker: TestBroker) => Promise<T>,
  after: (client: TestClient, carried: T, broker: TestBroker) => Promise<void>,
): Promise<void> {
  const first = await startTestBroker();
  let second: TestBroker | null = null;
  let client = new TestClient(first.address);
  try {
    const carried = await before(client, first);
    client.close();
    await first.stop();
    second = await startTestBroker({ dataDir: first.dataDir });
    client = new TestClient(second.address);
    await after(client, carried, second);
  } finally {
    client.close();
    if (second !== null) await second.dispose();
    else await first.dispose();
  }
}
