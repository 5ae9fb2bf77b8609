// Goal: show that Fetch and Subscribe answers of decoded records, encoded by hand from the
// batches, decode with the generated classes to exactly the records the codec reads from those
// batches (from the requested offset on) and carry the other fields; method: random batches
// (null and empty keys and values, headers, negative and zero timestamps, gzip), decoded and
// compared record by record, with a start offset inside a batch and a buffer that must grow;
// gzip batches that inflate past max_bytes are left for the next read, which goes on with the
// same inflation.
import Long from 'long';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCode } from '../../src/common/errors.js';
import { GRPC_FRAME_PREFIX_BYTES, hasFramingRoom } from '../../src/common/grpc-framing.js';
import { strata } from '../../src/generated/strata.js';
import { encodeRecordsFetchResponse, encodeRecordsSubscribeResponse } from '../../src/server/record-responses.js';
import { type BatchInflation, StoppedInflations } from '../../src/storage/inflated-records.js';
import { crc32c } from '@node-rs/crc32';
import { ATTRIBUTES_OFFSET, BATCH_HEADER_BYTES, CRC_OFFSET, type DecodedRecord, type RecordInput, decodeBatches, readBatchSize } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { countingLoopTurns } from '../helpers/loop-turns.js';
import { streamFor, testSeed } from '../helpers/seeded-random.js';

const v1 = strata.v1;
const seed = testSeed('record-responses');
/** A max_bytes no test batch set reaches. */
const NO_LIMIT = Number.MAX_SAFE_INTEGER;

interface Plain {
  offset: number;
  timestamp: number;
  key: string | null;
  value: string | null;
  headers: { key: string; value: string | null }[];
}

const hex = (bytes: Uint8Array | null | undefined): string | null => (bytes == null ? null : Buffer.from(bytes).toString('hex'));

function fromCodec(record: DecodedRecord): Plain {
  return {
    offset: record.offset,
    timestamp: record.timestamp,
    key: hex(record.key),
    value: hex(record.value),
    headers: record.headers.map((header) => ({ key: header.key, value: hex(header.value) })),
  };
}

function fromWire(record: strata.v1.IRecord): Plain {
  return {
    offset: Long.fromValue(record.offset ?? 0).toNumber(),
    timestamp: Long.fromValue(record.timestamp ?? 0).toNumber(),
    key: hex(record.key),
    value: hex(record.value),
    headers: (record.headers ?? []).map((header) => ({ key: header.key ?? '', value: hex(header.value) })),
  };
}

/** Batches of random records at consecutive offsets from `firstOffset`, concatenated. */
function randomBatches(random: () => number, firstOffset: number): Buffer {
  const below = (bound: number): number => Math.floor(random() * bound);
  const maybe = (length: number): Buffer | null => (random() < 0.15 ? null : Buffer.from(Array.from({ length }, () => below(256))));
  const batches: Buffer[] = [];
  let offset = firstOffset;
  for (let batch = 1 + below(4); batch > 0; batch--) {
    const records: RecordInput[] = Array.from({ length: 1 + below(30) }, () => ({
      key: maybe(below(3) === 0 ? 0 : below(40)),
      value: maybe(below(300)),
      headers: Array.from({ length: random() < 0.7 ? 0 : below(random() < 0.1 ? 120 : 4) }, (_, index) => ({ key: random() < 0.3 ? '' : `h${index}-ü`, value: maybe(below(8)) })),
      timestamp: [0, -1, 1_700_000_000_000 + below(1e6), 2 ** 50][below(4)]!,
    }));
    batches.push(buildBatch(records, { baseOffset: offset, compression: random() < 0.3 ? 'gzip' : 'none' }));
    offset += records.length;
  }
  return Buffer.concat(batches);
}

describe('hand-encoded responses of decoded records', () => {
  it('decode to the records the codec reads, from the requested offset, with the other fields', async () => {
    const random = streamFor(seed, 'responses');
    for (let round = 0; round < 200; round++) {
      const firstOffset = random() < 0.2 ? 0 : Math.floor(random() * 2 ** 40);
      const batches = randomBatches(random, firstOffset);
      const all = decodeBatches(batches);
      const fromOffset = firstOffset + Math.floor(random() * all.length);
      const expected = all.filter((record) => record.offset >= fromOffset).map(fromCodec);
      const what = `seed ${seed} round ${round}`;

      const end = all.at(-1)!.offset + 1;

      const fetch = v1.FetchResponse.decode((await encodeRecordsFetchResponse(batches, fromOffset, NO_LIMIT, { highWatermark: 7, logStartOffset: 2 })).message);
      expect(fetch.records.map(fromWire), what).toEqual(expected);
      expect([fetch.highWatermark, fetch.logStartOffset, fetch.nextOffset].map((value) => Long.fromValue(value).toNumber())).toEqual([7, 2, end]);
      expect(fetch.batches.length).toBe(0);

      const subscribe = v1.SubscribeResponse.decode((await encodeRecordsSubscribeResponse(batches, fromOffset, NO_LIMIT, { partition: 3, highWatermark: 9 })).message);
      expect(subscribe.records.map(fromWire), what).toEqual(expected);
      expect([subscribe.partition, Long.fromValue(subscribe.highWatermark).toNumber(), Long.fromValue(subscribe.nextOffset).toNumber()]).toEqual([3, 9, end]);
    }
  });

  it('are framed in place by grpc-js, and hold no more memory than they need, however much their buffer grew', async () => {
    // Tiny records decode to more bytes than their batches take: the buffer grows as they are written.
    const batches = Buffer.concat(Array.from({ length: 40 }, (_, batch) => buildBatch(Array.from({ length: 2000 }, () => ({ value: Buffer.from('v'), timestamp: 1_700_000_000_000 })), { baseOffset: batch * 2000 })));
    for (const maxBytes of [NO_LIMIT, 100_000]) {
      const { message, nextOffset } = await encodeRecordsSubscribeResponse(batches, 0, maxBytes, { partition: 0, highWatermark: 80_000 });
      expect(v1.SubscribeResponse.decode(message).records.length).toBe(nextOffset);
      expect(message.length).toBeGreaterThan(batches.length / 40);
      expect(hasFramingRoom(message)).toBe(true);
      expect(message.buffer.byteLength - message.length).toBeLessThanOrEqual(GRPC_FRAME_PREFIX_BYTES + Math.max(64 * 1024, message.length / 4));
    }
  });

  it('carry timestamps near ±2^53 and header keys whose bytes are not UTF-8 as the codec reads them', async () => {
    const far = 2 ** 53 - 2 ** 20;
    const late = buildBatch([0, 4, 8].map((step) => ({ value: Buffer.from('x'), timestamp: far + step })), { baseOffset: 3 });
    const early = buildBatch([0, 4].map((step) => ({ value: null, timestamp: -far + step })), { baseOffset: 6 });
    const odd = buildBatch([{ key: Buffer.alloc(0), value: Buffer.from('y'), headers: [{ key: 'AB', value: null }], timestamp: 5 }], { baseOffset: 8 });
    const at = odd.indexOf(Buffer.from('AB'), BATCH_HEADER_BYTES);
    odd[at] = 0xff;
    odd[at + 1] = 0xfe;
    odd.writeUInt32BE(crc32c(odd.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    const batches = Buffer.concat([late, early, odd]);
    const expected = decodeBatches(batches).map(fromCodec);
    expect(expected.map((record) => record.timestamp)).toEqual([far, far + 4, far + 8, -far, -far + 4, 5]);
    expect(expected[5]!.headers).toEqual([{ key: '\ufffd\ufffd', value: null }]);
    const fetch = v1.FetchResponse.decode((await encodeRecordsFetchResponse(batches, 0, NO_LIMIT, { highWatermark: 9, logStartOffset: 0 })).message);
    expect(fetch.records.map(fromWire)).toEqual(expected);
  });

  it('inflate gzip batches off the event loop, and refuse one that does not inflate', async () => {
    const values = Array.from({ length: 20_000 }, (_, index) => ({ value: Buffer.from(`value ${index}`.padEnd(100, '.')) }));
    const batch = buildBatch(values, { compression: 'gzip', baseOffset: 40 });
    const fields = { highWatermark: 20_040, logStartOffset: 0 };
    const { result: response, turns } = await countingLoopTurns(() => encodeRecordsFetchResponse(batch, 40, NO_LIMIT, fields));
    const fetch = v1.FetchResponse.decode(response.message);
    expect(fetch.records.map(fromWire)).toEqual(decodeBatches(batch).map(fromCodec));
    expect(turns, 'the event loop turned while the batch was inflated').toBeGreaterThan(0);

    const damaged = Buffer.from(batch);
    damaged.fill(0x55, BATCH_HEADER_BYTES + 10, BATCH_HEADER_BYTES + 40); // inside the gzip stream
    damaged.writeUInt32BE(crc32c(damaged.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    await expect(encodeRecordsFetchResponse(damaged, 40, NO_LIMIT, fields)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_BATCH, message: expect.stringMatching(/^batch at offset 40 does not decode: /) });
  });

  it('answer no batches with no records', async () => {
    const fetch = v1.FetchResponse.decode((await encodeRecordsFetchResponse(Buffer.alloc(0), 10, NO_LIMIT, { highWatermark: 10, logStartOffset: 0 })).message);
    expect(fetch.records).toEqual([]);
    expect(Long.fromValue(fetch.nextOffset).toNumber()).toBe(10);
  });

  it('stop adding the records of gzip batches once they pass max_bytes, keep at least one, and set next_offset after the last one kept', async () => {
    // Four gzip batches of 4 records of 512 KiB each: a few KiB stored, 2 MiB inflated. A max_bytes
    // counted in stored bytes would take all four (8 MiB of records) into a 1 MiB response, and
    // one counted in whole batches the first (2 MiB).
    const recordsPerBatch = 4;
    const value = Buffer.alloc(512 * 1024, 'a');
    const batches = Buffer.concat(
      [0, 1, 2, 3].map((index) => buildBatch(Array.from({ length: recordsPerBatch }, () => ({ value })), { compression: 'gzip', baseOffset: 100 + index * recordsPerBatch })),
    );
    expect(batches.length).toBeLessThan(64 * 1024);
    const all = decodeBatches(batches).map(fromCodec);
    const kept = async (maxBytes: number, fromOffset = 100) => {
      const response = await encodeRecordsSubscribeResponse(batches, fromOffset, maxBytes, { partition: 0, highWatermark: 116 });
      const decoded = v1.SubscribeResponse.decode(response.message);
      expect(Long.fromValue(decoded.nextOffset).toNumber()).toBe(response.nextOffset);
      return { records: decoded.records.map(fromWire), nextOffset: response.nextOffset, included: response.included.length, bytes: response.message.length };
    };

    const one = await kept(1024 * 1024); // the second record passes 1 MiB
    expect(one.records).toEqual(all.slice(0, 2));
    expect(one.nextOffset).toBe(102);
    expect(one.bytes).toBeLessThan(1.1 * 1024 * 1024);
    const first = readBatchSize(batches, 0);
    expect(one.included).toBe(first);

    const tiny = await kept(1); // below one record: that record still goes in, so the reader moves on
    expect(tiny.records).toEqual(all.slice(0, 1));
    expect(tiny.nextOffset).toBe(101);

    const whole = await kept(5 * 512 * 1024); // the first batch's records stay under it; the second's first passes it
    expect(whole.records).toEqual(all.slice(0, 5));
    expect(whole.nextOffset).toBe(105);

    const fromMiddle = await kept(1024 * 1024, 106); // from inside the second batch read
    expect(fromMiddle.records).toEqual(all.slice(6, 8));
    expect(fromMiddle.nextOffset).toBe(108);

    const fetched = await encodeRecordsFetchResponse(batches, 100, 1024 * 1024, { highWatermark: 116, logStartOffset: 0 });
    const fetch = v1.FetchResponse.decode(fetched.message);
    expect(fetch.records.map(fromWire)).toEqual(all.slice(0, 2));
    expect(Long.fromValue(fetch.nextOffset).toNumber()).toBe(102);
    expect(fetched.included.length).toBe(first);
  });

  it('go on through a gzip batch read by next_offset with the inflation the read before stopped', async () => {
    // 64 records of 64 KiB: 4 MiB inflated, read 256 KiB at a time.
    const records = Array.from({ length: 64 }, (_, index) => ({ value: Buffer.alloc(64 * 1024, index) }));
    const batch = buildBatch(records, { compression: 'gzip', baseOffset: 500 });
    const all = decodeBatches(batch).map(fromCodec);
    const take = vi.spyOn(StoppedInflations.prototype, 'take');
    try {
      const read: Plain[] = [];
      let fromOffset = 500;
      while (fromOffset < 564) {
        const response = await encodeRecordsFetchResponse(batch, fromOffset, 256 * 1024, { highWatermark: 564, logStartOffset: 0 });
        read.push(...v1.FetchResponse.decode(response.message).records.map(fromWire));
        fromOffset = response.nextOffset;
      }
      expect(read).toEqual(all);
      const inflations = take.mock.results.map((result) => result.value as BatchInflation);
      expect(inflations.length).toBe(16);
      expect(new Set(inflations).size).toBe(1); // one inflation, gone on with by every read
      expect(inflations[0]!.inflatedBytes).toBeLessThan(4.1 * 1024 * 1024); // the batch once, not 16 times from its start
    } finally {
      take.mockRestore();
    }
  });
});
