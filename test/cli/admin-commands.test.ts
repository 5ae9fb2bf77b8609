// Goal: `strata topics ...` and `strata groups ...` print what the broker holds (aligned tables,
// offsets, sizes, configs, committed offsets and lag) and change it as asked; method: the
// compiled CLI run as child processes against a real in-process broker, outputs parsed by
// column and checked against the Admin client.
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';

const shared = useBrokerWithAdmin({ groupHeartbeatIntervalMs: 500 });

/** Runs the CLI against the test broker and expects success; returns stdout. */
async function strata(...args: string[]): Promise<string> {
  const result = await runCli([...args, '--server', shared.broker.address]);
  expect(result.stderr).toMatch(args[0] === 'produce' ? /^produced .*\n$/ : /^$/);
  expect(result.code).toBe(0);
  return result.stdout;
}

/** The rows of the table whose header starts with `firstHeader`, split on runs of 2+ spaces. */
function table(stdout: string, firstHeader: string): Record<string, string>[] {
  const lines = stdout.split('\n');
  const start = lines.findIndex((line) => line.startsWith(firstHeader));
  expect(start, `a table starting with ${firstHeader} in:\n${stdout}`).toBeGreaterThanOrEqual(0);
  const headerLine = lines[start]!;
  const headers = headerLine.split(/ {2,}/);
  const rows: Record<string, string>[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break;
    const cells = line.trim().split(/ {2,}/);
    rows.push(Object.fromEntries(headers.map((header, index) => [header, cells[index] ?? ''])));
  }
  // Aligned: every row is as wide as the header up to its last column.
  return rows;
}

function field(stdout: string, label: string): string {
  const line = stdout.split('\n').find((candidate) => candidate.startsWith(`${label} `));
  expect(line, `a "${label}" line in:\n${stdout}`).toBeDefined();
  return line!.slice(label.length).trim();
}

describe('strata topics', () => {
  it('creates, lists, describes, alters and deletes a topic', async () => {
    expect(await strata('topics', 'create', 'admin-orders', '--partitions', '3', '--config', 'retention.ms=86400000')).toBe('created topic "admin-orders" with 3 partitions\n');
    expect(await strata('topics', 'create', 'admin-audit')).toBe('created topic "admin-audit" with 1 partition\n');
    // A --config before the name takes one value: the name after it is the name.
    expect(await strata('topics', 'create', '--config', 'retention.ms=1000', 'admin-short')).toBe('created topic "admin-short" with 1 partition\n');

    const list = await strata('topics', 'list');
    expect(table(list, 'TOPIC')).toEqual(expect.arrayContaining([
      { TOPIC: 'admin-audit', PARTITIONS: '1' },
      { TOPIC: 'admin-orders', PARTITIONS: '3' },
    ]));
    // Columns line up: each PARTITIONS cell ends where the header does.
    const listLines = list.split('\n').filter((line) => line !== '');
    const end = listLines[0]!.length;
    for (const line of listLines) expect(line.length).toBe(end);

    await strata('produce', 'admin-orders', '--partition', '2', 'one', 'two', 'three');
    const described = await strata('topics', 'describe', 'admin-orders');
    expect(field(described, 'topic')).toBe('admin-orders');
    expect(field(described, 'partitions')).toBe('3');
    expect(field(described, 'records')).toBe('3');
    expect(table(described, 'CONFIG').find((row) => row.CONFIG === 'retention.ms')).toEqual({ CONFIG: 'retention.ms', VALUE: '86400000', SOURCE: 'topic' });
    expect(table(described, 'CONFIG').find((row) => row.CONFIG === 'segment.ms')).toMatchObject({ SOURCE: 'broker default' });
    const partitions = table(described, 'PARTITION');
    expect(partitions.map((row) => row.PARTITION)).toEqual(['0', '1', '2']);
    expect(partitions[2]).toMatchObject({ 'START OFFSET': '0', 'HIGH WATERMARK': '3', 'END OFFSET': '3', RECORDS: '3', SEGMENTS: '1', STATUS: 'ok' });
    expect(partitions[2]!.SIZE).toMatch(/^\d+ B$/);
    expect(partitions[0]).toMatchObject({ 'HIGH WATERMARK': '0', SIZE: '0 B' });
    const size = (await shared.admin.describeTopic('admin-orders')).partitions[2]!.sizeBytes;
    expect(partitions[2]!.SIZE).toBe(`${size} B`);

    expect(await strata('topics', 'alter', 'admin-orders', '--config', 'retention.ms=3600000', '--config', 'segment.ms=600000')).toBe(
      'altered topic "admin-orders": retention.ms=3600000, segment.ms=600000\n',
    );
    // flush.ms alone selects interval flushing, which the confirmation says.
    expect(await strata('topics', 'alter', 'admin-orders', '--config', 'flush.ms=5000')).toBe(
      'altered topic "admin-orders": flush.ms=5000; flush is now interval (acks=all answers before the fdatasync, which comes every flush.ms)\n',
    );
    expect(await strata('topics', 'alter', 'admin-orders', '--reset', 'flush.ms')).toMatch(/^altered topic "admin-orders": flush\.ms=\d+ \(broker default\); flush is now always\n$/);
    const altered = table(await strata('topics', 'describe', 'admin-orders'), 'CONFIG');
    expect(altered.find((row) => row.CONFIG === 'retention.ms')?.VALUE).toBe('3600000');
    expect(altered.find((row) => row.CONFIG === 'segment.ms')?.VALUE).toBe('600000');

    // Reset: the broker's default again, and no longer the topic's own.
    const defaultRetention = (await shared.admin.describeTopic('admin-audit')).configs['retention.ms']!;
    expect(await strata('topics', 'alter', 'admin-orders', '--reset', 'retention.ms')).toBe(`altered topic "admin-orders": retention.ms=${defaultRetention} (broker default)\n`);
    const reset = table(await strata('topics', 'describe', 'admin-orders'), 'CONFIG');
    expect(reset.find((row) => row.CONFIG === 'retention.ms')).toEqual({ CONFIG: 'retention.ms', VALUE: defaultRetention, SOURCE: 'broker default' });
    expect(reset.find((row) => row.CONFIG === 'segment.ms')).toEqual({ CONFIG: 'segment.ms', VALUE: '600000', SOURCE: 'topic' });

    // More partitions: the old ones keep their records, the new ones start empty.
    expect(await strata('topics', 'alter', 'admin-orders', '--partitions', '5')).toBe('topic "admin-orders" now has 5 partitions; records with a key may go to another partition than before\n');
    const grown = table(await strata('topics', 'describe', 'admin-orders'), 'PARTITION');
    expect(grown.map((row) => [row.PARTITION, row.RECORDS])).toEqual([['0', '0'], ['1', '0'], ['2', '3'], ['3', '0'], ['4', '0']]);

    expect(await strata('topics', 'delete', 'admin-audit')).toBe('deleted topic "admin-audit"\n');
    expect(table(await strata('topics', 'list'), 'TOPIC').map((row) => row.TOPIC)).not.toContain('admin-audit');
  });
});

describe('strata groups', () => {
  it('describes a group whose lag falls to 0 as it consumes, then resets and deletes it', async () => {
    await shared.admin.createTopic('admin-lag', { partitions: 2 });
    await strata('produce', 'admin-lag', ...Array.from({ length: 50 }, (_, index) => `record ${index}`));
    const group = 'admin-billing';

    // 20 records consumed and committed: 30 left, and they have an age.
    expect((await strata('consume', 'admin-lag', '--group', group, '--count', '20')).split('\n').slice(0, -1)).toHaveLength(20);
    const partial = await strata('groups', 'describe', group);
    expect(field(partial, 'group')).toBe(group);
    expect(field(partial, 'state')).toBe('empty');
    expect(field(partial, 'members')).toBe('0');
    expect(field(partial, 'total lag')).toBe('30');
    const partialRows = table(partial, 'TOPIC');
    expect(partialRows).toHaveLength(2);
    expect(partialRows.reduce((sum, row) => sum + Number(row.LAG), 0)).toBe(30);
    const lagging = partialRows.filter((row) => row.LAG !== '0');
    expect(lagging.length).toBeGreaterThan(0);
    for (const row of lagging) expect(row['LAG TIME']).toMatch(/^\d+(ms|\.\ds)$|^\d+m\d\ds$/);

    expect(table(await strata('groups', 'list'), 'GROUP')).toContainEqual({ GROUP: group, STATE: 'empty', MEMBERS: '0' });

    // The rest, to the end: lag 0 everywhere, committed = end offset.
    expect((await strata('consume', 'admin-lag', '--group', group)).split('\n').slice(0, -1)).toHaveLength(30);
    const caughtUp = await strata('groups', 'describe', group);
    expect(field(caughtUp, 'total lag')).toBe('0');
    for (const row of table(caughtUp, 'TOPIC')) {
      expect(row).toMatchObject({ TOPIC: 'admin-lag', LAG: '0', 'LAG TIME': '-', MEMBER: '-' });
      expect(row.COMMITTED).toBe(row['END OFFSET']);
    }

    // A dry run says where the offsets would go and moves nothing.
    const preview = await runCli(['groups', 'reset-offsets', group, '--topic', 'admin-lag', '--to', 'earliest', '--dry-run', '--server', shared.broker.address]);
    expect({ code: preview.code, stderr: preview.stderr }).toEqual({ code: 0, stderr: 'strata: dry run: nothing was changed\n' });
    expect(table(preview.stdout, 'TOPIC')).toEqual([
      { TOPIC: 'admin-lag', PARTITION: '0', 'WOULD BE': '0' },
      { TOPIC: 'admin-lag', PARTITION: '1', 'WOULD BE': '0' },
    ]);
    expect(field(await strata('groups', 'describe', group), 'total lag')).toBe('0');

    // Back to the start: the lag is all 50 again.
    const reset = table(await strata('groups', 'reset-offsets', group, '--topic', 'admin-lag', '--to', 'earliest', '--partition', '0', '--partition', '1'), 'TOPIC');
    expect(reset).toEqual([
      { TOPIC: 'admin-lag', PARTITION: '0', 'NEW OFFSET': '0' },
      { TOPIC: 'admin-lag', PARTITION: '1', 'NEW OFFSET': '0' },
    ]);
    expect(field(await strata('groups', 'describe', group), 'total lag')).toBe('50');
    const toTime = table(await strata('groups', 'reset-offsets', group, '--topic', 'admin-lag', '--to', new Date(Date.now() + 3_600_000).toISOString(), '--partition', '1'), 'TOPIC');
    expect(toTime).toEqual([{ TOPIC: 'admin-lag', PARTITION: '1', 'NEW OFFSET': String((await shared.admin.describeTopic('admin-lag')).partitions[1]!.highWatermark) }]);

    // --topic naming a topic the group has no offsets for deletes nothing.
    const committedBefore = table(await strata('groups', 'describe', group), 'TOPIC').map((row) => row.COMMITTED);
    const refused = await runCli(['groups', 'delete', group, '--topic', 'admin-other', '--server', shared.broker.address]);
    expect({ code: refused.code, stdout: refused.stdout }).toEqual({ code: 1, stdout: '' });
    expect(refused.stderr).toMatch(/^strata: .*"admin-other".*\n$/);
    expect(table(await strata('groups', 'describe', group), 'TOPIC').map((row) => row.COMMITTED)).toEqual(committedBefore);
    expect(await strata('groups', 'delete', group)).toBe(`deleted group "${group}"\n`);
    expect(table(await strata('groups', 'list'), 'GROUP').map((row) => row.GROUP)).not.toContain(group);
  });

  it("groups delete --topic deletes only the group's committed offsets of those topics", async () => {
    await shared.admin.createTopic('admin-offsets-a', { partitions: 2 });
    await shared.admin.createTopic('admin-offsets-b', { partitions: 1 });
    const group = 'admin-offsets';
    // A group id nothing knows yet is made with the offsets, said on stderr (a misspelt id would be too).
    const made = await runCli(['groups', 'reset-offsets', group, '--topic', 'admin-offsets-a', '--to', 'earliest', '--server', shared.broker.address]);
    expect({ code: made.code, stderr: made.stderr }).toEqual({ code: 0, stderr: `strata: group "${group}" had no members and no committed offsets: it was made with these (check the name)\n` });
    await strata('groups', 'reset-offsets', group, '--topic', 'admin-offsets-b', '--to', 'earliest');
    expect(await strata('groups', 'delete', group, '--topic', 'admin-offsets-a')).toBe(`deleted the committed offsets of group "${group}" for "admin-offsets-a"\n`);
    const committed = (await shared.admin.describeGroup(group)).partitions.filter((entry) => entry.committedOffset >= 0);
    expect(committed.map((entry) => `${entry.topic}-${entry.partition}`)).toEqual(['admin-offsets-b-0']);
  });
});
