// Goal: `strata produce` splits its input into the lines readline gave (`\n`, `\r\n`, a lone
// `\r`, a last line without an end, UTF-8 whole across chunks, U+FFFD for bytes that are not
// UTF-8), however the bytes are cut into chunks, and refuses a line longer than its bound as soon
// as that many bytes of it have come, holding no more; method: LineSplitter fed every way of
// cutting a set of inputs into two or three chunks and compared with readline on the same bytes,
// and readLines on streams that end, fail or never end.
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { LineSplitter, LineTooLongError, readLines } from '../../src/cli/input-lines.js';

/** The lines of `chunks` as the splitter gives them, with their numbers. */
function split(chunks: readonly Buffer[], lineBytesMax = 1024): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter(lineBytesMax, (line, lineNumber) => {
    expect(lineNumber).toBe(lines.length + 1);
    lines.push(line);
  });
  for (const chunk of chunks) splitter.write(chunk);
  splitter.end();
  return lines;
}

/** The lines readline gives for `bytes` in one chunk, as `produce` read them before. */
async function readlineLines(bytes: Buffer): Promise<string[]> {
  const lines: string[] = [];
  const reader = createInterface({ input: Readable.from([bytes]), crlfDelay: Number.POSITIVE_INFINITY, terminal: false });
  reader.on('line', (line) => lines.push(line));
  await new Promise((resolve) => reader.once('close', resolve));
  return lines;
}

/** Every way of cutting `bytes` into two chunks, and into three. */
function cuts(bytes: Buffer): Buffer[][] {
  const ways: Buffer[][] = [[bytes]];
  for (let first = 0; first <= bytes.length; first++) {
    ways.push([bytes.subarray(0, first), bytes.subarray(first)]);
    for (let second = first; second <= bytes.length; second++) ways.push([bytes.subarray(0, first), bytes.subarray(first, second), bytes.subarray(second)]);
  }
  return ways;
}

const INPUTS: [string, Buffer][] = [
  ['lines ending in \\n', Buffer.from('one\ntwo\n')],
  ['\\r\\n', Buffer.from('one\r\ntwo\r\n')],
  ['a lone \\r', Buffer.from('one\rtwo\r\rthree')],
  ['\\r\\n and \\r side by side', Buffer.from('a\r\r\nb\n\r\nc')],
  ['empty lines', Buffer.from('\n\nx\n\n')],
  ['a last line without an end', Buffer.from('first\nlast')],
  ['characters of two to four bytes', Buffer.from('héllo ✓\n😀 wörld\n')],
  ['bytes that are not UTF-8', Buffer.from([0x61, 0xff, 0xfe, 0x0a, 0xc3, 0x28, 0x0a, 0xe2, 0x82, 0x0a])],
];

describe('LineSplitter', () => {
  it.each(INPUTS)('gives the lines readline gives, however the input is cut: %s', async (_, bytes) => {
    const expected = await readlineLines(bytes);
    for (const chunks of cuts(bytes)) expect(split(chunks), JSON.stringify(chunks.map((chunk) => chunk.toString('latin1')))).toEqual(expected);
  });

  it('gives an incomplete character at the very end as U+FFFD (readline dropped it)', () => {
    expect(split([Buffer.from([0x61, 0x0a, 0x62, 0xe2, 0x82])])).toEqual(['a', 'b\ufffd']);
  });

  it('takes a line of exactly the bound, and refuses a longer one naming its number and the bound', () => {
    expect(split([Buffer.from('12345\n'), Buffer.from('123'), Buffer.from('45\n')], 5)).toEqual(['12345', '12345']);
    expect(() => split([Buffer.from('ok\n123456\n')], 5)).toThrow(new LineTooLongError(2, 5));
    expect(new LineTooLongError(2, 16 * 1024 * 1024).message).toBe('input line 2 is longer than 16 MiB (16,777,216 bytes), more than any record can be; reading stopped there');
  });

  it('refuses a line once the bytes held of it pass the bound, before the line ends', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter(10, (line) => lines.push(line));
    splitter.write(Buffer.from('first\nabcdef'));
    expect(() => splitter.write(Buffer.from('ghijk'))).toThrow(new LineTooLongError(2, 10));
    expect(lines).toEqual(['first']);
  });
});

describe('readLines', () => {
  it('hands on every line, the last without an end too, then settles', async () => {
    const lines: [string, number][] = [];
    const errors: Error[] = [];
    const input = readLines(Readable.from([Buffer.from('a\r'), Buffer.from('\nb')]), 100, (line, lineNumber) => lines.push([line, lineNumber]), (error) => errors.push(error));
    await input.ended;
    expect(lines).toEqual([['a', 1], ['b', 2]]);
    expect(errors).toEqual([]);
  });

  it('stops at a line too long on an input that never ends, and reports it once', async () => {
    const lines: string[] = [];
    const errors: Error[] = [];
    // An endless line: chunks of 'a' for as long as they are read.
    const endless = new Readable({ read() { this.push(Buffer.alloc(64, 0x61)); } });
    const input = readLines(endless, 1000, (line) => lines.push(line), (error) => errors.push(error));
    await input.ended;
    endless.destroy();
    expect(lines).toEqual([]);
    expect(errors).toEqual([new LineTooLongError(1, 1000)]);
  });

  it('reports a read error of its input', async () => {
    const errors: Error[] = [];
    const failing = new Readable({ read() { this.destroy(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })); } });
    const input = readLines(failing, 100, () => undefined, (error) => errors.push(error));
    await input.ended;
    expect(errors.map((error) => (error as NodeJS.ErrnoException).code)).toEqual(['EIO']);
  });
});
