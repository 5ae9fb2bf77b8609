// Goal: every Strata error code maps to the gRPC status the API documents and anything else
// becomes INTERNAL without leaking its message; method: unit calls against an expected table
// written independently from the proto comments and errors.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import { PROTO_ROOT } from '../../src/common/package-root.js';
import { describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { DETAILS_BYTES_MAX, STATUS_FOR_CODE, invalidArgument, toGrpcFailure, toServiceError } from '../../src/server/status.js';

/**
 * The documented mapping (proto/strata/v1/log.proto and admin.proto): bad requests and corrupt
 * batches are INVALID_ARGUMENT; oversized batches, full disks and full queues RESOURCE_EXHAUSTED;
 * offsets outside the log OUT_OF_RANGE; unknown topics NOT_FOUND; duplicate creates
 * ALREADY_EXISTS; out-of-order sequences and fenced partitions FAILED_PRECONDITION; other I/O
 * failures and a broker shutting down UNAVAILABLE (retryable); a stored batch a decoded read
 * cannot decode DATA_LOSS; a call without a known token
 * UNAUTHENTICATED, and one whose token lacks the method's permission PERMISSION_DENIED.
 */
const DOCUMENTED: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  CORRUPT_BATCH: status.INVALID_ARGUMENT,
  RECORD_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  OFFSET_OUT_OF_RANGE: status.OUT_OF_RANGE,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  PARTITION_FENCED: status.FAILED_PRECONDITION,
  DISK_FULL: status.RESOURCE_EXHAUSTED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  STORAGE_ERROR: status.UNAVAILABLE,
  UNAVAILABLE: status.UNAVAILABLE,
  DATA_LOSS: status.DATA_LOSS,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
};

const GENERIC = 'internal error; the broker log has the details';

describe('STATUS_FOR_CODE', () => {
  it('has an entry for every ErrorCode and nothing else', () => {
    expect(Object.keys(STATUS_FOR_CODE).sort()).toEqual(Object.values(ErrorCode).sort());
    expect(Object.keys(DOCUMENTED).sort()).toEqual(Object.values(ErrorCode).sort());
  });

  it.each(Object.values(ErrorCode))('maps %s to the documented status', (code) => {
    expect(STATUS_FOR_CODE[code]).toBe(DOCUMENTED[code]);
  });

  it('never maps an expected condition to OK, UNKNOWN or INTERNAL', () => {
    for (const code of Object.values(STATUS_FOR_CODE)) {
      expect([status.OK, status.UNKNOWN, status.INTERNAL]).not.toContain(code);
    }
  });

  it('is the table log.proto gives other languages, every code once', () => {
    const proto = readFileSync(join(PROTO_ROOT, 'strata', 'v1', 'log.proto'), 'utf8');
    const listed = new Map<string, string>();
    for (const [, line] of proto.matchAll(/^\/\/ {3}(.+ -> [A-Z_]+)$/gm)) {
      // "A, B (why) -> S", or several to a line: "A -> S;  B -> S".
      for (const part of line!.replace(/\([^)]*\)/g, '').split(';')) {
        const [names, statusName] = part.split('->').map((text) => text.trim());
        for (const name of names!.split(',').map((text) => text.trim())) {
          expect(listed.has(name), name).toBe(false);
          listed.set(name, statusName!);
        }
      }
    }
    expect(Object.fromEntries(listed)).toEqual(Object.fromEntries(Object.entries(STATUS_FOR_CODE).map(([code, value]) => [code, status[value]])));
  });

  it('is frozen', () => {
    expect(Object.isFrozen(STATUS_FOR_CODE)).toBe(true);
  });
});

describe('toGrpcFailure', () => {
  it.each(Object.values(ErrorCode))('keeps the message of a StrataError %s and marks it expected', (code) => {
    const failure = toGrpcFailure(new StrataError(code, `something about ${code}`));
    expect(failure).toEqual({ code: DOCUMENTED[code], details: `something about ${code}`, unexpected: false, strataCode: code });
  });

  it('maps invalidArgument() to INVALID_ARGUMENT with its message', () => {
    const error = invalidArgument('max_bytes must be a non-negative integer, got -1');
    expect(error).toBeInstanceOf(StrataError);
    expect(error.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(toGrpcFailure(error)).toEqual({ code: status.INVALID_ARGUMENT, details: 'max_bytes must be a non-negative integer, got -1', unexpected: false, strataCode: ErrorCode.INVALID_ARGUMENT });
  });

  it(`cuts a message over ${DETAILS_BYTES_MAX} bytes (one quoting a long input), saying so`, () => {
    const quoted = 'é'.repeat(100_000);
    const { details } = toGrpcFailure(invalidArgument(`retention.ms must be a number, got "${quoted}"`));
    expect(details.startsWith('retention.ms must be a number, got "éé')).toBe(true);
    expect(details).toMatch(/… \(cut: the message is 200037 bytes\)$/);
    expect(Buffer.byteLength(details)).toBeLessThan(DETAILS_BYTES_MAX + 100);
  });

  class SubclassedStrataError extends StrataError {}

  it('treats subclasses of StrataError like StrataError', () => {
    expect(toGrpcFailure(new SubclassedStrataError(ErrorCode.NOT_FOUND, 'gone'))).toEqual({ code: status.NOT_FOUND, details: 'gone', unexpected: false, strataCode: ErrorCode.NOT_FOUND });
  });

  const secret = 'EACCES: permission denied, open /var/lib/strata/secret';
  it.each<[string, unknown]>([
    ['a plain Error', new Error(secret)],
    ['a TypeError', new TypeError(`Cannot read properties of undefined (${secret})`)],
    ['an errno error', Object.assign(new Error(secret), { code: 'EACCES', errno: -13 })],
    ['a RangeError', new RangeError(secret)],
    ['an Error whose cause is a StrataError', new Error(secret, { cause: new StrataError(ErrorCode.NOT_FOUND, 'x') })],
    ['a look-alike object with a Strata code', { name: 'StrataError', code: 'NOT_FOUND', message: secret }],
    ['a look-alike object with a gRPC code', { code: status.NOT_FOUND, details: secret }],
    ['a string', secret],
    ['a number', 42],
    ['null', null],
    ['undefined', undefined],
  ])('maps %s to INTERNAL with a generic message', (_label, thrown) => {
    const failure = toGrpcFailure(thrown);
    expect(failure).toEqual({ code: status.INTERNAL, details: GENERIC, unexpected: true });
    expect(failure.details).not.toContain('EACCES');
  });
});

describe('toServiceError', () => {
  it("names Strata's code of an expected condition in the strata-error trailer", () => {
    const error = toServiceError(toGrpcFailure(new StrataError(ErrorCode.STORAGE_ERROR, 'reading failed')));
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.metadata!.get('strata-error')).toEqual(['STORAGE_ERROR']);
  });

  it('carries the code and the message as details and message, with empty metadata', () => {
    const error = toServiceError({ code: status.OUT_OF_RANGE, details: 'offset 9 is out of range', unexpected: false });
    expect(error.code).toBe(status.OUT_OF_RANGE);
    expect(error.details).toBe('offset 9 is out of range');
    expect(error.message).toBe('offset 9 is out of range');
    expect(error.metadata).toBeInstanceOf(Metadata);
    expect(error.metadata!.getMap()).toEqual({});
  });

  it('turns an unexpected error into INTERNAL with the generic message end to end', () => {
    const error = toServiceError(toGrpcFailure(new Error('boom at /secret/path')));
    expect(error.code).toBe(status.INTERNAL);
    expect(error.details).toBe(GENERIC);
    expect(error.message).not.toContain('/secret/path');
  });
});
