/**
 * The no-op gRPC server with Strata's service shapes, the transport ceiling the broker
 * benchmark compares Strata with. It lives in src/bench/noop-server.ts (shared with
 * `strata bench baseline`); this entry point keeps the path broker-bench.ts starts.
 *
 *   node dist/bench/noop-server.js   (prints {"address": "127.0.0.1:PORT"} on stdout)
 */
import '../src/bench/noop-server-main.js';
