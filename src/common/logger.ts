/**
 * The process-wide pino logger. Subsystems take a child (`logger.child({ subsystem: 'storage' })`)
 * so every line says where it came from. Hot paths do not log; data loss logs at `warn`.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

const level = process.env.STRATA_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');

export const rootLogger: Logger = pino({ level, base: { service: 'strata' } });

export function setLogLevel(newLevel: string): void {
  rootLogger.level = newLevel;
}
