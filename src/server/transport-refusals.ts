/**
 * Requests grpc-js refuses itself, before any handler sees them: a message over the server's
 * receive limit (`--max-request-bytes`), or one whose compressed body inflates past it, both
 * RESOURCE_EXHAUSTED. The handlers count, log and word what they answer; nothing of theirs runs
 * for these. This interceptor does it for them: it counts each in `strata_requests_total` with
 * its method and code (Strata's own services only: health checks and reflection are not counted
 * there when they succeed, so not when refused either), logs it as a refused request (at most a
 * line per 10 s, `RefusalLog`), and replaces grpc-js's bare "Received message larger than max
 * (N vs M)" with a message that names the flag to raise.
 *
 * grpc-js sends these statuses from the innermost call object, below the interceptors' chain of
 * responders, so the interceptor wraps that object's `sendStatus` (every status passes there)
 * and picks them out by grpc-js's wording; the handlers' statuses pass unchanged. It adds no
 * layer to the chain, so no step to any message of any call.
 * That object is the one this interceptor is given only while it is the server's first
 * interceptor (the token check, when tokens are asked for, comes after it).
 * `test/integration/bad-requests.test.ts` fails if a grpc-js upgrade, or another interceptor
 * before it, changes that.
 */
import { status, type ServerInterceptingCall, type ServerInterceptingCallInterface, type ServerInterceptor, type StatusObject } from '@grpc/grpc-js';
import { ErrorCode } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { NON_PRODUCE_REQUEST_BYTES_MAX } from '../common/request-limits.js';
import type { BrokerMetrics } from './metrics.js';
import { nonProduceTooLarge } from './malformed-request.js';
import { LOG_SERVICE_NAME } from './service-definitions.js';
import { RefusalLog } from './refusal-log.js';

export function transportRefusals(context: { logger: Logger; metrics: BrokerMetrics | null }, maxRequestBytes: number): ServerInterceptor {
  const log = new RefusalLog(context.logger, 'request refused: over the receive limit (lines at most every 10 s)');
  return (descriptor, call) => {
    let refusedAlready = false;
    const innermost = call as ServerInterceptingCallInterface & { sendStatus(status: PartialStatus): void };
    const send = innermost.sendStatus;
    innermost.sendStatus = (sent: PartialStatus) => {
      // grpc-js refuses again at each later frame of the message; the call ended at the first.
      if (refusedAlready || sent.code !== status.RESOURCE_EXHAUSTED || !sent.details.startsWith(GRPC_JS_TOO_LARGE)) {
        send.call(innermost, sent);
        return;
      }
      refusedAlready = true;
      const method = descriptor.path.slice(descriptor.path.lastIndexOf('/') + 1);
      const refused = { ...sent, details: tooLargeDetails(descriptor.path.slice(1), sent.details, maxRequestBytes) };
      if (descriptor.path.startsWith(STRATA_SERVICES)) context.metrics?.countRefusal(method, refused.code, ErrorCode.RESOURCE_EXHAUSTED);
      log.refused({ method, code: refused.code, reason: refused.details });
      send.call(innermost, refused);
    };
    // grpc-js chains what each interceptor returns through the interface alone; the type asks
    // for its class, which would add a layer every message of the call goes through.
    return innermost as ServerInterceptingCall;
  };
}

/**
 * How grpc-js's own refusals begin ("Received message larger than max (N vs M)", "Received
 * message that decompresses to a size larger than M"); no handler's message does.
 */
const GRPC_JS_TOO_LARGE = 'Received message ';

/** The start of every path of Strata's own services (`/strata.v1.Log/Produce`, ...). */
const STRATA_SERVICES = '/strata.';

type PartialStatus = Pick<StatusObject, 'code' | 'details'> & Partial<StatusObject>;

/**
 * What a request over the receive limit is told. Produce requests are sized by the client's
 * batches, and the limit is the broker's flag; every other method has its own smaller limit
 * (`withRequestBytesMax`), which such a request is over too.
 */
function tooLargeDetails(path: string, details: string, maxRequestBytes: number): string {
  const size = /larger than max \((\d+) vs\.? \d+\)/.exec(details)?.[1];
  const what = size === undefined ? `inflates to over ${maxRequestBytes} bytes` : `is ${size} bytes`;
  if (!PRODUCE_PATHS.has(path)) return nonProduceTooLarge(path, what, Math.min(maxRequestBytes, NON_PRODUCE_REQUEST_BYTES_MAX));
  return `the request to ${path} ${what}, over this broker's limit of ${maxRequestBytes} bytes (--max-request-bytes); send smaller produce requests (fewer or smaller records in each) or raise the broker's --max-request-bytes`;
}

const PRODUCE_PATHS: ReadonlySet<string> = new Set([`${LOG_SERVICE_NAME}/Produce`, `${LOG_SERVICE_NAME}/ProduceStream`]);
