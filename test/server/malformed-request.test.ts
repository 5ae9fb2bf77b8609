// Goal: requests are refused before decoding when they exceed their method's size limit, with
// RESOURCE_EXHAUSTED and a message naming the method, the size and the limit, while exempt
// methods and requests at the limit decode as before; method: the server's deserializer
// wrappers applied to a service definition whose decoder counts its calls.
import { type MethodDefinition, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/common/errors.js';
import { MalformedRequest, checkDecoded, withMalformedRequests, withRequestBytesMax } from '../../src/server/malformed-request.js';
import { toGrpcFailure } from '../../src/server/status.js';

const LIMIT = 16;

/** A definition of two methods whose decoder returns the bytes' length and counts its calls. */
function definition(): { small: MethodDefinition<unknown, unknown>; bulk: MethodDefinition<unknown, unknown>; decoded: () => number } {
  let calls = 0;
  const method = (name: string): MethodDefinition<unknown, unknown> => ({
    path: `/test.v1.Service/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value) => value as Buffer,
    requestDeserialize: (bytes: Buffer) => (calls++, bytes.length),
    responseSerialize: (value) => value as Buffer,
    responseDeserialize: (bytes: Buffer) => bytes,
  });
  return { small: method('Small'), bulk: method('Bulk'), decoded: () => calls };
}

describe('withRequestBytesMax', () => {
  it('decodes a request of exactly the limit', () => {
    const { small, bulk, decoded } = definition();
    const server = withMalformedRequests(withRequestBytesMax({ small, bulk }, LIMIT));
    expect(server.small.requestDeserialize(Buffer.alloc(LIMIT))).toBe(LIMIT);
    expect(decoded()).toBe(1);
  });

  it('refuses a request one byte over the limit with RESOURCE_EXHAUSTED, without decoding it', () => {
    const { small, bulk, decoded } = definition();
    const server = withMalformedRequests(withRequestBytesMax({ small, bulk }, LIMIT));
    const refused = server.small.requestDeserialize(Buffer.alloc(LIMIT + 1));
    expect(refused).toBeInstanceOf(MalformedRequest);
    expect(decoded()).toBe(0);
    expect((refused as MalformedRequest).code).toBe(ErrorCode.RESOURCE_EXHAUSTED);
    let thrown: unknown;
    try {
      checkDecoded(refused);
    } catch (error) {
      thrown = error;
    }
    expect(toGrpcFailure(thrown)).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      details: 'the request to test.v1.Service/Small is 17 bytes, over the limit of 16 bytes for this method; only Produce and ProduceStream, which carry records, take requests up to --max-request-bytes. Check what the client puts in this request',
      unexpected: false,
      strataCode: ErrorCode.RESOURCE_EXHAUSTED,
    });
  });

  it('leaves the methods named in `except` to the server-wide limit', () => {
    const { small, bulk } = definition();
    const server = withMalformedRequests(withRequestBytesMax({ small, bulk }, LIMIT, ['bulk']));
    expect(server.bulk.requestDeserialize(Buffer.alloc(LIMIT * 4))).toBe(LIMIT * 4);
    expect(server.small.requestDeserialize(Buffer.alloc(LIMIT * 4))).toBeInstanceOf(MalformedRequest);
  });

  it('keeps INVALID_ARGUMENT for bytes the decoder cannot read', () => {
    const { small, bulk } = definition();
    const failing: MethodDefinition<unknown, unknown> = {
      ...small,
      requestDeserialize: () => {
        throw new Error('index out of range');
      },
    };
    const refused = withMalformedRequests(withRequestBytesMax({ small: failing, bulk }, LIMIT)).small.requestDeserialize(Buffer.alloc(1)) as MalformedRequest;
    expect(refused.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(refused.reason).toMatch(/^the request to test\.v1\.Service\/Small is not a valid protobuf message \(index out of range\)/);
  });
});
