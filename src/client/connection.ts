/**
 * One connection to a broker: a single grpc-js channel to `server` (host:port) that carries both
 * services (Log and Admin), typed promise wrappers for unary calls, and the 64-bit conversions
 * every client component uses.
 *
 * Contracts:
 * - Every unary call has a deadline (`deadlineMs`, default 30 s, or the caller's own), so a hung
 *   broker fails a call instead of stalling it. Streams are long-lived; their users bound each
 *   request themselves (the producer times out unacknowledged batches).
 * - The channel reconnects on its own with exponential backoff between
 *   `initialReconnectBackoffMs` and `maxReconnectBackoffMs`; calls made while it is down fail
 *   with UNAVAILABLE (after waiting for the deadline when `waitForReady` is set).
 * - Responses may be any size (fetches return up to 64 MiB).
 * - Offsets, timestamps and producer ids are int64 on the wire and safe JavaScript numbers here;
 *   a wire value beyond 2^53 - 1 is refused with DATA_LOSS rather than rounded.
 * - `tls` is passed to grpc-js as given (TLS material; absent: plaintext); `token` goes with
 *   every call as `authorization: Bearer <token>` metadata, for a broker that asks for tokens
 *   (`--auth-tokens-file`); `interceptors` are client interceptors (tests inject faults).
 *
 * Components (Producer, Consumer, Admin) either open their own connection from
 * `ConnectionOptions` or share one passed as `{ connection }`; a shared connection is closed by
 * whoever created it, not by the components.
 */
import {
  Client,
  Metadata,
  credentials,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientDuplexStream,
  type ClientReadableStream,
  type Interceptor,
  type MethodDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import Long from 'long';
import type { strata } from '../generated/strata.js';
import { adminServiceDefinition, logServiceDefinition } from '../server/service-definitions.js';
import { StrataClientError, closedError, invalidArgument, toClientError } from './errors.js';
import { TIMER_DELAY_MAX_MS } from '../common/clock.js';
import { timerDelayMs } from './option-checks.js';

/**
 * The service definitions the server uses, typed with the decoded message classes: their
 * deserialisers are the generated `decode` functions, which return class instances with every
 * field present (the shared definitions only promise the optional-field property shapes).
 */
function typed<Request, Response>(definition: object): MethodDefinition<Request, Response> {
  return definition as MethodDefinition<Request, Response>;
}

export const methods = {
  initProducer: typed<strata.v1.InitProducerRequest, strata.v1.InitProducerResponse>(logServiceDefinition.initProducer),
  produceStream: typed<strata.v1.ProduceRequest, strata.v1.ProduceResponse>(logServiceDefinition.produceStream),
  /** ProduceStream whose requests are already encoded (see produce-request.ts): passed through. */
  produceStreamEncoded: {
    ...typed<Buffer, strata.v1.ProduceResponse>(logServiceDefinition.produceStream),
    requestSerialize: (request: Buffer): Buffer => request,
  } as MethodDefinition<Buffer, strata.v1.ProduceResponse>,
  fetch: typed<strata.v1.FetchRequest, strata.v1.FetchResponse>(logServiceDefinition.fetch),
  listOffsets: typed<strata.v1.ListOffsetsRequest, strata.v1.ListOffsetsResponse>(logServiceDefinition.listOffsets),
  subscribe: typed<strata.v1.SubscribeRequest, strata.v1.SubscribeResponse>(logServiceDefinition.subscribe),
  createTopic: typed<strata.v1.CreateTopicRequest, strata.v1.TopicDescription>(adminServiceDefinition.createTopic),
  deleteTopic: typed<strata.v1.DeleteTopicRequest, strata.v1.DeleteTopicResponse>(adminServiceDefinition.deleteTopic),
  listTopics: typed<strata.v1.ListTopicsRequest, strata.v1.ListTopicsResponse>(adminServiceDefinition.listTopics),
  describeTopic: typed<strata.v1.DescribeTopicRequest, strata.v1.TopicDescription>(adminServiceDefinition.describeTopic),
  alterTopicConfigs: typed<strata.v1.AlterTopicConfigsRequest, strata.v1.TopicDescription>(adminServiceDefinition.alterTopicConfigs),
  addPartitions: typed<strata.v1.AddPartitionsRequest, strata.v1.TopicDescription>(adminServiceDefinition.addPartitions),
} as const;

export const DEFAULT_DEADLINE_MS = 30_000;
export const KEEPALIVE_TIME_MS = 20_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;
export const DEFAULT_INITIAL_RECONNECT_BACKOFF_MS = 100;
export const DEFAULT_MAX_RECONNECT_BACKOFF_MS = 10_000;

export interface TlsOptions {
  /** Root certificates to trust (PEM); the system roots when absent. */
  ca?: Buffer;
  /** Client certificate chain (PEM), for mutual TLS. */
  cert?: Buffer;
  /** Client private key (PEM), for mutual TLS. */
  key?: Buffer;
}

export interface ConnectionOptions {
  /** The broker, as host:port. */
  server: string;
  /** TLS settings; absent or false connects in plaintext. */
  tls?: TlsOptions | false;
  /** The token a broker started with `--auth-tokens-file` asks for; sent with every call. */
  token?: string;
  /** Default deadline of each unary call (ms). */
  deadlineMs?: number;
  /** Reconnect backoff of the channel (ms). */
  initialReconnectBackoffMs?: number;
  maxReconnectBackoffMs?: number;
  /** grpc-js client interceptors, applied to every call (tests inject faults with them). */
  interceptors?: Interceptor[];
  /** Further grpc-js channel options; they override the ones the connection sets. */
  channelOptions?: ChannelOptions;
}

/** What a component accepts: options to open its own connection, or one to share. */
export type ConnectionSource = ConnectionOptions | { connection: Connection };

export interface UnaryCallOptions {
  /** Deadline of this call (ms from now); the connection's `deadlineMs` when absent. */
  deadlineMs?: number;
  /** Cancels the call (it then fails with CANCELLED). */
  signal?: AbortSignal;
}

export class Connection {
  readonly server: string;
  readonly deadlineMs: number;
  private readonly client: Client;
  /** The token, as the metadata of every call (one object: grpc-js copies it when a call starts). */
  private readonly metadata: Metadata;
  private closed = false;

  constructor(options: ConnectionOptions) {
    if (typeof options.server !== 'string' || !/^.+:\d+$/.test(options.server)) {
      throw invalidArgument(`server must be "host:port", got ${JSON.stringify(options.server)}`);
    }
    this.server = options.server;
    this.metadata = new Metadata();
    if (options.token !== undefined) {
      // A header value: printable ASCII, or HTTP/2 refuses the whole call with a message of its own.
      if (typeof options.token !== 'string' || !isValidToken(options.token)) {
        throw invalidArgument('token must be a non-empty string of printable ASCII characters without spaces');
      }
      this.metadata.set('authorization', `Bearer ${options.token}`);
    }
    // Also the producer's request timeout and its bound on ending its stream: a timer's delay.
    this.deadlineMs = timerDelayMs(options.deadlineMs ?? DEFAULT_DEADLINE_MS, 'deadlineMs', 1);
    const channelOptions: ChannelOptions = {
      'grpc.max_receive_message_length': -1,
      // Fetches and subscriptions bring up to MiBs per message: a 64 KiB HTTP/2 window would
      // make every one of them wait for round trips.
      'grpc-node.flow_control_window': 8 * 1024 * 1024,
      'grpc.max_send_message_length': -1,
      // Subscriptions and produce streams have no deadline: HTTP/2 pings while calls are open
      // notice a connection that died without a reset (the call then fails UNAVAILABLE and is
      // retried) within KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS.
      'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      'grpc.initial_reconnect_backoff_ms': reconnectBackoffMs(options.initialReconnectBackoffMs ?? DEFAULT_INITIAL_RECONNECT_BACKOFF_MS, 'initialReconnectBackoffMs'),
      'grpc.max_reconnect_backoff_ms': reconnectBackoffMs(options.maxReconnectBackoffMs ?? DEFAULT_MAX_RECONNECT_BACKOFF_MS, 'maxReconnectBackoffMs'),
      ...(options.channelOptions ?? {}),
    };
    this.client = new Client(options.server, channelCredentials(options.tls), {
      ...channelOptions,
      ...(options.interceptors !== undefined ? { interceptors: options.interceptors } : {}),
    });
  }

  /** Calls a unary method with a deadline; rejects with a `StrataClientError`. */
  unary<Request, Response>(method: MethodDefinition<Request, Response>, request: Request, options: UnaryCallOptions = {}): Promise<Response> {
    if (this.closed) return Promise.reject(closedError(`the connection to ${this.server}`));
    if (options.signal?.aborted) return Promise.reject(new StrataClientError('CANCELLED', 'the call was cancelled before it started'));
    const callOptions: CallOptions = { deadline: Date.now() + (options.deadlineMs ?? this.deadlineMs) };
    return new Promise<Response>((resolve, reject) => {
      const call = this.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        this.metadata,
        callOptions,
        (error: ServiceError | null, response?: Response) => {
          options.signal?.removeEventListener('abort', cancel);
          if (error) reject(toClientError(error));
          else resolve(response as Response);
        },
      );
      const cancel = (): void => call.cancel();
      options.signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  /** Opens a bidirectional stream (no deadline: its user bounds each request). */
  bidiStream<Request, Response>(method: MethodDefinition<Request, Response>): ClientDuplexStream<Request, Response> {
    if (this.closed) throw closedError(`the connection to ${this.server}`);
    return this.client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, this.metadata, {});
  }

  /** Opens a server-streaming call (no deadline: its user cancels it when done). */
  serverStream<Request, Response>(method: MethodDefinition<Request, Response>, request: Request): ClientReadableStream<Response> {
    if (this.closed) throw closedError(`the connection to ${this.server}`);
    return this.client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, request, this.metadata, {});
  }

  /**
   * Closes the channel: new calls fail at once. Calls already started are not cancelled by
   * grpc-js; each ends with its answer, its deadline, or its own cancel. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** Whether `token` can go in an HTTP/2 header: printable ASCII without spaces. */
export function isValidToken(token: string): boolean {
  return /^[\x21-\x7e]+$/.test(token);
}

function channelCredentials(tls: TlsOptions | false | undefined): ChannelCredentials {
  if (tls === undefined || tls === false) return credentials.createInsecure();
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/**
 * The longest reconnect backoff: grpc-js hands it to setTimeout with up to 20 % of jitter
 * added, and Node.js takes a delay over 2^31 - 1 ms as 1 ms (a reconnect every millisecond).
 */
const RECONNECT_BACKOFF_MAX_MS = Math.floor(TIMER_DELAY_MAX_MS / 1.2);

function reconnectBackoffMs(value: number, name: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 1 || value > RECONNECT_BACKOFF_MAX_MS) {
    throw invalidArgument(`${name} must be from 1 to ${RECONNECT_BACKOFF_MAX_MS} ms (grpc-js adds up to 20 % to it, and Node.js timers take at most ${TIMER_DELAY_MAX_MS} ms), got ${value}`);
  }
  return value;
}

/** Opens a connection from options, or takes a shared one; `owned` says who closes it. */
export function resolveConnection(source: ConnectionSource): { connection: Connection; owned: boolean } {
  if (typeof source !== 'object' || source === null) throw invalidArgument('options are required: { server } (host:port), or { connection } to share one');
  if ('connection' in source) return { connection: source.connection, owned: false };
  return { connection: new Connection(source), owned: true };
}

// ---------------------------------------------------------------------------------------------
// 64-bit integers.

/** A wire int64 as a safe JavaScript number; DATA_LOSS naming `field` when it is not one. */
export function longToNumber(value: Long | number | null | undefined, field: string): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw unsafe(field, String(value));
    return value;
  }
  if (value.greaterThan(Number.MAX_SAFE_INTEGER) || value.lessThan(Number.MIN_SAFE_INTEGER)) throw unsafe(field, value.toString());
  return value.toNumber();
}

/** A safe JavaScript integer as a wire int64 (uint64 when `unsigned`). */
export function numberToLong(value: number, field: string, unsigned = false): Long {
  if (!Number.isSafeInteger(value) || (unsigned && value < 0)) {
    throw invalidArgument(`${field} must be a ${unsigned ? 'non-negative ' : ''}safe integer, got ${value}`);
  }
  return Long.fromNumber(value, unsigned);
}

function unsafe(field: string, text: string): StrataClientError {
  return new StrataClientError('DATA_LOSS', `${field} ${text} is outside the range of a safe JavaScript integer (|n| <= 2^53 - 1)`);
}
