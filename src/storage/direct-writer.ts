/**
 * Direct (O_DIRECT) appends to a segment's log, bypassing the page cache.
 *
 * Why: a buffered write costs the kernel a copy of every byte into the page cache, page
 * allocation and later writeback; for large appends that is most of the broker's CPU per byte.
 * A direct write copies once into an aligned staging buffer and the device reads it from there.
 * The price: what was written directly is not in the page cache, so a read of it goes to the
 * disk unless the tail cache (`tail-cache.ts`) still holds it. `PartitionLog` writes directly
 * large groups (throughput workloads) on the pool, and small groups that an fdatasync follows at
 * once (latency workloads) on the event loop (`writeInline`); the broker does so only under
 * `--write-mode direct` (the default).
 *
 * A direct write covers whole blocks, so each one starts at the block holding the current end of
 * the log: it rewrites that block's valid bytes (kept in memory in `tail`), then the new bytes,
 * then zeros up to the next block boundary. The file is thus up to a block longer than the log
 * (more with a runway, below: up to `MAX_PADDING_BYTES`).
 * Readers never read past the segment's size, `trimPadding` cuts the zeros when the segment is
 * sealed or closed, and after a crash recovery truncates them like any unfinished write (zero
 * bytes are not a batch). Buffered and direct writes may alternate: a buffered write's bytes
 * update the tail block held in memory, or, where they cannot, it is read back from the file
 * before the next direct write.
 *
 * An inline write that would grow the file also writes a runway of zeros past it, in the same
 * call (`RUNWAY_BYTES`). Why: on ext4 an fdatasync after a write that grew the file must also
 * write the inode (its new size, its new blocks) before the flush, a second I/O round trip; one
 * after overwriting blocks the file already has needs only the flush. The next few small groups
 * then land in the runway. The price is writing those bytes twice, which is why only inline
 * writes (small groups an fdatasync follows at once) lay one. The runway is padding like the
 * rest: trimmed on seal and close, cut by recovery.
 */
import { allocateAligned, DIRECT_IO_BLOCK_BYTES } from './aligned-memory.js';
import { copyRange, runBytes } from './buffer-run.js';
import type { FileSystem } from './file-system.js';

/**
 * How far past its end an inline write that grows the file writes zeros, in whole multiples: it
 * ends on the second multiple of this past the group's last block, 64 to 128 KiB ahead. That
 * lets 5 to 10 groups of 12 KB (a millisecond of 1 KiB records at 10,000 a second) land before
 * the next growth, while keeping the growing write itself short: writing and syncing 76 KB took
 * 0.33 ms on the benchmark machine, against 0.18 ms for 12 KB that grew the file and 0.11 ms
 * for 12 KB that did not.
 */
export const RUNWAY_BYTES = 64 * 1024;

/** The most zeros a direct writer leaves past the end of the log: a runway and a block's padding. */
export const MAX_PADDING_BYTES = 2 * RUNWAY_BYTES + DIRECT_IO_BLOCK_BYTES;

/**
 * Whether file bytes [position, fileBytes) can be the zero padding direct writes leave past the
 * end of the log (the rest of the last block, and a runway): zeros, ending on a block boundary,
 * shorter than `MAX_PADDING_BYTES`. Longer runs of zeros are an unfinished write.
 */
export async function isDirectWritePadding(fs: FileSystem, fd: number, position: number, fileBytes: number): Promise<boolean> {
  if (fileBytes % DIRECT_IO_BLOCK_BYTES !== 0 || fileBytes <= position || fileBytes - position >= MAX_PADDING_BYTES) return false;
  const tail = Buffer.alloc(fileBytes - position);
  const read = await fs.read(fd, tail, 0, tail.length, position);
  return read === tail.length && tail.every((byte) => byte === 0);
}

/** Direct writes are not possible on this file (no O_DIRECT, or the alignment was refused). */
export class DirectWritesUnsupported extends Error {}

export class DirectWriter {
  /** The valid bytes of the block that holds the end of the log. */
  private readonly tail = Buffer.alloc(DIRECT_IO_BLOCK_BYTES);
  /** How many bytes of `tail` are valid; -1 when unknown (read from the file first). */
  private tailBytes = -1;
  /** The file may hold zero padding past the end of the log. */
  private padded = false;
  /** How far the file is known to be written (the log, then padding); 0 when not known. */
  private writtenEnd = 0;

  private constructor(
    private readonly fs: FileSystem,
    private readonly fd: number,
  ) {}

  /** Opens `path` for direct writes; throws DirectWritesUnsupported where they are not possible. */
  static async open(fs: FileSystem, path: string): Promise<DirectWriter> {
    let fd: number | null;
    try {
      fd = await fs.openDirect(path);
    } catch (error) {
      // EMFILE, EACCES...: the buffered descriptor still works, so write through it.
      throw new DirectWritesUnsupported(`opening ${path} for direct writes failed: ${(error as Error).message}`, { cause: error });
    }
    if (fd === null) throw new DirectWritesUnsupported(`the file system of ${path} does not support O_DIRECT`);
    return new DirectWriter(fs, fd);
  }

  /**
   * Writes `buffers` (`bytes` in all) at `position`, the current end of the log, using `staging`
   * (page-aligned, a whole number of blocks). `readFd` is a buffered descriptor of the same file,
   * for reading the tail block back. On failure the log is as before below `position` (the tail
   * block is rewritten with the bytes it held) and the caller truncates the file to `position`.
   */
  async write(readFd: number, buffers: readonly Buffer[], position: number, bytes: number, staging: Buffer): Promise<void> {
    let blockStart = position - (position % DIRECT_IO_BLOCK_BYTES);
    if (this.tailBytes < 0) await this.readTail(readFd, blockStart, position - blockStart);
    this.checkGroup(position, buffers, bytes);
    let fill = this.tail.copy(staging, 0, 0, this.tailBytes);
    for (let staged = 0; ; ) {
      const count = Math.min(bytes - staged, staging.length - fill);
      copyRange(buffers, staged, count, staging, fill);
      staged += count;
      fill += count;
      const end = padToBlock(staging, fill);
      await this.writeBlocks(staging.subarray(0, end), blockStart);
      if (staged === bytes) {
        this.keepTail(staging, fill, end);
        this.writtenEnd = Math.max(this.writtenEnd, blockStart + end);
        return;
      }
      // The staging buffer was full, so this chunk ended on a block boundary: nothing carries.
      blockStart += fill;
      fill = 0;
    }
  }

  /** Whether `writeInline` may run now: the bytes of the log's last block are held. */
  get canWriteInline(): boolean {
    return this.tailBytes >= 0;
  }

  /**
   * `write` on the calling thread, for a group that fits in `staging` with the last block's
   * bytes (small groups of latency workloads; see `PartitionLog.directWriteFor`). Needs
   * `canWriteInline`: reading the last block back is left to `write`. Fails as `write` does.
   */
  writeInline(buffers: readonly Buffer[], position: number, bytes: number, staging: Buffer): void {
    this.checkGroup(position, buffers, bytes);
    if (this.tailBytes + bytes > staging.length) throw new Error(`an inline direct write of ${bytes} bytes does not fit a staging buffer of ${staging.length}`);
    this.tail.copy(staging, 0, 0, this.tailBytes);
    copyRange(buffers, 0, bytes, staging, this.tailBytes);
    const fill = this.tailBytes + bytes;
    const end = padToBlock(staging, fill);
    const blocks = staging.subarray(0, end);
    const blockStart = position - this.tailBytes;
    const runway = this.runwayPast(blockStart + end);
    let written: number;
    try {
      written = this.fs.writevSync(this.fd, runway === null ? [blocks] : [blocks, runway], blockStart);
    } catch (error) {
      this.padded = true; // part of it may have landed past the log's end
      throw refusedAlignment(error);
    }
    checkWritten(written, end + (runway?.length ?? 0));
    this.keepTail(staging, fill, end);
    if (runway !== null) {
      this.writtenEnd = blockStart + end + runway.length;
      this.padded = true;
    }
  }

  /**
   * A buffered write of `buffers` (`bytes` in all) at `position` changed the last block. Its new
   * bytes are taken from the written ones (with the bytes held before, for a write that stays
   * in the block it started in), so the next direct write need not read the block back; if
   * they cannot be known that way, they are read back first.
   */
  noteBufferedWrite(buffers: readonly Buffer[], position: number, bytes: number): void {
    const tailBytes = (position + bytes) % DIRECT_IO_BLOCK_BYTES;
    if (bytes >= tailBytes) {
      copyRange(buffers, bytes - tailBytes, tailBytes, this.tail, 0);
    } else if (this.tailBytes === position % DIRECT_IO_BLOCK_BYTES) {
      copyRange(buffers, 0, bytes, this.tail, this.tailBytes);
    } else {
      this.tailBytes = -1;
      return;
    }
    this.tailBytes = tailBytes;
  }

  /** The file was cut to a shorter log (recovery or repair): forget the last block. */
  noteTruncated(): void {
    this.noteUndone();
    this.tailBytes = -1;
  }

  /**
   * A failed write was undone: the file was cut back to the end of the log, and any padding or
   * runway past it went too. The last block below that end is unchanged.
   */
  noteUndone(): void {
    this.padded = false;
    this.writtenEnd = 0;
  }

  /** Cuts the zero padding past `size`, the end of the log. The caller fdatasyncs. */
  async trimPadding(readFd: number, size: number): Promise<void> {
    if (!this.padded) return;
    await this.fs.ftruncate(readFd, size);
    this.padded = false;
    this.writtenEnd = 0;
  }

  close(): Promise<void> {
    return this.fs.close(this.fd);
  }

  private async readTail(readFd: number, blockStart: number, length: number): Promise<void> {
    let read = 0;
    while (read < length) {
      const count = await this.fs.read(readFd, this.tail, read, length - read, blockStart + read);
      if (count === 0) throw new Error(`the log ends before byte ${blockStart + length}, its recorded size`);
      read += count;
    }
    this.tailBytes = length;
  }

  /** A write of `buffers` (`bytes` in all) at `position` fits what this writer holds. */
  private checkGroup(position: number, buffers: readonly Buffer[], bytes: number): void {
    if (this.tailBytes !== position % DIRECT_IO_BLOCK_BYTES) {
      throw new Error(`direct writer out of step: ${this.tailBytes} tail bytes held for a log ending at byte ${position}`);
    }
    const given = runBytes(buffers);
    if (given !== bytes) throw new Error(`direct write of ${bytes} bytes given buffers of ${given}`);
  }

  /**
   * The zeros to write after blocks ending at `blocksEnd`, or null where the file already has
   * them (the write lands in the runway) or no aligned memory holds zeros.
   */
  private runwayPast(blocksEnd: number): Buffer | null {
    if (blocksEnd <= this.writtenEnd) return null;
    const zeros = runwayZeros();
    if (zeros === null) return null;
    return zeros.subarray(0, (Math.ceil(blocksEnd / RUNWAY_BYTES) + 1) * RUNWAY_BYTES - blocksEnd);
  }

  /** Keeps the bytes of the new last block, from a write of `fill` bytes padded to `end`. */
  private keepTail(staging: Buffer, fill: number, end: number): void {
    const lastBlock = fill - (fill % DIRECT_IO_BLOCK_BYTES);
    this.tailBytes = staging.copy(this.tail, 0, lastBlock, fill);
    this.padded ||= end > fill;
  }

  private async writeBlocks(blocks: Buffer, position: number): Promise<void> {
    let written: number;
    try {
      written = await this.fs.writev(this.fd, [blocks], position);
    } catch (error) {
      this.padded = true; // part of it may have landed past the log's end
      throw refusedAlignment(error);
    }
    checkWritten(written, blocks.length);
  }
}

/** Zero-fills `staging` from `fill` to the next block boundary; returns that boundary. */
function padToBlock(staging: Buffer, fill: number): number {
  const end = Math.ceil(fill / DIRECT_IO_BLOCK_BYTES) * DIRECT_IO_BLOCK_BYTES;
  staging.fill(0, fill, end);
  return end;
}

/** EINVAL from a direct write means the alignment was refused, before anything was written. */
function refusedAlignment(error: unknown): unknown {
  if ((error as NodeJS.ErrnoException).code !== 'EINVAL') return error;
  return new DirectWritesUnsupported(`a direct write was refused (EINVAL): ${(error as Error).message}`, { cause: error });
}

function checkWritten(written: number, bytes: number): void {
  if (written !== bytes) throw new Error(`short direct write: ${written} of ${bytes} bytes`);
}

/** Zeros for runways, shared by every writer and never written to; null without aligned memory. */
let sharedZeros: Buffer | null | undefined;

function runwayZeros(): Buffer | null {
  // The longest runway: from just past a multiple of RUNWAY_BYTES to the second one after it.
  sharedZeros ??= allocateAligned(2 * RUNWAY_BYTES);
  return sharedZeros;
}
