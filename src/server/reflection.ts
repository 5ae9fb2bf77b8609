/**
 * gRPC server reflection (`@grpc/reflection`, v1 and v1alpha), with its streams ended when the
 * broker starts to stop. Its own handler ends a `ServerReflectionInfo` stream only when the
 * client ends its side: a tool that keeps the stream open would hold every graceful shutdown up
 * for the whole --shutdown-timeout-ms. Here such a stream ends with UNAVAILABLE, as health
 * watches and subscriptions do.
 */
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import type { Server, ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { ErrorCode, StrataError } from '../common/errors.js';
import { PROTO_ROOT } from '../common/package-root.js';
import { toGrpcFailure, toServiceError } from './status.js';

export function addReflection(server: Server, stopping: AbortSignal): void {
  const protoFiles = readdirSync(join(PROTO_ROOT, 'strata', 'v1')).filter((name) => name.endsWith('.proto')).map((name) => join('strata', 'v1', name));
  const reflection = new ReflectionService(loadSync(protoFiles, { includeDirs: [PROTO_ROOT] }));
  // The service registers its handlers through addService alone: each is wrapped on the way.
  const registrar = {
    addService(definition: Parameters<Server['addService']>[0], implementation: UntypedServiceImplementation): void {
      const wrapped = Object.fromEntries(Object.entries(implementation).map(([name, handler]) => [name, endedOnStop(handler as (call: ServerDuplexStream<unknown, unknown>) => void, stopping)]));
      server.addService(definition, wrapped);
    },
  };
  reflection.addToServer(registrar as unknown as Server);
}

function endedOnStop(handler: (call: ServerDuplexStream<unknown, unknown>) => void, stopping: AbortSignal): (call: ServerDuplexStream<unknown, unknown>) => void {
  return (call) => {
    const end = (): void => {
      call.emit('error', toServiceError(toGrpcFailure(new StrataError(ErrorCode.UNAVAILABLE, 'the broker is shutting down'))));
    };
    if (stopping.aborted) {
      end();
      return;
    }
    stopping.addEventListener('abort', end, { once: true });
    call.once('close', () => stopping.removeEventListener('abort', end));
    handler(call);
  };
}
