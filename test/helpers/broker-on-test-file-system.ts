/**
 * The preamble of tests that drive an in-process `Broker` (no gRPC) through an injected
 * `TestFileSystem`: open it on a temporary data directory before the tests of the enclosing
 * file or describe, close it and remove the directory after.
 */
import { afterAll, beforeAll } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { TestFileSystem } from './test-file-system.js';
import { removeDirectory, temporaryDirectory } from './test-server.js';

export interface BrokerOnTestFileSystem {
  /** The broker; a test may close it and put another in its place. */
  broker: Broker;
  readonly fs: TestFileSystem;
  readonly dataDir: string;
}

/** Registers beforeAll/afterAll hooks; the returned object is filled in by beforeAll. */
export function useBrokerOnTestFileSystem(directoryPrefix: string): BrokerOnTestFileSystem {
  const opened = { fs: new TestFileSystem() } as BrokerOnTestFileSystem & { dataDir: string };
  beforeAll(async () => {
    opened.dataDir = temporaryDirectory(directoryPrefix);
    opened.broker = await Broker.open({ dataDir: opened.dataDir, fs: opened.fs });
  });
  afterAll(async () => {
    await opened.broker?.close();
    if (opened.dataDir !== undefined) removeDirectory(opened.dataDir);
  });
  return opened;
}
