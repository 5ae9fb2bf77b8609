/**
 * The per-partition metrics (`strata_partition_*`), written as Prometheus text by themselves
 * rather than through prom-client's Gauge and Counter. Those keep a hash of label sets: each
 * scrape's `collect()` emptied it and set every partition's series again (a label key string
 * and an entry per series), then the registry formatted every entry's labels; with 10,000
 * partitions that is 80,000 series, about 0.25 s of a scrape's 0.3 s held on the event loop
 * (`strata_partition_written_bytes_total`, two series per partition, 0.15 s of it). Here a
 * scrape reads the partitions' figures (`collect`) and writes their lines straight from them,
 * and nothing is kept between scrapes.
 *
 * The text is prom-client's to the byte, so that the names, types, labels, help texts and values
 * stay what the README and the alert rules say: the metric's `# HELP` and `# TYPE` lines, then
 * one line per partition and sample, in the order of the figures (topics as the broker lists
 * them, partitions in order), `name{topic="...",partition="...",<the sample's labels>} value`,
 * label values escaped and values written as prom-client writes them. A `PartitionSeries` is
 * registered in the registry like prom-client's metrics, so `getMetricsAsJSON`,
 * `getSingleMetric` (its `labelNames`) and `getSingleMetricAsString` (prom-client's formatting
 * of `get()`, the slow way) still see it, and `BrokerMetrics.guardCollectors` wraps its
 * `collect`: figures that cannot be read leave its series out. The registry's default labels
 * are not added (Strata sets none).
 *
 * A `PartitionSeriesRegistry` writes each `PartitionSeries` this way in `metrics()`, and every
 * other metric as prom-client does.
 */
import { type Metric, Registry } from 'prom-client';
import type { PartitionState } from '../broker/broker.js';
import { assert } from '../common/assert.js';

/** A partition's figures, as `Broker.describeTopic` gives them, with its topic. */
export type PartitionFigures = PartitionState & { topic: string };

/** One series per partition: its labels after `topic` and `partition`, and its value. */
export interface PartitionSample {
  labels: Readonly<Record<string, string>>;
  value: (figures: PartitionFigures) => number;
}

export interface PartitionSeriesOptions {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  /** Every sample has the same label names; a metric with no labels but these has one, `{}`. */
  samples: readonly PartitionSample[];
  /** Every partition's figures, read once per scrape (`collect`). */
  figures: () => readonly PartitionFigures[];
  registers: readonly Registry[];
}

/** A metric's series as prom-client's `get()` gives them, for `getMetricsAsJSON`. */
interface SeriesValues {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  aggregator: 'sum';
  values: { labels: Record<string, string>; value: number }[];
}

export class PartitionSeries {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly labelNames: readonly string[];
  /** For prom-client's cluster aggregation, as its metrics have. */
  readonly aggregator = 'sum';
  private readonly samples: readonly PartitionSample[];
  private readonly figures: () => readonly PartitionFigures[];
  /** The `# HELP` and `# TYPE` lines, as prom-client writes them. */
  private readonly header: string;
  /** Each sample's labels after `partition`, written: `,mode="direct"`. */
  private readonly sampleLabels: readonly string[];
  /** The figures read by the last `collect`, dropped once written (not kept between scrapes). */
  private partitions: readonly PartitionFigures[] = [];

  constructor(options: PartitionSeriesOptions) {
    this.name = options.name;
    this.help = options.help;
    this.type = options.type;
    this.samples = options.samples;
    this.figures = options.figures;
    assert(this.samples.length > 0, `${this.name} has no sample`);
    const sampleLabelNames = Object.keys(this.samples[0]!.labels);
    for (const sample of this.samples) {
      assert(Object.keys(sample.labels).join() === sampleLabelNames.join(), () => `${this.name}'s samples have different label names`);
    }
    this.labelNames = ['topic', 'partition', ...sampleLabelNames];
    this.header = `# HELP ${escapeText(this.name)} ${escapeText(this.help)}\n# TYPE ${escapeText(this.name)} ${this.type}`;
    this.sampleLabels = this.samples.map((sample) =>
      Object.entries(sample.labels)
        .map(([label, value]) => `,${label}="${escapeLabelValue(value)}"`)
        .join(''),
    );
    // prom-client's types list its own metric classes only; the registry needs a name, get() and reset().
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** Reads every partition's figures for the scrape under way (wrapped by `guardCollectors`). */
  collect(): void {
    this.partitions = this.figures();
  }

  /** Leaves the series out of the scrape under way (after a failed `collect`). */
  reset(): void {
    this.partitions = [];
  }

  /** The metric's text in a scrape: `# HELP`, `# TYPE` and one line per series, no newline at the end. */
  exposition(): string {
    this.collect();
    // Lines joined once: a third faster than appending each to the text, flattening included.
    const lines = [this.header];
    let topic: string | null = null;
    let topicLabels = '';
    for (const figures of this.take()) {
      if (figures.topic !== topic) {
        topic = figures.topic;
        topicLabels = `${this.name}{topic="${escapeLabelValue(topic)}",partition="`;
      }
      for (let index = 0; index < this.samples.length; index++) {
        lines.push(`${topicLabels}${figures.partition}"${this.sampleLabels[index]}} ${valueText(this.samples[index]!.value(figures))}`);
      }
    }
    return lines.join('\n');
  }

  /** The series as prom-client's metrics give theirs, for `getMetricsAsJSON` and `getSingleMetricAsString`. */
  get(): SeriesValues {
    this.collect();
    const values = this.take().flatMap((figures) =>
      this.samples.map((sample) => ({ labels: { topic: figures.topic, partition: String(figures.partition), ...sample.labels }, value: sample.value(figures) })),
    );
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  private take(): readonly PartitionFigures[] {
    const partitions = this.partitions;
    this.partitions = [];
    return partitions;
  }
}

/** A registry whose text (`metrics()`) has its `PartitionSeries` write their own. */
export class PartitionSeriesRegistry extends Registry {
  /**
   * prom-client's text: each metric's, in the order registered, apart by a blank line, with a
   * newline at the end. Every collector runs in the same synchronous pass, as in prom-client's
   * own `metrics()`, so the partition series share one walk of the partitions.
   */
  override async metrics(): Promise<string> {
    if (this.contentType !== Registry.PROMETHEUS_CONTENT_TYPE) return super.metrics();
    // Typed by name only: prom-client's metric types and a PartitionSeries's disagree on `type`.
    const metrics: readonly { name: string }[] = this.getMetricsAsArray();
    const texts = metrics.map((metric) => (metric instanceof PartitionSeries ? metric.exposition() : this.getSingleMetricAsString(metric.name)));
    return `${(await Promise.all(texts)).join('\n\n')}\n`;
  }
}

/** A name or help text in the exposition format: backslashes and newlines escaped, as prom-client does. */
function escapeText(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label value in the exposition format (topic names cannot need it, but a sample's labels might). */
function escapeLabelValue(value: string): string {
  return escapeText(value).replace(/"/g, '\\"');
}

/** A value as prom-client writes it. */
function valueText(value: number): string {
  if (Number.isNaN(value)) return 'Nan';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return `${value}`;
}
