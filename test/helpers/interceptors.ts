/** Client interceptors that inject call failures, for client tests against a real broker. */
import { InterceptingCall, type Interceptor, Metadata, type status } from '@grpc/grpc-js';

/** Answers the first call of `path` with `code` itself (the broker never sees it). */
export function refuseFirstCall(path: string, code: status, stats: { refused: number }): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== path || stats.refused > 0) return new InterceptingCall(call);
    stats.refused++;
    return new InterceptingCall(call, {
      start(metadata, listener, next) {
        next(metadata, {});
        listener.onReceiveStatus({ code, details: 'injected: refused', metadata: new Metadata() });
        call.cancelWithStatus(code, 'injected: refused');
      },
    });
  };
}

/**
 * Lets the first call of `path` receive `messages` messages, then ends it with `code` itself
 * (what the broker sends after them is dropped); `stats.failed` counts the calls so ended.
 */
export function failFirstCallAfter(path: string, messages: number, code: status, stats: { failed: number }): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== path || stats.failed > 0) return new InterceptingCall(call);
    let received = 0;
    return new InterceptingCall(call, {
      start(metadata, listener, next) {
        next(metadata, {
          onReceiveMetadata: (value, nextMetadata) => nextMetadata(value),
          onReceiveMessage: (message, nextMessage) => {
            if (received >= messages) return;
            nextMessage(message);
            if (++received < messages) return;
            stats.failed++;
            listener.onReceiveStatus({ code, details: 'injected: failed', metadata: new Metadata() });
            call.cancelWithStatus(code, 'injected: failed');
          },
          onReceiveStatus: (value, nextStatus) => {
            if (received < messages) nextStatus(value);
          },
        });
      },
    });
  };
}

/**
 * Holds the start of calls to `paths` while `gate.held` is set, until that promise settles (a
 * client's retries wait there while the test changes the broker under them).
 */
export function holdCalls(paths: readonly string[], gate: { held: Promise<void> | null }): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (!paths.includes(options.method_definition.path)) return new InterceptingCall(call);
    return new InterceptingCall(call, {
      start(metadata, listener, next) {
        const held = gate.held;
        if (held === null) next(metadata, listener);
        else void held.then(() => next(metadata, listener));
      },
    });
  };
}

/**
 * Holds the status that ends a call to `path` while `gate.held` is set, until that promise
 * settles: the client hears that the call ended (a NOT_FOUND, say) only once the test lets it.
 */
export function holdStatus(path: string, gate: { held: Promise<void> | null }): Interceptor {
  return (options, nextCall) => {
    const call = nextCall(options);
    if (options.method_definition.path !== path) return new InterceptingCall(call);
    return new InterceptingCall(call, {
      start(metadata, _listener, next) {
        next(metadata, {
          onReceiveStatus: (value, nextStatus) => {
            const held = gate.held;
            if (held === null) nextStatus(value);
            else void held.then(() => nextStatus(value));
          },
        });
      },
    });
  };
}
