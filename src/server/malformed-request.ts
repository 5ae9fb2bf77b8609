/**
 * Requests refused before any handler runs: bytes that are not a valid protobuf message of the
 * method's type, and requests over their method's size limit.
 *
 * grpc-js answers a request deserializer that throws with INTERNAL and the bare details "Error
 * deserializing request", before any handler runs: the client learns neither that the fault is
 * its own nor what it is, and a ProduceStream ends without the answers to the requests before.
 * The server's deserializers (`withMalformedRequests`) return a `MalformedRequest` instead, and
 * the handlers answer with its code (INVALID_ARGUMENT for bytes that do not decode) and the
 * decoder's reason: unary calls and Subscribe through `checkDecoded`, pipelined streams by
 * answering what came before and then ending the stream with that status
 * (`pipelined-stream.ts`).
 *
 * grpc-js refuses a request over the server's receive limit (`--max-request-bytes`) itself, with
 * RESOURCE_EXHAUSTED. That limit is sized for produce requests; `withRequestBytesMax` gives the
 * other methods a smaller one, checked before their bytes are decoded, since decoding is what a
 * large request costs (see `NON_PRODUCE_REQUEST_BYTES_MAX`).
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { ErrorCode, StrataError } from '../common/errors.js';

/** A request refused before decoding (or by its decoder), with the code to answer it with. */
export class MalformedRequest {
  constructor(
    readonly reason: string,
    readonly code: ErrorCode = ErrorCode.INVALID_ARGUMENT,
    /** Already counted and logged (a refusal `transport-refusals.ts` hands on): the handler only answers it. */
    readonly reported = false,
  ) {}
}

type Methods = Record<string, MethodDefinition<unknown, unknown>>;

/** `definition` with each method's deserializer replaced by `wrap(method)`. */
function withDeserializers<Definition extends ServiceDefinition>(
  definition: Definition,
  wrap: (name: string, method: MethodDefinition<unknown, unknown>) => (bytes: Buffer) => unknown,
): Definition {
  const wrapped: Methods = {};
  for (const [name, method] of Object.entries(definition as Methods)) wrapped[name] = { ...method, requestDeserialize: wrap(name, method) };
  return wrapped as Definition;
}

/**
 * `definition` with request deserializers that return a MalformedRequest instead of throwing: a
 * StrataError keeps its code and message (a decoder that refuses what it decodes, or
 * `withRequestBytesMax`); anything else is bytes that are not the method's message.
 */
export function withMalformedRequests<Definition extends ServiceDefinition>(definition: Definition): Definition {
  return withDeserializers(definition, (_name, method) => {
    const decode = method.requestDeserialize;
    return (bytes) => {
      try {
        return decode(bytes);
      } catch (error) {
        if (error instanceof StrataError) return new MalformedRequest(error.message, error.code);
        return new MalformedRequest(`the request to ${method.path.slice(1)} is not a valid protobuf message (${(error as Error).message}); check that the client was generated from this broker's proto files`);
      }
    };
  });
}

/**
 * `definition` whose methods, except those named in `except`, refuse a request over
 * `requestBytesMax` bytes with RESOURCE_EXHAUSTED before decoding it. Wrap it in
 * `withMalformedRequests`, which turns the refusal into an answer.
 */
export function withRequestBytesMax<Definition extends ServiceDefinition>(
  definition: Definition,
  requestBytesMax: number,
  except: readonly (keyof Definition & string)[] = [],
): Definition {
  return withDeserializers(definition, (name, method) => {
    const decode = method.requestDeserialize;
    if (except.includes(name)) return decode;
    return (bytes) => {
      if (bytes.length > requestBytesMax) throw requestTooLarge(method.path.slice(1), bytes.length, requestBytesMax);
      return decode(bytes);
    };
  });
}

function requestTooLarge(method: string, bytes: number, requestBytesMax: number): StrataError {
  return new StrataError(ErrorCode.RESOURCE_EXHAUSTED, nonProduceTooLarge(method, `is ${bytes} bytes`, requestBytesMax));
}

/**
 * What a request to a method other than Produce and ProduceStream over its limit is told;
 * `size` says how large it is ("is N bytes", or "inflates to over N bytes").
 */
export function nonProduceTooLarge(method: string, size: string, requestBytesMax: number): string {
  return `the request to ${method} ${size}, over the limit of ${requestBytesMax} bytes for this method; only Produce and ProduceStream, which carry records, take requests up to --max-request-bytes. Check what the client puts in this request`;
}

/** `request`, or its refusal (INVALID_ARGUMENT if its bytes did not decode). */
export function checkDecoded<Request>(request: Request | MalformedRequest): Request {
  if (request instanceof MalformedRequest) throw new StrataError(request.code, request.reason);
  return request;
}
