/**
 * Latencies of one benchmark phase, summarised with an HDR histogram (hdr-histogram-js, 3
 * significant digits, microsecond units).
 *
 * Recording a value into the histogram costs about 100 ns, which at two million records a second
 * would take a fifth of the client's core inside the measured window. So a phase records into a
 * preallocated array (a few ns a value) and the histogram is built from it after the phase has
 * been timed. The array is bounded (`SAMPLES_MAX` entries, 32 MiB): when a phase expects more
 * values than that, every k-th value is kept (as Kafka's perf tools sample), each standing for k.
 * The count, mean and maximum always cover every value.
 *
 * The histogram answers a percentile with the highest value its bucket stands for, up to 0.1 %
 * above the values recorded in it, while the maximum is exact: 1,000 values of 12,345 µs gave
 * p50 = p99.9 = 12.351 ms beside a max of 12.345 ms. So each percentile is clamped to the
 * maximum (which keeps them in order: p50 ≤ p95 ≤ p99 ≤ p99.9 ≤ max).
 */
import { build } from 'hdr-histogram-js';

export const SAMPLES_MAX = 4 * 1024 * 1024;
/** Longest latency the histogram tracks exactly (1 hour in µs); longer ones are clamped. */
const HIGHEST_TRACKABLE_MICROS = 3_600_000_000;

export interface LatencySummary {
  /** Values recorded (records, or requests × records for the records path). */
  count: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export class LatencyRecorder {
  private readonly micros: Uint32Array;
  private readonly weights: Uint32Array;
  private readonly stride: number;
  private stored = 0;
  /** Values recorded apart from the sampling (`recordUnsampled`), each with its own weight. */
  private readonly unsampled: { micros: number; count: number }[] = [];
  private untilNextSample = 0;
  private total = 0;
  private sumMs = 0;
  private maxMs = 0;

  /** `expected`: about how many values the phase will record (sets the sampling stride). */
  constructor(expected: number) {
    this.stride = Math.max(1, Math.ceil(expected / SAMPLES_MAX));
    const capacity = Math.min(SAMPLES_MAX, Math.max(1024, Math.ceil(expected / this.stride) + 1024));
    this.micros = new Uint32Array(capacity);
    this.weights = new Uint32Array(capacity);
  }

  get count(): number {
    return this.total;
  }

  /** One value (ms). */
  record(latencyMs: number): void {
    this.recordMany(latencyMs, 1);
  }

  /** `count` values of `latencyMs` each (a request's records, answered together). */
  recordMany(latencyMs: number, count: number): void {
    this.total += count;
    this.sumMs += latencyMs * count;
    if (latencyMs > this.maxMs) this.maxMs = latencyMs;
    if (--this.untilNextSample > 0) return;
    this.untilNextSample = this.stride;
    if (this.stored === this.micros.length) return; // more values than expected: keep the first
    const micros = Math.round(latencyMs * 1000);
    this.micros[this.stored] = Math.min(HIGHEST_TRACKABLE_MICROS, Math.max(0, micros));
    this.weights[this.stored] = count * this.stride;
    this.stored++;
  }

  /**
   * `count` values of `latencyMs` each, kept whatever the sampling: a bulk of values recorded
   * once (an e2e run's lost records) would otherwise be skipped between two samples, or
   * stand for `count` × the stride.
   */
  recordUnsampled(latencyMs: number, count: number): void {
    this.total += count;
    this.sumMs += latencyMs * count;
    if (latencyMs > this.maxMs) this.maxMs = latencyMs;
    this.unsampled.push({ micros: Math.min(HIGHEST_TRACKABLE_MICROS, Math.max(0, Math.round(latencyMs * 1000))), count });
  }

  summary(): LatencySummary | null {
    if (this.total === 0) return null;
    const histogram = build({ numberOfSignificantValueDigits: 3, lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_TRACKABLE_MICROS, autoResize: false });
    for (let index = 0; index < this.stored; index++) histogram.recordValueWithCount(this.micros[index]!, this.weights[index]!);
    for (const { micros, count } of this.unsampled) histogram.recordValueWithCount(micros, count);
    // Never above the exact maximum, nor below the percentile before it.
    let floorMs = 0;
    const at = (percentile: number): number => (floorMs = Math.max(floorMs, Math.min(this.maxMs, histogram.getValueAtPercentile(percentile) / 1000)));
    const summary: LatencySummary = {
      count: this.total,
      meanMs: round(this.sumMs / this.total),
      p50Ms: round(at(50)),
      p95Ms: round(at(95)),
      p99Ms: round(at(99)),
      p999Ms: round(at(99.9)),
      maxMs: round(this.maxMs),
    };
    histogram.destroy();
    return summary;
  }
}

/** Microsecond precision is what the histogram keeps. */
function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
