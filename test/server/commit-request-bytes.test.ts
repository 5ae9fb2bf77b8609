// Goal: a CommitOffsetsStream's bound on unanswered requests counts what commits in flight hold
// in memory, so a stream of the largest requests of the smallest entries (over ten times their
// wire size once decoded, twice that with the commit's copies) stops being read after a handful
// of them, not after 1,024; method:
// commitRequestBytes on requests encoded and decoded as the server does.
import Long from 'long';
import { describe, expect, it } from 'vitest';
import { strata } from '../../src/generated/strata.js';
import { COMMIT_STREAM_IN_FLIGHT_BYTES_MAX, COMMIT_STREAM_IN_FLIGHT_MAX, commitRequestBytes } from '../../src/server/groups-service.js';

const v1 = strata.v1;

/** `request` as the server sees it: encoded, then decoded. */
function decoded(request: strata.v1.ICommitOffsetsRequest): { request: strata.v1.CommitOffsetsRequest; wireBytes: number } {
  const bytes = v1.CommitOffsetsRequest.encode(v1.CommitOffsetsRequest.create(request)).finish();
  return { request: v1.CommitOffsetsRequest.decode(bytes), wireBytes: bytes.length };
}

describe('commitRequestBytes', () => {
  it('counts a 1 MiB request of small entries at over ten times its wire size: a few fill the stream', () => {
    const offsets = Array.from({ length: 85_000 }, (_, index) => v1.OffsetCommit.create({ topic: 'ab', partition: index % 16, offset: Long.fromNumber(100_000 + index) }));
    const { request, wireBytes } = decoded({ groupId: 'readers', memberId: 'member-1', offsets });
    expect(wireBytes).toBeLessThanOrEqual(1024 * 1024); // within the limit of non-produce requests
    expect(commitRequestBytes(request)).toBeGreaterThan(20 * wireBytes);
    const requestsUntilPaused = Math.ceil(COMMIT_STREAM_IN_FLIGHT_BYTES_MAX / commitRequestBytes(request));
    expect(requestsUntilPaused).toBeLessThanOrEqual(4);
    expect(requestsUntilPaused).toBeLessThan(COMMIT_STREAM_IN_FLIGHT_MAX);
  });

  it('counts the strings, 2 bytes a character: metadata, topics and ids', () => {
    const small = decoded({ groupId: 'g', memberId: '', offsets: [{ topic: 't', partition: 0, offset: Long.fromNumber(1) }] }).request;
    const large = decoded({ groupId: 'g'.repeat(200), memberId: 'm'.repeat(100), offsets: [{ topic: 't'.repeat(249), partition: 0, offset: Long.fromNumber(1), metadata: 'x'.repeat(4096) }] }).request;
    expect(commitRequestBytes(large) - commitRequestBytes(small)).toBe(2 * (199 + 100 + 248 + 4096));
  });
});
