/**
 * What every client command (topics, groups, produce, consume, tail) shares: the `--server`
 * option (env STRATA_SERVER), one connection per command, the logger of the client library
 * (stderr, so stdout carries only records and tables), turning client errors into the one line
 * the user sees, and a clean stop on Ctrl-C.
 *
 * Errors: a `StrataClientError` from the broker keeps the broker's message
 * (`topic "orders" not found`); a broker that cannot be reached becomes
 * `cannot reach the broker at HOST:PORT (...)`. Either way main.ts prints `strata: <message>` and
 * exits 1.
 */
import type { Argv } from 'yargs';
import { pino, type Logger } from 'pino';
import { Connection, type ConnectionOptions } from '../client/connection.js';
import { NOT_GRPC, StrataClientError, UNREACHABLE } from '../client/errors.js';
import { SERVE_OPTIONS } from '../config/broker-options.js';
import { UsageError } from './cli-errors.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

/** Option names of this module, for the environment check in main.ts. */
export const CLIENT_OPTION_NAMES = ['server'];

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
  logger ??= pino({ level: clientLogLevel(), base: { service: 'strata-cli' } }, pino.destination({ fd: 2, sync: true }));
  return logger;
}

export function withServerOption<T>(yargs: Argv<T>): Argv<T & { server: string }> {
  return yargs.option('server', {
    type: 'string',
    default: DEFAULT_SERVER,
    describe: 'Broker address HOST:PORT (env STRATA_SERVER)',
    requiresArg: true,
  }) as Argv<T & { server: string }>;
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

export function connectionOptions(server: string): ConnectionOptions {
  return { server, channelOptions: { 'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES } };
}

/**
 * Runs `action` with a connection to the broker, closes it afterwards, and turns client errors
 * into the message the user sees.
 */
export async function withConnection<T>(argv: { server?: unknown }, action: (connection: Connection) => Promise<T>): Promise<T> {
  const server = serverAddress(argv);
  const connection = new Connection(connectionOptions(server));
  try {
    return await action(connection);
  } catch (error) {
    throw describeFailure(error, server);
  } finally {
    connection.close();
  }
}

/** The error as the user should read it (the broker's own message when it sent one). */
export function describeFailure(error: unknown, server: string): unknown {
  if (!(error instanceof StrataClientError)) return error;
  if (error.code === 'UNAVAILABLE' && !error.fromBroker) {
    const reason = transportReason(error.message);
    // Something answered: whether a broker runs there is not the question.
    const advice = reason.startsWith(NOT_GRPC) ? 'set --server or STRATA_SERVER' : 'is it running? Set --server or STRATA_SERVER';
    return new StrataClientError(error.code, `${UNREACHABLE} at ${server} (${reason}); ${advice}`, { cause: error });
  }
  if (error.code === 'DEADLINE_EXCEEDED') {
    return new StrataClientError(error.code, `the broker at ${server} did not answer in time (${error.message})`, { cause: error });
  }
  return error;
}

/** The useful part of a connection failure: "connect ECONNREFUSED 127.0.0.1:1". */
function transportReason(message: string): string {
  const prefix = `${UNREACHABLE} (`;
  return message.startsWith(prefix) && message.endsWith(')') ? message.slice(prefix.length, -1) : message;
}

/**
 * Calls `stop` on the first SIGINT or SIGTERM (the command then finishes cleanly: consumers
 * leave their group, producers flush); a second one exits at once with 130. Returns a function
 * that removes the handlers.
 */
export function onInterrupt(stop: () => void): () => void {
  let interrupted = false;
  const handler = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    stop();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
