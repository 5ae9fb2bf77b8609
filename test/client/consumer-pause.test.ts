// Goal: the Consumer's flow control (pause, resume, paused) stops a partition's delivery and
// fetching while the others go on, drops what it fetched ahead without counting it as consumed
// or committed, and goes on from the position once resumed (no gap, no duplicate), through seek,
// reassignment, a group rebalance and close; method: a real in-process broker over gRPC (100 ms
// group heartbeats), one record batch per Subscribe message so that chunks are fetched ahead, a
// grpc-js interceptor that counts each partition's Subscribe streams and messages, committed
// offsets read back from the broker, and waits on events and polls with deadlines (no sleeps).
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type Consumer, type ConsumerRecord, type OffsetsCommittedEvent, type TopicPartition, type TopicPartitionOffset } from '../../src/client/consumer.js';
import type { PartitionsLostEvent } from '../../src/client/group-member.js';
import { StrataClientError } from '../../src/client/errors.js';
import type { strata } from '../../src/generated/strata.js';
import { useConsumerFixture } from '../helpers/consumer-fixture.js';
import { waitUntil } from '../helpers/wait.js';

// A long linger and explicit flushes: each `produce` call below becomes one batch. One batch
// per Subscribe message: a partition has chunks fetched ahead of what it handed out.
const fixture = useConsumerFixture({
  topicPrefix: 'pause',
  broker: { groupHeartbeatIntervalMs: 100, groupSessionTimeoutMs: 5_000 },
  defaults: { resetPolicy: 'earliest', maxBytesPerPartition: 1 },
});
const { consumer, topic } = fixture;

/** Writes `batches` batches of `size` records to a partition (offsets from `from`). */
async function produce(name: string, partition: number, batches: number, size = 5, from = 0): Promise<void> {
  for (let batch = 0; batch < batches; batch++) {
    const sends = Array.from({ length: size }, (_, index) => fixture.producer.send({ topic: name, partition, value: `${partition}-${from + batch * size + index}` }));
    await fixture.producer.flush();
    await Promise.all(sends);
  }
}

/** The next `count` records of async iteration; leaves the loop (the consumer stays open). */
async function take(source: Consumer, count: number): Promise<ConsumerRecord[]> {
  const records: ConsumerRecord[] = [];
  for await (const record of source) {
    records.push(record);
    if (records.length === count) break;
  }
  return records;
}

const offsets = (records: readonly ConsumerRecord[]): number[] => records.map((record) => record.offset);
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, index) => from + index);

/** Each partition's Subscribe streams: started, open now, and messages received. */
interface SubscribeTrace {
  started: Map<number, number>;
  open: Map<number, number>;
  messages: Map<number, number>;
}

function traceSubscribes(trace: SubscribeTrace): Interceptor {
  const add = (counts: Map<number, number>, partition: number, delta: number): void => void counts.set(partition, (counts.get(partition) ?? 0) + delta);
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== '/strata.v1.Log/Subscribe') return new InterceptingCall(call);
    let partition = -1;
    return new InterceptingCall(call, {
      start(metadata, _listener, next) {
        next(metadata, {
          onReceiveMessage: (message, nextMessage) => {
            add(trace.messages, partition, 1);
            nextMessage(message);
          },
          onReceiveStatus: (value, nextStatus) => {
            add(trace.open, partition, -1);
            nextStatus(value);
          },
        });
      },
      sendMessage(message: strata.v1.SubscribeRequest, next) {
        partition = message.partitions[0]!;
        add(trace.started, partition, 1);
        add(trace.open, partition, 1);
        next(message);
      },
    });
  };
}

function newTrace(): SubscribeTrace {
  return { started: new Map(), open: new Map(), messages: new Map() };
}

describe('pause and resume', () => {
  it('a paused partition is neither handed out nor fetched while another goes on; resumed, it goes on from its position, waking a waiting read', async () => {
    const name = await topic(2);
    await produce(name, 0, 4); // offsets 0..19, four batches
    await produce(name, 1, 1);
    const trace = newTrace();
    const reader = consumer({ prefetchBatches: 2, interceptors: [traceSubscribes(trace)] });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    // Chunks of partition 0 fetched ahead of what is handed out, before reading.
    await waitUntil(() => (trace.messages.get(0) ?? 0) >= 2, 'chunks of partition 0 to be fetched');
    const delivered: ConsumerRecord[] = [];
    let pausedAt = -1;
    for await (const record of reader) {
      delivered.push(record);
      // Paused in the middle of a chunk, with more chunks of it waiting: the loop goes on with partition 1 only.
      if (record.partition === 0 && record.offset === 2) {
        reader.pause([{ topic: name, partition: 0 }]);
        pausedAt = delivered.length;
      }
      if (pausedAt >= 0 && delivered.filter((each) => each.partition === 1).length === 5) break;
    }
    expect(offsets(delivered.filter((record) => record.partition === 0))).toEqual([0, 1, 2]);
    expect(reader.position(name, 0)).toBe(3);
    expect(reader.paused()).toEqual([{ topic: name, partition: 0 }]);
    await waitUntil(() => trace.open.get(0) === 0, "partition 0's stream to end");
    const startedWhilePaused = trace.started.get(0);

    await produce(name, 0, 1, 5, 20); // 20..24
    await produce(name, 1, 1, 5, 5); // 5..9
    const more: ConsumerRecord[] = [];
    while (more.length < 5) more.push(...(await reader.nextBatch({ timeoutMs: 10_000 }))!.records);
    expect(more.map((record) => `${record.partition}/${record.offset}`)).toEqual(range(5, 10).map((offset) => `1/${offset}`));
    expect(trace.started.get(0)).toBe(startedWhilePaused);
    expect(trace.open.get(0)).toBe(0);
    expect(await reader.nextBatch({ timeoutMs: 0 })).toBeNull();

    const waiting = reader.nextBatch({ timeoutMs: 10_000 });
    reader.resume([{ topic: name, partition: 0 }]);
    expect(reader.paused()).toEqual([]);
    const first = await waiting;
    expect(first).toMatchObject({ topic: name, partition: 0 });
    const resumed = [...first!.records];
    while (resumed.at(-1)!.offset < 24) resumed.push(...(await reader.nextBatch({ timeoutMs: 10_000 }))!.records);
    expect(offsets(resumed)).toEqual(range(3, 25)); // from the position: no gap, no duplicate
    expect(resumed.every((record) => record.partition === 0)).toBe(true);
    expect(reader.position(name, 0)).toBe(25);
  });

  it('a pause and resume at once fetch again from the position: every record once, in order', async () => {
    const name = await topic(1);
    await produce(name, 0, 4);
    const reader = consumer({ prefetchBatches: 3 });
    await reader.assign([{ topic: name, partition: 0 }]);
    const delivered: number[] = [];
    for await (const record of reader) {
      delivered.push(record.offset);
      if (record.offset % 7 === 2) {
        reader.pause([{ topic: name, partition: 0 }]);
        reader.resume([{ topic: name, partition: 0 }]);
      }
      if (record.offset === 19) break;
    }
    expect(delivered).toEqual(range(0, 20));
  });

  it('position and commits count only records handed out: chunks dropped by the pause are neither consumed nor committed', async () => {
    const name = await topic(1);
    await produce(name, 0, 4); // offsets 0..19
    const groupId = `pause-commits-${name}`;
    const trace = newTrace();
    const reader = consumer({ groupId, autoCommitIntervalMs: 20, prefetchBatches: 3, interceptors: [traceSubscribes(trace)] });
    const committed: number[] = [];
    reader.on('offsetsCommitted', ({ offsets: sent }: OffsetsCommittedEvent) => committed.push(...sent.map(({ offset }) => offset)));
    await reader.assign([{ topic: name, partition: 0 }]);
    await waitUntil(() => (trace.messages.get(0) ?? 0) >= 3, 'chunks to be fetched ahead');
    for await (const record of reader) {
      if (record.offset < 6) continue;
      // Holding record 6: paused, it stays unprocessed, so automatic commits stop at 6.
      reader.pause([{ topic: name, partition: 0 }]);
      expect(reader.position(name, 0)).toBe(7);
      await waitUntil(() => committed.includes(6), 'an automatic commit of the record in hand');
      break; // record 6 is processed now
    }
    await waitUntil(() => committed.includes(7), 'an automatic commit after the loop');
    await waitUntil(() => trace.open.get(0) === 0, 'the stream to end');
    expect(Math.max(...committed)).toBe(7);
    expect(reader.position(name, 0)).toBe(7);
    expect((await fixture.admin.fetchOffsets(groupId)).map(({ offset }) => offset)).toEqual([7]);
    await reader.commit(); // by hand too: the position, not what was fetched
    expect((await fixture.admin.fetchOffsets(groupId)).map(({ offset }) => offset)).toEqual([7]);

    reader.resume([{ topic: name, partition: 0 }]);
    expect(offsets(await take(reader, 13))).toEqual(range(7, 20));
    await reader.commit();
    expect((await fixture.admin.fetchOffsets(groupId)).map(({ offset }) => offset)).toEqual([20]);
    expect(committed).toEqual([...committed].sort((a, b) => a - b)); // never backwards
  });

  it('seek while paused moves the position without fetching; the records come from there once resumed', async () => {
    const name = await topic(2);
    await produce(name, 0, 2); // offsets 0..9
    const trace = newTrace();
    const reader = consumer({ prefetchBatches: 2, interceptors: [traceSubscribes(trace)] });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    expect(offsets(await take(reader, 6))).toEqual(range(0, 6));
    reader.pause([{ topic: name, partition: 0 }]);
    await waitUntil(() => trace.open.get(0) === 0, "partition 0's stream to end");
    const startedWhilePaused = trace.started.get(0);
    reader.seek(name, 0, 2);
    expect(reader.position(name, 0)).toBe(2);
    expect(reader.paused()).toEqual([{ topic: name, partition: 0 }]);
    // Partition 1's records, written and read after the seek, come through; partition 0 opens no stream meanwhile.
    await produce(name, 1, 1);
    expect((await reader.nextBatch({ timeoutMs: 10_000 }))?.records.map((record) => `${record.partition}/${record.offset}`)).toEqual(range(0, 5).map((offset) => `1/${offset}`));
    expect(trace.started.get(0)).toBe(startedWhilePaused);
    expect(trace.open.get(0)).toBe(0);
    reader.resume([{ topic: name, partition: 0 }]);
    expect(offsets(await take(reader, 8))).toEqual(range(2, 10));
  });
});

describe('arguments', () => {
  it('refuses a partition not assigned, naming it, and then pauses none; pausing twice and resuming one not paused change nothing', async () => {
    const name = await topic(3);
    await produce(name, 1, 1);
    const reader = consumer();
    await reader.assign([2, 0, 1].map((partition) => ({ topic: name, partition })));
    const refusal = (call: () => void): unknown => {
      try {
        call();
        return null;
      } catch (error) {
        return error;
      }
    };
    const notAssigned = refusal(() => reader.pause([{ topic: name, partition: 0 }, { topic: name, partition: 5 }]));
    expect(notAssigned).toBeInstanceOf(StrataClientError);
    expect(notAssigned).toMatchObject({ code: 'FAILED_PRECONDITION', message: `cannot pause ${name}-5: it is not assigned to this consumer` });
    expect(reader.paused()).toEqual([]);
    expect(refusal(() => reader.resume([{ topic: 'elsewhere', partition: 0 }]))).toMatchObject({ code: 'FAILED_PRECONDITION', message: 'cannot resume elsewhere-0: it is not assigned to this consumer' });
    expect(refusal(() => reader.pause('orders' as unknown as TopicPartition[]))).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'pause takes an array of { topic, partition }' });

    reader.pause([{ topic: name, partition: 1 }, { topic: name, partition: 2 }]);
    reader.pause([{ topic: name, partition: 1 }]);
    reader.resume([{ topic: name, partition: 0 }]);
    expect(reader.paused()).toEqual([{ topic: name, partition: 2 }, { topic: name, partition: 1 }]); // in assignment() order
    expect(await reader.nextBatch({ timeoutMs: 0 })).toBeNull();
    reader.resume([{ topic: name, partition: 1 }]); // one resume undoes both pauses
    expect((await reader.nextBatch({ timeoutMs: 10_000 }))?.records.map((record) => `${record.partition}/${record.offset}`)).toEqual(range(0, 5).map((offset) => `1/${offset}`));
    await reader.close();
    expect(() => reader.pause([{ topic: name, partition: 0 }])).toThrow(/closed/);
  });
});

describe('assignment and lifecycle', () => {
  it('assign() that drops a paused partition releases it at its position; assigned again, it is not paused', async () => {
    const name = await topic(1);
    await produce(name, 0, 2); // offsets 0..9
    const groupId = `pause-assign-${name}`;
    const revoked: TopicPartitionOffset[][] = [];
    const reader = consumer({ groupId, prefetchBatches: 2, beforeRevoke: (positions) => void revoked.push(positions) });
    await reader.assign([{ topic: name, partition: 0 }]);
    expect(offsets(await take(reader, 3))).toEqual([0, 1, 2]);
    reader.pause([{ topic: name, partition: 0 }]);
    await reader.assign([]);
    expect(revoked).toEqual([[{ topic: name, partition: 0, offset: 3, topicCreatedAtMs: expect.any(Number) }]]);
    expect(reader.paused()).toEqual([]);
    expect((await fixture.admin.fetchOffsets(groupId)).map(({ offset }) => offset)).toEqual([3]);
    await reader.assign([{ topic: name, partition: 0 }]);
    expect(reader.paused()).toEqual([]);
    expect(offsets(await take(reader, 7))).toEqual(range(3, 10)); // from the committed offset
  });

  it('close() while partitions are paused ends cleanly: waiting reads end, no stream is left open, the final commit is the position', async () => {
    const name = await topic(2);
    await produce(name, 0, 2);
    const groupId = `pause-close-${name}`;
    const trace = newTrace();
    const reader = consumer({ groupId, prefetchBatches: 2, interceptors: [traceSubscribes(trace)] });
    await reader.assign([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    expect(offsets(await take(reader, 3))).toEqual([0, 1, 2]);
    reader.pause([{ topic: name, partition: 0 }, { topic: name, partition: 1 }]);
    const waiting = reader.nextBatch();
    const iteration = take(reader, 1);
    await reader.close();
    expect(await waiting).toBeNull();
    expect(await iteration).toEqual([]);
    expect([trace.open.get(0), trace.open.get(1)]).toEqual([0, 0]);
    const committed = await fixture.admin.fetchOffsets(groupId);
    expect(committed.find(({ partition }) => partition === 0)?.offset).toBe(3);
  });
});

describe('a group member', () => {
  it('keeps its paused partitions and heartbeats on; one revoked goes to the next owner at its position, unpaused, and comes back unpaused', async () => {
    const name = await topic(2);
    await produce(name, 0, 4); // offsets 0..19 in each partition
    await produce(name, 1, 4);
    const groupId = `pause-group-${name}`;
    let heartbeats = 0;
    const countHeartbeats: Interceptor = (options, nextCall) => {
      if (options.method_definition.path.endsWith('/Heartbeat')) heartbeats++;
      return new InterceptingCall(nextCall(options));
    };
    const member = { subscribe: [name], groupId, autoCommitIntervalMs: 60_000, sessionTimeoutMs: 1_000 };
    const a = consumer({ ...member, prefetchBatches: 2, interceptors: [countHeartbeats] });
    const lost: PartitionsLostEvent[] = [];
    a.on('partitionsLost', (event: PartitionsLostEvent) => lost.push(event));
    await waitUntil(() => a.assignment().length === 2, 'a to own both partitions');
    const epoch = a.memberEpoch;
    // Records of both partitions handed out, more fetched ahead.
    const handedOut = new Map<number, number[]>([[0, []], [1, []]]);
    while (handedOut.get(0)!.length === 0 || handedOut.get(1)!.length === 0) {
      const batch = (await a.nextBatch({ timeoutMs: 10_000 }))!;
      handedOut.get(batch.partition)!.push(...offsets(batch.records));
    }
    const both = [{ topic: name, partition: 0 }, { topic: name, partition: 1 }];
    a.pause(both);
    // Asking for more marks the last batch processed, and hands out nothing of the paused partitions.
    expect(await a.nextBatch({ timeoutMs: 0 })).toBeNull();
    const positions = [a.position(name, 0)!, a.position(name, 1)!];
    expect(positions).toEqual([handedOut.get(0)!.length, handedOut.get(1)!.length]);

    // Paused past its session (1 s): still the owner, in the same epoch.
    const since = heartbeats;
    await waitUntil(() => heartbeats - since >= 15, 'heartbeats while paused');
    expect(a.assignment().sort((x, y) => x.partition - y.partition)).toEqual(both);
    expect(a.memberEpoch).toBe(epoch);
    expect(lost).toEqual([]);
    const described = (await fixture.broker.groups.describeGroup(groupId)).members;
    expect(described.map((entry) => entry.assignment.length)).toEqual([2]);

    const b = consumer(member);
    const bStarted: TopicPartitionOffset[] = [];
    b.on('partitionStarted', (event: TopicPartitionOffset) => bStarted.push(event));
    await waitUntil(() => a.assignment().length === 1 && b.assignment().length === 1, 'a to give one partition to b');
    const moved = b.assignment()[0]!.partition;
    const kept = 1 - moved;
    expect(a.paused()).toEqual([{ topic: name, partition: kept }]);
    expect(b.paused()).toEqual([]);
    // Committed at the position (auto-commit's interval is a minute: this is the revocation's).
    const committed = await fixture.admin.fetchOffsets(groupId);
    expect(committed.find(({ partition }) => partition === moved)?.offset).toBe(positions[moved]);
    await waitUntil(() => bStarted.length === 1, 'b to start the partition');
    expect(bStarted).toEqual([{ topic: name, partition: moved, offset: positions[moved] }]);
    expect(offsets(await take(b, 20 - positions[moved]!))).toEqual(range(positions[moved]!, 20));

    // b leaves (committing 20): the partition comes back to a unpaused, the other still paused.
    await b.close();
    await waitUntil(() => a.assignment().length === 2, 'a to get the partition back');
    expect(a.paused()).toEqual([{ topic: name, partition: kept }]);
    await produce(name, moved, 1, 2, 20);
    expect((await a.nextBatch({ timeoutMs: 10_000 }))?.records.map((record) => `${record.partition}/${record.offset}`)).toEqual([`${moved}/20`, `${moved}/21`]);

    a.resume([{ topic: name, partition: kept }]);
    const rest: number[] = [];
    while (rest.length < 20 - positions[kept]!) {
      const batch = (await a.nextBatch({ timeoutMs: 10_000 }))!;
      expect(batch.partition).toBe(kept);
      rest.push(...offsets(batch.records));
    }
    expect(rest).toEqual(range(positions[kept]!, 20));
  });
});
