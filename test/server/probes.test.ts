// Goal: operators can scrape metrics and probe liveness and readiness over HTTP, see a fenced
// partition to alert on, and the counters mean what their help says (never going down, the same on every path); method: a real
// broker with its probe server on an ephemeral port, real gRPC traffic, plain HTTP requests.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { type ServiceError, status } from '@grpc/grpc-js';
import Long from 'long';
import { pino } from 'pino';
import { Gauge } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseListenAddress } from '../../src/common/listen-address.js';
import { PACKAGE_ROOT, packageVersion } from '../../src/common/package-root.js';
import { rootLogger } from '../../src/common/logger.js';
import type { strata } from '../../src/generated/strata.js';
import { BrokerMetrics } from '../../src/server/metrics.js';
import { startProbeServer } from '../../src/server/probe-server.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { useSharedBroker } from '../helpers/shared-broker.js';
import { acrossRestart } from '../helpers/restart.js';
import { waitUntil } from '../helpers/wait.js';
import { removeDirectory, startTestBroker, temporaryDirectory, testSettings, unusedPort } from '../helpers/test-server.js';
import { Broker } from '../../src/broker/broker.js';
import { Admin } from '../../src/client/admin.js';
import { runBroker } from '../../src/server/run-broker.js';
import { StrataGrpcServer } from '../../src/server/grpc-server.js';
import { GroupCoordinator } from '../../src/groups/group-coordinator.js';
import { TestFileSystem } from '../helpers/test-file-system.js';

async function get(address: string, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://${address}${path}`);
  return { status: response.status, body: await response.text() };
}

/** The value of `name{labels...}` in a scrape; null when the series is not there. */
function optionalMetricValue(text: string, name: string, labels: string): number | null {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(labels));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(labels));
  if (line === undefined) throw new Error(`no ${name} with ${labels} in:\n${text.split('\n').filter((l) => l.startsWith(name)).join('\n')}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe("README's table of metrics", () => {
  it('lists every strata_ series the broker exports, with its type and labels, and no other', async () => {
    const readme = readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8');
    const documented = [...readme.matchAll(/^ *\| `(strata_[a-z_]+)` \| ([a-z]+) \| ([^|]+) \|/gm)].map(([, name, type, labels]) => ({
      name,
      type,
      labels: labels!.trim() === '–' ? [] : labels!.split(',').map((label) => label.trim().replaceAll('`', '')),
    }));
    const registry = new BrokerMetrics().registry;
    const exported = (await registry.getMetricsAsJSON())
      .filter((metric) => metric.name.startsWith('strata_'))
      .map((metric) => ({ name: metric.name, type: String(metric.type), labels: (registry.getSingleMetric(metric.name) as unknown as { labelNames: string[] }).labelNames }));
    expect(documented).toEqual(exported);
  });
});

describe('probe server of a running broker', () => {
  const shared = useSharedBroker();

  it('answers /healthz and /readyz with 200 once the broker is serving', async () => {
    expect(await get(shared.broker.metricsAddress!, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await get(shared.broker.metricsAddress!, '/readyz')).toEqual({ status: 200, body: 'ready\n' });
    expect((await get(shared.broker.metricsAddress!, '/nope')).status).toBe(404);
  });

  it('exposes request, traffic, partition, fsync and process metrics in Prometheus format', async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'metered', partitions: 2 }));
    const batch = buildBatch([{ value: Buffer.from('one') }, { value: Buffer.from('two') }]);
    const size = batch.length;
    await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'metered', partition: 1, batch }));
    await shared.client.call('log.fetch', v1.FetchRequest.create({ topic: 'metered', partition: 1, raw: true }));
    await expect(shared.client.call('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'missing' }))).rejects.toThrow();
    const { status, body } = await get(shared.broker.metricsAddress!, '/metrics');
    expect(status).toBe(200);
    expect(metricValue(body, 'strata_requests_total', 'method="Produce",code="OK"')).toBe(1);
    // A broker without TLS has no certificate to say the end of.
    expect(body).not.toMatch(/^strata_tls_certificate_expiry_timestamp_seconds\{/m);
    expect(metricValue(body, 'strata_requests_total', 'method="DescribeTopic",code="NOT_FOUND"')).toBe(1);
    expect(metricValue(body, 'strata_request_errors_total', 'method="DescribeTopic",error="NOT_FOUND"')).toBe(1);
    expect(metricValue(body, 'strata_records_in_total', 'topic="metered"')).toBe(2);
    expect(metricValue(body, 'strata_bytes_in_total', 'topic="metered"')).toBe(size);
    expect(metricValue(body, 'strata_records_out_total', 'topic="metered"')).toBe(2);
    // A read from inside a batch serves the records from its offset on, though the whole batch goes out.
    await shared.client.call('log.fetch', v1.FetchRequest.create({ topic: 'metered', partition: 1, offset: Long.fromNumber(1), raw: true }));
    await shared.client.call('log.fetch', v1.FetchRequest.create({ topic: 'metered', partition: 1, offset: Long.fromNumber(1) }));
    const afterReads = (await get(shared.broker.metricsAddress!, '/metrics')).body;
    expect(metricValue(afterReads, 'strata_records_out_total', 'topic="metered"')).toBe(4);
    expect(metricValue(afterReads, 'strata_bytes_out_total', 'topic="metered"')).toBe(3 * size);
    expect(metricValue(body, 'strata_partition_log_end_offset', 'topic="metered",partition="1"')).toBe(2);
    expect(metricValue(body, 'strata_partition_high_watermark', 'topic="metered",partition="1"')).toBe(2);
    expect(metricValue(body, 'strata_partition_segments', 'topic="metered",partition="0"')).toBe(1);
    // Under flush=always a small group is written directly. This was the segment's first write,
    // so it ran on the pool, which opens the direct descriptor; later ones run on the loop.
    expect(metricValue(body, 'strata_partition_written_bytes_total', 'topic="metered",partition="1",mode="direct"')).toBe(size);
    expect(metricValue(body, 'strata_partition_written_bytes_total', 'topic="metered",partition="1",mode="buffered"')).toBe(0);
    expect(metricValue(body, 'strata_log_io_calls_total', 'operation="write",thread="thread_pool"')).toBe(1);
    expect(metricValue(body, 'strata_log_io_calls_total', 'operation="write",thread="event_loop"')).toBe(0);
    expect(body).toMatch(/^strata_fsync_duration_seconds_count [1-9]/m);
    // The produce's fdatasync was small and alone: made on the event loop, and timed.
    expect(metricValue(body, 'strata_log_io_calls_total', 'operation="fdatasync",thread="event_loop"')).toBe(1);
    expect(metricValue(body, 'strata_log_io_calls_total', 'operation="fdatasync",thread="thread_pool"')).toBe(0);
    expect(body).toMatch(/^strata_fsync_duration_seconds_count 1$/m);
    // Its one write, made on the pool, was timed too.
    expect(body).toMatch(/^strata_log_write_duration_seconds_count 1$/m);
    // The fetch read the batch the produce had just written: from the tail cache, not the file.
    expect(body).toMatch(new RegExp(`^strata_tail_cache_bytes ${size}$`, 'm'));
    expect(metricValue(body, 'strata_tail_cache_reads_total', 'result="hit"')).toBe(1);
    expect(metricValue(body, 'strata_tail_cache_reads_total', 'result="miss"')).toBe(0);
    // No segment was sealed, so no index was loaded into the index cache.
    expect(body).toMatch(/^strata_index_cache_bytes 0$/m);
    expect(body).toMatch(/^strata_index_cache_loads_total 0$/m);
    expect(body).toMatch(/^strata_index_cache_unloads_total 0$/m);
    expect(body).toMatch(/^strata_request_duration_seconds_bucket\{le="[^"]+",method="Produce"\}/m);
    expect(body).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(body).toMatch(/^process_resident_memory_bytes /m);
    expect(body).toMatch(/^strata_ready 1$/m);
    const escaped = (text: string): string => text.replaceAll('.', '\\.');
    expect(body).toMatch(new RegExp(`^strata_build_info\\{version="${escaped(packageVersion())}",node="${escaped(process.versions.node)}"\\} 1$`, 'm'));
    // The data directory's file system: what is left of it, and its size.
    const free = Number(/^strata_data_dir_free_bytes (\S+)$/m.exec(body)?.[1]);
    const capacity = Number(/^strata_data_dir_capacity_bytes (\S+)$/m.exec(body)?.[1]);
    expect(capacity).toBeGreaterThan(0);
    expect(free).toBeGreaterThan(0);
    expect(free).toBeLessThanOrEqual(capacity);

    // The partition's next small write runs on the event loop (writevSync): timed as well.
    await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'metered', partition: 1, batch: buildBatch([{ value: Buffer.from('three') }]) }));
    const after = (await get(shared.broker.metricsAddress!, '/metrics')).body;
    expect(metricValue(after, 'strata_log_io_calls_total', 'operation="write",thread="event_loop"')).toBe(1);
    expect(after).toMatch(/^strata_log_write_duration_seconds_count 2$/m);
  });
});

describe('the index cache', () => {
  const shared = useSharedBroker();

  it("counts the indexes of the segments a topic's rolls sealed", async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'indexed', partitions: 1, configs: { 'segment.bytes': '1024' } }));
    for (let batch = 0; batch < 4; batch++) {
      await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'indexed', partition: 0, batch: buildBatch([{ value: Buffer.alloc(600, batch) }]) }));
    }
    const { body } = await get(shared.broker.metricsAddress!, '/metrics');
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1]);
    // Three rolls sealed three segments, each with a closing time-index entry (12 bytes) at least.
    expect(value('strata_index_cache_bytes')).toBeGreaterThanOrEqual(3 * 12);
    expect(value('strata_index_cache_unloads_total')).toBe(0);
  });
});

describe('a metric that cannot be read', () => {
  it('is counted and its series left out (one without labels reads 0), and the rest is served; the log says when it starts failing and when it reads again', async () => {
    const lines: { msg: string; metric?: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    let broken = true;
    const metrics = new BrokerMetrics(() => {
      if (broken) throw new Error('cannot tell');
      return true;
    }, logger);
    for (let scrape = 1; scrape <= 2; scrape++) {
      const text = await metrics.registry.metrics();
      // strata_ready has no labels, so it cannot be left out: it reads 0, not ready.
      expect(text).toMatch(/^strata_ready 0$/m);
      expect(text).toMatch(/^process_resident_memory_bytes /m);
      expect(text).toMatch(new RegExp(`^strata_metrics_collect_failures_total\\{metric="strata_ready"\\} ${scrape}$`, 'm'));
    }
    broken = false;
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^strata_ready 1$/m);
    expect(text).toMatch(/^strata_metrics_collect_failures_total\{metric="strata_ready"\} 2$/m);
    expect(lines.map((line) => [line.msg, line.metric])).toEqual([
      ['reading a metric failed: it is left out of scrapes until it reads again', 'strata_ready'],
      ['the metric reads again', 'strata_ready'],
    ]);
  });
});

describe('the disk latency histograms', () => {
  let directory: string | null = null;
  afterEach(() => {
    if (directory !== null) removeDirectory(directory);
    directory = null;
  });

  it("time a segment log's writes and fdatasyncs, not the small files written whole (indexes, checkpoints, snapshots)", async () => {
    directory = temporaryDirectory();
    const metrics = new BrokerMetrics();
    const fs = metrics.timedFileSystem();
    const count = async (name: string): Promise<number> => Number(new RegExp(`^${name}_count (\\S+)$`, 'm').exec(await metrics.registry.metrics())?.[1]);
    await fs.writeFileDurably(join(directory, 'recovery-point-checkpoint'), Buffer.from('small file'));
    expect(await count('strata_log_write_duration_seconds')).toBe(0);
    expect(await count('strata_fsync_duration_seconds')).toBe(0);
    const fd = await fs.open(join(directory, '00000000000000000000.log'), { create: true });
    try {
      await fs.writev(fd, [Buffer.from('a batch')], 0);
      await fs.fdatasync(fd);
      fs.writevSync(fd, [Buffer.from('another')], 7);
      fs.fdatasyncSync(fd);
    } finally {
      await fs.close(fd);
    }
    expect(await count('strata_log_write_duration_seconds')).toBe(2);
    expect(await count('strata_fsync_duration_seconds')).toBe(2);
  });
});

describe('errors by Strata error code', () => {
  const shared = useSharedBroker();

  it('tell a batch over max.message.bytes from other RESOURCE_EXHAUSTED answers (a full disk is DISK_FULL)', async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'small-batches', partitions: 1, configs: { 'max.message.bytes': '1024' } }));
    const large = buildBatch([{ value: Buffer.alloc(4096, 1) }]);
    await expect(shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'small-batches', partition: 0, batch: large }))).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    const body = (await get(shared.broker.metricsAddress!, '/metrics')).body;
    expect(metricValue(body, 'strata_requests_total', 'method="Produce",code="RESOURCE_EXHAUSTED"')).toBe(1);
    expect(metricValue(body, 'strata_request_errors_total', 'method="Produce",error="RECORD_TOO_LARGE"')).toBe(1);
    expect(optionalMetricValue(body, 'strata_request_errors_total', 'error="DISK_FULL"')).toBeNull();
  });
});

describe('per-topic series', () => {
  const shared = useSharedBroker();

  it('go with their topic, and start from 0 for a topic created again: bytes and records in and out, the partition figures', async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'short-lived', partitions: 1 }));
    await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'short-lived', partition: 0, batch: buildBatch([{ value: Buffer.from('x') }]) }));
    await shared.client.call('log.fetch', v1.FetchRequest.create({ topic: 'short-lived', partition: 0, raw: true }));
    const names = ['strata_records_in_total', 'strata_bytes_in_total', 'strata_records_out_total', 'strata_bytes_out_total', 'strata_partition_log_end_offset'];
    const before = (await get(shared.broker.metricsAddress!, '/metrics')).body;
    expect(names.map((name) => optionalMetricValue(before, name, 'topic="short-lived"'))).toEqual([1, expect.any(Number), 1, expect.any(Number), 1]);

    // Deleted and created again before the next scrape: the new topic's counts start from 0.
    await shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'short-lived' }));
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'short-lived', partitions: 1 }));
    const again = (await get(shared.broker.metricsAddress!, '/metrics')).body;
    expect(names.map((name) => optionalMetricValue(again, name, 'topic="short-lived"'))).toEqual([0, 0, null, null, 0]);

    await shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'short-lived' }));
    const after = (await get(shared.broker.metricsAddress!, '/metrics')).body;
    expect(names.map((name) => optionalMetricValue(after, name, 'topic="short-lived"'))).toEqual([null, null, null, null, null]);
  });
});

describe('a delete that failed past its first step', () => {
  // Its own broker: no topic was deleted yet, so the graveyard of deleted topics is not there.
  const shared = useSharedBroker();

  const committed = async (): Promise<number> =>
    (await shared.client.call<strata.v1.FetchOffsetsResponse>('groups.fetchOffsets', v1.FetchOffsetsRequest.create({ groupId: 'half-reader', topics: ['half-deleted'] }))).offsets.length;

  it('forgets the topic all the same: the topic created again starts with no out counts and no committed offsets', async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'half-deleted', partitions: 1 }));
    await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'half-deleted', partition: 0, batch: buildBatch([{ value: Buffer.from('x') }]) }));
    await shared.client.call('log.fetch', v1.FetchRequest.create({ topic: 'half-deleted', partition: 0, raw: true }));
    const offsets = [v1.OffsetCommit.create({ topic: 'half-deleted', partition: 0, offset: Long.fromNumber(1) })];
    await shared.client.call('groups.commitOffsets', v1.CommitOffsetsRequest.create({ groupId: 'half-reader', memberId: '', memberEpoch: 0, offsets }));
    expect(await committed()).toBe(1);
    expect(optionalMetricValue((await get(shared.broker.metricsAddress!, '/metrics')).body, 'strata_records_out_total', 'topic="half-deleted"')).toBe(1);

    // A file where the graveyard goes: the delete drops the topic, then cannot move its directory.
    const graveyard = join(shared.broker.dataDir, 'deleted');
    writeFileSync(graveyard, '');
    const failure = await grpcError(shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'half-deleted' })));
    expect(failure.code).toBe(status.UNAVAILABLE);
    expect(failure.details).toMatch(/^topic "half-deleted" is deleted, but moving its directory out of the topics directory failed with EEXIST: /);
    expect(failure.metadata.get('strata-error')).toEqual(['STORAGE_ERROR']); // the broker's answer, not the transport's
    // The operator clears the way, as the broker's refusal to create the topic again asks.
    rmSync(graveyard);
    rmSync(join(shared.broker.dataDir, 'topics', 'half-deleted'), { recursive: true });
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'half-deleted', partitions: 1 }));
    const text = (await get(shared.broker.metricsAddress!, '/metrics')).body;
    expect(optionalMetricValue(text, 'strata_records_out_total', 'topic="half-deleted"')).toBeNull();
    expect(optionalMetricValue(text, 'strata_bytes_out_total', 'topic="half-deleted"')).toBeNull();
    expect(await committed()).toBe(0);
  });
});

describe('partition figures', () => {
  const shared = useSharedBroker();

  it('are walked once per scrape, however many series need them, and afresh at the next scrape', async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'walked', partitions: 2 }));
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'walked-too', partitions: 1 }));
    const describeTopic = vi.spyOn(shared.broker.broker, 'describeTopic');
    try {
      const first = (await get(shared.broker.metricsAddress!, '/metrics')).body;
      expect(describeTopic).toHaveBeenCalledTimes(2); // once per topic, not once per series
      expect(metricValue(first, 'strata_partition_segments', 'topic="walked",partition="1"')).toBe(1);
      await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'walked', partition: 1, batch: buildBatch([{ value: Buffer.from('x') }]) }));
      const second = (await get(shared.broker.metricsAddress!, '/metrics')).body;
      expect(describeTopic).toHaveBeenCalledTimes(4);
      expect(metricValue(second, 'strata_partition_log_end_offset', 'topic="walked",partition="1"')).toBe(1);
    } finally {
      describeTopic.mockRestore();
    }
  });
});

describe('fenced partitions', () => {
  it('show as strata_partition_fenced 1 once a read finds damage, the others as 0', async () => {
    const first = await startTestBroker();
    let second: Awaited<ReturnType<typeof startTestBroker>> | null = null;
    let client = new TestClient(first.address);
    try {
      await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'cracked', partitions: 2, configs: { 'segment.bytes': '1024' } }));
      for (let index = 0; index < 8; index++) {
        await client.call('log.produce', v1.ProduceRequest.create({ topic: 'cracked', partition: 0, batch: buildBatch([{ value: Buffer.alloc(300, 'v') }]) }));
      }
      const healthy = (await get(first.metricsAddress!, '/metrics')).body;
      expect(metricValue(healthy, 'strata_partition_fenced', 'topic="cracked",partition="0"')).toBe(0);
      client.close();
      await first.stop();
      // A flipped byte in a record of the oldest, sealed segment: below the recovery checkpoint,
      // so the start does not look there, and the first read that reaches it fences the partition.
      const segment = join(first.dataDir, 'topics', 'cracked', '0', '00000000000000000000.log');
      const bytes = readFileSync(segment);
      bytes[bytes.length - 100]! ^= 0xff;
      writeFileSync(segment, bytes);
      second = await startTestBroker({ dataDir: first.dataDir });
      client = new TestClient(second.address);
      expect(metricValue((await get(second.metricsAddress!, '/metrics')).body, 'strata_partition_fenced', 'topic="cracked",partition="0"')).toBe(0);
      const refused = await grpcError(client.call('log.fetch', v1.FetchRequest.create({ topic: 'cracked', partition: 0, raw: true })));
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      const fenced = (await get(second.metricsAddress!, '/metrics')).body;
      expect(metricValue(fenced, 'strata_partition_fenced', 'topic="cracked",partition="0"')).toBe(1);
      expect(metricValue(fenced, 'strata_partition_fenced', 'topic="cracked",partition="1"')).toBe(0);
    } finally {
      client.close();
      if (second !== null) await second.dispose();
      else await first.dispose();
    }
  });
});

describe('readiness', () => {
  it('is 503 until the broker says it is ready, while liveness is 200 all along; strata_ready agrees with /readyz', async () => {
    let ready = false;
    const probes = await startProbeServer('127.0.0.1:0', new BrokerMetrics(() => ready), () => ready, rootLogger);
    try {
      expect((await get(probes.address, '/healthz')).status).toBe(200);
      expect(await get(probes.address, '/readyz')).toEqual({ status: 503, body: 'not ready\n' });
      expect((await get(probes.address, '/metrics')).body).toMatch(/^strata_ready 0$/m);
      ready = true;
      expect((await get(probes.address, '/readyz')).status).toBe(200);
      expect((await get(probes.address, '/metrics')).body).toMatch(/^strata_ready 1$/m);
      ready = false; // a graceful shutdown begins: both say so, though the logs are still open
      expect((await get(probes.address, '/readyz')).status).toBe(503);
      expect((await get(probes.address, '/metrics')).body).toMatch(/^strata_ready 0$/m);
    } finally {
      await probes.close();
    }
  });
});

describe('readiness of a starting broker', () => {
  afterEach(() => vi.restoreAllMocks());

  it('is 503 while the logs open (recovery), with liveness 200, and 200 once the broker serves', async () => {
    const dataDir = temporaryDirectory();
    // The broker's own open, held until the probes have been asked: recovery, made slow.
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let opening = (): void => undefined;
    const opened = new Promise<void>((resolve) => (opening = resolve));
    const open = Broker.open.bind(Broker);
    vi.spyOn(Broker, 'open').mockImplementation(async (options) => {
      opening();
      await held;
      return open(options);
    });
    const metricsListen = `127.0.0.1:${await unusedPort()}`;
    const starting = runBroker(testSettings(dataDir, { metricsListen }));
    let running: Awaited<typeof starting> | undefined;
    try {
      await opened;
      expect((await get(metricsListen, '/healthz')).status).toBe(200);
      expect(await get(metricsListen, '/readyz')).toEqual({ status: 503, body: 'not ready\n' });
      expect((await get(metricsListen, '/metrics')).body).toMatch(/^strata_ready 0$/m);
      release();
      running = await starting;
      expect(running.metricsAddress).toBe(metricsListen);
      expect(await get(metricsListen, '/readyz')).toEqual({ status: 200, body: 'ready\n' });
      expect((await get(metricsListen, '/metrics')).body).toMatch(/^strata_ready 1$/m);
    } finally {
      release();
      await (running ?? (await starting.catch(() => undefined)))?.stop();
      removeDirectory(dataDir);
    }
  });
});

describe('listen addresses', () => {
  it('takes the brackets off an IPv6 host, and leaves other hosts as they are', () => {
    expect(parseListenAddress('[::]:9464')).toEqual({ host: '::', port: 9464 });
    expect(parseListenAddress('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListenAddress('0.0.0.0:9464')).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseListenAddress('localhost:80')).toEqual({ host: 'localhost', port: 80 });
  });

  const ipv6Loopback = Object.values(networkInterfaces()).some((addresses) => addresses?.some((address) => address.family === 'IPv6' && address.internal));
  // Skipped only on a machine without an IPv6 loopback address.
  it.skipIf(!ipv6Loopback)('listens on [::1]:0 and reports an address a URL can hold', async () => {
    const probes = await startProbeServer('[::1]:0', new BrokerMetrics(), () => true, rootLogger);
    try {
      expect(probes.address).toMatch(/^\[::1\]:\d+$/);
      expect((await get(probes.address, '/readyz')).status).toBe(200);
    } finally {
      await probes.close();
    }
  });
});

describe('counters', () => {
  const shared = useSharedBroker();
  const scrape = async (): Promise<string> => (await get(shared.broker.metricsAddress!, '/metrics')).body;
  const ioCalls = (text: string): number =>
    ['write', 'fdatasync'].flatMap((operation) => ['event_loop', 'thread_pool'].map((thread) => metricValue(text, 'strata_log_io_calls_total', `operation="${operation}",thread="${thread}"`))).reduce((sum, value) => sum + value, 0);
  const createTopic = (name: string): Promise<unknown> => shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions: 1 }));
  const produceOne = (topic: string): Promise<unknown> => shared.client.call('log.produce', v1.ProduceRequest.create({ topic, partition: 0, records: [v1.Record.create({ value: Buffer.from('x') })] }));


  it('strata_log_io_calls_total keeps the calls of deleted topics, also of one created and deleted between two scrapes', async () => {
    await createTopic('doomed');
    for (let index = 0; index < 3; index++) await produceOne('doomed');
    const before = ioCalls(await scrape());
    expect(before).toBeGreaterThanOrEqual(6); // a write and an fdatasync each (acks=all, flush=always)
    await shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'doomed' }));
    expect(ioCalls(await scrape())).toBe(before);
    await createTopic('brief');
    await produceOne('brief');
    await shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'brief' }));
    expect(ioCalls(await scrape())).toBe(before + 2);
  });

  it('strata_bytes_in_total and strata_records_in_total count what the logs store, on both produce paths: no duplicate of an idempotent retry, whatever the acks', async () => {
    await createTopic('bytes-in');
    const sizeOfLog = async (): Promise<number> =>
      (await shared.client.call<strata.v1.TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'bytes-in' }))).partitions[0]!.sizeBytes.toNumber();
    // The records path: the broker builds the batch; its header and framing count too.
    await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'bytes-in', partition: 0, records: [v1.Record.create({ key: Buffer.from('k'), value: Buffer.from('value') })] }));
    let text = await scrape();
    expect(metricValue(text, 'strata_bytes_in_total', 'topic="bytes-in"')).toBe(await sizeOfLog());
    expect(metricValue(text, 'strata_records_in_total', 'topic="bytes-in"')).toBe(1);
    // Idempotent retries, on each path: answered as duplicates, stored and counted once.
    const initialised = await shared.client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create());
    const producer = { producerId: initialised.producerId.toNumber(), producerEpoch: initialised.producerEpoch };
    const batch = buildBatch([{ value: Buffer.from('one') }, { value: Buffer.from('two') }], { ...producer, baseSequence: 0 });
    const records = v1.ProduceRequest.create({
      topic: 'bytes-in',
      partition: 0,
      producerId: initialised.producerId,
      producerEpoch: producer.producerEpoch,
      baseSequence: 2,
      records: [v1.Record.create({ value: Buffer.from('three') })],
    });
    for (let attempt = 0; attempt < 2; attempt++) {
      const answers = [
        await shared.client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({ topic: 'bytes-in', partition: 0, batch })),
        await shared.client.call<strata.v1.ProduceResponse>('log.produce', records),
      ];
      expect(answers.map((answer) => answer.batches[0]!.duplicate)).toEqual([attempt === 1, attempt === 1]);
    }
    text = await scrape();
    expect(metricValue(text, 'strata_bytes_in_total', 'topic="bytes-in"')).toBe(await sizeOfLog());
    expect(metricValue(text, 'strata_records_in_total', 'topic="bytes-in"')).toBe(4);
    // The same retries with acks=leader: duplicates too, not counted; with acks=none, refused
    // (an idempotent batch needs an answer after the sequence check), and not counted either.
    for (const acks of [v1.Acks.ACKS_LEADER, v1.Acks.ACKS_NONE]) {
      const answers = await Promise.allSettled([
        shared.client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({ topic: 'bytes-in', partition: 0, batch, acks })),
        shared.client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({ ...records, acks })),
      ]);
      if (acks === v1.Acks.ACKS_LEADER) expect(answers.map((answer) => answer.status === 'fulfilled' && answer.value.batches[0]!.duplicate)).toEqual([true, true]);
      else expect(answers.map((answer) => answer.status === 'rejected' && (answer.reason as { code: number }).code)).toEqual([status.INVALID_ARGUMENT, status.INVALID_ARGUMENT]);
    }
    await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: 'bytes-in', partition: 0, records: [v1.Record.create({ value: Buffer.from('four') })] }));
    text = await scrape();
    expect(metricValue(text, 'strata_bytes_in_total', 'topic="bytes-in"')).toBe(await sizeOfLog());
    expect(metricValue(text, 'strata_records_in_total', 'topic="bytes-in"')).toBe(5);
  });

  it('counts a Fetch the client cancels during its long poll as CANCELLED, not OK', async () => {
    await createTopic('fetch-cancelled');
    const counted = async (code: string): Promise<number> => optionalMetricValue(await scrape(), 'strata_requests_total', `method="Fetch",code="${code}"`) ?? 0;
    const [cancelledBefore, okBefore] = [await counted('CANCELLED'), await counted('OK')];
    const log = shared.client.log as unknown as { fetch(request: unknown, callback: (error: ServiceError | null) => void): { cancel(): void } };
    let settle!: (code: number) => void;
    const answered = new Promise<number>((resolve) => (settle = resolve));
    const call = log.fetch(v1.FetchRequest.create({ topic: 'fetch-cancelled', partition: 0, offset: Long.fromNumber(0), minBytes: 1, maxWaitMs: 60_000 }), (error) => settle(error?.code ?? status.OK));
    await waitUntil(async () => (optionalMetricValue(await scrape(), 'strata_grpc_active_calls', 'method="Fetch"') ?? 0) > 0, 'the broker to begin the Fetch');
    call.cancel();
    expect(await answered).toBe(status.CANCELLED);
    await waitUntil(async () => (await counted('CANCELLED')) !== cancelledBefore, 'the cancelled Fetch to be counted');
    const text = await scrape();
    expect(metricValue(text, 'strata_requests_total', 'method="Fetch",code="CANCELLED"')).toBe(cancelledBefore + 1);
    expect(optionalMetricValue(text, 'strata_requests_total', 'method="Fetch",code="OK"') ?? 0).toBe(okBefore);
  });

  describe('Subscribe', () => {
    type Subscription = NodeJS.EventEmitter & { cancel(): void };
    const subscribe = (request: strata.v1.ISubscribeRequest): Subscription =>
      (shared.client.log as unknown as { subscribe(request: unknown): Subscription }).subscribe(v1.SubscribeRequest.create(request));
    const ended = (call: Subscription): Promise<number> =>
      new Promise((resolve) => {
        call.on('data', () => undefined);
        call.on('error', (error: ServiceError) => resolve(error.code));
      });
    const counted = async (code: string): Promise<number> => optionalMetricValue(await scrape(), 'strata_requests_total', `method="Subscribe",code="${code}"`) ?? 0;
    const cleanups: (() => void)[] = [];
    afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

    it('is counted once when it ends, with the code that ended it; not in the latency histogram', async () => {
      expect(await ended(subscribe({ topic: 'no-such-topic' }))).toBe(status.NOT_FOUND);
      expect(await ended(subscribe({ topic: '' }))).toBe(status.INVALID_ARGUMENT);
      await createTopic('followed');
      expect(await ended(subscribe({ topic: 'followed', partitions: [7] }))).toBe(status.NOT_FOUND);
      const text = await scrape();
      expect(metricValue(text, 'strata_requests_total', 'method="Subscribe",code="NOT_FOUND"')).toBe(2);
      expect(metricValue(text, 'strata_requests_total', 'method="Subscribe",code="INVALID_ARGUMENT"')).toBe(1);
      expect(text).not.toMatch(/^strata_request_duration_seconds_count\{method="Subscribe"\}/m);
    });

    it('counts a subscription the client cancels as CANCELLED once it has ended', async () => {
      await createTopic('cancelled');
      const before = await counted('CANCELLED');
      const call = subscribe({ topic: 'cancelled', start: v1.StartPosition.create({ earliest: true }) });
      const code = ended(call);
      cleanups.push(() => call.cancel());
      const following = new Promise((resolve) => call.once('data', resolve));
      await produceOne('cancelled');
      await following;
      call.cancel();
      expect(await code).toBe(status.CANCELLED);
      await waitUntil(async () => (await counted('CANCELLED')) !== before, 'the cancelled subscription to be counted');
      expect(await counted('CANCELLED')).toBe(before + 1);
    });
  });
});

describe('group metrics', () => {
  it('give members, lag and rebalances per group; after a restart, a group known by its committed offsets has 0 members and one with a member keeps it', async () => {
    await acrossRestart(async (one, first) => {
      await one.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'lagging', partitions: 1 }));
      const records = ['a', 'b', 'c', 'd', 'e'].map((value) => v1.Record.create({ value: Buffer.from(value) }));
      await one.call('log.produce', v1.ProduceRequest.create({ topic: 'lagging', partition: 0, records }));
      const joined = await one.call<strata.v1.HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g-metered', memberEpoch: 0, subscribedTopicNames: ['lagging'] }));
      await one.call('groups.commitOffsets', v1.CommitOffsetsRequest.create({ groupId: 'g-metered', memberId: joined.memberId, memberEpoch: joined.memberEpoch, offsets: [v1.OffsetCommit.create({ topic: 'lagging', partition: 0, offset: Long.fromNumber(2) })] }));
      await one.call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g-silent', memberEpoch: 0, subscribedTopicNames: ['lagging'] }));
      const before = (await get(first.metricsAddress!, '/metrics')).body;
      expect(metricValue(before, 'strata_group_members', 'group="g-metered"')).toBe(1);
      expect(metricValue(before, 'strata_group_lag_records', 'group="g-metered",topic="lagging"')).toBe(3);
      // A member that never commits: its group lags from the log start, as DescribeGroup says.
      expect(metricValue(before, 'strata_group_lag_records', 'group="g-silent",topic="lagging"')).toBe(5);
      // The coordinator reports its rebalances to the metrics: the first member's join was one.
      expect(metricValue(before, 'strata_group_rebalances_total', 'group="g-metered"')).toBe(1);
      await one.call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g-metered', memberId: joined.memberId, memberEpoch: -1 }));
    }, async (_client, _carried, second) => {
      const after = (await get(second.metricsAddress!, '/metrics')).body;
      expect(metricValue(after, 'strata_group_members', 'group="g-metered"')).toBe(0);
      expect(metricValue(after, 'strata_group_lag_records', 'group="g-metered",topic="lagging"')).toBe(3);
      // Membership is kept across the restart: g-silent's member is still there, lagging.
      expect(metricValue(after, 'strata_group_members', 'group="g-silent"')).toBe(1);
      expect(metricValue(after, 'strata_group_lag_records', 'group="g-silent",topic="lagging"')).toBe(5);
    });
  });
});

describe('group metrics of a running broker', () => {
  const shared = useSharedBroker();

  it('follow commits, and go with a deleted group and with a deleted topic', async () => {
    const scrape = async (): Promise<string> => (await get(shared.broker.metricsAddress!, '/metrics')).body;
    const commit = (groupId: string, topic: string, offset: number) =>
      shared.client.call('groups.commitOffsets', v1.CommitOffsetsRequest.create({ groupId, memberId: '', memberEpoch: 0, offsets: [v1.OffsetCommit.create({ topic, partition: 0, offset: Long.fromNumber(offset) })] }));
    for (const name of ['followed', 'doomed']) {
      await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions: 1 }));
      await shared.client.call('log.produce', v1.ProduceRequest.create({ topic: name, partition: 0, records: ['a', 'b', 'c', 'd'].map((value) => v1.Record.create({ value: Buffer.from(value) })) }));
    }
    await commit('g-followed', 'followed', 1);
    await commit('g-followed', 'doomed', 2);
    let text = await scrape();
    expect(metricValue(text, 'strata_group_lag_records', 'group="g-followed",topic="followed"')).toBe(3);
    expect(metricValue(text, 'strata_group_lag_records', 'group="g-followed",topic="doomed"')).toBe(2);
    expect(metricValue(text, 'strata_group_members', 'group="g-followed"')).toBe(0);

    await commit('g-followed', 'followed', 4);
    await shared.client.call('admin.deleteTopic', v1.DeleteTopicRequest.create({ name: 'doomed' }));
    text = await scrape();
    expect(metricValue(text, 'strata_group_lag_records', 'group="g-followed",topic="followed"')).toBe(0);
    expect(optionalMetricValue(text, 'strata_group_lag_records', 'topic="doomed"')).toBeNull();

    await shared.client.call('groups.deleteGroup', v1.DeleteGroupRequest.create({ groupId: 'g-followed' }));
    text = await scrape();
    expect(optionalMetricValue(text, 'strata_group_lag_records', 'group="g-followed"')).toBeNull();
    expect(optionalMetricValue(text, 'strata_group_members', 'group="g-followed"')).toBeNull();
  });
});

describe('concurrent scrapes', () => {
  it('share one collection: those asked for while it is pending or under way get its text, one asked for after it starts another', async () => {
    let collections = 0;
    const metrics = new BrokerMetrics(() => {
      collections++; // strata_ready's collector: once per collection
      return true;
    });
    // A collector that waits until released, as one reading a slow source would.
    let startedCollecting = (): void => undefined;
    const started = new Promise<void>((resolve) => (startedCollecting = resolve));
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    new Gauge({
      name: 'test_held_collection',
      help: 'collected once released',
      registers: [metrics.registry],
      async collect() {
        startedCollecting();
        await held;
        this.set(collections);
      },
    });
    const pending = [metrics.scrape(), metrics.scrape()];
    await started;
    pending.push(metrics.scrape()); // while the collection is under way
    release();
    const texts = await Promise.all(pending);
    expect(collections).toBe(1);
    expect(new Set(texts).size).toBe(1);
    expect(texts[0]).toMatch(/^test_held_collection 1$/m);
    expect(await metrics.scrape()).toMatch(/^test_held_collection 2$/m);
    expect(collections).toBe(2);
  });
});

describe('request targets', () => {
  /** The status line the probe server answers `requestLine` with, sent as is over a socket. */
  async function statusLine(address: string, requestLine: string): Promise<string> {
    const { host, port } = parseListenAddress(address);
    const socket = connect(port, host);
    socket.setEncoding('utf8');
    socket.end(`${requestLine}\r\nHost: ${address}\r\nConnection: close\r\n\r\n`);
    let answer = '';
    for await (const chunk of socket) answer += chunk as string;
    return answer.split('\r\n')[0]!;
  }

  it('are matched by path in the absolute form (GET http://host/readyz), as HTTP/1.1 servers must; one that does not parse is answered 400', async () => {
    const probes = await startProbeServer('127.0.0.1:0', new BrokerMetrics(() => true), () => true, rootLogger);
    try {
      expect(await statusLine(probes.address, `GET http://${probes.address}/readyz HTTP/1.1`)).toBe('HTTP/1.1 200 OK');
      expect(await statusLine(probes.address, 'GET http://strata.example/healthz?verbose HTTP/1.1')).toBe('HTTP/1.1 200 OK');
      expect(await statusLine(probes.address, 'GET http://strata.example/metrics HTTP/1.1')).toBe('HTTP/1.1 200 OK');
      expect(await statusLine(probes.address, 'GET http://strata.example/nope HTTP/1.1')).toBe('HTTP/1.1 404 Not Found');
      expect(await statusLine(probes.address, 'GET /readyz?x=1 HTTP/1.1')).toBe('HTTP/1.1 200 OK');
      expect(await statusLine(probes.address, 'GET http://[ HTTP/1.1')).toBe('HTTP/1.1 400 Bad Request');
    } finally {
      await probes.close();
    }
  });
});

describe('scrape compression', () => {
  /** A GET of /metrics with `acceptEncoding` (none when undefined): its headers and body, undecoded. */
  async function scrape(address: string, acceptEncoding: string | undefined): Promise<{ encoding: string | undefined; vary: string | undefined; body: Buffer }> {
    const { host, port } = parseListenAddress(address);
    const headers = acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding };
    return new Promise((resolve, reject) => {
      httpGet({ host, port, path: '/metrics', headers }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ encoding: response.headers['content-encoding'], vary: response.headers.vary, body: Buffer.concat(chunks) }));
        response.on('error', reject);
      }).on('error', reject);
    });
  }

  it('gzips /metrics for a scraper that accepts gzip, as Prometheus does, and sends it plain otherwise', async () => {
    const probes = await startProbeServer('127.0.0.1:0', new BrokerMetrics(() => true), () => true, rootLogger);
    try {
      const plain = await scrape(probes.address, undefined);
      expect(plain.encoding).toBeUndefined();
      expect(plain.body.toString()).toContain('strata_ready 1');

      for (const accepted of ['gzip', 'gzip, deflate, br', 'deflate;q=1, gzip;q=0.5', '*', 'identity, *;q=0.1']) {
        const compressed = await scrape(probes.address, accepted);
        expect({ accepted, encoding: compressed.encoding, vary: compressed.vary }).toEqual({ accepted, encoding: 'gzip', vary: 'accept-encoding' });
        expect(gunzipSync(compressed.body).toString()).toContain('strata_ready 1');
      }
      for (const refused of ['identity', 'br, deflate', 'gzip;q=0', '*, gzip;q=0', '*;q=0']) {
        const answer = await scrape(probes.address, refused);
        expect({ refused, encoding: answer.encoding }).toEqual({ refused, encoding: undefined });
        expect(answer.body.toString()).toContain('strata_ready 1');
      }
    } finally {
      await probes.close();
    }
  });
});

describe('rebalance counts', () => {
  it('count each rebalance as reported, and a forgotten group\'s series goes with it', async () => {
    const metrics = new BrokerMetrics();
    const events = metrics.groupEvents();
    const text = async (): Promise<string> => metrics.registry.metrics();
    events.rebalanced('g');
    events.rebalanced('g');
    events.rebalanced('other');
    expect(metricValue(await text(), 'strata_group_rebalances_total', 'group="g"')).toBe(2);
    events.forgotten('g');
    expect(optionalMetricValue(await text(), 'strata_group_rebalances_total', 'group="g"')).toBeNull();
    expect(metricValue(await text(), 'strata_group_rebalances_total', 'group="other"')).toBe(1);
    events.rebalanced('g'); // a group recreated under the same id starts from its own first rebalance
    expect(metricValue(await text(), 'strata_group_rebalances_total', 'group="g"')).toBe(1);
  });
});

describe('stop', () => {
  it('answers scrapes while the logs close: strata_ready 0, the group and partition series left out', async () => {
    const running = await startTestBroker();
    const client = new TestClient(running.address);
    const close = running.broker.close.bind(running.broker);
    let closeStarted = (): void => undefined;
    const closing = new Promise<void>((resolve) => (closeStarted = resolve));
    let finishClose = (): void => undefined;
    const held = new Promise<void>((resolve) => (finishClose = resolve));
    // The real close starts (the broker refuses calls and closes its stores), then waits for the test.
    running.broker.close = async () => {
      const closed = close();
      closeStarted();
      await held;
      await closed;
    };
    try {
      await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'closing', partitions: 1 }));
      await client.call('log.produce', v1.ProduceRequest.create({ topic: 'closing', partition: 0, records: [v1.Record.create({ value: Buffer.from('a') })] }));
      await client.call('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'g-closing', memberEpoch: 0, subscribedTopicNames: ['closing'] }));
      const before = (await get(running.metricsAddress!, '/metrics')).body;
      expect(metricValue(before, 'strata_group_lag_records', 'group="g-closing",topic="closing"')).toBe(1);
      client.close();
      const stopped = running.stop();
      await closing;
      const during = await get(running.metricsAddress!, '/metrics');
      expect(during.status).toBe(200);
      expect(during.body).toMatch(/^strata_ready 0$/m);
      expect(optionalMetricValue(during.body, 'strata_group_lag_records', 'group="g-closing"')).toBeNull();
      expect(optionalMetricValue(during.body, 'strata_group_members', 'group="g-closing"')).toBeNull();
      expect(optionalMetricValue(during.body, 'strata_partition_high_watermark', 'topic="closing"')).toBeNull();
      finishClose();
      await stopped;
    } finally {
      finishClose();
      client.close();
      removeDirectory(running.dataDir);
    }
  });

  it('closes the probe server even when closing the logs fails, and passes that failure on', async () => {
    const running = await startTestBroker();
    const close = running.broker.close.bind(running.broker);
    running.broker.close = () => Promise.reject(new Error('injected: closing the logs failed'));
    try {
      await expect(running.stop()).rejects.toThrow(/injected/);
      await expect(fetch(`http://${running.metricsAddress}/healthz`)).rejects.toThrow();
    } finally {
      await close();
      removeDirectory(running.dataDir);
    }
  });
});

describe('client connections', () => {
  it('are counted while open, and in all since the start', async () => {
    const broker = await startTestBroker();
    // grpc-js shares one connection between channels to the same address unless told otherwise.
    const own = { 'grpc.use_local_subchannel_pool': 1 };
    const admins = [new Admin({ server: broker.address, channelOptions: own }), new Admin({ server: broker.address, channelOptions: own })];
    const connections = async (): Promise<string> => {
      const body = (await get(broker.metricsAddress!, '/metrics')).body;
      return `${/^strata_grpc_connections (\S+)$/m.exec(body)?.[1]} open, ${/^strata_grpc_connections_accepted_total (\S+)$/m.exec(body)?.[1]} accepted`;
    };
    try {
      expect(await connections()).toBe('0 open, 0 accepted');
      for (const admin of admins) await admin.listTopics();
      expect(await connections()).toBe('2 open, 2 accepted');
      await admins[0]!.close();
      await waitUntil(async () => (await connections()) === '1 open, 2 accepted', 'the closed connection counted out');
      expect(await connections()).toBe('1 open, 2 accepted');
    } finally {
      await admins[1]!.close();
      await broker.dispose();
    }
  });
});

describe('a Subscribe whose read fails as its client cancels', () => {
  it('is counted as CANCELLED, and its failure is still counted and logged', async () => {
    const dataDir = temporaryDirectory('strata-subscribe-cancel-');
    const fs = new TestFileSystem();
    const lines: { msg: string; method?: string; code?: number }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
    let broker = await Broker.open({ dataDir, fs });
    await broker.createTopic('read-fails', 1, {});
    await broker.produceBatches('read-fails', 0, buildBatch([{ value: Buffer.from('on disk') }]), 'all');
    await broker.close();
    // Reopened, so the records are read from the disk, not from the tail cache.
    broker = await Broker.open({ dataDir, fs });
    const metrics = new BrokerMetrics();
    const coordinator = new GroupCoordinator(broker, { sessionTimeoutMs: 45_000, heartbeatIntervalMs: 5_000, sessionCheckIntervalMs: 3_600_000 });
    metrics.attach(broker, coordinator);
    const server = await StrataGrpcServer.start(broker, coordinator, { listen: '127.0.0.1:0', maxRequestBytes: 1024 * 1024, produceMemoryBytes: 64 * 1024 * 1024, logger, metrics });
    const client = new TestClient(server.address);
    try {
      const read = fs.hold('read');
      const call = (client.log as unknown as { subscribe(request: unknown): NodeJS.EventEmitter & { cancel(): void } }).subscribe(
        v1.SubscribeRequest.create({ topic: 'read-fails', start: v1.StartPosition.create({ earliest: true }) }),
      );
      const code = new Promise<number>((resolve) => {
        call.on('data', () => undefined);
        call.on('error', (error: ServiceError) => resolve(error.code));
      });
      await read.reached;
      call.cancel();
      expect(await code).toBe(status.CANCELLED);
      const active = async (): Promise<number> => optionalMetricValue(await metrics.registry.metrics(), 'strata_grpc_active_calls', 'method="Subscribe"') ?? 0;
      await waitUntil(async () => (await active()) === 0, 'the broker to see the subscription cancelled');
      fs.readError = 'EIO';
      read.release();
      const counted = async (): Promise<string> => metrics.registry.metrics();
      await waitUntil(async () => optionalMetricValue(await counted(), 'strata_requests_total', 'method="Subscribe"') !== null, 'the subscription to be counted');
      const text = await counted();
      expect(metricValue(text, 'strata_requests_total', 'method="Subscribe",code="CANCELLED"')).toBe(1);
      expect(text).not.toMatch(/^strata_requests_total\{method="Subscribe",code="(?!CANCELLED)/m);
      expect(metricValue(text, 'strata_request_errors_total', 'method="Subscribe"')).toBe(1);
      expect(lines.filter((line) => line.method === 'Subscribe').map((line) => line.msg)).toEqual([expect.stringMatching(/^request failed/)]);
    } finally {
      fs.readError = null;
      client.close();
      await server.shutdown(5_000);
      await coordinator.close();
      await broker.close();
      removeDirectory(dataDir);
    }
  });
});
