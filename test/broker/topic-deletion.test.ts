// Goal: a delete that fails after the topic left the metadata still finishes what it can and
// says what it left: the topic's group offsets go (a topic created again under the name must
// not start from them), its directory is moved out if it can be, and the broker logs what an
// operator has to do; method: a real broker on a temp directory, with a file where the
// graveyard of deleted topics goes (the move fails) or an injected FileSystem whose fdatasyncs
// (which a deleted topic's close does not need) or directory fsyncs (the move is not made
// durable) fail, and a logger that keeps the broker's error lines.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { ErrorCode } from '../../src/common/errors.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestFileSystem } from '../helpers/test-file-system.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

let dataDir: string;
let fs: TestFileSystem;
let broker: Broker;
let errors: { msg: string; directory?: string }[];
let offsetsDropped: string[];

beforeEach(async () => {
  dataDir = temporaryDirectory('strata-topic-deletion-');
  fs = new TestFileSystem();
  errors = [];
  const logger = pino({ level: 'error' }, { write: (line: string) => void errors.push(JSON.parse(line) as { msg: string; directory?: string }) });
  broker = await Broker.open({ dataDir, fs, logger });
  offsetsDropped = [];
  broker.onTopicDeleted = (topic) => void offsetsDropped.push(topic);
  await broker.createTopic('doomed', 1, {});
  await broker.produceBatches('doomed', 0, buildBatch([{ value: Buffer.from('old') }]), 'all');
});

afterEach(async () => {
  fs.failFdatasync = false;
  fs.directorySyncError = null;
  await broker.close();
  removeDirectory(dataDir);
});

it('whose directory cannot be moved out: drops the offsets, logs the directory to remove, and the name is free once it is gone', async () => {
  writeFileSync(join(dataDir, 'deleted'), ''); // a file where the graveyard goes
  await expect(broker.deleteTopic('doomed')).rejects.toMatchObject({
    code: ErrorCode.STORAGE_ERROR,
    message: 'topic "doomed" is deleted, but moving its directory out of the topics directory failed with EEXIST: the broker tries again at its next start, and until the directory is gone a topic of this name cannot be created (it may be removed by hand; the broker log names it)',
  });
  expect(broker.hasTopic('doomed')).toBe(false);
  expect(offsetsDropped).toEqual(['doomed']);
  const directory = join(dataDir, 'topics', 'doomed');
  expect(errors).toContainEqual(expect.objectContaining({ directory, msg: expect.stringMatching(/^the topic is deleted, but moving its directory out of the topics directory failed: the next start tries again/) }));

  // Its old records are still there: the broker will not make a new topic of them.
  await expect(broker.createTopic('doomed', 1, {})).rejects.toMatchObject({ code: ErrorCode.FAILED_PRECONDITION });
  rmSync(directory, { recursive: true });
  await broker.createTopic('doomed', 1, {});
  expect(broker.partitionLog('doomed', 0).logEndOffset).toBe(0);
});

it('whose directory cannot be moved out: the next start moves it out, and the name is free again', async () => {
  writeFileSync(join(dataDir, 'deleted'), ''); // a file where the graveyard goes
  await expect(broker.deleteTopic('doomed')).rejects.toMatchObject({ code: ErrorCode.STORAGE_ERROR });
  await broker.close();
  rmSync(join(dataDir, 'deleted'));
  broker = await Broker.open({ dataDir, fs });
  expect(broker.orphans).toEqual([]);
  expect(existsSync(join(dataDir, 'topics', 'doomed'))).toBe(false);
  await broker.createTopic('doomed', 1, {});
  expect(broker.partitionLog('doomed', 0).logEndOffset).toBe(0);
});

it('interrupted by a crash after the topic left the metadata: the next start moves its directory out', async () => {
  // The crash: the metadata says deleted, the directory is still where it was.
  await broker.metadataStore.deleteTopic('doomed', Date.now());
  await broker.close();
  expect(existsSync(join(dataDir, 'topics', 'doomed'))).toBe(true);
  const warnings: { msg: string; topic?: string }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line) as { msg: string }) });
  broker = await Broker.open({ dataDir, fs, logger });
  expect(warnings).toContainEqual(expect.objectContaining({ topic: 'doomed', msg: 'finishing the deletion of a topic that the last stop interrupted: its directory is removed' }));
  expect(broker.orphans).toEqual([]);
  expect(existsSync(join(dataDir, 'topics', 'doomed'))).toBe(false);
  expect(broker.metadataStore.pendingDeletions()).toEqual([]);
  await broker.createTopic('doomed', 1, {});
  expect(broker.partitionLog('doomed', 0).logEndOffset).toBe(0);
});

it('leaves alone a topic that holds the name again since its deletion was recorded', async () => {
  const record = broker.metadataStore.getTopic('doomed')!;
  await broker.metadataStore.deleteTopic('doomed', Date.now());
  expect(await broker.metadataStore.createTopic(record)).toBe(true);
  await broker.close();
  broker = await Broker.open({ dataDir, fs });
  expect(broker.partitionLog('doomed', 0).logEndOffset).toBe(1);
  expect(broker.metadataStore.pendingDeletions()).toEqual([]);
});

it('once finished, leaves no deletion for the next start to finish', async () => {
  await broker.deleteTopic('doomed');
  expect(broker.metadataStore.pendingDeletions()).toEqual([]);
});

it('caught by a shutdown: finishes (its directory moved out, the offsets dropped) though the partition-change listener fails on the closing broker', async () => {
  // The consumer groups' listener counts partitions; the broker's listTopics refuses while closing.
  broker.onPartitionsChanged = () => void broker.listTopics();
  const deleting = broker.deleteTopic('doomed');
  const closing = broker.close(); // waits for the delete under way
  await deleting;
  await closing;
  expect(offsetsDropped).toEqual(['doomed']);
  expect(existsSync(join(dataDir, 'topics', 'doomed'))).toBe(false);
  expect(errors.map((entry) => entry.msg)).toEqual(['a listener of partition changes failed (consumer groups may reassign late)']);
  broker = await Broker.open({ dataDir, fs });
  expect(broker.hasTopic('doomed')).toBe(false);
  await broker.createTopic('doomed', 1, {});
  expect(broker.partitionLog('doomed', 0).logEndOffset).toBe(0);
});

it('on a disk that fails every fdatasync: succeeds all the same, since nothing of a deleted topic is synced (its directory moved out, the offsets dropped)', async () => {
  fs.failFdatasync = true;
  await broker.deleteTopic('doomed');
  fs.failFdatasync = false;
  expect(broker.hasTopic('doomed')).toBe(false);
  expect(offsetsDropped).toEqual(['doomed']);
  expect(errors).toEqual([]);
  expect(existsSync(join(dataDir, 'topics', 'doomed'))).toBe(false);
  expect(readdirSync(join(dataDir, 'deleted')).length).toBeLessThanOrEqual(1); // moved, maybe removed already
  await broker.createTopic('doomed', 1, {});
  expect(broker.partitionLog('doomed', 0).logEndOffset).toBe(0);
});

it('whose topics directory fails to fsync after the move: drops the offsets, removes the moved directory, logs what a crash could bring back, and fails', async () => {
  fs.directorySyncError = 'EIO'; // every directory fsync (a deleted topic's close makes none)
  await expect(broker.deleteTopic('doomed')).rejects.toMatchObject({
    code: ErrorCode.STORAGE_ERROR,
    message: expect.stringMatching(/^topic "doomed" is deleted and its directory moved out, but the fsync of the topics directory failed with EIO: after a crash/),
  });
  fs.directorySyncError = null;
  expect(broker.hasTopic('doomed')).toBe(false);
  expect(offsetsDropped).toEqual(['doomed']);
  expect(errors.map((entry) => entry.msg)).toContain('the topic is deleted and its directory moved out, but the fsync of the topics directory failed: after a crash the directory may be back, and the next start then moves it out again');
  expect(existsSync(join(dataDir, 'topics', 'doomed'))).toBe(false);
  await vi.waitFor(() => expect(readdirSync(join(dataDir, 'deleted'))).toEqual([]));
});

it('after a restart, is answered while the previous run\'s deleted topics are still being removed', async () => {
  await broker.createTopic('kept', 1, {});
  await broker.close();
  const leftOver = join(dataDir, 'deleted', '1-1-old');
  mkdirSync(leftOver, { recursive: true });
  writeFileSync(join(leftOver, 'segment'), 'records of a topic deleted before the stop');
  const held = fs.hold('removeTree');
  broker = await Broker.open({ dataDir, fs });
  let answered = false;
  try {
    await held.reached; // the start's removal of the left-over directory is under way, and held
    void broker.deleteTopic('kept').then(() => (answered = true));
    await vi.waitFor(() => expect(answered).toBe(true), { timeout: 5_000 });
    expect(broker.hasTopic('kept')).toBe(false);
  } finally {
    held.release();
  }
  await broker.close(); // waits for the removals
  expect(readdirSync(join(dataDir, 'deleted'))).toEqual([]);
});
