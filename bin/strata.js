#!/usr/bin/env node
// Entry point of the `strata` command; the TypeScript sources are compiled to dist/ by
// `npm install` (the package's `prepare` script). A CommonJS module (see package.json here):
// its first step, lowering V8's helper threads below the event loop, must run before Node.js
// starts its thread pool, and an ES-module entry starts it while loading (helper-threads.cts).
require('../dist/src/common/lower-helper-threads.cjs');
// As PID 1 (a container's entrypoint), end on SIGTERM or SIGINT until the command handles them.
require('../dist/src/common/exit-on-first-signals.cjs').exitOnFirstSignals();
import('../dist/src/cli/main.js').catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
