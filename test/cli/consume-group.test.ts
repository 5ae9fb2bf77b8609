// Goal: `consume --group` commits no record whose line did not reach stdout, even when the
// reader goes away (EPIPE, `| head`) in the middle of a fetched batch; method: groupConsumer from
// the sources against a real in-process broker, printing into a stream that accepts a set number
// of writes and then fails like a closed pipe, and the group's committed offset compared with the
// lines the stream took.
import { describe, expect, it } from 'vitest';
import { Connection } from '../../src/client/connection.js';
import { Producer } from '../../src/client/producer.js';
import { groupConsumer } from '../../src/cli/commands/consume-group.js';
import { OUTPUT_CHUNK_BYTES, OutputWriter } from '../../src/cli/output.js';
import { RecordPrinter } from '../../src/cli/record-format.js';
import { FailingStream } from '../helpers/failing-stream.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';

const shared = useBrokerWithAdmin({ groupHeartbeatIntervalMs: 500 });

describe('consume --group when stdout closes', () => {
  it('commits the first record whose line was not written, not the end of the printed batch', async () => {
    const topic = 'group-closed-output';
    const group = 'closed-output';
    await shared.admin.createTopic(topic, { partitions: 1 });
    // 2000 lines of 1000 bytes: about eight output chunks, all fetched in one or two batches.
    const value = 'v'.repeat(999);
    const producer = new Producer({ server: shared.broker.address });
    try {
      await Promise.all(Array.from({ length: 2000 }, () => producer.send({ topic, value })));
    } finally {
      await producer.close();
    }

    const pipe = new FailingStream(2, 'EPIPE');
    const writer = new OutputWriter(pipe);
    const connection = new Connection({ server: shared.broker.address });
    try {
      await groupConsumer({
        connection,
        topic,
        groupId: group,
        resetPolicy: 'earliest',
        printer: new RecordPrinter(writer, 'text', false),
        writer,
        state: { remaining: Number.POSITIVE_INFINITY, follow: false, endOffsets: new Map([[0, 2000]]) },
      });
    } finally {
      connection.close();
    }

    // The reader got two chunks of whole lines; the lines after them were never written.
    const written = Buffer.concat(pipe.accepted).toString('latin1');
    expect(written.length).toBeGreaterThan(OUTPUT_CHUNK_BYTES);
    expect(written.endsWith('\n')).toBe(true);
    const linesWritten = written.split('\n').length - 1;
    expect(writer.closed).toBe(true);
    const committed = await shared.admin.fetchOffsets(group, [topic]);
    expect(committed.map((entry) => [entry.partition, entry.offset])).toEqual([[0, linesWritten]]);
  });
});
