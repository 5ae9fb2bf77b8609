/**
 * The real file system with switchable faults and gates, for storage tests: ENOSPC, failing
 * fdatasyncs, refused direct writes, short reads, and gates that hold an open, a read, a
 * whole-file read, a write or a sync so intermediate states can be observed without sleeps. It
 * tracks the descriptors left open, to find leaks.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIRECT_IO_BLOCK_BYTES, allocateAligned } from '../../src/storage/aligned-memory.js';
import { NodeFileSystem, type FileSystem } from '../../src/storage/file-system.js';

export function errnoError(code: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: simulated failure`);
  error.code = code;
  return error;
}

/** Calls that `TestFileSystem.hold` can hold. */
export type HeldCall = 'open' | 'read' | 'readFile' | 'writev' | 'fdatasync' | 'rename' | 'removeTree';

export class TestFileSystem implements FileSystem {
  private readonly real = new NodeFileSystem();
  /**
   * Log writes (writev) write half their bytes, then fail with ENOSPC; on a direct descriptor,
   * the whole blocks of that half, as a device would.
   */
  diskFull = false;
  /** Writes failed by `diskFull` so far. */
  diskFullFailures = 0;
  /** Whole-file writes (index files, checkpoint, marker) fail with ENOSPC. */
  fileWritesFull = false;
  /** Whole-file writes of paths that include this fail with ENOSPC (null: none). */
  fileWritesFullFor: string | null = null;
  /** Directory fsyncs fail with this code (null: they work). */
  directorySyncError: string | null = null;
  /** The directories fsynced so far, in order. */
  readonly syncedDirectories: string[] = [];
  /** The paths of whole-file writes (`writeFileDurably`) so far, in order, as each was called. */
  readonly fileWrites: string[] = [];
  /** ftruncate fails with this code (null: it works). */
  ftruncateError: string | null = null;
  /** Recursive removals (a deleted topic's directory) fail with this code. */
  removeTreeError: string | null = null;
  /** fdatasync fails with `fdatasyncErrorCode`. */
  failFdatasync = false;
  fdatasyncErrorCode = 'EIO';
  /** The next this many fdatasyncs fail with `fdatasyncErrorCode`, and later ones work: Linux reports a failed writeback to one caller only. */
  failNextFdatasyncs = 0;
  fdatasyncCalls = 0;
  /** Calls made on the event loop (writevSync, fdatasyncSync). */
  inlineWritevCalls = 0;
  inlineFdatasyncCalls = 0;
  /** Directory listings of paths that include `pathIncludes` fail with `code` (null: they work). */
  readdirError: { pathIncludes: string; code: string } | null = null;
  /** Opens of paths that include `pathIncludes` fail with `code` (null: they work). */
  openError: { pathIncludes: string; code: string } | null = null;
  /** Renames to paths that include `pathIncludes` fail with `code` (null: they work). */
  renameError: { pathIncludes: string; code: string } | null = null;
  /** The targets of the renames tried so far, in order (failed ones included). */
  readonly renameTargets: string[] = [];
  /** Reads fail with this code (null: they work). */
  readError: string | null = null;
  /** Reads return at most this many bytes, as a read may (null: as many as asked for). */
  readBytesMax: number | null = null;
  /** openDirect answers null, as on a file system without O_DIRECT. */
  noDirectOpen = false;
  /** Writes to descriptors from openDirect fail with this code (EINVAL: alignment refused)... */
  directWriteError: string | null = null;
  /** ...once this many more of them have succeeded. */
  directWriteErrorAfter = 0;
  /** Writes to descriptors from openDirect so far. */
  directWriteCalls = 0;
  private readonly directFds = new Set<number>();
  /** What `bootId` answers: the real boot's id unless a test sets another (a machine restarted), or null (none to tell). */
  bootIdValue: string | null = new NodeFileSystem().bootId();
  /** `read` calls made (those refused by `readError` not counted). */
  readCalls = 0;
  /** The most bytes one `read` call asked for (a read's memory). */
  largestReadBytes = 0;
  /** Descriptors opened through this file system and not closed yet (to find leaks). */
  readonly openFds = new Set<number>();
  /**
   * Gates of the calls that `hold` holds (only those whose path includes `pathPart`, when set),
   * and who waits for the next such call to arrive.
   */
  private readonly holds: Record<HeldCall, { gate: Promise<void> | null; pathPart: string | null; arrivals: (() => void)[] }> = {
    open: { gate: null, pathPart: null, arrivals: [] },
    read: { gate: null, pathPart: null, arrivals: [] },
    readFile: { gate: null, pathPart: null, arrivals: [] },
    writev: { gate: null, pathPart: null, arrivals: [] },
    fdatasync: { gate: null, pathPart: null, arrivals: [] },
    rename: { gate: null, pathPart: null, arrivals: [] },
    removeTree: { gate: null, pathPart: null, arrivals: [] },
  };

  /**
   * Holds calls of `call` (an open acts on the path it was called with) until `release`:
   * `reached` resolves when the first one arrives. With `pathPart` (renames only: their target),
   * only calls on a path that includes it are held and counted.
   */
  hold(call: HeldCall, pathPart: string | null = null): { reached: Promise<void>; release: () => void } {
    const held = this.holds[call];
    let release!: () => void;
    held.gate = new Promise<void>((resolve) => (release = resolve));
    held.pathPart = pathPart;
    const reached = this.next(call);
    return {
      reached,
      release: () => {
        held.gate = null;
        held.pathPart = null;
        release();
      },
    };
  }

  /** Tells who waits for a `call` that it arrived, then waits while `hold` holds such calls. */
  private async pass(call: HeldCall, path = ''): Promise<void> {
    const held = this.holds[call];
    if (held.pathPart !== null && !path.includes(held.pathPart)) return;
    for (const notify of held.arrivals.splice(0)) notify();
    if (held.gate !== null) await held.gate;
  }

  /** Resolves when `call` is next made (before it acts), without holding it. */
  next(call: HeldCall): Promise<void> {
    return new Promise((resolve) => this.holds[call].arrivals.push(resolve));
  }

  /** Whether `hold` holds calls of `call` now. */
  isHeld(call: HeldCall): boolean {
    return this.holds[call].gate !== null;
  }

  async open(path: string, options: { create: boolean; readOnly?: boolean }): Promise<number> {
    await this.pass('open');
    if (this.openError !== null && path.includes(this.openError.pathIncludes)) throw errnoError(this.openError.code);
    const fd = await this.real.open(path, options);
    this.openFds.add(fd);
    return fd;
  }
  async openDirect(path: string): Promise<number | null> {
    if (this.noDirectOpen) return null;
    const fd = await this.real.openDirect(path);
    if (fd !== null) {
      this.directFds.add(fd);
      this.openFds.add(fd);
    }
    return fd;
  }
  close(fd: number): Promise<void> {
    this.directFds.delete(fd);
    this.openFds.delete(fd);
    return this.real.close(fd);
  }
  async read(fd: number, buffer: Buffer, bufferOffset: number, length: number, position: number): Promise<number> {
    await this.pass('read');
    if (this.readError !== null) throw errnoError(this.readError);
    this.readCalls++;
    this.largestReadBytes = Math.max(this.largestReadBytes, length);
    return this.real.read(fd, buffer, bufferOffset, Math.min(length, this.readBytesMax ?? length), position);
  }
  async writev(fd: number, buffers: readonly Buffer[], position: number): Promise<number> {
    await this.pass('writev');
    this.noteDirectWrite(fd);
    if (this.diskFull) {
      await this.real.writev(fd, [this.partOf(fd, buffers)], position);
      throw errnoError('ENOSPC');
    }
    return this.real.writev(fd, buffers, position);
  }
  async fdatasync(fd: number): Promise<void> {
    this.fdatasyncCalls++;
    await this.pass('fdatasync');
    if (this.failsThisFdatasync()) throw errnoError(this.fdatasyncErrorCode);
    return this.real.fdatasync(fd);
  }
  private failsThisFdatasync(): boolean {
    if (this.failFdatasync) return true;
    if (this.failNextFdatasyncs === 0) return false;
    this.failNextFdatasyncs--;
    return true;
  }
  writevSync(fd: number, buffers: readonly Buffer[], position: number): number {
    if (this.isHeld('writev')) throw new Error('hold cannot hold a write on the event loop: open the log without inlineIo');
    this.inlineWritevCalls++;
    this.noteDirectWrite(fd);
    if (this.diskFull) {
      this.real.writevSync(fd, [this.partOf(fd, buffers)], position);
      throw errnoError('ENOSPC');
    }
    return this.real.writevSync(fd, buffers, position);
  }
  /** What a full disk takes of a write before failing: half, in whole blocks on a direct descriptor. */
  private partOf(fd: number, buffers: readonly Buffer[]): Buffer {
    this.diskFullFailures++;
    if (!this.directFds.has(fd)) {
      const all = Buffer.concat(buffers);
      return all.subarray(0, all.length >> 1);
    }
    // Direct writes pass one aligned staging buffer; a prefix of it keeps its alignment.
    const half = buffers[0]!.length >> 1;
    return buffers[0]!.subarray(0, half - (half % DIRECT_IO_BLOCK_BYTES));
  }

  /** Counts a write to a descriptor from openDirect, and fails it as `directWriteError` says. */
  private noteDirectWrite(fd: number): void {
    if (!this.directFds.has(fd)) return;
    this.directWriteCalls++;
    if (this.directWriteError === null) return;
    if (this.directWriteErrorAfter === 0) throw errnoError(this.directWriteError);
    this.directWriteErrorAfter--;
  }
  fdatasyncSync(fd: number): void {
    if (this.isHeld('fdatasync')) throw new Error('hold cannot hold a sync on the event loop: open the log without inlineIo');
    this.fdatasyncCalls++;
    this.inlineFdatasyncCalls++;
    if (this.failsThisFdatasync()) throw errnoError(this.fdatasyncErrorCode);
    this.real.fdatasyncSync(fd);
  }
  async ftruncate(fd: number, length: number): Promise<void> {
    if (this.ftruncateError !== null) throw errnoError(this.ftruncateError);
    return this.real.ftruncate(fd, length);
  }
  fileSize(fd: number): Promise<number> {
    return this.real.fileSize(fd);
  }
  sizeOf(path: string): Promise<number> {
    return this.real.sizeOf(path);
  }
  async readFile(path: string): Promise<Buffer | null> {
    await this.pass('readFile');
    return this.real.readFile(path);
  }
  async writeFileDurably(path: string, data: Buffer): Promise<void> {
    this.fileWrites.push(path);
    if (this.fileWritesFull || (this.fileWritesFullFor !== null && path.includes(this.fileWritesFullFor))) throw errnoError('ENOSPC');
    return this.real.writeFileDurably(path, data);
  }
  async rename(from: string, to: string): Promise<void> {
    await this.pass('rename', to);
    this.renameTargets.push(to);
    if (this.renameError !== null && to.includes(this.renameError.pathIncludes)) throw errnoError(this.renameError.code);
    return this.real.rename(from, to);
  }
  unlink(path: string): Promise<void> {
    return this.real.unlink(path);
  }
  mkdirs(path: string): Promise<void> {
    return this.real.mkdirs(path);
  }
  async readdir(path: string): Promise<string[]> {
    if (this.readdirError !== null && path.includes(this.readdirError.pathIncludes)) throw errnoError(this.readdirError.code);
    return this.real.readdir(path);
  }
  bootId(): string | null {
    return this.bootIdValue;
  }
  async fsyncDirectory(path: string): Promise<void> {
    if (this.directorySyncError !== null) throw errnoError(this.directorySyncError);
    await this.real.fsyncDirectory(path);
    this.syncedDirectories.push(path);
  }
  async removeTree(path: string): Promise<void> {
    await this.pass('removeTree');
    if (this.removeTreeError !== null) throw errnoError(this.removeTreeError);
    return this.real.removeTree(path);
  }
}

/**
 * Whether direct (O_DIRECT) writes work in `directory` (they do not on tmpfs before Linux 6.6,
 * or off Linux): tests of them are skipped where they cannot run.
 */
export async function directWritesWork(directory: string): Promise<boolean> {
  const fs = new NodeFileSystem();
  const path = join(directory, `direct-probe-${process.pid}`);
  await fs.writeFileDurably(path, Buffer.alloc(0));
  try {
    const fd = await fs.openDirect(path);
    if (fd === null) return false;
    try {
      const memory = allocateAligned(DIRECT_IO_BLOCK_BYTES);
      if (memory === null) return false;
      await fs.writev(fd, [memory.subarray(0, DIRECT_IO_BLOCK_BYTES)], 0);
      return true;
    } catch {
      return false;
    } finally {
      await fs.close(fd);
    }
  } finally {
    await fs.unlink(path);
  }
}

/** Whether direct writes work in the OS temp directory, where tests keep their data. */
export const DIRECT_WRITES_WORK = await directWritesWork(tmpdir());
