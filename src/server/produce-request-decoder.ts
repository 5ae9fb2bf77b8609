/**
 * The server's decoder of ProduceRequest (Produce and ProduceStream). protobufjs decodes every
 * field except `records`: those stay in the request's bytes, and the handler reads them with
 * `parseWireRecords` (wire-records.ts) instead of receiving an object, a Long and two Buffers
 * per record.
 *
 * How: one pass over the request's top-level fields notes where each `records` entry
 * (field 3, length-delimited) lies; the other fields' bytes, a few dozen unless a raw `batch`
 * comes with records (which the handler rejects), are copied together and decoded by
 * protobufjs, so they keep its exact semantics. A request without records is decoded by
 * protobufjs as it is. Bytes protobufjs could not decode fail the same way as before.
 *
 * The same pass bounds the work a request can cause: at the record past
 * `PRODUCE_REQUEST_RECORDS_MAX` it stops and refuses the request with RESOURCE_EXHAUSTED, before
 * any record is parsed or any batch built (the refusal the batch would otherwise meet later).
 */
import protobuf from 'protobufjs/minimal.js';
import { ErrorCode, StrataError } from '../common/errors.js';
import { BATCH_BYTES_MAX, BATCH_RECORD_BYTES_MIN, PRODUCE_REQUEST_RECORDS_MAX } from '../common/request-limits.js';
import { LENGTH_DELIMITED, fieldTag } from '../common/protobuf-wire.js';
import { strata } from '../generated/strata.js';

const RECORDS_TAG = fieldTag(3, LENGTH_DELIMITED);

export interface IncomingProduceRequest {
  /** Every field but `records`, which is left empty. */
  readonly message: strata.v1.ProduceRequest;
  /** The request's bytes: the records' messages are in it. */
  readonly source: Buffer;
  /** [start, end) of each `records` entry's message in `source`, in order. */
  readonly recordRanges: readonly number[];
}

export function decodeProduceRequest(bytes: Buffer): IncomingProduceRequest {
  const reader = protobuf.Reader.create(bytes);
  const recordRanges: number[] = [];
  /** [start, end) of the bytes of every other field. */
  const otherFields: number[] = [];
  while (reader.pos < reader.len) {
    const fieldStart = reader.pos;
    const tag = reader.uint32();
    if (tag === RECORDS_TAG) {
      const length = reader.uint32();
      const start = reader.pos;
      reader.skip(length);
      if (recordRanges.length === 2 * PRODUCE_REQUEST_RECORDS_MAX) throw tooManyRecords();
      recordRanges.push(start, start + length);
    } else {
      // (Field 3 with another wire type too: protobufjs skips it as unknown.)
      reader.skipType(tag & 7);
      const last = otherFields.length - 1;
      if (last > 0 && otherFields[last] === fieldStart) otherFields[last] = reader.pos;
      else otherFields.push(fieldStart, reader.pos);
    }
  }
  if (recordRanges.length === 0) return { message: strata.v1.ProduceRequest.decode(bytes), source: bytes, recordRanges };
  let otherBytes = 0;
  for (let at = 0; at < otherFields.length; at += 2) otherBytes += otherFields[at + 1]! - otherFields[at]!;
  const others = Buffer.allocUnsafe(otherBytes);
  let position = 0;
  for (let at = 0; at < otherFields.length; at += 2) position += bytes.copy(others, position, otherFields[at], otherFields[at + 1]);
  return { message: strata.v1.ProduceRequest.decode(others), source: bytes, recordRanges };
}

function tooManyRecords(): StrataError {
  return new StrataError(
    ErrorCode.RESOURCE_EXHAUSTED,
    `the produce request carries more than ${PRODUCE_REQUEST_RECORDS_MAX} records, more than fit in one batch (a record takes at least ${BATCH_RECORD_BYTES_MIN} bytes in a batch, and no partition accepts a batch over ${BATCH_BYTES_MAX} bytes); send the records in several requests`,
  );
}
