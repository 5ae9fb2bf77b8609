/**
 * What every client command (topics, groups, produce, consume, tail) shares: the `--server`
 * option (env STRATA_SERVER), the token and TLS options of a broker that asks for them
 * (`--token`, env STRATA_TOKEN; `--tls`, `--tls-ca-file`, `--tls-client-cert-file`,
 * `--tls-client-key-file`), one connection per command, the logger of the client library
 * (stderr, so stdout carries only records and tables), turning client errors into the one line
 * the user sees, and a clean stop on Ctrl-C.
 *
 * Errors: a `StrataClientError` from the broker keeps the broker's message
 * (`topic "orders" not found`); a broker that cannot be reached becomes
 * `cannot reach the broker at HOST:PORT (...)`. Either way main.ts prints `strata: <message>` and
 * exits 1.
 */
import type { Argv, Options } from 'yargs';
import { stderrLogger, type Logger } from '../common/logger.js';
import { isLoopbackHost, parseListenAddress } from '../common/listen-address.js';
import { Connection, type ConnectionOptions, type TlsOptions, isValidToken } from '../client/connection.js';
import { NOT_GRPC, StrataClientError, UNREACHABLE } from '../client/errors.js';
import { SERVE_OPTIONS } from '../config/broker-options.js';
import { EXIT_INTERRUPTED, UsageError } from './cli-errors.js';
import { readFlagFile } from '../common/errors.js';
import { certificatesIn, checkPrivateKeyOfChain } from '../common/pem-files.js';
import { flagNames } from './environment.js';
import { handleStopSignals } from '../common/signal-takeover.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

/** What the options of this module give a command. */
export interface ClientArgs {
  server?: unknown;
  token?: unknown;
  tls?: unknown;
  'tls-ca-file'?: unknown;
  'tls-client-cert-file'?: unknown;
  'tls-client-key-file'?: unknown;
}

/** Read when the CLI loads: main.ts then takes serve's variables out of a client command's environment. */
const environmentLogLevel = process.env.STRATA_LOG_LEVEL;
let logger: Logger | null = null;

/** STRATA_LOG_LEVEL (default error), one of serve's --log-level choices; a UsageError otherwise. */
function clientLogLevel(): string {
  const level = environmentLogLevel ?? 'error';
  const levels: readonly string[] = SERVE_OPTIONS['log-level'].choices;
  if (!levels.includes(level)) throw new UsageError(`STRATA_LOG_LEVEL must be one of ${levels.join(', ')}, got ${JSON.stringify(level)}`);
  return level;
}

/** Warnings of the client library (retries, resets) go to stderr, at STRATA_LOG_LEVEL. */
export function clientLogger(): Logger {
  logger ??= stderrLogger(clientLogLevel(), 'strata-cli');
  return logger;
}

/** The token and TLS options of a broker that asks for them (`strata bench` takes them too). */
export const ACCESS_OPTIONS = {
  token: { type: 'string', describe: 'Token for a broker that asks for one (env STRATA_TOKEN, which keeps it out of the process list)', requiresArg: true },
  tls: { type: 'boolean', describe: "Connect over TLS, trusting the system's CA certificates (implied by the other --tls options)" },
  'tls-ca-file': { type: 'string', describe: "PEM CA certificates to trust for the broker's certificate, instead of the system's", requiresArg: true },
  'tls-client-cert-file': { type: 'string', describe: 'PEM client certificate, for a broker that asks for one (mutual TLS)', requiresArg: true },
  'tls-client-key-file': { type: 'string', describe: 'PEM private key of --tls-client-cert-file', requiresArg: true },
} as const satisfies Record<string, Options>;

/** Kafka's spellings of the acknowledgement levels (`acks=-1`, `1`, `0`), which a user of it types first. */
const KAFKA_ACKS: Readonly<Record<string, string>> = { '-1': 'all', '1': 'leader', '0': 'none' };

/** `--acks` of produce and bench: Strata's names, or Kafka's numbers for them. */
export const ACKS_OPTION = {
  choices: ['all', 'leader', 'none'],
  default: 'all',
  requiresArg: true,
  coerce: (value: unknown): unknown => (value === undefined ? value : (KAFKA_ACKS[String(value)] ?? value)),
  describe: 'all (Kafka\'s -1): durable; leader (1): written; none (0): not waited for (not idempotent)',
} as const satisfies Options;

/** Option names of this module, for the environment check in main.ts. */
export const CLIENT_OPTION_NAMES = ['server', ...Object.keys(ACCESS_OPTIONS)];

/** The client options that take no value (their STRATA_* variables are read as flags). */
export const CLIENT_FLAG_NAMES = flagNames(ACCESS_OPTIONS);

export function withClientOptions<T>(yargs: Argv<T>): Argv<T & { server: string }> {
  return yargs
    .option('server', {
      type: 'string',
      default: DEFAULT_SERVER,
      describe: 'Broker address HOST:PORT (env STRATA_SERVER)',
      requiresArg: true,
    })
    .options(ACCESS_OPTIONS) as unknown as Argv<T & { server: string }>;
}

/** The broker address from argv; a UsageError when it is not HOST:PORT. */
export function serverAddress(argv: { server?: unknown }, option = '--server'): string {
  const server = argv.server ?? DEFAULT_SERVER;
  if (typeof server !== 'string' || (!/^[^\s:]+:\d+$/.test(server) && !/^\[[0-9a-fA-F:.]+\]:\d+$/.test(server))) {
    throw new UsageError(`${option} must be HOST:PORT, got ${JSON.stringify(server)}`);
  }
  const port = Number(server.slice(server.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) throw new UsageError(`${option} must have a port from 1 to 65535, got ${JSON.stringify(server)}`);
  // Every command that talks to a broker asks for its address first: a bad level is refused
  // before anything is sent, not when the command first logs.
  clientLogLevel();
  return server;
}

/**
 * HTTP/2 receive window of the CLI's connections. The protocol default (64 KiB) makes a 4 MiB
 * fetch answer take dozens of window updates; 8 MiB (the broker's own receive window) lets it
 * arrive in one go, which is what lets `consume` print at full speed.
 */
export const FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;

/** The connection options of a command's `argv`: the server, and the token and TLS material if given. */
export function connectionOptions(argv: ClientArgs): ConnectionOptions {
  const server = serverAddress(argv);
  const token = argv.token;
  if (token !== undefined && (typeof token !== 'string' || !isValidToken(token))) {
    throw new UsageError('--token (or STRATA_TOKEN) must be printable ASCII without spaces');
  }
  const tls = tlsOptions(argv);
  if (token !== undefined && tls === null && !isLoopbackHost(parseListenAddress(server).host)) {
    process.stderr.write(`strata: warning: the token goes to ${server} in plaintext, where anyone on the way can read it; add --tls or --tls-ca-file if the broker serves TLS\n`);
  }
  return {
    server,
    ...(token !== undefined ? { token } : {}),
    ...(tls !== null ? { tls } : {}),
    channelOptions: { 'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES },
  };
}

/** TLS options from `--tls` and the `--tls-*-file` options (any of which implies TLS); null: plaintext. */
function tlsOptions(argv: ClientArgs): TlsOptions | null {
  const caFile = optionalPath(argv['tls-ca-file'], '--tls-ca-file');
  const certFile = optionalPath(argv['tls-client-cert-file'], '--tls-client-cert-file');
  const keyFile = optionalPath(argv['tls-client-key-file'], '--tls-client-key-file');
  if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('give both --tls-client-cert-file and --tls-client-key-file, or neither');
  if (argv.tls !== true && caFile === undefined && certFile === undefined) return null;
  const tls: TlsOptions = {};
  asUsageError(() => {
    // Checked here, so that a CA file without a certificate, or a key of another certificate,
    // is one line naming the option rather than OpenSSL's text or a failed handshake.
    if (caFile !== undefined) {
      tls.ca = readFlagFile('--tls-ca-file', caFile);
      certificatesIn('--tls-ca-file', caFile, tls.ca);
    }
    if (certFile !== undefined && keyFile !== undefined) {
      tls.cert = readFlagFile('--tls-client-cert-file', certFile);
      tls.key = readFlagFile('--tls-client-key-file', keyFile);
      const chain = certificatesIn('--tls-client-cert-file', certFile, tls.cert);
      checkPrivateKeyOfChain({ certFlag: '--tls-client-cert-file', certFile, chain, keyFlag: '--tls-client-key-file', keyFile, keyPem: tls.key, reader: 'strata', owner: 'your user', own: 'the client certificate' });
    }
  });
  return tls;
}

function optionalPath(value: unknown, option: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw new UsageError(`${option} must be a file path`);
  return value;
}

/** Runs `check`, its refusal (a file of an option that cannot be used) a usage error of the command. */
function asUsageError(check: () => void): void {
  try {
    check();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * What a command tells `describeFailure` of its connection: whether the broker had answered it
 * (a broker lost later is not one the command failed to reach for want of --tls).
 */
export interface BrokerContact {
  reached: boolean;
}

/**
 * Runs `action` with a connection to the broker, closes it afterwards, and turns client errors
 * into the message the user sees. `action` sets `contact.reached` once the broker has answered.
 */
export async function withConnection<T>(argv: ClientArgs, action: (connection: Connection, contact: BrokerContact) => Promise<T>): Promise<T> {
  return withConnectionTo(connectionOptions(argv), action);
}

/** `withConnection` with the options made already (`connectionOptions`). */
export async function withConnectionTo<T>(options: ConnectionOptions, action: (connection: Connection, contact: BrokerContact) => Promise<T>): Promise<T> {
  const connection = new Connection(options);
  const contact: BrokerContact = { reached: false };
  try {
    return await action(connection, contact);
  } catch (error) {
    throw describeFailure(error, options, contact);
  } finally {
    connection.close();
  }
}

/**
 * The error as the user should read it (the broker's own message when it sent one). Whether the
 * command connected with TLS, and whether the broker had answered it before (`contact`), decide
 * what a failed connection most likely means.
 */
export function describeFailure(error: unknown, options: Pick<ConnectionOptions, 'server' | 'tls'>, contact: BrokerContact = { reached: false }): unknown {
  if (!(error instanceof StrataClientError)) return error;
  const server = options.server;
  const secured = options.tls !== undefined && options.tls !== false;
  const clientCertificate = typeof options.tls === 'object' && options.tls.cert !== undefined;
  if (error.code === 'UNAVAILABLE' && !error.fromBroker) {
    const reason = transportReason(error.message);
    const tlsReason = reason.match(/SSL routines:[^:]*:([^:]+):/)?.[1];
    const shown = tlsReason !== undefined ? `TLS: ${tlsReason}` : reason.replace(/\s+$/, '');
    const advice = contact.reached ? LOST_BROKER_ADVICE : connectionAdvice(reason, secured, clientCertificate);
    return new StrataClientError(error.code, `${UNREACHABLE} at ${server} (${shown}); ${advice}`, { cause: error });
  }
  if (error.code === 'DEADLINE_EXCEEDED') {
    return new StrataClientError(error.code, `the broker at ${server} did not answer in time (${error.message})`, { cause: error });
  }
  return error;
}

/** For a broker that answered the command before: the address and the TLS settings were right. */
const LOST_BROKER_ADVICE = 'it answered before: is it still running?';

const CLIENT_CERTIFICATE_ADVICE = 'give --tls-client-cert-file and --tls-client-key-file of one in date and signed by a CA its --tls-client-ca-file holds';

/** What to do about a connection that failed for `reason`. */
function connectionAdvice(reason: string, secured: boolean, clientCertificate: boolean): string {
  // Something answered: whether a broker runs there is not the question.
  if (reason.startsWith(NOT_GRPC)) return 'set --server or STRATA_SERVER';
  if (secured && /wrong version number|packet length too long|unexpected eof/i.test(reason)) {
    return 'it does not seem to serve TLS: leave out --tls and the --tls-* options for a plaintext broker';
  }
  // An alert is the broker's answer to this client's certificate, or to its having none.
  if (secured && /alert certificate required/i.test(reason)) {
    return 'the broker asks for a client certificate: give --tls-client-cert-file and --tls-client-key-file, of a certificate signed by a CA its --tls-client-ca-file holds';
  }
  if (secured && /alert (unknown ca|bad certificate|certificate unknown|certificate expired|certificate revoked|unsupported certificate)/i.test(reason)) {
    return `the broker refused the client certificate: ${CLIENT_CERTIFICATE_ADVICE}`;
  }
  // Under TLS 1.3 a broker refuses a client certificate after the client has finished its
  // handshake: the client often sees the connection reset or closed, not the alert.
  if (clientCertificate && /ECONNRESET|^Failed to connect|Connection dropped/i.test(reason)) {
    return `the connection was closed during the TLS start, most likely by the broker refusing the client certificate: ${CLIENT_CERTIFICATE_ADVICE} (if no broker listens there, set --server or STRATA_SERVER)`;
  }
  if (secured && /certificate|self.signed|verify/i.test(reason)) {
    return "its certificate is not trusted, or does not name this address: give --tls-ca-file with the CA that signed it, and a --server the certificate names";
  }
  if (!secured && /^Failed to connect|Connection dropped/i.test(reason)) {
    return 'is it running? Set --server or STRATA_SERVER; if the broker serves TLS, add --tls or --tls-ca-file';
  }
  return 'is it running? Set --server or STRATA_SERVER';
}

/**
 * The useful part of a connection failure: "connect ECONNREFUSED 127.0.0.1:1". grpc-js stamps
 * the reason of a connection that closed or failed while starting HTTP/2 with the time ("Failed
 * to connect (2026-11-23T21:17:17.800Z)"), which tells the user nothing: it is left out.
 */
export function transportReason(message: string): string {
  const prefix = `${UNREACHABLE} (`;
  const reason = message.startsWith(prefix) && message.endsWith(')') ? message.slice(prefix.length, -1) : message;
  return reason.replace(/ \(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z\)/g, '');
}

/**
 * Calls `stop` on the first SIGINT or SIGTERM (the command then finishes cleanly: consumers
 * leave their group, producers flush); a second one exits at once with 130. Returns a function
 * that removes the handlers.
 */
export function onInterrupt(stop: () => void): () => void {
  let interrupted = false;
  const handler = (): void => {
    if (interrupted) process.exit(EXIT_INTERRUPTED);
    interrupted = true;
    stop();
  };
  return handleStopSignals(handler);
}
