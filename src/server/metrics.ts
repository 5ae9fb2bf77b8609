/**
 * Prometheus metrics (prom-client). One `BrokerMetrics` per process, created by `runBroker` and
 * handed to the parts that count: the gRPC handlers (requests, errors by code, latency, records
 * in, bytes and records out per topic, active calls), the group coordinator (rebalances, as they
 * happen) and the instrumented file system (log write and fdatasync latency). Partition
 * figures, bytes in and group sizes and lag are read from the broker and the coordinator when
 * Prometheus scrapes, so the hot paths pay nothing for them; the lag from the offset store's
 * copy of the committed offsets in memory, as reading them from LMDB at every scrape held the
 * event loop for a second with 200,000 of them. Concurrent scrapes share one collection
 * (`scrape`). The per-partition series are written as text by themselves, not through
 * prom-client's label hashes (`PartitionSeries`). Process metrics and event-loop lag come from
 * prom-client's default collectors.
 *
 * Counters never go down while the process runs (Prometheus would read a drop as a restart and
 * rate() would spike): a counter summed over partitions keeps the counts of deleted topics
 * (`Broker.ioCallTotals`); a per-topic or per-group series goes away with its topic or group.
 */
import type { StatsFs } from 'node:fs';
import { statfs } from 'node:fs/promises';
import type { Http2Session } from 'node:http2';
import { status } from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, type Registry, collectDefaultMetrics } from 'prom-client';
import type { Broker } from '../broker/broker.js';
import { type Logger, rootLogger } from '../common/logger.js';
import { packageVersion } from '../common/package-root.js';
import type { GroupCoordinator, GroupEvents } from '../groups/group-coordinator.js';
import { type FileSystem, NodeFileSystem } from '../storage/file-system.js';
import { type PartitionFigures, PartitionSeries, PartitionSeriesRegistry } from './partition-series.js';
import type { RequestMemory } from './request-memory.js';
import type { ServerTls } from './tls-material.js';

/** Request latency: from 100 µs to a Fetch's longest long poll (`FETCH_WAIT_MAX_MS`, 5 minutes). */
const REQUEST_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/**
 * Disk calls: a write to the page cache takes some microseconds, an fdatasync on a disk with a
 * power-loss-protected cache tens of them; a stalled disk takes seconds.
 */
const DISK_BUCKETS_SECONDS = [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class BrokerMetrics {
  readonly registry: Registry = new PartitionSeriesRegistry();
  readonly requests: Counter<'method' | 'code'>;
  readonly requestSeconds: Histogram<'method'>;
  private readonly requestErrors: Counter<'method' | 'error'>;
  readonly activeCalls: Gauge<'method'>;
  /** Bytes written to open Subscribe calls and not yet sent (`strata_subscribe_unsent_bytes`), kept by the calls. */
  subscribeUnsentBytes = 0;
  private readonly connections: Gauge;
  private readonly connectionsAccepted: Counter;
  readonly fsyncSeconds: Histogram;
  readonly writeSeconds: Histogram;
  private readonly rebalances: Counter<'group'>;
  private readonly collectFailures: Counter<'metric'>;
  private broker: Broker | null = null;
  private groups: GroupCoordinator | null = null;
  private produceMemory: RequestMemory | null = null;
  private tls: ServerTls | null = null;
  /** The scrape under way's partition figures (see partitionFigures). */
  private scrapeFigures: PartitionFigures[] | null = null;
  /** The last statfs of the data directory, and when it was made (see `dataDirStats`). */
  private statsRead: { atMs: number; stats: Promise<StatsFs> } | null = null;
  /** The collection pending or under way, shared by the scrapes that ask meanwhile (see `scrape`). */
  private collecting: Promise<string> | null = null;

  /**
   * `isServing` says whether the broker takes calls: `strata_ready` follows it, as /readyz does
   * (0 during recovery and again from the start of a graceful shutdown).
   */
  constructor(
    private readonly isServing: () => boolean = () => false,
    private readonly logger: Logger = rootLogger,
  ) {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    const version = packageVersion();
    this.requests = new Counter({ name: 'strata_requests_total', help: 'gRPC requests by method and status code', labelNames: ['method', 'code'], registers });
    this.requestSeconds = new Histogram({ name: 'strata_request_duration_seconds', help: 'gRPC request latency', labelNames: ['method'], buckets: REQUEST_BUCKETS_SECONDS, registers });
    this.requestErrors = new Counter({
      name: 'strata_request_errors_total',
      help: "Requests refused or failed, by method and Strata's error code (the strata-error trailer: DISK_FULL, STORAGE_ERROR, RECORD_TOO_LARGE...; INTERNAL for an unexpected failure)",
      labelNames: ['method', 'error'],
      registers,
    });
    this.activeCalls = new Gauge({ name: 'strata_grpc_active_calls', help: 'gRPC calls in progress (streams included)', labelNames: ['method'], registers });
    this.connections = new Gauge({ name: 'strata_grpc_connections', help: 'Client connections (HTTP/2 sessions, after the TLS handshake with TLS) open now', registers });
    this.connectionsAccepted = new Counter({ name: 'strata_grpc_connections_accepted_total', help: 'Client connections (HTTP/2 sessions) accepted since the broker started', registers });
    this.fsyncSeconds = new Histogram({ name: 'strata_fsync_duration_seconds', help: "fdatasync latency of segment logs (an append's, flush.ms's, a roll's seal)", buckets: DISK_BUCKETS_SECONDS, registers });
    this.writeSeconds = new Histogram({
      name: 'strata_log_write_duration_seconds',
      help: 'Latency of each write call of the appends to segment logs, direct or buffered, on the event loop or the thread pool (a large direct write is one call per staging buffer)',
      buckets: DISK_BUCKETS_SECONDS,
      registers,
    });
    this.rebalances = new Counter({ name: 'strata_group_rebalances_total', help: 'Consumer-group target assignment changes', labelNames: ['group'], registers });

    // Written as text by themselves (see partition-series.ts): 80,000 series at 10,000 partitions.
    const figures = (): readonly PartitionFigures[] => this.partitionFigures();
    const partitionGauge = (name: string, help: string, value: (state: PartitionFigures) => number): void => {
      new PartitionSeries({ name, help, type: 'gauge', samples: [{ labels: {}, value }], figures, registers });
    };
    partitionGauge('strata_partition_log_end_offset', 'Offset the next record of the partition will get', (state) => state.logEndOffset);
    partitionGauge('strata_partition_high_watermark', 'End of the durable, visible part of the partition', (state) => state.highWatermark);
    partitionGauge('strata_partition_log_start_offset', 'First offset still stored', (state) => state.logStartOffset);
    partitionGauge('strata_partition_size_bytes', 'Bytes of log data of the partition', (state) => state.sizeBytes);
    partitionGauge('strata_partition_segments', 'Segments of the partition\'s log (open segments: from the log start to the active one)', (state) => state.segmentCount);
    partitionGauge(
      'strata_partition_fenced',
      '1 while the partition refuses reads and appends (fenced: corrupt data, a failed write or fdatasync, or a failed segment roll; DescribeTopic gives the reason), else 0',
      (state) => (state.error === '' ? 0 : 1),
    );
    const metrics = this;
    // Read at every scrape, so it follows a certificate renewed on SIGHUP; no series without TLS.
    new Gauge({
      name: 'strata_tls_certificate_expiry_timestamp_seconds',
      help: "When the TLS certificate chain the broker serves ends (Unix time, seconds): its certificate's end, or a CA certificate's in it that ends first; by the chain's file, as read at start or on the last SIGHUP that took",
      labelNames: ['file'],
      registers,
      collect() {
        this.reset();
        if (metrics.tls !== null) this.set({ file: metrics.tls.material.files.certFile }, Date.parse(metrics.tls.material.validTo) / 1000);
      },
    });
    new Counter({
      name: 'strata_bytes_in_total',
      help: 'Record batch bytes appended to the topic\'s logs since the broker started, as stored (the same on both produce paths; duplicates of idempotent retries are not stored, so not counted)',
      labelNames: ['topic'],
      registers,
      collect() {
        this.reset();
        for (const state of metrics.partitionFigures()) this.inc({ topic: state.topic }, state.writtenBytes.direct + state.writtenBytes.buffered);
      },
    });
    new Counter({
      name: 'strata_records_in_total',
      help: 'Records appended to the topic\'s logs since the broker started (duplicates of idempotent retries are not appended, so not counted, whatever the acks)',
      labelNames: ['topic'],
      registers,
      collect() {
        this.reset();
        for (const state of metrics.partitionFigures()) this.inc({ topic: state.topic }, state.appendedRecords);
      },
    });
    const servedCounter = (name: string, help: string, value: (served: { bytes: number; records: number }) => number): void => {
      new Counter({
        name,
        help,
        labelNames: ['topic'],
        registers,
        collect() {
          this.reset();
          // A topic's series appears once one of its partitions has been read.
          for (const state of metrics.partitionFigures()) if (value(state.served) > 0) this.inc({ topic: state.topic }, value(state.served));
        },
      });
    };
    servedCounter('strata_bytes_out_total', 'Record batch bytes served to readers', (served) => served.bytes);
    servedCounter('strata_records_out_total', 'Records served to readers', (served) => served.records);
    new PartitionSeries({
      name: 'strata_partition_written_bytes_total',
      help: 'Log bytes appended since the broker started, by write mode (direct: O_DIRECT, --write-mode direct)',
      type: 'counter',
      samples: [
        { labels: { mode: 'direct' }, value: (state) => state.writtenBytes.direct },
        { labels: { mode: 'buffered' }, value: (state) => state.writtenBytes.buffered },
      ],
      figures,
      registers,
    });
    new Counter({
      name: 'strata_log_io_calls_total',
      help: 'Log writes (one per group of appends written) and fdatasyncs of the append path since the broker started, by the thread that made them (event_loop: small ones, --small-io event-loop); deleted topics\' calls included',
      labelNames: ['operation', 'thread'],
      registers,
      collect() {
        this.reset();
        const broker = metrics.broker;
        if (broker === null || !broker.ready) return;
        const totals = broker.ioCallTotals();
        for (const operation of ['write', 'fdatasync'] as const) {
          this.inc({ operation, thread: 'event_loop' }, totals.eventLoop[operation]);
          this.inc({ operation, thread: 'thread_pool' }, totals.threadPool[operation]);
        }
      },
    });
    new Counter({
      name: 'strata_log_write_failures_total',
      help: "Failed group writes to segment logs (a failed segment roll counts as one) since the broker started, by the error the appends got (DISK_FULL, STORAGE_ERROR, PARTITION_FENCED); whatever the acks, so also those of acks=none appends, answered before their write; deleted topics' included",
      labelNames: ['error'],
      registers,
      collect() {
        this.reset();
        const broker = metrics.broker;
        if (broker === null || !broker.ready) return;
        for (const [error, count] of broker.writeFailureTotals()) this.inc({ error }, count);
      },
    });
    new Gauge({
      name: 'strata_tail_cache_bytes',
      help: 'Bytes of log held in the tail cache, the newest written bytes of all partitions (its ring of --tail-cache-bytes stays allocated)',
      registers,
      collect() {
        this.set(metrics.broker?.tailCache.bytes ?? 0);
      },
    });
    new Counter({
      name: 'strata_tail_cache_reads_total',
      help: 'Log reads served from the tail cache (hit) and from the segment files (miss)',
      labelNames: ['result'],
      registers,
      collect() {
        this.reset();
        const cache = metrics.broker?.tailCache;
        this.inc({ result: 'hit' }, cache?.hits ?? 0);
        this.inc({ result: 'miss' }, cache?.misses ?? 0);
      },
    });
    new Gauge({
      name: 'strata_index_cache_bytes',
      help: "Bytes of sealed segments' indexes loaded in memory, all partitions (bounded by --index-cache-bytes, unless that many are in use at once)",
      registers,
      collect() {
        this.set(metrics.broker?.indexCache.bytes ?? 0);
      },
    });
    new Counter({
      name: 'strata_index_cache_loads_total',
      help: "Sealed segments' indexes read from their files into memory; many more loads than segments read means --index-cache-bytes is too small for the reads",
      registers,
      collect() {
        this.reset();
        this.inc(metrics.broker?.indexCache.loads ?? 0);
      },
    });
    new Counter({
      name: 'strata_index_cache_unloads_total',
      help: "Sealed segments' indexes dropped from memory to stay within --index-cache-bytes",
      registers,
      collect() {
        this.reset();
        this.inc(metrics.broker?.indexCache.unloads ?? 0);
      },
    });
    new Gauge({
      name: 'strata_group_lag_records',
      help: 'Records produced but not yet committed, per consumer group and topic',
      labelNames: ['group', 'topic'],
      registers,
      collect() {
        this.reset();
        for (const entry of metrics.openGroups()?.lagByTopic() ?? []) this.set({ group: entry.groupId, topic: entry.topic }, entry.lag);
      },
    });
    new Gauge({
      name: 'strata_group_members',
      help: 'Members of each consumer group',
      labelNames: ['group'],
      registers,
      collect() {
        this.reset();
        // Every group ListGroups shows, those known only by committed offsets (after a restart) with 0.
        for (const group of metrics.openGroups()?.listGroups() ?? []) this.set({ group: group.groupId }, group.members);
      },
    });
    new Gauge({
      name: 'strata_produce_memory_bytes',
      help: 'Bytes of produce requests read and not yet answered, across all connections (held near --produce-memory-bytes: passed by up to one request per ProduceStream)',
      registers,
      collect() {
        this.set(metrics.produceMemory?.bytes ?? 0);
      },
    });
    new Counter({
      name: 'strata_produce_memory_pauses_total',
      help: 'Times a ProduceStream stopped being read because the produce memory (--produce-memory-bytes) was full',
      registers,
      collect() {
        this.reset();
        this.inc(metrics.produceMemory?.pauses ?? 0);
      },
    });
    new Gauge({
      name: 'strata_subscribe_unsent_bytes',
      help: 'Bytes written to open Subscribe calls and not yet sent, across all calls (a reader that stops reading holds up to about twice its max_bytes)',
      registers,
      collect() {
        this.set(metrics.subscribeUnsentBytes);
      },
    });
    new Gauge({
      name: 'strata_build_info',
      help: "Always 1, labelled with the broker's version and the Node.js version running it (for a fleet's versions, and to join on)",
      labelNames: ['version', 'node'],
      registers,
      collect() {
        this.set({ version, node: process.versions.node }, 1);
      },
    });
    new Gauge({
      name: 'strata_data_dir_free_bytes',
      help: "Bytes the broker may still write on its data directory's file system (what an unprivileged process may use): at 0, produce is refused with DISK_FULL",
      registers,
      async collect() {
        this.reset();
        const stats = await metrics.dataDirStats();
        if (stats !== null) this.set(stats.bavail * stats.bsize);
      },
    });
    new Gauge({
      name: 'strata_data_dir_capacity_bytes',
      help: "Size of the data directory's file system",
      registers,
      async collect() {
        this.reset();
        const stats = await metrics.dataDirStats();
        if (stats !== null) this.set(stats.blocks * stats.bsize);
      },
    });
    new Gauge({
      name: 'strata_ready',
      help: '1 while the broker accepts requests, as /readyz answers 200: 0 during recovery and from the start of a graceful shutdown',
      registers,
      collect() {
        this.set(metrics.isServing() ? 1 : 0);
      },
    });
    this.collectFailures = new Counter({
      name: 'strata_metrics_collect_failures_total',
      help: "Scrapes in which a metric's figures could not be read (an LMDB read of the groups' offsets that failed, say): that metric's series are left out of the scrape (one without labels reads 0), the others are served",
      labelNames: ['metric'],
      registers,
    });
    this.guardCollectors();
  }

  /**
   * Makes a metric whose figures cannot be read (its `collect` throws or rejects) leave its
   * series out of the scrape (prom-client gives one without labels a 0), counted in
   * `strata_metrics_collect_failures_total`, instead of failing
   * the whole scrape: otherwise one unreadable figure would hide `strata_ready` and
   * `strata_partition_fenced` too, and Prometheus would see only a target down. The log says
   * when a metric starts failing and when it reads again, not at every scrape.
   */
  private guardCollectors(): void {
    const failing = new Set<string>();
    const failed = (metric: { name: string; reset(): void }, error: unknown): void => {
      metric.reset();
      this.collectFailures.inc({ metric: metric.name });
      if (failing.has(metric.name)) return;
      failing.add(metric.name);
      this.logger.warn({ err: error, metric: metric.name }, 'reading a metric failed: it is left out of scrapes until it reads again');
    };
    const succeeded = (name: string): void => {
      if (failing.delete(name)) this.logger.info({ metric: name }, 'the metric reads again');
    };
    for (const metric of this.registry.getMetricsAsArray() as unknown as GuardedMetric[]) {
      const collect = metric.collect;
      if (collect === undefined) continue;
      metric.collect = function (this: GuardedMetric): void | Promise<void> {
        try {
          const result = collect.call(this);
          if (!(result instanceof Promise)) return succeeded(metric.name);
          return result.then(
            () => succeeded(metric.name),
            (error: unknown) => failed(metric, error),
          );
        } catch (error) {
          return failed(metric, error);
        }
      };
    }
  }

  /**
   * The registry's text, for a scrape. Collecting reads every partition and group on the event
   * loop, so every scrape that asks while a collection is pending or under way gets that
   * collection's text: N scrapers (several Prometheus servers, or anyone who reaches the port,
   * which asks for no credentials) cost one pass. The collection starts at the next check phase
   * of the event loop (`setImmediate`), not at once: the collectors run in one synchronous pass,
   * which would be over before the next request is read, whereas the requests read in the same
   * turn (those sent together, or while the previous collection held the loop) share a deferred
   * one, and a /healthz read in that turn is answered before it.
   */
  scrape(): Promise<string> {
    this.collecting ??= new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.registry.metrics())
      .finally(() => {
        this.collecting = null;
      });
    return this.collecting;
  }

  /**
   * Counts a refused or failed request by Strata's error code (`strataCode`, sent in the
   * `strata-error` trailer), INTERNAL for an unexpected failure: what tells a full disk from a
   * producer over its limits, which share RESOURCE_EXHAUSTED.
   */
  countError(method: string, strataCode: string | undefined): void {
    this.requestErrors.inc({ method, error: strataCode ?? 'INTERNAL' });
  }

  /**
   * A request refused before its handler ran (an interceptor's refusal): counted with its code,
   * and not timed, since no handler's time was spent (on a stream, the time since the call
   * began would be the stream's age).
   */
  countRefusal(method: string, code: status, strataCode: string | undefined): void {
    this.countRequest(method, code);
    this.countError(method, strataCode);
  }

  /** Counts a finished request in `strata_requests_total` by its status code, without timing it. */
  countRequest(method: string, code: status): void {
    this.requests.inc({ method, code: status[code] ?? String(code) });
  }

  /** Counts a client connection, open until its session closes. */
  countConnection(session: Http2Session): void {
    this.connections.inc();
    this.connectionsAccepted.inc();
    session.once('close', () => this.connections.dec());
  }

  /** Connects the produce memory gauge and pause counter to the server's produce memory. */
  watchProduceMemory(memory: RequestMemory): void {
    this.produceMemory = memory;
  }

  /** Exposes when the certificate `tls` serves ends (`strata_tls_certificate_expiry_timestamp_seconds`). */
  watchTls(tls: ServerTls): void {
    this.tls = tls;
  }

  /** Connects the scrape-time collectors to the running broker. */
  attach(broker: Broker, groups: GroupCoordinator): void {
    this.broker = broker;
    this.groups = groups;
  }

  /** The data directory's file-system figures, read once a second at most (two gauges ask at each scrape); null before a broker is attached. */
  private dataDirStats(): Promise<StatsFs | null> {
    const dataDir = this.broker?.dataDir;
    if (dataDir === undefined) return Promise.resolve(null);
    const now = performance.now();
    if (this.statsRead === null || now - this.statsRead.atMs > 1_000) this.statsRead = { atMs: now, stats: statfs(dataDir) };
    return this.statsRead.stats;
  }

  /**
   * The group coordinator while the broker is ready, else null: its figures read the broker's
   * topics and the offsets store, which a closing broker refuses and closes. So once the broker
   * starts closing its logs a scrape leaves the group series out, as it does the partition
   * figures, instead of failing.
   */
  private openGroups(): GroupCoordinator | null {
    return this.broker?.ready ? this.groups : null;
  }

  /** For the group coordinator: counts rebalances as they happen, drops a forgotten group's series. */
  groupEvents(): GroupEvents {
    return {
      rebalanced: (groupId) => this.rebalances.inc({ group: groupId }),
      forgotten: (groupId) => this.rebalances.remove({ group: groupId }),
    };
  }

  /**
   * Every partition's figures, walked once per scrape: prom-client runs all the collectors of a
   * scrape in one synchronous pass, so the walk is kept until the next microtask and the eleven
   * collectors that need it share it.
   */
  private partitionFigures(): readonly PartitionFigures[] {
    if (this.scrapeFigures === null) {
      this.scrapeFigures = this.walkPartitions();
      queueMicrotask(() => {
        this.scrapeFigures = null;
      });
    }
    return this.scrapeFigures;
  }

  private walkPartitions(): PartitionFigures[] {
    const broker = this.broker;
    if (broker === null || !broker.ready) return [];
    return broker.listTopics().flatMap(({ name }) => broker.describeTopic(name).partitions.map((partition) => ({ topic: name, ...partition })));
  }

  /**
   * The real file system, with every write to a segment's log (`writev`, `writevSync`) timed
   * into `strata_log_write_duration_seconds` and every fdatasync of one into
   * `strata_fsync_duration_seconds`. The small files written whole (index files at a roll,
   * recovery checkpoints, producer-state snapshots, markers) are not timed: each is a new file
   * whose fdatasync also commits its metadata, and a broker of many quiet partitions writes
   * several a second, which would make the histograms say little of what appends wait for.
   */
  timedFileSystem(): FileSystem {
    return new TimedFileSystem(this.writeSeconds, this.fsyncSeconds);
  }
}

class TimedFileSystem extends NodeFileSystem {
  /** Writes the small files (`writeFileDurably`) without timing them. */
  private readonly untimed = new NodeFileSystem();

  constructor(
    private readonly writeHistogram: Histogram,
    private readonly fsyncHistogram: Histogram,
  ) {
    super();
  }

  override writeFileDurably(path: string, data: Buffer): Promise<void> {
    return this.untimed.writeFileDurably(path, data);
  }

  override async writev(fd: number, buffers: readonly Buffer[], position: number): Promise<number> {
    const end = this.writeHistogram.startTimer();
    try {
      return await super.writev(fd, buffers, position);
    } finally {
      end();
    }
  }

  override writevSync(fd: number, buffers: readonly Buffer[], position: number): number {
    const end = this.writeHistogram.startTimer();
    try {
      return super.writevSync(fd, buffers, position);
    } finally {
      end();
    }
  }

  override async fdatasync(fd: number): Promise<void> {
    const end = this.fsyncHistogram.startTimer();
    try {
      await super.fdatasync(fd);
    } finally {
      end();
    }
  }

  override fdatasyncSync(fd: number): void {
    const end = this.fsyncHistogram.startTimer();
    try {
      super.fdatasyncSync(fd);
    } finally {
      end();
    }
  }
}

/** What `guardCollectors` needs of a registered metric (prom-client's types do not expose `collect` as writable). */
interface GuardedMetric {
  name: string;
  reset(): void;
  collect?: (this: GuardedMetric) => void | Promise<void>;
}
