/**
 * The one table from Strata's error codes to gRPC status codes, and the conversion of any thrown
 * value into a gRPC error. Expected conditions keep their message (written for the person who
 * reads it); anything else becomes INTERNAL with a generic message and is logged in full.
 */
import { status, type ServiceError, Metadata } from '@grpc/grpc-js';
import { ErrorCode, STRATA_ERROR_TRAILER, StrataError } from '../common/errors.js';

export const STATUS_FOR_CODE: Readonly<Record<ErrorCode, status>> = Object.freeze({
  [ErrorCode.INVALID_ARGUMENT]: status.INVALID_ARGUMENT,
  [ErrorCode.CORRUPT_BATCH]: status.INVALID_ARGUMENT,
  [ErrorCode.RECORD_TOO_LARGE]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.OFFSET_OUT_OF_RANGE]: status.OUT_OF_RANGE,
  [ErrorCode.NOT_FOUND]: status.NOT_FOUND,
  [ErrorCode.ALREADY_EXISTS]: status.ALREADY_EXISTS,
  [ErrorCode.PARTITION_FENCED]: status.FAILED_PRECONDITION,
  [ErrorCode.DISK_FULL]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.RESOURCE_EXHAUSTED]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.FAILED_PRECONDITION]: status.FAILED_PRECONDITION,
  [ErrorCode.STORAGE_ERROR]: status.UNAVAILABLE,
  [ErrorCode.DATA_LOSS]: status.DATA_LOSS,
  [ErrorCode.UNAVAILABLE]: status.UNAVAILABLE,
  [ErrorCode.UNAUTHENTICATED]: status.UNAUTHENTICATED,
  [ErrorCode.PERMISSION_DENIED]: status.PERMISSION_DENIED,
});

export interface GrpcFailure {
  code: status;
  details: string;
  /** True for errors Strata did not expect (logged at error level). */
  unexpected: boolean;
  /** Strata's own code of an expected condition, sent in the `strata-error` trailer. */
  strataCode?: ErrorCode;
}

/**
 * The most bytes of a message sent as a status's details. Details travel in the trailers, where
 * grpc-js clients accept 8 KiB in all (`grpc.max_metadata_size`), percent-encoded: a refusal
 * that quotes a client's long input (a config value of 200 KB) never reached the client, whose
 * connection then stopped answering.
 */
export const DETAILS_BYTES_MAX = 1_500;

/** `details` cut to `DETAILS_BYTES_MAX` bytes, saying so. */
export function boundedDetails(details: string): string {
  const bytes = Buffer.byteLength(details);
  if (bytes <= DETAILS_BYTES_MAX) return details;
  return `${Buffer.from(details).subarray(0, DETAILS_BYTES_MAX).toString()}… (cut: the message is ${bytes} bytes)`;
}

export function toGrpcFailure(error: unknown): GrpcFailure {
  if (error instanceof StrataError && STATUS_FOR_CODE[error.code] !== undefined) {
    return { code: STATUS_FOR_CODE[error.code], details: boundedDetails(error.message), unexpected: false, strataCode: error.code };
  }
  return { code: status.INTERNAL, details: 'internal error; the broker log has the details', unexpected: true };
}

export function toServiceError(failure: GrpcFailure): Partial<ServiceError> {
  const metadata = new Metadata();
  if (failure.strataCode !== undefined) metadata.set(STRATA_ERROR_TRAILER, failure.strataCode);
  return { code: failure.code, details: failure.details, message: failure.details, metadata };
}

/** A gRPC-level INVALID_ARGUMENT for request checks made in the server layer. */
export function invalidArgument(message: string): StrataError {
  return new StrataError(ErrorCode.INVALID_ARGUMENT, message);
}
