/**
 * The file operations storage uses, behind one interface so tests can inject failures (a full
 * disk, a failing fsync) without touching globals. `nodeFileSystem` is the real thing: thin
 * promise wrappers over Node's callback `fs` API with raw file descriptors, which costs less per
 * call than `fs/promises` FileHandles on the append path.
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { buffersFrom, runBytes } from './buffer-run.js';
import { TEMP_SUFFIX } from './file-names.js';
import { currentBootId } from './boot-id.js';

export interface FileSystem {
  /** Opens for reading and writing, creating the file if `create` is set. */
  open(path: string, options: { create: boolean; readOnly?: boolean }): Promise<number>;
  /**
   * Opens an existing file for direct (O_DIRECT) writes, or returns null where the platform or
   * the file system has none (EINVAL, as on tmpfs).
   */
  openDirect(path: string): Promise<number | null>;
  close(fd: number): Promise<void>;
  /** Reads up to `length` bytes at `position`; returns the bytes read (fewer at end of file). */
  read(fd: number, buffer: Buffer, bufferOffset: number, length: number, position: number): Promise<number>;
  /** Writes all of `buffers` at `position`, retrying short writes; returns the bytes written. */
  writev(fd: number, buffers: readonly Buffer[], position: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  /** `writev` on the calling thread (see `inline-io.ts` for when storage does that). */
  writevSync(fd: number, buffers: readonly Buffer[], position: number): number;
  /** `fdatasync` on the calling thread. */
  fdatasyncSync(fd: number): void;
  ftruncate(fd: number, length: number): Promise<void>;
  fileSize(fd: number): Promise<number>;
  /** Size of the file at `path`, or -1 if it does not exist. */
  sizeOf(path: string): Promise<number>;
  readFile(path: string): Promise<Buffer | null>;
  /** Writes a whole file and fsyncs it (not its directory). */
  writeFileDurably(path: string, data: Buffer): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdirs(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** fsyncs a directory so entries created, renamed or removed in it are durable. */
  fsyncDirectory(path: string): Promise<void>;
  removeTree(path: string): Promise<void>;
  /** The id of the running kernel's boot, new at every start of the machine; null where there is none (see `sync-failure-marker.ts`). */
  bootId(): string | null;
}

function callback<T>(resolve: (value: T) => void, reject: (error: Error) => void) {
  return (error: NodeJS.ErrnoException | null, value?: T) => (error ? reject(error) : resolve(value as T));
}

/**
 * Replaces the file at `path` with `data`, atomically and durably: written whole to a temp
 * file and fsynced, renamed over `path`, and the directory fsynced. A crash leaves the old file
 * or the new one, and at most a temp file, which the next start removes. With
 * `syncDirectory: false` the rename is left for a later fsync of the directory to make durable
 * (a crash before it may leave the old file): for a file whose old content is still safe.
 */
export async function replaceFileDurably(fs: FileSystem, path: string, data: Buffer, options: { syncDirectory: boolean } = { syncDirectory: true }): Promise<void> {
  await fs.writeFileDurably(path + TEMP_SUFFIX, data);
  await fs.rename(path + TEMP_SUFFIX, path);
  if (options.syncDirectory) await fs.fsyncDirectory(dirname(path));
}

/**
 * Reads `length` bytes at `position` into `buffer` from `bufferOffset`, in as many reads as it
 * takes (one may return fewer bytes than asked for). Returns the count, fewer only at the end
 * of the file.
 */
export async function readFully(fs: FileSystem, fd: number, buffer: Buffer, bufferOffset: number, length: number, position: number): Promise<number> {
  let filled = 0;
  while (filled < length) {
    const count = await fs.read(fd, buffer, bufferOffset + filled, length - filled, position + filled);
    if (count === 0) break;
    filled += count;
  }
  return filled;
}

export class NodeFileSystem implements FileSystem {
  open(path: string, options: { create: boolean; readOnly?: boolean }): Promise<number> {
    const flags = options.readOnly ? 'r' : options.create ? fs.constants.O_RDWR | fs.constants.O_CREAT : 'r+';
    return new Promise((resolve, reject) => fs.open(path, flags, 0o644, callback(resolve, reject)));
  }

  openDirect(path: string): Promise<number | null> {
    const direct = fs.constants.O_DIRECT;
    if (direct === undefined) return Promise.resolve(null); // not Linux
    return new Promise((resolve, reject) =>
      fs.open(path, fs.constants.O_WRONLY | direct, (error, fd) => {
        if (error === null) resolve(fd);
        else if (error.code === 'EINVAL') resolve(null);
        else reject(error);
      }),
    );
  }

  close(fd: number): Promise<void> {
    return new Promise((resolve, reject) => fs.close(fd, callback(resolve, reject)));
  }

  read(fd: number, buffer: Buffer, bufferOffset: number, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) => fs.read(fd, buffer, bufferOffset, length, position, callback(resolve, reject)));
  }

  async writev(fd: number, buffers: readonly Buffer[], position: number): Promise<number> {
    const total = runBytes(buffers);
    let written = await new Promise<number>((resolve, reject) =>
      fs.writev(fd, buffers as Buffer[], position, callback(resolve, reject)),
    );
    if (written === total) return total;
    // Short write (rare: signals, quotas). Finish it buffer by buffer from where it stopped.
    for (const [buffer, from] of buffersFrom(buffers, written)) {
      for (let start = from; start < buffer.length; ) {
        const count = await new Promise<number>((resolve, reject) =>
          fs.write(fd, buffer, start, buffer.length - start, position + written, callback(resolve, reject)),
        );
        start += count;
        written += count;
      }
    }
    return written;
  }

  fdatasync(fd: number): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(fd, callback(resolve, reject)));
  }

  writevSync(fd: number, buffers: readonly Buffer[], position: number): number {
    const total = runBytes(buffers);
    let written = fs.writevSync(fd, buffers as Buffer[], position);
    if (written === total) return total;
    for (const [buffer, from] of buffersFrom(buffers, written)) {
      for (let start = from; start < buffer.length; ) {
        const count = fs.writeSync(fd, buffer, start, buffer.length - start, position + written);
        start += count;
        written += count;
      }
    }
    return written;
  }

  fdatasyncSync(fd: number): void {
    fs.fdatasyncSync(fd);
  }

  ftruncate(fd: number, length: number): Promise<void> {
    return new Promise((resolve, reject) => fs.ftruncate(fd, length, callback(resolve, reject)));
  }

  fileSize(fd: number): Promise<number> {
    return new Promise((resolve, reject) =>
      fs.fstat(fd, (error, stats) => (error ? reject(error) : resolve(stats.size))),
    );
  }

  async sizeOf(path: string): Promise<number> {
    try {
      return (await fs.promises.stat(path)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return -1;
      throw error;
    }
  }

  async readFile(path: string): Promise<Buffer | null> {
    try {
      return await fs.promises.readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  async writeFileDurably(path: string, data: Buffer): Promise<void> {
    const fd = await this.open(path, { create: true });
    try {
      await this.ftruncate(fd, 0);
      await this.writev(fd, [data], 0);
      await this.fdatasync(fd);
    } finally {
      await this.close(fd);
    }
  }

  rename(from: string, to: string): Promise<void> {
    return fs.promises.rename(from, to);
  }

  async unlink(path: string): Promise<void> {
    try {
      await fs.promises.unlink(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  async mkdirs(path: string): Promise<void> {
    await fs.promises.mkdir(path, { recursive: true });
  }

  readdir(path: string): Promise<string[]> {
    return fs.promises.readdir(path);
  }

  async fsyncDirectory(path: string): Promise<void> {
    const fd = await this.open(path, { create: false, readOnly: true });
    try {
      await new Promise<void>((resolve, reject) => fs.fsync(fd, callback(resolve, reject)));
    } finally {
      await this.close(fd);
    }
  }

  removeTree(path: string): Promise<void> {
    return fs.promises.rm(path, { recursive: true, force: true });
  }

  bootId(): string | null {
    return currentBootId();
  }
}

export const nodeFileSystem: FileSystem = new NodeFileSystem();
