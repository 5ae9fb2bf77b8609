/**
 * Page-aligned memory for direct (O_DIRECT) writes, which need the buffer's address, the file
 * position and the length to be multiples of the device's block size.
 *
 * Node has no aligned allocation. The backing store of a `WebAssembly.Memory` is mapped by V8 a
 * page at a time, so it starts on a page boundary; that is where staging buffers come from. If
 * a file system still refuses the alignment, the write fails with EINVAL before touching the
 * file and the log falls back to buffered writes (see `direct-writer.ts`).
 */

/** Block size direct writes are aligned to: a page, a multiple of every common block size. */
export const DIRECT_IO_BLOCK_BYTES = 4096;

const WASM_PAGE_BYTES = 64 * 1024;

/** `bytes` (rounded up to 64 KiB) of zeroed, page-aligned memory, or null where unavailable. */
export function allocateAligned(bytes: number): Buffer | null {
  if (typeof WebAssembly === 'undefined') return null; // e.g. node --jitless
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES);
  try {
    return Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer);
  } catch {
    return null; // out of address space
  }
}

/**
 * Staging buffers shared by every partition's direct writes. A write takes one for as long as
 * it runs and gives it back; at most `maxBuffers` exist, so concurrent writes beyond that go
 * through the page cache instead of waiting or allocating.
 */
export class StagingPool {
  private readonly free: Buffer[] = [];
  private allocated = 0;
  /** Aligned memory could not be allocated (e.g. node --jitless); no buffers will come. */
  unavailable = false;

  constructor(
    readonly bufferBytes: number,
    readonly maxBuffers: number,
  ) {}

  /** A staging buffer (a multiple of the block size long), or null when none is free. */
  take(): Buffer | null {
    const buffer = this.free.pop();
    if (buffer !== undefined) return buffer;
    if (this.allocated >= this.maxBuffers || this.unavailable) return null;
    const memory = allocateAligned(this.bufferBytes);
    if (memory === null) {
      this.unavailable = true;
      return null;
    }
    this.allocated++;
    return memory.subarray(0, memory.length - (memory.length % DIRECT_IO_BLOCK_BYTES));
  }

  give(buffer: Buffer): void {
    this.free.push(buffer);
  }
}

/**
 * The process's pool: four buffers (libuv's default thread pool runs four writes at once) of
 * 2 MiB, so a group of up to 2 MiB is one write and larger groups are written 2 MiB at a time.
 */
export const stagingPool = new StagingPool(2 * 1024 * 1024, 4);
