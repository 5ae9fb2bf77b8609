// Goal: `consume --group` commits no record whose line did not reach stdout, even when the
// reader goes away (EPIPE, `| head`) in the middle of a fetched batch, also when an interrupt
// (Ctrl-C, SIGTERM) comes while that batch waits for the reader; method: groupConsumer from the
// sources against a real in-process broker, printing into a stream that accepts a set number of
// writes and then fails like a closed pipe (after a wait, for the interrupt), and the group's
// committed offset compared with the lines the stream took.
import { describe, expect, it } from 'vitest';
import { Connection } from '../../src/client/connection.js';
import { Producer } from '../../src/client/producer.js';
import { groupConsumer } from '../../src/cli/commands/consume-group.js';
import { OUTPUT_CHUNK_BYTES, OutputWriter } from '../../src/cli/output.js';
import { RecordPrinter } from '../../src/cli/record-format.js';
import { FailingStream } from '../helpers/failing-stream.js';
import { waitUntil } from '../helpers/wait.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';

const shared = useBrokerWithAdmin({ groupHeartbeatIntervalMs: 500 });

/** 2000 records of 1000-byte lines in a new topic: about eight output chunks, fetched in one or two batches. */
async function topicOfLines(topic: string): Promise<void> {
  await shared.admin.createTopic(topic, { partitions: 1 });
  const value = 'v'.repeat(999);
  const producer = new Producer({ server: shared.broker.address });
  try {
    await Promise.all(Array.from({ length: 2000 }, () => producer.send({ topic, value })));
  } finally {
    await producer.close();
  }
}

/** Runs the command's group consumer on `topic` into `pipe`; `started` runs once it is under way. */
async function consumeInto(pipe: FailingStream, topic: string, group: string, follow: boolean, started: () => Promise<void> = async () => {}): Promise<OutputWriter> {
  const writer = new OutputWriter(pipe);
  const connection = new Connection({ server: shared.broker.address });
  try {
    const consuming = groupConsumer({
      connection,
      topic,
      groupId: group,
      resetPolicy: 'earliest',
      printer: new RecordPrinter(writer, 'text', false),
      writer,
      state: { remaining: Number.POSITIVE_INFINITY, follow, endOffsets: new Map([[0, 2000]]) },
    });
    await started();
    await consuming;
  } finally {
    connection.close();
  }
  return writer;
}

/** The number of lines `pipe` took, all of them whole. */
function linesTaken(pipe: FailingStream): number {
  const written = Buffer.concat(pipe.accepted).toString('latin1');
  expect(written.length).toBeGreaterThan(OUTPUT_CHUNK_BYTES);
  expect(written.endsWith('\n')).toBe(true);
  return written.split('\n').length - 1;
}

describe('consume --group when stdout closes', () => {
  it('commits the first record whose line was not written, not the end of the printed batch', async () => {
    const topic = 'group-closed-output';
    const group = 'closed-output';
    await topicOfLines(topic);
    const pipe = new FailingStream(2, 'EPIPE');
    const writer = await consumeInto(pipe, topic, group, false);
    // The reader got two chunks of whole lines; the lines after them were never written.
    expect(writer.closed).toBe(true);
    const committed = await shared.admin.fetchOffsets(group, [topic]);
    expect(committed.map((entry) => [entry.partition, entry.offset])).toEqual([[0, linesTaken(pipe)]]);
  });

  it('on an interrupt while a batch waits for the reader, which then leaves, commits only the lines written', async () => {
    const topic = 'group-interrupted-output';
    const group = 'interrupted-output';
    await topicOfLines(topic);
    let leave!: () => void;
    const pipe = new FailingStream(2, 'EPIPE', new Promise((resolve) => (leave = resolve)));
    const before = new Set(process.listeners('SIGINT'));
    await consumeInto(pipe, topic, group, true, async () => {
      await pipe.refusing; // the third chunk waits: the reader has stopped reading
      const interrupt = process.listeners('SIGINT').filter((listener) => !before.has(listener));
      expect(interrupt).toHaveLength(1);
      interrupt[0]!('SIGINT'); // Ctrl-C, as the command's handler gets it
      // The member commits and leaves at once, not once the reader reads again (`| less` may never).
      const taken = linesTaken(pipe);
      await waitUntil(async () => (await shared.admin.fetchOffsets(group, [topic]))[0]?.offset === taken, 'the commit of the lines written before the interrupt');
      leave(); // the reader goes: the writes waiting fail with EPIPE
    });
    const committed = await shared.admin.fetchOffsets(group, [topic]);
    expect(committed.map((entry) => [entry.partition, entry.offset])).toEqual([[0, linesTaken(pipe)]]);
  });
});
