// Goal: ConsumerGroup keeps the heartbeat protocol of groups.proto (balanced reconciliation,
// two-phase partition moves, session expiry, epoch fencing, static membership, regex and topic
// changes) and never lets two members own a partition at once; method: drive the class directly
// with hand-written heartbeats and a ManualClock, check the ownership invariant after every
// step, and run a seeded discrete-event simulation of protocol-following members under churn.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { type AssignorName, type TopicPartition, splitTp, tp } from '../../src/groups/assignors.js';
import { ConsumerGroup, type HeartbeatInput, type HeartbeatOutput, LEAVE_EPOCH, STATIC_LEAVE_EPOCH, type TopicScope } from '../../src/groups/consumer-group.js';
import { NameScope } from '../../src/common/name-scope.js';
import { memberFrom, storedOf } from '../../src/groups/membership-store.js';
import { mulberry32, testSeed } from '../helpers/seeded-random.js';

// ---------------------------------------------------------------------------------------------
// Helpers.

const SESSION_MS = 1_000;

/** The error a call throws, as {code, message}; fails when it does not throw a StrataError. */
function failure(call: () => unknown): { code: string; message: string } {
  try {
    call();
  } catch (error) {
    if (error instanceof StrataError) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

function partitionsOf(topic: string, count: number): TopicPartition[] {
  return Array.from({ length: count }, (_, partition) => tp(topic, partition));
}

const show = (keys: Iterable<TopicPartition>): string[] =>
  [...keys].map(splitTp).sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition).map(({ topic, partition }) => `${topic}-${partition}`);

/**
 * The ownership invariant of consumer-group.ts: `owners` maps a partition to a member only if
 * that member has it in `assigned` or `revoking`, and every such partition is mapped to it.
 */
function checkOwnership(group: ConsumerGroup, context = ''): void {
  // Plain checks (this runs after every simulated heartbeat); the message says what broke.
  const broken = (message: string): never => {
    throw new Error(`${context} ownership invariant broken: ${message}`);
  };
  for (const [key, memberId] of group.owners) {
    const member = group.members.get(memberId);
    if (member === undefined) broken(`owners maps ${key} to ${memberId}, not a member`);
    if (!member!.assigned.has(key) && !member!.revoking.has(key)) broken(`owners maps ${key} to ${memberId}, which has it in neither assigned nor revoking`);
  }
  for (const member of group.members.values()) {
    for (const key of member.assigned) {
      if (group.owners.get(key) !== member.memberId) broken(`${member.memberId} has ${key} assigned but owners says ${group.owners.get(key)}`);
      if (member.revoking.has(key)) broken(`${key} is both assigned to and being revoked from ${member.memberId}`);
    }
    for (const key of member.revoking) {
      if (group.owners.get(key) !== member.memberId) broken(`${member.memberId} is revoking ${key} but owners says ${group.owners.get(key)}`);
    }
    for (const key of member.vanished) {
      if (!member.revoking.has(key)) broken(`${member.memberId} has ${key} vanished but not being revoked`);
    }
  }
}

/** What a protocol-following member knows and consumes. */
interface Client {
  memberId: string;
  epoch: number;
  /** The partitions it consumes (reported as owned in the next heartbeat). */
  owned: Set<TopicPartition>;
  /** The topics its token may use, sent with each heartbeat (absent: every topic). */
  topicScope?: TopicScope;
}

interface JoinOptions {
  names?: string[];
  regex?: string;
  instanceId?: string;
  sessionTimeoutMs?: number;
  assignor?: AssignorName;
  clientId?: string;
  /** A member id the consumer chose ('' lets the broker choose). */
  memberId?: string;
  topicScope?: TopicScope;
}

class Harness {
  readonly clock = new ManualClock();
  readonly group = new ConsumerGroup('g');
  readonly topics: Map<string, number>;

  constructor(topics: Record<string, number> = { t: 12 }) {
    this.topics = new Map(Object.entries(topics));
  }

  private call(input: Partial<HeartbeatInput> & { memberEpoch: number }): HeartbeatOutput {
    const output = this.group.heartbeat(
      {
        memberId: '',
        instanceId: null,
        clientId: 'client',
        host: '127.0.0.1',
        subscription: null,
        assignor: null,
        owned: new Set(),
        sessionTimeoutMs: null, // keeps the member's; join() sends one
        topicScope: null,
        ...input,
      },
      this.clock.nowMs(),
      this.topics,
    );
    checkOwnership(this.group);
    return output;
  }

  join(options: JoinOptions = {}): Client {
    const output = this.call({
      memberEpoch: 0,
      memberId: options.memberId ?? '',
      instanceId: options.instanceId ?? null,
      clientId: options.clientId ?? 'client',
      subscription: { topicNames: options.names ?? (options.regex === undefined ? ['t'] : []), regex: options.regex ?? '' },
      assignor: options.assignor ?? null,
      sessionTimeoutMs: options.sessionTimeoutMs ?? SESSION_MS,
      topicScope: options.topicScope ?? null,
    });
    expect(output.memberEpoch).toBeGreaterThan(0);
    return { memberId: output.memberId, epoch: output.memberEpoch, owned: new Set(output.assignment), ...(options.topicScope !== undefined ? { topicScope: options.topicScope } : {}) };
  }

  /**
   * A regular heartbeat reporting `owned` (by default what the client consumes); the client then
   * consumes exactly the assignment it got back.
   */
  beat(client: Client, extra: Partial<HeartbeatInput> = {}): HeartbeatOutput {
    const output = this.call({ memberId: client.memberId, memberEpoch: client.epoch, owned: new Set(client.owned), topicScope: client.topicScope ?? null, ...extra });
    client.epoch = output.memberEpoch;
    client.owned = new Set(output.assignment);
    return output;
  }

  leave(client: Client, epoch: number = LEAVE_EPOCH): HeartbeatOutput {
    const output = this.call({ memberId: client.memberId, memberEpoch: epoch });
    client.owned = new Set();
    return output;
  }

  /** Heartbeats every client in turn until nothing changes and the group is stable. */
  settle(clients: Client[]): void {
    for (let round = 0; round < 20; round++) {
      const before = clients.map((client) => `${client.epoch}:${show(client.owned).join(',')}`).join('|');
      for (const client of clients) this.beat(client);
      const after = clients.map((client) => `${client.epoch}:${show(client.owned).join(',')}`).join('|');
      if (before === after && this.group.state === 'stable') return;
    }
    throw new Error(`group did not settle: state ${this.group.state}`);
  }

  /** Ids of the members removed (`expireWithReasons` gives why). */
  expire(): string[] {
    return this.expireWithReasons().map(({ memberId }) => memberId);
  }

  expireWithReasons(): { memberId: string; reason: 'session' | 'revocation' }[] {
    const expired = this.group.expire(this.clock.nowMs(), this.topics);
    checkOwnership(this.group);
    return expired.map(({ memberId, reason }) => ({ memberId, reason }));
  }
}

/** The clients' partitions are disjoint and cover `all`. */
function expectPartition(clients: Client[], all: TopicPartition[]): void {
  const seen = new Map<TopicPartition, string>();
  for (const client of clients) {
    for (const key of client.owned) {
      expect(seen.get(key), `${key} owned by two clients`).toBeUndefined();
      seen.set(key, client.memberId);
    }
  }
  expect(show(seen.keys())).toEqual(show(all));
}

// ---------------------------------------------------------------------------------------------

describe('membership and reconciliation', () => {
  it('three members of a 12-partition topic get 4 partitions each once reconciled', () => {
    const h = new Harness();
    const members = [h.join(), h.join(), h.join()];
    expect(h.group.state).not.toBe('empty');
    h.settle(members);
    expect(members.map((m) => m.owned.size)).toEqual([4, 4, 4]);
    expectPartition(members, partitionsOf('t', 12));
    expect(h.group.state).toBe('stable');
    for (const m of members) for (const key of m.owned) expect(h.group.owners.get(key)).toBe(m.memberId);
  });

  it('when a member leaves, only its partitions move and the others keep theirs', () => {
    const h = new Harness();
    const [a, b, c] = [h.join(), h.join(), h.join()];
    h.settle([a!, b!, c!]);
    const kept = { a: new Set(a!.owned), c: new Set(c!.owned) };
    const freed = new Set(b!.owned);
    const output = h.leave(b!);
    expect(output.memberEpoch).toBe(LEAVE_EPOCH);
    for (const key of freed) expect(h.group.owners.has(key)).toBe(false);
    h.settle([a!, c!]);
    expect([a!.owned.size, c!.owned.size]).toEqual([6, 6]);
    for (const key of kept.a) expect(a!.owned.has(key)).toBe(true);
    for (const key of kept.c) expect(c!.owned.has(key)).toBe(true);
    expect(new Set([...a!.owned, ...c!.owned].filter((key) => !kept.a.has(key) && !kept.c.has(key)))).toEqual(freed);
    expect(failure(() => h.beat(b!)).code).toBe(ErrorCode.NOT_FOUND);
  });

  it('a member silent for longer than its session timeout is removed by expire() and its partitions are reassigned', () => {
    const h = new Harness();
    const [a, b, c] = [h.join(), h.join({ sessionTimeoutMs: 500 }), h.join()];
    h.settle([a!, b!, c!]);
    const freed = new Set(b!.owned);
    // a and c keep heartbeating; b goes silent.
    h.clock.advance(400);
    h.beat(a!);
    h.beat(c!);
    h.clock.advance(100); // b: exactly 500 ms of silence, not more
    expect(h.expire()).toEqual([]);
    h.clock.advance(1);
    expect(h.expire()).toEqual([b!.memberId]);
    expect(h.group.members.has(b!.memberId)).toBe(false);
    for (const key of freed) expect(h.group.owners.has(key)).toBe(false);
    h.settle([a!, c!]);
    expect([a!.owned.size, c!.owned.size]).toEqual([6, 6]);
    expectPartition([a!, c!], partitionsOf('t', 12));
    expect(failure(() => h.beat(b!)).code).toBe(ErrorCode.NOT_FOUND);
  });

  it('a member that joins takes a fair share; the others lose only what they must', () => {
    const h = new Harness();
    const old = [h.join(), h.join(), h.join()];
    h.settle(old);
    const before = old.map((m) => new Set(m.owned));
    const d = h.join();
    h.settle([...old, d]);
    expect([...old, d].map((m) => m.owned.size)).toEqual([3, 3, 3, 3]);
    old.forEach((m, index) => {
      for (const key of m.owned) expect(before[index]!.has(key), `${key} moved to an old member`).toBe(true);
    });
    expectPartition([...old, d], partitionsOf('t', 12));
  });

  it('grows the assignment when a topic gains partitions', () => {
    const h = new Harness();
    const members = [h.join(), h.join()];
    h.settle(members);
    const epoch = h.group.groupEpoch;
    h.topics.set('t', 16);
    h.group.topicsChanged(h.topics, h.clock.nowMs());
    expect(h.group.groupEpoch).toBeGreaterThan(epoch);
    h.settle(members);
    expect(members.map((m) => m.owned.size)).toEqual([8, 8]);
    expectPartition(members, partitionsOf('t', 16));
  });

  it('uses the assignor of the first member: range gives Kafka\'s contiguous ranges', () => {
    const h = new Harness({ t: 5 });
    const first = h.join({ assignor: 'range' });
    const second = h.join({ assignor: 'uniform' });
    expect(h.group.assignor).toBe('range');
    h.settle([first, second]);
    const [low, high] = [first, second].sort((x, y) => x.memberId.localeCompare(y.memberId));
    expect(show(low!.owned)).toEqual(['t-0', 't-1', 't-2']);
    expect(show(high!.owned)).toEqual(['t-3', 't-4']);
  });

  it('reports the group empty before anyone joins and after everyone leaves', () => {
    const h = new Harness();
    expect(h.group.state).toBe('empty');
    const a = h.join();
    h.settle([a]);
    h.leave(a);
    expect(h.group.state).toBe('empty');
    expect(h.group.owners.size).toBe(0);
  });
});

describe('two-phase partition moves', () => {
  /** a owns all 12 partitions; b has just joined and owns nothing. */
  function scenario() {
    const h = new Harness();
    const a = h.join();
    h.settle([a]);
    expect(a.owned.size).toBe(12);
    const b = h.join();
    expect(b.owned.size).toBe(0); // nothing is free yet
    for (const key of partitionsOf('t', 12)) expect(h.group.owners.get(key)).toBe(a.memberId);
    return { h, a, b };
  }

  it('moves a partition only after its old owner acknowledges the revocation in a heartbeat', () => {
    const { h, a, b } = scenario();
    const everything = new Set(a.owned);
    // a's heartbeat learns it must give up 6 partitions; until it says it did, they stay a's.
    const response = h.beat(a, { owned: everything });
    expect(response.assignment.size).toBe(6);
    const revoked = [...everything].filter((key) => !response.assignment.has(key));
    expect(h.group.state).toBe('reconciling');
    for (const key of revoked) expect(h.group.owners.get(key)).toBe(a.memberId);
    expect(h.beat(b).assignment.size).toBe(0);
    // a heartbeats again still consuming everything (has not stopped yet): nothing moves.
    h.beat(a, { owned: everything });
    expect(h.beat(b).assignment.size).toBe(0);
    for (const key of revoked) expect(h.group.owners.get(key)).toBe(a.memberId);
    // a acknowledges: the partitions are free and b gets them on its next heartbeat.
    h.beat(a);
    for (const key of revoked) expect(h.group.owners.has(key)).toBe(false);
    expect(show(h.beat(b).assignment)).toEqual(show(revoked));
    expect(h.group.state).toBe('stable');
    expectPartition([a, b], partitionsOf('t', 12));
  });

  it('frees partitions being revoked when the old owner leaves instead of acknowledging', () => {
    const { h, a, b } = scenario();
    h.beat(a, { owned: new Set(partitionsOf('t', 12)) });
    h.leave(a);
    expect(h.group.owners.size).toBe(0);
    expect(h.beat(b).assignment.size).toBe(12);
  });

  it('fences a member that heartbeats but keeps partitions it was told to give up for longer than its session', () => {
    const { h, a, b } = scenario();
    h.beat(a, { owned: new Set(partitionsOf('t', 12)) }); // revocation pending from now
    for (let step = 0; step < 9; step++) {
      h.clock.advance(SESSION_MS / 10);
      h.beat(a, { owned: new Set(partitionsOf('t', 12)) }); // alive, but never acknowledges
      h.beat(b);
      expect(h.expire(), `step ${step}`).toEqual([]);
    }
    h.clock.advance(SESSION_MS / 10 + 1);
    h.beat(b);
    expect(h.expireWithReasons()).toEqual([{ memberId: a.memberId, reason: 'revocation' }]);
    expect(h.beat(b).assignment.size).toBe(12);
  });

  it('times a revocation from when it was asked, not from an earlier one the member acknowledged', () => {
    const { h, a, b } = scenario();
    h.beat(a, { owned: new Set(partitionsOf('t', 12)) }); // told to give up 6, pending from now
    h.clock.advance(SESSION_MS * 0.9);
    h.beat(b);
    const c = h.join(); // the target moves again: a is to keep 4
    const held = new Set(a.owned); // the 6 a kept
    // a acknowledges the 6 in time, and the same answer tells it to give up 2 more.
    expect(h.beat(a, { owned: held }).assignment.size).toBe(4);
    for (let step = 0; step < 9; step++) {
      h.clock.advance(SESSION_MS / 10);
      h.beat(a, { owned: held }); // still holds those 2, within a session of being told
      h.beat(b);
      h.beat(c);
      expect(h.expire(), `step ${step}`).toEqual([]);
    }
    h.clock.advance(SESSION_MS / 10 + 1);
    h.beat(b);
    h.beat(c);
    expect(h.expireWithReasons()).toEqual([{ memberId: a.memberId, reason: 'revocation' }]);
  });

  it('frees partitions being revoked when the old owner\'s session expires, not before', () => {
    const { h, a, b } = scenario();
    h.beat(a, { owned: new Set(partitionsOf('t', 12)) }); // revocation pending, never acknowledged
    h.clock.advance(SESSION_MS);
    h.beat(b);
    expect(h.expire()).toEqual([]);
    expect(h.beat(b).assignment.size).toBe(0);
    h.clock.advance(1);
    expect(h.expire()).toEqual([a.memberId]);
    expect(h.beat(b).assignment.size).toBe(12);
  });

  it('lets the revoking member commit a partition until it acknowledges, and nobody else', () => {
    const { h, a, b } = scenario();
    const response = h.beat(a, { owned: new Set(partitionsOf('t', 12)) });
    const revoked = partitionsOf('t', 12).find((key) => !response.assignment.has(key))!;
    expect(() => h.group.checkCommit(a.memberId, a.epoch, [revoked])).not.toThrow();
    expect(failure(() => h.group.checkCommit(b.memberId, b.epoch, [revoked])).message).toMatch(/not the owner/);
    h.beat(a);
    expect(failure(() => h.group.checkCommit(a.memberId, a.epoch, [revoked])).message).toMatch(/not the owner/);
    h.beat(b);
    expect(() => h.group.checkCommit(b.memberId, b.epoch, [revoked])).not.toThrow();
  });
});

describe('epochs and fencing', () => {
  it('refuses a commit with a stale member epoch and a commit of a partition the member does not own', () => {
    const h = new Harness();
    const a = h.join();
    h.settle([a]);
    const staleEpoch = a.epoch;
    const b = h.join();
    h.settle([a, b]);
    expect(a.epoch).toBeGreaterThan(staleEpoch); // a's assignment changed, so did its epoch
    const mine = [...a.owned][0]!;
    const theirs = [...b.owned][0]!;
    const stale = failure(() => h.group.checkCommit(a.memberId, staleEpoch, [mine]));
    expect(stale.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(stale.message).toMatch(/stale member epoch/);
    const notOwner = failure(() => h.group.checkCommit(a.memberId, a.epoch, [mine, theirs]));
    expect(notOwner.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(notOwner.message).toMatch(/not the owner/);
    expect(() => h.group.checkCommit(a.memberId, a.epoch, [...a.owned])).not.toThrow();
    const unknown = failure(() => h.group.checkCommit('no-such-member', 1, [mine]));
    expect(unknown.code).toBe(ErrorCode.FAILED_PRECONDITION);
  });

  it('answers NOT_FOUND to a heartbeat of an unknown member id', () => {
    const h = new Harness();
    h.join();
    const error = failure(() => h.beat({ memberId: 'no-such-member', epoch: 3, owned: new Set() }));
    expect(error.code).toBe(ErrorCode.NOT_FOUND);
    expect(error.message).toMatch(/rejoin with member epoch 0/);
    expect(failure(() => h.leave({ memberId: 'no-such-member', epoch: 3, owned: new Set() })).code).toBe(ErrorCode.NOT_FOUND);
  });

  it('fences a heartbeat from a future epoch, or from an old epoch that claims partitions the member does not have, and removes the member', () => {
    for (const fenced of ['future', 'foreign'] as const) {
      const h = new Harness();
      const a = h.join();
      const b = h.join();
      h.settle([a, b]);
      const error =
        fenced === 'future'
          ? failure(() => h.beat({ ...a, owned: new Set(a.owned) }, { memberEpoch: a.epoch + 1 }))
          : failure(() => h.beat({ ...a, owned: new Set(a.owned) }, { memberEpoch: a.epoch - 1, owned: new Set([...a.owned, ...b.owned]) }));
      expect(error.code).toBe(ErrorCode.FAILED_PRECONDITION);
      expect(error.message).toMatch(/fenced/);
      // Like KIP-848, the fenced member is removed: its partitions are free for the others.
      expect(h.group.members.has(a.memberId)).toBe(false);
      expect([...h.group.owners.values()].every((owner) => owner !== a.memberId)).toBe(true);
    }
  });

  it('a heartbeat of the previous epoch (a delayed duplicate) gives nothing up: the partitions it leaves out stay the member\'s', () => {
    const h = new Harness();
    const a = h.join();
    h.settle([a]);
    const b = h.join();
    const before = a.epoch;
    const all12 = new Set(a.owned);
    h.beat(a, { owned: all12 }); // told to give up 6: a new epoch
    expect(a.epoch).toBeGreaterThan(before);
    const kept = new Set(a.owned);
    // An earlier heartbeat of a's, sent at the old epoch and delayed, arrives now without the 6.
    const answer = h.beat({ memberId: a.memberId, epoch: before, owned: kept });
    expect([answer.memberEpoch, show(answer.assignment)]).toEqual([a.epoch, show(kept)]);
    for (const key of all12) expect(h.group.owners.get(key), key).toBe(a.memberId); // a still holds them
    expect(h.beat(b).assignment.size).toBe(0);
  });

  it('fences a heartbeat of an epoch older than the previous one, however its partitions look', () => {
    const h = new Harness();
    const a = h.join();
    h.settle([a]);
    const first = a.epoch;
    h.join();
    h.beat(a, { owned: new Set(a.owned) }); // 6 to give up
    h.beat(a); // given up
    h.join();
    h.beat(a, { owned: new Set(a.owned) }); // 2 more to give up: a second new epoch
    const error = failure(() => h.beat({ memberId: a.memberId, epoch: first, owned: new Set(a.owned) }));
    expect(error).toMatchObject({ code: ErrorCode.FAILED_PRECONDITION, message: expect.stringMatching(/^fenced: /) });
    expect(h.group.members.has(a.memberId)).toBe(false);
  });

  it('accepts the previous epoch from a member whose last response was lost, when it owns only what it was given, and tells it the current state', () => {
    const h = new Harness();
    const a = h.join();
    h.settle([a]);
    const oldEpoch = a.epoch;
    const all12 = new Set(a.owned);
    h.join();
    // a's heartbeat is answered with a new epoch and 6 partitions to give up; the answer is lost.
    const lost = { ...a, owned: new Set(all12) };
    h.beat(lost, { owned: all12 });
    expect(lost.epoch).toBeGreaterThan(oldEpoch);
    // a sends again what it knew: the old epoch, all 12 still held.
    const response = h.beat({ memberId: a.memberId, epoch: oldEpoch, owned: all12 });
    expect([response.memberEpoch, response.assignment.size]).toEqual([lost.epoch, 6]);
    for (const key of all12) expect(h.group.owners.get(key), key).toBe(a.memberId);
  });
});

describe('static membership', () => {
  it('a static member taken over is not handed the partitions its target lost while it was away: they go to their new owner at once', () => {
    const h = new Harness();
    const a = h.join({ instanceId: 'pod-a' });
    h.settle([a]);
    expect(a.owned.size).toBe(12);
    h.leave(a, STATIC_LEAVE_EPOCH); // a keeps all 12 while away
    const b = h.join({ sessionTimeoutMs: 60_000 });
    expect(b.owned.size).toBe(0); // half of them are b's target, held by the away member
    const back = h.join({ instanceId: 'pod-a' });
    expect(back.owned.size).toBe(6);
    expect(h.beat(b).assignment.size).toBe(6); // at once: nobody holds them
    expectPartition([back, b], partitionsOf('t', 12));
  });

  it('a static member taken over mid-revocation: what the old incarnation was giving up is free at once, not the new one\'s to give up', () => {
    const h = new Harness();
    const a = h.join({ instanceId: 'pod-a' });
    h.settle([a]);
    const b = h.join({ sessionTimeoutMs: 60_000 });
    h.beat(a, { owned: new Set(a.owned) }); // told to give up 6; it leaves before it does
    h.leave(a, STATIC_LEAVE_EPOCH);
    expect(b.owned.size).toBe(0);
    const back = h.join({ instanceId: 'pod-a' });
    expect(back.owned.size).toBe(6);
    expect(h.beat(b).assignment.size).toBe(6); // at once: nobody holds them
    expectPartition([back, b], partitionsOf('t', 12));
  });

  it('a static member that left with epoch -2 cannot commit until it joins again, though it keeps its partitions', () => {
    const h = new Harness();
    const a = h.join({ instanceId: 'pod-a' });
    h.settle([a]);
    const kept = [...a.owned].slice(0, 1);
    h.leave(a, STATIC_LEAVE_EPOCH);
    expect(h.group.owners.get(kept[0]!)).toBe(a.memberId);
    const error = failure(() => h.group.checkCommit(a.memberId, a.epoch, kept));
    expect(error).toMatchObject({ code: ErrorCode.FAILED_PRECONDITION, message: `member ${a.memberId} of group "${h.group.groupId}" left (epoch -2); commit before leaving, or after joining again` });
  });

  it('a static member that leaves with epoch -2 and rejoins within its session gets the same partitions, without a group epoch change', () => {
    const h = new Harness();
    const a = h.join({ instanceId: 'pod-a' });
    const b = h.join({ sessionTimeoutMs: 60_000 });
    h.settle([a, b]);
    const mine = new Set(a.owned);
    const groupEpoch = h.group.groupEpoch;

    expect(h.leave(a, STATIC_LEAVE_EPOCH).memberEpoch).toBe(STATIC_LEAVE_EPOCH);
    expect(h.group.groupEpoch).toBe(groupEpoch);
    for (const key of mine) expect(h.group.owners.get(key)).toBe(a.memberId); // kept while away
    h.clock.advance(SESSION_MS - 10);
    expect(h.expire()).toEqual([]);
    h.beat(b);
    expect(b.owned.size).toBe(6); // b does not get a's partitions

    const back = h.join({ instanceId: 'pod-a' });
    expect(back.memberId).not.toBe(a.memberId);
    expect(show(back.owned)).toEqual(show(mine));
    expect(h.group.groupEpoch).toBe(groupEpoch);
    for (const key of mine) expect(h.group.owners.get(key)).toBe(back.memberId);
    expect(h.group.members.size).toBe(2);
    // The old incarnation is fenced; the new one reconciles and commits normally.
    expect(failure(() => h.beat(a)).code).toBe(ErrorCode.NOT_FOUND);
    expect(failure(() => h.group.checkCommit(a.memberId, a.epoch, [...mine])).code).toBe(ErrorCode.FAILED_PRECONDITION);
    h.settle([back, b]);
    expect(show(back.owned)).toEqual(show(mine));
    expect(() => h.group.checkCommit(back.memberId, back.epoch, [...mine])).not.toThrow();
    expect(h.group.groupEpoch).toBe(groupEpoch);
  });

  it('a static member that does not come back within its session is removed and its partitions reassigned', () => {
    const h = new Harness();
    const a = h.join({ instanceId: 'pod-a' });
    const b = h.join({ sessionTimeoutMs: 60_000 });
    h.settle([a, b]);
    const groupEpoch = h.group.groupEpoch;
    h.leave(a, STATIC_LEAVE_EPOCH);
    h.clock.advance(SESSION_MS + 1);
    expect(h.expire()).toEqual([a.memberId]);
    expect(h.group.groupEpoch).toBeGreaterThan(groupEpoch);
    h.settle([b]);
    expect(b.owned.size).toBe(12);
    // Coming back later is a fresh join that takes a fair share again.
    const again = h.join({ instanceId: 'pod-a' });
    h.settle([again, b]);
    expect([again.owned.size, b.owned.size]).toEqual([6, 6]);
  });

  it("a static member's time away counts from its leave with epoch -2, not from its last heartbeat", () => {
    const h = new Harness();
    const a = h.join({ instanceId: 'pod-a' });
    const b = h.join({ sessionTimeoutMs: 60_000 });
    h.settle([a, b]);
    // Its last heartbeat was an interval or so before it stopped and left.
    h.clock.advance(SESSION_MS / 2);
    h.leave(a, STATIC_LEAVE_EPOCH);
    h.clock.advance(SESSION_MS - 10); // a session after its last heartbeat, not yet after the leave
    expect(h.expire()).toEqual([]);
    const back = h.join({ instanceId: 'pod-a' });
    expect(back.owned.size).toBe(6);
    h.leave(back, STATIC_LEAVE_EPOCH);
    h.clock.advance(SESSION_MS + 1);
    expect(h.expire()).toEqual([back.memberId]);
  });

  it('refuses a second instance with an instance id still in use (no two live owners), and admits it once the first one expires', () => {
    const h = new Harness();
    const a = h.join({ instanceId: 'pod-a' });
    const b = h.join({ sessionTimeoutMs: 60_000 });
    h.settle([a, b]);
    h.clock.advance(300);
    const refused = failure(() => h.join({ instanceId: 'pod-a' }));
    expect(refused.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(refused.message).toMatch(/instance id "pod-a" is in use/);
    expect(h.group.members.has(a.memberId)).toBe(true);
    h.clock.advance(SESSION_MS + 1);
    h.group.expire(h.clock.nowMs(), h.topics);
    const back = h.join({ instanceId: 'pod-a' });
    h.settle([back, b]);
    expect(back.owned.size + b.owned.size).toBe(12);
  });

  it('epoch -2 from a member without an instance id is an ordinary leave', () => {
    const h = new Harness();
    const a = h.join();
    const b = h.join();
    h.settle([a, b]);
    expect(h.leave(a, STATIC_LEAVE_EPOCH).memberEpoch).toBe(LEAVE_EPOCH);
    expect(h.group.members.has(a.memberId)).toBe(false);
  });
});

describe('member ids chosen by the consumer (a join whose answer was lost)', () => {
  it('a join retried with the same member id finds the member it made: no second member holds partitions meanwhile', () => {
    const h = new Harness();
    const a = h.join({ memberId: 'consumer-a' });
    expect(a.memberId).toBe('consumer-a');
    h.settle([a]);
    h.join({ memberId: 'consumer-b' }); // its answer is lost: b does not know it joined
    h.beat(a); // a is asked to give up b's share
    h.beat(a); // and does
    const b = h.join({ memberId: 'consumer-b' });
    expect(b.memberId).toBe('consumer-b');
    expect([...h.group.members.keys()].sort()).toEqual(['consumer-a', 'consumer-b']);
    h.settle([a, b]);
    expect([a.owned.size, b.owned.size]).toEqual([6, 6]);
    expectPartition([a, b], partitionsOf('t', 12));
  });

  it('partitions given in the lost answer are given again, without a rebalance', () => {
    const h = new Harness();
    h.join({ memberId: 'consumer-a' }); // lost: it was given all 12 partitions
    const groupEpoch = h.group.groupEpoch;
    const a = h.join({ memberId: 'consumer-a' });
    expect(show(a.owned)).toEqual(show(partitionsOf('t', 12)));
    expect(h.group.members.size).toBe(1);
    expect(h.group.groupEpoch).toBe(groupEpoch);
    for (const key of a.owned) expect(h.group.owners.get(key)).toBe('consumer-a');
    expect(() => h.group.checkCommit(a.memberId, a.epoch, [...a.owned])).not.toThrow();
  });

  it('a rejoin with another subscription rebalances the group', () => {
    const h = new Harness({ t: 4, u: 4 });
    h.join({ memberId: 'consumer-a', names: ['t'] }); // lost
    const a = h.join({ memberId: 'consumer-a', names: ['u'] });
    h.settle([a]);
    expect(show(a.owned)).toEqual(show(partitionsOf('u', 4)));
  });

  it('a static member whose join answer was lost may retry at once, instead of being refused until its session ends', () => {
    const h = new Harness();
    h.join({ memberId: 'pod-a-1', instanceId: 'pod-a' }); // lost
    const a = h.join({ memberId: 'pod-a-1', instanceId: 'pod-a' });
    expect(a.memberId).toBe('pod-a-1');
    expect(a.owned.size).toBe(12);
    expect(h.group.members.size).toBe(1);
    // A new process with the same instance id and a new member id is still refused while the first is live.
    expect(failure(() => h.join({ memberId: 'pod-a-2', instanceId: 'pod-a' })).message).toMatch(/instance id "pod-a" is in use by member pod-a-1/);
  });

  it('a static member back after leaving with epoch -2 takes over under the member id it chose', () => {
    const h = new Harness();
    const a = h.join({ memberId: 'pod-a-1', instanceId: 'pod-a' });
    h.settle([a]);
    h.leave(a, STATIC_LEAVE_EPOCH);
    h.join({ memberId: 'pod-a-2', instanceId: 'pod-a' }); // the takeover's answer is lost
    const back = h.join({ memberId: 'pod-a-2', instanceId: 'pod-a' });
    expect(back.memberId).toBe('pod-a-2');
    expect(back.owned.size).toBe(12);
    expect([...h.group.members.keys()]).toEqual(['pod-a-2']);
  });

  it('refuses a join under the id of a member that has heartbeated since it joined: that one may be consuming', () => {
    const h = new Harness();
    const a = h.join({ memberId: 'consumer-a' });
    h.settle([a]);
    const refused = failure(() => h.join({ memberId: 'consumer-a' }));
    expect(refused.code).toBe(ErrorCode.FAILED_PRECONDITION);
    expect(refused.message).toMatch(/member id consumer-a is in use in group "g" by a member that has heartbeated since it joined/);
    expect(h.beat(a).assignment.size).toBe(12); // the member is untouched
  });

  it('a static member back from leaving with epoch -2 under the same member id gets its partitions back, and may send that join again', () => {
    const h = new Harness();
    const a = h.join({ memberId: 'pod-a-1', instanceId: 'pod-a' });
    const b = h.join({ sessionTimeoutMs: 60_000 });
    h.settle([a, b]);
    const mine = show(a.owned);
    h.leave(a, STATIC_LEAVE_EPOCH);
    h.join({ memberId: 'pod-a-1', instanceId: 'pod-a' }); // lost
    const back = h.join({ memberId: 'pod-a-1', instanceId: 'pod-a' });
    expect(show(back.owned)).toEqual(mine);
    h.settle([back, b]);
    expect(show(back.owned)).toEqual(mine);
  });

  it('partitions given in the lost answer that have since left the member\'s target are released at once', () => {
    const h = new Harness();
    h.join({ memberId: 'consumer-a' }); // lost: it was given all 12
    const b = h.join({ memberId: 'consumer-b' }); // half of them are b's target now
    expect(b.owned.size).toBe(0);
    const a = h.join({ memberId: 'consumer-a' });
    expect(a.owned.size).toBe(6);
    h.beat(b); // no wait for a to acknowledge what it never had
    expect(b.owned.size).toBe(6);
    expectPartition([a, b], partitionsOf('t', 12));
  });

  it('a consumer that joins again under its id after its session expired starts above every epoch its earlier membership had', () => {
    const h = new Harness();
    const a = h.join({ sessionTimeoutMs: 60_000 });
    const b = h.join({ sessionTimeoutMs: 60_000 });
    h.settle([a, b]);
    const c = h.join({ memberId: 'consumer-c' });
    h.beat(a); // a gives up c's share from a ...
    h.beat(a);
    h.beat(c); // ... which c takes (its epoch grows) ...
    h.beat(b); // ... before b gives up its share
    h.beat(b);
    h.beat(c); // c's epoch grows again, past the group's
    const earlier = { epoch: c.epoch, owned: [...c.owned] };
    expect(earlier.epoch).toBeGreaterThan(h.group.groupEpoch);
    h.clock.advance(SESSION_MS + 1);
    h.beat(a);
    h.beat(b);
    expect(h.expire()).toEqual(['consumer-c']);
    h.beat(a); // a and b take c's partitions, so nothing is free when c is back
    h.beat(b);
    const again = h.join({ memberId: 'consumer-c' });
    expect(again.owned.size).toBe(0);
    expect(again.epoch).toBeGreaterThan(earlier.epoch); // so a late call of the earlier membership is told apart
    h.settle([a, b, again]);
    expect(again.owned.size).toBe(4);
    expect(failure(() => h.group.checkCommit('consumer-c', earlier.epoch, [...again.owned])).code).toBe(ErrorCode.FAILED_PRECONDITION);
  });

  it("refuses a join with another member's id unless the instance ids agree", () => {
    const h = new Harness();
    const a = h.join({ memberId: 'shared' });
    h.settle([a]);
    const refused = failure(() => h.join({ memberId: 'shared', instanceId: 'pod-b' }));
    expect(refused.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(refused.message).toBe('member id shared is in use in group "g" by a member without an instance id; every consumer needs a member id of its own');
    const s = h.join({ memberId: 'static', instanceId: 'pod-s' });
    expect(failure(() => h.join({ memberId: 'static' })).message).toMatch(/member id static is in use in group "g" by instance id "pod-s"/);
    expect(failure(() => h.join({ memberId: 'static', instanceId: 'pod-t' })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(h.group.members.size).toBe(2);
    h.settle([a, s]);
    expectPartition([a, s], partitionsOf('t', 12));
  });
});

describe('subscriptions and topic metadata', () => {
  it('a regular-expression subscription picks up a topic created later, matching whole names only', () => {
    const h = new Harness({ 'orders.eu': 2, other: 3 });
    const a = h.join({ regex: 'orders\\..*' });
    h.settle([a]);
    expect(show(a.owned)).toEqual(['orders.eu-0', 'orders.eu-1']);
    const groupEpoch = h.group.groupEpoch;
    h.topics.set('orders.us', 3);
    h.topics.set('ordersXus', 1); // the dot is escaped
    h.topics.set('old-orders.us', 1); // whole-name match
    h.group.topicsChanged(h.topics, h.clock.nowMs());
    expect(h.group.groupEpoch).toBeGreaterThan(groupEpoch);
    expect(show(h.beat(a).assignment)).toEqual(['orders.eu-0', 'orders.eu-1', 'orders.us-0', 'orders.us-1', 'orders.us-2']);
  });

  it('refuses an invalid regular expression with INVALID_ARGUMENT', () => {
    const h = new Harness();
    const error = failure(() => h.join({ regex: 'orders(' }));
    expect(error.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(error.message).toMatch(/regular expression/);
    expect(h.group.members.size).toBe(0);
  });

  it('a heartbeat refused for its regex changes nothing: its session is not renewed nor its timeout changed', () => {
    const h = new Harness();
    const a = h.join();
    h.settle([a]);
    h.clock.advance(SESSION_MS - 1);
    const error = failure(() => h.beat(a, { subscription: { topicNames: ['t'], regex: '(' }, sessionTimeoutMs: SESSION_MS * 10 }));
    expect(error.code).toBe(ErrorCode.INVALID_ARGUMENT);
    h.clock.advance(2);
    expect(h.expire()).toEqual([a.memberId]);
  });

  it('deleting a topic revokes its partitions; the rest is rebalanced', () => {
    const h = new Harness({ t: 12, u: 4 });
    const members = [h.join({ names: ['t', 'u'] }), h.join({ names: ['t', 'u'] })];
    h.settle(members);
    // Put some of u's partitions into `revoking` first, so both sets are exercised.
    const c = h.join({ names: ['t', 'u'] });
    h.beat(members[0]!, { owned: new Set(members[0]!.owned) });
    h.topics.delete('u');
    h.group.topicsChanged(h.topics, h.clock.nowMs());
    checkOwnership(h.group);
    for (const member of h.group.members.values()) for (const key of member.assigned) expect(splitTp(key).topic).toBe('t');
    // Their owners still read them until they say they stopped.
    const vanished = [...h.group.members.values()].flatMap((member) => [...member.vanished]);
    expect(show(new Set(vanished))).toEqual(['u-0', 'u-1', 'u-2', 'u-3']);
    h.settle([...members, c]);
    for (const key of h.group.owners.keys()) expect(splitTp(key).topic).toBe('t');
    expect([...h.group.members.values()].flatMap((member) => [...member.vanished])).toEqual([]);
    expect([...members, c].map((m) => m.owned.size)).toEqual([4, 4, 4]);
    expectPartition([...members, c], partitionsOf('t', 12));
  });

  it("a topic deleted under a member's partitions gives it a smaller assignment with a new epoch, though its other partitions stay", () => {
    const h = new Harness({ t: 2, u: 2 });
    const a = h.join({ names: ['t', 'u'] });
    h.settle([a]);
    expect(show(a.owned)).toEqual(['t-0', 't-1', 'u-0', 'u-1']);
    const epoch = a.epoch;
    h.topics.delete('u');
    h.group.topicsChanged(h.topics, h.clock.nowMs());
    const answer = h.beat(a);
    expect(show(new Set(answer.assignment))).toEqual(['t-0', 't-1']);
    expect(answer.memberEpoch).toBeGreaterThan(epoch);
    // Once it heard of the change, its epoch stays put while nothing changes.
    expect(h.beat(a).memberEpoch).toBe(answer.memberEpoch);
    expect(h.beat(a).memberEpoch).toBe(answer.memberEpoch);
  });

  it('a topic deleted and created again (with as many or fewer partitions) is never read by two members at once', () => {
    for (const assignor of ['uniform', 'range'] as const) {
      for (const recreatedPartitions of [2, 1]) {
        const h = new Harness({ t: 2, u: 2 });
        const a = h.join({ names: ['t', 'u'], assignor });
        const b = h.join({ names: ['t', 'u'] });
        const clients = [a, b];
        const all = [...partitionsOf('t', 2), ...partitionsOf('u', 2)];
        // After every heartbeat, no partition is consumed by two clients.
        const beatAndCheck = (client: Client): void => {
          h.beat(client);
          for (const key of all) expect(clients.filter((each) => each.owned.has(key)).length, `${key} consumed twice (${assignor}, ${recreatedPartitions})`).toBeLessThanOrEqual(1);
        };
        h.settle(clients);
        const holder = clients.find((client) => client.owned.has(tp('u', 0)))!;
        const other = holder === a ? b : a;
        h.topics.delete('u');
        h.group.topicsChanged(h.topics, h.clock.nowMs());
        h.topics.set('u', recreatedPartitions);
        h.group.topicsChanged(h.topics, h.clock.nowMs());
        // The other member heartbeats first: u-0 is not handed to it while its owner still
        // reads the deleted topic's u-0.
        beatAndCheck(other);
        for (let round = 0; round < 10; round++) for (const client of [holder, other]) beatAndCheck(client);
        expect(h.group.state).toBe('stable');
        expectPartition(clients, [...partitionsOf('t', 2), ...partitionsOf('u', recreatedPartitions)]);
      }
    }
  });

  it('a subscription change in a heartbeat rebalances the group', () => {
    const h = new Harness({ t: 4, u: 4 });
    const a = h.join({ names: ['t'] });
    h.settle([a]);
    h.beat(a, { subscription: { topicNames: ['t', 'u'], regex: '' } });
    h.settle([a]);
    expect(a.owned.size).toBe(8);
  });

  it("a member is assigned only topics its token may use, whatever its regex matches; a heartbeat with a narrowed token moves the others away", () => {
    const h = new Harness({ orders: 2, payments: 2, 'audit.eu': 1 });
    const every = [...partitionsOf('orders', 2), ...partitionsOf('payments', 2), ...partitionsOf('audit.eu', 1)];
    const limited = h.join({ regex: '.*', topicScope: new NameScope(['orders', 'audit.*']) });
    const open = h.join({ regex: '.*' });
    h.settle([limited, open]);
    expectPartition([limited, open], every);
    expect(show(limited.owned).every((key) => !key.startsWith('payments-'))).toBe(true);
    expect(limited.owned.size).toBeGreaterThan(0);
    // The same patterns in a new scope (the tokens file read again, unchanged) move nothing.
    const groupEpoch = h.group.groupEpoch;
    limited.topicScope = new NameScope(['orders', 'audit.*']);
    h.settle([limited, open]);
    expect(h.group.groupEpoch).toBe(groupEpoch);
    // Narrowed to payments: what it had is revoked, and it takes payments alone.
    limited.topicScope = new NameScope(['payments']);
    h.settle([limited, open]);
    expect(h.group.groupEpoch).toBeGreaterThan(groupEpoch);
    expectPartition([limited, open], every);
    expect(limited.owned.size).toBeGreaterThan(0);
    expect(show(limited.owned).every((key) => key.startsWith('payments-'))).toBe(true);
    // Alone, it leaves the topics it may not use unassigned.
    h.leave(open);
    h.settle([limited]);
    expect(show(limited.owned)).toEqual(['payments-0', 'payments-1']);
  });

  // Subscriptions compare as sets: duplicate names must not hide a change.
  it('a subscription change from duplicate names (["t", "t"]) to ["t", "u"] is not ignored', () => {
    const h = new Harness({ t: 4, u: 4 });
    const a = h.join({ names: ['t', 't'] });
    h.settle([a]);
    h.beat(a, { subscription: { topicNames: ['t', 'u'], regex: '' } });
    h.settle([a]);
    expect(h.group.members.get(a.memberId)!.subscription.topicNames).toEqual(['t', 'u']);
    expect(a.owned.size).toBe(8);
  });
});

// ---------------------------------------------------------------------------------------------
// CHURN: a discrete-event simulation of protocol-following members.
//
// Every heartbeat is sent, reaches the broker and comes back after random delays (0-40 ms each
// way), so heartbeats of different members interleave in random order. Members heartbeat every
// 50-150 ms (sometimes 300-650 ms), at once (0-30 ms) after a response revoked something, and
// send what they consume as owned_partitions. A member owns a partition from the response that
// assigned it until it sends the heartbeat that leaves it out (or its leave). A crashed member
// stops sending; as far as the broker is concerned it owns what it consumed until the broker
// removes it (session expiry or a static takeover), so its intervals end then. 3% of responses
// are lost (the member retries with its old epoch, or its join; every other process joins with
// a member id of its own, so its retried join finds the member it made). Static members restart as a new
// incarnation with the same instance id after leaving with -2 or crashing, usually within the
// session timeout. The broker's session check runs every 50 ms, and the broker restarts every
// 1.7 s, rebuilding the group from what it keeps of each member. Checked: the ownership
// invariant after every broker call, that a call changes the kept record of no member but those
// it names, answers or removes (the only ones the coordinator writes), no error for a live member, no two owners' intervals
// overlapping on a partition, and, after a quiet period, a stable and balanced group whose live
// members between them own every partition exactly once.

type IncarnationState = 'joining' | 'live' | 'leaving' | 'away' | 'left' | 'crashed' | 'gone';

/** One run of one consumer process (a static restart is a new incarnation, same instance id). */
interface Incarnation {
  name: string;
  instanceId: string | null;
  /** The member id it joins with: its own (every other process), or '' for the broker's. */
  joinMemberId: string;
  memberId: string;
  epoch: number;
  /** Partitions it consumes now. */
  owned: Set<TopicPartition>;
  /** Partitions its last response revoked; it stops consuming them when it sends its next heartbeat. */
  toRevoke: Set<TopicPartition>;
  state: IncarnationState;
  inFlight: boolean;
  /** Scheduled heartbeats of an older generation are cancelled. */
  generation: number;
  wants: 'leave' | 'staticLeave' | null;
  /** After a static leave, when the next incarnation starts (ms after the leave is sent). */
  restartAfterMs: number | null;
}

interface Interval {
  key: TopicPartition;
  owner: string;
  start: number;
  end: number;
}

interface ChurnResult {
  seed: number;
  changes: Record<string, number>;
  intervals: Interval[];
  violations: string[];
  log: string[];
}

const CHURN_TOPICS: Record<string, number> = { a: 12, b: 5 };
const CHURN_SESSION_MS = 1_000;
const CHURN_CHANGES = 30;

function simulateChurn(seed: number, assignor: AssignorName): ChurnResult {
  const random = mulberry32(seed);
  const between = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const clock = new ManualClock(0);
  let memberIdCount = 0;
  const newMemberId = (): string => `member-${++memberIdCount}`; // replays exactly from the seed
  let group = new ConsumerGroup('churn', newMemberId);
  const topics = new Map(Object.entries(CHURN_TOPICS));
  const all = [...topics].flatMap(([topic, count]) => partitionsOf(topic, count));
  const violations: string[] = [];
  const log: string[] = [];
  const changes: Record<string, number> = { join: 0, leave: 0, crash: 0, staticLeave: 0, staticCrash: 0, lostResponse: 0, brokerRestart: 0 };

  // Event queue ordered by (time, sequence).
  const queue: { time: number; seq: number; run: () => void }[] = [];
  let seq = 0;
  const at = (time: number, run: () => void): void => {
    const event = { time, seq: seq++, run };
    let index = queue.length;
    while (index > 0 && (queue[index - 1]!.time > time || (queue[index - 1]!.time === time && queue[index - 1]!.seq > event.seq))) index--;
    queue.splice(index, 0, event);
  };
  const now = (): number => clock.nowMs();

  // Ownership intervals from the members' point of view.
  const open = new Map<string, number>(); // `${owner}\u0001${key}` -> start
  const intervals: Interval[] = [];
  const startOwning = (inc: Incarnation, key: TopicPartition): void => void open.set(`${inc.name}\u0001${key}`, now());
  const stopOwning = (inc: Incarnation, key: TopicPartition): void => {
    const id = `${inc.name}\u0001${key}`;
    const start = open.get(id);
    if (start === undefined) return;
    open.delete(id);
    intervals.push({ key, owner: inc.name, start, end: now() });
  };

  const incarnations: Incarnation[] = [];
  /** Instance ids whose next incarnation is scheduled: nobody else may start with them. */
  const restarting = new Set<string>();
  let nextName = 0;
  let stopping = false;

  // What the broker keeps of each member (membership-store.ts), as the coordinator writes it:
  // after each call, the members it names or answers and the removal of those the group says
  // it took out. A record that then differs from the member in memory is a change the
  // coordinator would not have written; restarts (below) rebuild the group from these records.
  const stored = new Map<string, string>();
  function afterBrokerCall(context: string, written: readonly string[] = []): void {
    try {
      checkOwnership(group, `[${context} @${now()}]`);
    } catch (error) {
      violations.push((error as Error).message);
    }
    for (const memberId of group.takeRemoved()) if (!group.members.has(memberId)) stored.delete(memberId);
    for (const memberId of written) {
      const member = group.members.get(memberId);
      if (member !== undefined) stored.set(memberId, JSON.stringify(storedOf(member)));
    }
    for (const memberId of stored.keys()) if (!group.members.has(memberId)) violations.push(`@${now()} ${context}: ${memberId} left the group without being reported removed`);
    for (const member of group.members.values()) {
      if (stored.get(member.memberId) !== JSON.stringify(storedOf(member))) violations.push(`@${now()} ${context} changed the record of ${member.memberId}, which it does not write`);
    }
    // A crashed member owns what it consumed until the broker removes it (expiry or takeover).
    for (const inc of incarnations) {
      if (inc.state === 'crashed' && inc.memberId !== '' && !group.members.has(inc.memberId)) {
        for (const key of inc.owned) stopOwning(inc, key);
        inc.owned.clear();
        inc.state = 'gone';
        log.push(`${now()} ${inc.name} removed by the broker`);
      }
    }
  }

  function schedule(inc: Incarnation, delay: number): void {
    const generation = inc.generation;
    at(now() + delay, () => {
      if (inc.generation === generation) send(inc);
    });
  }

  function nextDelay(inc: Incarnation): number {
    if (inc.toRevoke.size > 0 || inc.wants !== null) return between(0, 30); // revoke at once
    return random() < 0.1 ? between(300, 650) : between(50, 150); // occasionally slow
  }

  function send(inc: Incarnation): void {
    if (stopping || inc.inFlight || !(inc.state === 'joining' || inc.state === 'live')) return;
    let memberEpoch: number;
    let kind: 'join' | 'beat' | 'leave' | 'staticLeave';
    if (inc.memberId === '') {
      kind = 'join';
      memberEpoch = 0;
    } else if (inc.wants !== null) {
      kind = inc.wants;
      memberEpoch = kind === 'leave' ? LEAVE_EPOCH : STATIC_LEAVE_EPOCH;
      for (const key of inc.owned) stopOwning(inc, key); // stops consuming, then says so
      inc.owned.clear();
      inc.toRevoke.clear();
      inc.state = 'leaving';
      changes[kind]!++;
      log.push(`${now()} ${inc.name} sends ${kind}`);
      if (kind === 'staticLeave') restartLater(inc.instanceId!, inc.restartAfterMs!);
    } else {
      kind = 'beat';
      memberEpoch = inc.epoch;
      for (const key of inc.toRevoke) {
        stopOwning(inc, key);
        inc.owned.delete(key);
      }
      inc.toRevoke.clear();
    }
    const owned = new Set(inc.owned);
    inc.inFlight = true;
    at(now() + between(0, 40), () => arrive(inc, kind, memberEpoch, owned));
  }

  function arrive(inc: Incarnation, kind: string, memberEpoch: number, owned: Set<TopicPartition>): void {
    let output: HeartbeatOutput | null = null;
    try {
      output = group.heartbeat(
        {
          memberId: kind === 'join' ? inc.joinMemberId : inc.memberId,
          memberEpoch,
          instanceId: inc.instanceId,
          clientId: inc.name,
          host: 'sim',
          subscription: kind === 'join' ? { topicNames: Object.keys(CHURN_TOPICS), regex: '' } : null,
          assignor: kind === 'join' ? assignor : null,
          owned,
          sessionTimeoutMs: CHURN_SESSION_MS,
          topicScope: null,
        },
        now(),
        topics,
      );
      if (kind === 'join') log.push(`${now()} ${inc.name} joined as ${output.memberId}${inc.instanceId ? ` (${inc.instanceId})` : ''}`);
    } catch (error) {
      if (kind === 'join' && /instance id "[^"]*" is in use/.test((error as Error).message)) {
        // The previous incarnation crashed without leaving: join again once its session ends.
        log.push(`${now()} ${inc.name} join refused (instance id in use); retrying`);
        inc.inFlight = false;
        afterBrokerCall(`${inc.name} ${kind}`, [inc.joinMemberId]);
        schedule(inc, between(100, 200));
        return;
      }
      // A crashed or leaving incarnation may be answered NOT_FOUND (expired, taken over): fine.
      if (inc.state !== 'crashed' && inc.state !== 'leaving') violations.push(`@${now()} ${inc.name} (${kind}, epoch ${memberEpoch}) got ${(error as Error).message}`);
      inc.state = inc.state === 'crashed' ? 'crashed' : 'left';
    }
    if (kind === 'join' && output !== null && inc.state === 'crashed') inc.memberId = output.memberId;
    afterBrokerCall(`${inc.name} ${kind}`, [kind === 'join' ? inc.joinMemberId : inc.memberId, output?.memberId ?? '']);
    const result = output;
    // Now and then the response is lost: the member retries later with what it knew before.
    const lost = (kind === 'join' || kind === 'beat') && random() < 0.03;
    at(now() + between(0, 40), () => deliver(inc, kind, result, lost));
  }

  function deliver(inc: Incarnation, kind: string, output: HeartbeatOutput | null, lost: boolean): void {
    inc.inFlight = false;
    if (output === null || inc.state === 'crashed' || inc.state === 'gone' || inc.state === 'left') return;
    if (lost) {
      changes.lostResponse!++;
      schedule(inc, between(100, 200)); // its request timed out: send again (old epoch, same owned)
      return;
    }
    if (kind === 'leave' || kind === 'staticLeave') {
      inc.state = kind === 'leave' ? 'left' : 'away';
      return;
    }
    inc.memberId = output.memberId;
    inc.epoch = output.memberEpoch;
    inc.state = 'live';
    for (const key of output.assignment) {
      if (!inc.owned.has(key)) {
        inc.owned.add(key);
        startOwning(inc, key);
      }
    }
    for (const key of inc.owned) if (!output.assignment.has(key)) inc.toRevoke.add(key);
    schedule(inc, nextDelay(inc));
  }

  function startIncarnation(instanceId: string | null): Incarnation {
    const number = nextName++;
    const inc: Incarnation = {
      name: `p${number}${instanceId ? `/${instanceId}` : ''}`,
      instanceId,
      joinMemberId: number % 2 === 0 ? `chosen-${number}` : '',
      memberId: '',
      epoch: 0,
      owned: new Set(),
      toRevoke: new Set(),
      state: 'joining',
      inFlight: false,
      generation: 0,
      wants: null,
      restartAfterMs: null,
    };
    incarnations.push(inc);
    changes.join!++;
    schedule(inc, 0);
    return inc;
  }

  function restartLater(instanceId: string, delay: number): void {
    restarting.add(instanceId);
    at(now() + delay, () => {
      restarting.delete(instanceId);
      startIncarnation(instanceId);
    });
  }

  function crash(inc: Incarnation): void {
    inc.state = 'crashed'; // stops heartbeating; keeps "owning" until the broker removes it
    inc.generation++;
    log.push(`${now()} ${inc.name} crashes`);
  }

  const live = (): Incarnation[] => incarnations.filter((inc) => inc.state === 'live' && inc.wants === null);
  // Static membership assumes one process per instance id at a time: a new one starts only
  // after the previous one stopped (crashed or left), never beside a running one.
  const usedInstanceIds = (): Set<string> =>
    new Set([...restarting, ...incarnations.filter((inc) => inc.instanceId !== null && inc.state !== 'gone' && inc.state !== 'left').map((inc) => inc.instanceId!)]);

  function churn(): void {
    const candidates = live();
    const pick = (list: Incarnation[]): Incarnation => list[Math.floor(random() * list.length)]!;
    const choice = random();
    const statics = candidates.filter((inc) => inc.instanceId !== null);
    if (choice < 0.3 && candidates.length < 7) {
      // A new member, static one time in three (with an instance id nobody uses).
      let instanceId: string | null = null;
      if (random() < 0.33) {
        const used = usedInstanceIds();
        instanceId = ['s1', 's2', 's3', 's4'].find((id) => !used.has(id)) ?? null;
      }
      startIncarnation(instanceId);
    } else if (choice < 0.5 && candidates.length > 2) {
      pick(candidates).wants = 'leave';
    } else if (choice < 0.7 && candidates.length > 2) {
      crash(pick(candidates));
      changes.crash!++;
    } else if (statics.length > 0 && candidates.length > 1) {
      // Static restart: leave with -2 or crash, then a new incarnation comes back, usually
      // within the session timeout, sometimes after it.
      const inc = pick(statics);
      const delay = random() < 0.75 ? between(20, 700) : between(1_200, 1_600);
      if (random() < 0.5) {
        inc.wants = 'staticLeave';
        inc.restartAfterMs = delay;
      } else {
        crash(inc);
        changes.staticCrash!++;
        restartLater(inc.instanceId!, delay);
      }
    } else if (candidates.length < 7) {
      startIncarnation(null);
    }
  }

  // The broker's session check, as the coordinator's timer does it.
  const expiryCheck = (): void => {
    if (stopping) return;
    for (const { memberId, reason } of group.expire(now(), topics)) log.push(`${now()} broker expired ${memberId} (${reason})`);
    afterBrokerCall('expire');
    at(now() + 50, expiryCheck);
  };
  at(50, expiryCheck);

  // Broker restarts, every 1.7 s: the group is rebuilt from what was written of its members
  // (`stored`), each with a whole session from now. Heartbeats in flight reach the new one.
  const restartBroker = (): void => {
    if (stopping) return;
    const kept = [...stored].map(([memberId, json]) => memberFrom(memberId, JSON.parse(json), now()));
    const next = new ConsumerGroup('churn', newMemberId);
    const claimedTwice = next.restore(group.groupEpoch, group.assignor, kept, topics);
    if (claimedTwice.length > 0) violations.push(`@${now()} restart: kept members claim ${show(claimedTwice).join(', ')} twice`);
    group = next;
    changes.brokerRestart!++;
    log.push(`${now()} broker restarts with ${kept.length} members`);
    afterBrokerCall('restart');
    at(now() + 1_700, restartBroker);
  };
  at(1_700, restartBroker);

  for (const instanceId of [null, null, null, 's1', 's2']) at(between(0, 50), () => startIncarnation(instanceId));
  let time = 300;
  for (let change = 0; change < CHURN_CHANGES; change++) {
    time += between(150, 600);
    at(time, churn);
  }
  // A quiet period: every crashed member expires, every static member is back or expired,
  // and the group converges. Make sure someone is left to own the partitions.
  const quietStart = time + 1;
  at(quietStart, () => {
    if (live().length === 0) startIncarnation(null);
  });
  const end = quietStart + 5 * CHURN_SESSION_MS;

  while (queue.length > 0) {
    const event = queue.shift()!;
    if (event.time > end && !stopping) stopping = true; // no new heartbeats; in-flight ones finish
    clock.set(Math.max(clock.nowMs(), event.time));
    event.run();
  }
  for (const [id, start] of open) {
    const [owner, key] = id.split('\u0001') as [string, TopicPartition];
    intervals.push({ key, owner, start, end: now() });
  }

  // Final state.
  const members = incarnations.filter((inc) => inc.state === 'live');
  const finalProblems: string[] = [];
  if (group.state !== 'stable') finalProblems.push(`final state ${group.state}`);
  const memberIds = new Set(members.map((inc) => inc.memberId));
  if ([...group.members.keys()].some((id) => !memberIds.has(id)) || group.members.size !== members.length) {
    finalProblems.push(`broker members ${[...group.members.keys()].join(',')} are not the live incarnations ${[...memberIds].join(',')}`);
  }
  const ownedBy = new Map<TopicPartition, string[]>();
  for (const inc of members) for (const key of inc.owned) ownedBy.set(key, [...(ownedBy.get(key) ?? []), inc.name]);
  for (const key of all) {
    const owners = ownedBy.get(key) ?? [];
    if (owners.length !== 1) finalProblems.push(`${key.replace('\u0000', '-')} owned by [${owners.join(', ')}] at the end`);
    else if (group.owners.get(key) !== members.find((inc) => inc.name === owners[0])!.memberId) finalProblems.push(`broker owner of ${key} disagrees with the members`);
  }
  // Balanced: uniform balances the totals; range balances each topic separately.
  const groups = assignor === 'uniform' ? [all] : [...topics].map(([topic, n]) => partitionsOf(topic, n));
  for (const keys of groups) {
    const floor = Math.floor(keys.length / members.length);
    const ceil = Math.ceil(keys.length / members.length);
    for (const inc of members) {
      const owns = keys.filter((key) => inc.owned.has(key)).length;
      if (owns !== floor && owns !== ceil) finalProblems.push(`${inc.name} owns ${owns} of ${keys.length}, not ${floor} or ${ceil}`);
    }
  }
  violations.push(...finalProblems);
  return { seed, changes, intervals, violations, log };
}

/** Pairs of intervals of different owners that overlap on the same partition. */
function overlaps(intervals: Interval[]): string[] {
  const byKey = new Map<TopicPartition, Interval[]>();
  for (const interval of intervals) {
    if (interval.end <= interval.start) continue; // empty
    byKey.set(interval.key, [...(byKey.get(interval.key) ?? []), interval]);
  }
  const found: string[] = [];
  for (const [key, list] of byKey) {
    list.sort((x, y) => x.start - y.start);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j]!.start < list[i]!.end; j++) {
        if (list[j]!.owner !== list[i]!.owner) {
          found.push(`${key.replace('\u0000', '-')}: ${list[i]!.owner} [${list[i]!.start}, ${list[i]!.end}) and ${list[j]!.owner} [${list[j]!.start}, ${list[j]!.end})`);
        }
      }
    }
  }
  return found;
}

/** Checks one simulation; the failure message carries the seed and the last events. */
function checkChurn(seed: number, assignor: AssignorName): ChurnResult {
  const result = simulateChurn(seed, assignor);
  const context = `seed ${seed} (${assignor}; replay with CHURN_SEED=${seed}); last events:\n${result.log.slice(-40).join('\n')}`;
  const { lostResponse, brokerRestart, ...membership } = result.changes;
  expect(Object.values(membership).reduce((sum, n) => sum + n, 0), context).toBeGreaterThanOrEqual(20);
  expect(result.violations, context).toEqual([]);
  expect(overlaps(result.intervals), context).toEqual([]);
  return result;
}

describe('CHURN: no partition is ever owned by two members', () => {
  // A fresh seed per run (printed), plus fixed ones; replay any with CHURN_SEED=<seed>.
  const fresh = testSeed('consumer-group.test.ts CHURN', { envVar: 'CHURN_SEED', bound: 2 ** 31 });

  for (const [seed, assignor] of [[1, 'uniform'], [42, 'uniform'], [20240601, 'uniform'], [7, 'range'], [fresh, 'uniform'], [fresh, 'range']] as [number, AssignorName][]) {
    it(`seed ${seed}, ${assignor}: joins, leaves, crashes, static restarts, broker restarts and lost responses never make two members own a partition; the group ends balanced`, () => {
      console.log(`CHURN seed ${seed} with the ${assignor} assignor (replay with CHURN_SEED=${seed})`);
      const result = checkChurn(seed, assignor);
      console.log(`CHURN seed ${seed}: ${JSON.stringify(result.changes)}, ${result.intervals.length} ownership intervals`);
      // Not vacuous: crashes happened and partitions changed hands many times.
      expect(result.changes.crash! + result.changes.staticCrash!).toBeGreaterThan(0);
      expect(result.intervals.length).toBeGreaterThan(60);
    });
  }

  it(`sweep: 100 consecutive seeds from ${fresh}, both assignors`, () => {
    console.log(`CHURN sweep from seed ${fresh}`);
    for (let seed = fresh; seed < fresh + 100; seed++) for (const assignor of ['uniform', 'range'] as AssignorName[]) checkChurn(seed, assignor);
  });
});
