/**
 * Typed errors for expected conditions.
 *
 * Every condition a caller can cause or must handle (a bad batch, an offset outside the log, a
 * fenced partition, a full disk) is a `StrataError` with a stable `code`. The server layer maps
 * codes to gRPC status codes in one table; nothing else inspects messages. Programmer errors
 * (impossible states) are `assert` failures instead, see `assert.ts`.
 */
import { readFileSync } from 'node:fs';
import { getSystemErrorMap } from 'node:util';

export const ErrorCode = {
  /** A request argument is malformed (names, negative numbers, unknown enum values). */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** A record batch failed validation: magic, lengths, CRC or record count. */
  CORRUPT_BATCH: 'CORRUPT_BATCH',
  /** A batch is larger than the topic's `max.message.bytes`. */
  RECORD_TOO_LARGE: 'RECORD_TOO_LARGE',
  /** An offset outside [logStartOffset, logEndOffset]. */
  OFFSET_OUT_OF_RANGE: 'OFFSET_OUT_OF_RANGE',
  /** A topic or partition that does not exist. */
  NOT_FOUND: 'NOT_FOUND',
  /** Creating something that already exists. */
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  /**
   * The partition found corruption it will not repair on its own (a bad batch in the middle of
   * the log). Reads and appends are refused until an operator runs the repair command.
   */
  PARTITION_FENCED: 'PARTITION_FENCED',
  /** The disk is full; the append was rolled back. */
  DISK_FULL: 'DISK_FULL',
  /** A bounded queue or buffer is full. */
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  /** The operation needs a state the object is not in (closed log, out-of-order sequence...). */
  FAILED_PRECONDITION: 'FAILED_PRECONDITION',
  /** An I/O failure that is neither of the above. */
  STORAGE_ERROR: 'STORAGE_ERROR',
  /**
   * A stored batch, whole and with a valid CRC, whose records do not decode, met by a read that
   * decodes records for its caller. Retrying cannot help; a raw read returns the batch as stored.
   */
  DATA_LOSS: 'DATA_LOSS',
  /** The broker cannot take the call now (it is shutting down); the same call may succeed later. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** The broker asks for a token (`--auth-tokens-file`) and the call had none it knows. */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /** The call's token is known but lacks the permission its method needs. */
  PERMISSION_DENIED: 'PERMISSION_DENIED',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * The gRPC trailer in which the broker names its own error code (`STORAGE_ERROR`, `DISK_FULL`...)
 * on a status it answers for an expected condition. A client tells by it the broker's answers
 * from failures of the transport, which can have the same status (UNAVAILABLE).
 */
export const STRATA_ERROR_TRAILER = 'strata-error';

export class StrataError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StrataError';
    this.code = code;
  }
}

export function isStrataError(error: unknown, code?: ErrorCode): error is StrataError {
  return error instanceof StrataError && (code === undefined || error.code === code);
}

/**
 * A read's CORRUPT_BATCH for a batch it took from the log, as DATA_LOSS: the batch was checked
 * when it was appended, so the log holds something the broker cannot read, and the caller sent
 * nothing wrong (CORRUPT_BATCH is answered as a bad argument). Any other error is returned as is.
 */
export function storedBatchError(error: unknown, where: string): unknown {
  if (!isStrataError(error, ErrorCode.CORRUPT_BATCH)) return error;
  return new StrataError(
    ErrorCode.DATA_LOSS,
    `${where} holds a batch that does not decode (${error.message}): its records cannot be served decoded; a raw read returns the batch as stored, and strata dump-log shows it`,
    { cause: error },
  );
}

/** The log was closed; the call came too late. */
export function logClosedError(what: string): StrataError {
  return new StrataError(ErrorCode.FAILED_PRECONDITION, `${what} is closed`);
}

/**
 * The errno code of a failed file call ("EIO", "EMFILE"...), or null when `error` is not one: a
 * StrataError (whose `code` is Strata's own) or anything without a string `code`.
 */
export function fileCallErrno(error: unknown): string | null {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return error instanceof StrataError || typeof code !== 'string' ? null : code;
}

/** A failed call's errno code when it has one, else its message: for messages that say how it failed. */
export function errnoOrMessage(error: unknown): string {
  return fileCallErrno(error) ?? (error as Error).message;
}

/** Whether an errno code says the disk (or the user's quota) is full. */
export function isDiskFullCode(code: string | undefined): boolean {
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Whether an errno code says the process (EMFILE) or the system (ENFILE) has no file descriptor left: an open failed, nothing else happened. */
export function isTooManyOpenFilesCode(code: string | undefined): boolean {
  return code === 'EMFILE' || code === 'ENFILE';
}

/** "ENOSPC (no space left on device)": the code, and the system's words for it (the message without a code). */
export function systemErrorText(error: NodeJS.ErrnoException): string {
  const reason = typeof error.errno === 'number' ? getSystemErrorMap().get(error.errno)?.[1] : undefined;
  if (error.code === undefined) return error.message;
  return reason === undefined ? `${error.code} (${error.message})` : `${error.code} (${reason})`;
}

/**
 * The bytes of the file a flag names (`--tls-cert-file`, `--auth-tokens-file`...), or an
 * INVALID_ARGUMENT naming the flag, the file and the system's reason.
 */
export function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${flag} ${path} cannot be read: ${systemErrorText(error as NodeJS.ErrnoException)}`);
  }
}
