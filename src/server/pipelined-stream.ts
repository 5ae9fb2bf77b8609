/**
 * A bidirectional stream of independent requests, each answered by one response that carries
 * its correlation id (ProduceStream, CommitOffsetsStream). Requests run concurrently and are
 * answered as they finish; a failed request is answered with an error response and the stream
 * stays open. When `inFlightMax` requests, or `inFlightBytesMax` bytes of them, are unanswered
 * the handler stops reading, so HTTP/2 flow control holds the client back; it reads again below
 * half of both. (A count alone would let 256 produce requests of 64 MiB each sit in memory.)
 * With a `sharedMemory`, the bytes also count against that bound, shared by every stream of the
 * kind: while it is full the stream stops reading too, and it reads again below half of it.
 * A request counts as
 * unanswered until grpc-js has sent its response (the write callback), not merely been handed
 * it: a client that stops reading responses then stops the stream too, instead of making the
 * broker buffer an answer to everything it sends. The stream ends (status OK) once the client
 * has ended its side and every request is answered. When the broker shuts
 * down it stops reading, answers the requests it has started, and ends the stream the same way:
 * requests it never read are never run and get no answer, and clients treat them as
 * UNAVAILABLE. (Answering them UNAVAILABLE at once would overtake the answers still to come
 * for earlier requests, and a client that restarts its stream on such an error would lose
 * those.) A request whose bytes do not decode has no correlation id to be answered by: the
 * stream stops reading there, answers the requests before it, and ends with INVALID_ARGUMENT
 * (RESOURCE_EXHAUSTED for one over its size limit, which `transport-refusals.ts` hands on
 * here when grpc-js refuses it).
 */
import { type ServerDuplexStream, type ServiceError, status } from '@grpc/grpc-js';
import { StrataError } from '../common/errors.js';
import { MalformedRequest } from './malformed-request.js';
import type { RequestMemory } from './request-memory.js';
import { toGrpcFailure, toServiceError } from './status.js';
import { type HandlerContext, countRequest, logRequestFailure } from './unary-handler.js';

export interface PipelinedStreamHandler<Request, Response> {
  /** Method name for metrics and logs. */
  method: string;
  inFlightMax: number;
  /** Bound on the bytes of unanswered requests, with `requestBytes` (none without it). */
  inFlightBytesMax?: number;
  requestBytes?(request: Request): number;
  /** The bound on unanswered bytes shared with other calls (see RequestMemory), with `requestBytes`. */
  sharedMemory?: RequestMemory | null;
  /** Answers one request of `call`. */
  handle(request: Request, call: ServerDuplexStream<Request, Response>): Promise<Response>;
  /** The response to a request that failed with this status (and Strata's code, '' for an unexpected failure). */
  failed(request: Request, code: status, message: string, strataError: string): Response;
}

export function pipelinedStream<Request, Response>(
  context: HandlerContext,
  stopping: AbortSignal,
  handler: PipelinedStreamHandler<Request, Response>,
): (call: ServerDuplexStream<Request, Response>) => void {
  const { method, inFlightMax } = handler;
  const inFlightBytesMax = handler.inFlightBytesMax ?? Number.POSITIVE_INFINITY;
  const shared = handler.sharedMemory ?? null;
  const logger = context.logger;
  return (call) => {
    let inFlight = 0;
    let inFlightBytes = 0;
    let ended = false;
    let paused = false;
    /** Paused with the shared memory full: reads again only once it is below half. */
    let waitsForShared = false;
    let finished = false;
    let closed = false;
    /** The status the stream ends with after a request that did not decode. */
    let refusal: Partial<ServiceError> | null = null;
    const finishIfDone = (): void => {
      if (ended && inFlight === 0 && !finished) {
        finished = true;
        if (refusal === null) call.end();
        else call.emit('error', refusal);
      }
    };
    const endOfRequests = (): void => {
      ended = true;
      finishIfDone();
    };
    const stop = (): void => {
      call.pause();
      endOfRequests();
    };
    if (stopping.aborted) stop();
    else stopping.addEventListener('abort', stop, { once: true });
    /** Reads again once this stream's requests are below half its bounds and the shared memory has room. */
    const resumeIfRoom = (): void => {
      if (!paused || finished || closed || stopping.aborted || refusal !== null) return;
      if (inFlight >= inFlightMax / 2 || inFlightBytes >= inFlightBytesMax / 2) return;
      if (shared !== null && (waitsForShared ? !shared.belowHalf : shared.full)) {
        waitsForShared = true;
        shared.waitForRoom(onRoom);
        return;
      }
      paused = false;
      waitsForShared = false;
      call.resume();
    };
    /**
     * The shared memory is below half: whether or not this stream reads again now (its own
     * requests may still hold it), it waits for the memory no more, only for it not to be full.
     */
    const onRoom = (): void => {
      waitsForShared = false;
      resumeIfRoom();
    };
    context.metrics?.activeCalls.inc({ method });
    call.once('close', () => {
      closed = true;
      stopping.removeEventListener('abort', stop);
      context.metrics?.activeCalls.dec({ method });
      shared?.forget(onRoom);
    });
    /**
     * A response has been sent (or was never written): its request is done. A cancelled call is
     * destroyed, and the callbacks of its pending writes run then (with an error), so what they
     * hold of the shared memory comes back too (pipelined-stream.test.ts checks it).
     */
    const answered = (bytes: number): void => {
      inFlight--;
      inFlightBytes -= bytes;
      shared?.give(bytes);
      resumeIfRoom();
      finishIfDone();
    };
    call.on('data', (request: Request | MalformedRequest) => {
      if (stopping.aborted || refusal !== null) return; // read before the pause took hold: left unanswered (see above)
      const startedAt = performance.now();
      if (request instanceof MalformedRequest) {
        // No correlation id to answer it by: the requests before it are answered, then the
        // stream ends with the refusal's status (INVALID_ARGUMENT for bytes that do not decode,
        // RESOURCE_EXHAUSTED for a request over its size limit) and reason.
        const failure = toGrpcFailure(new StrataError(request.code, request.reason));
        if (!request.reported) {
          countRequest(context, method, failure.code, startedAt);
          context.metrics?.countError(method, failure.strataCode);
          logRequestFailure(context, method, failure, null, call);
        }
        refusal = toServiceError(failure);
        stop();
        return;
      }
      const bytes = handler.requestBytes?.(request) ?? 0;
      inFlight++;
      inFlightBytes += bytes;
      shared?.take(bytes);
      if (!paused && (inFlight >= inFlightMax || inFlightBytes >= inFlightBytesMax || shared?.full === true)) {
        paused = true;
        call.pause();
        if (shared?.full === true) {
          waitsForShared = true;
          shared.waitForRoom(onRoom);
        }
      }
      let running: Promise<Response>;
      try {
        running = handler.handle(request, call);
      } catch (error) {
        running = Promise.reject(error);
      }
      running
        .then((response) => {
          // A request of a stream the client cancelled meanwhile counts as CANCELLED, as a unary one does.
          countRequest(context, method, call.cancelled ? status.CANCELLED : status.OK, startedAt);
          return response;
        })
        .catch((error: unknown) => {
          const failure = toGrpcFailure(error);
          countRequest(context, method, call.cancelled ? status.CANCELLED : failure.code, startedAt);
          context.metrics?.countError(method, failure.strataCode);
          logRequestFailure(context, method, failure, error, call);
          return handler.failed(request, failure.code, failure.details, failure.strataCode ?? '');
        })
        .then((response) => {
          if (!call.cancelled && call.writable) call.write(response, () => answered(bytes));
          else answered(bytes);
        });
    });
    call.on('end', endOfRequests);
    call.on('error', (error) => logger.debug({ method, err: error }, 'stream error'));
  };
}
