// Goal: `strata repair --dir` opens only a partition directory, and leaves any other directory
// exactly as it was; a partition whose directory is missing stops the broker's start, and
// repair starts it again where no consumer has read past; method: the repair command from the
// sources run through yargs on temporary directories, a real broker on them, and
// checkPartitionDirectory on the shapes a partition directory takes.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yargs from 'yargs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { checkPartitionDirectory, repairCommand } from '../../src/cli/commands/repair.js';
import { OffsetStore } from '../../src/groups/offset-store.js';
import { partitionDirectory } from '../../src/storage/file-names.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) removeDirectory(directory);
});

function dataDirectory(): string {
  const directory = temporaryDirectory('strata-repair-');
  directories.push(directory);
  return directory;
}

/** Runs `strata repair ARGS...` as main.ts does, failures thrown rather than printed. */
function repair(args: string[]): Promise<unknown> {
  const parser = repairCommand(yargs().strict().exitProcess(false)).fail((message, error) => {
    throw error ?? new Error(message);
  });
  return parser.parseAsync(['repair', ...args]);
}

describe('repair --dir', () => {
  it('refuses a directory that is not a partition\'s, and writes nothing into it', async () => {
    const topics = join(dataDirectory(), 'topics');
    mkdirSync(join(topics, 'orders', '0'), { recursive: true });
    await expect(repair(['--dir', topics])).rejects.toThrow(
      `${topics} is not a partition directory: it holds no segment log (00000000000000000000.log) and no recovery-point.checkpoint; a partition directory is <data-dir>/topics/<topic>/<partition>`,
    );
    expect(readdirSync(topics)).toEqual(['orders']);
  });

  it('refuses --dir with --topic or --partition, and --outside-data-dir without --dir', async () => {
    const dataDir = dataDirectory();
    const partition = join(dataDir, 'topics', 'orders', '0');
    await expect(repair(['--dir', partition, '--topic', 'audit', '--partition', '1'])).rejects.toThrow('give --dir, or --topic and --partition (with --data-dir), not both');
    await expect(repair(['--dir', partition, '--partition', '1'])).rejects.toThrow('not both');
    await expect(repair(['--data-dir', dataDir, '--topic', 'orders', '--partition', '0', '--outside-data-dir'])).rejects.toThrow('--outside-data-dir goes with --dir');
  });
});

/** The lines `run` writes to stdout, which goes nowhere meanwhile. */
async function printedBy(run: () => Promise<unknown>): Promise<string[]> {
  const lines: string[] = [];
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown, encoding?: unknown, done?: unknown) => {
    lines.push(String(chunk));
    const callback = typeof encoding === 'function' ? encoding : done;
    if (typeof callback === 'function') queueMicrotask(() => (callback as () => void)());
    return true;
  });
  try {
    await run();
  } finally {
    write.mockRestore();
  }
  return lines;
}

/** Why a broker on `dataDir` does not start ('started' if it does, closed again at once). */
async function startRefusal(dataDir: string): Promise<string> {
  return Broker.open({ dataDir }).then(
    async (broker) => {
      await broker.close();
      return 'started';
    },
    (error: unknown) => (error as Error).message,
  );
}

describe('a partition whose directory is missing', () => {
  const value = (text: string) => buildBatch([{ value: Buffer.from(text) }]);

  it('stops the start, naming it; repair starts it again, empty, at the highest offset committed for it', async () => {
    const dataDir = dataDirectory();
    const first = await Broker.open({ dataDir });
    await first.createTopic('orders', 3, {});
    for (const text of ['a', 'b', 'c', 'd', 'e']) await first.produceBatches('orders', 1, value(text), 'all');
    await first.produceBatches('orders', 0, value('kept'), 'all');
    const offsets = new OffsetStore(first.metadataStore.root);
    const committed = (partition: number, offset: number) => ({ topic: 'orders', partition, offset, metadata: '', commitTimeMs: 0 });
    await offsets.commit('readers', [committed(1, 4)]);
    await offsets.commit('auditors', [committed(1, 5), committed(2, 9)]);
    await first.close();

    const missing = partitionDirectory(dataDir, 'orders', 1);
    rmSync(missing, { recursive: true });
    expect(await startRefusal(dataDir)).toBe(
      'the data directory has no segment log for a partition its metadata lists (topics/orders/1: no directory, or one without a segment log): whatever records they held are gone, and starting them empty would give out again offsets consumers have read or committed past. ' +
        `Restore the directories from a backup, or run \`strata repair --data-dir ${dataDir} --topic orders --partition 1\` (with the broker stopped) for each to start it again, empty, at its highest committed offset.`,
    );
    expect(existsSync(missing)).toBe(false); // not created empty by the refused start

    expect(await printedBy(() => repair(['--data-dir', dataDir, '--topic', 'orders', '--partition', '1']))).toEqual([
      're-created: partition 1 of topic "orders" had no segment log; its records are gone, and its log starts again, empty, at offset 5, the highest any group had committed for it; offsets the old log had above that are given out again (--start-offset starts past them)\n',
    ]);

    const second = await Broker.open({ dataDir });
    try {
      const partitions = second.describeTopic('orders').partitions;
      expect(partitions.map((partition) => [partition.logStartOffset, partition.logEndOffset])).toEqual([[0, 1], [5, 5], [0, 0]]);
      expect((await second.produceBatches('orders', 1, value('f'), 'all')).batches[0]!.baseOffset).toBe(5);
    } finally {
      await second.close();
    }
  });

  it('names several, emptied ones too, and repair of one no group read starts it at offset 0; an unknown partition is refused', async () => {
    const dataDir = dataDirectory();
    const first = await Broker.open({ dataDir });
    await first.createTopic('orders', 2, {});
    await first.createTopic('audit', 7, {});
    await first.close();
    rmSync(join(dataDir, 'topics', 'audit'), { recursive: true });
    const emptied = partitionDirectory(dataDir, 'orders', 0);
    for (const name of readdirSync(emptied)) rmSync(join(emptied, name));
    mkdirSync(join(dataDir, 'topics', 'stray', '0'), { recursive: true });
    expect(await startRefusal(dataDir)).toMatch(
      /^the data directory has no segment log for 8 partitions its metadata lists \(topics\/audit\/0, topics\/audit\/1, topics\/audit\/2, topics\/audit\/3, topics\/audit\/4 and 3 more: no directory, or one without a segment log\): .* run `strata repair --data-dir \S+ --topic audit --partition 0` .*offset\.$/,
    );

    await expect(repair(['--data-dir', dataDir, '--topic', 'audit', '--partition', '7'])).rejects.toThrow(`no partition 7 of topic "audit" in ${dataDir}: its metadata lists no such partition`);
    await expect(repair(['--data-dir', dataDir, '--topic', 'audti', '--partition', '0'])).rejects.toThrow(`no partition 0 of topic "audti" in ${dataDir}: its metadata lists no such partition`);
    await expect(repair(['--data-dir', join(dataDir, 'elsewhere'), '--topic', 'audit', '--partition', '0'])).rejects.toThrow(/^no partition 0 of topic "audit" in .*elsewhere: it is not a data directory \(no metadata\.mdb\)$/);
    expect(existsSync(join(dataDir, 'elsewhere'))).toBe(false);
    expect(existsSync(join(dataDir, 'topics', 'audti'))).toBe(false);
    await expect(repair(['--data-dir', dataDir, '--topic', 'stray', '--partition', '0'])).rejects.toThrow(`no partition 0 of topic "stray" in ${dataDir}: its metadata lists no such partition`);
    expect(readdirSync(join(dataDir, 'topics', 'stray', '0'))).toEqual([]);

    const printed = await printedBy(async () => {
      for (let partition = 0; partition < 7; partition++) await repair(['--data-dir', dataDir, '--topic', 'audit', '--partition', String(partition)]);
      await repair(['--data-dir', dataDir, '--topic', 'orders', '--partition', '0']);
    });
    expect(printed).toHaveLength(8);
    expect(printed.at(-1)).toBe('re-created: partition 0 of topic "orders" had no segment log; its records are gone, and its log starts again, empty, at offset 0 (no group had committed an offset for it); offsets the old log had above that are given out again (--start-offset starts past them)\n');
    const second = await Broker.open({ dataDir });
    try {
      expect(second.describeTopic('audit').partitions).toHaveLength(7);
      expect((await second.produceBatches('orders', 0, value('x'), 'all')).batches[0]!.baseOffset).toBe(0);
    } finally {
      await second.close();
    }
  });
});

describe('a data directory whose topics are all missing', () => {
  it('stops the start with a word on unmounted volumes', async () => {
    const dataDir = dataDirectory();
    const first = await Broker.open({ dataDir });
    await first.createTopic('orders', 2, {});
    await first.close();
    rmSync(join(dataDir, 'topics', 'orders'), { recursive: true });
    expect(await startRefusal(dataDir)).toMatch(/ Every partition is missing: if the topics live on a volume that is not mounted, mount it instead\.$/);
  });
});

describe('repair --start-offset', () => {
  it('starts a partition whose log is missing where asked, not below a committed offset, and only such a partition', async () => {
    const dataDir = dataDirectory();
    const first = await Broker.open({ dataDir });
    await first.createTopic('orders', 1, {});
    for (const text of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) await first.produceBatches('orders', 0, buildBatch([{ value: Buffer.from(text) }]), 'all');
    await new OffsetStore(first.metadataStore.root).commit('readers', [{ topic: 'orders', partition: 0, offset: 3, metadata: '', commitTimeMs: 0 }]);
    await first.close();
    const directory = partitionDirectory(dataDir, 'orders', 0);
    rmSync(directory, { recursive: true });
    const at = (offset: string) => repair(['--data-dir', dataDir, '--topic', 'orders', '--partition', '0', '--start-offset', offset]);

    await expect(at('2')).rejects.toThrow('--start-offset 2 is below offset 3, which a group has committed for this partition: start at 3 or later, so that its committed offset stays within the log');
    await expect(at('-1')).rejects.toThrow('--start-offset must be a non-negative integer, got -1');
    expect(existsSync(directory)).toBe(false);
    // The old log end, as strata_partition_log_end_offset showed it: no offset is given out again.
    expect(await printedBy(() => at('7'))).toEqual(['re-created: partition 0 of topic "orders" had no segment log; its records are gone, and its log starts again, empty, at offset 7, as asked\n']);
    await expect(at('9')).rejects.toThrow('--start-offset is only for a partition whose segment log is missing; this one has its log, which the repair keeps');
    await expect(repair(['--dir', directory, '--start-offset', '9'])).rejects.toThrow('--start-offset goes with --topic and --partition');
    await expect((async () => repair(['--data-dir', dataDir, '--topic', 'orders', '--partition', '0', '--start-offset']))()).rejects.toThrow('Not enough arguments following: start-offset');

    const second = await Broker.open({ dataDir });
    try {
      expect(second.describeTopic('orders').partitions.map((partition) => [partition.logStartOffset, partition.logEndOffset])).toEqual([[7, 7]]);
    } finally {
      await second.close();
    }
  });
});

describe('checkPartitionDirectory', () => {
  it('accepts a directory with a segment log or a recovery checkpoint', () => {
    const withLog = dataDirectory();
    writeFileSync(join(withLog, '00000000000000000100.log'), '');
    expect(() => checkPartitionDirectory(withLog)).not.toThrow();
    const withCheckpoint = dataDirectory();
    writeFileSync(join(withCheckpoint, 'recovery-point.checkpoint'), '');
    expect(() => checkPartitionDirectory(withCheckpoint)).not.toThrow();
  });

  it('refuses an empty directory, one with other .log files, and a file', () => {
    const empty = dataDirectory();
    expect(() => checkPartitionDirectory(empty)).toThrow(/is not a partition directory/);
    const logs = dataDirectory();
    writeFileSync(join(logs, 'server.log'), 'a log of something else');
    expect(() => checkPartitionDirectory(logs)).toThrow(/is not a partition directory/);
    expect(() => checkPartitionDirectory(join(logs, 'server.log'))).toThrow(/^cannot read .*server\.log: ENOTDIR \(not a directory\)$/);
  });
});
