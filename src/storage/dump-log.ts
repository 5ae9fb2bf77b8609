/**
 * Triage tool: describes every batch of a segment `.log` file (or a copy of one, or the bytes a
 * repair moved to quarantine, whatever its name) — position, offsets, sizes,
 * timestamps, producer fields and whether its frame and CRC are valid — optionally with its
 * records. It reads the file with the same codec as the broker, changes nothing, and keeps going
 * after a bad batch by looking for the next valid one, so an operator can see what a fenced
 * partition holds around the damage.
 */
import { errnoOrMessage } from '../common/errors.js';
import { nodeFileSystem, type FileSystem } from './file-system.js';
import {
  BATCH_HEADER_BYTES,
  checkBatchFrame,
  decodeRecords,
  readBatchHeader,
  readBatchSize,
} from './record-batch.js';
import { isDirectWritePadding } from './direct-writer.js';
import { findValidBatchAfter } from './segment.js';

export interface DumpOptions {
  records: boolean;
  fs?: FileSystem;
}

function printable(value: Buffer | null): string {
  if (value === null) return 'null';
  const text = value.toString('utf8');
  return Buffer.from(text, 'utf8').equals(value) && !/[\u0000-\u0008\u000e-\u001f]/.test(text) ? JSON.stringify(text) : `0x${value.toString('hex')}`;
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
    while (position < fileBytes) {
      const header = Buffer.allocUnsafe(Math.min(BATCH_HEADER_BYTES, fileBytes - position));
      await fs.read(fd, header, 0, header.length, position);
      const size = header.length >= 12 ? readBatchSize(header, 0) : 0;
      const batch = Buffer.allocUnsafe(Math.max(header.length, Math.min(Math.max(size, 0), fileBytes - position)));
      await fs.read(fd, batch, 0, batch.length, position);
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
        continue;
      }
      const h = readBatchHeader(batch, 0);
      batches++;
      yield `position=${position} baseOffset=${h.baseOffset} lastOffset=${h.lastOffset} count=${h.recordCount} size=${h.sizeBytes} ` +
        `baseTimestamp=${h.baseTimestamp} maxTimestamp=${h.maxTimestamp} compression=${h.compression} ` +
        `producerId=${h.producerId} producerEpoch=${h.producerEpoch} baseSequence=${h.baseSequence} crc=valid`;
      if (options.records) {
        for (const record of decodeRecords(batch, 0)) {
          const headers = record.headers.map((entry) => `${entry.key}=${printable(entry.value)}`).join(',');
          yield `  offset=${record.offset} timestamp=${record.timestamp} key=${printable(record.key)} value=${printable(record.value)}${headers ? ` headers=${headers}` : ''}`;
        }
      }
      position += h.sizeBytes;
    }
    yield `${batches} valid batches, ${invalid} invalid regions, ${fileBytes} bytes`;
  } finally {
    await fs.close(fd);
  }
}
