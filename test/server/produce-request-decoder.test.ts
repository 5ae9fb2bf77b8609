// Goal: the produce request decoder refuses a request of more records than fit in one batch
// before it parses any of them, the record parser one of more headers than fit in one batch,
// and the bounds agree with the storage limits they stand for; method: hand-written requests of
// empty records and empty headers (two bytes each) at and past the bounds, and the bounds'
// constants checked against the log config, the append limit and a built batch.
import { status } from '@grpc/grpc-js';
import protobuf from 'protobufjs/minimal.js';
import { describe, expect, it } from 'vitest';
import { BATCH_BYTES_MAX, BATCH_HEADER_BYTES_MIN, BATCH_OVERHEAD_BYTES, BATCH_RECORD_BYTES_MIN, PRODUCE_REQUEST_HEADERS_MAX, PRODUCE_REQUEST_RECORDS_MAX } from '../../src/common/request-limits.js';
import { strata } from '../../src/generated/strata.js';
import { decodeProduceRequest } from '../../src/server/produce-request-decoder.js';
import { toGrpcFailure } from '../../src/server/status.js';
import { ErrorCode } from '../../src/common/errors.js';
import { parseWireRecords } from '../../src/server/wire-records.js';
import { resolveLogConfig } from '../../src/storage/log-config.js';
import { APPEND_BYTES_MAX } from '../../src/storage/partition-log.js';
import { buildBatchFromRanges } from '../../src/storage/record-batch-builder.js';
import { RECORDS_OFFSET } from '../../src/storage/record-batch.js';

const v1 = strata.v1;
/** An empty `Record` as a `records` entry: tag of field 3 (length-delimited), length 0. */
const EMPTY_RECORD = Buffer.from([(3 << 3) | 2, 0]);

/** A ProduceRequest to t/0 of `count` empty records, then `after` as it is. */
function emptyRecords(count: number, after: Buffer = Buffer.alloc(0)): Buffer {
  const fields = v1.ProduceRequest.encode(v1.ProduceRequest.create({ topic: 't', partition: 0 })).finish();
  return Buffer.concat([fields, Buffer.alloc(count * EMPTY_RECORD.length, EMPTY_RECORD), after]);
}

function refusal(bytes: Buffer): unknown {
  try {
    decodeProduceRequest(bytes);
  } catch (error) {
    return error;
  }
  throw new Error('expected the decoder to refuse the request');
}

describe('decodeProduceRequest: the record count bound', () => {
  it(`takes a request of exactly PRODUCE_REQUEST_RECORDS_MAX (${PRODUCE_REQUEST_RECORDS_MAX}) records`, () => {
    const incoming = decodeProduceRequest(emptyRecords(PRODUCE_REQUEST_RECORDS_MAX));
    expect(incoming.recordRanges.length).toBe(2 * PRODUCE_REQUEST_RECORDS_MAX);
    expect(incoming.message.topic).toBe('t');
  });

  it('refuses one record more with RESOURCE_EXHAUSTED and a message that says what to do', () => {
    const failure = toGrpcFailure(refusal(emptyRecords(PRODUCE_REQUEST_RECORDS_MAX + 1)));
    expect(failure).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      details: `the produce request carries more than ${PRODUCE_REQUEST_RECORDS_MAX} records, more than fit in one batch (a record takes at least 7 bytes in a batch, and no partition accepts a batch over 16777216 bytes); send the records in several requests`,
      unexpected: false,
      strataCode: ErrorCode.RESOURCE_EXHAUSTED,
    });
  });

  it('stops at the bound: the bytes after it are not read (garbage there does not change the answer)', () => {
    const failure = toGrpcFailure(refusal(emptyRecords(PRODUCE_REQUEST_RECORDS_MAX + 1, Buffer.from([0x0f, 0xff, 0xff]))));
    expect(failure.code).toBe(status.RESOURCE_EXHAUSTED);
  });
});

/** A ProduceRequest to t/0 of one record with `count` empty headers (two bytes each). */
function emptyHeaders(count: number): Buffer {
  const emptyHeader = Buffer.from([(3 << 3) | 2, 0]); // Record.headers (field 3), length 0
  const record = Buffer.alloc(count * emptyHeader.length, emptyHeader);
  const fields = v1.ProduceRequest.encode(v1.ProduceRequest.create({ topic: 't', partition: 0 })).finish();
  const recordTagAndLength = new protobuf.Writer().uint32((3 << 3) | 2).uint32(record.length).finish();
  return Buffer.concat([fields, recordTagAndLength, record]);
}

function parsedHeaders(bytes: Buffer): number {
  const incoming = decodeProduceRequest(bytes);
  return parseWireRecords(incoming.source, incoming.recordRanges).headerCountTotal;
}

describe('parseWireRecords: the header count bound', () => {
  it(`takes a request of exactly PRODUCE_REQUEST_HEADERS_MAX (${PRODUCE_REQUEST_HEADERS_MAX}) headers`, () => {
    expect(parsedHeaders(emptyHeaders(PRODUCE_REQUEST_HEADERS_MAX))).toBe(PRODUCE_REQUEST_HEADERS_MAX);
  });

  it('refuses one header more with RESOURCE_EXHAUSTED and a message that says what to do', () => {
    let failure: unknown = null;
    try {
      parsedHeaders(emptyHeaders(PRODUCE_REQUEST_HEADERS_MAX + 1));
    } catch (error) {
      failure = error;
    }
    expect(toGrpcFailure(failure)).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      details: `the produce request's records carry more than ${PRODUCE_REQUEST_HEADERS_MAX} headers in all, more than fit in one batch (a header takes at least 2 bytes in a batch, and no partition accepts a batch over 16777216 bytes); send the records in several requests`,
      unexpected: false,
      strataCode: ErrorCode.RESOURCE_EXHAUSTED,
    });
  });
});

/** The size of the batch built from a produce request's records. */
function batchBytesOf(bytes: Buffer): number {
  const incoming = decodeProduceRequest(bytes);
  return buildBatchFromRanges(parseWireRecords(incoming.source, incoming.recordRanges), null, { timestamp: 0 }).length;
}

describe('the bound stands for the storage limits', () => {
  it('BATCH_BYTES_MAX is the largest max.message.bytes a topic may have and the largest append', () => {
    expect(resolveLogConfig({ maxMessageBytes: BATCH_BYTES_MAX }).maxMessageBytes).toBe(BATCH_BYTES_MAX);
    expect(() => resolveLogConfig({ maxMessageBytes: BATCH_BYTES_MAX + 1 })).toThrow(/max\.message\.bytes must be an integer from \d+ to 16777216/);
    expect(APPEND_BYTES_MAX).toBe(BATCH_BYTES_MAX);
  });

  it('a batch has BATCH_OVERHEAD_BYTES before its records', () => {
    expect(BATCH_OVERHEAD_BYTES).toBe(RECORDS_OFFSET);
  });

  // The bound was BATCH_BYTES_MAX / 7, which left out the batch's header: requests of up to 9
  // records more passed it, then were refused as a batch too large, with another message.
  it('an empty record takes BATCH_RECORD_BYTES_MIN bytes in a batch, and PRODUCE_REQUEST_RECORDS_MAX of them are the most that fit in one', () => {
    expect(batchBytesOf(emptyRecords(3)) - batchBytesOf(emptyRecords(2))).toBe(BATCH_RECORD_BYTES_MIN);
    const bytesOf = (records: number): number => batchBytesOf(emptyRecords(1)) + (records - 1) * BATCH_RECORD_BYTES_MIN;
    expect(bytesOf(PRODUCE_REQUEST_RECORDS_MAX)).toBeLessThanOrEqual(BATCH_BYTES_MAX);
    expect(bytesOf(PRODUCE_REQUEST_RECORDS_MAX + 1)).toBeGreaterThan(BATCH_BYTES_MAX);
  });

  it('an empty header takes BATCH_HEADER_BYTES_MIN bytes in a batch, and PRODUCE_REQUEST_HEADERS_MAX of them are the most that fit in one, on one record', () => {
    expect(batchBytesOf(emptyHeaders(3)) - batchBytesOf(emptyHeaders(2))).toBe(BATCH_HEADER_BYTES_MIN);
    const bytesOf = (headers: number): number => batchBytesOf(emptyHeaders(1)) + (headers - 1) * BATCH_HEADER_BYTES_MIN;
    expect(bytesOf(PRODUCE_REQUEST_HEADERS_MAX)).toBeLessThanOrEqual(BATCH_BYTES_MAX);
    expect(bytesOf(PRODUCE_REQUEST_HEADERS_MAX + 1)).toBeGreaterThan(BATCH_BYTES_MAX);
  });
});
