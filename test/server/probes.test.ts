// Goal: operators can scrape metrics and probe liveness and readiness over HTTP; method: a real
// broker with its probe server on an ephemeral port, real gRPC traffic, plain HTTP requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootLogger } from '../../src/common/logger.js';
import { BrokerMetrics } from '../../src/server/metrics.js';
import { startProbeServer } from '../../src/server/probe-server.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

async function get(address: string, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://${address}${path}`);
  return { status: response.status, body: await response.text() };
}

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(labels));
  if (line === undefined) throw new Error(`no ${name} with ${labels} in:\n${text.split('\n').filter((l) => l.startsWith(name)).join('\n')}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('probe server of a running broker', () => {
  let broker: TestBroker;
  let client: TestClient;
  beforeAll(async () => {
    broker = await startTestBroker();
    client = new TestClient(broker.address);
  });
  afterAll(async () => {
    client.close();
    await broker.dispose();
  });

  it('answers /healthz and /readyz with 200 once the broker is serving', async () => {
    expect(await get(broker.metricsAddress!, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await get(broker.metricsAddress!, '/readyz')).toEqual({ status: 200, body: 'ready\n' });
    expect((await get(broker.metricsAddress!, '/nope')).status).toBe(404);
  });

  it('exposes request, traffic, partition, fsync and process metrics in Prometheus format', async () => {
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'metered', partitions: 2 }));
    const batch = buildBatch([{ value: Buffer.from('one') }, { value: Buffer.from('two') }]);
    const size = batch.length;
    await client.call('log.produce', v1.ProduceRequest.create({ topic: 'metered', partition: 1, batch }));
    await client.call('log.fetch', v1.FetchRequest.create({ topic: 'metered', partition: 1, raw: true }));
    await expect(client.call('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'missing' }))).rejects.toThrow();
    const { status, body } = await get(broker.metricsAddress!, '/metrics');
    expect(status).toBe(200);
    expect(metricValue(body, 'strata_requests_total', 'method="Produce",code="OK"')).toBe(1);
    expect(metricValue(body, 'strata_requests_total', 'method="DescribeTopic",code="NOT_FOUND"')).toBe(1);
    expect(metricValue(body, 'strata_records_in_total', 'topic="metered"')).toBe(2);
    expect(metricValue(body, 'strata_bytes_in_total', 'topic="metered"')).toBe(size);
    expect(metricValue(body, 'strata_records_out_total', 'topic="metered"')).toBe(2);
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
    // The fetch read the batch the produce had just written: from the tail cache, not the file.
    expect(body).toMatch(new RegExp(`^strata_tail_cache_bytes ${size}$`, 'm'));
    expect(metricValue(body, 'strata_tail_cache_reads_total', 'result="hit"')).toBe(1);
    expect(metricValue(body, 'strata_tail_cache_reads_total', 'result="miss"')).toBe(0);
    expect(body).toMatch(/^strata_request_duration_seconds_bucket\{le="[^"]+",method="Produce"\}/m);
    expect(body).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(body).toMatch(/^process_resident_memory_bytes /m);
    expect(body).toMatch(/^strata_ready 1$/m);
  });
});

describe('readiness', () => {
  it('is 503 until the broker says it is ready, while liveness is 200 all along', async () => {
    let ready = false;
    const probes = await startProbeServer('127.0.0.1:0', new BrokerMetrics(), () => ready, rootLogger);
    try {
      expect((await get(probes.address, '/healthz')).status).toBe(200);
      expect(await get(probes.address, '/readyz')).toEqual({ status: 503, body: 'not ready\n' });
      ready = true;
      expect((await get(probes.address, '/readyz')).status).toBe(200);
    } finally {
      await probes.close();
    }
  });
});
