// Goal: show that the server's own reading of ProduceRequest records (produce-request-decoder.ts,
// wire-records.ts) gives exactly the batch that decoding them with protobufjs and encoding the
// objects gave, follows protobuf's field rules, and refuses malformed records with
// INVALID_ARGUMENT naming the record; method: random records encoded by protobufjs compared
// byte for byte with buildBatch, and hand-written wire bytes for each rule and each fault.
import { status } from '@grpc/grpc-js';
import Long from 'long';
import protobuf from 'protobufjs/minimal.js';
import { describe, expect, it } from 'vitest';
import { strata } from '../../src/generated/strata.js';
import { decodeProduceRequest } from '../../src/server/produce-request-decoder.js';
import { toGrpcFailure } from '../../src/server/status.js';
import { parseWireRecords } from '../../src/server/wire-records.js';
import { type RecordInput, decodeRecords } from '../../src/storage/record-batch.js';
import { buildBatch, buildBatchFromRanges } from '../../src/storage/record-batch-builder.js';
import type { RecordRanges } from '../../src/storage/record-ranges.js';
import { streamFor, testSeed } from '../helpers/seeded-random.js';

const v1 = strata.v1;
const T0 = 1_700_000_000_000;
const seed = testSeed('wire-records');

function parse(bytes: Uint8Array): RecordRanges {
  const incoming = decodeProduceRequest(Buffer.from(bytes));
  return parseWireRecords(incoming.source, incoming.recordRanges);
}

function records(bytes: Uint8Array): RecordInput[] {
  const batch = buildBatchFromRanges(parse(bytes), null, { timestamp: T0 });
  return decodeRecords(batch, 0).map((record) => ({ key: record.key, value: record.value, headers: record.headers, timestamp: record.timestamp }));
}

/** A ProduceRequest's bytes: `topic` then each record message as written by `write`. */
function request(...writeRecords: ((writer: protobuf.Writer) => void)[]): Uint8Array {
  const writer = protobuf.Writer.create();
  writer.uint32((1 << 3) | 2).string('t');
  for (const write of writeRecords) {
    writer.uint32((3 << 3) | 2).fork();
    write(writer);
    writer.ldelim();
  }
  return writer.finish();
}

/** A ProduceRequest whose one record message is `recordBytes`, as they are. */
function rawRequest(recordBytes: number[]): Uint8Array {
  return protobuf.Writer.create().uint32((3 << 3) | 2).bytes(Buffer.from(recordBytes)).finish();
}

/**
 * What the broker made of a request's records before it read them itself: protobufjs's
 * objects, checked and converted as the server did, encoded by buildBatch. 'refused' when any
 * step threw; 'none' for a request without records.
 */
function protobufjsBatch(bytes: Uint8Array): Buffer | 'refused' | 'none' {
  let inputs: RecordInput[];
  try {
    inputs = v1.ProduceRequest.decode(bytes).records.map((record) => {
      const timestamp = Long.fromValue(record.timestamp ?? 0);
      if (timestamp.isNegative() || timestamp.greaterThan(Number.MAX_SAFE_INTEGER)) throw new RangeError('timestamp');
      const asBuffer = (value: Uint8Array | null | undefined): Buffer | null => (value == null ? null : Buffer.from(value));
      return {
        key: asBuffer(record.key),
        value: asBuffer(record.value),
        headers: (record.headers ?? []).map((header) => ({ key: header.key ?? '', value: asBuffer(header.value) })),
        ...(timestamp.isZero() ? {} : { timestamp: timestamp.toNumber() }),
      };
    });
  } catch {
    return 'refused';
  }
  return inputs.length === 0 ? 'none' : buildBatch(inputs, { timestamp: T0 });
}

/** The same through the server's decoder and parser. */
function wireBatch(bytes: Uint8Array): Buffer | 'refused' | 'none' {
  try {
    const incoming = decodeProduceRequest(Buffer.from(bytes));
    if (incoming.recordRanges.length === 0) return 'none';
    return buildBatchFromRanges(parseWireRecords(incoming.source, incoming.recordRanges), null, { timestamp: T0 });
  } catch {
    return 'refused';
  }
}

const bytesField = (field: number, value: string) => (writer: protobuf.Writer) => writer.uint32((field << 3) | 2).bytes(Buffer.from(value));

function failure(bytes: Uint8Array): { code: status; message: string } {
  try {
    parse(bytes);
  } catch (error) {
    const { code, details } = toGrpcFailure(error);
    return { code, message: details };
  }
  throw new Error('expected the records to be refused');
}

describe('records read from the wire', () => {
  it('make the same batch as protobufjs objects encoded by buildBatch (random records)', () => {
    const random = streamFor(seed, 'same batch');
    const bytesOf = (length: number): Buffer => Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));
    const maybe = (length: number): Buffer | null => (random() < 0.2 ? null : bytesOf(length));
    for (let round = 0; round < 50; round++) {
      const inputs: RecordInput[] = Array.from({ length: 1 + Math.floor(random() * 40) }, () => ({
        key: maybe(Math.floor(random() * 20)),
        value: maybe(Math.floor(random() * 300)),
        headers: Array.from({ length: random() < 0.7 ? 0 : Math.floor(random() * 4) }, (_, index) => ({ key: random() < 0.5 ? `h${index}-ü€` : '', value: maybe(Math.floor(random() * 10)) })),
        ...(random() < 0.5 ? { timestamp: T0 + Math.floor(random() * 1_000_000) } : {}),
      }));
      const message = v1.ProduceRequest.create({
        topic: 'topic',
        partition: 3,
        acks: v1.Acks.ACKS_LEADER,
        correlationId: Long.fromNumber(77, true),
        producerId: Long.fromNumber(5),
        producerEpoch: 2,
        baseSequence: 9,
        records: inputs.map((input) =>
          v1.Record.create({
            ...(input.key === null ? {} : { key: input.key }),
            ...(input.value === null ? {} : { value: input.value }),
            headers: (input.headers ?? []).map((header) => v1.Header.create({ key: header.key, ...(header.value === null ? {} : { value: header.value }) })),
            timestamp: Long.fromNumber(input.timestamp ?? 0),
          }),
        ),
      });
      const incoming = decodeProduceRequest(Buffer.from(v1.ProduceRequest.encode(message).finish()));
      const other = incoming.message;
      expect([other.topic, other.partition, other.acks, Long.fromValue(other.correlationId).toNumber(), Long.fromValue(other.producerId!).toNumber(), other.producerEpoch, other.baseSequence]).toEqual(['topic', 3, v1.Acks.ACKS_LEADER, 77, 5, 2, 9]);
      expect(other.records).toEqual([]);
      const ranges = parseWireRecords(incoming.source, incoming.recordRanges);
      expect(ranges.count).toBe(inputs.length);
      const options = { timestamp: T0, producerId: 5, producerEpoch: 2, baseSequence: 9 };
      expect(buildBatchFromRanges(ranges, null, options).equals(buildBatch(inputs, options)), `seed ${seed} round ${round}`).toBe(true);
    }
  });

  it('accept, refuse and read what protobufjs did, for random and randomly damaged requests', () => {
    const random = streamFor(seed, 'differential');
    const below = (bound: number): number => Math.floor(random() * bound);
    const bytesOf = (length: number): Buffer => Buffer.from(Array.from({ length }, () => below(256)));
    const texts = ['', 'a', 'héllo', '日本', '😀x', 'k'.repeat(300)];
    const writeRecord = (writer: protobuf.Writer): void => {
      for (let field = below(8); field > 0; field--) {
        switch (below(8)) {
          case 0:
            writer.uint32((1 << 3) | 2).bytes(bytesOf(below(3) === 0 ? 0 : below(200)));
            break;
          case 1:
            writer.uint32((2 << 3) | 2).bytes(bytesOf(below(400)));
            break;
          case 2: {
            const header = protobuf.Writer.create();
            if (below(2) === 1) header.uint32((1 << 3) | 2).string(texts[below(texts.length)]!);
            if (below(2) === 1) header.uint32((2 << 3) | 2).bytes(bytesOf(below(50)));
            if (below(4) === 0) header.uint32((9 << 3) | 0).uint64(below(1e9));
            writer.uint32((3 << 3) | 2).bytes(header.finish());
            break;
          }
          case 3:
            writer.uint32((4 << 3) | 0).int64([0, 1, T0 + 123, Number.MAX_SAFE_INTEGER, below(1e13), -below(1e6)][below(6)]!);
            break;
          case 4:
            writer.uint32((5 << 3) | 0).int64(below(1e6)); // offset
            break;
          case 5:
            writer.uint32(((6 + below(100)) << 3) | [0, 1, 2, 5][below(4)]!).fixed64(0); // unknown, maybe misframed
            break;
          case 6:
            writer.uint32(((1 + below(4)) << 3) | [0, 1, 5][below(3)]!).fixed64(below(1e6)); // a known field, another wire type
            break;
          default:
            writer.uint32((12 << 3) | 3).uint32((1 << 3) | 0).uint32(below(100)).uint32((12 << 3) | 4); // a group
        }
      }
    };
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 3_000; round++) {
      const writer = protobuf.Writer.create();
      if (below(2) === 1) writer.uint32((1 << 3) | 2).string('topic');
      for (let record = 1 + below(5); record > 0; record--) {
        const message = protobuf.Writer.create();
        writeRecord(message);
        writer.uint32((3 << 3) | 2).bytes(message.finish());
      }
      const bytes = Buffer.from(writer.finish());
      if (below(3) === 0) for (let damage = 1 + below(3); damage > 0; damage--) bytes[below(bytes.length)] = below(256);
      const expected = protobufjsBatch(bytes);
      const actual = wireBatch(bytes);
      const kind = typeof expected === 'string' ? expected : 'batch';
      outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
      const what = `seed ${seed} round ${round}: ${bytes.toString('hex')}`;
      if (Buffer.isBuffer(expected) && Buffer.isBuffer(actual)) expect(actual.equals(expected), what).toBe(true);
      else expect(actual, what).toEqual(expected);
    }
    // The rounds exercised both outcomes.
    expect(outcomes.get('batch') ?? 0).toBeGreaterThan(250);
    expect(outcomes.get('refused') ?? 0).toBeGreaterThan(100);
  });

  it('decode the other fields of the request wherever the records lie among them', () => {
    const writer = protobuf.Writer.create();
    writer.uint32((6 << 3) | 0).uint64(12345);
    writer.uint32((3 << 3) | 2).fork().uint32((2 << 3) | 2).bytes(Buffer.from('first')).ldelim();
    writer.uint32((1 << 3) | 2).string('orders');
    writer.uint32((3 << 3) | 2).fork().uint32((2 << 3) | 2).bytes(Buffer.from('second')).ldelim();
    writer.uint32((2 << 3) | 0).int32(4);
    writer.uint32((5 << 3) | 0).int32(v1.Acks.ACKS_NONE);
    const incoming = decodeProduceRequest(Buffer.from(writer.finish()));
    expect(incoming.message.topic).toBe('orders');
    expect(incoming.message.partition).toBe(4);
    expect(incoming.message.acks).toBe(v1.Acks.ACKS_NONE);
    expect(Long.fromValue(incoming.message.correlationId).toNumber()).toBe(12345);
    expect(incoming.message.records).toEqual([]);
    expect(records(writer.finish()).map((record) => record.value?.toString())).toEqual(['first', 'second']);
  });

  it('leave a request without records to protobufjs as it is', () => {
    const message = v1.ProduceRequest.create({ topic: 'raw', batch: buildBatch([{ value: Buffer.from('x') }]) });
    const incoming = decodeProduceRequest(Buffer.from(v1.ProduceRequest.encode(message).finish()));
    expect(incoming.recordRanges).toEqual([]);
    expect(Buffer.from(incoming.message.batch).equals(Buffer.from(message.batch))).toBe(true);
  });

  it('follow protobuf: any field order, the last key and value win, headers add up, offset and unknown fields are skipped', () => {
    const bytes = request((writer) => {
      writer.uint32((5 << 3) | 0).int64(99); // offset: ignored on produce
      writer.uint32((2 << 3) | 2).bytes(Buffer.from('old value'));
      writer.uint32((3 << 3) | 2).fork().uint32((2 << 3) | 2).bytes(Buffer.from('v1')).uint32((1 << 3) | 2).string('h1').ldelim();
      writer.uint32((1 << 3) | 2).bytes(Buffer.from('old key'));
      writer.uint32((9 << 3) | 0).uint64(Long.fromString('18446744073709551615', true)); // unknown varint
      writer.uint32((10 << 3) | 1).fixed64(1); // unknown fixed64
      writer.uint32((11 << 3) | 2).bytes(Buffer.from('unknown')); // unknown length-delimited
      writer.uint32((12 << 3) | 3).uint32((1 << 3) | 0).uint32(1).uint32((12 << 3) | 4); // unknown group
      writer.uint32((13 << 3) | 5).fixed32(1); // unknown fixed32
      writer.uint32((2 << 3) | 2).bytes(Buffer.from('value'));
      writer.uint32((1 << 3) | 2).bytes(Buffer.from('key'));
      writer.uint32((4 << 3) | 0).int64(T0 + 1);
      writer.uint32((3 << 3) | 2).fork().uint32((1 << 3) | 2).string('h2').uint32((7 << 3) | 0).uint32(3).ldelim();
    });
    expect(records(bytes)).toEqual([
      { key: Buffer.from('key'), value: Buffer.from('value'), timestamp: T0 + 1, headers: [{ key: 'h1', value: Buffer.from('v1') }, { key: 'h2', value: null }] },
    ]);
  });

  it('read an empty Record message as a null key and value at the default time', () => {
    expect(records(request(() => undefined))).toEqual([{ key: null, value: null, headers: [], timestamp: T0 }]);
  });

  it('skip known fields sent with another wire type, as protobufjs does', () => {
    const bytes = request((writer) => {
      writer.uint32((1 << 3) | 0).uint32(5); // key as a varint
      writer.uint32((2 << 3) | 5).fixed32(1); // value as fixed32
      writer.uint32((4 << 3) | 2).bytes(Buffer.from('x')); // timestamp as bytes
      writer.uint32((3 << 3) | 2).fork().uint32((1 << 3) | 0).uint32(1).uint32((2 << 3) | 1).fixed64(1).ldelim();
    });
    expect(records(bytes)).toEqual([{ key: null, value: null, timestamp: T0, headers: [{ key: '', value: null }] }]);
  });

  it('read a timestamp varint with bits past 64 as its int64, as protobufjs does', () => {
    const bytes = rawRequest([(4 << 3) | 0, 0x85, ...Array<number>(8).fill(0x80), 0x02]);
    expect(records(bytes).map((record) => record.timestamp)).toEqual([5]);
  });

  const faults: [string, Uint8Array, RegExp][] = [
    ['field number 0', request(bytesField(2, 'ok'), (writer) => writer.uint32(0).uint32(1)), /records\[1\] is not a valid Record message: a tag has field number 0/],
    ['a header key that is not UTF-8', request((writer) => writer.uint32((3 << 3) | 2).fork().ldelim().uint32((3 << 3) | 2).fork().uint32((1 << 3) | 2).bytes(Buffer.from([0xff, 0x41])).ldelim()), /records\[0\]\.headers\[1\]\.key is not valid UTF-8/],
    ['an end-group tag without its start', request((writer) => writer.uint32((12 << 3) | 4)), /records\[0\] is not a valid Record message: an end-group tag of field 12 has no matching start/],
    ['groups nested 101 deep', rawRequest([...Array<number>(101).fill((6 << 3) | 3), ...Array<number>(101).fill((6 << 3) | 4)]), /records\[0\] is not a valid Record message: groups are nested more than 100 deep/],
    ['a value longer than its record', request((writer) => writer.uint32((2 << 3) | 2).uint32(50).uint32(0)), /records\[0\] is not a valid Record message: a field of 50 bytes runs past the end of its message/],
    ['a record that ends inside a varint', rawRequest([(4 << 3) | 0, 0x80]), /records\[0\] is not a valid Record message: it ends inside a varint/],
    ['wire type 7', request((writer) => writer.uint32((9 << 3) | 7)), /records\[0\] is not a valid Record message: field 9 has wire type 7, which protobuf does not define/],
    ['a group closed by another group', request((writer) => writer.uint32((12 << 3) | 3).uint32((13 << 3) | 4)), /records\[0\] is not a valid Record message: an end-group tag of field 13 has no matching start/],
    ['a negative timestamp', request((writer) => writer.uint32((4 << 3) | 0).int64(-5)), /records\[0\]\.timestamp must not be negative, got -5/],
    ['a timestamp above 2^53', request((writer) => writer.uint32((4 << 3) | 0).int64(Long.fromString('9007199254740993'))), /records\[0\]\.timestamp 9007199254740993 is outside the range Strata supports/],
  ];

  it.each(faults)('refuse %s with INVALID_ARGUMENT naming the record', (_, bytes, message) => {
    const refused = failure(bytes);
    expect(refused.code).toBe(status.INVALID_ARGUMENT);
    expect(refused.message).toMatch(message);
  });

  it('refuse a varint longer than 10 bytes', () => {
    const bytes = rawRequest([(4 << 3) | 0, ...Array<number>(10).fill(0x81), 1]);
    expect(failure(bytes).message).toMatch(/records\[0\] is not a valid Record message: a varint is longer than 10 bytes/);
  });

  it('leave a records field of another wire type to protobufjs, which skips it', () => {
    const writer = protobuf.Writer.create();
    writer.uint32((3 << 3) | 0).uint32(1).uint32((1 << 3) | 2).string('t');
    const incoming = decodeProduceRequest(Buffer.from(writer.finish()));
    expect(incoming.recordRanges).toEqual([]);
    expect(incoming.message.records).toEqual([]);
    expect(incoming.message.topic).toBe('t');
  });
});
