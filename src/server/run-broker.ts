/**
 * Starts a whole broker (storage, metadata, gRPC) from settings, and stops it in order: stop
 * taking calls, finish in-flight ones within the bound, close every log cleanly. Used by
 * `strata serve` and by the integration tests, so both run the same code.
 */
import { Broker } from '../broker/broker.js';
import { type ServeSettings, brokerOptions } from '../config/broker-options.js';
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
  stop(): Promise<{ forced: boolean }>;
}

export async function runBroker(settings: ServeSettings, logger: Logger = rootLogger): Promise<RunningBroker> {
  logger.info({ config: settings }, 'starting strata');
  const startedAt = Date.now();
  const metrics = new BrokerMetrics();
  let serving = false;
  // Probes first: alive (and not ready) while the logs recover.
  const probes = settings.metricsListen === '' ? null : await startProbeServer(settings.metricsListen, metrics, () => serving, logger);
  let broker: Broker;
  try {
    broker = await Broker.open({ ...brokerOptions(settings), logger, fs: metrics.timedFileSystem() });
  } catch (error) {
    await probes?.close();
    throw error;
  }
  const groups = new GroupCoordinator(broker, { sessionTimeoutMs: settings.groupSessionTimeoutMs, heartbeatIntervalMs: settings.groupHeartbeatIntervalMs, logger });
  let server: StrataGrpcServer;
  try {
    await groups.removeOrphanOffsets();
    server = await StrataGrpcServer.start(broker, groups, { listen: settings.listen, maxRequestBytes: settings.maxRequestBytes, logger, metrics });
  } catch (error) {
    groups.close();
    await broker.close();
    await probes?.close();
    throw error;
  }
  metrics.attach(broker, groups);
  server.setServing(true);
  serving = true;
  logger.info({ address: server.address, metricsAddress: probes?.address ?? null, startupMs: Date.now() - startedAt, orphans: broker.orphans.length }, 'listening');
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
        const result = await server.shutdown(settings.shutdownTimeoutMs);
        groups.close();
        await broker.close();
        await probes?.close();
        logger.info({ forced: result.forced }, 'stopped');
        return result;
      })();
      return stopping;
    },
  };
}
