// Goal: `strata produce`, `consume` and `tail` move records exactly (lines, keys per Kafka's
// partitioner, JSON with headers and binary bytes, counts, push delivery, group sharing); method:
// the compiled CLI run as child processes against a real in-process broker, outputs compared
// with what was sent, long-running commands awaited line by line with deadlines (no sleeps).
import { afterAll, describe, expect, it } from 'vitest';
import { partitionForKey } from '../../src/broker/partitioner.js';
import { Producer } from '../../src/client/producer.js';
import { type CliProcess, runCli, startCli } from '../helpers/cli.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';
import { waitUntil } from '../helpers/wait.js';

// Short heartbeats: group members see each other's arrival quickly.
const shared = useBrokerWithAdmin({ groupHeartbeatIntervalMs: 500 });
const running: CliProcess[] = [];

// Registered after the broker's hooks, so run before its afterAll: the processes go first.
afterAll(() => {
  for (const process of running) process.kill();
});

function strata(...args: string[]): string[] {
  return [...args, '--server', shared.broker.address];
}

let topicCounter = 0;
async function createTopic(partitions: number): Promise<string> {
  const name = `cli-${++topicCounter}`;
  await shared.admin.createTopic(name, { partitions });
  return name;
}

interface JsonRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: string | { base64: string } | null;
  value: string | { base64: string } | null;
  headers: Record<string, string | { base64: string } | null>;
}

function jsonLines(stdout: string): JsonRecord[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as JsonRecord);
}

describe('produce and consume', () => {
  it('gets back the 10,000 lines piped into produce, in order within each partition', async () => {
    const topic = await createTopic(3);
    const lines = Array.from({ length: 10_000 }, (_, index) => `line ${index} ${'x'.repeat(index % 50)}`);
    const produced = await runCli(strata('produce', topic), { input: `${lines.join('\n')}\n` });
    expect(produced.stderr).toMatch(new RegExp(`^produced 10,000 records to [1-3] partitions? of "${topic}" in [\\d.]+ s \\([\\d,]+ records/s\\)\\n$`));
    expect(produced.code).toBe(0);

    const text = await runCli(strata('consume', topic, '--from', 'earliest'));
    expect(text.code).toBe(0);
    expect(text.stderr).toBe('');
    const received = text.stdout.split('\n').slice(0, -1);
    expect([...received].sort()).toEqual([...lines].sort());

    const json = jsonLines((await runCli(strata('consume', topic, '--format', 'json'))).stdout);
    const order = new Map(lines.map((line, index) => [line, index]));
    for (let partition = 0; partition < 3; partition++) {
      const indexes = json.filter((record) => record.partition === partition).map((record) => order.get(record.value as string)!);
      expect(indexes).toEqual([...indexes].sort((a, b) => a - b));
    }
  });

  it('puts keyed lines (--key-separator) on the partition murmur2 picks, and --key on every record', async () => {
    const topic = await createTopic(4);
    const keys = Array.from({ length: 200 }, (_, index) => `customer-${index}`);
    const produced = await runCli(strata('produce', topic, '--key-separator', ':'), { input: keys.map((key) => `${key}:order of ${key}:with colon`).join('\n') });
    expect(produced.code).toBe(0);
    const records = jsonLines((await runCli(strata('consume', topic, '--format', 'json'))).stdout);
    expect(records).toHaveLength(200);
    for (const record of records) {
      const key = record.key as string;
      expect(record.value).toBe(`order of ${key}:with colon`);
      expect(record.partition).toBe(partitionForKey(Buffer.from(key), 4));
    }

    expect((await runCli(strata('produce', topic, '--key', 'same-key', 'a', 'b', 'c'))).code).toBe(0);
    const printed = await runCli(strata('consume', topic, '--partition', String(partitionForKey(Buffer.from('same-key'), 4)), '--print-key'));
    expect(printed.stdout.split('\n').filter((line) => line.startsWith('same-key\t'))).toEqual(['same-key\ta', 'same-key\tb', 'same-key\tc']);
  });

  it('round-trips JSON records with headers, binary keys and values, and tombstones', async () => {
    const topic = await createTopic(2);
    const binary = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x7f]);
    const input = [
      { key: 'k1', value: 'plain text ✓', headers: { trace: 'abc', raw: { base64: binary.toString('base64') } } },
      { key: { base64: binary.toString('base64') }, value: { base64: Buffer.from([0xc3, 0x28]).toString('base64') }, partition: 1 },
      { key: 'k3', value: null, headers: { empty: '' } },
    ].map((line) => JSON.stringify(line));
    // A header named like an object's prototype is a header like any other (an object literal cannot spell it).
    input.push('{"key":"k4","value":"v","headers":{"__proto__":"p","ok":"1"}}');
    const produced = await runCli(strata('produce', topic, '--format', 'json', '--header', 'source=cli', '--header', 'via=json'), { input: input.join('\n') });
    expect(produced.code).toBe(0);
    const records = jsonLines((await runCli(strata('consume', topic, '--format', 'json'))).stdout);
    const byKey = (key: unknown): JsonRecord => records.find((record) => JSON.stringify(record.key) === JSON.stringify(key))!;
    expect(byKey('k1')).toMatchObject({ topic, value: 'plain text ✓', headers: { source: 'cli', via: 'json', trace: 'abc', raw: { base64: binary.toString('base64') } } });
    expect(byKey({ base64: binary.toString('base64') })).toMatchObject({ partition: 1, value: { base64: 'wyg=' }, headers: { source: 'cli' } });
    expect(byKey('k3')).toMatchObject({ value: null, headers: { source: 'cli', empty: '' } });
    expect(Object.entries(byKey('k4').headers)).toEqual([['source', 'cli'], ['via', 'json'], ['__proto__', 'p'], ['ok', '1']]);
    for (const record of records) expect(typeof record.timestamp).toBe('number');

    // consume's JSON output is produce's JSON input: copying a topic keeps every byte.
    const copy = await createTopic(2);
    const consumed = await runCli(strata('consume', topic, '--format', 'json'));
    expect((await runCli(strata('produce', copy, '--format', 'json'), { input: consumed.stdout })).code).toBe(0);
    const copied = jsonLines((await runCli(strata('consume', copy, '--format', 'json'))).stdout);
    const strip = (list: JsonRecord[]): unknown[] => list.map(({ partition, offset, timestamp, key, value, headers }) => ({ partition, offset, timestamp, key, value, headers }));
    expect(strip(copied)).toEqual(strip(records));
  });

  it('takes one KEY=VALUE per --header, so the values after it are records', async () => {
    const topic = await createTopic(1);
    const produced = await runCli(strata('produce', topic, '--header', 'source=cli', '--header', '__proto__=x', 'k=v', 'plain'));
    expect(produced.code, produced.stderr).toBe(0);
    const records = jsonLines((await runCli(strata('consume', topic, '--format', 'json'))).stdout);
    expect(records.map((record) => [record.value, Object.entries(record.headers)])).toEqual([
      ['k=v', [['source', 'cli'], ['__proto__', 'x']]],
      ['plain', [['source', 'cli'], ['__proto__', 'x']]],
    ]);
  });

  it('refuses a JSON line with a field a record does not have, naming the line and the field', async () => {
    const topic = await createTopic(1);
    const refused = await runCli(strata('produce', topic, '--format', 'json'), { input: '{"value":"a"}\n{"valu":"b"}\n' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^strata: input line 2: unknown field "valu"; a record has key, value, headers, partition and timestamp/m);
    // consume's own fields are taken, so its output is produce's input (see the round trip above).
    const taken = await runCli(strata('produce', topic, '--format', 'json'), { input: '{"topic":"elsewhere","offset":7,"value":"c"}\n' });
    expect(taken.code, taken.stderr).toBe(0);
  });

  it('stops after --count records, and at the end offsets of its start without --follow', async () => {
    const topic = await createTopic(2);
    await runCli(strata('produce', topic, ...Array.from({ length: 100 }, (_, index) => `r${index}`)));
    const counted = await runCli(strata('consume', topic, '--count', '10'));
    expect(counted.code).toBe(0);
    expect(counted.stdout.split('\n').slice(0, -1)).toHaveLength(10);
    const partition = await runCli(strata('consume', topic, '--partition', '1', '--format', 'json'));
    const onOne = (await shared.admin.describeTopic(topic)).partitions[1]!.highWatermark;
    expect(jsonLines(partition.stdout).map((record) => record.offset)).toEqual(Array.from({ length: onOne }, (_, index) => index));

    // With --follow it waits for records produced later and ends at --count.
    const empty = await createTopic(2);
    const follower = startCli(strata('consume', empty, '--follow', '--count', '3'));
    running.push(follower);
    expect((await runCli(strata('produce', empty, 'late 1', 'late 2', 'late 3', 'late 4'))).code).toBe(0);
    expect(await follower.exited).toEqual({ code: 0, signal: null });
    expect(follower.lines).toHaveLength(3);
    expect(follower.lines.every((line) => line.startsWith('late '))).toBe(true);
  });
});

describe('produce input lines', () => {
  it('end at \\n, \\r\\n or a lone \\r, and the last one needs no end', async () => {
    const topic = await createTopic(1);
    const produced = await runCli(strata('produce', topic), { input: 'a\r\nb\rc\n\nd é' });
    expect(produced.code, produced.stderr).toBe(0);
    expect((await runCli(strata('consume', topic))).stdout).toBe('a\nb\nc\n\nd é\n');
  });

  const LINE_BYTES_MAX = 16 * 1024 * 1024;
  const tooLong = (lineNumber: number): string => `input line ${lineNumber} is longer than 16 MiB (16,777,216 bytes), more than any record can be; reading stopped there`;

  it('are refused past what any record could be, naming the line and the bound, after the records before it', async () => {
    const topic = await createTopic(1);
    const input = Buffer.concat([Buffer.from('ok\n'), Buffer.alloc(LINE_BYTES_MAX + 1, 0x61), Buffer.from('\nnever read\n')]);
    const refused = await runCli(strata('produce', topic), { input });
    expect({ code: refused.code, stderr: refused.stderr }).toEqual({ code: 1, stderr: `strata: ${tooLong(2)} (1 record was produced before it)\n` });
    expect((await runCli(strata('consume', topic))).stdout).toBe('ok\n');
  });

  it('are refused as soon as one passes the bound, without waiting for its end (an endless line)', async () => {
    const topic = await createTopic(1);
    const producer = startCli(strata('produce', topic), { input: 'open' });
    running.push(producer);
    // More than the bound, no line end, and stdin left open: only the bound can end the command.
    producer.child.stdin!.write(Buffer.alloc(LINE_BYTES_MAX + 64 * 1024, 0x61));
    expect(await producer.exitWithin(30_000)).toEqual({ code: 1, signal: null });
    expect(producer.stderr).toBe(`strata: ${tooLong(1)}\n`);
  });
});

describe('a closed stderr', () => {
  it('(`2>&1 | true`) changes nothing: produce stores its records and exits 0, its summary line lost with the reader', async () => {
    const topic = await createTopic(1);
    const producer = startCli(strata('produce', topic, 'a', 'b', 'c'));
    running.push(producer);
    producer.child.stderr!.destroy(); // the reader is gone before the summary line is written
    expect(await producer.exitWithin(30_000)).toEqual({ code: 0, signal: null });
    expect((await runCli(strata('consume', topic))).stdout).toBe('a\nb\nc\n');
  });
});

describe('Ctrl-C', () => {
  it('stops produce reading stdin, flushes what it read, prints the summary and exits 130: not all of the input was produced', async () => {
    const topic = await createTopic(2);
    const producer = startCli(strata('produce', topic), { input: 'open' });
    running.push(producer);
    producer.child.stdin!.write(Array.from({ length: 100 }, (_, index) => `before ${index}\n`).join(''));
    await waitUntil(async () => (await shared.admin.describeTopic(topic)).partitions.reduce((sum, partition) => sum + partition.highWatermark, 0) === 100, 'the first 100 records', 20_000);
    expect(await producer.interrupt()).toEqual({ code: 130, signal: null });
    expect(producer.stderr).toMatch(new RegExp(`^interrupted before the end of the input: produced 100 records to [12] partitions? of "${topic}" in `));
    expect((await runCli(strata('consume', topic))).stdout.split('\n').slice(0, -1)).toHaveLength(100);
  });
});

describe('consume when its topic goes away', () => {
  it('exits 1 with the broker\'s reason instead of retrying for ever (--follow)', async () => {
    const topic = await createTopic(1);
    await runCli(strata('produce', topic, 'before'));
    const reader = startCli(strata('consume', topic, '--follow'));
    running.push(reader);
    await reader.waitForLine((line) => line === 'before');
    await shared.admin.deleteTopic(topic);
    const { code } = await reader.exited;
    expect(code).toBe(1);
    expect(reader.stderr).toMatch(new RegExp(`^strata: topic "${topic}" (was deleted|not found)`));
  });
});

describe('tail', () => {
  it('prints the last N records by timestamp, then a record produced after it started', async () => {
    const topic = await createTopic(2);
    const producer = new Producer({ server: shared.broker.address, lingerMs: 0 });
    try {
      const base = Date.now() - 60_000;
      await Promise.all([
        producer.send({ topic, partition: 0, value: 'a', timestamp: base + 1000 }),
        producer.send({ topic, partition: 0, value: 'c', timestamp: base + 3000 }),
        producer.send({ topic, partition: 1, value: 'b', timestamp: base + 2000 }),
        producer.send({ topic, partition: 1, value: 'd', timestamp: base + 4000 }),
      ]);
      const tail = startCli(strata('tail', topic, '-n', '3'));
      running.push(tail);
      await tail.waitForLineCount(3);
      expect(tail.lines).toEqual(['b', 'c', 'd']);

      await producer.send({ topic, partition: 1, value: 'new record' });
      await tail.waitForLine((line) => line === 'new record', 10_000);
      expect(tail.lines).toEqual(['b', 'c', 'd', 'new record']);

      expect(await tail.interrupt()).toEqual({ code: 0, signal: null });
      expect(tail.stderr).toBe('');
    } finally {
      await producer.close();
    }
  });
});

describe('tail of a topic that grows', () => {
  it('follows a partition added while it runs, from its first record', async () => {
    const topic = await createTopic(1);
    const producer = new Producer({ server: shared.broker.address, lingerMs: 0 });
    try {
      await producer.send({ topic, partition: 0, value: 'old' });
      const tail = startCli(strata('tail', topic, '-n', '1'));
      running.push(tail);
      await tail.waitForLine((line) => line === 'old', 10_000);
      await shared.admin.addPartitions(topic, 2);
      // Produced before the tail's next look at the topic: printed all the same.
      await producer.send({ topic, partition: 1, value: 'first in the new partition' });
      await producer.send({ topic, partition: 1, value: 'second in the new partition' });
      await tail.waitForLine((line) => line === 'second in the new partition', 20_000);
      await producer.send({ topic, partition: 0, value: 'new in the old partition' });
      await tail.waitForLine((line) => line === 'new in the old partition', 10_000);
      expect(tail.lines).toEqual(['old', 'first in the new partition', 'second in the new partition', 'new in the old partition']);
      expect(await tail.interrupt()).toEqual({ code: 0, signal: null });
      expect(tail.stderr).toBe('');
    } finally {
      await producer.close();
    }
  });
});

describe('tail over many partitions', () => {
  it('prints the newest N by timestamp when the partitions together hold many more (the history is cut back as it comes), with an empty partition, then follows', async () => {
    const topic = await createTopic(5);
    const producer = new Producer({ server: shared.broker.address, lingerMs: 0 });
    try {
      // Partitions 0-3 hold 10 records each, their timestamps interleaved; partition 4 is empty.
      const base = Date.now() - 600_000;
      const sends: Promise<unknown>[] = [];
      for (let index = 0; index < 40; index++) {
        sends.push(producer.send({ topic, partition: index % 4, value: `r${index}`, timestamp: base + index * 1000 }));
      }
      await Promise.all(sends);
      const tail = startCli(strata('tail', topic, '-n', '3'));
      running.push(tail);
      await tail.waitForLineCount(3);
      expect(tail.lines).toEqual(['r37', 'r38', 'r39']);
      await producer.send({ topic, partition: 4, value: 'new record' });
      await tail.waitForLine((line) => line === 'new record', 10_000);
      expect(tail.lines).toEqual(['r37', 'r38', 'r39', 'new record']);
      expect(await tail.interrupt()).toEqual({ code: 0, signal: null });
      expect(tail.stderr).toBe('');
    } finally {
      await producer.close();
    }
  });
});

describe('consume --group', () => {
  it('shares the partitions between two members, and commits what they printed', async () => {
    const topic = await createTopic(4);
    const group = `cli-group-${topicCounter}`;
    const members = [0, 1].map(() => startCli(strata('consume', topic, '--group', group, '--follow', '--format', 'json')));
    running.push(...members);
    await waitUntil(async () => {
      try {
        const description = await shared.admin.describeGroup(group);
        return description.state === 'stable' && description.members.length === 2 && description.members.every((member) => member.assignment.length > 0);
      } catch {
        return false;
      }
    }, 'both members to own partitions');

    const producer = new Producer({ server: shared.broker.address });
    try {
      await Promise.all(Array.from({ length: 200 }, (_, index) => producer.send({ topic, key: `key-${index}`, value: `value-${index}` })));
    } finally {
      await producer.close();
    }
    await waitUntil(async () => members[0]!.lines.length + members[1]!.lines.length >= 200, 'all 200 records', 20_000);
    const outputs = members.map((member) => member.lines.map((line) => JSON.parse(line) as JsonRecord));
    const partitionsOf = outputs.map((records) => new Set(records.map((record) => record.partition)));
    expect(partitionsOf[0]!.size).toBeGreaterThan(0);
    expect(partitionsOf[1]!.size).toBeGreaterThan(0);
    expect([...partitionsOf[0]!].filter((partition) => partitionsOf[1]!.has(partition))).toEqual([]);
    const values = outputs.flat().map((record) => record.value as string);
    expect(values.sort()).toEqual(Array.from({ length: 200 }, (_, index) => `value-${index}`).sort());

    // Ctrl-C: each member commits and leaves the group.
    for (const member of members) expect(await member.interrupt()).toEqual({ code: 0, signal: null });
    const description = await shared.admin.describeGroup(group);
    expect(description.members).toEqual([]);
    expect(description.totalLag).toBe(0);
    expect(description.partitions.map((entry) => entry.committedOffset)).toEqual(description.partitions.map((entry) => entry.logEndOffset));
  });

  it('says on stderr when a member has no partition a while after joining, rather than waiting without a word', async () => {
    const topic = await createTopic(1);
    const group = `cli-idle-${topicCounter}`;
    const owner = startCli(strata('consume', topic, '--group', group, '--follow'));
    running.push(owner);
    await waitUntil(async () => {
      try {
        return (await shared.admin.describeGroup(group)).members.some((member) => member.assignment.length > 0);
      } catch {
        return false;
      }
    }, 'the first member to own the partition');
    const idle = startCli(strata('consume', topic, '--group', group, '--follow'));
    running.push(idle);
    await waitUntil(() => idle.stderr !== '', 'the idle member to say it has no partition', 20_000);
    expect(idle.stderr).toBe(`strata: this member of group "${group}" has no partition of ${topic} yet (other members own them all, or are still giving them up); waiting for one\n`);
    expect(owner.stderr).toBe('');
    for (const member of [idle, owner]) expect(await member.interrupt()).toEqual({ code: 0, signal: null });
  });
});
