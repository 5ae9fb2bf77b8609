/**
 * Offset commits pipelined on one `CommitOffsetsStream` (the Groups service). A unary
 * CommitOffsets sets up an HTTP/2 stream for each commit: headers, trailers and grpc-js's call
 * machinery, about 140 µs of client CPU and 85 µs of broker CPU on the benchmark machine. On an
 * open stream a commit is one message each way.
 *
 * Each commit keeps the connection's deadline. The stream opens with the first commit and is
 * replaced when it breaks: the commits on a broken stream fail with its status (UNAVAILABLE
 * when the connection dropped, the stream was reset or the broker ended it, which callers may
 * retry: a commit is idempotent), and a commit that runs past its deadline fails with DEADLINE_EXCEEDED and
 * takes the stream down with it, since a stream that stopped answering cannot be trusted with
 * the next one. A broker that does not have the method (UNIMPLEMENTED) gets unary calls, one
 * at a time in the order given (those the stream held first), for the rest of this object's life.
 */
import type { ClientDuplexStream, MethodDefinition } from '@grpc/grpc-js';
import Long from 'long';
import { strata } from '../generated/strata.js';
import { groupsServiceDefinition } from '../server/service-definitions.js';
import { type Connection, numberToLong } from './connection.js';
import type { TopicPartitionOffset } from './consumer.js';
import { StrataClientError, closedError, fromItemError, isBrokenStream, toClientError } from './errors.js';
import { checkPartition } from './option-checks.js';

const v1 = strata.v1;

const methods = {
  commitOffsets: groupsServiceDefinition.commitOffsets as MethodDefinition<strata.v1.CommitOffsetsRequest, strata.v1.CommitOffsetsResponse>,
  commitOffsetsStream: groupsServiceDefinition.commitOffsetsStream as MethodDefinition<strata.v1.CommitOffsetsRequest, strata.v1.CommitOffsetsResponse>,
} as const;

type CommitStream = ClientDuplexStream<strata.v1.CommitOffsetsRequest, strata.v1.CommitOffsetsResponse>;

interface PendingCommit {
  request: strata.v1.CommitOffsetsRequest;
  resolve(): void;
  reject(error: StrataClientError): void;
  timer: NodeJS.Timeout;
}

/** Builds the wire request of one commit. */
function commitOffsetsRequest(groupId: string, memberId: string, memberEpoch: number, offsets: readonly TopicPartitionOffset[]): strata.v1.CommitOffsetsRequest {
  return v1.CommitOffsetsRequest.create({
    groupId,
    memberId,
    memberEpoch,
    offsets: offsets.map(({ topic, partition, offset, topicCreatedAtMs }) =>
      v1.OffsetCommit.create({ topic, partition: checkPartition(partition), offset: numberToLong(offset, 'offset'), topicCreatedAtMs: numberToLong(topicCreatedAtMs ?? 0, 'topicCreatedAtMs') }),
    ),
  });
}

export class OffsetCommitStream {
  private stream: CommitStream | null = null;
  private readonly pending = new Map<number, PendingCommit>();
  private nextCorrelationId = 1;
  private unaryOnly: boolean;
  private closed = false;
  /** The last unary commit: each waits for the one before it, so that they land in order. */
  private unaryTail: Promise<unknown> = Promise.resolve();

  /** With `stream: false` every commit is a unary call (nothing to close then). */
  constructor(
    private readonly connection: Connection,
    options: { stream?: boolean } = {},
  ) {
    this.unaryOnly = options.stream === false;
  }

  /** Commits `offsets` for a group member (memberId '' and epoch 0 without membership); resolves once durable. */
  async commit(groupId: string, memberId: string, memberEpoch: number, offsets: readonly TopicPartitionOffset[]): Promise<void> {
    const request = commitOffsetsRequest(groupId, memberId, memberEpoch, offsets);
    if (this.closed) throw closedError('the offset commit stream');
    if (this.unaryOnly) return this.commitUnary(request);
    await new Promise<void>((resolve, reject) => this.send(request, resolve, reject));
  }

  /**
   * Commits in progress fail with CANCELLED (a unary one already sent still reaches the broker);
   * later commits are refused. Idempotent.
   */
  close(): void {
    this.closed = true;
    this.failAll(new StrataClientError('CANCELLED', 'the offset commit stream was closed before the broker answered'));
  }

  private send(request: strata.v1.CommitOffsetsRequest, resolve: () => void, reject: (error: StrataClientError) => void): void {
    let stream: CommitStream;
    try {
      stream = this.stream ?? this.open();
    } catch (error) {
      reject(toClientError(error));
      return;
    }
    const correlationId = this.nextCorrelationId++;
    request.correlationId = Long.fromNumber(correlationId, true);
    const deadlineMs = this.connection.deadlineMs;
    const timer = setTimeout(() => {
      if (!this.pending.delete(correlationId)) return;
      reject(new StrataClientError('DEADLINE_EXCEEDED', `the broker did not answer an offset commit within ${deadlineMs} ms`));
      this.restart(stream, new StrataClientError('UNAVAILABLE', 'the offset commit stream was restarted after a commit timed out'));
    }, deadlineMs);
    this.pending.set(correlationId, { request, resolve, reject, timer });
    stream.write(request);
  }

  private open(): CommitStream {
    const stream = this.connection.bidiStream(methods.commitOffsetsStream);
    this.stream = stream;
    stream.on('data', (response: strata.v1.CommitOffsetsResponse) => this.onResponse(stream, response));
    stream.on('error', (error: Error) => this.onEnded(stream, toClientError(error)));
    stream.on('status', (status: { code: number }) => {
      if (status.code === 0) this.onEnded(stream, new StrataClientError('UNAVAILABLE', 'the broker ended the offset commit stream'));
    });
    return stream;
  }

  private onResponse(stream: CommitStream, response: strata.v1.CommitOffsetsResponse): void {
    if (stream !== this.stream) return;
    const correlationId = Long.fromValue(response.correlationId).toNumber();
    const commit = this.pending.get(correlationId);
    if (commit === undefined) return; // timed out meanwhile
    this.pending.delete(correlationId);
    clearTimeout(commit.timer);
    if (response.error) commit.reject(fromItemError(response.error));
    else commit.resolve();
  }

  private onEnded(stream: CommitStream, error: StrataClientError): void {
    if (stream !== this.stream) return;
    this.stream = null;
    if (error.code === 'UNIMPLEMENTED') {
      // A broker from before CommitOffsetsStream: nothing on the stream was applied.
      this.unaryOnly = true;
      const waiting = [...this.pending.values()];
      this.clearPending();
      this.resendUnary(waiting);
      return;
    }
    this.failAll(isBrokenStream(error) ? new StrataClientError('UNAVAILABLE', `the offset commit stream broke (${error.code}: ${error.message})`, { cause: error }) : error);
  }

  /** A unary commit reset under way (not refused by the broker) fails as UNAVAILABLE, as one on the stream does. */
  private static unaryFailure(failure: StrataClientError): StrataClientError {
    if (failure.fromBroker || !isBrokenStream(failure)) return failure;
    return new StrataClientError('UNAVAILABLE', `the offset commit call broke (${failure.code}: ${failure.message})`, { cause: failure });
  }

  /** Sends commits the stream could not carry as unary calls, in order, before any made later. */
  private resendUnary(commits: readonly PendingCommit[]): void {
    for (const commit of commits) this.commitUnary(commit.request).then(commit.resolve, commit.reject);
  }

  /**
   * A unary commit, sent once every earlier one has been answered: a later commit sent at once
   * could land before an earlier one and be overwritten by it. One not yet sent at close() fails.
   */
  private commitUnary(request: strata.v1.CommitOffsetsRequest): Promise<void> {
    const sent = this.unaryTail.then(async () => {
      if (this.closed) throw new StrataClientError('CANCELLED', 'the offset commit stream was closed before the commit was sent');
      try {
        await this.connection.unary(methods.commitOffsets, request);
      } catch (error) {
        throw OffsetCommitStream.unaryFailure(toClientError(error));
      }
    });
    this.unaryTail = sent.catch(() => undefined);
    return sent.catch((failure: unknown) => {
      throw toClientError(failure);
    });
  }

  private restart(stream: CommitStream, error: StrataClientError): void {
    if (stream !== this.stream) return;
    this.stream = null;
    stream.cancel();
    this.failAll(error);
  }

  private failAll(error: StrataClientError): void {
    const waiting = [...this.pending.values()];
    this.clearPending();
    const stream = this.stream;
    this.stream = null;
    stream?.cancel();
    for (const commit of waiting) commit.reject(error);
  }

  private clearPending(): void {
    for (const commit of this.pending.values()) clearTimeout(commit.timer);
    this.pending.clear();
  }
}
