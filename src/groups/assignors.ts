/**
 * Server-side assignors: given the members of a group (with their subscriptions), the partitions
 * of the topics they subscribe to, and the current target assignment, compute the next target
 * assignment. Pure functions, tested without a broker.
 *
 * - `uniform` (default): balanced and sticky. Every member keeps the partitions it already has
 *   as far as balance allows; free partitions go to the least-loaded eligible member; then
 *   partitions move, one at a time, from the most- to the least-loaded eligible member while
 *   their counts differ by more than one. With identical subscriptions every member ends with
 *   floor(P/M) or ceil(P/M) partitions and a member leaving moves only its own partitions.
 * - `range`: Kafka's range assignor, per topic: members sorted by id take contiguous ranges,
 *   the first (P mod M) one extra. Not sticky.
 */

export type TopicPartition = string; // "topic\u0000partition", see `tp`

export function tp(topic: string, partition: number): TopicPartition {
  return `${topic}\u0000${partition}`;
}

export function splitTp(key: TopicPartition): { topic: string; partition: number } {
  const separator = key.lastIndexOf('\u0000');
  return { topic: key.slice(0, separator), partition: Number(key.slice(separator + 1)) };
}

export interface AssignorMember {
  memberId: string;
  /** Topics this member subscribes to (already resolved from names and regex). */
  topics: ReadonlySet<string>;
}

export type Assignment = Map<string, Set<TopicPartition>>;

export type AssignorName = 'uniform' | 'range';
export const ASSIGNORS: readonly AssignorName[] = ['uniform', 'range'];

export function assign(
  name: AssignorName,
  members: readonly AssignorMember[],
  partitionCounts: ReadonlyMap<string, number>,
  current: Assignment,
): Assignment {
  return name === 'range' ? rangeAssign(members, partitionCounts) : uniformAssign(members, partitionCounts, current);
}

function emptyAssignment(members: readonly AssignorMember[]): Assignment {
  const assignment: Assignment = new Map();
  for (const member of members) assignment.set(member.memberId, new Set());
  return assignment;
}

export function rangeAssign(members: readonly AssignorMember[], partitionCounts: ReadonlyMap<string, number>): Assignment {
  const assignment = emptyAssignment(members);
  for (const [topic, count] of [...partitionCounts].sort(([a], [b]) => a.localeCompare(b))) {
    const eligible = members.filter((member) => member.topics.has(topic)).map((member) => member.memberId).sort();
    if (eligible.length === 0) continue;
    const base = Math.floor(count / eligible.length);
    const extra = count % eligible.length;
    let partition = 0;
    eligible.forEach((memberId, index) => {
      const take = base + (index < extra ? 1 : 0);
      for (let n = 0; n < take; n++) assignment.get(memberId)!.add(tp(topic, partition++));
    });
  }
  return assignment;
}

export function uniformAssign(
  members: readonly AssignorMember[],
  partitionCounts: ReadonlyMap<string, number>,
  current: Assignment,
): Assignment {
  const assignment = emptyAssignment(members);
  const byId = new Map(members.map((member) => [member.memberId, member]));
  const owner = new Map<TopicPartition, string>();
  const eligibleFor = (key: TopicPartition, memberId: string): boolean => {
    const { topic, partition } = splitTp(key);
    const count = partitionCounts.get(topic);
    return count !== undefined && partition < count && byId.get(memberId)!.topics.has(topic);
  };

  // 1. Stickiness: keep what members already have, where still valid.
  for (const [memberId, partitions] of current) {
    if (!byId.has(memberId)) continue;
    for (const key of partitions) {
      if (eligibleFor(key, memberId) && !owner.has(key)) {
        assignment.get(memberId)!.add(key);
        owner.set(key, memberId);
      }
    }
  }

  // 2. Free partitions go to the least-loaded eligible member.
  const all: TopicPartition[] = [];
  for (const [topic, count] of [...partitionCounts].sort(([a], [b]) => a.localeCompare(b))) {
    for (let partition = 0; partition < count; partition++) all.push(tp(topic, partition));
  }
  const sortedIds = members.map((member) => member.memberId).sort();
  for (const key of all) {
    if (owner.has(key)) continue;
    let best: string | null = null;
    for (const memberId of sortedIds) {
      if (!eligibleFor(key, memberId)) continue;
      if (best === null || assignment.get(memberId)!.size < assignment.get(best)!.size) best = memberId;
    }
    if (best !== null) {
      assignment.get(best)!.add(key);
      owner.set(key, best);
    }
  }

  // 3. Balance: move partitions from the most- to the least-loaded eligible member.
  for (let moves = 0; moves < all.length * Math.max(1, members.length); moves++) {
    let moved = false;
    const byLoad = [...sortedIds].sort((a, b) => assignment.get(b)!.size - assignment.get(a)!.size || a.localeCompare(b));
    outer: for (const heavy of byLoad) {
      for (let index = byLoad.length - 1; index >= 0; index--) {
        const light = byLoad[index]!;
        if (assignment.get(heavy)!.size - assignment.get(light)!.size <= 1) break;
        // The highest partition the light member may take: moving it keeps low partitions put.
        const candidates = [...assignment.get(heavy)!].filter((key) => eligibleFor(key, light)).sort();
        const key = candidates[candidates.length - 1];
        if (key === undefined) continue;
        assignment.get(heavy)!.delete(key);
        assignment.get(light)!.add(key);
        moved = true;
        break outer;
      }
    }
    if (!moved) break;
  }
  return assignment;
}
