/**
 * Validation of the record batches a producer sends, before the broker appends them: each
 * batch's frame (`checkBatchFrame`), its header against its records, and every record's fields
 * against its length.
 *
 * Uncompressed batches are checked on the calling thread: a scan of the varints in place. A
 * compressed batch's records are inflated on libuv's thread pool, a chunk at a time, and checked
 * as each chunk arrives, so a batch that inflates to many megabytes neither holds up the event
 * loop nor sits in memory whole: what is held is one chunk and the record under way (whose
 * length prefix is taken at its word until the stream ends, so at worst the 128 MiB a batch may
 * inflate to).
 */
import { createGunzip } from 'node:zlib';
import { ErrorCode, StrataError } from '../common/errors.js';
import {
  checkBatchFrame,
  Compression,
  compressionOf,
  CONTROL_MASK,
  CURRENT_MAGIC,
  INFLATED_BATCH_BYTES_MAX,
  MAGIC_OFFSET,
  readAttributes,
  readBatchSize,
  readLastOffsetDelta,
  readRecordCount,
  RECORDS_OFFSET,
} from './record-batch.js';
import { VarintReader } from './varint.js';

/** Bytes of inflated records handed over per thread-pool round trip. */
const INFLATE_CHUNK_BYTES = 256 * 1024;

const EMPTY = Buffer.alloc(0);

/** A varint takes at most this many bytes. */
const VARINT_BYTES_MAX = 5;

/** What `validateBatchesOnLoop` found. */
export interface CheckedBatches {
  batchCount: number;
  recordCount: number;
  /** The compressed batches, whose records `checkCompressedBatches` has still to check. */
  compressed: CompressedBatch[];
}

export interface CompressedBatch {
  /** The batch's index among those given, for error messages. */
  index: number;
  position: number;
}

/**
 * Validates every batch in `buffer` as far as can be done without inflating anything: frames,
 * sizes, headers, and the records of uncompressed batches. Throws `CORRUPT_BATCH` naming the
 * batch and the problem, or `RECORD_TOO_LARGE` when a batch exceeds `maxBatchBytes`. The
 * compressed batches it lists must then go through `checkCompressedBatches`.
 */
export function validateBatchesOnLoop(buffer: Buffer, maxBatchBytes: number): CheckedBatches {
  let position = 0;
  let batchCount = 0;
  let recordCount = 0;
  const compressed: CompressedBatch[] = [];
  while (position < buffer.length) {
    if (buffer.length - position > MAGIC_OFFSET) {
      // Only a batch that is wholly present and has the right magic can be "too large";
      // anything else is corrupt, whatever its length field says.
      const size = readBatchSize(buffer, position);
      if (size > maxBatchBytes && size <= buffer.length - position && buffer[position + MAGIC_OFFSET] === CURRENT_MAGIC) {
        throw new StrataError(
          ErrorCode.RECORD_TOO_LARGE,
          `batch ${batchCount} is ${size} bytes, larger than max.message.bytes ${maxBatchBytes}`,
        );
      }
    }
    const problem = checkBatchFrame(buffer, position, buffer.length) ?? checkRecordsHeader(buffer, position);
    if (problem !== null) throw corruptBatch(batchCount, position, problem);
    if (compressionOf(readAttributes(buffer, position)) === Compression.none) {
      const records = new RecordsCheck(readRecordCount(buffer, position));
      const recordsProblem =
        records.check(buffer, position + RECORDS_OFFSET, position + readBatchSize(buffer, position)) ?? records.finish();
      if (recordsProblem !== null) throw corruptBatch(batchCount, position, recordsProblem);
    } else {
      compressed.push({ index: batchCount, position });
    }
    recordCount += readRecordCount(buffer, position);
    batchCount++;
    position += readBatchSize(buffer, position);
  }
  if (batchCount === 0) throw new StrataError(ErrorCode.CORRUPT_BATCH, 'no record batch was given');
  return { batchCount, recordCount, compressed };
}

/**
 * Checks the records of the compressed batches `validateBatchesOnLoop` listed, one batch at a
 * time, off the event loop. Rejects with `CORRUPT_BATCH` naming the first bad batch.
 */
export async function checkCompressedBatches(buffer: Buffer, batches: readonly CompressedBatch[]): Promise<void> {
  for (const { index, position } of batches) {
    const problem = await checkCompressedRecords(buffer, position);
    if (problem !== null) throw corruptBatch(index, position, problem);
  }
}

/**
 * Validates every batch in `buffer` (frames and records, compressed ones inflated off the
 * event loop) and returns the number of batches and records. Rejects as
 * `validateBatchesOnLoop` throws.
 */
export async function validateBatches(
  buffer: Buffer,
  maxBatchBytes: number,
): Promise<{ batchCount: number; recordCount: number }> {
  const { batchCount, recordCount, compressed } = validateBatchesOnLoop(buffer, maxBatchBytes);
  await checkCompressedBatches(buffer, compressed);
  return { batchCount, recordCount };
}

function corruptBatch(index: number, position: number, problem: string): StrataError {
  return new StrataError(ErrorCode.CORRUPT_BATCH, `invalid record batch ${index} at byte ${position}: ${problem}`);
}

/**
 * What a batch's header must say about its records, checked without reading them: a positive
 * record count, `lastOffsetDelta` of `count - 1`, not a control batch, a codec Strata reads.
 */
function checkRecordsHeader(buffer: Buffer, position: number): string | null {
  const count = readRecordCount(buffer, position);
  const lastOffsetDelta = readLastOffsetDelta(buffer, position);
  if (count <= 0) return `record count ${count} is not positive`;
  if (lastOffsetDelta !== count - 1) {
    return `last offset delta ${lastOffsetDelta} does not match record count ${count}`;
  }
  const attributes = readAttributes(buffer, position);
  if (attributes & CONTROL_MASK) return 'control batches are not accepted from producers';
  const compression = compressionOf(attributes);
  if (compression !== Compression.none && compression !== Compression.gzip) {
    return `compression codec ${compression} is not supported (none and gzip are)`;
  }
  return null;
}

/**
 * Checks a batch's records, given as one or more runs of whole records in order: each record's
 * fields fill exactly its length, offset deltas run 0..count-1, and exactly `count` records
 * come. Bytes after the last of them are counted and reported by `finish`.
 */
export class RecordsCheck {
  private index = 0;
  private bytesAfterLast = 0;
  private readonly reader = new VarintReader(EMPTY, 0, 0);
  private readonly fields = new VarintReader(EMPTY, 0, 0); // reused per record

  constructor(private readonly count: number) {}

  /** Whether every record the header counts has been checked. */
  get complete(): boolean {
    return this.index === this.count;
  }

  /** Checks the records in `buffer[start, end)`; null when they are sound, else what is wrong. */
  check(buffer: Buffer, start: number, end: number): string | null {
    const reader = this.reader.reset(buffer, start, end);
    const fields = this.fields.reset(buffer, start, end);
    try {
      while (this.index < this.count && reader.position < end) {
        const index = this.index;
        const length = reader.readVarint();
        if (length <= 0) return `record ${index} has length ${length}`;
        const recordEnd = reader.position + length;
        if (recordEnd > end) return `record ${index} runs past the end of the batch`;
        fields.position = reader.position;
        fields.end = recordEnd;
        fields.readInt8();
        fields.readVarlong();
        const offsetDelta = fields.readVarint();
        if (offsetDelta !== index) return `record ${index} has offset delta ${offsetDelta}`;
        skipBytesField(fields); // key
        skipBytesField(fields); // value
        const headerCount = fields.readVarint();
        if (headerCount < 0) return `record ${index} has ${headerCount} headers`;
        for (let header = 0; header < headerCount; header++) {
          const keyLength = fields.readVarint();
          if (keyLength < 0) return `record ${index} header ${header} has a null key`;
          fields.skip(keyLength);
          skipBytesField(fields);
        }
        if (fields.position !== recordEnd) return `record ${index} has ${recordEnd - fields.position} bytes its fields do not account for`;
        reader.position = recordEnd;
        this.index++;
      }
    } catch (error) {
      return `record ${this.index}: ${(error as Error).message}`;
    }
    this.bytesAfterLast += end - reader.position;
    return null;
  }

  /** After the last run: null when all `count` records came and nothing followed them. */
  finish(): string | null {
    if (this.index < this.count) return `record ${this.index} runs past the end of the batch`;
    if (this.bytesAfterLast > 0) return `${this.bytesAfterLast} bytes follow the last of ${this.count} records`;
    return null;
  }

}

function skipBytesField(reader: VarintReader): void {
  const length = reader.readVarint();
  if (length >= 0) reader.skip(length);
  else if (length !== -1) throw new RangeError(`field length ${length} is negative`);
}

/**
 * Inflates the records of the gzip batch at `position` on the thread pool and checks them as
 * they come, giving up at the first problem or past `INFLATED_BATCH_BYTES_MAX`. Resolves to
 * null when they are sound, else to what is wrong.
 */
export function checkCompressedRecords(buffer: Buffer, position: number): Promise<string | null> {
  return new Promise((resolve) => {
    const records = new InflatedRecords(new RecordsCheck(readRecordCount(buffer, position)));
    const gunzip = createGunzip({ chunkSize: INFLATE_CHUNK_BYTES });
    let inflatedBytes = 0;
    let settled = false;
    const settle = (problem: string | null): void => {
      if (settled) return;
      settled = true;
      gunzip.destroy();
      resolve(problem);
    };
    gunzip.on('data', (chunk: Buffer) => {
      inflatedBytes += chunk.length;
      if (inflatedBytes > INFLATED_BATCH_BYTES_MAX) {
        settle(`its records inflate to more than ${INFLATED_BATCH_BYTES_MAX} bytes`);
        return;
      }
      const problem = records.push(chunk);
      if (problem !== null) settle(problem);
    });
    gunzip.on('error', (error) => settle(`its records do not inflate: ${error.message}`));
    gunzip.on('end', () => settle(records.end()));
    gunzip.end(buffer.subarray(position + RECORDS_OFFSET, position + readBatchSize(buffer, position)));
  });
}

/**
 * Cuts a stream of inflated bytes, in chunks of any size, into runs of whole records for a
 * `RecordsCheck`. A record cut by a chunk's end is kept (as the chunks that hold it) until the
 * chunk that completes it, then joined: a record is only ever copied once, when it spans chunks.
 */
export class InflatedRecords {
  /** The start of a record whose end has not come yet, as the chunks holding it. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** The whole size of that record (length prefix included), or 0 while its prefix is cut. */
  private partialRecordBytes = 0;
  private readonly lengthReader = new VarintReader(EMPTY, 0, 0);

  constructor(private readonly records: RecordsCheck) {}

  push(chunk: Buffer): string | null {
    let buffer = chunk;
    let start = 0;
    if (this.partialBytes > 0) {
      if (this.partialRecordBytes === 0) {
        // The length prefix itself was cut (at most 4 bytes of it are here): join and read on.
        buffer = Buffer.concat([...this.partial, chunk]);
        this.clearPartial();
      } else {
        const missing = this.partialRecordBytes - this.partialBytes;
        if (chunk.length < missing) {
          this.keepPartial(chunk);
          return null;
        }
        const record = Buffer.concat([...this.partial, chunk.subarray(0, missing)]);
        this.clearPartial();
        const problem = this.records.check(record, 0, record.length);
        if (problem !== null) return problem;
        start = missing;
      }
    }
    if (this.records.complete) return this.records.check(buffer, start, buffer.length); // counts what follows
    const wholeEnd = this.wholeRecordsEnd(buffer, start);
    const problem = this.records.check(buffer, start, wholeEnd);
    if (problem !== null) return problem;
    if (wholeEnd < buffer.length) this.keepPartial(buffer.subarray(wholeEnd));
    return null;
  }

  /** At the end of the stream: what is wrong with the records as a whole, or null. */
  end(): string | null {
    if (this.partialBytes > 0) {
      // Either bytes after the last record, which the check counts, or a record cut short.
      if (this.records.complete) for (const part of this.partial) this.records.check(part, 0, part.length);
    }
    return this.records.finish();
  }

  /**
   * Where the run of whole records from `start` ends: at the first record that `buffer` does
   * not hold whole. A record whose length prefix is malformed ends the run after it, for the
   * check to report.
   */
  private wholeRecordsEnd(buffer: Buffer, start: number): number {
    const reader = this.lengthReader.reset(buffer, start, buffer.length);
    let position = start;
    while (position < buffer.length) {
      if (lengthPrefixIsCut(buffer, position)) {
        this.partialRecordBytes = 0;
        return position;
      }
      reader.position = position;
      let length: number;
      try {
        length = reader.readVarint();
      } catch {
        return buffer.length; // over 5 bytes: the check reports it
      }
      if (length <= 0) return buffer.length; // the check reports it
      const recordEnd = reader.position + length;
      if (recordEnd > buffer.length) {
        this.partialRecordBytes = recordEnd - position;
        return position;
      }
      position = recordEnd;
    }
    return position;
  }

  private keepPartial(chunk: Buffer): void {
    this.partial.push(chunk);
    this.partialBytes += chunk.length;
  }

  private clearPartial(): void {
    this.partial = [];
    this.partialBytes = 0;
    this.partialRecordBytes = 0;
  }
}

/** Whether the varint at `position` is cut by the end of `buffer`: its bytes there all continue. */
function lengthPrefixIsCut(buffer: Buffer, position: number): boolean {
  if (buffer.length - position >= VARINT_BYTES_MAX) return false;
  for (let index = position; index < buffer.length; index++) {
    if (buffer[index]! < 0x80) return false;
  }
  return true;
}
