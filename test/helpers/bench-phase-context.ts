import type { BenchSettings, PhaseContext } from '../../src/bench/phases.js';
import { Progress } from '../../src/bench/progress.js';
import { rootLogger } from '../../src/common/logger.js';

/**
 * A silent phase context for `server` (no server process of the run's own, no metrics): small
 * loads with the benchmark's defaults, `settings` over them.
 */
export function benchPhaseContext(server: string, serverKind: PhaseContext['serverKind'], settings: Partial<BenchSettings>): PhaseContext {
  return {
    settings: {
      server,
      access: {},
      serverMetrics: null,
      local: false,
      topic: 'bench',
      partitions: null,
      flush: 'always',
      records: 1000,
      recordSize: 100,
      rate: null,
      producers: 1,
      acks: 'all',
      batchBytes: 16 * 1024,
      lingerMs: 0,
      bufferBytes: 1 << 20,
      path: 'raw',
      group: null,
      fetchBytes: null,
      durationSeconds: 0,
      warmupSeconds: 0,
      reader: 'consumer',
      profileServer: null,
      writeMode: null,
      smallIo: null,
      ...settings,
    },
    connection: { server },
    server: null,
    metricsAddress: null,
    serverKind,
    logger: rootLogger,
    progress: new Progress({ write: () => true }),
  };
}
