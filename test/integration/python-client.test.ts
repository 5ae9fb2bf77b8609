// Goal: show that a client in another language, built only from proto/ (Python, grpcio and
// protobuf with code generated at run time by Debian's protoc), can create a topic, produce keyed
// records through the plain `records` path and fetch them back intact, that the broker places
// them where Kafka's murmur2 says, and that it can consume them as a consumer-group member (join
// with its own member id, heartbeat until it owns every partition, fetch from the committed or
// earliest offsets, commit with its member epoch, leave); method: an in-process broker
// (startTestBroker), the example script examples/python/strata_example.py run with
// /usr/bin/python3 against it, its JSON summary and exit code, and a cross-check of the same topic
// and group with the TypeScript wire client (Fetch, ListOffsets, FetchOffsets, DescribeGroup).
// Prerequisites are installed by .ci/run, never by this test: in CI a missing one fails the test
// with the install command; elsewhere the suite is skipped with a warning.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Long from 'long';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionForKey } from '../../src/broker/partitioner.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import type { strata } from '../../src/generated/strata.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { notRunnable, prerequisites } from '../helpers/prerequisites.js';
import { type TestBroker, startTestBroker, unusedPort } from '../helpers/test-server.js';

const PYTHON = '/usr/bin/python3';
const GRPC_PYTHON_PLUGIN = '/usr/bin/grpc_python_plugin';
const SCRIPT = join(PACKAGE_ROOT, 'examples', 'python', 'strata_example.py');
const INSTALL =
  'apt-get update && apt-get install -y --no-install-recommends python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc';

const PREREQUISITES = prerequisites(
  'python-client.test.ts',
  'Python client prerequisites',
  [
    notRunnable(PYTHON, ['-c', 'import grpc, google.protobuf'], `\`${PYTHON} -c "import grpc, google.protobuf"\``),
    notRunnable('protoc', ['--version']),
    existsSync(GRPC_PYTHON_PLUGIN) ? null : `${GRPC_PYTHON_PLUGIN} is missing`,
  ],
  INSTALL,
);

interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The JSON summary: the last line of stdout. */
  summary: Record<string, unknown>;
}

function runScript(args: string[], timeoutMs = 60_000): Promise<ScriptRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [SCRIPT, ...args], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').pop() ?? '';
      let summary: Record<string, unknown>;
      try {
        summary = JSON.parse(last) as Record<string, unknown>;
      } catch {
        summary = { unparsable: last };
      }
      resolve({ code, stdout, stderr, summary });
    });
  });
}

/** The `group` part of the script's summary. */
interface GroupSummary {
  id: string;
  member_id: string;
  joins: number;
  heartbeats: number;
  heartbeat_interval_ms: number;
  assigned: number[];
  committed_before: Record<string, number>;
  start_offsets: Record<string, number>;
  consumed: number;
  consumed_offsets: Record<string, number[]>;
  commit_epoch: number | null;
  committed: Record<string, number>;
  left_epoch: number;
}

// Short, so the script's wait for a stable assignment (at least one interval) stays short.
const HEARTBEAT_INTERVAL_MS = 200;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const show = (run: ScriptRun) => `exit ${run.code}; stdout: ${run.stdout.trim()}; stderr: ${run.stderr.trim()}`;

describe.skipIf(PREREQUISITES.skip)('Python client (grpcio, code generated from proto/)', () => {
  let broker: TestBroker;
  let client: TestClient;

  beforeAll(async () => {
    broker = await startTestBroker({ groupHeartbeatIntervalMs: HEARTBEAT_INTERVAL_MS });
    client = new TestClient(broker.address);
  });

  afterAll(async () => {
    client?.close();
    await broker?.dispose();
  });

  it('has its prerequisites: /usr/bin/python3 with grpc and protobuf, protoc, grpc_python_plugin', () => {
    PREREQUISITES.require();
  });

  it('creates a topic, produces keyed records, fetches them back intact (strata_example.py)', async () => {
    PREREQUISITES.require();
    const run = await runScript([broker.address, '--topic', 'py-roundtrip', '--partitions', '3', '--count', '120', '--batch', '40']);
    expect(run.code, show(run)).toBe(0);
    expect(run.summary, show(run)).toMatchObject({ ok: true, topic: 'py-roundtrip', partitions: 3, requests: 3, produced: 120, fetched: 120, tombstones: 12, mismatches: [], group: { consumed: 120 } });

    // The same topic as the TypeScript client sees it: every record on its key's partition,
    // offsets contiguous from 0, the Python-built fields intact.
    const values = new Set<number>();
    let total = 0;
    for (let partition = 0; partition < 3; partition++) {
      const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'py-roundtrip', partition, offset: Long.fromNumber(0) }));
      fetched.records.forEach((record, index) => {
        const where = `partition ${partition} offset ${index}`;
        expect(Long.fromValue(record.offset).toNumber(), where).toBe(index);
        expect(partitionForKey(record.key!, 3), `${where}: the partition of key ${Buffer.from(record.key!).toString()}`).toBe(partition);
        expect(record.headers[0], where).toMatchObject({ key: 'source' });
        expect(Buffer.from(record.headers[0]!.value!).toString(), where).toBe('strata_example.py');
        if (record.value !== null && record.value !== undefined) {
          const body = JSON.parse(Buffer.from(record.value).toString()) as { n: number; text: string };
          expect(body.text, where).toBe(`record ${body.n} from Python`);
          expect(Buffer.from(record.key!).toString(), where).toBe(`customer-${body.n % 7}`);
          values.add(body.n);
        }
        total++;
      });
      expect(Number((run.summary.per_partition as Record<string, number>)[String(partition)]), `records on partition ${partition}`).toBe(fetched.records.length);
    }
    expect(total).toBe(120);
    expect(values.size, 'distinct non-tombstone records').toBe(108);
  });

  it('consumes the topic as the only member of a consumer group, commits every partition to its end and leaves (strata_example.py)', async () => {
    PREREQUISITES.require();
    const run = await runScript([broker.address, '--topic', 'py-group', '--group', 'py-group-1', '--partitions', '3', '--count', '90', '--batch', '30']);
    expect(run.code, show(run)).toBe(0);
    expect(run.summary, show(run)).toMatchObject({ ok: true, produced: 90, fetched: 90, mismatches: [] });
    const group = run.summary.group as GroupSummary;
    // One join with an id the client made (a UUID), the whole topic assigned, the interval the
    // broker asks for, a new group starting at the earliest offsets, a leave answered with -1.
    expect(group, show(run)).toMatchObject({
      id: 'py-group-1',
      joins: 1,
      heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
      assigned: [0, 1, 2],
      committed_before: {},
      start_offsets: { '0': 0, '1': 0, '2': 0 },
      consumed: 90,
      left_epoch: -1,
    });
    expect(group.member_id, show(run)).toMatch(UUID);
    expect(group.heartbeats, 'join, at least one heartbeat reporting the partitions owned, leave').toBeGreaterThanOrEqual(3);
    expect(group.commit_epoch, show(run)).toBeGreaterThanOrEqual(1);

    // Exactly once: per partition, the offsets consumed through the group are those of the log,
    // each once, in order; the offset committed is the log end.
    const committed = await client.call<strata.v1.FetchOffsetsResponse>('groups.fetchOffsets', v1.FetchOffsetsRequest.create({ groupId: 'py-group-1', topics: ['py-group'] }));
    const committedByPartition = new Map(committed.offsets.map((entry) => [entry.partition, Long.fromValue(entry.offset).toNumber()]));
    expect(committed.offsets.every((entry) => entry.topic === 'py-group'), JSON.stringify(committed.offsets)).toBe(true);
    const logEnds: number[] = [];
    for (let partition = 0; partition < 3; partition++) {
      const end = await client.call<strata.v1.ListOffsetsResponse>('log.listOffsets', v1.ListOffsetsRequest.create({ topic: 'py-group', partition, position: { latest: true } }));
      const logEnd = Long.fromValue(end.offset).toNumber();
      logEnds.push(logEnd);
      expect(group.consumed_offsets[String(partition)], `offsets of partition ${partition} consumed through the group`).toEqual(Array.from({ length: logEnd }, (_, offset) => offset));
      expect(group.committed[String(partition)], `offset the script committed for partition ${partition}`).toBe(logEnd);
      expect(committedByPartition.get(partition), `committed offset of partition ${partition} (FetchOffsets)`).toBe(logEnd);
    }
    expect(logEnds.reduce((sum, end) => sum + end, 0), 'records on the topic').toBe(90);
    expect(committed.offsets, JSON.stringify(committed.offsets)).toHaveLength(3);

    // After the leave the group has no members and no lag.
    const described = await client.call<strata.v1.DescribeGroupResponse>('groups.describeGroup', v1.DescribeGroupRequest.create({ groupId: 'py-group-1' }));
    expect(described.members, JSON.stringify(described.members)).toEqual([]);
    expect(described.state).toBe('empty');
    const lags = described.partitions
      .filter((entry) => entry.topic === 'py-group')
      .map((entry) => ({ partition: entry.partition, committed: Long.fromValue(entry.committedOffset).toNumber(), logEnd: Long.fromValue(entry.logEndOffset).toNumber(), lag: Long.fromValue(entry.lag).toNumber() }))
      .sort((a, b) => a.partition - b.partition);
    expect(lags).toEqual(logEnds.map((logEnd, partition) => ({ partition, committed: logEnd, logEnd, lag: 0 })));
  });

  it('exits non-zero with a JSON error when the topic already exists', async () => {
    PREREQUISITES.require();
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'py-taken', partitions: 1 }));
    const run = await runScript([broker.address, '--topic', 'py-taken', '--count', '5']);
    expect(run.code, show(run)).toBe(2);
    expect(run.summary.ok, show(run)).toBe(false);
    expect(String(run.summary.error), show(run)).toContain('ALREADY_EXISTS');
  });

  it('exits non-zero with a JSON error when no broker listens at the address', async () => {
    PREREQUISITES.require();
    const run = await runScript([`127.0.0.1:${await unusedPort()}`, '--timeout', '1']);
    expect(run.code, show(run)).toBe(2);
    expect(run.summary.ok, show(run)).toBe(false);
    expect(String(run.summary.error), show(run)).toContain('could not connect');
  });
});
