/**
 * Validation of the record batches a producer sends, before the broker appends them: each
 * batch's frame (`checkBatchFrame`), its header against its records, and every record's fields
 * against its length.
 *
 * Uncompressed batches are checked on the calling thread: a scan of the varints in place. A
 * compressed batch's records are inflated on libuv's thread pool, a chunk at a time, and checked
 * as each chunk arrives, so a batch that inflates to many megabytes neither holds up the event
 * loop nor sits in memory: a check holds one chunk, and of a record that spans chunks only the
 * varint being read (`RecordInPieces`).
 */
import { createGunzip } from 'node:zlib';
import { ErrorCode, StrataError } from '../common/errors.js';
import {
  checkBatchFrame,
  Compression,
  compressionOf,
  CONTROL_MASK,
  TRANSACTIONAL_MASK,
  CURRENT_MAGIC,
  INFLATE_CHUNK_BYTES,
  INFLATED_BATCH_BYTES_MAX,
  MAGIC_OFFSET,
  readAttributes,
  readBaseTimestamp,
  readBatchSize,
  readLastOffsetDelta,
  readMaxTimestamp,
  readRecordCount,
  RECORDS_OFFSET,
  TIMESTAMP_TYPE_MASK,
  unsupportedCodecMessage,
} from './record-batch.js';
import { VarintReader } from './varint.js';

const EMPTY = Buffer.alloc(0);

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
        records.check(buffer, position + RECORDS_OFFSET, position + readBatchSize(buffer, position)) ?? records.finish() ?? checkMaxTimestamp(buffer, position, records);
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
 * time, off the event loop. Rejects with `CORRUPT_BATCH` naming the first bad batch, or with
 * `RECORD_TOO_LARGE` for a record that inflates to more than `maxRecordBytes`: a record must
 * fit in `max.message.bytes` compressed or not, so that a reader never has to take more (a
 * decoded read answers at least one whole record) and a small batch cannot inflate into
 * records of up to `INFLATED_BATCH_BYTES_MAX`.
 */
export async function checkCompressedBatches(buffer: Buffer, batches: readonly CompressedBatch[], maxRecordBytes: number): Promise<void> {
  for (const { index, position } of batches) {
    const { problem, recordTooLarge } = await inflateAndCheck(buffer, position, maxRecordBytes);
    if (recordTooLarge) {
      throw new StrataError(ErrorCode.RECORD_TOO_LARGE, `batch ${index} has ${problem}, larger than max.message.bytes ${maxRecordBytes}: every record must fit in max.message.bytes, compressed or not`);
    }
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
  await checkCompressedBatches(buffer, compressed, maxBatchBytes);
  return { batchCount, recordCount };
}

/**
 * A batch's timestamps (in its header) against its records: with create time, its max
 * timestamp must be the largest of their timestamps, or lookups by time would skip them and
 * retention would delete them early, and none may be negative (as on the records path, whose
 * timestamps are unsigned). With log-append time the records' own timestamps are not used.
 */
function checkMaxTimestamp(buffer: Buffer, position: number, records: RecordsCheck): string | null {
  if (readAttributes(buffer, position) & TIMESTAMP_TYPE_MASK) return null;
  const baseTimestamp = readBaseTimestamp(buffer, position);
  const largest = baseTimestamp + records.largestTimestampDelta;
  const maxTimestamp = readMaxTimestamp(buffer, position);
  if (largest !== maxTimestamp) return `max timestamp ${maxTimestamp} is not the largest of its records' timestamps, ${largest}`;
  const smallest = baseTimestamp + records.smallestTimestampDelta;
  return smallest >= 0 ? null : `a record's timestamp ${smallest} is negative: records need timestamps, in milliseconds since the epoch`;
}

function corruptBatch(index: number, position: number, problem: string): StrataError {
  return new StrataError(ErrorCode.CORRUPT_BATCH, `invalid record batch ${index} at byte ${position}: ${problem}`);
}

/**
 * What a batch's header must say about its records, checked without reading them: a positive
 * record count, `lastOffsetDelta` of `count - 1`, neither a control nor a transactional batch, a
 * codec Strata reads.
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
  // Kafka's readers would take such a batch for part of a transaction no marker ever ends.
  if (attributes & TRANSACTIONAL_MASK) return 'transactional batches are not accepted: Strata has no transactions (clear bit 4 of the attributes)';
  // A batch's max timestamp places it in the time index and ages it for retention.
  const maxTimestamp = readMaxTimestamp(buffer, position);
  if (maxTimestamp < 0) return `max timestamp ${maxTimestamp} is negative: records need timestamps, in milliseconds since the epoch`;
  const compression = compressionOf(attributes);
  if (compression !== Compression.none && compression !== Compression.gzip) {
    return unsupportedCodecMessage(compression);
  }
  return null;
}

/**
 * Checks a batch's records, given as one or more runs of whole records in order: each record's
 * fields fill exactly its length, offset deltas run 0..count-1, and exactly `count` records
 * come, with nothing after the last.
 */
export class RecordsCheck {
  private index = 0;
  /** The largest timestamp delta of the records checked so far. */
  largestTimestampDelta = Number.NEGATIVE_INFINITY;
  /** The smallest timestamp delta of the records checked so far. */
  smallestTimestampDelta = Number.POSITIVE_INFINITY;
  /** The largest record checked so far: its length (the bytes after its length prefix). */
  largestRecordBytes = 0;
  private readonly reader = new VarintReader(EMPTY, 0, 0);
  private readonly fields = new VarintReader(EMPTY, 0, 0); // reused per record

  constructor(readonly count: number) {}

  /** The index of the next record to check. */
  get nextIndex(): number {
    return this.index;
  }

  /** Whether every record the header counts has been checked. */
  get complete(): boolean {
    return this.index === this.count;
  }

  /** Counts a record checked elsewhere (`RecordInPieces`), with its timestamp delta and length. */
  recordChecked(timestampDelta: number, recordBytes: number): void {
    if (recordBytes > this.largestRecordBytes) this.largestRecordBytes = recordBytes;
    if (timestampDelta > this.largestTimestampDelta) this.largestTimestampDelta = timestampDelta;
    if (timestampDelta < this.smallestTimestampDelta) this.smallestTimestampDelta = timestampDelta;
    this.index++;
  }

  /** Checks the records in `buffer[start, end)`; null when they are sound, else what is wrong. */
  check(buffer: Buffer, start: number, end: number): string | null {
    const reader = this.reader.reset(buffer, start, end);
    const fields = this.fields.reset(buffer, start, end);
    try {
      while (reader.position < end) {
        const index = this.index;
        if (index === this.count) return this.bytesAfterLast();
        const length = reader.readVarint();
        if (length <= 0) return `record ${index} has length ${length}`;
        if (length > this.largestRecordBytes) this.largestRecordBytes = length;
        const recordEnd = reader.position + length;
        if (recordEnd > end) return `record ${index} runs past the end of the batch`;
        fields.position = reader.position;
        fields.end = recordEnd;
        fields.readInt8();
        const timestampDelta = fields.readVarlong();
        if (timestampDelta > this.largestTimestampDelta) this.largestTimestampDelta = timestampDelta;
        if (timestampDelta < this.smallestTimestampDelta) this.smallestTimestampDelta = timestampDelta;
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
    return null;
  }

  /** After the last run: null when all `count` records came. */
  finish(): string | null {
    return this.complete ? null : `record ${this.index} runs past the end of the batch`;
  }

  bytesAfterLast(): string {
    return `bytes follow the last of its ${this.count} records`;
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
export async function checkCompressedRecords(buffer: Buffer, position: number): Promise<string | null> {
  return (await inflateAndCheck(buffer, position, Number.POSITIVE_INFINITY)).problem;
}

/**
 * `checkCompressedRecords`, which also gives up at a record longer than `maxRecordBytes`
 * (`recordTooLarge`; its problem then names the record's size).
 */
function inflateAndCheck(buffer: Buffer, position: number, maxRecordBytes: number): Promise<{ problem: string | null; recordTooLarge: boolean }> {
  return new Promise((resolve) => {
    const check = new RecordsCheck(readRecordCount(buffer, position));
    const records = new InflatedRecords(check);
    const gunzip = createGunzip({ chunkSize: INFLATE_CHUNK_BYTES });
    let inflatedBytes = 0;
    let settled = false;
    const settle = (problem: string | null, recordTooLarge = false): void => {
      if (settled) return;
      settled = true;
      gunzip.destroy();
      resolve({ problem, recordTooLarge });
    };
    gunzip.on('data', (chunk: Buffer) => {
      if (settled) return;
      inflatedBytes += chunk.length;
      if (inflatedBytes > INFLATED_BATCH_BYTES_MAX) {
        settle(`its records inflate to more than ${INFLATED_BATCH_BYTES_MAX} bytes`);
        return;
      }
      const problem = records.push(chunk);
      const largest = records.largestRecordBytes;
      // A length past what any batch inflates to is damage, not a large record.
      if (largest > INFLATED_BATCH_BYTES_MAX) settle(`a record's length ${largest} is more than a batch's records may inflate to, ${INFLATED_BATCH_BYTES_MAX} bytes`);
      else if (largest > maxRecordBytes) settle(`a record of ${largest} bytes once inflated`, true);
      else if (problem !== null) settle(problem);
    });
    gunzip.on('error', (error) => settle(`its records do not inflate: ${error.message}`));
    gunzip.on('end', () => settle(records.end() ?? checkMaxTimestamp(buffer, position, check)));
    gunzip.end(buffer.subarray(position + RECORDS_OFFSET, position + readBatchSize(buffer, position)));
  });
}

/**
 * Checks a stream of inflated records that comes in chunks of any size, holding none of them
 * once its call returns: the whole records of a chunk go to a `RecordsCheck` as one run, and a
 * record cut by a chunk's end to a `RecordInPieces`, which reads on into the next chunks.
 */
export class InflatedRecords {
  private inPieces: RecordInPieces | null = null;
  private readonly lengthReader = new VarintReader(EMPTY, 0, 0);

  constructor(readonly check: RecordsCheck) {}

  /** The longest record so far, counting one still being read in pieces (its length is read first). */
  get largestRecordBytes(): number {
    return Math.max(this.check.largestRecordBytes, this.inPieces?.recordBytes ?? 0);
  }

  /** Checks the next chunk; null when nothing is wrong so far, else what is. */
  push(chunk: Buffer): string | null {
    let position = 0;
    if (this.inPieces !== null) {
      position = this.inPieces.feed(chunk, 0);
      if (position < 0) return this.inPieces.problem;
      const { problem, timestampDelta, recordBytes } = this.inPieces;
      this.inPieces = null;
      if (problem !== null) return problem;
      this.check.recordChecked(timestampDelta, recordBytes);
    }
    const wholeEnd = this.wholeRecordsEnd(chunk, position);
    const problem = this.check.check(chunk, position, wholeEnd);
    if (problem !== null || wholeEnd === chunk.length) return problem;
    if (this.check.complete) return this.check.bytesAfterLast();
    this.inPieces = new RecordInPieces(this.check.nextIndex);
    this.inPieces.feed(chunk, wholeEnd); // cannot end the record: the chunk does not hold it whole
    return this.inPieces.problem;
  }

  /** At the end of the stream: what is wrong with the records as a whole, or null. */
  end(): string | null {
    return this.inPieces !== null ? this.inPieces.cutShort() : this.check.finish();
  }

  /**
   * Where the run of whole records from `start` ends: at the first record that `buffer` does
   * not hold whole. A malformed length prefix ends the run at the buffer's end, so that the
   * check reports it (unless the buffer ends inside it: then `RecordInPieces` does).
   */
  private wholeRecordsEnd(buffer: Buffer, start: number): number {
    const reader = this.lengthReader.reset(buffer, start, buffer.length);
    let position = start;
    while (position < buffer.length) {
      reader.position = position;
      let length: number;
      try {
        length = reader.readVarint();
      } catch {
        return reader.position >= buffer.length ? position : buffer.length; // cut short, or over 5 bytes
      }
      if (length <= 0) return buffer.length;
      const recordEnd = reader.position + length;
      if (recordEnd > buffer.length) return position;
      position = recordEnd;
    }
    return position;
  }
}

// The steps through a record's fields, in order (see the record layout in record-batch.ts).
const LENGTH = 0;
const ATTRIBUTES = 1;
const TIMESTAMP_DELTA = 2;
const OFFSET_DELTA = 3;
const KEY_LENGTH = 4;
const KEY = 5;
const VALUE_LENGTH = 6;
const VALUE = 7;
const HEADER_COUNT = 8;
const HEADER_KEY_LENGTH = 9;
const HEADER_KEY = 10;
const HEADER_VALUE_LENGTH = 11;
const HEADER_VALUE = 12;
/** A field was wrong: the rest of the record is skipped before the problem is reported. */
const REST = 13;
const DONE = 14;

/** Bytes gathered for a varint before decoding it: enough for the reader to see it is too long. */
const VARINT_GATHER_BYTES = 5;
const VARLONG_GATHER_BYTES = 9;

/**
 * Checks one record whose bytes come in pieces, a chunk at a time, without keeping them. Each
 * varint is gathered (at most 9 bytes) and decoded by the reader `RecordsCheck` uses; keys,
 * values and header bodies are skipped. It finds the same problems as `RecordsCheck` over the
 * whole record, in the same words. As there, a problem in the record's fields counts only once
 * the record's end has come: a stream that ends first makes the record "run past the end".
 */
class RecordInPieces {
  /** What is wrong with the record: set when it has ended, or when its length prefix is wrong. */
  problem: string | null = null;
  /** The record's timestamp delta, once read. */
  timestampDelta = 0;
  /** The record's length (the bytes after its length prefix), once read. */
  recordBytes = 0;
  private fieldProblem: string | null = null;
  private step = LENGTH;
  /** Bytes of the record after its length prefix not consumed yet (they bound every field). */
  private left = 0;
  /** Bytes of the current key, value or header body (or the rest of the record) to skip. */
  private skipping = 0;
  private headerCount = 0;
  private header = 0;
  private readonly gathered = Buffer.alloc(VARLONG_GATHER_BYTES);
  private gatheredBytes = 0;
  private readonly reader = new VarintReader(EMPTY, 0, 0);

  constructor(private readonly index: number) {}

  /**
   * Reads on from `buffer[position..]`. Returns where the record ended (then `problem` says if
   * it is wrong), or -1 when it needs more bytes or its length prefix is wrong (`problem`).
   */
  feed(buffer: Buffer, position: number): number {
    while (this.step !== DONE && position < buffer.length && this.problem === null) {
      switch (this.step) {
        case KEY:
        case VALUE:
        case HEADER_KEY:
        case HEADER_VALUE:
        case REST: {
          const taken = Math.min(this.skipping, buffer.length - position);
          position += taken;
          this.skipping -= taken;
          this.left -= taken;
          if (this.skipping === 0) this.bodySkipped();
          break;
        }
        case ATTRIBUTES:
          position++;
          this.left--;
          this.step = TIMESTAMP_DELTA;
          break;
        default:
          position = this.gather(buffer, position);
          if (this.varintReady()) this.varintGathered();
      }
      if (this.step !== LENGTH && this.step !== DONE && this.left === 0) this.recordBytesEnded();
    }
    return this.step === DONE ? position : -1;
  }

  /** At the end of the stream, with this record unfinished: what the whole check says of it. */
  cutShort(): string {
    if (this.problem !== null) return this.problem;
    if (this.step === LENGTH) {
      try {
        this.decoded().readVarint();
      } catch (error) {
        return `record ${this.index}: ${(error as Error).message}`;
      }
    }
    return `record ${this.index} runs past the end of the batch`;
  }

  private get bounded(): boolean {
    return this.step !== LENGTH;
  }

  /** Copies varint bytes into `gathered` until one ends the varint, the limit is reached, or the record ends. */
  private gather(buffer: Buffer, position: number): number {
    const limit = this.step === TIMESTAMP_DELTA ? VARLONG_GATHER_BYTES : VARINT_GATHER_BYTES;
    while (position < buffer.length && this.gatheredBytes < limit && !(this.bounded && this.left === 0)) {
      const byte = buffer[position++]!;
      this.gathered[this.gatheredBytes++] = byte;
      if (this.bounded) this.left--;
      if (byte < 0x80) break;
    }
    return position;
  }

  /** Whether the gathered varint is ready to decode: ended, or at its limit. */
  private varintReady(): boolean {
    const limit = this.step === TIMESTAMP_DELTA ? VARLONG_GATHER_BYTES : VARINT_GATHER_BYTES;
    return this.gatheredBytes > 0 && (this.gathered[this.gatheredBytes - 1]! < 0x80 || this.gatheredBytes === limit);
  }

  /** A reader over the gathered bytes, which it consumes. */
  private decoded(): VarintReader {
    const reader = this.reader.reset(this.gathered, 0, this.gatheredBytes);
    this.gatheredBytes = 0;
    return reader;
  }

  /**
   * The record's bytes are all consumed while a field still wanted some: the reader says what
   * it would have said at the record's end (a cut varint, or no attributes byte).
   */
  private recordBytesEnded(): void {
    if (this.step === REST || this.skipping > 0) return; // REST ends below; a body too long was refused
    if (this.step === ATTRIBUTES) this.fail(`record ${this.index}: record runs past the end of the batch`);
    else this.varintGathered(); // decodes the varint cut short, which the reader refuses
  }

  /** Acts on the gathered varint of the current step. */
  private varintGathered(): void {
    const reader = this.decoded();
    try {
      switch (this.step) {
        case LENGTH: {
          const length = reader.readVarint();
          if (length <= 0) {
            this.problem = `record ${this.index} has length ${length}`;
            return;
          }
          this.left = length;
          this.recordBytes = length;
          this.step = ATTRIBUTES;
          return;
        }
        case TIMESTAMP_DELTA:
          this.timestampDelta = reader.readVarlong();
          this.step = OFFSET_DELTA;
          return;
        case OFFSET_DELTA: {
          const offsetDelta = reader.readVarint();
          if (offsetDelta !== this.index) this.fail(`record ${this.index} has offset delta ${offsetDelta}`);
          else this.step = KEY_LENGTH;
          return;
        }
        case KEY_LENGTH:
          return this.bytesField(reader.readVarint(), KEY);
        case VALUE_LENGTH:
          return this.bytesField(reader.readVarint(), VALUE);
        case HEADER_COUNT: {
          const headerCount = reader.readVarint();
          if (headerCount < 0) return this.fail(`record ${this.index} has ${headerCount} headers`);
          this.headerCount = headerCount;
          this.header = 0;
          return headerCount === 0 ? this.fieldsEnded() : void (this.step = HEADER_KEY_LENGTH);
        }
        case HEADER_KEY_LENGTH: {
          const keyLength = reader.readVarint();
          if (keyLength < 0) return this.fail(`record ${this.index} header ${this.header} has a null key`);
          return this.skip(keyLength, HEADER_KEY);
        }
        case HEADER_VALUE_LENGTH:
          return this.bytesField(reader.readVarint(), HEADER_VALUE);
      }
    } catch (error) {
      if (this.step === LENGTH) this.problem = `record ${this.index}: ${(error as Error).message}`;
      else this.fail(`record ${this.index}: ${(error as Error).message}`);
    }
  }

  /** A bytes field of `length` (-1 for null): its body is skipped, a null one steps past. */
  private bytesField(length: number, body: number): void {
    if (length >= 0) return this.skip(length, body);
    if (length !== -1) throw new RangeError(`field length ${length} is negative`);
    this.step = body;
    this.bodySkipped();
  }

  private skip(length: number, body: number): void {
    if (length > this.left) throw new RangeError(`field of ${length} bytes runs past the end of the batch`);
    this.skipping = length;
    this.step = body;
    if (length === 0) this.bodySkipped();
  }

  /** The body (or rest) being skipped is behind: on to the next field. */
  private bodySkipped(): void {
    switch (this.step) {
      case KEY:
        this.step = VALUE_LENGTH;
        return;
      case VALUE:
        this.step = HEADER_COUNT;
        return;
      case HEADER_KEY:
        this.step = HEADER_VALUE_LENGTH;
        return;
      case HEADER_VALUE:
        this.header++;
        if (this.header < this.headerCount) this.step = HEADER_KEY_LENGTH;
        else this.fieldsEnded();
        return;
      case REST:
        this.step = DONE;
        this.problem = this.fieldProblem;
        return;
    }
  }

  /** The last field is read: the record must end here too. */
  private fieldsEnded(): void {
    if (this.left > 0) return this.fail(`record ${this.index} has ${this.left} bytes its fields do not account for`);
    this.step = DONE;
    this.problem = this.fieldProblem;
  }

  /** A field is wrong: the first such problem is kept, and the rest of the record skipped. */
  private fail(problem: string): void {
    this.fieldProblem ??= problem;
    this.skipping = this.left;
    this.step = REST;
    if (this.left === 0) this.bodySkipped();
  }
}
