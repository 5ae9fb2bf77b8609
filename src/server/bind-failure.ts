/**
 * The error a start stops with when a listener cannot bind: which listener (by its flag), the
 * address, why in words, and what to do. grpc-js says "No address added out of total 1
 * resolved errors: [listen EADDRINUSE: ...]" and Node's HTTP server "listen EADDRINUSE: ...",
 * neither naming the listener: with the gRPC and the probe port both in use, an operator could
 * not tell which one to move.
 */
import { parseListenAddress } from '../common/listen-address.js';

const REASONS: readonly [RegExp, string][] = [
  [/EADDRINUSE/, 'the address is in use (by another broker or another program)'],
  [/EACCES/, 'permission denied'],
  [/EADDRNOTAVAIL/, 'no network interface of this host has that address'],
  [/ENOTFOUND|EAI_AGAIN|Name resolution failed/, 'the host name does not resolve'],
];

export function bindFailure(flag: '--listen' | '--metrics-listen', address: string, cause: unknown): Error {
  const message = cause instanceof Error ? cause.message : String(cause);
  let reason = REASONS.find(([pattern]) => pattern.test(message))?.[1] ?? message;
  const { port } = parseListenAddress(address);
  if (reason === 'permission denied' && port > 0 && port < 1024) reason += ' (a port below 1024 needs privileges)';
  return new Error(`cannot listen on ${address} (${flag}): ${reason}; give another ${flag}`, { cause });
}
