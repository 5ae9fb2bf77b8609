// Goal: a stored batch that is whole, has a valid CRC and yet does not decode (damage the CRC
// cannot see, or a broker bug) is answered DATA_LOSS, naming the partition, by the reads that
// decode records, not INVALID_ARGUMENT as if the reader had sent something wrong; a raw read
// still returns it as stored. Method: records produced through a real broker, the batch's record
// bytes edited in its segment file with the broker stopped (CRC recomputed), then real gRPC
// reads against a broker opened on that directory.
import { readFileSync, writeFileSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import Long from 'long';
import { describe, expect, it } from 'vitest';
import { crc32c } from '@node-rs/crc32';
import type { strata } from '../../src/generated/strata.js';
import { partitionDirectory, segmentFilePath } from '../../src/storage/file-names.js';
import { ATTRIBUTES_OFFSET, CRC_OFFSET, RECORDS_OFFSET, decodeBatches, readBatchSize } from '../../src/storage/record-batch.js';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

const DAMAGE = /^partition damaged-0 holds a batch that does not decode \(batch at offset 1 does not decode: .+\): its records cannot be served decoded; a raw read returns the batch as stored, and strata dump-log shows it$/;

/** Makes the second batch's first record claim a length one byte longer than its fields, with a fresh CRC. */
function damageSecondBatch(dataDir: string): void {
  const path = segmentFilePath(partitionDirectory(dataDir, 'damaged', 0), 0, '.log');
  const log = readFileSync(path);
  const second = readBatchSize(log, 0);
  const batch = log.subarray(second, second + readBatchSize(log, second));
  expect(decodeBatches(batch).length).toBe(1);
  batch[RECORDS_OFFSET] = batch[RECORDS_OFFSET]! + 2; // zigzag varint: the record's length plus one
  batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
  writeFileSync(path, log);
}

describe('a stored batch whose records do not decode', () => {
  it('is DATA_LOSS to decoded reads and lookups by time, and returned as stored to raw reads', async () => {
    const first = await startTestBroker();
    let second: TestBroker | null = null;
    let client = new TestClient(first.address);
    try {
      await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'damaged', partitions: 1 }));
      for (const [value, timestamp] of [['first', 1_000], ['second', 2_000]] as const) {
        await client.call('log.produce', v1.ProduceRequest.create({ topic: 'damaged', partition: 0, records: [v1.Record.create({ value: Buffer.from(value), timestamp: Long.fromNumber(timestamp) })] }));
      }
      client.close();
      await first.stop();
      damageSecondBatch(first.dataDir);
      second = await startTestBroker({ dataDir: first.dataDir });
      client = new TestClient(second.address);

      const fetch = (request: strata.v1.FetchRequest.$Properties): Promise<strata.v1.FetchResponse> =>
        client.call('log.fetch', v1.FetchRequest.create({ topic: 'damaged', partition: 0, offset: Long.fromNumber(0), ...request }));
      // The first batch still decodes: a decoded read of it alone is answered.
      const before = await fetch({ maxBytes: 1 });
      expect(before.records.map((record) => Buffer.from(record.value ?? []).toString())).toEqual(['first']);

      const failed = await grpcError(fetch({}));
      expect(failed.code).toBe(status.DATA_LOSS);
      expect(failed.details).toMatch(DAMAGE);
      expect(failed.metadata.get('strata-error')).toEqual(['DATA_LOSS']);

      const subscribed = await client.subscribeError(v1.SubscribeRequest.create({ topic: 'damaged', partitions: [0], start: v1.StartPosition.create({ offset: Long.fromNumber(1) }) }));
      expect(subscribed.code).toBe(status.DATA_LOSS);
      expect(subscribed.details).toMatch(DAMAGE);

      // A lookup by time that the first batch answers is answered; one that must look inside the second fails.
      const byTime = (timestamp: number) => client.call<strata.v1.ListOffsetsResponse>('log.listOffsets', v1.ListOffsetsRequest.create({ topic: 'damaged', partition: 0, position: v1.StartPosition.create({ timestamp: Long.fromNumber(timestamp) }) }));
      expect((await byTime(1_000)).offset.toNumber()).toBe(0);
      const looked = await grpcError(byTime(1_500));
      expect(looked.code).toBe(status.DATA_LOSS);
      expect(looked.details).toMatch(DAMAGE);

      const raw = await fetch({ raw: true });
      expect(Buffer.from(raw.batches)).toEqual(readFileSync(segmentFilePath(partitionDirectory(first.dataDir, 'damaged', 0), 0, '.log')));
    } finally {
      client.close();
      if (second !== null) await second.dispose();
      else await first.dispose();
    }
  });
});
