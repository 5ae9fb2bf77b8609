/**
 * One process per data directory. Two brokers on one directory (or a broker and `strata
 * repair`) would each append to, truncate and recover the same segment files and lose
 * acknowledged records, so whoever opens a data directory first takes an exclusive lock on
 * `<data-dir>/.lock`, and holds it until it has closed everything there. The lock is the kernel's
 * (an open-file-description lock on Linux, through fs-native-extensions): it ends with the
 * process, so a broker killed with SIGKILL leaves no stale lock to clear by hand. The file holds
 * the holder's name, pid and host for the refusal message; nothing reads it otherwise. A file
 * system whose locks are not shared between hosts (NFS mounted `nolock`) grants each host its own.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { tryLock } from 'fs-native-extensions';
import { ErrorCode, StrataError, fileCallErrno, systemErrorText } from '../common/errors.js';

export const LOCK_FILE = '.lock';

export class DataDirectoryLock {
  private fd: number | null;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /**
   * Takes the lock of `dataDir` (which must exist) for `holder` ("broker", "strata repair"), or
   * throws FAILED_PRECONDITION naming the process that holds it, followed by `advice`.
   */
  static acquire(dataDir: string, holder: string, advice: string): DataDirectoryLock {
    const path = join(dataDir, LOCK_FILE);
    const fd = openSync(path, 'a+'); // an exclusive lock needs a descriptor open for writing
    try {
      if (!tryLock(fd)) {
        throw new StrataError(
          ErrorCode.FAILED_PRECONDITION,
          `data directory ${dataDir} is in use by another Strata process${describeHolder(path)}; ${advice}`,
        );
      }
      ftruncateSync(fd, 0);
      writeSync(fd, `${holder}, pid ${process.pid} on ${hostname()}\n`);
    } catch (error) {
      closeSync(fd);
      if (error instanceof StrataError) throw error;
      throw new Error(`cannot lock data directory ${dataDir} (${path}): ${(error as Error).message}`, { cause: error });
    }
    return new DataDirectoryLock(fd);
  }

  /** Ends the lock; safe to call again. */
  release(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}

/**
 * Why the data directory (or its `topics/`) could not be made, as the broker's start reports it:
 * Node.js says only "ENOTDIR: not a directory, mkdir '<dir>/topics'" of a --data-dir that is a file.
 */
export function dataDirectoryFailure(dataDir: string, error: unknown): Error {
  const code = fileCallErrno(error);
  let reason: string;
  if (code === 'ENOTDIR' || code === 'EEXIST') reason = 'a file stands where a directory must be (the directory, one above it, or its topics/)';
  else if (code !== null) reason = systemErrorText(error as NodeJS.ErrnoException);
  else reason = (error as Error).message;
  return new StrataError(ErrorCode.FAILED_PRECONDITION, `cannot use data directory ${dataDir}: ${reason}`, { cause: error });
}

function describeHolder(path: string): string {
  try {
    const holder = readFileSync(path, 'utf8').trim().split('\n')[0]!.slice(0, 200);
    return holder === '' ? '' : ` (${holder})`;
  } catch {
    return '';
  }
}
