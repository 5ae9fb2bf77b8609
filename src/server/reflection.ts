/**
 * gRPC server reflection (`@grpc/reflection`, v1 and v1alpha), served within bounds of its own.
 * Its handler answers each request as it comes, without waiting for the client to read the
 * answers before, quotes the request in every answer, and ends a `ServerReflectionInfo` stream
 * only when the client ends its side; and reflection needs no token. A client that sent
 * requests without reading the answers could have grown the broker's memory without bound, and
 * one that kept its stream open held every graceful shutdown up for the whole
 * --shutdown-timeout-ms. So here:
 * - a request over `REFLECTION_REQUEST_BYTES_MAX` (a symbol or file name needs far less) or
 *   that does not decode ends the stream with RESOURCE_EXHAUSTED or INVALID_ARGUMENT before the
 *   handler sees it, and nothing read after it reaches the handler;
 * - while the answers written wait for the client to read them (the stream's write buffer is
 *   full), no further request is read: HTTP/2 flow control then holds the client's requests;
 * - at most `REFLECTION_STREAMS_MAX` streams are open at once (a tool opens one per command):
 *   another is refused with RESOURCE_EXHAUSTED, so what clients without a token can make the
 *   broker hold is bounded in all, not only per stream;
 * - a stream ends with UNAVAILABLE when the broker starts to stop, as health watches and
 *   subscriptions do, and one whose client reads nothing is reset a second later, as a stalled
 *   subscription is (`stalled-subscription.ts`).
 */
import { dirname, join } from 'node:path';
import { readdirSync } from 'node:fs';
import type { Server, ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { ErrorCode, StrataError } from '../common/errors.js';
import { PROTO_ROOT } from '../common/package-root.js';
import { MalformedRequest, withMalformedRequests, withRequestBytesMax } from './malformed-request.js';
import { refuseIfStalledAtStop } from './stalled-subscription.js';
import { toGrpcFailure, toServiceError } from './status.js';

/** Largest reflection request: a symbol or file name, with room to spare. */
export const REFLECTION_REQUEST_BYTES_MAX = 64 * 1024;

/** Reflection streams open at once, on all connections together. */
export const REFLECTION_STREAMS_MAX = 16;

/** The directory grpc-health-check's proto (`<root>/health/v1/health.proto`) lies in. */
const HEALTH_PROTO_ROOT = join(dirname(healthProtoPath), '..', '..');

export function addReflection(server: Server, stopping: AbortSignal): void {
  const protoFiles = readdirSync(join(PROTO_ROOT, 'strata', 'v1')).filter((name) => name.endsWith('.proto')).map((name) => join('strata', 'v1', name));
  // The health service too: a tool that knows only what reflection tells it (grpcurl) can then
  // call grpc.health.v1.Health/Check without its proto.
  const reflection = new ReflectionService(loadSync([...protoFiles, join('health', 'v1', 'health.proto')], { includeDirs: [PROTO_ROOT, HEALTH_PROTO_ROOT] }));
  const open = { streams: 0 }; // both versions' streams together
  // The service registers its handlers through addService alone: each is wrapped on the way.
  const registrar = {
    addService(definition: Parameters<Server['addService']>[0], implementation: UntypedServiceImplementation): void {
      const wrapped = Object.fromEntries(Object.entries(implementation).map(([name, handler]) => [name, servedWithinLimits(handler as (call: ServerDuplexStream<unknown, unknown>) => void, stopping, open)]));
      server.addService(withMalformedRequests(withRequestBytesMax(definition, REFLECTION_REQUEST_BYTES_MAX)), wrapped);
    },
  };
  reflection.addToServer(registrar as unknown as Server);
}

function servedWithinLimits(
  handler: (call: ServerDuplexStream<unknown, unknown>) => void,
  stopping: AbortSignal,
  open: { streams: number },
): (call: ServerDuplexStream<unknown, unknown>) => void {
  return (call) => {
    let ended = false;
    const fail = (error: StrataError): void => {
      ended = true;
      call.pause();
      call.emit('error', toServiceError(toGrpcFailure(error)));
    };
    const end = (): void => fail(new StrataError(ErrorCode.UNAVAILABLE, 'the broker is shutting down'));
    if (stopping.aborted) {
      end();
      return;
    }
    if (open.streams >= REFLECTION_STREAMS_MAX) {
      fail(new StrataError(ErrorCode.RESOURCE_EXHAUSTED, `${REFLECTION_STREAMS_MAX} reflection streams are open already; end one (each gRPC tool command opens one) and try again`));
      return;
    }
    open.streams++;
    stopping.addEventListener('abort', end, { once: true });
    call.once('close', () => {
      open.streams--;
      stopping.removeEventListener('abort', end);
    });
    refuseIfStalledAtStop(call, stopping);
    // The handler reads requests through 'data' events: a refused one ends the stream instead,
    // and once it has ended (refused, or the broker stopping) nothing read after reaches it.
    const emit = call.emit.bind(call);
    call.emit = (event: string | symbol, ...args: unknown[]): boolean => {
      if (event !== 'data') return emit(event, ...args);
      if (ended) return true;
      const request = args[0];
      if (request instanceof MalformedRequest) {
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
        call.once('drain', () => {
          if (!ended) call.resume();
        });
      }
      return written;
    };
    handler(call);
  };
}
