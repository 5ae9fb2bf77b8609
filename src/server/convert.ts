/**
 * Conversions between wire messages and broker types: 64-bit integers (Long on the wire, safe
 * JavaScript numbers inside) and start positions. Every conversion of client input
 * checks it and throws INVALID_ARGUMENT naming the field.
 */
import Long from 'long';
import type { StartSpec } from '../broker/fetch.js';
import { strata } from '../generated/strata.js';
import { invalidArgument } from './status.js';

type WireStart = strata.v1.StartPosition | null | undefined;

export function toLong(value: number): Long {
  return Long.fromNumber(value);
}

/** A wire int64 as a safe integer; INVALID_ARGUMENT (naming `field`) when it is not one. */
export function toSafeNumber(value: Long | number | null | undefined, field: string): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  if (value.greaterThan(Number.MAX_SAFE_INTEGER) || value.lessThan(Number.MIN_SAFE_INTEGER)) {
    throw invalidArgument(`${field} ${value.toString()} is outside the range Strata supports (|n| <= 2^53 - 1)`);
  }
  return value.toNumber();
}

export function nonNegative(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0) throw invalidArgument(`${field} must be a non-negative integer, got ${value}`);
  return value;
}

/** A producer epoch from the wire (int32 there, int16 in a RecordBatch, as in Kafka). */
export function checkProducerEpoch(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 32_767) throw invalidArgument(`producer_epoch must be from 0 to 32767, got ${value}`);
  return value;
}

/** A start position from the wire; a missing one means `defaultKind`. */
export function startFromWire(start: WireStart, defaultKind: 'earliest' | 'latest'): StartSpec {
  switch (start?.position) {
    case 'earliest':
      return { kind: 'earliest' };
    case 'latest':
      return { kind: 'latest' };
    case 'offset': {
      const offset = toSafeNumber(start.offset, 'start.offset');
      return { kind: 'offset', offset: nonNegative(offset, 'start.offset') };
    }
    case 'timestamp': {
      const timestamp = toSafeNumber(start.timestamp, 'start.timestamp');
      // Kafka's ListOffsets takes -1 and -2 for latest and earliest; here those are fields of their own.
      if (timestamp < 0) throw invalidArgument(`start.timestamp must be a time in ms since the epoch, not negative, got ${timestamp} (set start.latest or start.earliest for the newest or oldest records)`);
      return { kind: 'timestamp', timestamp };
    }
    default:
      return { kind: defaultKind };
  }
}
