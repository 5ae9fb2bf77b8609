// Goal: a listener that cannot bind stops the start with a line naming its flag, the address,
// the reason in words and what to do, whichever library's wording the cause came in; method:
// the messages grpc-js and Node's HTTP server give (a real bind on an address in use is in
// test/integration/lifecycle.test.ts).
import { describe, expect, it } from 'vitest';
import { bindFailure } from '../../src/server/bind-failure.js';

describe('bindFailure', () => {
  it.each([
    ['No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 127.0.0.1:50051]', 'the address is in use (by another broker or another program)'],
    ['listen EACCES: permission denied 0.0.0.0:50051', 'permission denied'],
    ['No address added out of total 1 resolved errors: [listen EADDRNOTAVAIL: address not available 10.9.9.9:5000]', 'no network interface of this host has that address'],
    ['Name resolution failed for target dns:broker.invalid:50051', 'the host name does not resolve'],
    ['getaddrinfo ENOTFOUND broker.invalid', 'the host name does not resolve'],
    ['something new', 'something new'],
  ])('%s', (message, reason) => {
    const cause = new Error(message);
    const failure = bindFailure('--listen', 'broker.example:50051', cause);
    expect(failure.message).toBe(`cannot listen on broker.example:50051 (--listen): ${reason}; give another --listen`);
    expect(failure.cause).toBe(cause);
  });

  it('adds the likely cause of a permission refused on a port below 1024', () => {
    expect(bindFailure('--metrics-listen', '0.0.0.0:80', new Error('listen EACCES: permission denied 0.0.0.0:80')).message).toBe(
      'cannot listen on 0.0.0.0:80 (--metrics-listen): permission denied (a port below 1024 needs privileges); give another --metrics-listen',
    );
  });
});
