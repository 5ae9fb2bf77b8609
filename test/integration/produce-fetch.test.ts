// Goal: the broker's Log service keeps every promise of log.proto over real gRPC (produce on both
// paths and all acks, pipelined ProduceStream, fetch raw/decoded and long poll, Subscribe,
// ListOffsets, keyed partitioning, idempotent producers); method: an in-process broker on an
// ephemeral port, the wire-level test client, and event-driven waits (a one-shot hook on the
// partition log's high-watermark subscription tells when the server is parked waiting).
import type { CallOptions, ClientDuplexStream, ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import Long from 'long';
import { beforeAll, describe, expect, it } from 'vitest';
import { murmur2 } from '../../src/broker/partitioner.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import type { strata } from '../../src/generated/strata.js';
import type { PartitionLog } from '../../src/storage/partition-log.js';
import { type RecordInput, decodeBatches } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { grpcError, v1 } from '../helpers/grpc-client.js';
import { useSharedBroker } from '../helpers/shared-broker.js';

type ProduceResponse = strata.v1.ProduceResponse;
type FetchResponse = strata.v1.FetchResponse;
type WireRecord = strata.v1.Record;

const shared = useSharedBroker();

// ---------------------------------------------------------------------------------------------
// Helpers.

const long = (value: number): Long => Long.fromNumber(value);

async function createTopic(name: string, partitions: number, configs: Record<string, string> = {}): Promise<void> {
  await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name, partitions, configs }));
}

function produce(request: strata.v1.ProduceRequest.$Properties): Promise<ProduceResponse> {
  return shared.client.call<ProduceResponse>('log.produce', v1.ProduceRequest.create(request));
}

function fetch(request: strata.v1.FetchRequest.$Properties, timeoutMs?: number): Promise<FetchResponse> {
  return shared.client.call<FetchResponse>('log.fetch', v1.FetchRequest.create(request), timeoutMs);
}

function listOffsets(topic: string, partition: number, position?: strata.v1.StartPosition.$Properties): Promise<strata.v1.ListOffsetsResponse> {
  return shared.client.call('log.listOffsets', v1.ListOffsetsRequest.create({ topic, partition, ...(position ? { position: v1.StartPosition.create(position) } : {}) }));
}

/** Every record of a partition from `from` up to the high watermark, by repeated fetches. */
async function fetchAll(topic: string, partition: number, from = 0): Promise<WireRecord[]> {
  const records: WireRecord[] = [];
  let offset = from;
  for (;;) {
    const response = await fetch({ topic, partition, offset: long(offset) });
    records.push(...response.records);
    if (response.nextOffset.toNumber() === offset) return records; // nothing more visible
    offset = response.nextOffset.toNumber();
    if (offset >= response.highWatermark.toNumber()) return records;
  }
}

function wireRecord(record: { key?: string | Buffer | null; value?: string | Buffer | null; headers?: { key: string; value: string | Buffer | null }[]; timestamp?: number }): strata.v1.Record {
  const bytes = (value: string | Buffer | null | undefined): Buffer | null => (value === null || value === undefined ? null : Buffer.isBuffer(value) ? value : Buffer.from(value));
  return v1.Record.create({
    ...(record.key !== undefined && record.key !== null ? { key: bytes(record.key) } : {}),
    ...(record.value !== undefined && record.value !== null ? { value: bytes(record.value) } : {}),
    headers: (record.headers ?? []).map((header) => v1.Header.create(header.value === null ? { key: header.key } : { key: header.key, value: bytes(header.value) })),
    ...(record.timestamp !== undefined ? { timestamp: long(record.timestamp) } : {}),
  });
}

const hex = (bytes: Uint8Array | null | undefined): string | null => (bytes === null || bytes === undefined ? null : Buffer.from(bytes).toString('hex'));
const text = (bytes: Uint8Array | null | undefined): string | null => (bytes === null || bytes === undefined ? null : Buffer.from(bytes).toString('utf8'));

/** A fetched record as plain data (hex bytes, numbers) for equality checks. */
function plain(record: WireRecord): { offset: number; timestamp: number; key: string | null; value: string | null; headers: { key: string; value: string | null }[] } {
  return {
    offset: record.offset.toNumber(),
    timestamp: record.timestamp.toNumber(),
    key: hex(record.key),
    value: hex(record.value),
    headers: record.headers.map((header) => ({ key: header.key, value: hex(header.value) })),
  };
}

/**
 * Resolves when the broker next parks waiting for `log`'s high watermark to move (an idle
 * long-poll fetch or subscription). A one-shot hook on the log instance; nothing is polled.
 */
function nextWaitOn(log: PartitionLog): Promise<void> {
  const original = log.onHighWatermark;
  return new Promise<void>((resolve) => {
    log.onHighWatermark = (listener: () => void) => {
      Reflect.deleteProperty(log, 'onHighWatermark'); // back to the prototype's method
      const unsubscribe = original.call(log, listener);
      resolve();
      return unsubscribe;
    };
  });
}

const partitionLog = (topic: string, partition: number): PartitionLog => shared.broker.broker.partitionLog(topic, partition);

interface LogStreams {
  produceStream(options?: CallOptions): ClientDuplexStream<strata.v1.ProduceRequest, ProduceResponse>;
  subscribe(request: strata.v1.SubscribeRequest, options?: CallOptions): ClientReadableStream<strata.v1.SubscribeResponse>;
}
const streams = (): LogStreams => shared.client.log as unknown as LogStreams;

/** A Subscribe call that collects its messages and lets a test await a condition on them. */
class Subscription {
  readonly messages: strata.v1.SubscribeResponse[] = [];
  error: ServiceError | null = null;
  ended = false;
  private wakers: (() => void)[] = [];
  private readonly stream: ClientReadableStream<strata.v1.SubscribeResponse>;

  constructor(request: strata.v1.SubscribeRequest.$Properties) {
    this.stream = streams().subscribe(v1.SubscribeRequest.create(request), { deadline: Date.now() + 15_000 });
    this.stream.on('data', (message: strata.v1.SubscribeResponse) => {
      this.messages.push(message);
      this.wake();
    });
    this.stream.on('error', (error: ServiceError) => {
      this.error = error;
      this.wake();
    });
    this.stream.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve));
  }

  /** Delivered records with their partition, in delivery order. */
  records(partition?: number): { partition: number; offset: number; value: string | null; timestamp: number }[] {
    return this.messages
      .filter((message) => partition === undefined || message.partition === partition)
      .flatMap((message) => message.records.map((record) => ({ partition: message.partition, offset: record.offset.toNumber(), value: text(record.value), timestamp: record.timestamp.toNumber() })));
  }

  /** Waits until `predicate` holds; fails when the stream fails or ends first (the call has a deadline). */
  async until(predicate: () => boolean, what: string): Promise<void> {
    while (!predicate()) {
      if (this.error !== null) throw new Error(`subscription failed while waiting for ${what}: ${this.error.code} ${this.error.details}; got ${JSON.stringify(this.records())}`);
      if (this.ended) throw new Error(`subscription ended while waiting for ${what}`);
      await this.changed();
    }
  }

  async cancel(): Promise<void> {
    if (this.error !== null || this.ended) return;
    this.stream.cancel();
    while (this.error === null && !this.ended) await this.changed();
  }
}

// ---------------------------------------------------------------------------------------------

describe('produce and fetch', () => {
  it('round trips plain records and a raw batch', async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'smoke', partitions: 2 }));
    const produced = await shared.client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({
      topic: 'smoke', partition: 0, records: [v1.Record.create({ key: Buffer.from('k'), value: Buffer.from('hello') })],
    }));
    expect(produced.batches[0]!.baseOffset.toNumber()).toBe(0);
    const raw = await shared.client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({
      topic: 'smoke', partition: 0, batch: buildBatch([{ value: Buffer.from('a') }, { value: Buffer.from('b') }]),
    }));
    expect(raw.batches[0]!.baseOffset.toNumber()).toBe(1);
    const fetched = await shared.client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'smoke', partition: 0, offset: Long.fromNumber(0) }));
    expect(fetched.records.map((record) => Buffer.from(record.value!).toString())).toEqual(['hello', 'a', 'b']);
    const rawFetch = await shared.client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'smoke', partition: 0, offset: Long.fromNumber(1), raw: true }));
    expect(decodeBatches(Buffer.from(rawFetch.batches!)).map((record) => record.offset)).toEqual([1, 2]);
    expect(rawFetch.nextOffset.toNumber()).toBe(3);
  });

  describe('round trip of record contents', () => {
    const binary = Buffer.from(Array.from({ length: 256 }, (_, index) => index));
    // Every shape a record can take: headers with null values and repeated keys, null and empty
    // keys and values, binary bytes, explicit timestamps (also older than the one before), and
    // one timestamp left to the broker.
    const inputs: RecordInput[] = [
      {
        key: Buffer.from('k1'),
        value: Buffer.from('v1'),
        headers: [{ key: 'h1', value: Buffer.from('x') }, { key: 'h-null', value: null }, { key: 'h1', value: Buffer.from('dup') }, { key: 'ünï', value: Buffer.alloc(0) }],
        timestamp: 1_600_000_000_000,
      },
      { key: null, value: Buffer.from('no key'), timestamp: 1_600_000_000_005 },
      { key: Buffer.from('tombstone'), value: null, timestamp: 1_500_000_000_000 },
      { key: null, value: null, headers: [{ key: 'only-null', value: null }], timestamp: 1_600_000_000_010 },
      { key: Buffer.alloc(0), value: Buffer.alloc(0), timestamp: 1_600_000_000_020 },
      { key: binary, value: binary, headers: [{ key: '', value: binary }], timestamp: 1_600_000_000_030 },
    ];
    const expected = inputs.map((input, offset) => ({
      offset,
      timestamp: input.timestamp!,
      key: hex(input.key),
      value: hex(input.value),
      headers: (input.headers ?? []).map((header) => ({ key: header.key, value: hex(header.value) })),
    }));

    it('keeps keys, values, headers (null values too) and timestamps on the records path', async () => {
      await createTopic('contents-records', 1);
      const produced = await produce({
        topic: 'contents-records',
        partition: 0,
        records: inputs.map((input) => wireRecord({ key: input.key ?? null, value: input.value, headers: input.headers?.map((h) => ({ key: h.key, value: h.value })) ?? [], timestamp: input.timestamp! })),
      });
      expect(produced.batches).toHaveLength(1);
      expect(produced.batches[0]!.partition).toBe(0);
      expect(produced.batches[0]!.baseOffset.toNumber()).toBe(0);
      expect(produced.batches[0]!.lastOffset.toNumber()).toBe(inputs.length - 1);
      expect(produced.batches[0]!.duplicate).toBe(false);
      const fetched = await fetch({ topic: 'contents-records', partition: 0, offset: long(0) });
      expect(fetched.records.map(plain)).toEqual(expected);
      // The raw bytes hold the same records.
      const raw = await fetch({ topic: 'contents-records', partition: 0, offset: long(0), raw: true });
      expect(raw.records).toEqual([]);
      expect(decodeBatches(Buffer.from(raw.batches)).map((record) => ({
        offset: record.offset, timestamp: record.timestamp, key: hex(record.key), value: hex(record.value),
        headers: record.headers.map((header) => ({ key: header.key, value: hex(header.value) })),
      }))).toEqual(expected);
    });

    it('keeps the same contents on the raw batch path', async () => {
      await createTopic('contents-batch', 1);
      const produced = await produce({ topic: 'contents-batch', partition: 0, batch: buildBatch(inputs) });
      expect(produced.batches.map((batch) => [batch.partition, batch.baseOffset.toNumber(), batch.lastOffset.toNumber()])).toEqual([[0, 0, inputs.length - 1]]);
      const fetched = await fetch({ topic: 'contents-batch', partition: 0, offset: long(0) });
      expect(fetched.records.map(plain)).toEqual(expected);
    });

    it('stamps records produced with timestamp 0 with the broker clock', async () => {
      await createTopic('contents-now', 1);
      const before = Date.now();
      const produced = await produce({ topic: 'contents-now', partition: 0, records: [wireRecord({ value: 'now' }), wireRecord({ value: 'explicit', timestamp: 42 })] });
      const after = Date.now();
      const [now, explicit] = (await fetch({ topic: 'contents-now', partition: 0, offset: long(0) })).records;
      expect(now!.timestamp.toNumber()).toBeGreaterThanOrEqual(before);
      expect(now!.timestamp.toNumber()).toBeLessThanOrEqual(after);
      expect(explicit!.timestamp.toNumber()).toBe(42);
      expect(produced.logAppendTimeMs.toNumber()).toBeGreaterThanOrEqual(before);
      expect(produced.logAppendTimeMs.toNumber()).toBeLessThanOrEqual(after);
    });

    it('appends several concatenated raw batches in one request', async () => {
      await createTopic('multi-batch', 1);
      const batch = Buffer.concat([buildBatch([{ value: Buffer.from('a') }, { value: Buffer.from('b') }]), buildBatch([{ value: Buffer.from('c') }])]);
      const produced = await produce({ topic: 'multi-batch', partition: 0, batch });
      expect(produced.batches.map((b) => [b.baseOffset.toNumber(), b.lastOffset.toNumber()])).toEqual([[0, 2]]);
      expect((await fetchAll('multi-batch', 0)).map((record) => text(record.value))).toEqual(['a', 'b', 'c']);
    });
  });

  describe('acks', () => {
    it('ACKS_LEADER answers with real offsets and the records are readable', async () => {
      await createTopic('acks-leader', 1);
      for (let round = 0; round < 3; round++) {
        const produced = await produce({ topic: 'acks-leader', partition: 0, acks: v1.Acks.ACKS_LEADER, records: [wireRecord({ value: `r${round}a` }), wireRecord({ value: `r${round}b` })] });
        expect(produced.batches.map((b) => [b.baseOffset.toNumber(), b.lastOffset.toNumber()])).toEqual([[2 * round, 2 * round + 1]]);
      }
      // The high watermark follows once the fdatasync is done; a long poll waits for it.
      const records: WireRecord[] = [];
      const deadline = Date.now() + 10_000;
      while (records.length < 6 && Date.now() < deadline) {
        const response = await fetch({ topic: 'acks-leader', partition: 0, offset: long(records.length), maxWaitMs: 1000 });
        records.push(...response.records);
      }
      expect(records.map((record) => text(record.value))).toEqual(['r0a', 'r0b', 'r1a', 'r1b', 'r2a', 'r2b']);
    });

    it('ACKS_NONE answers -1 offsets, and the records still arrive in order', async () => {
      await createTopic('acks-none', 2);
      for (let round = 0; round < 5; round++) {
        const produced = await produce({ topic: 'acks-none', partition: 1, acks: v1.Acks.ACKS_NONE, records: [wireRecord({ value: `n${round}` })] });
        expect(produced.batches.map((b) => [b.partition, b.baseOffset.toNumber(), b.lastOffset.toNumber(), b.duplicate])).toEqual([[1, -1, -1, false]]);
      }
      // Poll (long-poll fetches, bounded by a deadline) until all five are visible.
      const records: WireRecord[] = [];
      const deadline = Date.now() + 10_000;
      while (records.length < 5 && Date.now() < deadline) {
        const response = await fetch({ topic: 'acks-none', partition: 1, offset: long(records.length), maxWaitMs: 1000 });
        records.push(...response.records);
      }
      expect(records.map((record) => [record.offset.toNumber(), text(record.value)])).toEqual([0, 1, 2, 3, 4].map((index) => [index, `n${index}`]));
      const latest = await listOffsets('acks-none', 1, { latest: true });
      expect(latest.offset.toNumber()).toBe(5);
    });

    it('ACKS_NONE still refuses an unknown topic or partition', async () => {
      await createTopic('acks-none-errors', 1);
      expect((await grpcError(produce({ topic: 'no-such-topic', acks: v1.Acks.ACKS_NONE, records: [wireRecord({ value: 'x' })] }))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(produce({ topic: 'acks-none-errors', partition: 3, acks: v1.Acks.ACKS_NONE, records: [wireRecord({ value: 'x' })] }))).code).toBe(status.NOT_FOUND);
    });

    it('refuses a corrupt batch with INVALID_ARGUMENT (ACKS_ALL)', async () => {
      await createTopic('corrupt-all', 1);
      const batch = buildBatch([{ value: Buffer.from('payload') }]);
      batch[batch.length - 1]! ^= 0xff; // breaks the CRC
      const error = await grpcError(produce({ topic: 'corrupt-all', partition: 0, batch }));
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect((await listOffsets('corrupt-all', 0, { latest: true })).offset.toNumber()).toBe(0);
    });

    // ACKS_NONE answers once the request is validated and queued: a bad batch is still refused.
    it('refuses a corrupt batch with INVALID_ARGUMENT even with ACKS_NONE', async () => {
      await createTopic('corrupt-none', 1);
      const batch = buildBatch([{ value: Buffer.from('payload') }]);
      batch[batch.length - 1]! ^= 0xff; // breaks the CRC
      const error = await grpcError(produce({ topic: 'corrupt-none', partition: 0, batch, acks: v1.Acks.ACKS_NONE }));
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      // An oversized batch too (max.message.bytes, default 1 MiB).
      const tooBig = await grpcError(produce({ topic: 'corrupt-none', partition: 0, batch: buildBatch([{ value: Buffer.alloc(2 * 1024 * 1024) }]), acks: v1.Acks.ACKS_NONE }));
      expect(tooBig.code).toBe(status.RESOURCE_EXHAUSTED);
      // And nothing reaches the log: an ACKS_ALL append after them lands at offset 0.
      const after = await produce({ topic: 'corrupt-none', partition: 0, records: [wireRecord({ value: 'ok' })] });
      expect(after.batches[0]!.baseOffset.toNumber()).toBe(0);
    });

    it('refuses a request with both records and a batch, or neither', async () => {
      await createTopic('shape', 1);
      const both = await grpcError(produce({ topic: 'shape', partition: 0, records: [wireRecord({ value: 'x' })], batch: buildBatch([{ value: Buffer.from('y') }]) }));
      expect(both.code).toBe(status.INVALID_ARGUMENT);
      const neither = await grpcError(produce({ topic: 'shape', partition: 0 }));
      expect(neither.code).toBe(status.INVALID_ARGUMENT);
      expect((await listOffsets('shape', 0, { latest: true })).offset.toNumber()).toBe(0);
    });
  });

  describe('ProduceStream', () => {
    it('answers many pipelined requests by correlation id, in request order per partition, and survives failed items', async () => {
      const topic = 'pipelined';
      await createTopic(topic, 4);
      const call = streams().produceStream({ deadline: Date.now() + 20_000 });
      const responses: ProduceResponse[] = [];
      const finished = new Promise<void>((resolve, reject) => {
        call.on('data', (response: ProduceResponse) => responses.push(response));
        call.on('end', resolve);
        call.on('error', reject);
      });
      // More requests than the server's in-flight limit (256); the limit itself is tested in
      // test/server/pipelined-stream.test.ts.
      const count = 600;
      const failing = new Map<number, number>([
        [100, status.NOT_FOUND], // unknown topic
        [200, status.NOT_FOUND], // unknown partition
        [300, status.INVALID_ARGUMENT], // records and batch both set
      ]);
      const sent: { correlationId: Long; partition: number }[] = [];
      for (let index = 1; index <= count; index++) {
        const correlationId = index === count ? Long.MAX_UNSIGNED_VALUE : Long.fromNumber(index * 1000, true);
        const partition = index % 4;
        let request: strata.v1.ProduceRequest;
        if (index === 100) request = v1.ProduceRequest.create({ topic: 'no-such-topic', partition: 0, correlationId, records: [wireRecord({ value: 'x' })] });
        else if (index === 200) request = v1.ProduceRequest.create({ topic, partition: 9, correlationId, records: [wireRecord({ value: 'x' })] });
        else if (index === 300) request = v1.ProduceRequest.create({ topic, partition, correlationId, records: [wireRecord({ value: 'x' })], batch: buildBatch([{ value: Buffer.from('y') }]) });
        else if (index % 2 === 0) request = v1.ProduceRequest.create({ topic, partition, correlationId, records: [wireRecord({ value: `${index}-a` }), wireRecord({ value: `${index}-b` })] });
        else request = v1.ProduceRequest.create({ topic, partition, correlationId, batch: buildBatch([{ value: Buffer.from(`${index}-a`) }, { value: Buffer.from(`${index}-b`) }]) });
        sent.push({ correlationId, partition });
        call.write(request);
      }
      call.end();
      await finished;

      expect(responses).toHaveLength(count);
      const byId = new Map(responses.map((response) => [response.correlationId.toString(), response]));
      expect(byId.size).toBe(count);
      expect(byId.get(Long.MAX_UNSIGNED_VALUE.toString())).toBeDefined(); // uint64 echoed exactly
      const nextOffset = [0, 0, 0, 0];
      const positions = new Map(responses.map((response, position) => [response.correlationId.toString(), position]));
      const lastPosition = [-1, -1, -1, -1];
      for (const [index, { correlationId, partition }] of sent.entries()) {
        const response = byId.get(correlationId.toString());
        expect(response, `response to correlation id ${correlationId.toString()}`).toBeDefined();
        const code = failing.get(index + 1);
        if (code !== undefined) {
          expect(response!.error?.code).toBe(code);
          expect(response!.error?.strataError).toBe(status[code]); // NOT_FOUND, INVALID_ARGUMENT: Strata's code is the status's name
          expect(response!.error?.message).not.toBe('');
          expect(response!.batches).toEqual([]);
          continue;
        }
        expect(response!.error ?? null).toBeNull();
        // Offsets follow request order within the partition...
        expect(response!.batches.map((b) => [b.partition, b.baseOffset.toNumber(), b.lastOffset.toNumber()])).toEqual([[partition, nextOffset[partition]!, nextOffset[partition]! + 1]]);
        nextOffset[partition]! += 2;
        // ...and so do the responses.
        const position = positions.get(correlationId.toString())!;
        expect(position).toBeGreaterThan(lastPosition[partition]!);
        lastPosition[partition] = position;
      }
      for (let partition = 0; partition < 4; partition++) {
        const values = (await fetchAll(topic, partition)).map((record) => text(record.value));
        const expectedValues = sent.flatMap((item, index) => (item.partition === partition && !failing.has(index + 1) ? [`${index + 1}-a`, `${index + 1}-b`] : []));
        expect(values).toEqual(expectedValues);
      }
    });
  });

  describe('fetch', () => {
    // Three batches: offsets 0-9, 10-14 and 15.
    const topic = 'fetch-shapes';
    beforeAll(async () => {
      await createTopic(topic, 1);
      const sizes = [10, 5, 1];
      let next = 0;
      for (const size of sizes) {
        const records = Array.from({ length: size }, (_, index) => ({ key: Buffer.from(`k${next + index}`), value: Buffer.from(`v${next + index}`), timestamp: 1_700_000_000_000 + next + index }));
        await produce({ topic, partition: 0, batch: buildBatch(records) });
        next += size;
      }
    });

    it('decoded and raw fetches carry the same records, with next_offset and high_watermark', async () => {
      const decoded = await fetch({ topic, partition: 0, offset: long(0) });
      const raw = await fetch({ topic, partition: 0, offset: long(0), raw: true });
      expect(decoded.records.map((record) => record.offset.toNumber())).toEqual([...Array(16).keys()]);
      expect(decoded.batches.length).toBe(0);
      expect(raw.records).toEqual([]);
      const rawRecords = decodeBatches(Buffer.from(raw.batches));
      expect(rawRecords.map((record) => [record.offset, text(record.key), text(record.value), record.timestamp])).toEqual(
        decoded.records.map((record) => [record.offset.toNumber(), text(record.key), text(record.value), record.timestamp.toNumber()]),
      );
      for (const response of [decoded, raw]) {
        expect(response.nextOffset.toNumber()).toBe(16);
        expect(response.highWatermark.toNumber()).toBe(16);
        expect(response.logStartOffset.toNumber()).toBe(0);
      }
    });

    it('a decoded fetch from the middle of a batch starts exactly at that offset; a raw one returns the whole batch', async () => {
      const decoded = await fetch({ topic, partition: 0, offset: long(4) });
      expect(decoded.records.map((record) => record.offset.toNumber())).toEqual([...Array(12).keys()].map((index) => index + 4));
      expect(text(decoded.records[0]!.value)).toBe('v4');
      expect(decoded.nextOffset.toNumber()).toBe(16);
      const raw = await fetch({ topic, partition: 0, offset: long(4), raw: true });
      const rawOffsets = decodeBatches(Buffer.from(raw.batches)).map((record) => record.offset);
      expect(rawOffsets[0]).toBe(0); // the first batch starts before the requested offset
      expect(rawOffsets).toEqual([...Array(16).keys()]);
      expect(raw.nextOffset.toNumber()).toBe(16);
    });

    it('max_bytes smaller than a batch still returns one whole batch, and next_offset follows it', async () => {
      const decoded = await fetch({ topic, partition: 0, offset: long(12), maxBytes: 1 });
      expect(decoded.records.map((record) => record.offset.toNumber())).toEqual([12, 13, 14]);
      expect(decoded.nextOffset.toNumber()).toBe(15);
      expect(decoded.highWatermark.toNumber()).toBe(16);
      const raw = await fetch({ topic, partition: 0, offset: long(4), maxBytes: 1, raw: true });
      expect(decodeBatches(Buffer.from(raw.batches)).map((record) => record.offset)).toEqual([...Array(10).keys()]);
      expect(raw.nextOffset.toNumber()).toBe(10);
    });

    it('decoded fetch and subscribe count max_bytes in inflated bytes: the records of gzip batches past it wait for the next read', async () => {
      // Three gzip batches of four 512 KiB values: a few KiB stored, 2 MiB each inflated. The log
      // reads all three within 1 MiB of stored bytes; the answers carry two records at a time
      // (the second passes 1 MiB), not a batch of 2 MiB.
      const gzipTopic = 'fetch-gzip-max-bytes';
      await createTopic(gzipTopic, 1);
      const value = Buffer.alloc(512 * 1024, 'z');
      for (let batch = 0; batch < 3; batch++) {
        await produce({ topic: gzipTopic, partition: 0, batch: buildBatch(Array.from({ length: 4 }, () => ({ value })), { compression: 'gzip' }) });
      }
      const maxBytes = 1024 * 1024;
      let offset = 0;
      for (const next of [2, 4, 6, 8, 10, 12]) {
        const response = await fetch({ topic: gzipTopic, partition: 0, offset: long(offset), maxBytes });
        expect(response.records.map((record) => record.offset.toNumber())).toEqual([offset, offset + 1]);
        expect(response.nextOffset.toNumber()).toBe(next);
        offset = next;
      }
      const subscription = new Subscription({ topic: gzipTopic, partitions: [0], start: v1.StartPosition.create({ earliest: true }), maxBytes });
      try {
        await subscription.until(() => subscription.records().length >= 12, 'twelve records');
        expect(subscription.messages.map((message) => [message.records.length, message.nextOffset.toNumber()])).toEqual([[2, 2], [2, 4], [2, 6], [2, 8], [2, 10], [2, 12]]);
      } finally {
        await subscription.cancel();
      }
    });

    it('at the end of the log answers empty with next_offset unchanged; past it, OUT_OF_RANGE naming the range', async () => {
      const atEnd = await fetch({ topic, partition: 0, offset: long(16) });
      expect(atEnd.records).toEqual([]);
      expect(atEnd.nextOffset.toNumber()).toBe(16);
      expect(atEnd.highWatermark.toNumber()).toBe(16);
      const beyond = await grpcError(fetch({ topic, partition: 0, offset: long(17) }));
      expect(beyond.code).toBe(status.OUT_OF_RANGE);
      expect(beyond.details).toContain('0 to 16');
    });

    it('NOT_FOUND for an unknown topic or partition', async () => {
      expect((await grpcError(fetch({ topic: 'no-such-topic', partition: 0, offset: long(0) }))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(fetch({ topic, partition: 1, offset: long(0) }))).code).toBe(status.NOT_FOUND);
    });
  });

  describe('long poll', () => {
    it('an idle fetch returns empty at max_wait_ms, not before', async () => {
      await createTopic('poll-idle', 1);
      await produce({ topic: 'poll-idle', partition: 0, records: [wireRecord({ value: 'old' })] });
      const started = Date.now();
      const response = await fetch({ topic: 'poll-idle', partition: 0, offset: long(1), maxWaitMs: 300 });
      const elapsed = Date.now() - started;
      expect(response.records).toEqual([]);
      expect(response.nextOffset.toNumber()).toBe(1);
      expect(elapsed).toBeGreaterThanOrEqual(250);
    });

    it('a waiting fetch returns as soon as data is produced, well before its deadline', async () => {
      await createTopic('poll-wake', 1);
      const parked = nextWaitOn(partitionLog('poll-wake', 0));
      const started = Date.now();
      const pending = fetch({ topic: 'poll-wake', partition: 0, offset: long(0), maxWaitMs: 20_000 }, 30_000);
      await parked; // the fetch found nothing and is waiting
      await produce({ topic: 'poll-wake', partition: 0, records: [wireRecord({ value: 'wake up' })] });
      const response = await pending;
      expect(response.records.map((record) => text(record.value))).toEqual(['wake up']);
      expect(response.nextOffset.toNumber()).toBe(1);
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    it('min_bytes makes a fetch wait for more data, and it returns what there is at max_wait_ms', async () => {
      await createTopic('poll-min-bytes', 1);
      await produce({ topic: 'poll-min-bytes', partition: 0, records: [wireRecord({ value: 'small' })] });
      const started = Date.now();
      const response = await fetch({ topic: 'poll-min-bytes', partition: 0, offset: long(0), maxWaitMs: 300, minBytes: 100_000 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(response.records.map((record) => text(record.value))).toEqual(['small']);
    });
  });

  describe('ListOffsets', () => {
    it('answers earliest, latest and the first offset at or after a timestamp', async () => {
      const topic = 'list-offsets';
      await createTopic(topic, 1);
      const empty = await listOffsets(topic, 0, { earliest: true });
      expect([empty.offset.toNumber(), empty.logStartOffset.toNumber(), empty.highWatermark.toNumber()]).toEqual([0, 0, 0]);
      await produce({ topic, partition: 0, records: [1000, 2000, 3000, 4000].map((timestamp) => wireRecord({ value: `t${timestamp}`, timestamp })) });
      await produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('t5000'), timestamp: 5000 }, { value: Buffer.from('t6000'), timestamp: 6000 }]) });
      const offsetAt = async (position: strata.v1.StartPosition.$Properties | undefined): Promise<number> => (await listOffsets(topic, 0, position)).offset.toNumber();
      expect(await offsetAt({ earliest: true })).toBe(0);
      expect(await offsetAt({ latest: true })).toBe(6);
      expect(await offsetAt(undefined)).toBe(6); // absent position = latest
      expect(await offsetAt({ timestamp: long(0) })).toBe(0);
      expect(await offsetAt({ timestamp: long(1000) })).toBe(0);
      expect(await offsetAt({ timestamp: long(2500) })).toBe(2);
      expect(await offsetAt({ timestamp: long(4000) })).toBe(3);
      expect(await offsetAt({ timestamp: long(4001) })).toBe(4);
      expect(await offsetAt({ timestamp: long(6000) })).toBe(5);
      expect(await offsetAt({ timestamp: long(6001) })).toBe(6); // none that recent: the end
      const response = await listOffsets(topic, 0, { timestamp: long(2500) });
      expect(response.logStartOffset.toNumber()).toBe(0);
      expect(response.highWatermark.toNumber()).toBe(6);
    });

    it('NOT_FOUND for an unknown topic', async () => {
      expect((await grpcError(listOffsets('no-such-topic', 0, { latest: true }))).code).toBe(status.NOT_FOUND);
    });
  });

  describe('Subscribe', () => {
    it('from earliest on an empty partition receives records produced afterwards', async () => {
      const topic = 'sub-earliest';
      await createTopic(topic, 1);
      const subscription = new Subscription({ topic, partitions: [0], start: v1.StartPosition.create({ earliest: true }) });
      try {
        await produce({ topic, partition: 0, records: [wireRecord({ value: 'a' }), wireRecord({ value: 'b' })] });
        await produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('c') }]) });
        await subscription.until(() => subscription.records().length >= 3, 'three records');
        expect(subscription.records().map((record) => [record.offset, record.value])).toEqual([[0, 'a'], [1, 'b'], [2, 'c']]);
        const last = subscription.messages.at(-1)!;
        expect(last.nextOffset.toNumber()).toBe(3);
        expect(last.highWatermark.toNumber()).toBe(3);
      } finally {
        await subscription.cancel();
      }
    });

    it('delivers a record made visible between an empty read and the wait after it without waiting for another', async () => {
      const topic = 'sub-advance-before-wait';
      await createTopic(topic, 1);
      const log = partitionLog(topic, 0);
      const read = log.read;
      let reads = 0;
      // The first read finds nothing; before the subscription has its answer, a record is
      // produced and made visible: the high watermark moves before the wait begins. Missed, the
      // record would wait for the idle check (30 s), past the call's 15 s deadline.
      log.read = async (offset: number, maxBytes: number) => {
        const result = await read.call(log, offset, maxBytes);
        if (++reads === 1) await produce({ topic, partition: 0, records: [wireRecord({ value: 'between' })] });
        return result;
      };
      const subscription = new Subscription({ topic, start: v1.StartPosition.create({ earliest: true }) });
      try {
        await subscription.until(() => subscription.records().length === 1, 'the record');
        expect(subscription.records().map((record) => record.value)).toEqual(['between']);
      } finally {
        Reflect.deleteProperty(log, 'read');
        await subscription.cancel();
      }
    });

    it('a partition that fails ends the call, and the other partitions stop following before the error is sent', async () => {
      const topic = 'sub-one-fails';
      await createTopic(topic, 2);
      const failing = partitionLog(topic, 0);
      const healthy = partitionLog(topic, 1);
      let waiting = 0; // the healthy partition's waits for its high watermark under way
      const onHighWatermark = healthy.onHighWatermark;
      healthy.onHighWatermark = (listener: () => void) => {
        waiting++;
        const unsubscribe = onHighWatermark.call(healthy, listener);
        return () => {
          waiting--;
          return unsubscribe();
        };
      };
      const parked = Promise.all([nextWaitOn(failing), nextWaitOn(healthy)]);
      const subscription = new Subscription({ topic, start: v1.StartPosition.create({ earliest: true }) });
      try {
        await parked;
        failing.read = () => Promise.reject(new StrataError(ErrorCode.PARTITION_FENCED, `test: partition ${topic}-0 is fenced`));
        await produce({ topic, partition: 0, records: [wireRecord({ value: 'wakes the failing partition' })] });
        await subscription.until(() => subscription.error !== null, 'the error');
        expect(subscription.error?.code).toBe(status.FAILED_PRECONDITION);
        expect(waiting).toBe(0);
      } finally {
        Reflect.deleteProperty(failing, 'read');
        Reflect.deleteProperty(healthy, 'onHighWatermark');
        await subscription.cancel();
      }
    });

    it('from latest skips what was there and receives what is produced after it started', async () => {
      const topic = 'sub-latest';
      await createTopic(topic, 1);
      await produce({ topic, partition: 0, records: [wireRecord({ value: 'old-0' }), wireRecord({ value: 'old-1' })] });
      const parked = nextWaitOn(partitionLog(topic, 0));
      const subscription = new Subscription({ topic, partitions: [0], start: v1.StartPosition.create({ latest: true }) });
      try {
        await parked; // the subscription has resolved its start and waits for new records
        await produce({ topic, partition: 0, records: [wireRecord({ value: 'new-2' })] });
        await produce({ topic, partition: 0, records: [wireRecord({ value: 'new-3' })] });
        await subscription.until(() => subscription.records().length >= 2, 'two new records');
        expect(subscription.records().map((record) => [record.offset, record.value])).toEqual([[2, 'new-2'], [3, 'new-3']]);
      } finally {
        await subscription.cancel();
      }
    });

    it('from an offset delivers from exactly that offset (mid-batch), then new records', async () => {
      const topic = 'sub-offset';
      await createTopic(topic, 1);
      await produce({ topic, partition: 0, records: [0, 1, 2, 3, 4].map((index) => wireRecord({ value: `old-${index}` })) });
      const subscription = new Subscription({ topic, partitions: [0], start: v1.StartPosition.create({ offset: long(2) }) });
      try {
        await produce({ topic, partition: 0, records: [wireRecord({ value: 'new-5' })] });
        await subscription.until(() => subscription.records().length >= 4, 'four records');
        expect(subscription.records().map((record) => [record.offset, record.value])).toEqual([[2, 'old-2'], [3, 'old-3'], [4, 'old-4'], [5, 'new-5']]);
      } finally {
        await subscription.cancel();
      }
    });

    it('from a timestamp starts at the first record at or after it, then follows', async () => {
      const topic = 'sub-timestamp';
      await createTopic(topic, 1);
      await produce({ topic, partition: 0, records: [1000, 2000, 3000, 4000].map((timestamp) => wireRecord({ value: `t${timestamp}`, timestamp })) });
      const subscription = new Subscription({ topic, partitions: [0], start: v1.StartPosition.create({ timestamp: long(2500) }) });
      try {
        await produce({ topic, partition: 0, records: [wireRecord({ value: 'fresh' })] });
        await subscription.until(() => subscription.records().length >= 3, 'three records');
        expect(subscription.records().map((record) => [record.offset, record.value])).toEqual([[2, 't3000'], [3, 't4000'], [4, 'fresh']]);
      } finally {
        await subscription.cancel();
      }
    });

    it('follows several partitions (all of them when none are named), each in order', async () => {
      const topic = 'sub-partitions';
      await createTopic(topic, 3);
      const all = new Subscription({ topic, start: v1.StartPosition.create({ earliest: true }) });
      const some = new Subscription({ topic, partitions: [2, 0], start: v1.StartPosition.create({ earliest: true }) });
      try {
        for (let round = 0; round < 3; round++) {
          for (let partition = 0; partition < 3; partition++) {
            await produce({ topic, partition, records: [wireRecord({ value: `p${partition}-${round}` })] });
          }
        }
        await all.until(() => all.records().length >= 9, 'nine records');
        await some.until(() => some.records().length >= 6, 'six records');
        for (let partition = 0; partition < 3; partition++) {
          const expected = [0, 1, 2].map((round) => [round, `p${partition}-${round}`]);
          expect(all.records(partition).map((record) => [record.offset, record.value])).toEqual(expected);
          expect(some.records(partition).map((record) => [record.offset, record.value])).toEqual(partition === 1 ? [] : expected);
        }
        expect(new Set(some.messages.map((message) => message.partition))).toEqual(new Set([0, 2]));
      } finally {
        await all.cancel();
        await some.cancel();
      }
    });

    it('delivers raw batches when asked', async () => {
      const topic = 'sub-raw';
      await createTopic(topic, 1);
      const subscription = new Subscription({ topic, partitions: [0], start: v1.StartPosition.create({ earliest: true }), raw: true });
      try {
        await produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('x') }, { value: Buffer.from('y') }]) });
        await subscription.until(() => subscription.messages.length >= 1, 'one message');
        const message = subscription.messages[0]!;
        expect(message.records).toEqual([]);
        expect(decodeBatches(Buffer.from(message.batches)).map((record) => text(record.value))).toEqual(['x', 'y']);
        expect(message.nextOffset.toNumber()).toBe(2);
      } finally {
        await subscription.cancel();
      }
    });

    it('fails with NOT_FOUND for an unknown topic and OUT_OF_RANGE for an offset past the end', async () => {
      await createTopic('sub-errors', 1);
      const unknown = new Subscription({ topic: 'no-such-topic', start: v1.StartPosition.create({ earliest: true }) });
      await expect(unknown.until(() => false, 'an error')).rejects.toThrow(/failed/);
      expect(unknown.error!.code).toBe(status.NOT_FOUND);
      const beyond = new Subscription({ topic: 'sub-errors', start: v1.StartPosition.create({ offset: long(5) }) });
      await expect(beyond.until(() => false, 'an error')).rejects.toThrow(/failed/);
      expect(beyond.error!.code).toBe(status.OUT_OF_RANGE);
    });
  });

  describe('partitioning without an explicit partition', () => {
    it('10,000 records over 100 keys on 12 partitions: each key in one partition, in send order, at (murmur2(key) & 0x7fffffff) % 12', async () => {
      const topic = 'keyed';
      const partitions = 12;
      await createTopic(topic, partitions);
      let seed = 12345;
      const random = (): number => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed / 4294967296;
      };
      const sentKeys: string[] = [];
      for (let request = 0; request < 100; request++) {
        const records: strata.v1.Record[] = [];
        for (let index = 0; index < 100; index++) {
          const sequence = request * 100 + index;
          const key = `key-${Math.floor(random() * 100)}`;
          sentKeys.push(key);
          records.push(wireRecord({ key, value: String(sequence) }));
        }
        const produced = await produce({ topic, acks: request % 2 === 0 ? v1.Acks.ACKS_ALL : v1.Acks.ACKS_LEADER, records });
        // One batch per partition touched, together covering the request's 100 records.
        expect(produced.batches.reduce((sum, b) => sum + b.lastOffset.toNumber() - b.baseOffset.toNumber() + 1, 0)).toBe(100);
        expect(new Set(produced.batches.map((b) => b.partition)).size).toBe(produced.batches.length);
      }
      const expectedPartition = (key: string): number => (murmur2(Buffer.from(key)) & 0x7fffffff) % partitions;
      const seen = new Map<string, { partition: number; sequences: number[] }>();
      let total = 0;
      const description = await shared.client.call<strata.v1.TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name: topic }));
      for (let partition = 0; partition < partitions; partition++) {
        // The ACKS_LEADER requests may not be durable yet: long-poll until the end of the log.
        const end = description.partitions[partition]!.logEndOffset.toNumber();
        const records: WireRecord[] = [];
        const deadline = Date.now() + 10_000;
        while (records.length < end && Date.now() < deadline) {
          const response = await fetch({ topic, partition, offset: long(records.length), maxWaitMs: 1000 });
          records.push(...response.records);
        }
        total += records.length;
        for (const [position, record] of records.entries()) {
          expect(record.offset.toNumber()).toBe(position);
          const key = text(record.key)!;
          expect(expectedPartition(key), `key ${key}`).toBe(partition);
          const entry = seen.get(key) ?? { partition, sequences: [] };
          expect(entry.partition, `key ${key} in two partitions`).toBe(partition);
          entry.sequences.push(Number(text(record.value)));
          seen.set(key, entry);
        }
      }
      expect(total).toBe(10_000);
      expect(seen.size).toBe(new Set(sentKeys).size);
      for (const [key, { sequences }] of seen) {
        const sentOrder = sentKeys.flatMap((sent, sequence) => (sent === key ? [sequence] : []));
        expect(sequences, `order of key ${key}`).toEqual(sentOrder);
      }
    });

    it('puts all null-key records of one request in one partition, rotating across requests', async () => {
      const topic = 'null-keys';
      const partitions = 12;
      await createTopic(topic, partitions);
      const used: number[] = [];
      for (let request = 0; request < partitions; request++) {
        const produced = await produce({ topic, records: Array.from({ length: 10 }, (_, index) => wireRecord({ value: `${request}-${index}` })) });
        expect(produced.batches).toHaveLength(1);
        const batch = produced.batches[0]!;
        expect(batch.lastOffset.toNumber() - batch.baseOffset.toNumber()).toBe(9);
        used.push(batch.partition);
        const records = await fetch({ topic, partition: batch.partition, offset: batch.baseOffset });
        expect(records.records.slice(0, 10).map((record) => text(record.value))).toEqual(Array.from({ length: 10 }, (_, index) => `${request}-${index}`));
      }
      expect(new Set(used).size).toBe(partitions); // consecutive requests rotate over all partitions
    });

    it('keeps a request\'s null-key records together even when mixed with keyed ones', async () => {
      const topic = 'mixed-keys';
      await createTopic(topic, 6);
      const keys = ['alpha', 'beta', 'gamma', 'delta'];
      const records = Array.from({ length: 40 }, (_, index) => wireRecord({ key: index % 3 === 0 ? null : keys[index % keys.length]!, value: String(index) }));
      await produce({ topic, records });
      const nullPartitions = new Set<number>();
      let count = 0;
      for (let partition = 0; partition < 6; partition++) {
        for (const record of await fetchAll(topic, partition)) {
          count++;
          if (record.key === null) nullPartitions.add(partition);
          else expect(partition).toBe((murmur2(Buffer.from(record.key)) & 0x7fffffff) % 6);
        }
      }
      expect(count).toBe(40);
      expect(nullPartitions.size).toBe(1);
    });

    it('places a raw batch by the key of its first record', async () => {
      const topic = 'raw-keyed';
      await createTopic(topic, 7);
      for (const key of ['foobar', '21', 'abc', 'a-little-bit-long-string']) {
        const produced = await produce({ topic, batch: buildBatch([{ key: Buffer.from(key), value: Buffer.from('first') }, { key: Buffer.from('other'), value: Buffer.from('second') }]) });
        expect(produced.batches.map((b) => b.partition)).toEqual([(murmur2(Buffer.from(key)) & 0x7fffffff) % 7]);
      }
    });
  });

  describe('idempotent producers', () => {
    async function initProducer(): Promise<{ producerId: number; producerEpoch: number }> {
      const response = await shared.client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create());
      return { producerId: response.producerId.toNumber(), producerEpoch: response.producerEpoch };
    }

    it('InitProducer hands out distinct producer ids', async () => {
      const first = await initProducer();
      const second = await initProducer();
      expect(first.producerId).toBeGreaterThanOrEqual(0);
      expect(second.producerId).not.toBe(first.producerId);
      expect(first.producerEpoch).toBe(0);
    });

    it('a raw batch sent twice is written once; the retry gets the same offsets and duplicate=true', async () => {
      const topic = 'idempotent-raw';
      await createTopic(topic, 1);
      const producer = await initProducer();
      await produce({ topic, partition: 0, records: [wireRecord({ value: 'someone else' })] });
      const batch = buildBatch([{ value: Buffer.from('one') }, { value: Buffer.from('two') }, { value: Buffer.from('three') }], { ...producer, baseSequence: 0 });
      const first = await produce({ topic, partition: 0, batch });
      const second = await produce({ topic, partition: 0, batch });
      expect(first.batches.map((b) => [b.baseOffset.toNumber(), b.lastOffset.toNumber(), b.duplicate])).toEqual([[1, 3, false]]);
      expect(second.batches.map((b) => [b.baseOffset.toNumber(), b.lastOffset.toNumber(), b.duplicate])).toEqual([[1, 3, true]]);
      // The next sequence goes on; a retry of an older (not the latest) batch is still known.
      const next = buildBatch([{ value: Buffer.from('four') }], { ...producer, baseSequence: 3 });
      expect((await produce({ topic, partition: 0, batch: next })).batches[0]!.baseOffset.toNumber()).toBe(4);
      const retryOld = await produce({ topic, partition: 0, batch });
      expect(retryOld.batches.map((b) => [b.baseOffset.toNumber(), b.lastOffset.toNumber(), b.duplicate])).toEqual([[1, 3, true]]);
      expect((await fetchAll(topic, 0)).map((record) => text(record.value))).toEqual(['someone else', 'one', 'two', 'three', 'four']);
    });

    it('a sequence gap is refused with FAILED_PRECONDITION naming the expected and the received sequence', async () => {
      const topic = 'idempotent-gap';
      await createTopic(topic, 1);
      const producer = await initProducer();
      await produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('a') }, { value: Buffer.from('b') }], { ...producer, baseSequence: 0 }) });
      const error = await grpcError(produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('c') }], { ...producer, baseSequence: 5 }) }));
      expect(error.code).toBe(status.FAILED_PRECONDITION);
      expect(error.details).toMatch(/out-of-order sequence/);
      expect(error.details).toMatch(/expected 2, got 5/);
      // Nothing was written; the right sequence is still accepted.
      const ok = await produce({ topic, partition: 0, batch: buildBatch([{ value: Buffer.from('c') }], { ...producer, baseSequence: 2 }) });
      expect(ok.batches[0]!.baseOffset.toNumber()).toBe(2);
      expect((await fetchAll(topic, 0)).map((record) => text(record.value))).toEqual(['a', 'b', 'c']);
    });

    it('the records path: producer fields make retries duplicates, and require an explicit partition', async () => {
      const topic = 'idempotent-records';
      await createTopic(topic, 2);
      const { producerId, producerEpoch } = await initProducer();
      const request = { topic, partition: 1, producerId: long(producerId), producerEpoch, baseSequence: 0, records: [wireRecord({ value: 'x' }), wireRecord({ value: 'y' })] };
      const first = await produce(request);
      const retry = await produce(request);
      expect(first.batches.map((b) => [b.partition, b.baseOffset.toNumber(), b.lastOffset.toNumber(), b.duplicate])).toEqual([[1, 0, 1, false]]);
      expect(retry.batches.map((b) => [b.partition, b.baseOffset.toNumber(), b.lastOffset.toNumber(), b.duplicate])).toEqual([[1, 0, 1, true]]);
      expect((await fetchAll(topic, 1)).map((record) => text(record.value))).toEqual(['x', 'y']);
      const gap = await grpcError(produce({ ...request, baseSequence: 7 }));
      expect(gap.code).toBe(status.FAILED_PRECONDITION);
      expect(gap.details).toMatch(/out-of-order sequence.*expected 2, got 7/);
      const { partition: _, ...withoutPartition } = request;
      const noPartition = await grpcError(produce({ ...withoutPartition, baseSequence: 2 }));
      expect(noPartition.code).toBe(status.INVALID_ARGUMENT);
      expect(noPartition.details).toMatch(/partition/);
      // producer_id -1 means not idempotent: the same records are simply appended again.
      const plainAgain = await produce({ ...request, producerId: long(-1) });
      expect(plainAgain.batches.map((b) => [b.baseOffset.toNumber(), b.duplicate])).toEqual([[2, false]]);
    });
  });
});
