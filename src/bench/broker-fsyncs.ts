/**
 * The fdatasyncs a local broker made during a measured phase, from its Prometheus histogram
 * `strata_fsync_duration_seconds` (its `/metrics` endpoint), read before the phase's load and
 * after it. A latency tail that came with slow fdatasyncs points at the disk; one that came
 * without them points elsewhere (the event loops, the scheduler, garbage collection).
 *
 * The histogram counts by bucket, so the report gives how many syncs took longer than 1, 10 and
 * 100 ms (bucket bounds of the broker's histogram), not exact times. Both reads are outside the
 * load: an e2e phase's count includes its warm-up.
 */

const METRIC = 'strata_fsync_duration_seconds';
const READ_TIMEOUT_MS = 5_000;
/** The thresholds reported, in ms; each must be a bucket bound of the broker's histogram. */
const THRESHOLDS_MS = [1, 10, 100] as const;

/** One reading of the histogram: cumulative counts by upper bound (seconds; Infinity for +Inf). */
export interface FsyncHistogram {
  buckets: Map<number, number>;
  count: number;
  sumSeconds: number;
}

export interface BrokerFsyncs {
  count: number;
  /** Mean duration (ms); null when there was none. */
  meanMs: number | null;
  over1Ms: number;
  over10Ms: number;
  over100Ms: number;
}

/** Reads the histogram from the broker's metrics endpoint (`HOST:PORT`). */
export async function readFsyncHistogram(metricsAddress: string): Promise<FsyncHistogram> {
  const response = await fetch(`http://${metricsAddress}/metrics`, { signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`the broker's /metrics answered HTTP ${response.status}`);
  return parseFsyncHistogram(await response.text());
}

/** The histogram's series in a Prometheus text exposition. */
export function parseFsyncHistogram(text: string): FsyncHistogram {
  const buckets = new Map<number, number>();
  let count: number | null = null;
  let sumSeconds: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(METRIC)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    const rest = line.slice(METRIC.length);
    if (rest.startsWith('_bucket{')) {
      const bound = /le="([^"]+)"/.exec(rest)?.[1];
      if (bound !== undefined) buckets.set(bound === '+Inf' ? Number.POSITIVE_INFINITY : Number(bound), value);
    } else if (rest.startsWith('_count ')) {
      count = value;
    } else if (rest.startsWith('_sum ')) {
      sumSeconds = value;
    }
  }
  if (count === null || sumSeconds === null || buckets.size === 0) throw new Error(`the broker's metrics have no ${METRIC} histogram`);
  return { buckets, count, sumSeconds };
}

/** What happened between two readings of the same broker's histogram. */
export function fsyncsBetween(before: FsyncHistogram, after: FsyncHistogram): BrokerFsyncs {
  const count = after.count - before.count;
  const over = (thresholdMs: number): number => {
    const bound = thresholdMs / 1000;
    const atMostAfter = after.buckets.get(bound);
    const atMostBefore = before.buckets.get(bound);
    if (atMostAfter === undefined || atMostBefore === undefined) throw new Error(`the broker's ${METRIC} histogram has no bucket at ${thresholdMs} ms`);
    return count - (atMostAfter - atMostBefore);
  };
  const [over1Ms, over10Ms, over100Ms] = THRESHOLDS_MS.map(over) as [number, number, number];
  return {
    count,
    meanMs: count > 0 ? Math.round(((after.sumSeconds - before.sumSeconds) / count) * 1e6) / 1e3 : null,
    over1Ms,
    over10Ms,
    over100Ms,
  };
}
