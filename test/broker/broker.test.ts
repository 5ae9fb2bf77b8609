// Goal: the broker's count of log I/O calls (strata_log_io_calls_total) never falls, not even
// while a deleted topic's logs are still closing, and calls made while it shuts down are refused
// as retriable; method: a real broker on a temp directory, with an injected FileSystem that holds
// the closing log's fdatasync.
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { MetadataStore } from '../../src/broker/metadata-store.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { decodeCheckpoint } from '../../src/storage/checkpoint-file.js';
import { CLEAN_SHUTDOWN_FILE, partitionDirectory } from '../../src/storage/file-names.js';
import type { IoCalls } from '../../src/storage/partition-log.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { useBrokerOnTestFileSystem } from '../helpers/broker-on-test-file-system.js';
import { TestFileSystem } from '../helpers/test-file-system.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';
import { waitUntil } from '../helpers/wait.js';

const opened = useBrokerOnTestFileSystem('strata-broker-');

const total = (calls: IoCalls): number => calls.eventLoop.write + calls.eventLoop.fdatasync + calls.threadPool.write + calls.threadPool.fdatasync;

it("counts a deleted topic's I/O calls while its directory moves out, and after", async () => {
  await opened.broker.createTopic('doomed', 1, {});
  for (const value of ['a', 'b', 'c']) await opened.broker.produceBatches('doomed', 0, buildBatch([{ value: Buffer.from(value) }]), 'all');
  const before = total(opened.broker.ioCallTotals());
  expect(before).toBeGreaterThanOrEqual(6); // a write and an fdatasync each (acks=all, flush=always)

  // Held at the move of its directory: the topic is gone from the broker, its logs closed.
  const held = opened.fs.hold('rename', `${sep}deleted${sep}`); // the move into the graveyard
  const deleted = opened.broker.deleteTopic('doomed');
  await held.reached;
  try {
    expect(total(opened.broker.ioCallTotals())).toBeGreaterThanOrEqual(before);
  } finally {
    held.release();
  }
  await deleted;
  expect(total(opened.broker.ioCallTotals())).toBeGreaterThanOrEqual(before);
});

// A retention pass held up by one partition (a slow disk) is the one the next tick waits for:
// ticks do not queue passes behind it, to run back to back once it moves.
it('runs one retention pass at a time: a tick while one is held up waits for that one', async () => {
  await opened.broker.createTopic('expiring', 1, { 'segment.bytes': '1024', 'retention.bytes': '1024' });
  for (let batch = 0; batch < 4; batch++) await opened.broker.produceBatches('expiring', 0, buildBatch([{ value: Buffer.alloc(600, batch) }]), 'all');
  const log = opened.broker.partitionLog('expiring', 0);
  const segmentsBefore = log.segmentCount;
  expect(segmentsBefore).toBeGreaterThan(2);
  const held = opened.fs.hold('rename', '.deleted');
  const first = opened.broker.applyRetention();
  await held.reached; // renaming the oldest segment for deletion
  const second = opened.broker.applyRetention();
  expect(second).toBe(first);
  held.release();
  await Promise.all([first, second]);
  expect(log.segmentCount).toBeLessThan(segmentsBefore);
  const third = opened.broker.applyRetention();
  expect(third).not.toBe(first); // the next tick after it is a pass of its own
  await third;
});

// A broker that is shutting down answers UNAVAILABLE (retry on restart), as the README's status
// table says, not FAILED_PRECONDITION, which clients take as final.
it('refuses calls made while it shuts down with UNAVAILABLE', async () => {
  const dataDir = temporaryDirectory('strata-broker-closing-');
  try {
    const broker = await Broker.open({ dataDir });
    await broker.createTopic('orders', 1, {});
    const closed = broker.close();
    const refusal = async (call: () => Promise<unknown>): Promise<unknown> => call().then(() => null, (error: unknown) => error);
    const refusals = await Promise.all([
      refusal(() => broker.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('late') }]), 'all')),
      refusal(async () => broker.createTopic('late', 1, {})),
    ]);
    for (const refusal of refusals) {
      expect(refusal).toBeInstanceOf(StrataError);
      expect((refusal as StrataError).code).toBe(ErrorCode.UNAVAILABLE);
      expect((refusal as StrataError).message).toMatch(/shutting down; retry on restart/);
    }
    await closed;
  } finally {
    removeDirectory(dataDir);
  }
});

// Every --recovery-checkpoint-interval-ms each partition's recovery checkpoint moves up to its
// durable end (so recovery fences damage to older records instead of cutting it as a torn
// tail); a partition whose checkpoint cannot be written is logged and does not stop the others.
it("moves every partition's recovery checkpoint up to its durable end on a timer, past a partition whose write fails", async () => {
  const dataDir = temporaryDirectory('strata-broker-checkpoints-');
  const fs = new TestFileSystem();
  let broker: Broker | null = null;
  try {
    await expect(Broker.open({ dataDir, recoveryCheckpointIntervalMs: 0 })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: 'recoveryCheckpointIntervalMs must be an integer from 1 to 2147483647, got 0',
    });
    broker = await Broker.open({ dataDir, fs, recoveryCheckpointIntervalMs: 10 });
    await broker.checkpointRecoveryPoints(); // a pass with nothing to do does not stop the later ones
    await broker.createTopic('orders', 3, {});
    fs.fileWritesFullFor = join('orders', '1', 'recovery-point');
    for (const [partition, records] of [[0, 2], [1, 3], [2, 4]] as const) {
      for (let record = 0; record < records; record++) await broker.produceBatches('orders', partition, buildBatch([{ value: Buffer.from('x') }]), 'all');
    }
    const checkpoints = () =>
      [0, 1, 2].map((partition) => {
        const path = join(partitionDirectory(dataDir, 'orders', partition), 'recovery-point.checkpoint');
        return existsSync(path) ? decodeCheckpoint(readFileSync(path, 'utf8')) : null;
      });
    await waitUntil(() => JSON.stringify(checkpoints()) === JSON.stringify([2, null, 4]), () => `checkpoints [2, null, 4] (partition 1 could not write its own), got ${JSON.stringify(checkpoints())}`);
    fs.fileWritesFullFor = null;
    await waitUntil(() => checkpoints()[1] === 3, 'a later pass to write the checkpoint of partition 1');
    expect(checkpoints()).toEqual([2, 3, 4]);
  } finally {
    await broker?.close();
    removeDirectory(dataDir);
  }
});

// Each log line names its subsystem once: a partition log's lines were children of the broker's
// logger, so they carried "subsystem" twice ("broker", then "storage").
it('logs a partition log\'s lines with one subsystem key', async () => {
  const dataDir = temporaryDirectory('strata-broker-log-lines-');
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  let broker: Broker | null = null;
  try {
    broker = await Broker.open({ dataDir, logger });
    await broker.createTopic('small', 1, { 'segment.bytes': '1024' });
    for (let batch = 0; batch < 4; batch++) await broker.produceBatches('small', 0, buildBatch([{ value: Buffer.alloc(600, batch) }]), 'all');
  } finally {
    await broker?.close();
    removeDirectory(dataDir);
  }
  const rolled = lines.filter((line) => line.includes('rolled to a new segment'));
  expect(rolled.length).toBeGreaterThan(0);
  for (const line of lines) expect(line.match(/"subsystem"/g) ?? [], line).toHaveLength(line.includes('"subsystem"') ? 1 : 0);
  expect(JSON.parse(rolled[0]!)).toMatchObject({ subsystem: 'storage', log: 'small-0' });
});

it('sums an unclean stop up in one warning, with a warning per partition that had an unfinished write cut and info lines for the rest', async () => {
  const dataDir = temporaryDirectory('strata-broker-recovery-summary-');
  const lines: { level: number; msg: string; recovered?: number; cut?: number; topic?: string; partition?: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
  let broker: Broker | null = null;
  try {
    broker = await Broker.open({ dataDir });
    await broker.createTopic('many', 4, {});
    for (let partition = 0; partition < 4; partition++) await broker.produceBatches('many', partition, buildBatch([{ value: Buffer.from(`record ${partition}`) }]), 'all');
    await broker.close();
    broker = null;
    // As after kill -9: no clean-shutdown markers; partition 2 ends in half a batch.
    for (let partition = 0; partition < 4; partition++) rmSync(join(partitionDirectory(dataDir, 'many', partition), CLEAN_SHUTDOWN_FILE));
    const torn = buildBatch([{ value: Buffer.from('never acknowledged') }]);
    appendFileSync(join(partitionDirectory(dataDir, 'many', 2), '00000000000000000000.log'), torn.subarray(0, torn.length - 5));
    broker = await Broker.open({ dataDir, logger });
    const warnings = lines.filter((line) => line.level >= 40).map(({ msg, recovered, cut, partition }) => ({ msg, recovered, cut, partition }));
    expect(warnings).toEqual([
      { msg: 'truncating an unfinished write at the end of the log (never acknowledged)', recovered: undefined, cut: undefined, partition: undefined },
      { msg: 'partition recovered after an unclean stop', recovered: undefined, cut: undefined, partition: 2 },
      { msg: expect.stringMatching(/^unclean shutdown: 4 partition log\(s\) recovered; 1 cut an unfinished write at its end \(\d+ bytes in all; each is logged above\)$/), recovered: 4, cut: 1, partition: undefined },
    ]);
    expect(lines.filter((line) => line.msg === 'unclean shutdown: recovering the log').map(({ level }) => level)).toEqual([30, 30, 30, 30]);
  } finally {
    await broker?.close();
    removeDirectory(dataDir);
  }
});

// A reset config is gone from the topic's stored record: after a restart with another broker
// default, the topic follows the new default, while the configs it still sets keep their values.
it('keeps a reset config reset across a restart, following the broker default then', async () => {
  const dataDir = temporaryDirectory('strata-broker-reset-config-');
  let broker: Broker | null = null;
  try {
    broker = await Broker.open({ dataDir, topicDefaults: { retentionMs: 3_600_000 } });
    await broker.createTopic('orders', 1, { 'retention.ms': '60000', 'segment.ms': '600000' });
    const reset = await broker.alterTopicConfigs('orders', {}, ['retention.ms']);
    expect(reset.configs['retention.ms']).toBe('3600000');
    expect(reset.overriddenConfigs).toEqual(['segment.ms']);
    await broker.close();
    broker = await Broker.open({ dataDir, topicDefaults: { retentionMs: 7_200_000 } });
    const reopened = broker.describeTopic('orders');
    expect(reopened.configs).toMatchObject({ 'retention.ms': '7200000', 'segment.ms': '600000' });
    expect(reopened.overriddenConfigs).toEqual(['segment.ms']);
    expect(broker.metadataStore.getTopic('orders')!.configs).toEqual({ 'segment.ms': '600000' });
  } finally {
    await broker?.close();
    removeDirectory(dataDir);
  }
});

// A stored config this version does not know (one a newer version wrote, say) stops the start
// with the topic's name and the way out, not a bare "unknown topic config".
it('names the topic whose stored config it cannot take when it refuses to start', async () => {
  const dataDir = temporaryDirectory('strata-broker-stored-config-');
  try {
    const broker = await Broker.open({ dataDir });
    await broker.createTopic('orders', 1, {});
    await broker.metadataStore.putTopic({ ...broker.metadataStore.getTopic('orders')!, configs: { 'future.config': '1' } });
    await broker.close();
    await expect(Broker.open({ dataDir })).rejects.toThrow(/^the stored config of topic "orders" is not valid for this version: .*future\.config.*Start the version that stored it and alter the config, or delete the topic$/);
  } finally {
    removeDirectory(dataDir);
  }
});

// At start, a directory under a topic that is not one of its partitions' (a stray, or a number
// written another way) is reported as an orphan and left as it is.
it('reports the directories under a topic that are none of its partitions as orphans', async () => {
  const dataDir = temporaryDirectory('strata-broker-orphans-');
  try {
    let broker = await Broker.open({ dataDir });
    await broker.createTopic('orders', 2, {});
    await broker.close();
    const topicDir = join(dataDir, 'topics', 'orders');
    for (const name of ['01', '1e0', '2', 'copy']) mkdirSync(join(topicDir, name));
    broker = await Broker.open({ dataDir });
    try {
      expect([...broker.orphans].sort()).toEqual(['01', '1e0', '2', 'copy'].map((name) => join(topicDir, name)).sort());
      expect(existsSync(join(topicDir, '01'))).toBe(true);
    } finally {
      await broker.close();
    }
  } finally {
    removeDirectory(dataDir);
  }
});

it('starts with a topic config stored before number configs had to be decimal, and takes only decimal ones in an alter', async () => {
  const dataDir = temporaryDirectory('strata-legacy-config-');
  try {
    const first = await Broker.open({ dataDir });
    await first.createTopic('legacy', 1, { 'retention.ms': '1000' });
    await first.close();
    // As a broker before the rule stored it: the spelling the request had.
    const metadata = MetadataStore.open(dataDir);
    await metadata.putTopic({ ...metadata.getTopic('legacy')!, configs: { 'retention.ms': '2e3' } });
    await metadata.close();

    const reopened = await Broker.open({ dataDir });
    try {
      expect(reopened.describeTopic('legacy').configs['retention.ms']).toBe('2000');
      // Checked before the alter starts (it throws, as for a bad topic name).
      expect(() => reopened.alterTopicConfigs('legacy', { 'retention.ms': '3e3' })).toThrow(new StrataError(ErrorCode.INVALID_ARGUMENT, 'retention.ms must be an integer in decimal digits, got "3e3"'));
      expect((await reopened.alterTopicConfigs('legacy', { 'retention.ms': '3000' })).configs['retention.ms']).toBe('3000');
    } finally {
      await reopened.close();
    }
  } finally {
    removeDirectory(dataDir);
  }
});

// A data directory whose metadata store was removed or emptied (or restored without it, or the
// wrong volume) holds topic directories LMDB would not know: starting would show no topics and
// report ready, every partition an orphan.
it('refuses to start on topic directories without a metadata store, and starts once they are moved out', async () => {
  const dataDir = temporaryDirectory('strata-broker-no-metadata-');
  try {
    const first = await Broker.open({ dataDir });
    await first.createTopic('orders', 2, {});
    await first.produceBatches('orders', 0, buildBatch([{ value: Buffer.from('kept') }]), 'all');
    await first.close();
    const metadataFile = join(dataDir, 'metadata.mdb');
    for (const lose of [() => rmSync(metadataFile), () => writeFileSync(metadataFile, '')]) {
      lose();
      await expect(Broker.open({ dataDir })).rejects.toThrow(
        `the data directory ${dataDir} holds topic directories (orders) but no metadata store (metadata.mdb is missing or empty): started, the broker would know none of those topics. Restore metadata.mdb from a backup, or move the topics directory out of the data directory to start empty`,
      );
      expect(existsSync(join(dataDir, 'topics', 'orders', '0')), 'the partitions left as they were').toBe(true);
    }
    rmSync(join(dataDir, 'topics'), { recursive: true });
    const empty = await Broker.open({ dataDir });
    expect(empty.listTopics()).toEqual([]);
    await empty.close();
  } finally {
    removeDirectory(dataDir);
  }
});

// A metadata store restored from a backup older than the logs: its producer-id counter is below
// ids the partitions remember. Handed out again, an id's first batch would match the old
// producer's first and be answered as a duplicate, its records never stored.
it('hands out no producer id the logs remember, after its metadata store was restored from an older backup', async () => {
  const dataDir = temporaryDirectory('strata-broker-restored-metadata-');
  const metadataFile = join(dataDir, 'metadata.mdb');
  const idempotent = (producerId: number, value: string): Buffer => buildBatch([{ value: Buffer.from(value) }], { producerId, producerEpoch: 0, baseSequence: 0 });
  try {
    const first = await Broker.open({ dataDir });
    await first.createTopic('orders', 1, {});
    await first.close();
    const backup = readFileSync(metadataFile);
    const second = await Broker.open({ dataDir });
    const { producerId: old } = await second.initProducer();
    expect((await second.produceBatches('orders', 0, idempotent(old, 'before'), 'all')).batches[0]!.duplicate).toBe(false);
    await second.close();
    writeFileSync(metadataFile, backup);
    const restored = await Broker.open({ dataDir });
    try {
      const { producerId } = await restored.initProducer();
      expect(producerId).toBeGreaterThan(old);
      const appended = (await restored.produceBatches('orders', 0, idempotent(producerId, 'after'), 'all')).batches[0]!;
      expect(appended.duplicate).toBe(false);
      expect(appended.baseOffset).toBe(1);
    } finally {
      await restored.close();
    }
  } finally {
    removeDirectory(dataDir);
  }
});
