// Goal: show that `strata dump-log` describes a segment file as it is: every valid batch (and its
// records on request), the zero padding direct writes leave past a live log named as padding and
// not counted as damage, damage followed by the next valid batch, and zeros too long to be
// padding reported as damage. Method: real files, one written by a live log with direct writes
// on the event loop, others assembled from encoded batches, garbage and zeros.
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DIRECT_IO_BLOCK_BYTES } from '../../src/storage/aligned-memory.js';
import { MAX_PADDING_BYTES } from '../../src/storage/direct-writer.js';
import { crc32c } from '@node-rs/crc32';
import { BATCH_BYTES_MAX } from '../../src/common/request-limits.js';
import { dumpLogFile } from '../../src/storage/dump-log.js';
import { type FileSystem, nodeFileSystem } from '../../src/storage/file-system.js';
import { ATTRIBUTES_OFFSET, CRC_OFFSET } from '../../src/storage/record-batch.js';
import { InlineIoBudget } from '../../src/storage/inline-io.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { DIRECT_WRITES_WORK } from '../helpers/test-file-system.js';

const SEGMENT = '00000000000000000000.log';
const PADDING_NOTE = 'zero bytes past the last batch (left by direct writes; cut when the segment is sealed or closed)';

const directories: string[] = [];

afterEach(() => {
  for (const directory of directories.splice(0)) nodeFs.rmSync(directory, { recursive: true, force: true });
});

function tempDir(): string {
  const directory = nodeFs.mkdtempSync(join(os.tmpdir(), 'strata-dump-'));
  directories.push(directory);
  return directory;
}

/** `count` records from `baseOffset`, each value `value <offset>` followed by `padBytes` spaces. */
function batchAt(baseOffset: number, count: number, padBytes = 0): Buffer {
  const records = Array.from({ length: count }, (_, index) => ({ key: Buffer.from(`k${baseOffset + index}`), value: Buffer.from(`value ${baseOffset + index}${' '.repeat(padBytes)}`) }));
  return buildBatch(records, { baseOffset, timestamp: 1_700_000_000_000 });
}

async function dump(path: string, records = false): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of dumpLogFile(path, { records })) lines.push(line);
  return lines;
}

/** A segment file of `parts` in order, in a fresh directory. */
function segmentFile(parts: readonly Buffer[]): string {
  const path = join(tempDir(), SEGMENT);
  nodeFs.writeFileSync(path, Buffer.concat(parts));
  return path;
}

describe('dump-log', () => {
  it.skipIf(!DIRECT_WRITES_WORK)('lists the batches of a live segment and names the zeros past them as padding', async () => {
    const directory = tempDir();
    const log = await PartitionLog.open({ directory, name: 'dump-0', directWriteMinBytes: 256 * 1024, inlineIo: new InlineIoBudget({ now: () => 0 }) });
    try {
      // Batches of about 6 KB, so that each write after the first ends past the block it began in.
      for (let batch = 0; batch < 4; batch++) await log.append(batchAt(0, 3, 2000));
      const path = join(directory, SEGMENT);
      const fileBytes = nodeFs.statSync(path).size;
      expect(fileBytes - log.sizeBytes, 'a runway past the log').toBeGreaterThan(DIRECT_IO_BLOCK_BYTES);
      const lines = await dump(path);
      expect(lines.filter((line) => line.endsWith('crc=valid'))).toHaveLength(4);
      expect(lines).toContain(`position=${log.sizeBytes} padding: ${fileBytes - log.sizeBytes} ${PADDING_NOTE}`);
      expect(lines.at(-1)).toBe(`4 valid batches, 0 invalid regions, ${fileBytes} bytes`);
    } finally {
      await log.close();
    }
  });

  it('prints each record with records: true', async () => {
    const first = batchAt(0, 2);
    const lines = await dump(segmentFile([first, batchAt(2, 1)]), true);
    expect(lines).toEqual([
      expect.stringMatching(/^position=0 baseOffset=0 lastOffset=1 count=2 size=\d+ .* crc=valid$/),
      '  offset=0 timestamp=1700000000000 key="k0" value="value 0"',
      '  offset=1 timestamp=1700000000000 key="k1" value="value 1"',
      expect.stringMatching(new RegExp(`^position=${first.length} baseOffset=2 lastOffset=2 count=1 `)),
      '  offset=2 timestamp=1700000000000 key="k2" value="value 2"',
      `2 valid batches, 0 invalid regions, ${first.length + batchAt(2, 1).length} bytes`,
    ]);
  });

  it('reports damage with the next valid batch after it, and zeros too long for padding as damage', async () => {
    const first = batchAt(0, 2);
    const garbage = Buffer.alloc(100, 0xab);
    const second = batchAt(2, 3);
    const valid = first.length + garbage.length + second.length;
    const blockEnd = Math.ceil(valid / DIRECT_IO_BLOCK_BYTES) * DIRECT_IO_BLOCK_BYTES;
    for (const [zeros, padding] of [
      [blockEnd - valid + DIRECT_IO_BLOCK_BYTES, true],
      [Math.ceil((valid + MAX_PADDING_BYTES) / DIRECT_IO_BLOCK_BYTES) * DIRECT_IO_BLOCK_BYTES - valid, false],
      [blockEnd - valid + 100, false], // not ending on a block boundary
    ] as const) {
      const lines = await dump(segmentFile([first, garbage, second, Buffer.alloc(zeros)]));
      const fileBytes = valid + zeros;
      expect(lines[0]).toMatch(/^position=0 baseOffset=0 .* crc=valid$/);
      expect(lines[1]).toMatch(new RegExp(`^position=${first.length} INVALID: `));
      expect(lines[2]).toBe(`next valid batch at byte ${first.length + garbage.length} (${garbage.length} bytes skipped)`);
      expect(lines[3]).toMatch(new RegExp(`^position=${first.length + garbage.length} baseOffset=2 .* crc=valid$`));
      if (padding) {
        expect(lines.slice(4), `${zeros} zeros`).toEqual([`position=${valid} padding: ${zeros} ${PADDING_NOTE}`, `2 valid batches, 1 invalid region, ${fileBytes} bytes`]);
      } else {
        expect(lines[4], `${zeros} zeros`).toMatch(new RegExp(`^position=${valid} INVALID: `));
        expect(lines.slice(5), `${zeros} zeros`).toEqual([`no valid batch after byte ${valid}: ${zeros} bytes to the end of the file`, `2 valid batches, 2 invalid regions, ${fileBytes} bytes`]);
      }
    }
  });

  it('finds the next valid batch where it straddles the end of a 4 MiB scan window', async () => {
    // The scan after the damage at byte 0 reads from byte 1: the batch starts 160 bytes before
    // that window's end, close enough for its header to be in it, and ends past it.
    const garbage = Buffer.alloc(4 * 1024 * 1024 - 160, 0xab); // no byte of it is the batch magic
    const batch = batchAt(3, 4, 200);
    const lines = await dump(segmentFile([garbage, batch]));
    expect(lines[0]).toMatch(/^position=0 INVALID: /);
    expect(lines[1]).toBe(`next valid batch at byte ${garbage.length} (${garbage.length} bytes skipped)`);
    expect(lines[2]).toMatch(new RegExp(`^position=${garbage.length} baseOffset=3 lastOffset=6 .* crc=valid$`));
  });

  it('reads a file of any name, as a repair names what it quarantines, and names a missing file', async () => {
    const garbage = Buffer.alloc(40, 0xcd);
    const batch = batchAt(7, 2);
    const path = join(tempDir(), `${SEGMENT}.from-byte-157`);
    nodeFs.writeFileSync(path, Buffer.concat([garbage, batch]));
    const lines = await dump(path);
    expect(lines[0]).toMatch(/^position=0 INVALID: /);
    expect(lines[1]).toBe(`next valid batch at byte ${garbage.length} (${garbage.length} bytes skipped)`);
    expect(lines[2]).toMatch(new RegExp(`^position=${garbage.length} baseOffset=7 lastOffset=8 .* crc=valid$`));
    const missing = join(tempDir(), 'nosuch.log');
    await expect(dump(missing)).rejects.toThrow(`cannot open ${missing}: no such file`);
  });

  it('marks a batch whose base offset breaks the sequence (the CRC does not cover it), from the first offset the name gives', async () => {
    const lines = await dump(segmentFile([batchAt(0, 2), batchAt(5, 1), batchAt(6, 1), batchAt(6, 2)]));
    expect(lines.filter((line) => line.includes('OFFSET'))).toEqual([
      expect.stringMatching(/^position=\d+ OFFSET GAP: baseOffset 5, expected 2 /),
      expect.stringMatching(/^position=\d+ OFFSET OVERLAP: baseOffset 6, expected 7 /),
    ]);
    expect(lines.at(-1)).toMatch(/^4 valid batches, 0 invalid regions, 2 batches out of offset order, \d+ bytes$/);
    // A segment named after offset 10 whose first batch says 0; a quarantined tail, any first offset.
    const named = join(tempDir(), '00000000000000000010.log');
    nodeFs.writeFileSync(named, batchAt(0, 1));
    const namedLines = await dump(named);
    expect(namedLines[1]).toMatch(/^position=0 OFFSET OVERLAP: baseOffset 0, expected 10 /);
    expect(namedLines.at(-1)).toMatch(/^1 valid batch, 0 invalid regions, 1 batch out of offset order, \d+ bytes$/);
    const tail = join(tempDir(), `${SEGMENT}.from-byte-4096`);
    nodeFs.writeFileSync(tail, Buffer.concat([batchAt(9, 1), batchAt(10, 1)]));
    expect((await dump(tail)).filter((line) => line.includes('OFFSET'))).toEqual([]);
  });

  it('reads no more than a batch can be for a length field that claims gigabytes', async () => {
    const claimsHuge = Buffer.from(batchAt(0, 1));
    claimsHuge.writeInt32BE(0x7fff0000, 8); // the batch length
    const garbage = Buffer.alloc(17 * 1024 * 1024, 0xab);
    const path = segmentFile([claimsHuge, garbage, batchAt(1, 1)]);
    let largestRead = 0;
    const fs: FileSystem = Object.assign(Object.create(nodeFileSystem) as FileSystem, {
      read: (fd: number, buffer: Buffer, offset: number, length: number, position: number) => {
        largestRead = Math.max(largestRead, length);
        return nodeFileSystem.read(fd, buffer, offset, length, position);
      },
    });
    const lines: string[] = [];
    for await (const line of dumpLogFile(path, { records: false, fs })) lines.push(line);
    expect(lines[0]).toMatch(/^position=0 INVALID: batch length \d+ exceeds /);
    expect(lines.at(-2)).toMatch(/^position=\d+ baseOffset=1 .* crc=valid$/);
    expect(largestRead).toBeLessThanOrEqual(BATCH_BYTES_MAX);
  });

  it('goes on past a batch whose records do not decode, and escapes header keys', async () => {
    const snappy = Buffer.from(batchAt(0, 1));
    snappy.writeInt16BE(2, ATTRIBUTES_OFFSET); // snappy: not read by Strata
    snappy.writeUInt32BE(crc32c(snappy.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
    const withHeaders = buildBatch([{ value: Buffer.from('v'), headers: [{ key: 'trace-id', value: Buffer.from('1') }, { key: 'a\nb\u001b[31m', value: Buffer.from('\u009b2J') }] }], { baseOffset: 1, timestamp: 1_700_000_000_000 });
    const lines = await dump(segmentFile([snappy, withHeaders]), true);
    expect(lines[1]).toBe('  records not shown: batch at offset 0 does not decode: compression codec 2 is not supported (none and gzip are)');
    expect(lines[3]).toBe(`  offset=1 timestamp=1700000000000 key=null value="v" headers=trace-id="1",0x${Buffer.from('a\nb\u001b[31m').toString('hex')}=0x${Buffer.from('\u009b2J').toString('hex')}`);
    expect(lines.at(-1)).toMatch(/^2 valid batches, 0 invalid regions, \d+ bytes$/);
  });
});
