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
import { type Server, type ServerUnaryCall, type ServerWritableStream, type ServiceDefinition, type sendUnaryData, status } from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';
import { NON_PRODUCE_REQUEST_BYTES_MAX } from '../common/request-limits.js';
import { withRequestBytesMax } from './malformed-request.js';
import { boundedDetails, toServiceError } from './status.js';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';
type WatchedStatus = ServingStatus | 'SERVICE_UNKNOWN';

interface HealthRequest {
  service: string;
}
interface HealthResponse {
  status: WatchedStatus;
}
type WatchCall = ServerWritableStream<HealthRequest, HealthResponse>;

/** The longest service name a NOT_FOUND message quotes. */
const QUOTED_NAME_LENGTH_MAX = 200;

export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  /** Open Watch calls, with the known service each follows (null for an unknown name). */
  private readonly watches = new Map<WatchCall, string | null>();

  /** `services`: the names with a status ('' is the server as a whole), all NOT_SERVING at first. */
  constructor(services: readonly string[], stopping: AbortSignal) {
    for (const service of services) this.statuses.set(service, 'NOT_SERVING');
    stopping.addEventListener('abort', () => this.endWatches(), { once: true });
  }

  /** Open Watch calls. */
  get watchCount(): number {
    return this.watches.size;
  }

  setStatus(serving: ServingStatus): void {
    for (const service of this.statuses.keys()) this.statuses.set(service, serving);
    for (const [call, service] of this.watches) if (service !== null) call.write({ status: serving });
  }

  addToServer(server: Server): void {
    // Health requests carry a name only: held to the limit of every other non-produce request.
    const definition = withRequestBytesMax(healthServiceDefinition as unknown as ServiceDefinition, NON_PRODUCE_REQUEST_BYTES_MAX);
    server.addService(definition, {
      check: (call: ServerUnaryCall<HealthRequest, HealthResponse>, callback: sendUnaryData<HealthResponse>) => {
        const known = this.statuses.get(call.request.service);
        if (known !== undefined) callback(null, { status: known });
        else callback({ code: status.NOT_FOUND, details: boundedDetails(`no health status for service "${quoted(call.request.service)}": this server has ${[...this.statuses.keys()].filter((name) => name !== '').join(', ')} and "" (the server as a whole)`) });
      },
      watch: (call: WatchCall) => {
        const known = this.statuses.get(call.request.service);
        this.watches.set(call, known === undefined ? null : call.request.service);
        const forget = (): void => void this.watches.delete(call);
        call.on('cancelled', forget);
        call.on('close', forget);
        call.on('error', forget);
        call.write({ status: known ?? 'SERVICE_UNKNOWN' });
      },
      list: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<{ statuses: Record<string, HealthResponse> }>) => {
        callback(null, { statuses: Object.fromEntries([...this.statuses].map(([service, serving]) => [service, { status: serving }])) });
      },
    });
  }

  /** Ends every Watch: a watcher learns the server is going rather than waiting on a dead stream. */
  private endWatches(): void {
    for (const call of [...this.watches.keys()]) {
      this.watches.delete(call);
      call.emit('error', toServiceError({ code: status.UNAVAILABLE, details: 'the broker is shutting down', unexpected: false }));
    }
  }
}

function quoted(name: string): string {
  return name.length <= QUOTED_NAME_LENGTH_MAX ? name : `${name.slice(0, QUOTED_NAME_LENGTH_MAX)}…`;
}
