/**
 * Triage tool: describes every batch of a segment `.log` file (or a copy of one, or the bytes a
 * repair moved to quarantine, whatever its name) — position, offsets, sizes,
 * timestamps, producer fields and whether its frame and CRC are valid — optionally with its
 * records. It reads the file with the same codec as the broker, changes nothing, and keeps going
 * after a bad batch by looking for the next valid one, so an operator can see what a fenced
 * partition holds around the damage.
 */
import { errnoOrMessage } from '../common/errors.js';
import { plural } from '../common/plural.js';
import { BATCH_BYTES_MAX } from '../common/request-limits.js';
import { nodeFileSystem, readFully, type FileSystem } from './file-system.js';
import {
  BATCH_HEADER_BYTES,
  checkBatchFrame,
  decodeRecords,
  readBatchHeader,
  readBatchSize,
} from './record-batch.js';
import { isDirectWritePadding } from './direct-writer.js';
import { findValidBatchAfter } from './segment.js';
import { LOG_SUFFIX, parseSegmentFileName } from './file-names.js';
import { basename } from 'node:path';

export interface DumpOptions {
  records: boolean;
  fs?: FileSystem;
}

function printable(value: Buffer | null): string {
  if (value === null) return 'null';
  const text = value.toString('utf8');
  return Buffer.from(text, 'utf8').equals(value) && !CONTROL_CHARACTERS.test(text) ? JSON.stringify(text) : `0x${value.toString('hex')}`;
}

/** C0 controls other than JSON's escaped whitespace, DEL and the C1 controls: never shown raw. */
const CONTROL_CHARACTERS = /[\u0000-\u0008\u000e-\u001f\u007f-\u009f]/;

/** A header key, quoted and escaped like values: a newline or an escape sequence in it stays on its line. */
function printableKey(key: string): string {
  return /^[\w.-]+$/.test(key) ? key : printable(Buffer.from(key, 'utf8'));
}

/** The base offset a segment file's name gives (`00000000000000000042.log`), or null for any other name. */
function baseOffsetOfName(path: string): number | null {
  const parsed = parseSegmentFileName(basename(path));
  return parsed?.suffix === LOG_SUFFIX ? parsed.baseOffset : null;
}

/** Reads `length` bytes at `position`; a short read means the file shrank (a live segment sealed meanwhile). */
async function readAt(fs: FileSystem, fd: number, path: string, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled: number;
  try {
    filled = await readFully(fs, fd, buffer, 0, length, position);
  } catch (error) {
    throw new Error(`reading ${path} at byte ${position} failed: ${errnoOrMessage(error)}`, { cause: error });
  }
  if (filled < length) throw new Error(`${path} ended at byte ${position + filled} while it was read (a live segment sealed or truncated meanwhile?): run dump-log again`);
  return buffer;
}

/** Yields one line per batch (and per record with `records`), then a summary line. */
export async function* dumpLogFile(path: string, options: DumpOptions): AsyncGenerator<string> {
  const fs = options.fs ?? nodeFileSystem;
  // Any name: a segment log, a copy of one, or the bytes a repair moved to quarantine.
  const fd = await fs.open(path, { create: false, readOnly: true }).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot open ${path}: ${error.code === 'ENOENT' ? 'no such file' : errnoOrMessage(error)}`, { cause: error });
  });
  try {
    const fileBytes = await fs.fileSize(fd);
    let position = 0;
    let batches = 0;
    let invalid = 0;
    let outOfOrder = 0;
    // The base offset the next batch should have: the CRC does not cover it, so a damaged one
    // shows only as a break in the sequence. Unknown after skipped bytes, or for a file not
    // named after its first offset (a quarantined tail) until its first batch.
    let expectedOffset = baseOffsetOfName(path);
    while (position < fileBytes) {
      const header = await readAt(fs, fd, path, Math.min(BATCH_HEADER_BYTES, fileBytes - position), position);
      const size = header.length >= 12 ? readBatchSize(header, 0) : 0;
      // The body is read only for a plausible length: a damaged one may claim gigabytes.
      const plausible = size >= BATCH_HEADER_BYTES && size <= BATCH_BYTES_MAX;
      const batch = plausible ? await readAt(fs, fd, path, Math.min(size, fileBytes - position), position) : header;
      const problem = checkBatchFrame(batch, 0, batch.length);
      if (problem !== null && (await isDirectWritePadding(fs, fd, position, fileBytes))) {
        yield `position=${position} padding: ${fileBytes - position} zero bytes past the last batch (left by direct writes; cut when the segment is sealed or closed)`;
        break;
      }
      if (problem !== null) {
        invalid++;
        yield `position=${position} INVALID: ${problem}`;
        const next = await findValidBatchAfter(fs, fd, fileBytes, position, 0);
        if (next < 0) {
          yield `no valid batch after byte ${position}: ${fileBytes - position} bytes to the end of the file`;
          break;
        }
        yield `next valid batch at byte ${next} (${next - position} bytes skipped)`;
        position = next;
        expectedOffset = null;
        continue;
      }
      const h = readBatchHeader(batch, 0);
      batches++;
      yield `position=${position} baseOffset=${h.baseOffset} lastOffset=${h.lastOffset} count=${h.recordCount} size=${h.sizeBytes} ` +
        `baseTimestamp=${h.baseTimestamp} maxTimestamp=${h.maxTimestamp} compression=${h.compression} ` +
        `producerId=${h.producerId} producerEpoch=${h.producerEpoch} baseSequence=${h.baseSequence} crc=valid`;
      if (expectedOffset !== null && h.baseOffset !== expectedOffset) {
        outOfOrder++;
        yield `position=${position} OFFSET ${h.baseOffset > expectedOffset ? 'GAP' : 'OVERLAP'}: baseOffset ${h.baseOffset}, expected ${expectedOffset} (the CRC does not cover the base offset: the broker fences a log like this)`;
      }
      expectedOffset = h.lastOffset + 1;
      if (options.records) {
        try {
          for (const record of decodeRecords(batch, 0)) {
            const headers = record.headers.map((entry) => `${printableKey(entry.key)}=${printable(entry.value)}`).join(',');
            yield `  offset=${record.offset} timestamp=${record.timestamp} key=${printable(record.key)} value=${printable(record.value)}${headers ? ` headers=${headers}` : ''}`;
          }
        } catch (error) {
          yield `  records not shown: ${errnoOrMessage(error)}`;
        }
      }
      position += h.sizeBytes;
    }
    const breaks = outOfOrder > 0 ? `, ${plural(outOfOrder, 'batch', 'batches')} out of offset order` : '';
    yield `${plural(batches, 'valid batch', 'valid batches')}, ${plural(invalid, 'invalid region')}${breaks}, ${fileBytes} bytes`;
  } finally {
    await fs.close(fd);
  }
}
