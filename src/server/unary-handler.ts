/**
 * Wraps an async function as a grpc-js unary handler: its result is the response, a thrown error
 * becomes the mapped gRPC status, and every failed request is noted in the context's
 * `RequestFailureLog` (expected failures at `warn`, a line per method and code at most every
 * 10 s; unexpected ones at `error` with the stack). Successful requests are not logged. A request whose client gave up before the answer (it cancelled the call, or its
 * deadline passed) is counted as `CANCELLED`, whatever the handler came to: grpc-js drops the
 * answer, so the client never saw that code.
 */
import { type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { checkDecoded } from './malformed-request.js';
import type { BrokerMetrics } from './metrics.js';
import { RequestFailureLog } from './request-failure-log.js';
import type { TokenAuthenticator } from './token-auth.js';
import { type GrpcFailure, toGrpcFailure, toServiceError } from './status.js';

/** What every handler needs besides the broker: where to log, what to count, and whose calls these are. */
export interface HandlerContext {
  logger: Logger;
  metrics: BrokerMetrics | null;
  /** The tokens the calls carry, for the topics and groups each may name; absent or null: no tokens. */
  authenticator?: TokenAuthenticator | null;
  /** Where failed requests are logged; made on first use when absent. */
  failureLog?: RequestFailureLog;
}

/** Logs a failed request of `method` on `call` through the context's failure log (see `request-failure-log.ts`). */
export function logRequestFailure(context: HandlerContext, method: string, failure: GrpcFailure, error: unknown, call: { getPeer(): string }): void {
  context.failureLog ??= new RequestFailureLog(context.logger);
  context.failureLog.note(method, failure, error, call.getPeer());
}

/** Counts a finished request (any kind) by method and status code, with its latency. */
export function countRequest(context: HandlerContext, method: string, code: status, startedAt: number): void {
  const metrics = context.metrics;
  if (metrics === null) return;
  metrics.countRequest(method, code);
  metrics.requestSeconds.observe({ method }, (performance.now() - startedAt) / 1000);
}

export function unaryHandler<Request, Response>(
  context: HandlerContext,
  method: string,
  handle: (request: Request, call: ServerUnaryCall<Request, Response>) => Promise<Response>,
): (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => void {
  return (call, callback) => {
    const startedAt = performance.now();
    context.metrics?.activeCalls.inc({ method });
    let promise: Promise<Response>;
    try {
      promise = handle(checkDecoded(call.request), call);
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      (response) => {
        context.metrics?.activeCalls.dec({ method });
        countRequest(context, method, call.cancelled ? status.CANCELLED : status.OK, startedAt);
        callback(null, response);
      },
      (error: unknown) => {
        context.metrics?.activeCalls.dec({ method });
        const failure = toGrpcFailure(error);
        countRequest(context, method, call.cancelled ? status.CANCELLED : failure.code, startedAt);
        // Counted even when the client has gone: a disk that stalls past deadlines still fails.
        context.metrics?.countError(method, failure.strataCode);
        logRequestFailure(context, method, failure, error, call);
        callback(toServiceError(failure));
      },
    );
  };
}
