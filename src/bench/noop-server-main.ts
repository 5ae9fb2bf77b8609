/**
 * Runs the no-op server (see noop-server.ts) on an ephemeral loopback port and prints
 * `{"address": "127.0.0.1:PORT"}` on stdout; SIGTERM or SIGINT stops it.
 *
 *   node dist/src/bench/noop-server-main.js
 */
import { startNoopServer } from './noop-server.js';

const server = await startNoopServer(process.argv[2] ?? '127.0.0.1:0');
process.stdout.write(`${JSON.stringify({ address: server.address })}\n`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => server.stop());
