/**
 * The disk calls a broker made during a measured phase (a local broker, or the one at --server
 * given --server-metrics): its fdatasyncs and its log writes, from its Prometheus histograms
 * `strata_fsync_duration_seconds` and `strata_log_write_duration_seconds` (its `/metrics`
 * endpoint), read before the phase's load and after it. A latency tail that came with slow disk
 * calls points at the disk; one that came without them points elsewhere (the event loops, the
 * scheduler, garbage collection). A call is timed from JavaScript, so one made on libuv's thread
 * pool includes its wait for a thread. Both kinds are needed: a record waits for its group's
 * write and then for its fdatasync, and either can be the slow one.
 *
 * A histogram counts by bucket, so the report gives how many calls took longer than 1, 5, 10 and
 * 100 ms (bucket bounds of the broker's histograms), not exact times. 5 ms is the e2e p99.9
 * target: one call over it holds up every record that arrives meanwhile. Both reads are outside
 * the load: an e2e phase's counts include its warm-up.
 */

const METRICS = { fdatasync: 'strata_fsync_duration_seconds', write: 'strata_log_write_duration_seconds' } as const;
const READ_TIMEOUT_MS = 5_000;
/** The thresholds reported, in ms; each must be a bucket bound of the broker's histograms. */
const THRESHOLDS_MS = [1, 5, 10, 100] as const;

export type DiskCall = keyof typeof METRICS;

/** One reading of a histogram: cumulative counts by upper bound (seconds; Infinity for +Inf). */
export interface CallHistogram {
  buckets: Map<number, number>;
  count: number;
  sumSeconds: number;
}

/** Each kind's histogram; null where the broker's metrics lack it (an older broker: no writes). */
export type DiskCallHistograms = Record<DiskCall, CallHistogram | null>;

export interface BrokerCalls {
  count: number;
  /** Mean duration (ms); null when there was none. */
  meanMs: number | null;
  over1Ms: number;
  over5Ms: number;
  over10Ms: number;
  over100Ms: number;
}

/** Each kind's calls in the phase; null where a reading lacked its histogram. */
export type BrokerDiskCalls = Record<DiskCall, BrokerCalls | null>;

/** Reads both histograms from the broker's metrics endpoint (`HOST:PORT`). */
export async function readDiskCallHistograms(metricsAddress: string): Promise<DiskCallHistograms> {
  let response: Response;
  try {
    response = await fetch(`http://${metricsAddress}/metrics`, { signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
  } catch (error) {
    // fetch's own message is only "fetch failed"; the reason is its cause's.
    const cause = (error as Error).cause;
    throw cause instanceof Error ? new Error(`${(error as Error).message}: ${cause.message}`, { cause: error }) : error;
  }
  if (!response.ok) throw new Error(`the broker's /metrics answered HTTP ${response.status}`);
  return parseDiskCallHistograms(await response.text());
}

/**
 * Both histograms' series in a Prometheus text exposition. Throws when it has neither: the
 * address is not a Strata broker's metrics endpoint.
 */
export function parseDiskCallHistograms(text: string): DiskCallHistograms {
  const lines = text.split('\n');
  const histograms = { fdatasync: parseHistogram(lines, METRICS.fdatasync), write: parseHistogram(lines, METRICS.write) };
  if (histograms.fdatasync === null && histograms.write === null) {
    throw new Error(`the metrics have neither ${METRICS.fdatasync} nor ${METRICS.write}: is this a Strata broker's --metrics-listen address?`);
  }
  return histograms;
}

function parseHistogram(lines: readonly string[], metric: string): CallHistogram | null {
  const buckets = new Map<number, number>();
  let count: number | null = null;
  let sumSeconds: number | null = null;
  for (const line of lines) {
    if (!line.startsWith(metric)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    const rest = line.slice(metric.length);
    if (rest.startsWith('_bucket{')) {
      const bound = /le="([^"]+)"/.exec(rest)?.[1];
      if (bound !== undefined) buckets.set(bound === '+Inf' ? Number.POSITIVE_INFINITY : Number(bound), value);
    } else if (rest.startsWith('_count ')) {
      count = value;
    } else if (rest.startsWith('_sum ')) {
      sumSeconds = value;
    }
  }
  if (count === null || sumSeconds === null || buckets.size === 0) return null;
  return { buckets, count, sumSeconds };
}

/**
 * What happened between two readings of the same broker's histograms. Throws if a count fell:
 * the broker restarted in between, and the difference means nothing.
 */
export function diskCallsBetween(before: DiskCallHistograms, after: DiskCallHistograms): BrokerDiskCalls {
  return { fdatasync: callsBetween(before.fdatasync, after.fdatasync, METRICS.fdatasync), write: callsBetween(before.write, after.write, METRICS.write) };
}

function callsBetween(before: CallHistogram | null, after: CallHistogram | null, metric: string): BrokerCalls | null {
  if (before === null || after === null) return null;
  const count = after.count - before.count;
  if (count < 0) throw new Error(`the broker's ${metric} count fell from ${before.count} to ${after.count}: it restarted during the phase`);
  const over = (thresholdMs: number): number => {
    const bound = thresholdMs / 1000;
    const atMostAfter = after.buckets.get(bound);
    const atMostBefore = before.buckets.get(bound);
    if (atMostAfter === undefined || atMostBefore === undefined) throw new Error(`the broker's ${metric} histogram has no bucket at ${thresholdMs} ms`);
    return count - (atMostAfter - atMostBefore);
  };
  const [over1Ms, over5Ms, over10Ms, over100Ms] = THRESHOLDS_MS.map(over) as [number, number, number, number];
  return {
    count,
    meanMs: count > 0 ? Math.round(((after.sumSeconds - before.sumSeconds) / count) * 1e6) / 1e3 : null,
    over1Ms,
    over5Ms,
    over10Ms,
    over100Ms,
  };
}
