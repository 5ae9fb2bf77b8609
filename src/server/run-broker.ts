/**
 * Starts a whole broker (storage, metadata, gRPC) from settings, and stops it in order: stop
 * taking calls, finish in-flight ones within the bound, close every log cleanly. Used by
 * `strata serve` and by the integration tests, so both run the same code.
 *
 * A start can be called off: `startup` aborts (SIGTERM or SIGINT before the broker serves).
 * Between phases the start checks it and, if aborted, closes what it opened, newest first, and
 * rejects with `StartAborted`. Log recovery itself cannot be interrupted from here, and need not
 * be: it is crash-safe (the next start recovers again). So an abort during recovery rejects at
 * once, after closing the probe server, and the caller may exit the process mid-recovery; if the
 * process lives on, the logs are closed once they have opened.
 */
import { Broker } from '../broker/broker.js';
import { type ServeSettings, brokerOptions } from '../config/broker-options.js';
import { isLoopbackHost, parseListenAddress } from '../common/listen-address.js';
import { rootLogger, type Logger } from '../common/logger.js';
import { StrataGrpcServer } from './grpc-server.js';
import { GroupCoordinator } from '../groups/group-coordinator.js';
import { BrokerMetrics } from './metrics.js';
import { startProbeServer } from './probe-server.js';

export interface RunningBroker {
  broker: Broker;
  groups: GroupCoordinator;
  server: StrataGrpcServer;
  /** host:port actually bound (port 0 resolved). */
  address: string;
  /** host:port of /metrics, /healthz and /readyz; null when disabled. */
  metricsAddress: string | null;
  /**
   * Stops taking calls and drains in-flight ones within --shutdown-timeout-ms (`forced` when
   * the bound cut them off), then closes the groups, the logs and the probe server. The probe
   * server is closed even when closing the logs fails (that error is passed on): left open, it
   * would keep the process alive.
   */
  stop(): Promise<{ forced: boolean }>;
}

/** The start was called off (`startup` aborted) during `phase`; what it had opened is closed. */
export class StartAborted extends Error {
  constructor(readonly phase: string) {
    super(`start-up stopped during ${phase}`);
    this.name = 'StartAborted';
  }
}

export async function runBroker(settings: ServeSettings, logger: Logger = rootLogger, startup: AbortSignal | null = null): Promise<RunningBroker> {
  logger.info({ config: loggedSettings(settings) }, 'starting strata');
  const startedAt = Date.now();
  let serving = false;
  const metrics = new BrokerMetrics(() => serving, logger);
  if (settings.tls !== null) metrics.watchTls(settings.tls);
  // Probes first: alive (and not ready) while the logs recover.
  const probes = settings.metricsListen === '' ? null : await startProbeServer(settings.metricsListen, metrics, () => serving, logger);
  /** How to close what the start has opened so far, oldest first. */
  const opened: (() => Promise<void>)[] = probes === null ? [] : [() => probes.close()];
  try {
    checkStartup(startup, 'the probe server start');
    const broker = await openUnlessAborted(Broker.open({ ...brokerOptions(settings), logger, fs: metrics.timedFileSystem() }), startup, logger);
    opened.push(() => broker.close());
    const groups = new GroupCoordinator(broker, {
      sessionTimeoutMs: settings.groupSessionTimeoutMs,
      heartbeatIntervalMs: settings.groupHeartbeatIntervalMs,
      offsetsRetentionMs: settings.offsetsRetentionMs,
      offsetsRetentionCheckIntervalMs: settings.retentionCheckIntervalMs,
      logger,
      events: metrics.groupEvents(),
      tokens: settings.authenticator !== null,
    });
    opened.push(() => groups.close());
    await groups.removeOrphanOffsets();
    await groups.checkAgainstRecoveredLogs();
    checkStartup(startup, 'the check of committed offsets');
    const server = await StrataGrpcServer.start(broker, groups, {
      listen: settings.listen,
      maxRequestBytes: settings.maxRequestBytes,
      produceMemoryBytes: settings.produceMemoryBytes,
      logger,
      metrics,
      tls: settings.tls,
      authenticator: settings.authenticator,
    });
    opened.push(async () => void (await server.shutdown(0)));
    checkStartup(startup, 'the gRPC bind');
    metrics.attach(broker, groups);
    server.setServing(true);
    serving = true;
    if (settings.authenticator !== null && settings.tls === null && !isLoopbackHost(parseListenAddress(settings.listen).host)) {
      logger.warn(
        { listen: settings.listen },
        'tokens are asked for, but gRPC is served in plaintext beyond this machine: anyone on the way can read them. Serve TLS (--tls-cert-file, --tls-key-file) unless the network is trusted',
      );
    }
    logger.info({ address: server.address, metricsAddress: probes?.address ?? null, startupMs: Date.now() - startedAt, orphans: broker.orphans.length, tls: settings.tls !== null, tokens: settings.authenticator !== null }, 'listening');
    let stopping: Promise<{ forced: boolean }> | null = null;
    return {
      broker,
      groups,
      server,
      address: server.address,
      metricsAddress: probes?.address ?? null,
      stop: () => {
        stopping ??= (async () => {
          serving = false;
          try {
            const result = await server.shutdown(settings.shutdownTimeoutMs);
            await groups.close();
            await broker.close();
            logger.info({ forced: result.forced }, 'stopped');
            return result;
          } finally {
            await probes?.close();
          }
        })();
        return stopping;
      },
    };
  } catch (error) {
    // The start's error is the one to report; a failure to close is logged.
    for (const close of opened.reverse()) {
      await close().catch((closeError: unknown) => logger.error({ err: closeError }, 'closing after a failed start failed'));
    }
    throw error;
  }
}

/** The settings as the start-up line logs them: what TLS and tokens are in use, never a key. */
function loggedSettings(settings: ServeSettings): Record<string, unknown> {
  return {
    ...settings,
    tls: settings.tls === null ? null : { ...settings.tls.material.files, certificateValidTo: settings.tls.material.validTo },
    authenticator: settings.authenticator === null ? null : { file: settings.authenticator.file, tokens: settings.authenticator.tokenCount },
  };
}

function checkStartup(startup: AbortSignal | null, phase: string): void {
  if (startup?.aborted) throw new StartAborted(phase);
}

/**
 * The opened broker; rejects with StartAborted as soon as `startup` aborts. The open (recovery)
 * then goes on in the background, and its broker is closed once it is there, if the process
 * lives that long.
 */
async function openUnlessAborted(opening: Promise<Broker>, startup: AbortSignal | null, logger: Logger): Promise<Broker> {
  if (startup === null) return opening;
  let onAbort = (): void => undefined;
  const aborted = new Promise<null>((resolve) => {
    onAbort = () => resolve(null);
    if (startup.aborted) resolve(null);
    else startup.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const broker = await Promise.race([opening, aborted]);
    if (broker !== null) return broker;
  } finally {
    startup.removeEventListener('abort', onAbort);
  }
  opening.then(
    (late) => late.close().catch((error: unknown) => logger.error({ err: error }, 'closing the logs opened after the start was called off failed')),
    () => undefined, // the start was called off: how its open ended no longer matters
  );
  throw new StartAborted('log recovery');
}
