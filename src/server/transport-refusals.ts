/**
 * Requests grpc-js refuses itself, before any handler sees them: a message over the server's
 * receive limit (`--max-request-bytes`), or one whose compressed body inflates past it, both
 * RESOURCE_EXHAUSTED; and a message marked compressed (gzip or deflate) whose bytes do not
 * inflate, which grpc-js answers with INTERNAL and the bare "Failed to decompress message", as
 * if the fault were the broker's. The handlers count, log and word what they answer; nothing of
 * theirs runs for these. This interceptor does it for them: it counts each in
 * `strata_requests_total` with its method and code (Strata's own services only: health checks
 * and reflection are not counted there when they succeed, so not when refused either), logs it
 * as a refused request (at most a line per 10 s of each kind, `ThrottledWarning`), replaces grpc-js's
 * words with a message that says what to change (the flag to raise; the client's compression),
 * answers a body that does not inflate with INVALID_ARGUMENT, the client's fault, and adds the
 * `strata-error` trailer that tells the broker's refusals from a failed connection.
 *
 * On the pipelined streams (ProduceStream, CommitOffsetsStream) grpc-js would end the call at
 * once, dropping the answers to the requests before it that are still running: a client would
 * take appended records for ones never run and send them again. There the refusal, counted and
 * logged here, is handed to the stream's handler instead, as a `MalformedRequest` queued after
 * the requests grpc-js has decoded: the handler answers the requests it started, then ends the
 * stream with it, as for a request that does not decode (`pipelined-stream.ts`). Requests
 * grpc-js had not decoded by then (still inflating, or in the same HTTP/2 frame as the
 * oversized one's length, where grpc-js's decoder stops) are never run and get no answer.
 *
 * grpc-js sends these statuses from the innermost call object, below the interceptors' chain of
 * responders, so the interceptor wraps that object's `sendStatus` (every status passes there)
 * and picks them out by grpc-js's wording; the handlers' statuses pass unchanged. It adds no
 * layer to the chain, so no step to any message of any call. Handing a refusal to the handler
 * uses that object's read queue. That object is the one this interceptor is given only while it
 * is the server's first interceptor (the token check, when tokens are asked for, comes after it).
 * `test/integration/bad-requests.test.ts` fails if a grpc-js upgrade, or another interceptor
 * before it, changes that.
 */
import { Metadata, status, type ServerInterceptingCall, type ServerInterceptingCallInterface, type ServerInterceptor, type StatusObject } from '@grpc/grpc-js';
import { ErrorCode, STRATA_ERROR_TRAILER } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { NON_PRODUCE_REQUEST_BYTES_MAX } from '../common/request-limits.js';
import type { BrokerMetrics } from './metrics.js';
import { MalformedRequest, nonProduceTooLarge } from './malformed-request.js';
import { GROUPS_SERVICE_NAME, LOG_SERVICE_NAME } from './service-definitions.js';
import { REFUSAL_LINES, ThrottledWarning } from '../common/throttled-warning.js';
import { STATUS_FOR_CODE } from './status.js';

export function transportRefusals(context: { logger: Logger; metrics: BrokerMetrics | null }, maxRequestBytes: number): ServerInterceptor {
  const logs: Record<RefusalKind, ThrottledWarning> = {
    tooLarge: new ThrottledWarning(context.logger, 'request refused: over the receive limit (lines at most every 10 s)', REFUSAL_LINES),
    notInflating: new ThrottledWarning(context.logger, 'request refused: its compressed body does not inflate (lines at most every 10 s)', REFUSAL_LINES),
  };
  return (descriptor, call) => {
    let refusedAlready = false;
    let handedToHandler = false;
    const innermost = call as ServerInterceptingCallInterface & { sendStatus(status: PartialStatus): void };
    const send = innermost.sendStatus;
    innermost.sendStatus = (sent: PartialStatus) => {
      const kind = refusalKind(sent);
      // grpc-js refuses again at each later frame of the message, or at each later message
      // that does not inflate; the call ended at the first, or its handler ends it.
      if (kind !== null && handedToHandler) return;
      if (kind === null || refusedAlready) {
        send.call(innermost, sent);
        return;
      }
      refusedAlready = true;
      const path = descriptor.path.slice(1);
      const { errorCode, details } = kind === 'tooLarge' ? tooLargeRefusal(path, sent.details, maxRequestBytes) : notInflatingRefusal(path);
      const code = STATUS_FOR_CODE[errorCode];
      const method = path.slice(path.lastIndexOf('/') + 1);
      const strata = descriptor.path.startsWith(STRATA_SERVICES);
      if (strata) context.metrics?.countRefusal(method, code, errorCode);
      logs[kind].note({ method, code, codeName: status[code], reason: details });
      if (PIPELINED_PATHS.has(path) && queueForHandler(innermost, new MalformedRequest(details, errorCode, true))) {
        handedToHandler = true;
        return;
      }
      const metadata = sent.metadata?.clone() ?? new Metadata();
      if (strata) metadata.set(STRATA_ERROR_TRAILER, errorCode);
      send.call(innermost, { ...sent, code, details, metadata });
    };
    // grpc-js chains what each interceptor returns through the interface alone; the type asks
    // for its class, which would add a layer every message of the call goes through.
    return innermost as ServerInterceptingCall;
  };
}

type RefusalKind = 'tooLarge' | 'notInflating';

interface Refusal {
  errorCode: ErrorCode;
  details: string;
}

/** Which of grpc-js's own refusals `sent` is, by its code and wording; null for any other status. */
function refusalKind(sent: PartialStatus): RefusalKind | null {
  if (sent.code === status.RESOURCE_EXHAUSTED && sent.details.startsWith(GRPC_JS_TOO_LARGE)) return 'tooLarge';
  if (sent.code === status.INTERNAL && sent.details === GRPC_JS_NOT_INFLATING) return 'notInflating';
  return null;
}

/**
 * How grpc-js's own refusals begin ("Received message larger than max (N vs M)", "Received
 * message that decompresses to a size larger than M"); no handler's message does.
 */
const GRPC_JS_TOO_LARGE = 'Received message ';

/** grpc-js's words for a message marked compressed whose bytes gunzip (or inflate) refuses. */
const GRPC_JS_NOT_INFLATING = 'Failed to decompress message';

/** The start of every path of Strata's own services (`/strata.v1.Log/Produce`, ...). */
const STRATA_SERVICES = '/strata.';

type PartialStatus = Pick<StatusObject, 'code' | 'details'> & Partial<StatusObject>;

/**
 * What a request over the receive limit is told. Produce requests are sized by the client's
 * batches, and the limit is the broker's flag; every other method has its own smaller limit
 * (`withRequestBytesMax`), which such a request is over too.
 */
function tooLargeRefusal(path: string, details: string, maxRequestBytes: number): Refusal {
  const size = /larger than max \((\d+) vs\.? \d+\)/.exec(details)?.[1];
  const what = size === undefined ? `inflates to over ${maxRequestBytes} bytes` : `is ${size} bytes`;
  const refusal = { errorCode: ErrorCode.RESOURCE_EXHAUSTED };
  if (!PRODUCE_PATHS.has(path)) return { ...refusal, details: nonProduceTooLarge(path, what, Math.min(maxRequestBytes, NON_PRODUCE_REQUEST_BYTES_MAX)) };
  return { ...refusal, details: `the request to ${path} ${what}, over this broker's limit of ${maxRequestBytes} bytes (--max-request-bytes); send smaller produce requests (fewer or smaller records in each) or raise the broker's --max-request-bytes` };
}

/** What a request marked compressed that does not inflate is told: its bytes are the client's fault. */
function notInflatingRefusal(path: string): Refusal {
  return {
    errorCode: ErrorCode.INVALID_ARGUMENT,
    details: `the request to ${path} is marked compressed, but its bytes do not inflate with the call's grpc-encoding; check the client's compression (a message's compressed flag must be set only on bytes compressed with that encoding)`,
  };
}

const PRODUCE_PATHS: ReadonlySet<string> = new Set([`${LOG_SERVICE_NAME}/Produce`, `${LOG_SERVICE_NAME}/ProduceStream`]);

/** The streams of independent requests, whose handler answers what it started before ending (`pipelinedStream`). */
const PIPELINED_PATHS: ReadonlySet<string> = new Set([`${LOG_SERVICE_NAME}/ProduceStream`, `${GROUPS_SERVICE_NAME}/CommitOffsetsStream`]);

/** What this module uses of grpc-js's innermost server call: its queue of received messages. */
interface ReadQueueInternals {
  readQueue?: { type: string; compressedMessage: Buffer | null; parsedMessage: unknown }[];
  maybePushNextMessage?: () => void;
}

/**
 * Queues `request` after the messages grpc-js has decoded on `call`, as a decoded one, for the
 * handler to read in turn; false if this grpc-js has no such queue (the refusal is then sent at
 * once, as grpc-js would). The queue is cut at its first message still undecoded: grpc-js
 * leaves one that inflated past the limit there for good, which would hold back everything
 * after it, so those messages (and any after them) are never run, nor answered.
 */
function queueForHandler(call: object, request: MalformedRequest): boolean {
  const internals = call as ReadQueueInternals;
  const queue = internals.readQueue;
  if (!Array.isArray(queue) || typeof internals.maybePushNextMessage !== 'function') return false;
  const undecoded = queue.findIndex((entry) => entry.type === 'COMPRESSED');
  if (undecoded >= 0) queue.length = undecoded;
  queue.push({ type: 'READABLE', compressedMessage: null, parsedMessage: request });
  internals.maybePushNextMessage();
  return true;
}
