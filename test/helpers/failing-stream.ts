/** A writable stream standing in for stdout, for CLI tests: it takes some writes, then fails. */
import { Writable } from 'node:stream';

const ERRNO = { EPIPE: -32, ENOSPC: -28 } as const;

/**
 * Takes `acceptedWrites` writes, then fails every later one with `code`, asynchronously as
 * stdout's writes fail (EPIPE: its reader left, as `| head` does; ENOSPC: a full disk).
 */
export class FailingStream extends Writable {
  readonly accepted: Buffer[] = [];
  /** Resolves when the first write that fails has come (and, with `failAfter`, waits). */
  readonly refusing: Promise<void>;
  private refused!: () => void;

  /** With `failAfter`, the first failing write waits for it: a reader that stops reading, then leaves. */
  constructor(
    private readonly acceptedWrites: number,
    private readonly code: keyof typeof ERRNO,
    private readonly failAfter: Promise<void> = Promise.resolve(),
  ) {
    super();
    this.refusing = new Promise((resolve) => (this.refused = resolve));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.accepted.length < this.acceptedWrites) {
      this.accepted.push(chunk);
      setImmediate(callback);
      return;
    }
    this.refused();
    void this.failAfter.then(() => setImmediate(() => callback(Object.assign(new Error(`${this.code}: write failed, write`), { code: this.code, errno: ERRNO[this.code], syscall: 'write' }))));
  }
}
