// Goal: the health service ends every Watch when the stop begins, including one whose handler
// runs only after that (grpc-js reads the request first), and keeps nothing of a watch once it
// has ended; method: its handlers called directly with stand-in calls (an EventEmitter with
// the request, write and the events grpc-js emits).
import { status } from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { HealthService } from '../../src/server/health-service.js';

interface StandInCall extends EventEmitter {
  request: { service: string };
  written: string[];
  ended: { code: number; details: string } | null;
  write(message: { status: string }): boolean;
}

function standInCall(service: string): StandInCall {
  const call = new EventEmitter() as StandInCall;
  call.request = { service };
  call.written = [];
  call.ended = null;
  call.write = (message) => call.written.push(message.status) > 0;
  call.on('error', (error: { code: number; details: string }) => (call.ended = { code: error.code, details: error.details }));
  return call;
}

function healthHandlers(stopping: AbortSignal): { service: HealthService; watch: (call: StandInCall) => void } {
  const service = new HealthService(new Set(['', 'strata.v1.Log']), stopping);
  let watch!: (call: StandInCall) => void;
  service.addToServer({ addService: (_definition: unknown, implementation: { watch: (call: StandInCall) => void }) => (watch = implementation.watch) } as never);
  return { service, watch };
}

describe('HealthService watches', () => {
  it('tells watchers of its services each change, ends every watch with UNAVAILABLE when the stop begins, and one that starts after at once', () => {
    const stopping = new AbortController();
    const { service, watch } = healthHandlers(stopping.signal);
    const known = standInCall('strata.v1.Log');
    const unknown = standInCall('strata.v1.Nope');
    watch(known);
    watch(unknown);
    service.setStatus('SERVING');
    expect(known.written).toEqual(['NOT_SERVING', 'SERVING']);
    expect(unknown.written).toEqual(['SERVICE_UNKNOWN']);
    expect(service.watchCount).toBe(2);

    service.setStatus('NOT_SERVING');
    stopping.abort();
    for (const call of [known, unknown]) expect(call.ended).toEqual({ code: status.UNAVAILABLE, details: 'the broker is shutting down' });
    expect(known.written.at(-1)).toBe('NOT_SERVING');
    expect(service.watchCount).toBe(0);

    const late = standInCall('');
    watch(late);
    expect(late.ended).toEqual({ code: status.UNAVAILABLE, details: 'the broker is shutting down' });
    expect(late.written).toEqual([]);
    expect(service.watchCount).toBe(0);
  });

  it('forgets a watch once its call is cancelled', () => {
    const { service, watch } = healthHandlers(new AbortController().signal);
    const calls = Array.from({ length: 5 }, (_, index) => standInCall(`random-${index}`));
    for (const call of calls) watch(call);
    expect(service.watchCount).toBe(5);
    for (const call of calls) call.emit('cancelled');
    expect(service.watchCount).toBe(0);
  });
});
