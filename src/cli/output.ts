/**
 * What the client commands print: aligned tables, human-readable sizes and durations, the JSON
 * encoding of record bytes, and `OutputWriter`, the batching writer every record printer uses.
 *
 * Bytes in JSON: a key, value or header value that is valid UTF-8 is a JSON string; anything
 * else is `{"base64": "..."}`; null is null. `produce --format json` reads the same three forms,
 * so `consume --format json | produce --format json` copies records exactly (the marker is an
 * object, so no string value can be mistaken for it).
 *
 * OutputWriter contract: records are appended to an in-memory chunk of at most
 * `OUTPUT_CHUNK_BYTES`; a full chunk is handed to the stream at once, and `drain()` (called after
 * each fetched batch) waits until the stream has passed on what it holds (stdout backpressure),
 * so what waits for a slow reader is bounded by about one fetched batch. A closed reader (EPIPE, e.g. `| head`) is not an
 * error: `closed` turns true and the command stops reading. It is known only at a write: a
 * command that follows a topic notices at its next record. Nothing earlier tells: the kernel
 * flags a pipe's write end (POLLERR) when its last reader goes, but libuv polls stdout only while
 * a write waits, a stdout pipe cannot be read (to be polled), and a zero-length write succeeds
 * without a reader. Any other write failure (ENOSPC,
 * EIO...) also closes the writer and is kept: the command ends with `throwIfFailed()`, one line
 * naming the cause, instead of a stack trace from an 'error' event nobody handles.
 *
 * Bytes are counted as written only when the stream's write callback reports success, in order:
 * `appendedBytes` and `writtenBytes` let a caller tell which of its records actually went out
 * (`consume --group` commits no further than that).
 *
 * A command stopped by a signal must not wait for a reader that stopped reading (`| less` left
 * on its first page, `| sleep`): its stop handler calls `abandon()`, which wakes every wait, drops
 * what is held and destroys the stream. Node's process.stdout survives destroy() and keeps its
 * queued writes, which would keep the process alive until the reader takes them: main.ts exits
 * once the command is done when `outputAbandoned()`.
 */
import type { Writable } from 'node:stream';
import { escapeUnprintable } from '../common/printable.js';
import { systemErrorText } from '../common/errors.js';
import { UsageError } from './cli-errors.js';
import { PARTITION_MAX } from '../client/option-checks.js';
import { integerRangeProblem, shownNumber } from '../common/integer-range.js';

/** Bytes held before a write to the stream. */
export const OUTPUT_CHUNK_BYTES = 256 * 1024;

/** Whether a writer gave up on process.stdout (`OutputWriter.abandon`). */
let stdoutAbandoned = false;

/** True once a writer gave up on process.stdout: the process must exit rather than wait for its queued writes. */
export function outputAbandoned(): boolean {
  return stdoutAbandoned;
}

const NEWLINE = 0x0a;
const TAB = 0x09;

export class OutputWriter {
  private chunk = Buffer.allocUnsafe(OUTPUT_CHUNK_BYTES);
  private used = 0;
  private needsDrain = false;
  private closedByReader = false;
  private abandoned = false;
  private failure: NodeJS.ErrnoException | null = null;
  /** Bytes handed to the stream (or dropped once closed), and those it reported written. */
  private handedBytes = 0;
  private confirmedBytes = 0;
  /** Writes whose callback has not run yet, and who waits for them all (`flushed()`). */
  private pendingWrites = 0;
  private flushWaiters: (() => void)[] = [];

  constructor(
    private readonly stream: Writable,
    private readonly name = 'stdout',
  ) {
    // Write failures arrive through the write callbacks; the listener only keeps the 'error'
    // event (emitted after each failed write) from ending the process with a stack trace.
    stream.on('error', (error: NodeJS.ErrnoException) => this.stop(error));
  }

  /** True once the reader went away (EPIPE), a write failed or the writer was abandoned: nothing more will be printed. */
  get closed(): boolean {
    return this.closedByReader || this.abandoned || this.failure !== null;
  }

  /**
   * Gives up on the stream (a signal stops the command): what is held is dropped, nothing more
   * is written, the waits of `drain()` and `flushed()` end at once, and the stream is destroyed.
   * `writtenBytes` keeps what the stream had reported written.
   */
  abandon(): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.used = 0;
    if (this.stream === process.stdout) stdoutAbandoned = true;
    this.stream.destroy();
    for (const wake of this.flushWaiters.splice(0)) wake();
  }

  /** Bytes appended so far (the output position just after the last thing appended). */
  get appendedBytes(): number {
    return this.handedBytes + this.used;
  }

  /** Bytes the stream reported written, a prefix of what was appended. */
  get writtenBytes(): number {
    return this.confirmedBytes;
  }

  /** Throws the write failure other than a closed reader, as the one line the user reads. */
  throwIfFailed(): void {
    if (this.failure !== null) throw new Error(`cannot write to ${this.name}: ${systemErrorText(this.failure)}`);
  }

  /** Appends bytes (copied). */
  bytes(bytes: Uint8Array): void {
    if (bytes.length > this.chunk.length - this.used) {
      this.writeChunk();
      if (bytes.length > this.chunk.length) {
        this.writeOut(Buffer.from(bytes));
        return;
      }
    }
    this.chunk.set(bytes, this.used);
    this.used += bytes.length;
  }

  /** Appends a string as UTF-8. */
  text(text: string): void {
    // A UTF-8 character takes at most 3 bytes per UTF-16 unit.
    if (text.length * 3 > this.chunk.length - this.used) {
      this.writeChunk();
      if (text.length * 3 > this.chunk.length) {
        this.writeOut(Buffer.from(text, 'utf8'));
        return;
      }
    }
    this.used += this.chunk.write(text, this.used, 'utf8');
  }

  /** Appends text known to be ASCII (faster than `text`: no UTF-8 encoding). */
  ascii(text: string): void {
    if (text.length > this.chunk.length - this.used) {
      this.writeChunk();
      if (text.length > this.chunk.length) {
        this.writeOut(Buffer.from(text, 'latin1'));
        return;
      }
    }
    this.used += this.chunk.write(text, this.used, 'latin1');
  }

  byte(value: number): void {
    if (this.used === this.chunk.length) this.writeChunk();
    this.chunk[this.used++] = value;
  }

  newline(): void {
    this.byte(NEWLINE);
  }

  tab(): void {
    this.byte(TAB);
  }

  /**
   * True when the stream has asked the writer to wait (its buffer is full) and writes are still
   * under way: the moment to `waitForRoom()`. Full chunks are handed to the stream as they fill,
   * so a loop of short appends checks this rather than draining after each.
   */
  get backedUp(): boolean {
    return this.needsDrain && !this.closed && this.pendingWrites > 0;
  }

  /** Writes what is held and waits until the stream can take more (bounded memory). */
  async drain(): Promise<void> {
    this.writeChunk();
    await this.waitForRoom();
  }

  /** Waits until the stream can take more, if it asked to wait; what is held stays held. */
  async waitForRoom(): Promise<void> {
    if (this.backedUp) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.stream.off('drain', done);
          this.stream.off('close', done);
          this.stream.off('error', done);
          const waiting = this.flushWaiters.indexOf(done);
          if (waiting >= 0) this.flushWaiters.splice(waiting, 1);
          resolve();
        };
        this.stream.on('drain', done);
        this.stream.on('close', done);
        this.stream.on('error', done);
        // A destroyed stream emits nothing more; its write callbacks still run.
        this.flushWaiters.push(done);
      });
    }
    this.needsDrain = false;
  }

  /** `drain()`, then waits until the stream has written (or failed) everything handed to it. */
  async flushed(): Promise<void> {
    await this.drain();
    if (this.pendingWrites === 0 || this.abandoned) return;
    await new Promise<void>((resolve) => this.flushWaiters.push(resolve));
  }

  private writeChunk(): void {
    if (this.used === 0) return;
    const full = this.chunk.subarray(0, this.used);
    // The stream keeps a reference until written: start a fresh chunk rather than reuse this one.
    this.chunk = Buffer.allocUnsafe(OUTPUT_CHUNK_BYTES);
    this.used = 0;
    this.writeOut(full);
  }

  private writeOut(bytes: Buffer): void {
    this.handedBytes += bytes.length;
    if (this.closed) return;
    this.pendingWrites++;
    if (!this.stream.write(bytes, (error) => this.writeDone(bytes.length, error))) this.needsDrain = true;
  }

  private writeDone(length: number, error: Error | null | undefined): void {
    if (error) this.stop(error);
    // Callbacks run in write order, so what follows a failure is not counted as written either.
    else if (!this.closed) this.confirmedBytes += length;
    if (--this.pendingWrites === 0) for (const wake of this.flushWaiters.splice(0)) wake();
  }

  private stop(error: NodeJS.ErrnoException): void {
    if (this.abandoned) return; // what the stream does after it was given up on is no failure of the command
    if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') this.closedByReader = true;
    else this.failure ??= error;
  }
}

/**
 * Prints `text` on stdout and waits until it is written: a closed reader (EPIPE) is a quiet end,
 * any other failure one error line (`cannot write to stdout: ENOSPC (...)`).
 */
export async function printText(text: string, stream: Writable = process.stdout): Promise<void> {
  const writer = new OutputWriter(stream);
  writer.text(text);
  await writer.flushed();
  writer.throwIfFailed();
}

/** `printText` with a newline. */
export function printLine(text: string, stream: Writable = process.stdout): Promise<void> {
  return printText(`${text}\n`, stream);
}

// ---------------------------------------------------------------------------------------------
// Bytes as JSON.

/** The bytes of a JSON string, `{ base64 }` object or null; `field` names it in errors. */
export function bytesFromJson(value: unknown, field: string): Buffer | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (typeof value === 'object' && !Array.isArray(value) && typeof (value as { base64?: unknown }).base64 === 'string' && Object.keys(value).length === 1) {
    const text = (value as { base64: string }).base64;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new Error(`${field} is not valid base64`);
    return Buffer.from(text, 'base64');
  }
  throw new Error(`${field} must be a string, null or {"base64": "..."}`);
}

// ---------------------------------------------------------------------------------------------
// Tables and units.

export type Cell = string | number;

/**
 * Columns padded to their widest cell, two spaces apart; numeric columns (every body cell a
 * number) and the columns named in `alignRight` are right-aligned. The last column is not padded.
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly Cell[])[], alignRight: readonly string[] = []): string {
  const numeric = headers.map((header, column) => alignRight.includes(header) || (rows.length > 0 && rows.every((row) => typeof row[column] === 'number')));
  const text = [headers, ...rows].map((row) => row.map((cell) => escapeUnprintable(String(cell))));
  const widths = headers.map((_, column) => Math.max(...text.map((row) => row[column]?.length ?? 0)));
  return text
    .map((row) =>
      row
        .map((cell, column) => {
          if (column === row.length - 1 && !numeric[column]) return cell;
          return numeric[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!);
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Label/value lines, labels padded: `name       orders`. */
export function formatFields(fields: readonly (readonly [string, Cell])[]): string {
  const width = Math.max(...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${label.padEnd(width)}  ${escapeUnprintable(String(value))}`).join('\n');
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${BYTE_UNITS[unit]}`;
}

/** A duration for people: 850ms, 4.2s, 3m12s, 5h03m, 2d04h. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, '0')}h`;
}

/** 1234567 → "1,234,567". */
export function formatCount(count: number): string {
  return Math.round(count).toLocaleString('en-US');
}

// ---------------------------------------------------------------------------------------------
// Arguments shared by several commands.

/**
 * `KEY=VALUE` pairs (repeatable flags) as an object; a UsageError names the flag. A key given
 * twice is refused rather than the last value kept unsaid (`--config retention.ms=1 --config
 * retention.ms=2`, or two `--header`s of one key, which a record here carries once).
 */
export function parsePairs(values: readonly string[] | undefined, flag: string): Record<string, string> {
  // Without a prototype, a KEY named __proto__ is a key like any other, not the object's prototype.
  const pairs = Object.create(null) as Record<string, string>;
  for (const entry of values ?? []) {
    const equals = entry.indexOf('=');
    if (equals <= 0) throw new UsageError(`${flag} takes KEY=VALUE, got ${JSON.stringify(entry)}`);
    const key = entry.slice(0, equals);
    if (key in pairs) throw new UsageError(`${flag} gives ${JSON.stringify(key)} twice (${key}=${pairs[key]}, ${entry}); give each key once`);
    pairs[key] = entry.slice(equals + 1);
  }
  return pairs;
}

/** Where to start reading, or where to move offsets to. */
export type Position = 'earliest' | 'latest' | { offset: number } | { timestamp: number };

const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** earliest | latest | OFFSET | ISO-8601 time (UTC unless it carries a zone). */
export function parsePosition(text: string, flag: string): Position {
  if (text === 'earliest' || text === 'latest') return text;
  if (/^\d+$/.test(text)) {
    const offset = Number(text);
    if (!Number.isSafeInteger(offset)) throw new UsageError(`${flag}: offset ${text} is too large`);
    return { offset };
  }
  if (ISO_DATE.test(text)) {
    const hasZone = /(Z|[+-]\d{2}:?\d{2})$/.test(text) && text.length > 10;
    const timestamp = Date.parse(hasZone ? text : text.length === 10 ? `${text}T00:00:00Z` : `${text.replace(' ', 'T')}Z`);
    if (Number.isFinite(timestamp)) {
      if (timestamp < 0) throw new UsageError(`${flag}: ${text} is before 1970, earlier than any record's timestamp can be; give a later time, or earliest`);
      return { timestamp };
    }
  }
  throw new UsageError(`${flag} takes earliest, latest, an offset or an ISO-8601 time (2024-05-01T12:00:00Z), got ${JSON.stringify(text)}`);
}

/** A non-negative integer flag (yargs gives NaN for non-numbers). */
export function nonNegativeInteger(value: number | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 0) throw new UsageError(`${flag} must be a non-negative integer, got ${shownNumber(value)}`);
  return value;
}

/** A partition flag: an integer from 0 to 2^31 - 1, the most the wire's int32 carries. */
export function partitionFlag(value: number | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const problem = integerRangeProblem(flag, value, 0, PARTITION_MAX);
  if (problem !== null) throw new UsageError(problem);
  return value;
}

