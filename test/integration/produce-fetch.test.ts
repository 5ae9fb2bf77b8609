// Goal: the broker answers the basic produce/fetch round trip over real gRPC; method: an
// in-process broker on an ephemeral port and the wire-level test client.
import Long from 'long';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { strata } from '../../src/generated/strata.js';
import { buildBatch, decodeBatches } from '../../src/storage/record-batch.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

describe('produce and fetch', () => {
  let broker: TestBroker;
  let client: TestClient;
  beforeAll(async () => {
    broker = await startTestBroker();
    client = new TestClient(broker.address);
  });
  afterAll(async () => {
    client.close();
    await broker.dispose();
  });

  it('round trips plain records and a raw batch', async () => {
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'smoke', partitions: 2 }));
    const produced = await client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({
      topic: 'smoke', partition: 0, records: [v1.Record.create({ key: Buffer.from('k'), value: Buffer.from('hello') })],
    }));
    expect(produced.batches[0]!.baseOffset.toNumber()).toBe(0);
    const raw = await client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({
      topic: 'smoke', partition: 0, batch: buildBatch([{ value: Buffer.from('a') }, { value: Buffer.from('b') }]),
    }));
    expect(raw.batches[0]!.baseOffset.toNumber()).toBe(1);
    const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'smoke', partition: 0, offset: Long.fromNumber(0) }));
    expect(fetched.records.map((record) => Buffer.from(record.value!).toString())).toEqual(['hello', 'a', 'b']);
    const rawFetch = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'smoke', partition: 0, offset: Long.fromNumber(1), raw: true }));
    expect(decodeBatches(Buffer.from(rawFetch.batches!)).map((record) => record.offset)).toEqual([1, 2]);
    expect(rawFetch.nextOffset.toNumber()).toBe(3);
  });
});
