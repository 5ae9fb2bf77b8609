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

export interface RunningBroker {
  broker: Broker;
  groups: GroupCoordinator;
  server: StrataGrpcServer;
  /** host:port actually bound (port 0 resolved). */
  address: string;
  stop(): Promise<{ forced: boolean }>;
}

export async function runBroker(settings: ServeSettings, logger: Logger = rootLogger): Promise<RunningBroker> {
  logger.info({ config: settings }, 'starting strata');
  const startedAt = Date.now();
  const broker = await Broker.open({ ...brokerOptions(settings), logger });
  const groups = new GroupCoordinator(broker, { sessionTimeoutMs: settings.groupSessionTimeoutMs, heartbeatIntervalMs: settings.groupHeartbeatIntervalMs, logger });
  let server: StrataGrpcServer;
  try {
    server = await StrataGrpcServer.start(broker, groups, { listen: settings.listen, maxRequestBytes: settings.maxRequestBytes, logger });
  } catch (error) {
    groups.close();
    await broker.close();
    throw error;
  }
  server.setServing(true);
  logger.info({ address: server.address, startupMs: Date.now() - startedAt, orphans: broker.orphans.length }, 'listening');
  let stopping: Promise<{ forced: boolean }> | null = null;
  return {
    broker,
    groups,
    server,
    address: server.address,
    stop: () => {
      stopping ??= (async () => {
        const result = await server.shutdown(settings.shutdownTimeoutMs);
        groups.close();
        await broker.close();
        logger.info({ forced: result.forced }, 'stopped');
        return result;
      })();
      return stopping;
    },
  };
}
