/**
 * The no-op server: Strata's gRPC services with the same message shapes, and nothing behind
 * them. It is the transport ceiling of a machine (grpc-js, HTTP/2, protobuf, loopback TCP) that
 * the benchmark compares Strata with, in the same run and with the same grpc-js settings
 * (`widenFlowControlWindows`, message size limits).
 *
 * What it answers, so that the unmodified client (Producer, Consumer, Admin) runs against it:
 * - Admin: CreateTopic remembers a partition count, DescribeTopic and ListTopics report it.
 * - Log: InitProducer hands out ids and the broker's window of batches in flight. Produce and
 *   ProduceStream count the records of each
 *   request (raw batches: from the batch headers; plain records: the list) and answer with
 *   contiguous offsets per partition, as the broker does; nothing is stored except, per
 *   partition, one raw batch received: the first of the largest size so far, so a full batch
 *   of the fill rather than its last, partly filled one (which may hold a single record).
 *   Fetch serves copies of that batch with rewritten base offsets up to the partition's end
 *   offset and `max_bytes`, so a catch-up read gets the full batches the producer sent, the
 *   shape Strata's log holds; Subscribe pushes the same from its start offset up to the end
 *   offset, then relays each batch produced after that as it arrives (its base offset set, as
 *   the broker sets it), so the e2e workload measures the transport alone: one produce request
 *   and one push, with nothing stored or synced in between. ListOffsets answers earliest 0 and
 *   latest = the end offset.
 *   The Groups service is not served (UNIMPLEMENTED), and plain records are counted, not kept,
 *   so `strata bench baseline --workload consume` refuses --group and --path records.
 *
 * Memory is bounded: one batch per partition, and per subscriber what grpc-js holds until the
 * stream drains.
 */
import {
  Server,
  ServerCredentials,
  status,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import Long from 'long';
import { join } from 'node:path';
import { formatListenAddress, parseListenAddress } from '../common/listen-address.js';
import { PACKAGE_ROOT } from '../common/package-root.js';
import { DEFAULT_MAX_REQUEST_BYTES } from '../common/request-limits.js';
import { BROKER_NODE_FLAGS } from '../config/node-flags.js';
import { strata } from '../generated/strata.js';
import { widenFlowControlWindows } from '../server/grpc-server.js';
import { adminServiceDefinition, logServiceDefinition } from '../server/service-definitions.js';
import { PRODUCER_BATCH_WINDOW } from '../storage/producer-state.js';
import { forEachBatch, readRecordCount, writeBaseOffset } from '../storage/record-batch.js';
import { ServerProcess } from './server-process.js';

const v1 = strata.v1;

/** The broker's own limit (`--max-request-bytes` default). */
const MAX_REQUEST_BYTES = DEFAULT_MAX_REQUEST_BYTES;
const FETCH_BYTES_DEFAULT = 1024 * 1024;
/** A fetch at the end of a partition waits at most this long before answering empty. */
const FETCH_IDLE_WAIT_MAX_MS = 1_000;

/** A subscriber at the end of a partition: handed each batch as it is produced. */
type LiveSubscriber = (batch: Buffer, baseOffset: number, nextOffset: number) => void;

interface NoopPartition {
  endOffset: number;
  /** The first of the largest raw batches produced to the partition; Fetch serves copies of it. */
  template: Buffer | null;
  templateRecords: number;
  /** Subscribers caught up with `endOffset`. */
  live: Set<LiveSubscriber>;
}

interface NoopTopic {
  partitions: number;
  createdAtMs: number;
  state: Map<number, NoopPartition>;
}

export interface NoopServer {
  address: string;
  stop(): void;
}

export class NoopState {
  private readonly topics = new Map<string, NoopTopic>();
  private nextProducerId = 1;

  createTopic(name: string, partitions: number): NoopTopic | null {
    if (this.topics.has(name)) return null;
    const topic: NoopTopic = { partitions: Math.max(1, partitions), createdAtMs: Date.now(), state: new Map() };
    this.topics.set(name, topic);
    return topic;
  }

  topic(name: string): NoopTopic | undefined {
    return this.topics.get(name);
  }

  listTopics(): { name: string; partitions: number }[] {
    return [...this.topics].map(([name, topic]) => ({ name, partitions: topic.partitions }));
  }

  producerId(): number {
    return this.nextProducerId++;
  }

  /** The partition's state; a topic nobody created is created with one partition per use. */
  partition(topicName: string, partition: number): NoopPartition {
    let topic = this.topics.get(topicName);
    if (topic === undefined) this.topics.set(topicName, (topic = { partitions: partition + 1, createdAtMs: Date.now(), state: new Map() }));
    let state = topic.state.get(partition);
    if (state === undefined) topic.state.set(partition, (state = { endOffset: 0, template: null, templateRecords: 0, live: new Set() }));
    return state;
  }

  produce(request: strata.v1.ProduceRequest): strata.v1.ProduceResponse {
    const partitionNumber = request.partition ?? 0;
    const partition = this.partition(request.topic, partitionNumber);
    const appended: strata.v1.AppendedBatch[] = [];
    const append = (count: number): void => {
      appended.push(
        v1.AppendedBatch.create({
          partition: partitionNumber,
          baseOffset: Long.fromNumber(partition.endOffset),
          lastOffset: Long.fromNumber(partition.endOffset + count - 1),
        }),
      );
      partition.endOffset += count;
    };
    const bytes = request.batch;
    if (bytes !== null && bytes !== undefined && bytes.length > 0) {
      const batches = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      forEachBatch(batches, (position, size) => {
        const count = readRecordCount(batches, position);
        const batch = batches.subarray(position, position + size);
        const baseOffset = partition.endOffset;
        writeBaseOffset(batches, position, baseOffset);
        if (count > partition.templateRecords) {
          partition.template = batch;
          partition.templateRecords = count;
        }
        append(count);
        // A copy of the set (a subscriber may leave it and join again while being called), made
        // only when someone reads at the end: produce baselines have no subscriber.
        if (partition.live.size > 0) for (const subscriber of [...partition.live]) subscriber(batch, baseOffset, partition.endOffset);
      });
    } else if (request.records.length > 0) {
      append(request.records.length);
    }
    return v1.ProduceResponse.create({ correlationId: request.correlationId, batches: appended, logAppendTimeMs: Long.fromNumber(Date.now()) });
  }

  /** Copies of the partition's template batch from `offset`, within `maxBytes` (at least one). */
  fetch(topic: string, partitionNumber: number, offset: number, maxBytes: number): { batches: Buffer; nextOffset: number; highWatermark: number } {
    const partition = this.partition(topic, partitionNumber);
    const template = partition.template;
    if (template === null || offset >= partition.endOffset) return { batches: Buffer.alloc(0), nextOffset: offset, highWatermark: partition.endOffset };
    const count = Math.max(1, Math.min(Math.floor(maxBytes / template.length), Math.ceil((partition.endOffset - offset) / partition.templateRecords)));
    const batches = Buffer.allocUnsafe(count * template.length);
    let next = offset;
    for (let index = 0; index < count; index++) {
      template.copy(batches, index * template.length);
      writeBaseOffset(batches, index * template.length, next);
      next += partition.templateRecords;
    }
    return { batches, nextOffset: next, highWatermark: partition.endOffset };
  }
}

function describe(name: string, topic: NoopTopic): strata.v1.TopicDescription {
  return v1.TopicDescription.create({
    name,
    configs: {},
    createdAtMs: Long.fromNumber(topic.createdAtMs),
    partitions: Array.from({ length: topic.partitions }, (_, partition) =>
      v1.PartitionDescription.create({
        partition,
        logStartOffset: Long.ZERO,
        highWatermark: Long.fromNumber(topic.state.get(partition)?.endOffset ?? 0),
        logEndOffset: Long.fromNumber(topic.state.get(partition)?.endOffset ?? 0),
      }),
    ),
  });
}

function unimplemented(_call: unknown, callback: sendUnaryData<never>): void {
  callback({ code: status.UNIMPLEMENTED, details: 'not served by the no-op server' });
}

function unary<Request, Response>(handler: (request: Request) => Response): (call: ServerUnaryCall<Request, Response>, callback: sendUnaryData<Response>) => void {
  return (call, callback) => {
    try {
      callback(null, handler(call.request));
    } catch (error) {
      const failure = error as { code?: number; message?: string };
      callback({ code: failure.code ?? status.INTERNAL, details: failure.message ?? String(error) });
    }
  };
}

function notFound(what: string): Error & { code: number } {
  return Object.assign(new Error(`${what} not found`), { code: status.NOT_FOUND });
}

export function startNoopServer(listen = '127.0.0.1:0', state = new NoopState()): Promise<NoopServer> {
  const server = new Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES, 'grpc.max_send_message_length': -1 });
  server.addService(logServiceDefinition, {
    // The broker's window, so the client keeps as many batches in flight here as against it.
    initProducer: unary(() =>
      v1.InitProducerResponse.create({ producerId: Long.fromNumber(state.producerId()), producerEpoch: 0, maxInFlightBatches: PRODUCER_BATCH_WINDOW }),
    ),
    produce: unary((request: strata.v1.ProduceRequest) => state.produce(request)),
    produceStream: (call: ServerDuplexStream<strata.v1.ProduceRequest, strata.v1.ProduceResponse>) => {
      call.on('data', (request: strata.v1.ProduceRequest) => call.write(state.produce(request)));
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
    fetch: (call: ServerUnaryCall<strata.v1.FetchRequest, strata.v1.FetchResponse>, callback: sendUnaryData<strata.v1.FetchResponse>) => {
      const request = call.request;
      const offset = Long.fromValue(request.offset).toNumber();
      const answer = (): void => {
        const result = state.fetch(request.topic, request.partition, offset, request.maxBytes > 0 ? request.maxBytes : FETCH_BYTES_DEFAULT);
        callback(
          null,
          v1.FetchResponse.create({
            batches: result.batches,
            highWatermark: Long.fromNumber(result.highWatermark),
            logStartOffset: Long.ZERO,
            nextOffset: Long.fromNumber(result.nextOffset),
          }),
        );
      };
      if (offset < state.partition(request.topic, request.partition).endOffset || request.maxWaitMs <= 0) answer();
      else setTimeout(answer, Math.min(request.maxWaitMs, FETCH_IDLE_WAIT_MAX_MS));
    },
    subscribe: (call: ServerWritableStream<strata.v1.SubscribeRequest, strata.v1.SubscribeResponse>) => {
      // Pushes what Fetch would return, message after message with backpressure, up to the end
      // offset; then, caught up, each batch as it is produced (the producer's own bytes, so an
      // e2e reader finds its send times in them) until the client cancels. A subscriber that
      // falls behind (grpc-js holds what it cannot send) leaves the live set and catches up
      // with copies again once drained.
      const request = call.request;
      const partitionNumber = request.partitions[0] ?? 0;
      const partition = state.partition(request.topic, partitionNumber);
      const position = request.start?.position;
      let offset = position === 'offset' ? Long.fromValue(request.start!.offset!).toNumber() : position === 'latest' ? partition.endOffset : 0;
      const maxBytes = request.maxBytes > 0 ? request.maxBytes : FETCH_BYTES_DEFAULT;
      const send = (batches: Buffer, nextOffset: number): boolean => {
        offset = nextOffset;
        return call.write(v1.SubscribeResponse.create({ partition: partitionNumber, batches, highWatermark: Long.fromNumber(partition.endOffset), nextOffset: Long.fromNumber(nextOffset) }));
      };
      const live: LiveSubscriber = (batch, baseOffset, nextOffset) => {
        if (call.cancelled) return void partition.live.delete(live);
        if (baseOffset !== offset) {
          // Not where this subscriber stands (it started past the end, or inside this batch):
          // on from its offset as a catch-up read, which joins the set again once at the end.
          partition.live.delete(live);
          return push();
        }
        if (!send(batch, nextOffset)) {
          partition.live.delete(live);
          call.once('drain', push);
        }
      };
      const push = (): void => {
        while (!call.cancelled) {
          const result = state.fetch(request.topic, partitionNumber, offset, maxBytes);
          if (result.batches.length === 0) return void partition.live.add(live);
          if (!send(result.batches, result.nextOffset)) return void call.once('drain', push);
        }
      };
      call.once('cancelled', () => partition.live.delete(live));
      push();
    },
    listOffsets: unary((request: strata.v1.ListOffsetsRequest) => {
      const end = state.partition(request.topic, request.partition).endOffset;
      const position = request.position?.position;
      const offset = position === 'earliest' ? 0 : position === 'offset' ? Long.fromValue(request.position!.offset!).toNumber() : end;
      return v1.ListOffsetsResponse.create({ offset: Long.fromNumber(offset), logStartOffset: Long.ZERO, highWatermark: Long.fromNumber(end) });
    }),
  });
  server.addService(adminServiceDefinition, {
    createTopic: unary((request: strata.v1.CreateTopicRequest) => {
      const topic = state.createTopic(request.name, request.partitions);
      if (topic === null) throw Object.assign(new Error(`topic "${request.name}" already exists`), { code: status.ALREADY_EXISTS });
      return describe(request.name, topic);
    }),
    describeTopic: unary((request: strata.v1.DescribeTopicRequest) => {
      const topic = state.topic(request.name);
      if (topic === undefined) throw notFound(`topic "${request.name}"`);
      return describe(request.name, topic);
    }),
    listTopics: unary(() => v1.ListTopicsResponse.create({ topics: state.listTopics().map((topic) => v1.TopicSummary.create(topic)) })),
    deleteTopic: unimplemented,
    alterTopicConfigs: unimplemented,
    addPartitions: unimplemented,
  });
  return new Promise((resolve, reject) => {
    server.bindAsync(listen, ServerCredentials.createInsecure(), (error, port) => {
      if (error) return reject(error);
      widenFlowControlWindows(server); // the same transport settings as the broker
      resolve({ address: formatListenAddress(parseListenAddress(listen).host, port), stop: () => server.forceShutdown() });
    });
  });
}

/** The no-op server as a child process (its own core, like the broker's), ready to call. */
export function startNoopServerProcess(): Promise<ServerProcess> {
  return ServerProcess.start({
    // The broker's V8 flags and helper-thread priority too (`bin/strata.js` lowers the broker's;
    // an ES-module entry needs the preload): the comparison is of servers, not of their settings.
    args: [
      ...BROKER_NODE_FLAGS,
      '--require',
      join(PACKAGE_ROOT, 'dist', 'src', 'common', 'lower-helper-threads.cjs'),
      join(PACKAGE_ROOT, 'dist', 'src', 'bench', 'noop-server-main.js'),
    ],
    description: 'the no-op server',
    ready: (entry) => (typeof entry.address === 'string' ? entry.address : null),
  });
}
