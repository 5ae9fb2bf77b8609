// Goal: hold the hand-encoded raw Fetch and Subscribe responses to the proto, whether they are
// written into the read buffer's headroom or copied; method: encode, decode with the classes
// generated from proto/, compare every field, and check the headroom path shares memory.
import { describe, expect, it } from 'vitest';
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
  it('the read headroom holds the longest prefix', () => {
    expect(READ_HEADROOM_BYTES).toBeGreaterThanOrEqual(RAW_RESPONSE_PREFIX_MAX);
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
