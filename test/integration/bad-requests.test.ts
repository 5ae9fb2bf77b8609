// Goal: every kind of bad request is refused with the right gRPC status and an actionable message,
// touches nothing on disk and leaves the broker serving; method: a table of bad requests sent over
// real gRPC to an in-process broker, then a check of the data directory and a produce/fetch round
// trip, plus a broker-level disk-full test through an injected FileSystem.
import { Metadata, type ServiceError, compressionAlgorithms, credentials, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import Long from 'long';
import { pino } from 'pino';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { GroupCoordinator } from '../../src/groups/group-coordinator.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { uvarintSize, writeUvarint } from '../../src/common/protobuf-wire.js';
import { NON_PRODUCE_REQUEST_BYTES_MAX, PRODUCE_REQUEST_RECORDS_MAX } from '../../src/common/request-limits.js';
import type { strata } from '../../src/generated/strata.js';
import { logServiceDefinition } from '../../src/server/service-definitions.js';
import { BrokerMetrics } from '../../src/server/metrics.js';
import { STATUS_FOR_CODE, toGrpcFailure } from '../../src/server/status.js';
import { DEFAULT_LOG_CONFIG } from '../../src/storage/log-config.js';
import { ATTRIBUTES_OFFSET, CRC_OFFSET, LAST_OFFSET_DELTA_OFFSET, MAGIC_OFFSET, RECORD_COUNT_OFFSET, RECORDS_OFFSET, decodeBatches } from '../../src/storage/record-batch.js';
import { buildBatch } from '../../src/storage/record-batch-builder.js';
import { RecordRanges } from '../../src/storage/record-ranges.js';
import { crc32c } from '@node-rs/crc32';
import { TestClient, grpcError, v1 } from '../helpers/grpc-client.js';
import { useBrokerOnTestFileSystem } from '../helpers/broker-on-test-file-system.js';
import { useSharedBroker } from '../helpers/shared-broker.js';
import { TestFileSystem } from '../helpers/test-file-system.js';
import { openRawGrpcCall } from '../helpers/raw-grpc-call.js';
import { waitUntil } from '../helpers/wait.js';
import { type TestBroker, removeDirectory, startTestBroker, temporaryDirectory, testSettings } from '../helpers/test-server.js';
import { runBroker } from '../../src/server/run-broker.js';

const MAX_REQUEST_BYTES = 1024 * 1024;
const long = (value: number | string): Long => (typeof value === 'string' ? Long.fromString(value) : Long.fromNumber(value));
const record = (value: string, extra: Partial<strata.v1.IRecord> = {}): strata.v1.Record => v1.Record.create({ value: Buffer.from(value), ...extra });
const batchOf = (...values: string[]): Buffer => buildBatch(values.map((value) => ({ value: Buffer.from(value) })));

/** Wire bytes of a produce to good/0 of a valid record and then one whose message is `recordBytes`. */
function withRawRecord(recordBytes: number[]): Buffer {
  const valid = v1.ProduceRequest.encode(v1.ProduceRequest.create({ topic: 'good', partition: 0, records: [record('fine')] })).finish();
  return Buffer.concat([valid, Buffer.from([(3 << 3) | 2, recordBytes.length, ...recordBytes])]);
}

/** A copy of `batch` with its CRC recomputed, so a field edit is seen as such, not as a CRC error. */
function withFreshCrc(batch: Buffer): Buffer {
  batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)), CRC_OFFSET);
  return batch;
}

/** Paths under `directory` this process holds open (Linux: /proc/self/fd). */
function openFilesUnder(directory: string): string[] {
  const paths: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const path = readlinkSync(`/proc/self/fd/${fd}`);
      if (path.startsWith(directory)) paths.push(path);
    } catch {
      // closed meanwhile (the descriptor readdir itself used)
    }
  }
  return paths;
}

interface BadRequest {
  name: string;
  /** `service.method` as TestClient.call takes it; `log.subscribe` reads the stream's error. */
  method: string;
  /** Built when the case runs, so it can use state from the setup (producer ids). */
  request: () => unknown;
  code: status;
  /** What the message must say so a user can act on it. */
  message: RegExp;
}

const INVALID_NAMES: [string, string][] = [
  ['empty', ''],
  ['"."', '.'],
  ['".."', '..'],
  ['250 characters', 'n'.repeat(250)],
  ['"../etc"', '../etc'],
  ['"a/b"', 'a/b'],
  ['"sp ace"', 'sp ace'],
  ['unicode "tøpic"', 'tøpic'],
  ['unicode "主题"', '主题'],
  ['"../../escape"', '../../escape'],
];

describe('bad requests', () => {
  let broker: TestBroker;
  let client: TestClient;
  let producerId: Long;
  /** Values produced to good/0 before the table runs. */
  const goodValues = ['g0', 'g1', 'g2'];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    // A batch of max.message.bytes must fit in one request, so the default is lowered with the limit.
    broker = await startTestBroker({ maxRequestBytes: MAX_REQUEST_BYTES, topicDefaults: { ...DEFAULT_LOG_CONFIG, maxMessageBytes: MAX_REQUEST_BYTES / 2 } });
    client = new TestClient(broker.address);
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'good', partitions: 2 }));
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'small', partitions: 1, configs: { 'max.message.bytes': '1024' } }));
    await client.call('log.produce', v1.ProduceRequest.create({ topic: 'good', partition: 0, records: goodValues.map((value) => record(value)) }));
    const producer = await client.call<strata.v1.InitProducerResponse>('log.initProducer', v1.InitProducerRequest.create());
    producerId = producer.producerId;
    // Sequence 0 of this producer on good/1 is taken; the next one expected is 1.
    await client.call('log.produce', v1.ProduceRequest.create({ topic: 'good', partition: 1, records: [record('idem-0')], producerId, producerEpoch: 0, baseSequence: 0 }));
  });

  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    client?.close();
    await broker?.dispose();
  });

  const produce = (fields: strata.v1.IProduceRequest) => () => v1.ProduceRequest.create(fields);
  const fetch = (fields: strata.v1.IFetchRequest) => () => v1.FetchRequest.create({ topic: 'good', partition: 0, ...fields });
  const corrupt = (edit: (batch: Buffer) => Buffer) => produce({ topic: 'good', partition: 0, batch: edit(batchOf('c1', 'c2')) });

  const cases: BadRequest[] = [
    // --- Topic names: refused before anything touches the disk.
    ...INVALID_NAMES.map(([label, name]): BadRequest => ({
      name: `create a topic named ${label}`,
      method: 'admin.createTopic',
      request: () => v1.CreateTopicRequest.create({ name, partitions: 1 }),
      code: status.INVALID_ARGUMENT,
      message: name === '' ? /topic name is empty/ : name.length > 249 ? /250 characters long; the limit is 249/ : /topic name .* (is not allowed|has characters outside \[a-zA-Z0-9\._-\])/,
    })),
    { name: 'describe a topic named "../etc"', method: 'admin.describeTopic', request: () => v1.DescribeTopicRequest.create({ name: '../etc' }), code: status.INVALID_ARGUMENT, message: /has characters outside/ },
    { name: 'delete a topic named ".."', method: 'admin.deleteTopic', request: () => v1.DeleteTopicRequest.create({ name: '..' }), code: status.INVALID_ARGUMENT, message: /topic name "\.\." is not allowed/ },
    { name: 'produce without a topic', method: 'log.produce', request: produce({ records: [record('x')] }), code: status.INVALID_ARGUMENT, message: /topic is required/ },
    { name: 'produce to a topic named "a/b"', method: 'log.produce', request: produce({ topic: 'a/b', records: [record('x')] }), code: status.INVALID_ARGUMENT, message: /"a\/b" has characters outside/ },

    // --- Unknown topics and partitions.
    { name: 'produce to an unknown topic', method: 'log.produce', request: produce({ topic: 'nope', records: [record('x')] }), code: status.NOT_FOUND, message: /topic "nope" not found/ },
    { name: 'produce to an unknown partition', method: 'log.produce', request: produce({ topic: 'good', partition: 9, records: [record('x')] }), code: status.NOT_FOUND, message: /partition 9 of topic "good" does not exist \(the topic has 2\)/ },
    { name: 'produce a raw batch to an unknown partition', method: 'log.produce', request: produce({ topic: 'good', partition: 2, batch: batchOf('x') }), code: status.NOT_FOUND, message: /partition 2 of topic "good" does not exist/ },
    { name: 'fetch from an unknown topic', method: 'log.fetch', request: fetch({ topic: 'nope' }), code: status.NOT_FOUND, message: /topic "nope" not found/ },
    { name: 'fetch from an unknown partition', method: 'log.fetch', request: fetch({ partition: 5 }), code: status.NOT_FOUND, message: /partition 5 of topic "good" does not exist \(the topic has 2\)/ },
    { name: 'subscribe to an unknown topic', method: 'log.subscribe', request: () => v1.SubscribeRequest.create({ topic: 'nope' }), code: status.NOT_FOUND, message: /topic "nope" not found/ },
    { name: 'subscribe to an unknown partition', method: 'log.subscribe', request: () => v1.SubscribeRequest.create({ topic: 'good', partitions: [0, 7] }), code: status.NOT_FOUND, message: /partition 7 of topic "good" does not exist/ },
    { name: 'list offsets of an unknown topic', method: 'log.listOffsets', request: () => v1.ListOffsetsRequest.create({ topic: 'nope' }), code: status.NOT_FOUND, message: /topic "nope" not found/ },
    { name: 'list offsets of an unknown partition', method: 'log.listOffsets', request: () => v1.ListOffsetsRequest.create({ topic: 'good', partition: 3 }), code: status.NOT_FOUND, message: /partition 3 of topic "good" does not exist/ },
    { name: 'describe an unknown topic', method: 'admin.describeTopic', request: () => v1.DescribeTopicRequest.create({ name: 'nope' }), code: status.NOT_FOUND, message: /topic "nope" not found/ },
    { name: 'delete an unknown topic', method: 'admin.deleteTopic', request: () => v1.DeleteTopicRequest.create({ name: 'nope' }), code: status.NOT_FOUND, message: /topic "nope" not found/ },
    { name: 'alter configs of an unknown topic', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'nope', configs: { 'retention.ms': '1000' } }), code: status.NOT_FOUND, message: /topic "nope" not found/ },
    { name: 'add partitions to an unknown topic', method: 'admin.addPartitions', request: () => v1.AddPartitionsRequest.create({ name: 'nope', partitions: 3 }), code: status.NOT_FOUND, message: /topic "nope" not found/ },

    // --- Topic administration.
    { name: 'create a topic that exists', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'good', partitions: 2 }), code: status.ALREADY_EXISTS, message: /topic "good" already exists/ },
    { name: 'create with a negative partition count', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'neg-parts', partitions: -1 }), code: status.INVALID_ARGUMENT, message: /partitions must not be negative, got -1/ },
    { name: 'create with 10001 partitions', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'many-parts', partitions: 10_001 }), code: status.INVALID_ARGUMENT, message: /partition count must be from 1 to 10000, got 10001/ },
    { name: 'add partitions: the same count', method: 'admin.addPartitions', request: () => v1.AddPartitionsRequest.create({ name: 'good', partitions: 2 }), code: status.INVALID_ARGUMENT, message: /has 2 partitions; the new count must be larger, got 2/ },
    { name: 'add partitions: a smaller count', method: 'admin.addPartitions', request: () => v1.AddPartitionsRequest.create({ name: 'good', partitions: 1 }), code: status.INVALID_ARGUMENT, message: /must be larger, got 1/ },
    { name: 'add partitions: over 10000', method: 'admin.addPartitions', request: () => v1.AddPartitionsRequest.create({ name: 'good', partitions: 10_001 }), code: status.INVALID_ARGUMENT, message: /from 1 to 10000, got 10001/ },
    { name: 'create with an unknown config', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-1', configs: { 'retention.mss': '1000' } }), code: status.INVALID_ARGUMENT, message: /unknown topic config "retention\.mss"; known: .*retention\.ms/ },
    { name: 'create with retention.ms=abc', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-2', configs: { 'retention.ms': 'abc' } }), code: status.INVALID_ARGUMENT, message: /retention\.ms must be an integer in decimal digits, got "abc"/ },
    { name: 'create with retention.ms=0x10 (a hex slip would keep records 16 ms)', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-hex', configs: { 'retention.ms': '0x10' } }), code: status.INVALID_ARGUMENT, message: /^retention\.ms must be an integer in decimal digits, got "0x10"$/ },
    { name: 'create with retention.bytes=" 100 "', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-space', configs: { 'retention.bytes': ' 100 ' } }), code: status.INVALID_ARGUMENT, message: /^retention\.bytes must be an integer in decimal digits, got " 100 "$/ },
    { name: 'create with segment.bytes=1', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-3', configs: { 'segment.bytes': '1' } }), code: status.INVALID_ARGUMENT, message: /segment\.bytes must be an integer from 1024 to \d+, got 1/ },
    { name: 'create with message.timestamp.after.max.ms=-1', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-6', configs: { 'message.timestamp.after.max.ms': '-1' } }), code: status.INVALID_ARGUMENT, message: /message\.timestamp\.after\.max\.ms must be an integer from 0 to \d+, got -1/ },
    { name: 'create with flush=sometimes', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-4', configs: { flush: 'sometimes' } }), code: status.INVALID_ARGUMENT, message: /flush must be "always" or "interval", got "sometimes"/ },
    { name: 'alter with an unknown config', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'good', configs: { colour: 'blue' } }), code: status.INVALID_ARGUMENT, message: /unknown topic config "colour"/ },
    { name: 'create with a config value of 200 KB (the refusal quotes it, cut)', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-3', configs: { 'retention.ms': 'x'.repeat(200_000) } }), code: status.INVALID_ARGUMENT, message: /^retention\.ms must be an integer in decimal digits, got "x+… \(cut: the message is 200057 bytes\)$/ },
    { name: 'create with a config named like an object member', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-2', configs: { toString: '5' } }), code: status.INVALID_ARGUMENT, message: /unknown topic config "toString"/ },
    { name: 'alter with retention.ms=abc', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'good', configs: { 'retention.ms': 'abc' } }), code: status.INVALID_ARGUMENT, message: /retention\.ms must be an integer in decimal digits, got "abc"/ },
    { name: 'alter with segment.ms=1e3', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'good', configs: { 'segment.ms': '1e3' } }), code: status.INVALID_ARGUMENT, message: /^segment\.ms must be an integer in decimal digits, got "1e3"$/ },
    { name: 'create with max.message.bytes equal to the request limit', method: 'admin.createTopic', request: () => v1.CreateTopicRequest.create({ name: 'bad-config-5', configs: { 'max.message.bytes': String(MAX_REQUEST_BYTES) } }), code: status.INVALID_ARGUMENT, message: /max\.message\.bytes of 1048576 does not fit in one request to this broker: its largest request \(--max-request-bytes\) is 1048576 bytes, which leaves 1047552 for a batch/ },
    { name: 'alter max.message.bytes to 1 byte over what a request leaves', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'good', configs: { 'max.message.bytes': '1047553' } }), code: status.INVALID_ARGUMENT, message: /does not fit in one request to this broker/ },
    { name: 'alter with no configs', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'good' }), code: status.INVALID_ARGUMENT, message: /give at least one config to set or reset/ },
    { name: 'alter: reset an unknown config', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'good', resetConfigs: ['colour'] }), code: status.INVALID_ARGUMENT, message: /cannot reset unknown topic config "colour"; known: .*retention\.ms/ },
    { name: 'alter: a config both set and reset', method: 'admin.alterTopicConfigs', request: () => v1.AlterTopicConfigsRequest.create({ name: 'good', configs: { 'retention.ms': '1000' }, resetConfigs: ['retention.ms'] }), code: status.INVALID_ARGUMENT, message: /config "retention\.ms" is both set and reset; give it once/ },

    // --- Produce requests.
    { name: 'produce records and a batch', method: 'log.produce', request: produce({ topic: 'good', partition: 0, records: [record('x')], batch: batchOf('y') }), code: status.INVALID_ARGUMENT, message: /either records or a batch, not both/ },
    { name: 'produce neither records nor a batch', method: 'log.produce', request: produce({ topic: 'good', partition: 0 }), code: status.INVALID_ARGUMENT, message: /needs records or a batch/ },
    { name: 'produce with acks=7', method: 'log.produce', request: produce({ topic: 'good', partition: 0, records: [record('x')], acks: 7 as strata.v1.Acks }), code: status.INVALID_ARGUMENT, message: /acks 7 is not one of ACKS_ALL, ACKS_LEADER, ACKS_NONE/ },
    { name: 'produce to partition -1', method: 'log.produce', request: produce({ topic: 'good', partition: -1, records: [record('x')] }), code: status.INVALID_ARGUMENT, message: /partition must be a non-negative integer, got -1/ },
    { name: 'produce a record whose header key is not UTF-8', method: 'log.produce', request: () => withRawRecord([(3 << 3) | 2, 3, (1 << 3) | 2, 1, 0xff]), code: status.INVALID_ARGUMENT, message: /records\[1\]\.headers\[0\]\.key is not valid UTF-8/ },
    { name: 'produce a record whose value runs past its end', method: 'log.produce', request: () => withRawRecord([(2 << 3) | 2, 9, 0x61]), code: status.INVALID_ARGUMENT, message: /records\[1\] is not a valid Record message: a field of 9 bytes runs past the end of its message/ },
    { name: 'produce a record with a negative timestamp', method: 'log.produce', request: produce({ topic: 'good', partition: 0, records: [record('ok'), record('x', { timestamp: long(-5) })] }), code: status.INVALID_ARGUMENT, message: /records\[1\]\.timestamp must not be negative, got -5/ },
    { name: 'produce a record with a timestamp above 2^53', method: 'log.produce', request: produce({ topic: 'good', partition: 0, records: [record('x', { timestamp: long('9007199254740993') })] }), code: status.INVALID_ARGUMENT, message: /records\[0\]\.timestamp 9007199254740993 is outside the range/ },
    { name: "produce a record timestamped in microseconds (far ahead of the broker's clock)", method: 'log.produce', request: produce({ topic: 'good', partition: 0, records: [record('ok'), record('x', { timestamp: long(Date.now() * 1000) })] }), code: status.INVALID_ARGUMENT, message: /has a record timestamped \d+, \d+ ms ahead of the broker's clock, more than message\.timestamp\.after\.max\.ms \(3600000\) allows: timestamps are milliseconds since the epoch/ },
    { name: 'produce a raw batch with producer_id', method: 'log.produce', request: () => v1.ProduceRequest.create({ topic: 'good', partition: 0, batch: batchOf('x'), producerId }), code: status.INVALID_ARGUMENT, message: /producer_id is for the records path/ },
    { name: 'produce idempotent records without a partition', method: 'log.produce', request: () => v1.ProduceRequest.create({ topic: 'good', records: [record('x')], producerId, baseSequence: 1 }), code: status.INVALID_ARGUMENT, message: /needs an explicit partition/ },
    { name: 'produce with a producer_epoch past int16', method: 'log.produce', request: () => v1.ProduceRequest.create({ topic: 'good', partition: 1, records: [record('x')], producerId, producerEpoch: 40_000, baseSequence: 1 }), code: status.INVALID_ARGUMENT, message: /producer_epoch must be from 0 to 32767, got 40000/ },
    { name: 'produce with a negative base_sequence', method: 'log.produce', request: () => v1.ProduceRequest.create({ topic: 'good', partition: 1, records: [record('x')], producerId, baseSequence: -3 }), code: status.INVALID_ARGUMENT, message: /base_sequence must be a non-negative integer, got -3/ },
    { name: 'produce with producer_id above 2^53', method: 'log.produce', request: produce({ topic: 'good', partition: 1, records: [record('x')], producerId: long('9007199254740993') }), code: status.INVALID_ARGUMENT, message: /producer_id 9007199254740993 is outside the range/ },
    { name: 'produce with a sequence gap', method: 'log.produce', request: () => v1.ProduceRequest.create({ topic: 'good', partition: 1, records: [record('x')], producerId, producerEpoch: 0, baseSequence: 5 }), code: status.FAILED_PRECONDITION, message: /out-of-order sequence for producer \d+ epoch 0: expected 1, got 5/ },
    {
      name: 'produce a raw idempotent batch with a sequence gap',
      method: 'log.produce',
      request: () => v1.ProduceRequest.create({ topic: 'good', partition: 1, batch: buildBatch([{ value: Buffer.from('x') }], { producerId: producerId.toNumber(), producerEpoch: 0, baseSequence: 9 }) }),
      code: status.FAILED_PRECONDITION,
      message: /expected 1, got 9/,
    },
    {
      name: "produce a raw idempotent batch with Kafka's base sequence -1",
      method: 'log.produce',
      request: () => v1.ProduceRequest.create({ topic: 'good', partition: 1, batch: buildBatch([{ value: Buffer.from('x') }], { producerId: producerId.toNumber(), producerEpoch: 0, baseSequence: -1 }) }),
      code: status.INVALID_ARGUMENT,
      message: /has base sequence -1: an idempotent batch's sequence starts at 0/,
    },
    {
      name: 'produce a raw idempotent batch with producer epoch -1',
      method: 'log.produce',
      request: () => v1.ProduceRequest.create({ topic: 'good', partition: 0, batch: buildBatch([{ value: Buffer.from('x') }], { producerId: producerId.toNumber(), producerEpoch: -1, baseSequence: 0 }) }),
      code: status.INVALID_ARGUMENT,
      message: /has producer epoch -1: it must be from 0 to 32767/,
    },
    { name: 'produce idempotent records with acks=none', method: 'log.produce', request: () => v1.ProduceRequest.create({ topic: 'good', partition: 1, records: [record('x')], producerId, producerEpoch: 0, baseSequence: 1, acks: v1.Acks.ACKS_NONE }), code: status.INVALID_ARGUMENT, message: /an idempotent batch needs acks=leader or acks=all/ },
    {
      name: 'produce a raw idempotent batch with acks=none',
      method: 'log.produce',
      request: () => v1.ProduceRequest.create({ topic: 'good', partition: 1, batch: buildBatch([{ value: Buffer.from('x') }], { producerId: producerId.toNumber(), producerEpoch: 0, baseSequence: 1 }), acks: v1.Acks.ACKS_NONE }),
      code: status.INVALID_ARGUMENT,
      message: /an idempotent batch needs acks=leader or acks=all/,
    },

    // --- Corrupt raw batches.
    { name: 'produce a batch with a flipped byte after the CRC', method: 'log.produce', request: corrupt((batch) => ((batch[30] ^= 0xff), batch)), code: status.INVALID_ARGUMENT, message: /invalid record batch 0 at byte 0: CRC mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}/ },
    { name: 'produce a batch with its last byte flipped, no partition', method: 'log.produce', request: () => { const batch = batchOf('c1'); batch[batch.length - 1]! ^= 0x01; return v1.ProduceRequest.create({ topic: 'good', batch }); }, code: status.INVALID_ARGUMENT, message: /CRC mismatch/ },
    { name: 'produce a truncated batch', method: 'log.produce', request: corrupt((batch) => batch.subarray(0, batch.length - 5)), code: status.INVALID_ARGUMENT, message: /batch of \d+ bytes is truncated to \d+ bytes/ },
    { name: 'produce a batch shorter than a frame', method: 'log.produce', request: corrupt((batch) => batch.subarray(0, 7)), code: status.INVALID_ARGUMENT, message: /only 7 bytes left, less than a batch frame/ },
    { name: 'produce a batch with magic 1', method: 'log.produce', request: corrupt((batch) => ((batch[MAGIC_OFFSET] = 1), batch)), code: status.INVALID_ARGUMENT, message: /magic byte is 1, expected 2/ },
    { name: 'produce a good batch followed by 5 stray bytes', method: 'log.produce', request: corrupt((batch) => Buffer.concat([batch, Buffer.alloc(5)])), code: status.INVALID_ARGUMENT, message: /invalid record batch 1 at byte \d+: only 5 bytes left, less than a batch frame/ },
    { name: 'produce a good batch followed by a zero-length frame', method: 'log.produce', request: corrupt((batch) => Buffer.concat([batch, Buffer.alloc(16)])), code: status.INVALID_ARGUMENT, message: /invalid record batch 1 at byte \d+: batch length 0 is below the minimum/ },
    {
      name: 'produce a good batch followed by text garbage',
      method: 'log.produce',
      request: corrupt((batch) => Buffer.concat([batch, Buffer.from('garbage!garbage!')])),
      code: status.INVALID_ARGUMENT,
      message: /invalid record batch 1 at byte \d+: (batch length \d+ exceeds \d+|batch of \d+ bytes is truncated to 16 bytes)/,
    },
    {
      name: 'produce a batch whose record count does not match (valid CRC)',
      method: 'log.produce',
      request: corrupt((batch) => (batch.writeInt32BE(5, RECORD_COUNT_OFFSET), withFreshCrc(batch))),
      code: status.INVALID_ARGUMENT,
      message: /last offset delta 1 does not match record count 5/,
    },
    {
      name: 'produce a gzip batch with one record fewer than its header says (valid CRC)',
      method: 'log.produce',
      request: () => {
        const batch = buildBatch([{ value: Buffer.from('g1') }], { compression: 'gzip' });
        batch.writeInt32BE(2, RECORD_COUNT_OFFSET);
        batch.writeInt32BE(1, LAST_OFFSET_DELTA_OFFSET);
        return v1.ProduceRequest.create({ topic: 'good', partition: 0, batch: withFreshCrc(batch), acks: v1.Acks.ACKS_NONE });
      },
      code: status.INVALID_ARGUMENT,
      message: /invalid record batch 0 at byte 0: record 1 runs past the end of the batch/,
    },
    {
      name: 'produce a gzip batch whose records do not inflate, no partition (valid CRC)',
      method: 'log.produce',
      request: () => {
        const batch = buildBatch([{ key: Buffer.from('k'), value: Buffer.from('g1') }], { compression: 'gzip' });
        batch.fill(0x55, RECORDS_OFFSET + 10);
        return v1.ProduceRequest.create({ topic: 'good', batch: withFreshCrc(batch) });
      },
      code: status.INVALID_ARGUMENT,
      message: /invalid record batch 0: /,
    },
    {
      name: 'produce a corrupt batch with ACKS_NONE',
      method: 'log.produce',
      request: () => { const batch = batchOf('c1'); batch[30]! ^= 0xff; return v1.ProduceRequest.create({ topic: 'good', partition: 0, batch, acks: v1.Acks.ACKS_NONE }); },
      code: status.INVALID_ARGUMENT,
      message: /CRC mismatch/,
    },

    // --- Sizes.
    { name: 'produce a raw batch over max.message.bytes', method: 'log.produce', request: produce({ topic: 'small', partition: 0, batch: batchOf('z'.repeat(2000)) }), code: status.RESOURCE_EXHAUSTED, message: /batch 0 is \d+ bytes, larger than max\.message\.bytes 1024/ },
    { name: 'produce records over max.message.bytes', method: 'log.produce', request: produce({ topic: 'small', records: [record('z'.repeat(1500))] }), code: status.RESOURCE_EXHAUSTED, message: /^the record for partition 0 makes a batch of at least 1568 bytes, larger than max\.message\.bytes 1024; make it smaller or raise the topic's max\.message\.bytes$/ },
    {
      // Key "a" goes to good/0 and fits; key "d" goes to good/1 and does not. Neither is appended
      // (the "afterwards" checks below see both partitions unchanged).
      name: 'produce records for two partitions, one over max.message.bytes',
      method: 'log.produce',
      request: produce({ topic: 'good', records: [record('fits', { key: Buffer.from('a') }), record('z'.repeat(MAX_REQUEST_BYTES / 2), { key: Buffer.from('d') })] }),
      code: status.RESOURCE_EXHAUSTED,
      message: /^the record for partition 1 makes a batch of at least 524357 bytes, larger than max\.message\.bytes 524288; make it smaller or raise the topic's max\.message\.bytes$/,
    },
    {
      name: 'produce two records for one partition, the second too large on its own',
      method: 'log.produce',
      request: produce({ topic: 'good', records: [record('fits', { key: Buffer.from('d') }), record('z'.repeat(MAX_REQUEST_BYTES / 2), { key: Buffer.from('d') })] }),
      code: status.RESOURCE_EXHAUSTED,
      message: /^records\[1\] \(for partition 1\) makes a batch of at least 524357 bytes on its own, larger than max\.message\.bytes 524288; make it smaller or raise the topic's max\.message\.bytes$/,
    },
    {
      // Key "d"'s 4,800 records could fit at a byte per varint (518,461 bytes), but once encoded
      // their lengths and most offset deltas take two: 532,797 bytes. Key "a"'s record is not
      // appended either.
      name: 'produce records for two partitions, one whose batch is over max.message.bytes once encoded',
      method: 'log.produce',
      request: produce({ topic: 'good', records: [record('fits', { key: Buffer.from('a') }), ...Array.from({ length: 4800 }, () => record('z'.repeat(100), { key: Buffer.from('d') }))] }),
      code: status.RESOURCE_EXHAUSTED,
      message: /^the 4800 records for partition 1 make a batch of 532797 bytes, larger than max\.message\.bytes 524288; send them in several requests$/,
    },
    {
      name: 'produce a batch over max.message.bytes with ACKS_NONE',
      method: 'log.produce',
      request: produce({ topic: 'small', partition: 0, batch: batchOf('z'.repeat(2000)), acks: v1.Acks.ACKS_NONE }),
      code: status.RESOURCE_EXHAUSTED,
      message: /larger than max\.message\.bytes 1024/,
    },
    { name: 'produce 2 MiB, over the 1 MiB receive limit', method: 'log.produce', request: produce({ topic: 'good', partition: 0, records: [record('b'.repeat(2 * 1024 * 1024))] }), code: status.RESOURCE_EXHAUSTED, message: /^the request to strata\.v1\.Log\/Produce is \d+ bytes, over this broker's limit of 1048576 bytes \(--max-request-bytes\); send smaller produce requests/ },

    // --- Fetch and offsets.
    { name: 'fetch beyond the log end', method: 'log.fetch', request: fetch({ offset: long(1000) }), code: status.OUT_OF_RANGE, message: /^offset 1000 is out of range for good-0: valid offsets are 0 to 3 \(3 is the log end, where the next record goes\)$/ },
    { name: 'fetch a negative offset', method: 'log.fetch', request: fetch({ offset: long(-1) }), code: status.INVALID_ARGUMENT, message: /offset must be a non-negative integer, got -1/ },
    { name: 'fetch an offset above 2^53', method: 'log.fetch', request: fetch({ offset: long('9007199254740993') }), code: status.INVALID_ARGUMENT, message: /offset 9007199254740993 is outside the range Strata supports/ },
    { name: 'fetch an offset of 2^63-1', method: 'log.fetch', request: fetch({ offset: Long.MAX_VALUE }), code: status.INVALID_ARGUMENT, message: /offset 9223372036854775807 is outside the range/ },
    { name: 'fetch with a negative partition', method: 'log.fetch', request: fetch({ partition: -2 }), code: status.INVALID_ARGUMENT, message: /partition must be a non-negative integer, got -2/ },
    { name: 'fetch with max_bytes -1', method: 'log.fetch', request: fetch({ maxBytes: -1 }), code: status.INVALID_ARGUMENT, message: /max_bytes must be a non-negative integer, got -1/ },
    { name: 'fetch with max_bytes over 64 MiB', method: 'log.fetch', request: fetch({ maxBytes: 64 * 1024 * 1024 + 1 }), code: status.INVALID_ARGUMENT, message: /max_bytes 67108865 exceeds the limit of 67108864/ },
    { name: 'fetch with max_wait_ms over the limit', method: 'log.fetch', request: fetch({ maxWaitMs: 300_001 }), code: status.INVALID_ARGUMENT, message: /max_wait_ms 300001 exceeds the limit of 300000/ },
    { name: 'fetch with a negative max_wait_ms', method: 'log.fetch', request: fetch({ maxWaitMs: -1 }), code: status.INVALID_ARGUMENT, message: /max_wait_ms must be a non-negative integer/ },
    { name: 'fetch with a negative min_bytes', method: 'log.fetch', request: fetch({ minBytes: -1 }), code: status.INVALID_ARGUMENT, message: /min_bytes must be a non-negative integer/ },
    { name: 'list offsets at an offset beyond the log', method: 'log.listOffsets', request: () => v1.ListOffsetsRequest.create({ topic: 'good', partition: 0, position: { offset: long(50) } }), code: status.OUT_OF_RANGE, message: /^offset 50 is out of range for good-0: valid offsets are 0 to 3 \(3 is the log end, where the next record goes\)$/ },
    { name: 'list offsets at a negative offset', method: 'log.listOffsets', request: () => v1.ListOffsetsRequest.create({ topic: 'good', partition: 0, position: { offset: long(-1) } }), code: status.INVALID_ARGUMENT, message: /start\.offset must be a non-negative integer, got -1/ },
    { name: 'list offsets at a negative timestamp (Kafka\'s -1 for latest)', method: 'log.listOffsets', request: () => v1.ListOffsetsRequest.create({ topic: 'good', partition: 0, position: { timestamp: long(-1) } }), code: status.INVALID_ARGUMENT, message: /start\.timestamp must be a time in ms since the epoch, not negative, got -1 \(set start\.latest or start\.earliest/ },
    { name: 'list offsets at a timestamp above 2^53', method: 'log.listOffsets', request: () => v1.ListOffsetsRequest.create({ topic: 'good', partition: 0, position: { timestamp: Long.MAX_VALUE } }), code: status.INVALID_ARGUMENT, message: /start\.timestamp 9223372036854775807 is outside the range/ },
    { name: 'subscribe from an offset beyond the log', method: 'log.subscribe', request: () => v1.SubscribeRequest.create({ topic: 'good', partitions: [0], start: { offset: long(99) } }), code: status.OUT_OF_RANGE, message: /offset 99 is out of range for good-0: valid offsets are 0 to 3/ },
    { name: 'commit with a negative topic_created_at_ms', method: 'groups.commitOffsets', request: () => v1.CommitOffsetsRequest.create({ groupId: 'bad-commit', offsets: [v1.OffsetCommit.create({ topic: 'good', partition: 0, offset: Long.ZERO, topicCreatedAtMs: Long.fromNumber(-1) })] }), code: status.INVALID_ARGUMENT, message: /^offsets\[0\]\.topic_created_at_ms must be a non-negative integer, got -1$/ },
    // --- Bytes that are not a message of the method's type (a client built from other protos).
    { name: 'create a topic with bytes that are not protobuf', method: 'admin.createTopic', request: () => Buffer.from([0x0f]), code: status.INVALID_ARGUMENT, message: /^the request to strata\.v1\.Admin\/CreateTopic is not a valid protobuf message \(invalid wire type 7 at offset 1\); check that the client was generated from this broker's proto files$/ },
    { name: 'produce with bytes that are not protobuf', method: 'log.produce', request: () => Buffer.from([0x0f]), code: status.INVALID_ARGUMENT, message: /strata\.v1\.Log\/Produce is not a valid protobuf message \(invalid wire type 7/ },
    { name: 'fetch with a truncated message', method: 'log.fetch', request: () => Buffer.from([0x0a, 0x05, 0x61]), code: status.INVALID_ARGUMENT, message: /strata\.v1\.Log\/Fetch is not a valid protobuf message \(index out of range/ },
    { name: 'heartbeat with bytes that are not protobuf', method: 'groups.heartbeat', request: () => Buffer.from([0x0f]), code: status.INVALID_ARGUMENT, message: /strata\.v1\.Groups\/Heartbeat is not a valid protobuf message/ },
    {
      name: 'heartbeat listing 100001 owned partitions',
      method: 'groups.heartbeat',
      request: () => v1.HeartbeatRequest.create({ groupId: 'owned-many', memberEpoch: 0, subscribedTopicNames: ['good'], ownedPartitions: [{ topic: 'good', partitions: new Array<number>(100_001).fill(0) }] }),
      code: status.INVALID_ARGUMENT,
      message: /^owned_partitions lists 100001 partitions; the limit is 100000: list each partition the member owns once$/,
    },
    { name: 'subscribe with a negative max_bytes', method: 'log.subscribe', request: () => v1.SubscribeRequest.create({ topic: 'good', maxBytes: -4 }), code: status.INVALID_ARGUMENT, message: /max_bytes must be a non-negative integer, got -4/ },
  ];

  it('refuses to start with a default max.message.bytes a request cannot carry, and warns of such a topic at start', async () => {
    const dataDir = temporaryDirectory();
    try {
      await expect(Broker.open({ dataDir, maxRequestBytes: 1024 * 1024 })).rejects.toThrow('the default max.message.bytes of 1048576 does not fit in one request to this broker: its largest request (--max-request-bytes) is 1048576 bytes, which leaves 1047552 for a batch; raise --max-request-bytes or lower --max-message-bytes');
      const first = await Broker.open({ dataDir }); // the refused start left the directory usable
      await first.createTopic('wide', 1, { 'max.message.bytes': String(4 * 1024 * 1024) });
      await first.close();
      const warnings: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg as string) });
      const reopened = await Broker.open({ dataDir, maxRequestBytes: 2 * 1024 * 1024, topicDefaults: { maxMessageBytes: 1024 * 1024 }, logger });
      // Its other configs may still be altered; max.message.bytes only to a size that fits.
      expect((await reopened.alterTopicConfigs('wide', { 'retention.ms': '1000' })).configs['retention.ms']).toBe('1000');
      await expect(reopened.alterTopicConfigs('wide', { 'max.message.bytes': String(3 * 1024 * 1024) })).rejects.toThrow(/which leaves 2096128 for a batch; lower max\.message\.bytes or raise --max-request-bytes$/);
      expect((await reopened.alterTopicConfigs('wide', { 'max.message.bytes': String(2096128) })).configs['max.message.bytes']).toBe('2096128');
      await reopened.close();
      expect(warnings).toContain('topic "wide": max.message.bytes of 4194304 does not fit in one request to this broker: its largest request (--max-request-bytes) is 2097152 bytes, which leaves 2096128 for a batch; producers of full batches will fail. Lower the topic\'s max.message.bytes or raise --max-request-bytes');
    } finally {
      removeDirectory(dataDir);
    }
  });

  it.runIf(existsSync('/proc/self/fd'))('refuses a start whose partition cannot be opened, names it, and leaves nothing of the data directory open', async () => {
    const dataDir = temporaryDirectory();
    try {
      const broker = await Broker.open({ dataDir });
      await broker.createTopic('split', 3, {});
      await broker.close();
      expect(openFilesUnder(dataDir)).toEqual([]);
      // Partition 1's directory is a file now: partition 0 opens, then the start fails.
      const blocked = join(dataDir, 'topics', 'split', '1');
      renameSync(blocked, `${blocked}.aside`);
      writeFileSync(blocked, 'not a directory');
      await expect(Broker.open({ dataDir })).rejects.toThrow(/^cannot open partition 1 of topic "split": EEXIST/);
      // Partition 0's log and the metadata store were closed again.
      expect(openFilesUnder(dataDir)).toEqual([]);
      // So was the metadata store of a start refused for its options.
      await expect(Broker.open({ dataDir, maxRequestBytes: 1024 * 1024 })).rejects.toThrow(/does not fit in one request/);
      expect(openFilesUnder(dataDir)).toEqual([]);
      rmSync(blocked);
      renameSync(`${blocked}.aside`, blocked);
      const reopened = await Broker.open({ dataDir });
      expect(reopened.describeTopic('split').partitions).toHaveLength(3);
      await reopened.close();
    } finally {
      removeDirectory(dataDir);
    }
  });

  it('ends a Subscribe whose request is not protobuf with INVALID_ARGUMENT', async () => {
    const error = await client.subscribeError(Buffer.from([0x0f]));
    expect({ code: status[error.code], details: error.details }).toEqual({ code: 'INVALID_ARGUMENT', details: expect.stringMatching(/^the request to strata\.v1\.Log\/Subscribe is not a valid protobuf message \(invalid wire type 7/) });
  });

  it('answers the requests before one that is not protobuf on a ProduceStream, then ends it with INVALID_ARGUMENT', async () => {
    const stream = client.log.makeBidiStreamRequest('/strata.v1.Log/ProduceStream', (bytes: Buffer) => bytes, (bytes: Buffer) => v1.ProduceResponse.decode(bytes), new Metadata(), { deadline: Date.now() + 10_000 });
    const answers: strata.v1.ProduceResponse[] = [];
    const ended = new Promise<ServiceError | null>((resolve) => {
      stream.on('data', (answer: strata.v1.ProduceResponse) => answers.push(answer));
      stream.on('error', resolve);
      stream.on('end', () => resolve(null));
    });
    const request = (value: string, correlationId: number): Buffer => Buffer.from(v1.ProduceRequest.encode({ topic: 'malformed', partition: 0, records: [record(value)], correlationId: Long.fromNumber(correlationId) }).finish());
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'malformed', partitions: 1 }));
    stream.write(request('before', 1));
    stream.write(Buffer.from([0x0f]));
    stream.write(request('after', 2)); // after the bad one: never read
    const error = await ended;
    expect(error).not.toBeNull();
    expect({ code: status[error!.code], details: error!.details }).toEqual({ code: 'INVALID_ARGUMENT', details: expect.stringMatching(/^the request to strata\.v1\.Log\/ProduceStream is not a valid protobuf message/) });
    expect(answers.map((answer) => [answer.correlationId.toNumber(), answer.error ?? null, answer.batches[0]?.baseOffset.toNumber()])).toEqual([[1, null, 0]]);
    const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'malformed', partition: 0, offset: long(0) }));
    expect(fetched.records.map((r) => Buffer.from(r.value!).toString())).toEqual(['before']);
  });

  it("counts requests over --max-request-bytes, which grpc-js refuses before any handler (gzip ones that inflate past it too), and tells the client the limit and the flag, or a non-produce method's own limit", async () => {
    const scrape = async (): Promise<string> => (await globalThis.fetch(`http://${broker.metricsAddress!}/metrics`)).text();
    const refused = (text: string, method: string): number => {
      const line = text.split('\n').find((candidate) => candidate.startsWith(`strata_requests_total{method="${method}",code="RESOURCE_EXHAUSTED"}`));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const before = await scrape();
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'oversized', partitions: 1 }));
    const request = (value: string, correlationId: number): Buffer => Buffer.from(v1.ProduceRequest.encode({ topic: 'oversized', partition: 0, records: [record(value)], correlationId: Long.fromNumber(correlationId) }).finish());
    const large = request('o'.repeat(MAX_REQUEST_BYTES), 2);
    const limit = `over this broker's limit of ${MAX_REQUEST_BYTES} bytes (--max-request-bytes); send smaller produce requests (fewer or smaller records in each) or raise the broker's --max-request-bytes`;

    const unary = await grpcError(client.call('log.produce', large));
    expect({ code: status[unary.code], details: unary.details }).toEqual({ code: 'RESOURCE_EXHAUSTED', details: `the request to strata.v1.Log/Produce is ${large.length} bytes, ${limit}` });

    const stream = client.log.makeBidiStreamRequest('/strata.v1.Log/ProduceStream', (bytes: Buffer) => bytes, (bytes: Buffer) => v1.ProduceResponse.decode(bytes), new Metadata(), { deadline: Date.now() + 10_000 });
    const answers: number[] = [];
    const ended = new Promise<ServiceError | null>((resolve) => {
      stream.on('data', (answer: strata.v1.ProduceResponse) => {
        answers.push(answer.correlationId.toNumber());
        stream.write(large); // once the request before it is answered
      });
      stream.on('error', resolve);
      stream.on('end', () => resolve(null));
    });
    stream.write(request('fits', 1));
    const error = await ended;
    expect(error).not.toBeNull();
    expect({ code: status[error!.code], details: error!.details }).toEqual({ code: 'RESOURCE_EXHAUSTED', details: `the request to strata.v1.Log/ProduceStream is ${large.length} bytes, ${limit}` });
    expect(error!.metadata.get('strata-error')).toEqual(['RESOURCE_EXHAUSTED']);
    expect(unary.metadata.get('strata-error')).toEqual(['RESOURCE_EXHAUSTED']);

    // A gzip-compressed request, small on the wire, that inflates past the limit.
    const LogClient = makeGenericClientConstructor(logServiceDefinition, 'strata.v1.Log');
    const gzipClient = new LogClient(broker.address, credentials.createInsecure(), { 'grpc.default_compression_algorithm': compressionAlgorithms.gzip });
    const inflated = await new Promise<ServiceError | null>((resolve) =>
      gzipClient.makeUnaryRequest('/strata.v1.Log/Produce', (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, large, { deadline: Date.now() + 10_000 }, (error) => resolve(error)),
    ).finally(() => gzipClient.close());
    expect(inflated).not.toBeNull();
    expect({ code: status[inflated!.code], details: inflated!.details }).toEqual({ code: 'RESOURCE_EXHAUSTED', details: `the request to strata.v1.Log/Produce inflates to over ${MAX_REQUEST_BYTES} bytes, ${limit}` });
    // On a stream, after the answer to the request before it (grpc-js leaves such a message
    // undecoded in its queue, where it would hold back the end of the stream).
    const gzipStreamClient = new LogClient(broker.address, credentials.createInsecure(), { 'grpc.default_compression_algorithm': compressionAlgorithms.gzip });
    const gzipStream = gzipStreamClient.makeBidiStreamRequest('/strata.v1.Log/ProduceStream', (bytes: Buffer) => bytes, (bytes: Buffer) => v1.ProduceResponse.decode(bytes), new Metadata(), { deadline: Date.now() + 10_000 });
    const gzipEnded = new Promise<ServiceError | null>((resolve) => {
      gzipStream.on('data', (answer: strata.v1.ProduceResponse) => {
        answers.push(answer.correlationId.toNumber());
        gzipStream.write(large);
      });
      gzipStream.on('error', resolve);
      gzipStream.on('end', () => resolve(null));
    }).finally(() => gzipStreamClient.close());
    gzipStream.write(request('fits again', 3));
    const gzipError = await gzipEnded;
    expect(gzipError === null ? null : { code: status[gzipError.code], details: gzipError.details }).toEqual({ code: 'RESOURCE_EXHAUSTED', details: `the request to strata.v1.Log/ProduceStream inflates to over ${MAX_REQUEST_BYTES} bytes, ${limit}` });
    // One that inflates past the limit, then at once one too large even compressed: the first
    // refusal ends the stream, and the second, refused too, changes nothing.
    const bothClient = new LogClient(broker.address, credentials.createInsecure(), { 'grpc.default_compression_algorithm': compressionAlgorithms.gzip });
    const both = bothClient.makeBidiStreamRequest('/strata.v1.Log/ProduceStream', (bytes: Buffer) => bytes, (bytes: Buffer) => v1.ProduceResponse.decode(bytes), new Metadata(), { deadline: Date.now() + 10_000 });
    const bothEnded = new Promise<ServiceError | null>((resolve) => {
      both.on('error', resolve);
      both.on('end', () => resolve(null));
      both.on('data', () => undefined);
    }).finally(() => bothClient.close());
    both.write(large);
    both.write(Buffer.from(v1.ProduceRequest.encode({ topic: 'oversized', partition: 0, records: [{ value: randomBytes(MAX_REQUEST_BYTES + 1024) }], correlationId: Long.fromNumber(4) }).finish()));
    const bothError = await bothEnded;
    expect(bothError === null ? null : status[bothError.code]).toBe('RESOURCE_EXHAUSTED');

    // Any other method is told its own limit.
    const create = Buffer.from(v1.CreateTopicRequest.encode(v1.CreateTopicRequest.create({ name: 'oversized-create', partitions: 1, configs: { 'retention.ms': '1'.repeat(MAX_REQUEST_BYTES) } })).finish());
    const created = await grpcError(client.call('admin.createTopic', create));
    expect({ code: status[created.code], details: created.details }).toEqual({
      code: 'RESOURCE_EXHAUSTED',
      details: `the request to strata.v1.Admin/CreateTopic is ${create.length} bytes, over the limit of ${Math.min(MAX_REQUEST_BYTES, NON_PRODUCE_REQUEST_BYTES_MAX)} bytes for this method; only Produce and ProduceStream, which carry records, take requests up to --max-request-bytes. Check what the client puts in this request`,
    });

    // A health check is refused the same way, but it is not a Strata request and is not counted.
    const service = Buffer.alloc(MAX_REQUEST_BYTES, 'h');
    const check = Buffer.alloc(1 + uvarintSize(service.length) + service.length, 0x0a); // HealthCheckRequest { service }
    service.copy(check, writeUvarint(check, 1, service.length));
    const HealthClient = makeGenericClientConstructor({}, 'grpc.health.v1.Health');
    const healthClient = new HealthClient(broker.address, credentials.createInsecure());
    const health = await new Promise<ServiceError | null>((resolve) =>
      healthClient.makeUnaryRequest('/grpc.health.v1.Health/Check', (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, check, { deadline: Date.now() + 10_000 }, (error) => resolve(error)),
    ).finally(() => healthClient.close());
    expect(health === null ? null : status[health.code]).toBe('RESOURCE_EXHAUSTED');

    const after = await scrape();
    const counted = (method: string): number => refused(after, method) - refused(before, method);
    expect(['Produce', 'ProduceStream', 'CreateTopic'].map(counted)).toEqual([2, 3, 1]);
    expect(after).not.toMatch(/^strata_request(s_total|_errors_total)\{method="Check"/m);
    const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'oversized', partition: 0, offset: long(0) }));
    expect(answers).toEqual([1, 3]);
    expect(fetched.records.map((r) => Buffer.from(r.value!).toString())).toEqual(['fits', 'fits again']);
  });

  it('answers every ProduceStream request still running when one over --max-request-bytes arrives, before ending the stream: a request is answered if and only if it was appended', async () => {
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'oversized-burst', partitions: 1 }));
    const request = (value: string, correlationId: number): Buffer => Buffer.from(v1.ProduceRequest.encode({ topic: 'oversized-burst', partition: 0, records: [record(value)], correlationId: Long.fromNumber(correlationId) }).finish());
    const large = request('o'.repeat(MAX_REQUEST_BYTES), 999);
    const answered: number[] = [];
    const failed: string[] = [];
    for (let round = 0; round < 5; round++) {
      const stream = client.log.makeBidiStreamRequest('/strata.v1.Log/ProduceStream', (bytes: Buffer) => bytes, (bytes: Buffer) => v1.ProduceResponse.decode(bytes), new Metadata(), { deadline: Date.now() + 10_000 });
      const error = await new Promise<ServiceError | null>((resolve) => {
        stream.on('data', (answer: strata.v1.ProduceResponse) => {
          if (answer.error !== null) failed.push(answer.error.message);
          answered.push(answer.correlationId.toNumber());
        });
        stream.on('error', resolve);
        stream.on('end', () => resolve(null));
        // Written back to back: the last requests are being appended when the large one comes.
        for (let id = round * 20; id < round * 20 + 20; id++) stream.write(request(String(id), id));
        stream.write(large);
      });
      expect(error).not.toBeNull();
      expect({ code: status[error!.code], details: error!.details, trailer: error!.metadata.get('strata-error') }).toEqual({
        code: 'RESOURCE_EXHAUSTED',
        details: `the request to strata.v1.Log/ProduceStream is ${large.length} bytes, over this broker's limit of ${MAX_REQUEST_BYTES} bytes (--max-request-bytes); send smaller produce requests (fewer or smaller records in each) or raise the broker's --max-request-bytes`,
        trailer: ['RESOURCE_EXHAUSTED'],
      });
    }
    const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'oversized-burst', partition: 0, offset: long(0), maxBytes: 1024 * 1024 }));
    const appended = fetched.records.map((r) => Number(Buffer.from(r.value!).toString()));
    expect(failed).toEqual([]);
    expect(appended.length).toBeGreaterThan(0);
    expect(answered.sort((a, b) => a - b)).toEqual(appended.sort((a, b) => a - b));
  });

  it('answers a request marked gzip whose bytes do not inflate with INVALID_ARGUMENT, not INTERNAL; on a ProduceStream after answering every request it started: a request is answered if and only if it was appended', async () => {
    await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'not-inflating', partitions: 1 }));
    const request = (value: string, correlationId: number): Buffer => Buffer.from(v1.ProduceRequest.encode({ topic: 'not-inflating', partition: 0, records: [record(value)], correlationId: Long.fromNumber(correlationId) }).finish());
    const notGzip = Buffer.from('these bytes are not gzip');
    const details = (method: string): string =>
      `the request to strata.v1.Log/${method} is marked compressed, but its bytes do not inflate with the call's grpc-encoding; check the client's compression (a message's compressed flag must be set only on bytes compressed with that encoding)`;
    const scrape = async (): Promise<string> => (await globalThis.fetch(`http://${broker.metricsAddress!}/metrics`)).text();
    const counted = (text: string, method: string): number => {
      const line = text.split('\n').find((candidate) => candidate.startsWith(`strata_requests_total{method="${method}",code="INVALID_ARGUMENT"}`));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const before = await scrape();

    const unary = openRawGrpcCall(broker.address, '/strata.v1.Log/Produce', 'gzip', () => undefined);
    unary.write(notGzip, true);
    expect(await unary.ended.finally(() => unary.close())).toEqual({ code: status.INVALID_ARGUMENT, details: details('Produce'), strataError: 'INVALID_ARGUMENT' });

    const answered: number[] = [];
    for (let round = 0; round < 3; round++) {
      let started = false;
      const call = openRawGrpcCall(broker.address, '/strata.v1.Log/ProduceStream', 'gzip', (bytes) => {
        const answer = v1.ProduceResponse.decode(bytes);
        expect(answer.error).toBeNull();
        answered.push(answer.correlationId.toNumber());
        if (started) return;
        started = true;
        // Once the first is answered: a burst, the last of them still being appended when the
        // one that does not inflate comes.
        for (let id = round * 100 + 1; id < round * 100 + 40; id++) call.write(gzipSync(request(String(id), id)), true);
        setImmediate(() => call.write(notGzip, true));
      });
      call.write(gzipSync(request(String(round * 100), round * 100)), true);
      expect(await call.ended.finally(() => call.close())).toEqual({ code: status.INVALID_ARGUMENT, details: details('ProduceStream'), strataError: 'INVALID_ARGUMENT' });
    }
    const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'not-inflating', partition: 0, offset: long(0), maxBytes: 1024 * 1024 }));
    const appended = fetched.records.map((r) => Number(Buffer.from(r.value!).toString()));
    expect(appended.length).toBeGreaterThanOrEqual(3);
    expect(answered.sort((a, b) => a - b)).toEqual(appended.sort((a, b) => a - b));
    const after = await scrape();
    expect(['Produce', 'ProduceStream'].map((method) => counted(after, method) - counted(before, method))).toEqual([1, 3]);
  });

  it('has a table of at least 35 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(35);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  for (const c of cases) {
    it(`${c.name} → ${status[c.code]}`, async () => {
      const error = c.method === 'log.subscribe' ? await client.subscribeError(c.request()) : await grpcError(client.call(c.method, c.request()));
      expect({ code: status[error.code], details: error.details }).toMatchObject({ code: status[c.code] });
      expect(error.details).toMatch(c.message);
    });
  }

  describe('afterwards', () => {
    it('created nothing outside <dataDir>/topics and no directory for any refused topic', () => {
      const tree: string[] = [];
      const walk = (directory: string): void => {
        for (const entry of readdirSync(directory, { withFileTypes: true })) {
          const path = join(directory, entry.name);
          tree.push(relative(broker.dataDir, path));
          if (entry.isDirectory()) walk(path);
        }
      };
      walk(broker.dataDir);
      const topLevel = readdirSync(broker.dataDir);
      for (const entry of topLevel) expect(entry).toMatch(/^(topics|metadata\.mdb(-lock)?|deleted|\.lock)$/);
      expect(readdirSync(join(broker.dataDir, 'topics')).sort()).toEqual(['good', 'malformed', 'not-inflating', 'oversized', 'oversized-burst', 'small']);
      expect(readdirSync(join(broker.dataDir, 'topics', 'good')).sort()).toEqual(['0', '1']);
      expect(readdirSync(join(broker.dataDir, 'topics', 'small'))).toEqual(['0']);
      for (const path of tree) expect(path).not.toMatch(/etc|escape|sp ace|tøpic|主题|nnnnnnnn|bad-config|parts/);
    });

    it('still serves: earlier data intact, refused appends took no offsets, a round trip works', async () => {
      expect(unhandled).toEqual([]);
      expect(broker.broker.ready).toBe(true);
      const description = await client.call<strata.v1.TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'good' }));
      expect(description.partitions.map((partition) => [partition.logEndOffset.toNumber(), partition.error])).toEqual([[3, ''], [1, '']]);
      expect(description.configs['retention.ms']).toBe(String(7 * 24 * 60 * 60 * 1000)); // failed alters changed nothing
      expect(description.configs['max.message.bytes']).toBe(String(MAX_REQUEST_BYTES / 2));
      const produced = await client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({ topic: 'good', partition: 0, records: [record('after')] }));
      expect(produced.batches[0]!.baseOffset.toNumber()).toBe(goodValues.length);
      const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'good', partition: 0, offset: long(0) }));
      expect(fetched.records.map((r) => Buffer.from(r.value!).toString())).toEqual([...goodValues, 'after']);
      expect(fetched.records.map((r) => r.offset.toNumber())).toEqual([0, 1, 2, 3]);
      // The idempotent producer continues at sequence 1 after the refused gaps.
      const next = await client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({ topic: 'good', partition: 1, records: [record('idem-1')], producerId, producerEpoch: 0, baseSequence: 1 }));
      expect(next.batches[0]).toMatchObject({ duplicate: false });
      expect(next.batches[0]!.baseOffset.toNumber()).toBe(1);
      // The small topic still takes a batch that fits.
      const small = await client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({ topic: 'small', partition: 0, batch: batchOf('fits') }));
      expect(small.batches[0]!.baseOffset.toNumber()).toBe(0);
    });
  });
});

describe('large requests (broker at the default --max-request-bytes of 64 MiB)', () => {
  const shared = useSharedBroker();
  /** A few MiB: over the 1 MiB limit of non-produce requests, far under the server's 64 MiB. */
  const OVER_LIMIT_BYTES = 3 * 1024 * 1024;
  const tooLarge = (method: string, bytes: number): RegExp =>
    new RegExp(`^the request to strata\\.v1\\.${method} is ${bytes} bytes, over the limit of ${NON_PRODUCE_REQUEST_BYTES_MAX} bytes for this method; only Produce and ProduceStream, which carry records, take requests up to --max-request-bytes`);

  beforeAll(async () => {
    await shared.client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'large', partitions: 1 }));
  });

  it('refuses a Heartbeat of 3 MiB of packed owned partitions with RESOURCE_EXHAUSTED, before decoding it', async () => {
    // Each packed zero is one byte, and decoded, an array element and an object.
    const partitions = new Array<number>(OVER_LIMIT_BYTES).fill(0);
    const bytes = Buffer.from(v1.HeartbeatRequest.encode(v1.HeartbeatRequest.create({ groupId: 'large', memberEpoch: 0, ownedPartitions: [{ topic: 'large', partitions }] })).finish());
    const error = await grpcError(shared.client.call('groups.heartbeat', bytes));
    expect(status[error.code]).toBe('RESOURCE_EXHAUSTED');
    expect(error.details).toMatch(tooLarge('Groups/Heartbeat', bytes.length));
  });

  it('refuses a CreateTopic over 1 MiB with RESOURCE_EXHAUSTED and creates nothing', async () => {
    const bytes = Buffer.from(v1.CreateTopicRequest.encode(v1.CreateTopicRequest.create({ name: 'large-configs', partitions: 1, configs: { 'retention.ms': '1'.repeat(OVER_LIMIT_BYTES) } })).finish());
    const error = await grpcError(shared.client.call('admin.createTopic', bytes));
    expect(status[error.code]).toBe('RESOURCE_EXHAUSTED');
    expect(error.details).toMatch(tooLarge('Admin/CreateTopic', bytes.length));
    expect(shared.broker.broker.hasTopic('large-configs')).toBe(false);
  });

  it('ends a Subscribe over 1 MiB with RESOURCE_EXHAUSTED', async () => {
    const bytes = Buffer.from(v1.SubscribeRequest.encode(v1.SubscribeRequest.create({ topic: 'large', partitions: new Array<number>(OVER_LIMIT_BYTES).fill(0) })).finish());
    const error = await shared.client.subscribeError(bytes);
    expect(status[error.code]).toBe('RESOURCE_EXHAUSTED');
    expect(error.details).toMatch(tooLarge('Log/Subscribe', bytes.length));
  });

  it('ends a CommitOffsetsStream at a commit over 1 MiB with RESOURCE_EXHAUSTED, after answering the one before', async () => {
    const encode = (request: strata.v1.CommitOffsetsRequest): Buffer => Buffer.from(v1.CommitOffsetsRequest.encode(request).finish());
    const small = encode(v1.CommitOffsetsRequest.create({ groupId: 'large-commits', correlationId: Long.fromNumber(1, true), offsets: [{ topic: 'large', partition: 0, offset: Long.ZERO }] }));
    const large = encode(v1.CommitOffsetsRequest.create({ groupId: 'large-commits', correlationId: Long.fromNumber(2, true), offsets: [{ topic: 'large', partition: 0, offset: Long.ZERO, metadata: 'm'.repeat(OVER_LIMIT_BYTES) }] }));
    const stream = shared.client.groups.makeBidiStreamRequest('/strata.v1.Groups/CommitOffsetsStream', (request: Buffer) => request, (response: Buffer) => v1.CommitOffsetsResponse.decode(response), new Metadata(), { deadline: Date.now() + 10_000 });
    const answered: number[] = [];
    const error = await new Promise<ServiceError>((resolve) => {
      stream.on('data', (response: strata.v1.CommitOffsetsResponse) => answered.push(Long.fromValue(response.correlationId).toNumber()));
      stream.on('error', resolve);
      stream.write(small);
      stream.write(large);
    });
    expect(answered).toEqual([1]);
    expect(status[error.code]).toBe('RESOURCE_EXHAUSTED');
    expect(error.details).toMatch(tooLarge('Groups/CommitOffsetsStream', large.length));
  });

  it(`refuses a Produce of ${PRODUCE_REQUEST_RECORDS_MAX + 1} empty records with RESOURCE_EXHAUSTED, before parsing them`, async () => {
    // Two bytes each on the wire (under 5 MiB in all), seven each in the batch built from them.
    const emptyRecord = Buffer.from([(3 << 3) | 2, 0]);
    const fields = v1.ProduceRequest.encode(v1.ProduceRequest.create({ topic: 'large', partition: 0 })).finish();
    const bytes = Buffer.concat([fields, Buffer.alloc((PRODUCE_REQUEST_RECORDS_MAX + 1) * emptyRecord.length, emptyRecord)]);
    const error = await grpcError(shared.client.call('log.produce', bytes));
    expect({ code: status[error.code], details: error.details }).toEqual({
      code: 'RESOURCE_EXHAUSTED',
      details: `the produce request carries more than ${PRODUCE_REQUEST_RECORDS_MAX} records, more than fit in one batch (a record takes at least 7 bytes in a batch, and no partition accepts a batch over 16777216 bytes); send the records in several requests`,
    });
  });

  it('still serves afterwards: a produce and a fetch round trip, a member joins, a topic is created', async () => {
    const produced = await shared.client.call<strata.v1.ProduceResponse>('log.produce', v1.ProduceRequest.create({ topic: 'large', partition: 0, records: [record('after')] }));
    expect(produced.batches[0]!.baseOffset.toNumber()).toBe(0); // the refused produce took no offsets
    const fetched = await shared.client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: 'large', partition: 0, offset: long(0) }));
    expect(fetched.records.map((r) => Buffer.from(r.value!).toString())).toEqual(['after']);
    const joined = await shared.client.call<strata.v1.HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'large', memberEpoch: 0, subscribedTopicNames: ['large'] }));
    expect(joined.memberId).not.toBe('');
    const created = await shared.client.call<strata.v1.TopicDescription>('admin.createTopic', v1.CreateTopicRequest.create({ name: 'large-after', partitions: 1 }));
    expect(created.partitions).toHaveLength(1);
  });
});

/** The file holds `size` bytes of log, then at most the zero padding of a direct write's last block. */
function expectLogThenPadding(file: string, size: number): void {
  const bytes = readFileSync(file);
  expect(bytes.length).toBeGreaterThanOrEqual(size);
  expect(bytes.length - size).toBeLessThan(4096);
  expect(bytes.subarray(size).every((byte) => byte === 0)).toBe(true);
}

describe('disk full (broker with an injected FileSystem)', () => {
  let dataDir: string;
  let fs: TestFileSystem;
  let broker: Broker;
  beforeAll(async () => {
    dataDir = temporaryDirectory('strata-disk-full-');
    fs = new TestFileSystem();
    broker = await Broker.open({ dataDir, fs });
    await broker.createTopic('df', 1, {});
  });
  afterAll(async () => {
    await broker?.close();
    removeDirectory(dataDir);
  });

  const values = (log: { read(offset: number, maxBytes: number): Promise<{ batches: Buffer }> }) =>
    log.read(0, 1024 * 1024).then(({ batches }) => decodeBatches(batches).map((r) => [r.offset, r.value!.toString()]));

  it('refuses the append with DISK_FULL (RESOURCE_EXHAUSTED), rolls it back and continues contiguously', async () => {
    const first = await broker.produceBatches('df', 0, batchOf('a', 'b'), 'all');
    expect(first.batches[0]).toMatchObject({ baseOffset: 0, lastOffset: 1 });
    const log = broker.partitionLog('df', 0);
    const segmentFile = join(dataDir, 'topics', 'df', '0', '00000000000000000000.log');
    const sizeBefore = log.sizeBytes;
    expectLogThenPadding(segmentFile, sizeBefore);

    fs.diskFull = true;
    const error = await broker.produceBatches('df', 0, batchOf('lost-1', 'lost-2', 'lost-3'), 'all').then(
      () => {
        throw new Error('expected DISK_FULL');
      },
      (failure: unknown) => failure,
    );
    expect(fs.diskFullFailures).toBe(1);
    expect(error).toBeInstanceOf(StrataError);
    expect((error as StrataError).code).toBe(ErrorCode.DISK_FULL);
    expect((error as StrataError).message).toMatch(/disk full: cannot append to df-0; nothing was written/);
    expect(STATUS_FOR_CODE[ErrorCode.DISK_FULL]).toBe(status.RESOURCE_EXHAUSTED);
    expect(toGrpcFailure(error)).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: (error as StrataError).message, unexpected: false });
    // The records path fails the same way while the disk is full.
    await expect(broker.produceRecords('df', 0, RecordRanges.of([{ value: Buffer.from('lost-4') }]), 'leader', null)).rejects.toMatchObject({ code: ErrorCode.DISK_FULL });

    // Nothing partial is visible, in memory or on disk; the partition is not fenced.
    expect(log.fenced).toBeNull();
    expect(log.logEndOffset).toBe(2);
    expect(log.highWatermark).toBe(2);
    expect(log.sizeBytes).toBe(sizeBefore);
    expect(statSync(segmentFile).size).toBe(sizeBefore);
    expect(await values(log)).toEqual([[0, 'a'], [1, 'b']]);

    fs.diskFull = false;
    const after = await broker.produceBatches('df', 0, batchOf('c'), 'all');
    expect(after.batches[0]).toMatchObject({ baseOffset: 2, lastOffset: 2 });
    const more = await broker.produceRecords('df', 0, RecordRanges.of([{ value: Buffer.from('d') }, { value: Buffer.from('e') }]), 'all', null);
    expect(more.batches[0]).toMatchObject({ baseOffset: 3, lastOffset: 4 });
    expect(await values(log)).toEqual([[0, 'a'], [1, 'b'], [2, 'c'], [3, 'd'], [4, 'e']]);
  });

  it('lets an idempotent producer retry the refused sequence once space is back', async () => {
    const { producerId } = await broker.initProducer();
    const producer = (baseSequence: number) => ({ producerId, producerEpoch: 0, baseSequence });
    await broker.produceRecords('df', 0, RecordRanges.of([{ value: Buffer.from('s0') }]), 'all', producer(0));
    fs.diskFull = true;
    await expect(broker.produceRecords('df', 0, RecordRanges.of([{ value: Buffer.from('s1') }]), 'all', producer(1))).rejects.toMatchObject({ code: ErrorCode.DISK_FULL });
    fs.diskFull = false;
    // Sequence 1 was never written: the retry is appended (not a duplicate, not a gap).
    const retry = await broker.produceRecords('df', 0, RecordRanges.of([{ value: Buffer.from('s1') }]), 'all', producer(1));
    expect(retry.batches[0]).toMatchObject({ baseOffset: 6, lastOffset: 6, duplicate: false });
    const log = broker.partitionLog('df', 0);
    expect((await values(log)).slice(5)).toEqual([[5, 's0'], [6, 's1']]);
  });

  it('counts each failed write in strata_log_write_failures_total, that of an acks=none append answered before it too', async () => {
    const metrics = new BrokerMetrics();
    const groups = new GroupCoordinator(broker, { sessionTimeoutMs: 45_000, heartbeatIntervalMs: 5_000, sessionCheckIntervalMs: 3_600_000 });
    try {
      metrics.attach(broker, groups);
      const failures = (): number => broker.writeFailureTotals().get(ErrorCode.DISK_FULL) ?? 0;
      const before = failures();
      expect(before).toBeGreaterThan(0); // the refusals of the tests above
      fs.diskFull = true;
      // Answered once queued: the write fails after the answer, which cannot say so.
      await expect(broker.produceBatches('df', 0, batchOf('unwaited'), 'none')).resolves.toBeDefined();
      await waitUntil(() => failures() === before + 1, 'the failed write counted');
      fs.diskFull = false;
      const scraped = /^strata_log_write_failures_total\{error="DISK_FULL"\} (\d+)$/m.exec(await metrics.registry.metrics());
      expect(Number(scraped?.[1])).toBe(before + 1);
      // Rolled back like the others: the next append follows the last acknowledged record.
      const next = await broker.produceBatches('df', 0, batchOf('after'), 'all');
      expect(next.batches[0]).toMatchObject({ baseOffset: 7, lastOffset: 7 });
    } finally {
      await groups.close();
    }
  });

  it('reopens with exactly the acknowledged records', async () => {
    await broker.close();
    broker = await Broker.open({ dataDir });
    const log = broker.partitionLog('df', 0);
    expect(log.recovery?.bytesTruncated ?? 0).toBe(0);
    expect((await values(log)).map(([, value]) => value)).toEqual(['a', 'b', 'c', 'd', 'e', 's0', 's1', 'after']);
  });
});

describe('a topic change that fails partway (broker with an injected FileSystem)', () => {
  const partway = useBrokerOnTestFileSystem('strata-partway-');

  it.runIf(existsSync('/proc/self/fd'))('CreateTopic closes the partitions it opened and removes their directories; a retry then works', async () => {
    partway.fs.openError = { pathIncludes: join('topics', 'half', '2'), code: 'EMFILE' };
    await expect(partway.broker.createTopic('half', 3, {})).rejects.toMatchObject({
      code: ErrorCode.STORAGE_ERROR, // UNAVAILABLE: a retry may work
      message: 'cannot create topic "half": a file operation in the data directory failed with EMFILE; the topic is as it was, and the broker log names the file',
    });
    partway.fs.openError = { pathIncludes: join('topics', 'full', '1'), code: 'ENOSPC' };
    await expect(partway.broker.createTopic('full', 2, {})).rejects.toMatchObject({ code: ErrorCode.DISK_FULL, message: expect.stringMatching(/failed with ENOSPC \(disk full\)/) as unknown as string });
    expect(existsSync(join(partway.dataDir, 'topics', 'full'))).toBe(false);
    partway.fs.openError = null;
    expect(openFilesUnder(join(partway.dataDir, 'topics', 'half'))).toEqual([]);
    expect(existsSync(join(partway.dataDir, 'topics', 'half'))).toBe(false);
    expect(partway.broker.hasTopic('half')).toBe(false);
    expect((await partway.broker.createTopic('half', 3, {})).partitions).toHaveLength(3);
  });

  it('CreateTopic and AddPartitions make the new directories\' entries durable in their parents before the metadata names them', async () => {
    const topics = join(partway.dataDir, 'topics');
    const synced = partway.fs.syncedDirectories;
    synced.length = 0;
    await partway.broker.createTopic('synced', 2, {});
    expect(synced).toEqual(expect.arrayContaining([join(topics, 'synced', '0'), join(topics, 'synced', '1'), join(topics, 'synced'), topics]));
    expect(synced.lastIndexOf(topics)).toBeGreaterThan(synced.lastIndexOf(join(topics, 'synced', '1')));
    synced.length = 0;
    await partway.broker.addPartitions('synced', 3);
    expect(synced).toEqual(expect.arrayContaining([join(topics, 'synced', '2'), join(topics, 'synced'), topics]));
  });

  it.runIf(existsSync('/proc/self/fd'))('AddPartitions closes the partitions it opened and removes their directories; the topic keeps its count', async () => {
    await partway.broker.createTopic('grow', 1, {});
    await partway.broker.produceBatches('grow', 0, batchOf('kept'), 'all');
    partway.fs.openError = { pathIncludes: join('topics', 'grow', '3'), code: 'EMFILE' };
    await expect(partway.broker.addPartitions('grow', 4)).rejects.toMatchObject({ code: ErrorCode.STORAGE_ERROR, message: expect.stringMatching(/^cannot add partitions to topic "grow": .* failed with EMFILE/) as unknown as string });
    partway.fs.openError = null;
    expect(openFilesUnder(join(partway.dataDir, 'topics', 'grow')).filter((path) => !path.includes(join('grow', '0')))).toEqual([]);
    expect(readdirSync(join(partway.dataDir, 'topics', 'grow'))).toEqual(['0']);
    expect(partway.broker.partitionCount('grow')).toBe(1);
    expect((await partway.broker.addPartitions('grow', 4)).partitions).toHaveLength(4);
    const { batches } = await partway.broker.partitionLog('grow', 0).read(0, 1024 * 1024);
    expect(decodeBatches(batches).map((record) => record.value!.toString())).toEqual(['kept']);
  });

  it('AddPartitions that cannot list the topic directory (EMFILE) fails before it opens anything, and removes nothing', async () => {
    await partway.broker.createTopic('listed', 1, {});
    await partway.broker.produceBatches('listed', 0, batchOf('kept'), 'all');
    partway.fs.readdirError = { pathIncludes: join('topics', 'listed'), code: 'EMFILE' };
    partway.fs.openError = { pathIncludes: join('topics', 'listed', '1'), code: 'EMFILE' };
    await expect(partway.broker.addPartitions('listed', 2)).rejects.toThrow(/EMFILE/);
    partway.fs.readdirError = null;
    partway.fs.openError = null;
    expect(readdirSync(join(partway.dataDir, 'topics', 'listed'))).toEqual(['0']);
    expect(partway.broker.partitionCount('listed')).toBe(1);
    const { batches } = await partway.broker.partitionLog('listed', 0).read(0, 1024 * 1024);
    expect(decodeBatches(batches).map((record) => record.value!.toString())).toEqual(['kept']);
    expect(readdirSync(join(partway.dataDir, 'topics', 'listed', '0')).length).toBeGreaterThan(0);
  });

  it('CreateTopic that cannot list a directory already there (EMFILE) leaves it: only "no such directory" means the change made it', async () => {
    // What is there cannot be known, so it is not the change's to remove: a guess that the
    // call made the directory would remove the whole topic directory with it.
    const kept = join(partway.dataDir, 'topics', 'unlisted', '0', 'kept');
    mkdirSync(join(partway.dataDir, 'topics', 'unlisted', '0'), { recursive: true });
    writeFileSync(kept, 'not the change\'s to remove');
    partway.fs.readdirError = { pathIncludes: join('topics', 'unlisted'), code: 'EMFILE' };
    await expect(partway.broker.createTopic('unlisted', 1, {})).rejects.toThrow(/EMFILE/);
    partway.fs.readdirError = null;
    expect(readFileSync(kept, 'utf8')).toBe('not the change\'s to remove');
    expect(partway.broker.listTopics().map((topic) => topic.name)).not.toContain('unlisted');
  });
});

describe('the log of requests over the receive limit', () => {
  it('is a line at most every 10 s, however many come, with the count of those not logged', async () => {
    const lines: { msg: string; method?: string; refusedSinceLastLine?: number }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
    const running = await runBroker(testSettings(temporaryDirectory(), { maxRequestBytes: MAX_REQUEST_BYTES, topicDefaults: { ...DEFAULT_LOG_CONFIG, maxMessageBytes: MAX_REQUEST_BYTES / 2 } }), logger);
    const client = new TestClient(`127.0.0.1:${running.server.port}`);
    try {
      const large = v1.ProduceRequest.create({ topic: 'any', partition: 0, records: [record('o'.repeat(MAX_REQUEST_BYTES))] });
      for (let call = 0; call < 3; call++) expect((await grpcError(client.call('log.produce', large))).code).toBe(status.RESOURCE_EXHAUSTED);
      const refusals = lines.filter((entry) => entry.msg.startsWith('request refused: over the receive limit'));
      expect(refusals).toMatchObject([{ method: 'Produce', refusedSinceLastLine: 0 }]);
    } finally {
      client.close();
      await running.stop();
      removeDirectory(running.broker.dataDir);
    }
  });
});
