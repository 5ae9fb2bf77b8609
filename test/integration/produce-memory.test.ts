// Goal: the broker bounds the bytes of produce requests it holds across all connections
// (--produce-memory-bytes), not only per stream: a producer that reads no answers stops being
// read once it fills the memory, /metrics shows the memory and the pause, a unary Produce is
// still served, another connection's stream loses nothing, and the memory is all given back
// once the stuck stream is cancelled.
// Method: a real broker with 2 MiB of produce memory; a ProduceStream on its own connection that
// reads none of its answers, so its requests stay unanswered once the HTTP/2 windows fill.
import { type ClientDuplexStream, credentials, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import Long from 'long';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_LOG_CONFIG } from '../../src/storage/log-config.js';
import type { strata } from '../../src/generated/strata.js';
import { logServiceDefinition } from '../../src/server/service-definitions.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { v1 } from '../helpers/grpc-client.js';
import { plateau } from '../helpers/plateau.js';
import { useSharedBroker } from '../helpers/shared-broker.js';
import { waitUntil } from '../helpers/wait.js';

const MEMORY_BYTES = 2 * 1024 * 1024;
const RECORD_BYTES = 10_000;

const shared = useSharedBroker({
  maxRequestBytes: MEMORY_BYTES,
  produceMemoryBytes: MEMORY_BYTES,
  topicDefaults: { ...DEFAULT_LOG_CONFIG, maxMessageBytes: 1024 * 1024 },
});

type ProduceStream = ClientDuplexStream<strata.v1.ProduceRequest, strata.v1.ProduceResponse>;

/** A Log client on a connection of its own (so its unread answers hold back no other call). */
function ownConnection(): { produceStream(): ProduceStream; close(): void } {
  const LogClient = makeGenericClientConstructor(logServiceDefinition, 'strata.v1.Log');
  return new LogClient(shared.broker.address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as { produceStream(): ProduceStream; close(): void };
}

function request(topic: string, correlationId: number): strata.v1.ProduceRequest {
  return v1.ProduceRequest.create({
    topic,
    partition: 0,
    acks: v1.Acks.ACKS_LEADER,
    correlationId: Long.fromNumber(correlationId, true),
    batch: buildBatch([{ value: Buffer.alloc(RECORD_BYTES, correlationId % 251) }]),
  });
}

async function scrape(): Promise<{ bytes: number; pauses: number }> {
  const body = await (await fetch(`http://${shared.broker.metricsAddress!}/metrics`)).text();
  const value = (name: string): number => Number(/^(\S+) (\S+)$/m.exec(body.split('\n').find((line) => line.startsWith(`${name} `)) ?? '')?.[2] ?? Number.NaN);
  return { bytes: value('strata_produce_memory_bytes'), pauses: value('strata_produce_memory_pauses_total') };
}

describe('produce memory shared by all connections', () => {
  const clients: { close(): void }[] = [];
  afterAll(() => {
    for (const client of clients) client.close();
  });

  it('stops reading a producer that fills it, serves unary produce meanwhile, and is all given back after a cancel', async () => {
    const topic = 'memory-bound';
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: topic, partitions: 1 }));
    expect(await scrape()).toEqual({ bytes: 0, pauses: 0 });

    const stuckClient = ownConnection();
    clients.push(stuckClient);
    const stuck = stuckClient.produceStream();
    stuck.on('error', () => undefined); // cancelled below
    stuck.on('data', () => undefined);
    stuck.pause();
    // About 40 MiB: far more than the memory, and the answers (about 40 bytes each) fill the
    // 64 KiB HTTP/2 windows of the stuck connection after a few thousand.
    for (let id = 1; id <= 4_000; id++) stuck.write(request(topic, id));
    // Once its answers are stuck, the stream stops being read: nothing more is appended.
    const log = shared.broker.broker.partitionLog(topic, 0);
    await waitUntil(async () => log.logEndOffset > 0, 'the first append', 15_000);
    expect(await plateau(() => log.logEndOffset, 300)).toBeLessThan(4_000);
    // It stopped at the bound; a few answers sent since may have given some back, not half.
    expect((await scrape()).bytes).toBeGreaterThanOrEqual(MEMORY_BYTES / 2);
    expect((await scrape()).pauses).toBeGreaterThanOrEqual(1);

    // Another producer's stream is read only while the memory has room: how many of its
    // requests wait depends on how fast the stuck stream's answers trickle out (the test in
    // test/server/pipelined-stream.test.ts pins that down); here, none is lost.
    const other = ownConnection();
    clients.push(other);
    const waiting = other.produceStream();
    const answers: strata.v1.ProduceResponse[] = [];
    waiting.on('data', (answer: strata.v1.ProduceResponse) => answers.push(answer));
    const ended = new Promise<number>((resolve) => waiting.on('status', ({ code }: { code: number }) => resolve(code)));
    waiting.on('error', () => undefined); // the status says it
    const sent = 150;
    for (let id = 1; id <= sent; id++) waiting.write(request(topic, 1_000_000 + id));
    waiting.end();

    // A unary Produce cannot be held back before it is read: it is served.
    const unary = await shared.client.call<strata.v1.ProduceResponse>('log.produce', request(topic, 2_000_000));
    expect(unary.batches).toHaveLength(1);

    stuck.cancel();
    expect(await ended).toBe(status.OK);
    expect(answers.map((answer) => answer.correlationId.toNumber())).toEqual(Array.from({ length: sent }, (_, index) => 1_000_001 + index));
    expect(answers.every((answer) => answer.error === null && answer.batches.length === 1)).toBe(true);
    await waitUntil(async () => (await scrape()).bytes === 0, 'the produce memory to be given back', 15_000);
  });
});
