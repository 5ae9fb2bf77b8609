/**
 * Requests whose bytes are not a valid protobuf message of the method's type.
 *
 * grpc-js answers a request deserializer that throws with INTERNAL and the bare details "Error
 * deserializing request", before any handler runs: the client learns neither that the fault is
 * its own nor what it is, and a ProduceStream ends without the answers to the requests before.
 * The server's deserializers (`withMalformedRequests`) return a `MalformedRequest` instead, and
 * the handlers answer INVALID_ARGUMENT with the decoder's reason: unary calls and Subscribe
 * through `checkDecoded`, pipelined streams by answering what came before and then ending the
 * stream with that status (`pipelined-stream.ts`).
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { ErrorCode, StrataError } from '../common/errors.js';

export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** `definition` with request deserializers that return a MalformedRequest instead of throwing. */
export function withMalformedRequests<Definition extends ServiceDefinition>(definition: Definition): Definition {
  const tolerant: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition) as [string, MethodDefinition<unknown, unknown>][]) {
    const decode = method.requestDeserialize;
    tolerant[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (error) {
          return new MalformedRequest(`the request to ${method.path.slice(1)} is not a valid protobuf message (${(error as Error).message}); check that the client was generated from this broker's proto files`);
        }
      },
    };
  }
  return tolerant as Definition;
}

/** `request`, or INVALID_ARGUMENT if its bytes did not decode. */
export function checkDecoded<Request>(request: Request | MalformedRequest): Request {
  if (request instanceof MalformedRequest) throw new StrataError(ErrorCode.INVALID_ARGUMENT, request.reason);
  return request;
}
