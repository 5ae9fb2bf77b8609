/**
 * gRPC server reflection (`@grpc/reflection`, v1 and v1alpha), served within the limits the
 * broker's own services keep. Its own handler answers each request as it comes, without
 * waiting for the client to read the answers before, quotes the request in every answer, and
 * ends a `ServerReflectionInfo` stream only when the client ends its side. Needing no token, a
 * client that sent requests without reading the answers could have grown the broker's memory
 * without bound, and one that kept its stream open held every graceful shutdown up for the
 * whole --shutdown-timeout-ms. So here:
 * - a request over 1 MiB (`NON_PRODUCE_REQUEST_BYTES_MAX`, as for every method that carries no
 *   records) or that does not decode ends the stream with RESOURCE_EXHAUSTED or
 *   INVALID_ARGUMENT, before the handler sees it;
 * - while the answers written wait for the client to read them (the stream's write buffer is
 *   full), no further request is read: HTTP/2 flow control then holds the client's requests;
 * - a stream ends with UNAVAILABLE when the broker starts to stop, as health watches and
 *   subscriptions do, and one whose client reads nothing is reset a second later, as a stalled
 *   subscription is (`stalled-subscription.ts`).
 */
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import type { Server, ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { ErrorCode, StrataError } from '../common/errors.js';
import { PROTO_ROOT } from '../common/package-root.js';
import { NON_PRODUCE_REQUEST_BYTES_MAX } from '../common/request-limits.js';
import { MalformedRequest, withMalformedRequests, withRequestBytesMax } from './malformed-request.js';
import { refuseIfStalledAtStop } from './stalled-subscription.js';
import { toGrpcFailure, toServiceError } from './status.js';

export function addReflection(server: Server, stopping: AbortSignal): void {
  const protoFiles = readdirSync(join(PROTO_ROOT, 'strata', 'v1')).filter((name) => name.endsWith('.proto')).map((name) => join('strata', 'v1', name));
  const reflection = new ReflectionService(loadSync(protoFiles, { includeDirs: [PROTO_ROOT] }));
  // The service registers its handlers through addService alone: each is wrapped on the way.
  const registrar = {
    addService(definition: Parameters<Server['addService']>[0], implementation: UntypedServiceImplementation): void {
      const wrapped = Object.fromEntries(Object.entries(implementation).map(([name, handler]) => [name, servedWithinLimits(handler as (call: ServerDuplexStream<unknown, unknown>) => void, stopping)]));
      server.addService(withMalformedRequests(withRequestBytesMax(definition, NON_PRODUCE_REQUEST_BYTES_MAX)), wrapped);
    },
  };
  reflection.addToServer(registrar as unknown as Server);
}

function servedWithinLimits(handler: (call: ServerDuplexStream<unknown, unknown>) => void, stopping: AbortSignal): (call: ServerDuplexStream<unknown, unknown>) => void {
  return (call) => {
    const fail = (error: StrataError): void => {
      call.emit('error', toServiceError(toGrpcFailure(error)));
    };
    const end = (): void => fail(new StrataError(ErrorCode.UNAVAILABLE, 'the broker is shutting down'));
    if (stopping.aborted) {
      end();
      return;
    }
    stopping.addEventListener('abort', end, { once: true });
    call.once('close', () => stopping.removeEventListener('abort', end));
    refuseIfStalledAtStop(call, stopping);
    // The handler reads requests through 'data' events: a refused one ends the stream instead.
    const emit = call.emit.bind(call);
    call.emit = (event: string | symbol, ...args: unknown[]): boolean => {
      const request = args[0];
      if (event === 'data' && request instanceof MalformedRequest) {
        fail(new StrataError(request.code, request.reason));
        return true;
      }
      return emit(event, ...args);
    };
    // The handler writes an answer per request and never waits: reading waits for it instead.
    const write = call.write.bind(call) as (chunk: unknown) => boolean;
    call.write = (chunk: unknown): boolean => {
      const written = write(chunk);
      if (!written && !call.isPaused()) {
        call.pause();
        call.once('drain', () => call.resume());
      }
      return written;
    };
    handler(call);
  };
}
