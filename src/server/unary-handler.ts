/**
 * Wraps an async function as a grpc-js unary handler: its result is the response, a thrown error
 * becomes the mapped gRPC status, and every failed request is logged once (expected failures at
 * `warn` with their code, unexpected ones at `error` with the stack). Successful requests are
 * not logged.
 */
import type { ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { toGrpcFailure, toServiceError } from './status.js';

export function unaryHandler<Request, Response>(
  logger: Logger,
  method: string,
  handle: (request: Request, call: ServerUnaryCall<Request, Response>) => Promise<Response>,
): (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => void {
  return (call, callback) => {
    let promise: Promise<Response>;
    try {
      promise = handle(call.request, call);
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      (response) => callback(null, response),
      (error: unknown) => {
        const failure = toGrpcFailure(error);
        if (failure.unexpected) logger.error({ method, err: error }, 'request failed unexpectedly');
        else logger.warn({ method, code: failure.code, reason: failure.details }, 'request failed');
        callback(toServiceError(failure));
      },
    );
  };
}
