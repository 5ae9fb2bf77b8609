// Goal: the broker advertises wide HTTP/2 receive windows, without which produce throughput is
// capped at 64 KiB per event-loop round trip; method: a raw Node http2 client connects to a real
// broker and reads the settings and connection window the server sent it.
import { connect } from 'node:http2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FLOW_CONTROL_WINDOW_BYTES } from '../../src/server/grpc-server.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';
import { waitUntil } from '../helpers/wait.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
});
afterAll(async () => {
  await broker.dispose();
});

it('advertises the widened per-stream and connection windows to every client', async () => {
  const session = connect(`http://${broker.address}`);
  try {
    session.on('error', () => undefined);
    // The server sends its widened settings in a SETTINGS frame after the initial one, and the
    // connection window as a WINDOW_UPDATE: poll for both with a deadline.
    const widened = (): boolean =>
      session.remoteSettings?.initialWindowSize === FLOW_CONTROL_WINDOW_BYTES && (session.state.remoteWindowSize ?? 0) >= FLOW_CONTROL_WINDOW_BYTES;
    await waitUntil(widened, "the server's widened windows");
    expect(session.remoteSettings.initialWindowSize).toBe(FLOW_CONTROL_WINDOW_BYTES);
    expect(session.state.remoteWindowSize).toBeGreaterThanOrEqual(FLOW_CONTROL_WINDOW_BYTES);
  } finally {
    session.close();
  }
});
