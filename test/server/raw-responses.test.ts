// Goal: hold the hand-encoded raw Fetch and Subscribe responses to the proto, whether they are
// written into the read buffer's headroom or copied; method: encode, decode with the classes
// generated from proto/, compare every field, and check the headroom path shares memory.
import { describe, expect, it } from 'vitest';
import { GRPC_FRAME_PREFIX_BYTES, hasFramingRoom } from '../../src/common/grpc-framing.js';
import { strata } from '../../src/generated/strata.js';
import { RAW_RESPONSE_PREFIX_MAX, encodeRawFetchResponse, encodeRawSubscribeResponse } from '../../src/server/raw-responses.js';
import { READ_HEADROOM_BYTES } from '../../src/storage/segment.js';

const v1 = strata.v1;

/** `length` bytes of batches with `headroom` bytes of their own memory in front. */
function batchesWithHeadroom(length: number, headroom: number): Buffer {
  const memory = Buffer.allocUnsafeSlow(headroom + length);
  for (let index = 0; index < length; index++) memory[headroom + index] = index % 251;
  return memory.subarray(headroom);
}

describe('raw responses', () => {
  it('the read headroom holds the longest prefix and the gRPC frame prefix', () => {
    expect(READ_HEADROOM_BYTES).toBeGreaterThanOrEqual(RAW_RESPONSE_PREFIX_MAX + GRPC_FRAME_PREFIX_BYTES);
  });

  it('marks a message for grpc-js to frame in place only when the headroom holds the frame prefix too', () => {
    const fields = { highWatermark: 1, logStartOffset: 0, nextOffset: 1 };
    // This prefix takes 2 + 2 + 2 + 4 = 10 bytes (three one-byte varints, a 3-byte length).
    for (const [headroom, marked] of [[READ_HEADROOM_BYTES, true], [10 + GRPC_FRAME_PREFIX_BYTES, true], [10 + GRPC_FRAME_PREFIX_BYTES - 1, false], [10, false]] as const) {
      const batches = batchesWithHeadroom(70_000, headroom);
      const message = encodeRawFetchResponse(batches, headroom, fields);
      expect(message.buffer === batches.buffer).toBe(true);
      expect(message.byteOffset).toBe(headroom - 10);
      expect(hasFramingRoom(message)).toBe(marked);
    }
  });

  const fields = [
    { highWatermark: 0, logStartOffset: 0, nextOffset: 0 },
    { highWatermark: 2 ** 53 - 1, logStartOffset: 2 ** 40 + 7, nextOffset: 2 ** 53 - 2 },
  ];
  for (const [index, each] of fields.entries()) {
    it(`FetchResponse ${index}: decodes to the same fields, in place with headroom and copied without`, () => {
      for (const headroom of [READ_HEADROOM_BYTES, 0]) {
        const batches = batchesWithHeadroom(70_000, headroom);
        const message = encodeRawFetchResponse(batches, headroom, each);
        expect(message.buffer === batches.buffer).toBe(headroom > 0);
        const decoded = v1.FetchResponse.decode(message);
        expect(Buffer.from(decoded.batches).equals(batches)).toBe(true);
        expect([decoded.highWatermark.toString(), decoded.logStartOffset.toString(), decoded.nextOffset.toString()]).toEqual([each.highWatermark, each.logStartOffset, each.nextOffset].map(String));
        expect(decoded.records).toEqual([]);
      }
    });
  }

  it('SubscribeResponse: decodes to the same fields', () => {
    const batches = batchesWithHeadroom(300, READ_HEADROOM_BYTES);
    const message = encodeRawSubscribeResponse(batches, READ_HEADROOM_BYTES, { partition: 9_999, highWatermark: 2 ** 53 - 1, nextOffset: 123 });
    const decoded = v1.SubscribeResponse.decode(message);
    expect(decoded.partition).toBe(9_999);
    expect(Buffer.from(decoded.batches).equals(batches)).toBe(true);
    expect(decoded.highWatermark.toString()).toBe(String(2 ** 53 - 1));
    expect(decoded.nextOffset.toNumber()).toBe(123);
  });
});
