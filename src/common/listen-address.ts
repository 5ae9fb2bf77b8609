/**
 * A listen address, `host:port`. An IPv6 host is written in brackets (`[::]:9464`, `[::1]:0`),
 * as in a URL; the brackets are not part of the host (given to `listen`, "[::]" fails to
 * resolve: ENOTFOUND).
 */
export function parseListenAddress(listen: string): { host: string; port: number } {
  const separator = listen.lastIndexOf(':');
  let host = listen.slice(0, separator);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(listen.slice(separator + 1)) };
}

/** `host:port` again, with an IPv6 host in brackets, so it can go into a URL. */
export function formatListenAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether `host` (a name or an address, without brackets) is this machine's loopback. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
