// Goal: `consume` without `--group`, when retention deletes records it has not printed yet, goes
// on from the earliest offset still stored (printing the rest, not jumping to the end), says on
// stderr which records it could not print, and ends at the high watermark it had at the start;
// method: the command's consumer from the sources against a real in-process broker, printing
// JSON lines into a stream that stops taking them after the first chunk, retention run on the
// broker while the command waits for that reader, then the reader let go and the offsets printed
// compared with the log start retention left.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Connection } from '../../src/client/connection.js';
import { Producer } from '../../src/client/producer.js';
import { assignedConsumer } from '../../src/cli/commands/consume-assigned.js';
import { OutputWriter } from '../../src/cli/output.js';
import { RecordPrinter } from '../../src/cli/record-format.js';
import { HeldStream } from '../helpers/held-stream.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';

const shared = useBrokerWithAdmin();

afterEach(() => {
  vi.restoreAllMocks();
});

describe('consume when retention overtakes it', () => {
  it('goes on from the earliest offset kept, says what it could not print, and ends at the start high watermark', async () => {
    const topic = 'assigned-overtaken';
    // 1 MiB segments, 2 MiB kept: far more records than the command holds fetched (two 4 MiB chunks and the batch in hand).
    await shared.admin.createTopic(topic, { partitions: 1, configs: { 'segment.bytes': String(1024 * 1024), 'retention.bytes': String(2 * 1024 * 1024) } });
    const count = 24_000;
    const value = 'v'.repeat(1000);
    const producer = new Producer({ server: shared.broker.address, lingerMs: 5 });
    try {
      await Promise.all(Array.from({ length: count }, () => producer.send({ topic, value })));
    } finally {
      await producer.close();
    }

    const stderr: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
    const pipe = new HeldStream(1);
    const writer = new OutputWriter(pipe);
    const connection = new Connection({ server: shared.broker.address });
    let logStart = -1;
    try {
      const consuming = assignedConsumer({
        connection,
        topic,
        partitions: [0],
        start: 'earliest',
        printer: new RecordPrinter(writer, 'json', false),
        writer,
        state: { remaining: Number.POSITIVE_INFINITY, follow: false, endOffsets: new Map() },
      });
      await pipe.holding; // the reader has stopped reading; the command waits for it
      await shared.broker.broker.applyRetention();
      logStart = (await shared.admin.describeTopic(topic)).partitions[0]!.logStartOffset;
      pipe.release();
      await consuming;
      await writer.flushed();
    } finally {
      connection.close();
    }

    const offsets = Buffer.concat(pipe.accepted)
      .toString()
      .trimEnd()
      .split('\n')
      .map((line) => (JSON.parse(line) as { offset: number }).offset);
    // Printed: a run from 0 up to where the fetched records ended, then everything retention kept.
    const gap = offsets.findIndex((offset, index) => offset !== index);
    expect(gap).toBeGreaterThan(0);
    expect(logStart).toBeGreaterThan(offsets[gap - 1]! + 1);
    expect(offsets.slice(gap)).toEqual(Array.from({ length: count - logStart }, (_, index) => logStart + index));
    expect(stderr).toHaveLength(1);
    // The offset refused is where the fetching was, which may be ahead of what was printed (a chunk fetched and not taken yet).
    const refused = new RegExp(`^strata: offset (\\d+) is out of range for ${topic}-0: .*${logStart}.*; going on from offset ${logStart} \\(the earliest offset\\): records ${gap} to ${logStart - 1} of ${topic}-0 are not printed\n$`).exec(stderr[0]!);
    expect(refused, stderr[0]).not.toBeNull();
    expect(Number(refused![1])).toBeGreaterThanOrEqual(gap);
    expect(Number(refused![1])).toBeLessThan(logStart);
  });
});
