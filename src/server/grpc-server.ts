/**
 * The gRPC server: Strata's services, the standard health service (`grpc.health.v1`) and server
 * reflection, so generic tools (grpcurl, grpcui) can list and call the API.
 *
 * Shutdown: stop accepting calls, let in-flight calls finish (bounded by `shutdownTimeoutMs`,
 * then cancel what is left), then close the broker (flush, indexes, clean-shutdown markers).
 */
import { Server, setLogger } from '@grpc/grpc-js';
import { format } from 'node:util';
import { setMaxListeners } from 'node:events';
import type { Http2Session } from 'node:http2';
import type { Broker } from '../broker/broker.js';
import { formatListenAddress, parseListenAddress } from '../common/listen-address.js';
import type { Logger } from '../common/logger.js';
import { NON_PRODUCE_REQUEST_BYTES_MAX } from '../common/request-limits.js';
import { withMalformedRequests, withRequestBytesMax } from './malformed-request.js';
import type { BrokerMetrics } from './metrics.js';
import { adminServiceHandlers } from './admin-service.js';
import { logServiceHandlers } from './log-service.js';
import { RequestFailureLog } from './request-failure-log.js';
import { RequestMemory } from './request-memory.js';
import { groupsServiceHandlers } from './groups-service.js';
import type { GroupCoordinator } from '../groups/group-coordinator.js';
import { bindFailure } from './bind-failure.js';
import { transportRefusals } from './transport-refusals.js';
import { HealthService } from './health-service.js';
import { addReflection } from './reflection.js';
import { type ServerTls, serverCredentials } from './tls-material.js';
import { type TokenAuthenticator, tokenAuthInterceptor } from './token-auth.js';
import {
  ADMIN_SERVICE_NAME,
  GROUPS_SERVICE_NAME,
  LOG_SERVICE_NAME,
  adminServiceDefinition,
  groupsServiceDefinition,
  logServerDefinition,
} from './service-definitions.js';

/** Health is reported for the whole server ('') and for each service. */
const SERVICE_NAMES = ['', LOG_SERVICE_NAME, ADMIN_SERVICE_NAME, GROUPS_SERVICE_NAME];

export interface GrpcServerOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  /**
   * Largest produce request accepted; larger ones fail with RESOURCE_EXHAUSTED. Other requests
   * are limited to `NON_PRODUCE_REQUEST_BYTES_MAX` (or this, if smaller).
   */
  maxRequestBytes: number;
  /** Bound on the bytes of produce requests read and not yet answered, across all calls (see RequestMemory). */
  produceMemoryBytes: number;
  logger: Logger;
  metrics: BrokerMetrics | null;
  /** TLS of the listener; absent or null: plaintext. */
  tls?: ServerTls | null;
  /** The tokens calls must carry (see token-auth.ts); absent or null: none is asked for. */
  authenticator?: TokenAuthenticator | null;
}

/** Receive window per HTTP/2 stream and per connection (see `widenFlowControlWindows`). */
export const FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;

/**
 * Raises the HTTP/2 receive windows of every connection the server accepts from the protocol
 * default of 64 KiB to `FLOW_CONTROL_WINDOW_BYTES`. With 64 KiB a producer can have only one
 * 64 KiB batch on the wire per round trip of the event loop, which caps produce throughput far
 * below what the disk and the log can take. grpc-js (1.14) offers no server option for this
 * (its client has `grpc-node.flow_control_window`), so this reaches its listening HTTP/2
 * servers; `test/server/flow-control.test.ts` fails if a grpc-js upgrade moves them.
 * `onSession` is handed each connection too (the metrics count them).
 */
export function widenFlowControlWindows(server: Server, onSession?: (session: Http2Session) => void): boolean {
  const http2Servers = (server as unknown as { http2Servers?: Map<NodeJS.EventEmitter, unknown> }).http2Servers;
  if (!(http2Servers instanceof Map)) return false;
  for (const http2Server of http2Servers.keys()) {
    http2Server.on('session', (session: Http2Session) => {
      session.settings({ initialWindowSize: FLOW_CONTROL_WINDOW_BYTES });
      session.setLocalWindowSize(FLOW_CONTROL_WINDOW_BYTES);
      onSession?.(session);
    });
  }
  return http2Servers.size > 0;
}

export class StrataGrpcServer {
  private constructor(
    private readonly server: Server,
    readonly address: string,
    readonly port: number,
    private readonly health: HealthService,
    private readonly stopping: AbortController,
    private readonly failureLog: RequestFailureLog,
  ) {}

  static async start(broker: Broker, coordinator: GroupCoordinator, options: GrpcServerOptions): Promise<StrataGrpcServer> {
    const logger = options.logger.child({ subsystem: 'grpc' });
    const failureLog = new RequestFailureLog(logger);
    const context = { logger, metrics: options.metrics, authenticator: options.authenticator ?? null, failureLog };
    const server = new Server({
      'grpc.max_receive_message_length': options.maxRequestBytes,
      'grpc.max_send_message_length': -1,
      // Pings notice clients that vanished without a reset, so their subscriptions end.
      'grpc.keepalive_time_ms': 60_000,
      'grpc.keepalive_timeout_ms': 20_000,
      // First: it patches the call object grpc-js hands the first interceptor.
      interceptors: [
        transportRefusals(context, options.maxRequestBytes),
        ...(options.authenticator ? [tokenAuthInterceptor(options.authenticator, context)] : []),
      ],
    });
    routeGrpcLog(context.logger);
    const stopping = new AbortController();
    // Every long poll, subscription and pipelined stream listens to it: thousands are normal.
    setMaxListeners(0, stopping.signal);
    // Only produce requests carry records and take up to maxRequestBytes (grpc-js enforces that).
    const log = withRequestBytesMax(logServerDefinition, NON_PRODUCE_REQUEST_BYTES_MAX, ['produce', 'produceStream']);
    const admin = withRequestBytesMax(adminServiceDefinition, NON_PRODUCE_REQUEST_BYTES_MAX);
    const groups = withRequestBytesMax(groupsServiceDefinition, NON_PRODUCE_REQUEST_BYTES_MAX);
    const produceMemory = new RequestMemory(options.produceMemoryBytes);
    options.metrics?.watchProduceMemory(produceMemory);
    server.addService(withMalformedRequests(log), logServiceHandlers(broker, context, stopping.signal, produceMemory));
    server.addService(withMalformedRequests(admin), adminServiceHandlers(broker, context));
    server.addService(withMalformedRequests(groups), groupsServiceHandlers(coordinator, context, stopping.signal));
    const health = new HealthService(new Set(SERVICE_NAMES), stopping.signal);
    health.addToServer(server);
    addReflection(server, stopping.signal);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(options.listen, serverCredentials(options.tls ?? null), (error, boundPort) => (error ? reject(bindFailure('--listen', options.listen, error)) : resolve(boundPort))),
    );
    const metrics = options.metrics;
    widenFlowControlWindows(server, metrics === null ? undefined : (session) => metrics.countConnection(session));
    const instance = new StrataGrpcServer(server, formatListenAddress(parseListenAddress(options.listen).host, port), port, health, stopping, failureLog);
    instance.setServing(broker.ready);
    return instance;
  }

  /** Open grpc.health.v1 Watch calls. */
  get healthWatchCount(): number {
    return this.health.watchCount;
  }

  setServing(serving: boolean): void {
    this.health.setStatus(serving ? 'SERVING' : 'NOT_SERVING');
  }

  /** Stops accepting calls and waits for in-flight ones up to `timeoutMs`, then cancels them. */
  async shutdown(timeoutMs: number): Promise<{ forced: boolean }> {
    this.setServing(false);
    this.stopping.abort(); // long polls answer now, subscriptions end with UNAVAILABLE
    let forced = false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        forced = true;
        this.server.forceShutdown();
        resolve();
      }, timeoutMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.failureLog.dispose(); // failures left out of the log since its last lines are told now
    return { forced };
  }
}

/**
 * grpc-js's own diagnostics go to the broker's log instead of straight to stderr, where a line
 * such as "E No address added out of total 1 resolved" came before the one line a failed
 * start prints. grpc-js has one logger for the process: it is set once, by the first server.
 * Asked for its tracing (GRPC_TRACE, GRPC_VERBOSITY), grpc-js keeps writing to stderr itself.
 */
function routeGrpcLog(logger: Logger): void {
  if (grpcLogRouted || process.env.GRPC_TRACE !== undefined || process.env.GRPC_VERBOSITY !== undefined || process.env.GRPC_NODE_VERBOSITY !== undefined) return;
  grpcLogRouted = true;
  setLogger({
    error: (message?: unknown, ...rest: unknown[]) => {
      const text = `grpc-js: ${format(message, ...rest)}`;
      // A failed bind: bindAsync fails with the same words and their causes, which the start
      // reports as its one line (bindFailure); an error line here would only say it twice.
      if (text.startsWith(BIND_FAILED)) logger.debug(text);
      else logger.error(text);
    },
    info: (message?: unknown, ...rest: unknown[]) => logger.info(`grpc-js: ${format(message, ...rest)}`),
    debug: (message?: unknown, ...rest: unknown[]) => logger.debug(`grpc-js: ${format(message, ...rest)}`),
  });
}

let grpcLogRouted = false;

/** How grpc-js logs a bind that added no address (before bindAsync fails with it). */
const BIND_FAILED = 'grpc-js: No address added out of total';
