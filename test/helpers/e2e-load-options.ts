import type { E2eLoadOptions } from '../../src/bench/e2e-load.js';
import { Progress } from '../../src/bench/progress.js';
import { rootLogger } from '../../src/common/logger.js';

/** A short e2e load (1,000 records/s of 100 B, read by the client Consumer), silent. */
export function e2eLoadOptions(server: string, topic: string, timing: Pick<E2eLoadOptions, 'durationSeconds' | 'warmupSeconds'>): E2eLoadOptions {
  return {
    connection: { server },
    topic,
    rate: 1000,
    recordSize: 100,
    acks: 'all',
    lingerMs: 0,
    batchBytes: 1 << 20,
    bufferBytes: 32 << 20,
    reader: 'consumer',
    logger: rootLogger,
    progress: new Progress({ write: () => true }),
    label: 'e2e',
    ...timing,
  };
}
