/**
 * Node.js (V8) flags the broker should run with. Every launcher this project ships passes them:
 * `npm start`, the Dockerfile, the systemd unit (and so the Kubernetes manifests, through the
 * image), and the benchmarks' local broker. A test checks each of them; `strata serve` logs a
 * warning when started without them.
 *
 * --initial-old-space-size=64: V8 counts the memory of Buffers towards the limit that starts a
 * full garbage collection, and the broker's own heap is small (about 20 MB), so the default limit
 * made it collect the whole heap after every few MB of requests: 4 full collections a second at
 * 10 MB/s, each pausing the event loop for milliseconds, and 136 while writing 1 GB. Starting the
 * limit at 64 MB lets the young generation free those short-lived buffers first. Measured on the
 * project's test machine: full collections 136 → 1 for 1 GB of 1 KiB records, 257 → 423 MB/s;
 * e2e p95 at 10,000 1 KiB records/s 5–8 ms → 0.9 ms; peak RSS unchanged (150 MiB). The flag
 * sets where V8 starts, not a cap: the heap still grows and shrinks as it needs.
 *
 * --no-parallel-scavenge: young-generation collections (scavenges) run on the main thread alone.
 * Nearly all the broker's young objects die young (a scavenge finds 10–60 KB alive of 13 MB), so
 * there is little work to share out, and the other core is busy with clients and the disk. At
 * 10,000 1 KiB records/s, a scavenge paused the broker 1.1–1.3 ms on average: 0.5–0.7 ms of
 * scavenging, and on every other one 0.6–0.8 ms more of freeing dead Buffers' memory. With the
 * flag: 0.4–0.6 ms, and the Buffers' memory no longer freed within the pause (V8's trace shows
 * it; why the parallel scavenger did it there, we did not find out). Every request that
 * arrives during a pause waits it out: in e2e runs the share of records over 2 ms fell from
 * 0.37–0.60 % to 0.19–0.33 % (6 interleaved pairs, 1 KiB), and p99.9 at 100 B from 4.4–7.5 ms
 * to 3.3–3.5 ms (3 pairs). Throughput did not drop: 100 B produce ran at 3.23–3.36 M records/s
 * with it, against 2.98–3.16 M for the build before (2 pairs).
 *
 * --max-semi-space-size=8: each half of the young generation grows to 8 MiB at most (V8's default
 * here is 16 MiB). Young objects die young whatever the size, so collecting twice as often costs
 * little, and the two halves are resident memory. Measured on the project's test machine, three
 * interleaved pairs: broker RSS under 1 KiB produce 170–175 MiB against 181–186 MiB, at 509–622
 * against 497–602 MB/s; 100 B produce 3.06–3.41 against 2.42–3.61 M records/s; e2e at 10,000
 * 1 KiB records/s (two pairs) RSS 137–144 against 171–172 MiB, p99 1.08–1.14 against 1.21–1.26 ms.
 */
export const BROKER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64', '--no-parallel-scavenge', '--max-semi-space-size=8'];

/** The broker flags this process was started without. */
export function missingBrokerNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return BROKER_NODE_FLAGS.filter((flag) => !execArgv.includes(flag));
}
