/** A writable stream standing in for stdout, for CLI tests: a reader that stops reading for a while. */
import { Writable } from 'node:stream';

/**
 * Takes `acceptedWrites` writes at once; the next ones wait until `release()`, then all are
 * taken. `holding` resolves when the first write that waits has come.
 */
export class HeldStream extends Writable {
  readonly accepted: Buffer[] = [];
  readonly holding: Promise<void>;
  private held!: () => void;
  private release_!: () => void;
  private readonly released: Promise<void>;

  constructor(private readonly acceptedWrites: number) {
    super();
    this.holding = new Promise((resolve) => (this.held = resolve));
    this.released = new Promise((resolve) => (this.release_ = resolve));
  }

  release(): void {
    this.release_();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.accepted.length >= this.acceptedWrites) this.held();
    const wait = this.accepted.length < this.acceptedWrites ? Promise.resolve() : this.released;
    void wait.then(() => {
      this.accepted.push(chunk);
      setImmediate(callback);
    });
  }
}
