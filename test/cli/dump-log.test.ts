// Goal: `strata dump-log` hands its output to stdout a chunk at a time, however short its lines,
// and still waits when stdout is backed up; method: writeLines over a stream whose writes are
// counted and whose callbacks come a turn later, as a pipe's do.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { writeLines } from '../../src/cli/commands/dump-log.js';
import { OUTPUT_CHUNK_BYTES, OutputWriter } from '../../src/cli/output.js';

/** A stream that counts its writes and keeps what they held; each callback comes a turn later. */
function countingStream(): { stream: Writable; writes: () => number; output: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      setImmediate(callback);
    },
  });
  return { stream, writes: () => chunks.length, output: () => Buffer.concat(chunks).toString() };
}

async function* lines(count: number): AsyncGenerator<string> {
  for (let index = 0; index < count; index++) yield `line ${index} of a dump, about forty bytes long`;
}

describe('writeLines', () => {
  it('writes a chunk at a time, not a write per line, and loses no line', async () => {
    const { stream, writes, output } = countingStream();
    const writer = new OutputWriter(stream);
    const count = 50_000;
    await writeLines(lines(count), writer);
    await writer.flushed();
    const text = output();
    expect(text.split('\n').slice(0, -1)).toHaveLength(count);
    expect(text.endsWith(`line ${count - 1} of a dump, about forty bytes long\n`)).toBe(true);
    expect(writes()).toBeLessThanOrEqual(Math.ceil(text.length / OUTPUT_CHUNK_BYTES) + 1);
  });
});
