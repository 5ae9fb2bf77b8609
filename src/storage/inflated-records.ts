/**
 * The records of a gzip batch, handed to a visitor as they inflate: on libuv's thread pool, a
 * chunk at a time, and no further than the visitor wants. A decoded read stops at `max_bytes`
 * and a lookup by time (`firstRecordFrom`) at its first record, so each inflates what it reads,
 * where inflating the whole batch first held up to `INFLATED_BATCH_BYTES_MAX` (128 MiB) for
 * every such read. Besides the chunk being read, only a record cut by a chunk's end is held.
 */
import { createGunzip } from 'node:zlib';
import {
  Compression,
  INFLATED_BATCH_BYTES_MAX,
  INFLATE_CHUNK_BYTES,
  RECORDS_OFFSET,
  type RecordVisitor,
  compressionOf,
  forEachBatch,
  forEachRecord,
  isCompressedBatch,
  readAttributes,
  readBatchSize,
  readLastOffset,
  readMaxTimestamp,
  readRecordCount,
  recordsContext,
  undecodable,
  unsupportedCodecMessage,
  visitRecords,
} from './record-batch.js';
import { VarintReader } from './varint.js';

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * Visits the records of the gzip batch at `position` whose offset is at least `fromOffset`, as
 * `forEachRecord` does, until the visitor returns false. Rejects with `CORRUPT_BATCH` when the
 * records do not inflate or parse (those before the damage have been visited).
 */
export function forEachInflatedRecord(buffer: Buffer, position: number, fromOffset: number, visit: RecordVisitor): Promise<void> {
  const batch = recordsContext(buffer, position);
  const compression = compressionOf(readAttributes(buffer, position));
  if (compression !== Compression.gzip) return Promise.reject(undecodable(batch, new Error(unsupportedCodecMessage(compression))));
  const count = readRecordCount(buffer, position);
  return new Promise((resolve, reject) => {
    const gunzip = createGunzip({ chunkSize: INFLATE_CHUNK_BYTES });
    const lengthReader = new VarintReader(EMPTY, 0, 0);
    /**
     * Inflated bytes not visited yet, in the pieces they came in: the start of a record the
     * last chunk cut, and the chunks since. They are joined once they may hold it whole
     * (`needed`, when its length prefix is known), so a record of many chunks is copied once.
     */
    let pieces: Buffer[] = [];
    let piecesBytes = 0;
    let needed = 0;
    let visited = 0;
    let inflatedBytes = 0;
    let settled = false;
    const settle = (problem: unknown): void => {
      if (settled) return;
      settled = true;
      gunzip.destroy();
      if (problem === null) resolve();
      else reject(undecodable(batch, problem));
    };
    gunzip.on('data', (chunk: Buffer) => {
      if (settled) return;
      inflatedBytes += chunk.length;
      if (inflatedBytes > INFLATED_BATCH_BYTES_MAX) {
        settle(new Error(`its records inflate to more than ${INFLATED_BATCH_BYTES_MAX} bytes`));
        return;
      }
      pieces.push(chunk);
      piecesBytes += chunk.length;
      if (piecesBytes < needed) return;
      const pending = pieces.length === 1 ? chunk : Buffer.concat(pieces, piecesBytes);
      const { end, records, nextRecordBytes } = wholeRecords(lengthReader, pending, count - visited);
      try {
        if (visitRecords(pending, 0, end, visited, records, batch, fromOffset, visit)) {
          settle(null);
          return;
        }
      } catch (error) {
        settle(error);
        return;
      }
      visited += records;
      const rest = pending.subarray(end);
      if (visited === count && rest.length > 0) {
        settle(new Error(`${rest.length} bytes follow its last record`));
        return;
      }
      pieces = rest.length > 0 ? [rest] : [];
      piecesBytes = rest.length;
      needed = nextRecordBytes;
    });
    gunzip.on('error', (error) => settle(new Error(`its records do not inflate: ${error.message}`)));
    gunzip.on('end', () => {
      if (visited < count) settle(new Error(`its records end after ${visited} of the ${count} its header counts`));
      else settle(null);
    });
    gunzip.end(buffer.subarray(position + RECORDS_OFFSET, position + readBatchSize(buffer, position)));
  });
}

/**
 * The end of the whole records at the start of `buffer`, at most `most` of them, how many there
 * are, and the bytes from `end` that the record cut there takes whole (0 when its length
 * prefix is cut too). A length prefix that does not parse ends the run after it, so that the
 * parse of the records reports it.
 */
function wholeRecords(reader: VarintReader, buffer: Buffer, most: number): { end: number; records: number; nextRecordBytes: number } {
  let end = 0;
  let records = 0;
  while (records < most && end < buffer.length) {
    reader.reset(buffer, end, buffer.length);
    let length: number;
    try {
      length = reader.readVarint();
    } catch {
      // Cut by the chunk's end: wait for the next. Over five bytes: malformed.
      if (reader.position >= buffer.length) return { end, records, nextRecordBytes: 0 };
      return { end: buffer.length, records: records + 1, nextRecordBytes: 0 };
    }
    if (length <= 0) return { end: buffer.length, records: records + 1, nextRecordBytes: 0 };
    if (reader.position + length > buffer.length) return { end, records, nextRecordBytes: reader.position + length - end };
    end = reader.position + length;
    records++;
  }
  return { end, records, nextRecordBytes: 0 };
}

/**
 * The offset and timestamp of the first record at or after `fromOffset`, with a timestamp of at
 * least `minTimestamp`, among the whole batches in `buffer`; null when there is none. A batch
 * whose max timestamp is lower is not read; a gzip one that is read is inflated on the thread
 * pool, up to the record found. Rejects with `CORRUPT_BATCH` when a batch read does not decode.
 */
export async function firstRecordFrom(buffer: Buffer, fromOffset: number, minTimestamp = Number.NEGATIVE_INFINITY): Promise<{ offset: number; timestamp: number } | null> {
  const positions: number[] = [];
  forEachBatch(buffer, (position) => {
    if (readLastOffset(buffer, position) >= fromOffset && readMaxTimestamp(buffer, position) >= minTimestamp) positions.push(position);
  });
  for (const position of positions) {
    let found: { offset: number; timestamp: number } | null = null;
    const visit: RecordVisitor = (offset, timestamp) => {
      if (timestamp < minTimestamp) return true;
      found = { offset, timestamp };
      return false;
    };
    if (isCompressedBatch(buffer, position)) await forEachInflatedRecord(buffer, position, fromOffset, visit);
    else forEachRecord(buffer, position, fromOffset, visit);
    if (found !== null) return found;
  }
  return null;
}
