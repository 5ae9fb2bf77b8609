// Goal: a failed write to stdout ends a command with one line naming the cause (ENOSPC...), a
// closed reader (EPIPE) stays a quiet end, the writer counts as written only what the stream
// confirmed, and a writer given up on (a signal) stops waiting for a reader that stopped reading;
// method: OutputWriter and printLine on /dev/full (a real ENOSPC) and on in-memory streams that
// accept, hold or fail writes on cue.
import { createWriteStream, existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OUTPUT_CHUNK_BYTES, OutputWriter, printLine } from '../../src/cli/output.js';
import { systemErrorText } from '../../src/common/errors.js';
import { FailingStream } from '../helpers/failing-stream.js';
import { HeldStream } from '../helpers/held-stream.js';

const ENOSPC_LINE = 'cannot write to stdout: ENOSPC (no space left on device)';

describe.runIf(existsSync('/dev/full'))('writing to a full device', () => {
  it('closes the writer and reports one line instead of throwing from the error event', async () => {
    const writer = new OutputWriter(createWriteStream('/dev/full'));
    writer.text('a record\n');
    await writer.flushed();
    expect(writer.closed).toBe(true);
    expect(writer.writtenBytes).toBe(0);
    expect(() => writer.throwIfFailed()).toThrow(new Error(ENOSPC_LINE));
  });

  it('printLine (topics, groups) rejects with the same line', async () => {
    await expect(printLine('TOPIC  PARTITIONS', createWriteStream('/dev/full'))).rejects.toThrow(new Error(ENOSPC_LINE));
  });
});

describe('OutputWriter', () => {
  it('names the failure of a stream that fails after some writes, and stops writing', async () => {
    const stream = new FailingStream(1, 'ENOSPC');
    const writer = new OutputWriter(stream);
    writer.bytes(Buffer.alloc(OUTPUT_CHUNK_BYTES, 0x61));
    writer.bytes(Buffer.alloc(OUTPUT_CHUNK_BYTES, 0x62)); // hands over the first chunk
    await writer.flushed();
    writer.text('more\n');
    await writer.flushed();
    expect(writer.closed).toBe(true);
    expect(writer.writtenBytes).toBe(OUTPUT_CHUNK_BYTES);
    expect(writer.appendedBytes).toBe(2 * OUTPUT_CHUNK_BYTES + 5);
    expect(() => writer.throwIfFailed()).toThrow(new Error(ENOSPC_LINE));
  });

  it('treats a closed reader (EPIPE) as a quiet end', async () => {
    const writer = new OutputWriter(new FailingStream(0, 'EPIPE'));
    writer.text('a record\n');
    await writer.flushed();
    expect(writer.closed).toBe(true);
    expect(() => writer.throwIfFailed()).not.toThrow();
    await expect(printLine('deleted topic "t"', new FailingStream(0, 'EPIPE'))).resolves.toBeUndefined();
  });

  it('counts as written only what the stream confirmed', async () => {
    const stream = new FailingStream(10, 'EPIPE');
    const writer = new OutputWriter(stream);
    writer.text('one\n');
    expect(writer.appendedBytes).toBe(4);
    expect(writer.writtenBytes).toBe(0);
    await writer.flushed();
    expect(writer.writtenBytes).toBe(4);
    expect(Buffer.concat(stream.accepted).toString()).toBe('one\n');
  });
});

describe('OutputWriter.abandon', () => {
  it('ends the waits for a stream that takes nothing more, drops what is held, and destroys the stream', async () => {
    const stream = new HeldStream(1);
    const writer = new OutputWriter(stream);
    writer.bytes(Buffer.alloc(OUTPUT_CHUNK_BYTES, 0x61));
    await writer.flushed();
    writer.bytes(Buffer.alloc(4 * OUTPUT_CHUNK_BYTES, 0x62)); // handed over; the stream holds it
    await stream.holding;
    writer.text('held\n');
    const drained = writer.drain();
    const flushed = writer.flushed();
    writer.abandon();
    await drained;
    await flushed;
    expect(writer.closed).toBe(true);
    expect(stream.destroyed).toBe(true);
    expect(writer.writtenBytes).toBe(OUTPUT_CHUNK_BYTES);
    expect(() => writer.throwIfFailed()).not.toThrow(); // giving up is no write failure
    writer.text('after\n');
    await writer.flushed();
    expect(stream.accepted).toHaveLength(1);
  });
});

describe('systemErrorText', () => {
  it('gives the code and the system\'s words for it', () => {
    expect(systemErrorText(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO', errno: -5 }))).toBe('EIO (i/o error)');
    expect(systemErrorText(Object.assign(new Error('stream is gone'), { code: 'ERR_X' }))).toBe('ERR_X (stream is gone)');
  });
});
