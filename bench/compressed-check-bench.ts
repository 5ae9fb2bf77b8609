/**
 * What checking a producer's gzip batch costs the broker's event loop: the chunked check the
 * broker runs (`checkCompressedRecords`, inflating on libuv's thread pool) against inflating the
 * batch whole on the event loop and then scanning its records the same way.
 *
 *   npm run build && node dist/bench/compressed-check-bench.js
 *
 * Batches of 1 MiB of inflated records (100 B and 1 KiB records, JSON-like values that gzip
 * compresses several times over) and one of 16 MiB. For each: the synchronous way's time per
 * batch (all of it on the event loop), and the chunked check's wall time and event-loop time
 * (`performance.eventLoopUtilization`) per batch, one batch at a time and four at once.
 */
import { performance } from 'node:perf_hooks';
import { gunzipSync } from 'node:zlib';
import { RecordsCheck, checkCompressedRecords } from '../src/storage/batch-validation.js';
import { INFLATED_BATCH_BYTES_MAX, RECORDS_OFFSET, readBatchSize, readRecordCount } from '../src/storage/record-batch.js';
import { buildBatch } from '../src/storage/record-batch-builder.js';
import { exitWithFailureLine } from './failure-line.js';

const MiB = 1024 * 1024;
const STATUSES = ['created', 'paid', 'shipped', 'delivered', 'returned'];

/** A gzip batch of records of `recordBytes` each, `inflatedBytes` in all (roughly). */
function gzipBatch(recordBytes: number, inflatedBytes: number): Buffer {
  const records = [];
  for (let index = 0, bytes = 0; bytes < inflatedBytes; index++, bytes += recordBytes + 20) {
    const customer = `c-${(index * 7919) % 5000}`;
    const value = `{"order":${100_000 + index},"customer":"${customer}","status":"${STATUSES[index % 5]}","amount":${(index * 37) % 10_000}}`;
    records.push({ key: Buffer.from(customer), value: Buffer.from(value.padEnd(recordBytes, ' ')) });
  }
  return buildBatch(records, { compression: 'gzip' });
}

/** The synchronous way: inflate the whole batch on the event loop, then scan its records. */
function checkSynchronously(batch: Buffer): void {
  const records = gunzipSync(batch.subarray(RECORDS_OFFSET, readBatchSize(batch, 0)), { maxOutputLength: INFLATED_BATCH_BYTES_MAX });
  const check = new RecordsCheck(readRecordCount(batch, 0));
  const problem = check.check(records, 0, records.length) ?? check.finish();
  if (problem !== null) throw new Error(problem);
}

async function checkChunked(batch: Buffer): Promise<void> {
  const problem = await checkCompressedRecords(batch, 0);
  if (problem !== null) throw new Error(problem);
}

async function main(): Promise<void> {
  for (const [recordBytes, inflatedBytes] of [[100, MiB], [1024, MiB], [1024, 16 * MiB]] as const) {
    const batch = gzipBatch(recordBytes, inflatedBytes);
    const runs = inflatedBytes > 4 * MiB ? 12 : 100;
    for (let warmup = 0; warmup < 5; warmup++) {
      checkSynchronously(batch);
      await checkChunked(batch);
    }
    let start = performance.now();
    for (let run = 0; run < runs; run++) checkSynchronously(batch);
    const synchronousMs = (performance.now() - start) / runs;
    const line = [`${recordBytes} B records, ${(inflatedBytes / MiB).toFixed(0)} MiB inflated (${(batch.length / 1024).toFixed(0)} KiB gzip):`, `synchronous ${synchronousMs.toFixed(2)} ms/batch on the loop;`];
    for (const atOnce of [1, 4]) {
      const before = performance.eventLoopUtilization();
      start = performance.now();
      for (let run = 0; run < runs; run += atOnce) await Promise.all(Array.from({ length: atOnce }, () => checkChunked(batch)));
      const wallMs = (performance.now() - start) / runs;
      const loopMs = performance.eventLoopUtilization(before).active / runs;
      line.push(`chunked, ${atOnce} at once: ${wallMs.toFixed(2)} ms/batch wall (${Math.round(1000 / wallMs)} batches/s), ${loopMs.toFixed(2)} ms/batch on the loop;`);
    }
    console.log(line.join(' '));
  }
}

await main().catch(exitWithFailureLine('compressed-check-bench'));
