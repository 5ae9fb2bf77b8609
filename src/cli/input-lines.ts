/**
 * The lines of `strata produce`'s stdin, each held only up to a bound.
 *
 * A line ends at `\n`, `\r\n` or a lone `\r` (as Kafka's console producer reads it, and as
 * readline does with `crlfDelay: Infinity`: a `\r` at the end of one chunk and a `\n` at the start
 * of the next are one line end); the last line counts without an ending; its UTF-8 is decoded
 * once the line is whole, so a character split across chunks comes out whole, and bytes that are
 * not UTF-8 become U+FFFD. readline itself collects a line of any length, so one endless line
 * (`tr '\0' a < /dev/zero`) grew the heap until V8 gave up with a stack trace.
 *
 * Bound: a line longer than `lineBytesMax` stops the input as soon as that many bytes of it have
 * come, with one line naming the input line and the bound (`LineTooLongError`). The bytes of the
 * line being read are kept as slices of the chunks they came in, so what is held is at most the
 * bound plus one chunk.
 */
import type { Readable } from 'node:stream';
import { formatBytes, formatCount } from './output.js';

const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** A line longer than any record could be. */
export class LineTooLongError extends Error {
  constructor(lineNumber: number, lineBytesMax: number) {
    super(`input line ${lineNumber} is longer than ${formatBytes(lineBytesMax)} (${formatCount(lineBytesMax)} bytes), more than any record can be; reading stopped there`);
  }
}

/** Splits bytes into lines (see the file comment); `write` and `end` call `onLine` for each line whole. */
export class LineSplitter {
  /** The bytes of the line being read, and their count. */
  private pieces: Buffer[] = [];
  private pendingBytes = 0;
  /** The last chunk ended with `\r`: a `\n` at the start of the next ends nothing more. */
  private afterCarriageReturn = false;
  private lineNumber = 0;

  constructor(
    private readonly lineBytesMax: number,
    private readonly onLine: (line: string, lineNumber: number) => void,
  ) {}

  /** Splits `chunk`; throws `LineTooLongError` once the line being read exceeds the bound. */
  write(chunk: Buffer): void {
    let start = 0;
    if (this.afterCarriageReturn && chunk.length > 0) {
      this.afterCarriageReturn = false;
      if (chunk[0] === LINE_FEED) start = 1;
    }
    // Where the next `\r` and `\n` are, each searched again only once passed: input with one
    // kind of line end would otherwise have the other searched for to the chunk's end per line.
    let carriageReturn = chunk.indexOf(CARRIAGE_RETURN, start);
    let lineFeed = chunk.indexOf(LINE_FEED, start);
    while (start < chunk.length) {
      if (carriageReturn >= 0 && carriageReturn < start) carriageReturn = chunk.indexOf(CARRIAGE_RETURN, start);
      if (lineFeed >= 0 && lineFeed < start) lineFeed = chunk.indexOf(LINE_FEED, start);
      const end = carriageReturn >= 0 && (lineFeed < 0 || carriageReturn < lineFeed) ? carriageReturn : lineFeed;
      if (end < 0) {
        this.hold(chunk.subarray(start));
        return;
      }
      this.checkLength(end - start);
      this.emit(chunk, start, end);
      start = end + 1;
      if (chunk[end] === CARRIAGE_RETURN) {
        if (start === chunk.length) this.afterCarriageReturn = true;
        else if (chunk[start] === LINE_FEED) start++;
      }
    }
  }

  /** The input ended: its last line, if it had no line end. */
  end(): void {
    if (this.pendingBytes === 0) return;
    const line = Buffer.concat(this.pieces, this.pendingBytes);
    this.pieces = [];
    this.pendingBytes = 0;
    this.onLine(line.toString('utf8'), ++this.lineNumber);
  }

  /** Keeps the start of a line that goes on in the next chunk. */
  private hold(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.checkLength(bytes.length);
    this.pieces.push(bytes);
    this.pendingBytes += bytes.length;
  }

  private checkLength(moreBytes: number): void {
    if (this.pendingBytes + moreBytes > this.lineBytesMax) throw new LineTooLongError(this.lineNumber + 1, this.lineBytesMax);
  }

  /** Hands on the line that ends at `end` of `chunk` (with what was held of it). */
  private emit(chunk: Buffer, start: number, end: number): void {
    let line: string;
    if (this.pendingBytes === 0) {
      line = chunk.toString('utf8', start, end);
    } else {
      this.pieces.push(chunk.subarray(start, end));
      line = Buffer.concat(this.pieces, this.pendingBytes + end - start).toString('utf8');
      this.pieces = [];
      this.pendingBytes = 0;
    }
    this.onLine(line, ++this.lineNumber);
  }
}

/** The reading of an input as lines: paused and resumed for flow control, closed to stop early. */
export interface LineInput {
  pause(): void;
  resume(): void;
  /** Stops reading; no line is handed on after it. */
  close(): void;
  /** Settles once the input ended, failed or was closed. */
  readonly ended: Promise<void>;
}

/**
 * Reads `input` as lines of at most `lineBytesMax` bytes, calling `onLine` for each and
 * `onError` once for a read error of `input` or a `LineTooLongError` (the reading then stops).
 */
export function readLines(
  input: Readable,
  lineBytesMax: number,
  onLine: (line: string, lineNumber: number) => void,
  onError: (error: Error) => void,
): LineInput {
  let closed = false;
  let finish = (): void => {};
  const ended = new Promise<void>((resolve) => (finish = resolve));
  const splitter = new LineSplitter(lineBytesMax, (line, lineNumber) => {
    if (!closed) onLine(line, lineNumber);
  });
  const close = (): void => {
    if (closed) return;
    closed = true;
    input.pause(); // a stream left flowing would go on reading, into no listener
    input.off('data', onData);
    input.off('end', onEnd);
    finish();
  };
  const fail = (error: Error): void => {
    if (closed) return;
    onError(error);
    close();
  };
  const onData = (chunk: Buffer | string): void => {
    try {
      splitter.write(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
    } catch (error) {
      if (!(error instanceof LineTooLongError)) throw error;
      fail(error);
    }
  };
  const onEnd = (): void => {
    splitter.end();
    close();
  };
  input.on('data', onData);
  input.once('end', onEnd);
  input.on('error', fail);
  return {
    pause: () => input.pause(),
    resume: () => {
      if (!closed) input.resume();
    },
    close,
    ended,
  };
}
