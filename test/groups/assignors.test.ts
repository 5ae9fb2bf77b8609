// Goal: the server-side assignors keep the promises of assignors.ts (uniform: balanced to
// floor/ceil, sticky on leave and join, only subscribed members, unknown topics dropped; range:
// Kafka's per-topic layout); method: call the pure functions on hand-made and seeded-random
// memberships and check every result against invariants computed independently.
import { describe, expect, it } from 'vitest';
import { type Assignment, type AssignorMember, type TopicPartition, assign, rangeAssign, splitTp, tp, uniformAssign } from '../../src/groups/assignors.js';
import { mulberry32 } from '../helpers/seeded-random.js';

// ---------------------------------------------------------------------------------------------
// Helpers.

const member = (memberId: string, ...topics: string[]): AssignorMember => ({ memberId, topics: new Set(topics) });
const counts = (entries: Record<string, number>): Map<string, number> => new Map(Object.entries(entries));
const NONE: Assignment = new Map();

/** Every partition of the given topics. */
function allPartitions(partitionCounts: ReadonlyMap<string, number>): TopicPartition[] {
  return [...partitionCounts].flatMap(([topic, count]) => Array.from({ length: count }, (_, partition) => tp(topic, partition)));
}

/** A readable view: member -> sorted "topic-partition" strings. */
function readable(assignment: Assignment): Record<string, string[]> {
  const view: Record<string, string[]> = {};
  for (const [memberId, keys] of assignment) {
    view[memberId] = [...keys]
      .map(splitTp)
      .sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition)
      .map(({ topic, partition }) => `${topic}-${partition}`);
  }
  return view;
}

/** Checks each partition is assigned at most once, to a subscribed member; returns the owner map. */
function ownersOf(assignment: Assignment, members: readonly AssignorMember[]): Map<TopicPartition, string> {
  const owners = new Map<TopicPartition, string>();
  const byId = new Map(members.map((m) => [m.memberId, m]));
  for (const [memberId, keys] of assignment) {
    expect(byId.has(memberId), `assignment names unknown member ${memberId}`).toBe(true);
    for (const key of keys) {
      expect(owners.get(key), `${key} assigned twice`).toBeUndefined();
      expect(byId.get(memberId)!.topics.has(splitTp(key).topic), `${memberId} got ${key} without subscribing`).toBe(true);
      owners.set(key, memberId);
    }
  }
  return owners;
}

function sizes(assignment: Assignment): number[] {
  return [...assignment.values()].map((keys) => keys.size);
}

/** Homogeneous members: complete, and every member has floor(P/M) or ceil(P/M). */
function expectBalancedAndComplete(assignment: Assignment, members: readonly AssignorMember[], partitionCounts: ReadonlyMap<string, number>): void {
  const owners = ownersOf(assignment, members);
  expect(new Set(owners.keys())).toEqual(new Set(allPartitions(partitionCounts)));
  expect([...assignment.keys()].sort()).toEqual(members.map((m) => m.memberId).sort());
  const total = allPartitions(partitionCounts).length;
  const floor = Math.floor(total / members.length);
  const ceil = Math.ceil(total / members.length);
  for (const size of sizes(assignment)) expect(size === floor || size === ceil, `size ${size} not in {${floor}, ${ceil}}`).toBe(true);
}

/**
 * The most partitions members can keep from `before` in any balanced assignment of `total`
 * partitions over `memberIds`: the (total mod M) members with the most partitions get ceil, the
 * others floor, and each keeps min(what it had, its quota).
 */
function maxKept(before: Assignment, memberIds: readonly string[], total: number): number {
  const floor = Math.floor(total / memberIds.length);
  const extra = total % memberIds.length;
  const had = memberIds.map((id) => before.get(id)?.size ?? 0).sort((a, b) => b - a);
  return had.reduce((sum, count, index) => sum + Math.min(count, floor + (index < extra ? 1 : 0)), 0);
}

function kept(before: Assignment, after: Assignment): number {
  let count = 0;
  for (const [memberId, keys] of after) for (const key of keys) if (before.get(memberId)?.has(key)) count++;
  return count;
}

// ---------------------------------------------------------------------------------------------

describe('uniform assignor, identical subscriptions', () => {
  it('gives every member floor(P/M) or ceil(P/M) partitions, each partition once, for all P and M up to 40 x 8', () => {
    for (let members = 1; members <= 8; members++) {
      for (const partitionCounts of [counts({ t: 0 }), counts({ t: 1 }), counts({ t: 12 }), counts({ t: 40 }), counts({ a: 7, b: 5 }), counts({ a: 3, b: 3, c: 11 })]) {
        const list = Array.from({ length: members }, (_, i) => member(`m${i}`, ...partitionCounts.keys()));
        expectBalancedAndComplete(uniformAssign(list, partitionCounts, NONE), list, partitionCounts);
      }
    }
  });

  it('3 members on 12 partitions get 4 each', () => {
    const list = [member('a', 't'), member('b', 't'), member('c', 't')];
    expect(sizes(uniformAssign(list, counts({ t: 12 }), NONE))).toEqual([4, 4, 4]);
  });

  it('is deterministic and dispatched by assign("uniform")', () => {
    const list = [member('b', 't', 'u'), member('a', 't', 'u'), member('c', 't')];
    const partitionCounts = counts({ t: 7, u: 4 });
    expect(readable(assign('uniform', list, partitionCounts, NONE))).toEqual(readable(uniformAssign(list, partitionCounts, NONE)));
    expect(readable(uniformAssign(list, partitionCounts, NONE))).toEqual(readable(uniformAssign([...list].reverse(), partitionCounts, NONE)));
  });

  it('keeps a balanced current assignment exactly as it is', () => {
    const list = [member('a', 't'), member('b', 't'), member('c', 't')];
    const current: Assignment = new Map([
      ['a', new Set([tp('t', 0), tp('t', 5), tp('t', 9), tp('t', 11)])],
      ['b', new Set([tp('t', 1), tp('t', 2), tp('t', 3), tp('t', 4)])],
      ['c', new Set([tp('t', 6), tp('t', 7), tp('t', 8), tp('t', 10)])],
    ]);
    expect(readable(uniformAssign(list, counts({ t: 12 }), current))).toEqual(readable(current));
  });
});

describe('uniform assignor, stickiness', () => {
  it('when a member leaves, only its partitions move and the rest stay where they were', () => {
    const list = [member('a', 't'), member('b', 't'), member('c', 't')];
    const before = uniformAssign(list, counts({ t: 12 }), NONE);
    const remaining = list.filter((m) => m.memberId !== 'b');
    const after = uniformAssign(remaining, counts({ t: 12 }), before);
    expect(sizes(after)).toEqual([6, 6]);
    for (const { memberId } of remaining) for (const key of before.get(memberId)!) expect(after.get(memberId)!.has(key)).toBe(true);
    const moved = [...after].flatMap(([memberId, keys]) => [...keys].filter((key) => !before.get(memberId)!.has(key)));
    expect(new Set(moved)).toEqual(before.get('b'));
  });

  it('when a member joins, it takes a fair share and each other member loses only what it must', () => {
    const list = [member('a', 't'), member('b', 't'), member('c', 't')];
    const before = uniformAssign(list, counts({ t: 12 }), NONE);
    const after = uniformAssign([...list, member('d', 't')], counts({ t: 12 }), before);
    expect(sizes(after)).toEqual([3, 3, 3, 3]);
    for (const { memberId } of list) {
      const mine = after.get(memberId)!;
      for (const key of mine) expect(before.get(memberId)!.has(key), `${memberId} gained ${key}`).toBe(true);
    }
    expect(kept(before, after)).toBe(9); // 3 moved, the least possible
  });

  it('at 10,000 partitions, a joining member takes its share in one move per member that gives, not one per partition', () => {
    const partitionCounts = counts({ t: 10_000 });
    const ids = Array.from({ length: 10 }, (_, index) => `m${index}`);
    const alone = uniformAssign([member('m0', 't')], partitionCounts, NONE);
    const stats = { moves: 0 };
    const pair = uniformAssign([member('m0', 't'), member('m1', 't')], partitionCounts, alone, stats);
    expect(sizes(pair)).toEqual([5_000, 5_000]);
    expect(kept(alone, pair)).toBe(5_000);
    expect(stats.moves).toBe(1);
    // Eight more join: each of the ten ends with 1,000, and nothing moves that need not.
    const ten = ids.map((id) => member(id, 't'));
    const tenStats = { moves: 0 };
    const spread = uniformAssign(ten, partitionCounts, pair, tenStats);
    expectBalancedAndComplete(spread, ten, partitionCounts);
    expect(kept(pair, spread)).toBe(maxKept(pair, ids, 10_000));
    expect(tenStats.moves).toBeLessThanOrEqual(16); // each of the 8 newcomers filled from the 2 that had all
  });

  it('property: over seeded random histories of joins, leaves and topic growth, every step is balanced, complete and moves the fewest partitions possible', () => {
    const seed = 0x5eed_a551;
    const random = mulberry32(seed);
    let current: Assignment = new Map();
    let list: AssignorMember[] = [member('m0', 'a', 'b')];
    let partitionCounts = counts({ a: 10, b: 3 });
    let next = 1;
    for (let step = 0; step < 300; step++) {
      const choice = random();
      if (choice < 0.4 && list.length < 9) list = [...list, member(`m${next++}`, 'a', 'b')];
      else if (choice < 0.8 && list.length > 1) {
        const leaving = Math.floor(random() * list.length);
        list = list.filter((_, index) => index !== leaving);
      }
      else partitionCounts = counts({ a: partitionCounts.get('a')! + Math.floor(random() * 3), b: partitionCounts.get('b')! });
      const after = uniformAssign(list, partitionCounts, current);
      const context = `seed ${seed}, step ${step}`;
      expectBalancedAndComplete(after, list, partitionCounts);
      // No member both loses and gains: members only give up or only receive.
      const existing = new Set(allPartitions(partitionCounts));
      for (const { memberId } of list) {
        const had = current.get(memberId) ?? new Set<TopicPartition>();
        const lost = [...had].filter((key) => !after.get(memberId)!.has(key) && existing.has(key));
        const gained = [...after.get(memberId)!].filter((key) => !had.has(key));
        expect(lost.length === 0 || gained.length === 0, `${context}: ${memberId} lost ${lost} and gained ${gained}`).toBe(true);
      }
      expect(kept(current, after), context).toBe(maxKept(current, list.map((m) => m.memberId), existing.size));
      current = after;
    }
  });
});

describe('uniform assignor, arbitrary inputs', () => {
  it('property: from any current assignment (seeded random), the result is balanced and keeps the most partitions possible', () => {
    const seed = 0x0c0ffee;
    const random = mulberry32(seed);
    for (let iteration = 0; iteration < 1000; iteration++) {
      const ids = Array.from({ length: 1 + Math.floor(random() * 6) }, (_, i) => `m${i}`);
      const total = Math.floor(random() * 25);
      const current: Assignment = new Map(ids.map((id) => [id, new Set<TopicPartition>()]));
      for (let partition = 0; partition < total; partition++) if (random() < 0.8) current.get(ids[Math.floor(random() * ids.length)]!)!.add(tp('t', partition));
      const list = ids.map((id) => member(id, 't'));
      const after = uniformAssign(list, counts({ t: total }), current);
      expectBalancedAndComplete(after, list, counts({ t: total }));
      expect(kept(current, after), `seed ${seed}, iteration ${iteration}`).toBe(maxKept(current, ids, total));
    }
  });

  it('property: with random heterogeneous subscriptions, a partition is assigned exactly when some member subscribes to its topic, and only to such a member', () => {
    const seed = 0xfeed;
    const random = mulberry32(seed);
    const topics = ['p', 'q', 'r', 's'];
    for (let iteration = 0; iteration < 500; iteration++) {
      const list = Array.from({ length: 1 + Math.floor(random() * 5) }, (_, i) => member(`m${i}`, ...topics.filter(() => random() < 0.5)));
      const partitionCounts = new Map(topics.map((topic) => [topic, Math.floor(random() * 6)]));
      const owners = ownersOf(uniformAssign(list, partitionCounts, NONE), list);
      for (const key of allPartitions(partitionCounts)) {
        const subscribed = list.some((m) => m.topics.has(splitTp(key).topic));
        expect(owners.has(key), `seed ${seed}, iteration ${iteration}: ${key}`).toBe(subscribed);
      }
    }
  });
});

describe('uniform assignor, heterogeneous subscriptions', () => {
  it('property: with random subscriptions and a random current assignment, no member ends two or more below one holding a partition of a topic it subscribes to', () => {
    // Many members with few topics each and few with many: a giver's takers are found both by
    // walking the least-loaded members and among its topics' subscribers.
    const seed = 0xba1a;
    const random = mulberry32(seed);
    for (let iteration = 0; iteration < 400; iteration++) {
      const topics = Array.from({ length: 1 + Math.floor(random() * 8) }, (_, i) => `t${i}`);
      const wide = random() < 0.5;
      const list = Array.from({ length: 1 + Math.floor(random() * 30) }, (_, i) => {
        const mine = topics.filter(() => random() < (wide ? 0.7 : 0.15));
        return member(`m${String(i).padStart(2, '0')}`, ...(mine.length > 0 ? mine : [topics[0]!]));
      });
      const partitionCounts = new Map(topics.map((topic) => [topic, Math.floor(random() * 12)]));
      const current: Assignment = new Map(list.map((m) => [m.memberId, new Set<TopicPartition>()]));
      for (const key of allPartitions(partitionCounts)) if (random() < 0.7) current.get(list[Math.floor(random() * list.length)]!.memberId)!.add(key);
      const result = uniformAssign(list, partitionCounts, current);
      ownersOf(result, list);
      for (const giver of list) {
        const given = result.get(giver.memberId)!;
        const heldTopics = new Set([...given].map((key) => splitTp(key).topic));
        for (const taker of list) {
          if (![...taker.topics].some((topic) => heldTopics.has(topic))) continue;
          expect(given.size - result.get(taker.memberId)!.size, `seed ${seed}, iteration ${iteration}: ${giver.memberId} over ${taker.memberId}`).toBeLessThan(2);
        }
      }
    }
  });

  it('gives a partition only to members subscribed to its topic, and balances where subscriptions allow', () => {
    const list = [member('a', 'x'), member('b', 'x', 'y'), member('c', 'y')];
    const partitionCounts = counts({ x: 6, y: 6 });
    const result = uniformAssign(list, partitionCounts, NONE);
    const owners = ownersOf(result, list);
    expect(owners.size).toBe(12);
    expect(sizes(result)).toEqual([4, 4, 4]);
  });

  it('balances a member of two topics against a member of one', () => {
    const list = [member('a', 'x'), member('b', 'x', 'y')];
    const result = uniformAssign(list, counts({ x: 4, y: 4 }), NONE);
    ownersOf(result, list);
    expect(readable(result)).toEqual({ a: ['x-0', 'x-1', 'x-2', 'x-3'], b: ['y-0', 'y-1', 'y-2', 'y-3'] });
  });

  it('leaves partitions of a topic nobody subscribes to unassigned, and a member without subscriptions empty', () => {
    const list = [member('a', 'x'), member('idle')];
    const result = uniformAssign(list, counts({ x: 2, z: 3 }), NONE);
    expect(readable(result)).toEqual({ a: ['x-0', 'x-1'], idle: [] });
  });

  it('takes a partition away from a member that unsubscribed from its topic', () => {
    const current: Assignment = new Map([['a', new Set([tp('x', 0), tp('y', 0)])], ['b', new Set([tp('x', 1), tp('y', 1)])]]);
    const result = uniformAssign([member('a', 'x'), member('b', 'x', 'y')], counts({ x: 2, y: 2 }), current);
    // a keeps x-0 and loses y-0; balancing then hands it x-1 rather than leaving it 1 vs 3.
    expect(readable(result)).toEqual({ a: ['x-0', 'x-1'], b: ['y-0', 'y-1'] });
  });
});

describe('uniform assignor, topic metadata', () => {
  it('drops current partitions of unknown topics and partitions beyond a topic\'s count', () => {
    const current: Assignment = new Map([
      ['a', new Set([tp('gone', 0), tp('t', 0), tp('t', 7)])],
      ['b', new Set([tp('gone', 1), tp('t', 1)])],
    ]);
    const list = [member('a', 't', 'gone'), member('b', 't', 'gone')];
    const result = uniformAssign(list, counts({ t: 4 }), current);
    expect(readable(result)).toEqual({ a: ['t-0', 't-2'], b: ['t-1', 't-3'] });
  });

  it('ignores current assignments of members that are no longer in the group', () => {
    const current: Assignment = new Map([['ghost', new Set([tp('t', 0), tp('t', 1)])]]);
    const result = uniformAssign([member('a', 't')], counts({ t: 2 }), current);
    expect(readable(result)).toEqual({ a: ['t-0', 't-1'] });
  });
});

describe('range assignor', () => {
  it('lays out each topic as Kafka does: members sorted by id take contiguous ranges, the first P mod M one extra', () => {
    const list = [member('m-c', 'x', 'y'), member('m-a', 'x', 'y'), member('m-b', 'x', 'y')];
    const result = rangeAssign(list, counts({ x: 7, y: 3 }));
    expect(readable(result)).toEqual({
      'm-a': ['x-0', 'x-1', 'x-2', 'y-0'],
      'm-b': ['x-3', 'x-4', 'y-1'],
      'm-c': ['x-5', 'x-6', 'y-2'],
    });
  });

  it('ranges each topic over its subscribers only', () => {
    const list = [member('a', 'x'), member('b', 'x', 'y'), member('c', 'y')];
    expect(readable(rangeAssign(list, counts({ x: 3, y: 4 })))).toEqual({ a: ['x-0', 'x-1'], b: ['x-2', 'y-0', 'y-1'], c: ['y-2', 'y-3'] });
  });

  it('gives nothing to members beyond the partition count, and is what assign("range") returns', () => {
    const list = [member('a', 't'), member('b', 't'), member('c', 't')];
    expect(readable(rangeAssign(list, counts({ t: 2 })))).toEqual({ a: ['t-0'], b: ['t-1'], c: [] });
    const current: Assignment = new Map([['c', new Set([tp('t', 0)])]]);
    expect(readable(assign('range', list, counts({ t: 2 }), current))).toEqual({ a: ['t-0'], b: ['t-1'], c: [] });
  });
});
