// Goal: the per-partition series, written as text by themselves, read exactly as they did when
// prom-client's Gauges and Counters made them (names, types, labels, help texts, values, order),
// in the scrape text and in prom-client's JSON, go with a deleted topic, and are left out and
// counted when the figures cannot be read; method: a real Broker with a few topics, its
// BrokerMetrics' scrape compared block by block with a registry of prom-client metrics
// collected the way they were before (reset, then set each partition's series), over the same
// figures; and a PartitionSeries over made-up figures (large values, NaN, a label to escape).
import { Counter, Gauge, Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { GroupCoordinator } from '../../src/groups/group-coordinator.js';
import { BrokerMetrics } from '../../src/server/metrics.js';
import { type PartitionFigures, PartitionSeries, PartitionSeriesRegistry } from '../../src/server/partition-series.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

const PARTITION_METRICS = [
  'strata_partition_log_end_offset',
  'strata_partition_high_watermark',
  'strata_partition_log_start_offset',
  'strata_partition_size_bytes',
  'strata_partition_segments',
  'strata_partition_fenced',
  'strata_partition_written_bytes_total',
];

/**
 * The per-partition metrics as prom-client made them before they wrote their own text: the
 * same names, help texts and labels, each collect emptying the metric and setting every
 * partition's series from `figures`.
 */
function prometheusClientReference(figures: () => readonly PartitionFigures[]): Registry {
  const registry = new Registry();
  const registers = [registry];
  const gauge = (name: string, help: string, value: (state: PartitionFigures) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        this.reset();
        for (const state of figures()) this.set({ topic: state.topic, partition: String(state.partition) }, value(state));
      },
    });
  };
  gauge('strata_partition_log_end_offset', 'Offset the next record of the partition will get', (state) => state.logEndOffset);
  gauge('strata_partition_high_watermark', 'End of the durable, visible part of the partition', (state) => state.highWatermark);
  gauge('strata_partition_log_start_offset', 'First offset still stored', (state) => state.logStartOffset);
  gauge('strata_partition_size_bytes', 'Bytes of log data of the partition', (state) => state.sizeBytes);
  gauge('strata_partition_segments', 'Segments of the partition\'s log (open segments: from the log start to the active one)', (state) => state.segmentCount);
  gauge(
    'strata_partition_fenced',
    '1 while the partition refuses reads and appends (fenced: corrupt data, a failed write or fdatasync, or a failed segment roll; DescribeTopic gives the reason), else 0',
    (state) => (state.error === '' ? 0 : 1),
  );
  new Counter({
    name: 'strata_partition_written_bytes_total',
    help: 'Log bytes appended since the broker started, by write mode (direct: O_DIRECT, --write-mode direct)',
    labelNames: ['topic', 'partition', 'mode'],
    registers,
    collect() {
      this.reset();
      for (const state of figures()) {
        const labels = { topic: state.topic, partition: String(state.partition) };
        this.inc({ ...labels, mode: 'direct' }, state.writtenBytes.direct);
        this.inc({ ...labels, mode: 'buffered' }, state.writtenBytes.buffered);
      }
    },
  });
  return registry;
}

/** The blocks of a scrape's text (`# HELP`, `# TYPE`, series) by metric name. */
function blocks(text: string): Map<string, string> {
  return new Map(text.trimEnd().split('\n\n').map((block) => [/^# HELP (\S+) /.exec(block)![1]!, block]));
}

describe('the per-partition series of a broker', () => {
  let dataDir: string;
  let broker: Broker;
  let coordinator: GroupCoordinator;
  let metrics: BrokerMetrics;
  /** The broker's figures as BrokerMetrics walks them. */
  const figures = (): PartitionFigures[] => broker.listTopics().flatMap(({ name }) => broker.describeTopic(name).partitions.map((partition) => ({ topic: name, ...partition })));

  beforeEach(async () => {
    dataDir = temporaryDirectory('strata-partition-series-');
    broker = await Broker.open({ dataDir });
    coordinator = new GroupCoordinator(broker, { sessionTimeoutMs: 45_000, heartbeatIntervalMs: 5_000, sessionCheckIntervalMs: 3_600_000 });
    metrics = new BrokerMetrics(() => true);
    metrics.attach(broker, coordinator);
    await broker.createTopic('orders', 3, {});
    await broker.createTopic('rolled.often', 2, { 'segment.bytes': '1024' });
    await broker.createTopic('quiet_topic-1', 1, {});
    for (let batch = 0; batch < 4; batch++) {
      await broker.produceBatches('orders', batch % 2, buildBatch([{ value: Buffer.from(`order ${batch}`) }, { value: Buffer.from('and another') }]), 'all');
      await broker.produceBatches('rolled.often', 1, buildBatch([{ value: Buffer.alloc(600, batch) }]), 'all');
    }
  });

  afterEach(async () => {
    await coordinator.close();
    await broker.close();
    removeDirectory(dataDir);
  });

  it("are the text prom-client wrote for them, byte for byte, in the registry's order", async () => {
    const expected = blocks(await prometheusClientReference(figures).metrics());
    const text = await metrics.registry.metrics();
    const scraped = blocks(text);
    for (const name of PARTITION_METRICS) expect(scraped.get(name), name).toBe(expected.get(name));
    // The figures are not all alike: several segments, bytes written, offsets that differ.
    expect(scraped.get('strata_partition_segments')).toMatch(/^strata_partition_segments\{topic="rolled\.often",partition="1"\} [3-9]$/m);
    expect(scraped.get('strata_partition_log_end_offset')).toMatch(/^strata_partition_log_end_offset\{topic="orders",partition="1"\} 4$/m);
    expect(scraped.get('strata_partition_written_bytes_total')).toMatch(/^strata_partition_written_bytes_total\{topic="orders",partition="0",mode="(direct|buffered)"\} [1-9]\d*$/m);
    // Every metric in the text once, in the order registered, apart by a blank line, with prom-client's end.
    expect([...scraped.keys()]).toEqual(metrics.registry.getMetricsAsArray().map((metric) => metric.name));
    expect(text).toMatch(/[^\n]\n$/);
  });

  it("are what prom-client's own formatting and JSON make of them", async () => {
    const reference = prometheusClientReference(figures);
    for (const name of PARTITION_METRICS) {
      expect(await metrics.registry.getSingleMetricAsString(name)).toBe(await reference.getSingleMetricAsString(name));
    }
    const json = async (registry: Registry): Promise<unknown[]> =>
      (await registry.getMetricsAsJSON()).filter((metric) => PARTITION_METRICS.includes(metric.name)).map(({ name, help, type, values }) => ({ name, help, type, values }));
    expect(await json(metrics.registry)).toEqual(await json(reference));
  });

  it('go with a deleted topic, and start again from its new figures for one created again', async () => {
    expect(await metrics.registry.metrics()).toMatch(/^strata_partition_size_bytes\{topic="orders",partition="2"\} /m);
    await broker.deleteTopic('orders');
    const afterDelete = await metrics.registry.metrics();
    expect(afterDelete).not.toMatch(/topic="orders"/);
    expect(afterDelete).toMatch(/^strata_partition_size_bytes\{topic="quiet_topic-1",partition="0"\} 0$/m);
    await broker.createTopic('orders', 1, {});
    const again = await metrics.registry.metrics();
    expect(again).toMatch(/^strata_partition_log_end_offset\{topic="orders",partition="0"\} 0$/m);
    expect(again).not.toMatch(/topic="orders",partition="1"/);
  });

  it('are left out of a scrape whose figures cannot be read, and counted, the other metrics served', async () => {
    const describeTopic = vi.spyOn(broker, 'describeTopic').mockImplementation(() => {
      throw new Error('injected: cannot describe');
    });
    try {
      const scraped = blocks(await metrics.registry.metrics());
      for (const name of PARTITION_METRICS) {
        expect(scraped.get(name)!.split('\n')).toHaveLength(2); // # HELP and # TYPE only
        expect(scraped.get('strata_metrics_collect_failures_total')).toContain(`strata_metrics_collect_failures_total{metric="${name}"} 1`);
      }
      expect(scraped.get('strata_ready')).toMatch(/^strata_ready 1$/m);
    } finally {
      describeTopic.mockRestore();
    }
    expect(await metrics.registry.metrics()).toMatch(/^strata_partition_high_watermark\{topic="orders",partition="0"\} 4$/m);
  });
});

describe('a PartitionSeries', () => {
  const made: PartitionFigures[] = [
    { topic: 't', partition: 0, logStartOffset: 0, highWatermark: 2 ** 53 - 1, logEndOffset: 2 ** 53 - 1, sizeBytes: 1.5e12, segmentCount: 1, writtenBytes: { direct: 0, buffered: 7 }, appendedRecords: 0, served: { bytes: 0, records: 0 }, error: '' },
    { topic: 't', partition: 1, logStartOffset: 5, highWatermark: Number.NaN, logEndOffset: Infinity, sizeBytes: 1e21, segmentCount: 0, writtenBytes: { direct: 3, buffered: 0 }, appendedRecords: 0, served: { bytes: 0, records: 0 }, error: 'fenced' },
    { topic: 'u', partition: 10, logStartOffset: 0, highWatermark: -Infinity, logEndOffset: 0, sizeBytes: 0.25, segmentCount: 2, writtenBytes: { direct: 0, buffered: 0 }, appendedRecords: 0, served: { bytes: 0, records: 0 }, error: '' },
  ];

  it("writes values and escaped labels as prom-client does, and its help's backslashes and newlines", async () => {
    const registry = new PartitionSeriesRegistry();
    const reference = new Registry();
    const help = 'a help text with a \\ backslash\nand a newline';
    new PartitionSeries({
      name: 'test_partition_figures',
      help,
      type: 'gauge',
      samples: [
        { labels: { kind: 'high "watermark"\\' }, value: (figures) => figures.highWatermark },
        { labels: { kind: 'end\nof log' }, value: (figures) => figures.logEndOffset },
        { labels: { kind: 'size' }, value: (figures) => figures.sizeBytes },
      ],
      figures: () => made,
      registers: [registry],
    });
    const kinds = ['high "watermark"\\', 'end\nof log', 'size'] as const;
    const values = [(figures: PartitionFigures) => figures.highWatermark, (figures: PartitionFigures) => figures.logEndOffset, (figures: PartitionFigures) => figures.sizeBytes];
    new Gauge({
      name: 'test_partition_figures',
      help,
      labelNames: ['topic', 'partition', 'kind'],
      registers: [reference],
      collect() {
        this.reset();
        for (const figures of made) kinds.forEach((kind, index) => this.set({ topic: figures.topic, partition: String(figures.partition), kind }, values[index]!(figures)));
      },
    });
    const text = await registry.metrics();
    expect(text).toBe(await reference.metrics());
    expect(text).toContain('test_partition_figures{topic="t",partition="1",kind="high \\"watermark\\"\\\\"} Nan');
    expect(text).toContain('test_partition_figures{topic="u",partition="10",kind="end\\nof log"} 0');
    expect((registry.getSingleMetric('test_partition_figures') as unknown as { labelNames: string[] }).labelNames).toEqual(['topic', 'partition', 'kind']);
  });

  it('keeps no figures between scrapes', async () => {
    const registry = new PartitionSeriesRegistry();
    let reads = 0;
    const series = new PartitionSeries({
      name: 'test_partition_fenced',
      help: 'fenced',
      type: 'gauge',
      samples: [{ labels: {}, value: (figures) => (figures.error === '' ? 0 : 1) }],
      figures: () => {
        reads++;
        return made;
      },
      registers: [registry],
    });
    expect(await registry.metrics()).toBe('# HELP test_partition_fenced fenced\n# TYPE test_partition_fenced gauge\ntest_partition_fenced{topic="t",partition="0"} 0\ntest_partition_fenced{topic="t",partition="1"} 1\ntest_partition_fenced{topic="u",partition="10"} 0\n');
    expect(reads).toBe(1);
    expect((series as unknown as { partitions: readonly PartitionFigures[] }).partitions).toEqual([]);
  });
});
