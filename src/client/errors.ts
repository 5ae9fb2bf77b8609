/**
 * The client's one error type. Every failure a caller of the client library sees is a
 * `StrataClientError` whose `code` is the gRPC status name (`'NOT_FOUND'`, `'UNAVAILABLE'`...)
 * and whose message is the broker's own message when the broker sent one. Errors the client
 * raises itself (a closed producer, a bad argument, a retry budget spent) use the status name
 * the broker would have used for the same condition.
 *
 * There is exactly one mapping from grpc-js errors (`toClientError`) and one from the per-item
 * errors of ProduceStream (`fromItemError`); nothing else inspects gRPC status objects.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import { STRATA_ERROR_TRAILER } from '../common/errors.js';

/** The gRPC status names, e.g. 'NOT_FOUND'. */
export type StatusName = keyof typeof status;

export class StrataClientError extends Error {
  /** The gRPC status name, e.g. 'NOT_FOUND'. */
  readonly code: StatusName;
  /** The numeric gRPC status code (5 for NOT_FOUND). */
  readonly grpcCode: status;
  /**
   * Whether the broker answered with this error (its message is the broker's, or quotes it), as
   * opposed to a failure of the transport or of the client itself. An UNAVAILABLE from the
   * broker (a failed disk read, a shutdown) is not a broker out of reach. An error the client
   * words about a broker's error of the same code (a producer that gave up retrying, the later
   * batches of a refused one) keeps it, unless told otherwise.
   */
  readonly fromBroker: boolean;

  constructor(code: StatusName, message: string, options?: { cause?: unknown; fromBroker?: boolean }) {
    super(message, options);
    this.name = 'StrataClientError';
    this.code = code;
    this.grpcCode = status[code];
    const cause = options?.cause;
    this.fromBroker = options?.fromBroker ?? (cause instanceof StrataClientError && cause.code === code && cause.fromBroker);
  }
}

export function isStrataClientError(error: unknown, code?: StatusName): error is StrataClientError {
  return error instanceof StrataClientError && (code === undefined || error.code === code);
}

/** The status name of a numeric gRPC code; UNKNOWN for a number outside the table. */
export function statusName(code: number): StatusName {
  const name = status[code];
  return typeof name === 'string' ? (name as StatusName) : 'UNKNOWN';
}

/**
 * How grpc-js words a call that found no connection: "No connection established. Last error:
 * Error: connect ECONNREFUSED 127.0.0.1:50051. Resolution note: ". The client says it as
 * "cannot reach the broker (connect ECONNREFUSED 127.0.0.1:50051)".
 */
const NO_CONNECTION = /^No connection established\. Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/s;
export const UNREACHABLE = 'cannot reach the broker';

/**
 * Why no connection was made, as grpc-js gave it; a "Protocol error" (something answered, but
 * not as an HTTP/2 server: a web server, the broker's metrics port) says what to check instead.
 */
function unreachableReason(reason: string): string {
  if (!/^Protocol error\b/.test(reason)) return reason;
  return `${NOT_GRPC} (grpc-js: Protocol error): is it the broker's --listen address, not its --metrics-listen one?`;
}

/** How a connection refused for its protocol starts its reason (see `unreachableReason`). */
export const NOT_GRPC = 'something answers there, but not as a gRPC server';

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number' && 'details' in error;
}

/**
 * Maps anything a grpc-js call can fail with to a `StrataClientError`: a ServiceError keeps its
 * status and the server's message (`details`); a `StrataClientError` passes through; anything
 * else is UNKNOWN with the original as `cause`.
 */
export function toClientError(error: unknown): StrataClientError {
  if (error instanceof StrataClientError) return error;
  if (isServiceError(error)) {
    const details = error.details || error.message;
    const unreachable = error.code === status.UNAVAILABLE ? NO_CONNECTION.exec(details) : null;
    if (unreachable !== null) return new StrataClientError('UNAVAILABLE', `${UNREACHABLE} (${unreachableReason(unreachable[1]!)})`, { cause: error });
    const fromBroker = (error.metadata?.get(STRATA_ERROR_TRAILER).length ?? 0) > 0;
    return new StrataClientError(statusName(error.code), details, { cause: error, fromBroker });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new StrataClientError('UNKNOWN', message, { cause: error });
}

/** The error of one failed request on ProduceStream (`ProduceResponse.error`). */
export function fromItemError(item: { code?: number | null; message?: string | null }): StrataClientError {
  return new StrataClientError(statusName(item.code ?? status.UNKNOWN), item.message ?? '', { fromBroker: true });
}

/** Errors worth retrying: the request may not have reached the broker, or its answer was lost. */
export function isRetriable(error: StrataClientError): boolean {
  return error.code === 'UNAVAILABLE' || error.code === 'DEADLINE_EXCEEDED';
}

/**
 * How a stream broken under way can end besides UNAVAILABLE: grpc-js reports an HTTP/2 reset
 * that comes before it has seen the connection drop (a broker forced to shut down) as INTERNAL
 * or CANCELLED. The producer resends its batches on these codes, and the offset committer's
 * commits fail as UNAVAILABLE, which callers retry.
 */
const BROKEN_STREAM_CODES: ReadonlySet<string> = new Set(['INTERNAL', 'UNKNOWN', 'CANCELLED', 'ABORTED']);

/** Whether `error` is one a stream broken under way ends with (besides UNAVAILABLE). */
export function isBrokenStream(error: StrataClientError): boolean {
  return BROKEN_STREAM_CODES.has(error.code);
}

export function closedError(what: string): StrataClientError {
  return new StrataClientError('FAILED_PRECONDITION', `${what} is closed`);
}

export function invalidArgument(message: string): StrataClientError {
  return new StrataClientError('INVALID_ARGUMENT', message);
}
