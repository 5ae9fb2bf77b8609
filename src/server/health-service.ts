/**
 * The standard gRPC health service (`grpc.health.v1.Health`: Check, Watch, List), for load
 * balancers, Kubernetes gRPC probes and meshes. The service definition is grpc-health-check's;
 * the implementation is this one, because that package's keeps an entry for every service name
 * a Watch ever asked for (a client sending random names grows the broker's memory without
 * bound), echoes the name whole in its NOT_FOUND details, and leaves Watch streams open at
 * shutdown, so a graceful stop waits for its bound whenever a mesh is watching.
 *
 * Here only the broker's own services have a status. A Check of another name is NOT_FOUND; a
 * Watch of one gets SERVICE_UNKNOWN and stays open (as the protocol says) without being
 * remembered by name. Every Watch ends with UNAVAILABLE when the server begins to stop, after
 * it has been told NOT_SERVING.
 */
import { type Server, type ServerUnaryCall, type ServerWritableStream, type ServiceDefinition, type ServiceError, type sendUnaryData } from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';
import { ErrorCode, StrataError } from '../common/errors.js';
import { NON_PRODUCE_REQUEST_BYTES_MAX } from '../common/request-limits.js';
import { MalformedRequest, checkDecoded, withMalformedRequests, withRequestBytesMax } from './malformed-request.js';
import { toGrpcFailure, toServiceError } from './status.js';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';
type WatchedStatus = ServingStatus | 'SERVICE_UNKNOWN';

interface HealthRequest {
  service: string;
}
interface HealthResponse {
  status: WatchedStatus;
}
type WatchCall = ServerWritableStream<HealthRequest | MalformedRequest, HealthResponse>;

/** The longest service name a NOT_FOUND message quotes. */
const QUOTED_NAME_LENGTH_MAX = 200;

export class HealthService {
  private serving: ServingStatus = 'NOT_SERVING';
  /** Open Watch calls, each with whether it follows a service of this server. */
  private readonly watches = new Map<WatchCall, boolean>();

  /** `services`: the names with a status ('' is the server as a whole), NOT_SERVING at first. */
  constructor(
    private readonly services: ReadonlySet<string>,
    private readonly stopping: AbortSignal,
  ) {
    stopping.addEventListener('abort', () => this.endWatches(), { once: true });
  }

  /** Open Watch calls. */
  get watchCount(): number {
    return this.watches.size;
  }

  setStatus(serving: ServingStatus): void {
    this.serving = serving;
    for (const [call, known] of this.watches) if (known) call.write({ status: serving });
  }

  addToServer(server: Server): void {
    // Health requests carry a name only: held to the limit of every other non-produce request,
    // and refused with the same codes.
    const definition = withMalformedRequests(withRequestBytesMax(healthServiceDefinition as unknown as ServiceDefinition, NON_PRODUCE_REQUEST_BYTES_MAX));
    server.addService(definition, {
      check: (call: ServerUnaryCall<HealthRequest | MalformedRequest, HealthResponse>, callback: sendUnaryData<HealthResponse>) => {
        try {
          const { service } = checkDecoded(call.request);
          if (!this.services.has(service)) {
            const names = [...this.services].filter((name) => name !== '').join(', ');
            throw new StrataError(ErrorCode.NOT_FOUND, `no health status for service "${quoted(service)}": this server has ${names} and "" (the server as a whole)`);
          }
          callback(null, { status: this.serving });
        } catch (error) {
          callback(toServiceError(toGrpcFailure(error)));
        }
      },
      watch: (call: WatchCall) => {
        let service: string;
        try {
          service = checkDecoded(call.request).service;
        } catch (error) {
          call.emit('error', toServiceError(toGrpcFailure(error)));
          return;
        }
        // A watch that starts once the stop has begun ends at once.
        if (this.stopping.aborted) {
          call.emit('error', shuttingDown());
          return;
        }
        const known = this.services.has(service);
        this.watches.set(call, known);
        const forget = (): void => void this.watches.delete(call);
        call.on('cancelled', forget);
        call.on('close', forget);
        call.on('error', forget);
        call.write({ status: known ? this.serving : 'SERVICE_UNKNOWN' });
      },
      list: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<{ statuses: Record<string, HealthResponse> }>) => {
        callback(null, { statuses: Object.fromEntries([...this.services].map((service) => [service, { status: this.serving }])) });
      },
    });
  }

  /** Ends every Watch: a watcher learns the server is going rather than waiting on a dead stream. */
  private endWatches(): void {
    for (const call of [...this.watches.keys()]) {
      this.watches.delete(call);
      call.emit('error', shuttingDown());
    }
  }
}

function shuttingDown(): Partial<ServiceError> {
  return toServiceError(toGrpcFailure(new StrataError(ErrorCode.UNAVAILABLE, 'the broker is shutting down')));
}

function quoted(name: string): string {
  return name.length <= QUOTED_NAME_LENGTH_MAX ? name : `${name.slice(0, QUOTED_NAME_LENGTH_MAX)}…`;
}
