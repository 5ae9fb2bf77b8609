/**
 * Retention policy: which sealed segments to delete. Pure: it looks at segment sizes and
 * timestamps and the time now, and changes nothing, so it is tested without files.
 *
 * Whole segments only, oldest first. A segment goes when its newest record is older than
 * `retention.ms`, or while the log without it is still at least `retention.bytes` (Kafka's rule:
 * never go below the limit by deleting). The active segment goes by the same rules, as in Kafka
 * (the log rolls first, so a topic that stopped receiving records does not keep its last
 * segment for ever), unless it is empty.
 */
import type { LogConfig } from './log-config.js';

export interface RetentionCandidate {
  sizeBytes: number;
  /** Largest record timestamp in the segment, -1 if unknown. */
  maxTimestamp: number;
}

/**
 * How many of the oldest segments to delete. `segments` is oldest first, active last; all of
 * them means the active one too, which the log must roll before deleting it.
 */
export function segmentsToDelete(
  segments: readonly RetentionCandidate[],
  config: Pick<LogConfig, 'retentionMs' | 'retentionBytes'>,
  nowMs: number,
): number {
  let totalBytes = 0;
  for (const segment of segments) totalBytes += segment.sizeBytes;
  let count = 0;
  while (count < segments.length) {
    const segment = segments[count]!;
    if (count === segments.length - 1 && segment.sizeBytes === 0) break;
    const expired = config.retentionMs >= 0 && segment.maxTimestamp >= 0 && nowMs - segment.maxTimestamp > config.retentionMs;
    const oversized = config.retentionBytes >= 0 && totalBytes - segment.sizeBytes >= config.retentionBytes;
    if (!expired && !oversized) break;
    totalBytes -= segment.sizeBytes;
    count++;
  }
  return count;
}
