/**
 * The process-wide pino logger. Subsystems take a child (`logger.child({ subsystem: 'storage' })`)
 * so every line says where it came from. Hot paths do not log; data loss logs at `warn`.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

const DEFAULT_LEVEL = process.env.VITEST ? 'silent' : 'info';
const fromEnvironment = process.env.STRATA_LOG_LEVEL;
// A level pino does not know would throw here, as the CLI loads, before `serve` can refuse it
// with one line naming its choices: such a value is left to that check.
const LEVELS = new Set([...Object.keys(pino.levels.values), 'silent']);
const level = fromEnvironment !== undefined && LEVELS.has(fromEnvironment) ? fromEnvironment : DEFAULT_LEVEL;

export const rootLogger: Logger = pino({ level, base: { service: 'strata' } });

export function setLogLevel(newLevel: string): void {
  rootLogger.level = newLevel;
}

/**
 * The client library's logger when the application gives none (`logger` of Producer and
 * Consumer): warnings and errors on stderr, so an application's stdout carries only what it prints
 * itself. `STRATA_LOG_LEVEL` sets another level (a group member's joins and assignments are
 * `info`). Pass a pino logger of the application's own to route the lines elsewhere.
 */
let clientLogger: Logger | null = null;
export function defaultClientLogger(): Logger {
  const clientLevel = fromEnvironment !== undefined && LEVELS.has(fromEnvironment) ? fromEnvironment : process.env.VITEST ? 'silent' : 'warn';
  clientLogger ??= stderrLogger(clientLevel, 'strata-client');
  return clientLogger;
}

/**
 * A logger that writes to stderr synchronously, so that a line logged just before the process
 * exits is not lost: the client library's default and the CLI's.
 */
export function stderrLogger(level: string, service: string): Logger {
  return pino({ level, base: { service } }, pino.destination({ fd: 2, sync: true }));
}
