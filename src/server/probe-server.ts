/**
 * The operator's HTTP port: `/metrics` (Prometheus text format, gzipped for a scraper that
 * accepts it, as Prometheus does), `/healthz` (the process is
 * alive: always 200 while it answers) and `/readyz` (200 once recovery has finished and the
 * broker accepts requests, 503 before that and while shutting down). It starts before the
 * broker opens its logs, so an orchestrator sees "alive, not ready" during a long recovery.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { gzip } from 'node:zlib';
import { formatListenAddress, parseListenAddress } from '../common/listen-address.js';
import type { Logger } from '../common/logger.js';
import { bindFailure } from './bind-failure.js';
import type { BrokerMetrics } from './metrics.js';

export interface ProbeServer {
  address: string;
  close(): Promise<void>;
}

export async function startProbeServer(listen: string, metrics: BrokerMetrics, isReady: () => boolean, logger: Logger): Promise<ProbeServer> {
  const { host, port } = parseListenAddress(listen);
  const server: Server = createServer((request, response) => {
    const path = requestPath(request.url ?? '/');
    if (path === null) {
      response.writeHead(400, { 'content-type': 'text/plain' }).end('bad request target\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = isReady();
      response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      metrics.scrape().then(
        (text) => sendMetrics(request, response, text, metrics.registry.contentType, logger),
        (error: unknown) => {
          logger.error({ err: error }, 'collecting metrics failed');
          response.writeHead(500).end();
        },
      );
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error): void => reject(bindFailure('--metrics-listen', listen, error));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  // Once listening, an error of the server (EMFILE on accept...) is logged; unheard, it would end the process.
  server.on('error', (error) => logger.error({ err: error }, 'the probe server failed'));
  const bound = server.address();
  const address = typeof bound === 'object' && bound !== null ? formatListenAddress(host, bound.port) : listen;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Answers a scrape with `text`, gzipped when the request accepts gzip. A broker with 500
 * partitions has a scrape of about 270 KiB, 19 KiB gzipped at level 1 (17 KiB at the default 6,
 * in as long: about 1.2 ms). The compression runs on the thread pool, off the event loop.
 */
function sendMetrics(request: IncomingMessage, response: ServerResponse, text: string, contentType: string, logger: Logger): void {
  if (!acceptsGzip(request.headers['accept-encoding'])) {
    response.writeHead(200, { 'content-type': contentType, vary: 'accept-encoding' }).end(text);
    return;
  }
  gzip(text, { level: 1 }, (error, compressed) => {
    if (error !== null) {
      logger.error({ err: error }, 'compressing metrics failed');
      response.writeHead(500).end();
      return;
    }
    response.writeHead(200, { 'content-type': contentType, 'content-encoding': 'gzip', vary: 'accept-encoding' }).end(compressed);
  });
}

/**
 * Whether an `Accept-Encoding` header accepts gzip: named, or covered by `*`, with a quality
 * above 0 (`gzip;q=0` refuses it, whatever `*` says).
 */
function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  let wildcard = false;
  for (const entry of header.split(',')) {
    const [coding = '', ...parameters] = entry.split(';').map((part) => part.trim().toLowerCase());
    const quality = parameters.find((parameter) => parameter.startsWith('q='));
    const accepted = quality === undefined || Number(quality.slice(2)) > 0;
    if (coding === 'gzip' || coding === 'x-gzip') return accepted;
    if (coding === '*') wildcard = accepted;
  }
  return wildcard;
}

/**
 * The path of a request target, of the origin form (`/readyz?x`) or of the absolute form
 * (`http://host/readyz`, which an HTTP/1.1 server must accept, and some proxies send); null when
 * the target does not parse as a URL.
 */
function requestPath(target: string): string | null {
  try {
    return new URL(target, 'http://localhost').pathname;
  } catch {
    return null;
  }
}
