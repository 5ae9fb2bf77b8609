/**
 * Lowers the helper threads' priority when loaded (see `helper-threads.cts`). Loaded first by
 * `bin/strata.js`, and with `node --require` by processes whose entry is an ES module (the
 * benchmark's no-op server), so that it runs before Node.js starts its thread pool.
 */
import { lowerHelperThreadPriority } from './helper-threads.cjs';

lowerHelperThreadPriority();
