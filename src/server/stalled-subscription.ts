/**
 * A Subscribe's status goes out only after every message written before it: HTTP/2 sends the
 * trailers after the stream's data, and that data waits for the reader's flow-control window.
 * A reader that has stopped reading (a consumer paused behind a slow application) therefore
 * holds back the status of a subscription that ended, and with it a graceful stop, which would
 * wait the whole `--shutdown-timeout-ms` and then cut every connection.
 *
 * So once the broker is stopping, a subscription whose status is still not out after a grace
 * period is reset with REFUSED_STREAM, which gRPC clients read as UNAVAILABLE ("Stream refused
 * by server"): retriable, and a consumer subscribes again from the next offset it has not
 * processed, as after any UNAVAILABLE. Only the one stalled stream is reset; the connection and
 * its other calls finish normally.
 *
 * grpc-js does not expose a call's HTTP/2 stream: it is the `stream` of the innermost call
 * object. A handler's call holds the outermost as `call`, and each interceptor's call holds the
 * one it wraps as `nextCall` (with tokens, the token check wraps the call `transport-refusals.ts`
 * patched). `test/integration/lifecycle.test.ts` fails, with and without tokens, if a grpc-js
 * upgrade moves them.
 */
import { type ServerHttp2Stream, constants } from 'node:http2';

/** How long a stopping broker waits for a stalled subscription's status before resetting it. */
const STALLED_SUBSCRIPTION_GRACE_MS = 1_000;

/** Resets `call`'s stream if its status is not out `STALLED_SUBSCRIPTION_GRACE_MS` after `stopping` aborts (or now, if it has). */
export function refuseIfStalledAtStop(call: object, stopping: AbortSignal): void {
  const stream = http2StreamOf(call);
  if (stream === null || stream.closed) return;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    timer = setTimeout(() => {
      if (!stream.closed) stream.close(constants.NGHTTP2_REFUSED_STREAM);
    }, STALLED_SUBSCRIPTION_GRACE_MS);
    timer.unref();
  };
  stream.once('close', () => {
    clearTimeout(timer);
    stopping.removeEventListener('abort', arm);
  });
  if (stopping.aborted) arm();
  else stopping.addEventListener('abort', arm, { once: true });
}

/** Bound on the call objects walked through: one per interceptor, and the server has two at most. */
const INTERCEPTOR_LAYERS_MAX = 4;

function http2StreamOf(call: object): ServerHttp2Stream | null {
  type Layer = { stream?: unknown; nextCall?: Layer } | undefined;
  let layer = (call as { call?: Layer }).call;
  for (let depth = 0; layer !== undefined && layer !== null && depth < INTERCEPTOR_LAYERS_MAX; depth++) {
    const stream = layer.stream;
    if (stream !== undefined && stream !== null && typeof (stream as ServerHttp2Stream).close === 'function') return stream as ServerHttp2Stream;
    layer = layer.nextCall;
  }
  return null;
}
