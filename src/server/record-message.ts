/**
 * The field tags of `strata.v1.Record` and `strata.v1.Header` (proto/strata/v1/types.proto), for
 * the code that handles those messages by hand: wire-records.ts reads them from produce
 * requests, record-responses.ts writes them into decoded Fetch and Subscribe answers.
 */
import { LENGTH_DELIMITED, VARINT, fieldTag } from '../common/protobuf-wire.js';

export const RECORD_KEY_TAG = fieldTag(1, LENGTH_DELIMITED);
export const RECORD_VALUE_TAG = fieldTag(2, LENGTH_DELIMITED);
export const RECORD_HEADERS_TAG = fieldTag(3, LENGTH_DELIMITED);
export const RECORD_TIMESTAMP_TAG = fieldTag(4, VARINT);
/** Set on fetch; ignored on produce. */
export const RECORD_OFFSET_TAG = fieldTag(5, VARINT);
export const HEADER_KEY_TAG = fieldTag(1, LENGTH_DELIMITED);
export const HEADER_VALUE_TAG = fieldTag(2, LENGTH_DELIMITED);
