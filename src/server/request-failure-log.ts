/**
 * How the broker logs requests it answered with an error. A client retrying a bad request in a
 * loop (a missing topic, an offset out of range, a refused token) would otherwise write a line
 * per attempt, which costs the broker CPU and fills its log disk. So each kind of failure, a
 * method and Strata's error code (`strataCode`, as `strata_request_errors_total` counts it) or,
 * without one, the status code, is logged at `warn` (`info` for NOT_FOUND and ALREADY_EXISTS)
 * at most once per 10 s, the line counting those of that kind left out since the one before
 * (`failedSinceLastLine`); those left out are told at the end of the 10 s, by the latest of
 * them. Lines carry the status code as a number (`code`) and by name (`codeName`), and the
 * client's address (`peer`). Every failure is still
 * counted in `strata_requests_total` and `strata_request_errors_total`. Unexpected failures
 * (a bug, not an answer to the request) are logged at `error`, each with its stack.
 */
import { status } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { type Clock } from '../common/clock.js';
import { ThrottledWarning } from '../common/throttled-warning.js';
import type { GrpcFailure } from './status.js';

export const REQUEST_FAILURE_LINE_INTERVAL_MS = 10_000;

/**
 * Answers that are part of the protocol's normal course, logged at `info`: a lookup of a topic
 * or group that is not there (a client checking before it creates one, a deleted topic's
 * subscribers, a heartbeat of a member whose session ended), a creation of one that is.
 */
const ROUTINE_ANSWERS: ReadonlySet<status> = new Set([status.NOT_FOUND, status.ALREADY_EXISTS]);

export class RequestFailureLog {
  /** One per method and Strata error code (the status code where there is none): a bounded set. */
  private readonly kinds = new Map<string, ThrottledWarning>();

  constructor(
    private readonly logger: Logger,
    private readonly clock?: Pick<Clock, 'monotonicMs'>,
  ) {}

  /** The server is stopping: the failures left out since each kind's last line are logged now. */
  dispose(): void {
    for (const warning of this.kinds.values()) warning.dispose();
  }

  /** A request of `method` failed with `failure`; `error` is what the handler threw. */
  note(method: string, failure: GrpcFailure, error: unknown, peer?: string): void {
    if (failure.unexpected) {
      this.logger.error({ method, ...(peer === undefined ? {} : { peer }), err: error }, 'request failed unexpectedly');
      return;
    }
    // By Strata's code where there is one: a full disk and a record too large share a gRPC code
    // (RESOURCE_EXHAUSTED), and one must not hide the other behind its count.
    const kind = `${method} ${failure.strataCode ?? failure.code}`;
    let warning = this.kinds.get(kind);
    if (warning === undefined) {
      warning = new ThrottledWarning(this.logger, 'request failed', {
        intervalMs: REQUEST_FAILURE_LINE_INTERVAL_MS,
        countField: 'failedSinceLastLine',
        level: ROUTINE_ANSWERS.has(failure.code) ? 'info' : 'warn',
        ...(this.clock === undefined ? {} : { clock: this.clock }),
      });
      this.kinds.set(kind, warning);
    }
    warning.note({
      method,
      code: failure.code,
      codeName: status[failure.code],
      ...(failure.strataCode === undefined ? {} : { strataCode: failure.strataCode }),
      reason: failure.details,
      ...(peer === undefined ? {} : { peer }),
    });
  }
}
