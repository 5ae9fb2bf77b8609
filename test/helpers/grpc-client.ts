/**
 * A thin promise-based gRPC client over the same service definitions the server uses, for
 * integration tests that speak the wire protocol directly. Calls carry a deadline, so a hung
 * server fails the test instead of stalling it.
 */
import { type Client, type ClientReadableStream, type Interceptor, InterceptingCall, Metadata, type MethodDefinition, type ServiceError, credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { strata } from '../../src/generated/strata.js';
import { adminServiceDefinition, groupsServiceDefinition, logServiceDefinition } from '../../src/server/service-definitions.js';

export const v1 = strata.v1;

const DEFINITIONS = { log: logServiceDefinition, admin: adminServiceDefinition, groups: groupsServiceDefinition };

type UnaryMethod = (request: unknown, options: { deadline: number }, callback: (error: ServiceError | null, response: unknown) => void) => void;

export class TestClient {
  readonly log: Client;
  readonly admin: Client;
  readonly groups: Client;

  /** With `token`, every call carries it as `authorization: Bearer <token>`. */
  constructor(address: string, token?: string) {
    const interceptors = token === undefined ? [] : [bearer(token)];
    const LogClient = makeGenericClientConstructor(logServiceDefinition, 'strata.v1.Log');
    const AdminClient = makeGenericClientConstructor(adminServiceDefinition, 'strata.v1.Admin');
    this.log = new LogClient(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, interceptors });
    this.admin = new AdminClient(address, credentials.createInsecure(), { interceptors });
    const GroupsClient = makeGenericClientConstructor(groupsServiceDefinition, 'strata.v1.Groups');
    this.groups = new GroupsClient(address, credentials.createInsecure(), { interceptors });
  }

  /**
   * Calls a unary method (`'log.produce'`, `'admin.createTopic'`, `'groups.heartbeat'`...) with a
   * deadline. A Buffer request is sent as it is: wire bytes made by hand.
   */
  call<Response>(method: string, request: unknown, timeoutMs = 20_000): Promise<Response> {
    const [service, name] = method.split('.') as ['log' | 'admin' | 'groups', string];
    const client = this[service] as unknown as Record<string, UnaryMethod>;
    return new Promise<Response>((resolve, reject) => {
      const options = { deadline: Date.now() + timeoutMs };
      const callback = (error: ServiceError | null, response: unknown): void => (error ? reject(error) : resolve(response as Response));
      if (!Buffer.isBuffer(request)) {
        client[name]!.call(client, request, options, callback);
        return;
      }
      const definition = DEFINITIONS[service][name as keyof (typeof DEFINITIONS)[typeof service]] as unknown as MethodDefinition<Buffer, unknown>;
      this[service].makeUnaryRequest(definition.path, (bytes: Buffer) => bytes, definition.responseDeserialize, request, options, callback);
    });
  }

  /**
   * The status a Subscribe call ends with; fails if it delivers data instead. A Buffer request is
   * sent as it is (wire bytes made by hand), as with `call`.
   */
  subscribeError(request: unknown, timeoutMs = 10_000): Promise<ServiceError> {
    const options = { deadline: Date.now() + timeoutMs };
    const stream = Buffer.isBuffer(request)
      ? this.log.makeServerStreamRequest('/strata.v1.Log/Subscribe', (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, request, new Metadata(), options)
      : (this.log as unknown as { subscribe(request: unknown, options: { deadline: number }): ClientReadableStream<unknown> }).subscribe(request, options);
    return new Promise((resolve, reject) => {
      stream.on('data', () => {
        stream.cancel();
        reject(new Error('expected the subscription to fail, but it delivered data'));
      });
      stream.on('error', (error: ServiceError) => resolve(error));
    });
  }

  close(): void {
    this.log.close();
    this.admin.close();
    this.groups.close();
  }
}

/** A client interceptor that adds `token` to each call's metadata. */
function bearer(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/** The gRPC error of a call that must fail (fails the test if it succeeds). */
export async function grpcError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('expected the call to fail, but it succeeded');
}
