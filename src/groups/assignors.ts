/**
 * Server-side assignors: given the members of a group (with their subscriptions), the partitions
 * of the topics they subscribe to, and the current target assignment, compute the next target
 * assignment. Pure functions, tested without a broker.
 *
 * - `uniform` (default): balanced and sticky. Every member keeps the partitions it already has
 *   as far as balance allows; free partitions go to the least-loaded eligible member; then
 *   partitions move from the most- to the least-loaded eligible member while their counts
 *   differ by more than one (several at a time where balance calls for all of them). With identical subscriptions every member ends with
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

/** What the uniform assignor's balancing did: how many moves (each of one or more partitions). */
export interface BalanceStats {
  moves: number;
}

export function uniformAssign(
  members: readonly AssignorMember[],
  partitionCounts: ReadonlyMap<string, number>,
  current: Assignment,
  stats: BalanceStats = { moves: 0 },
): Assignment {
  const assignment = emptyAssignment(members);
  const byId = new Map(members.map((member) => [member.memberId, member]));
  // Every partition of the known topics, topics by name and partitions in order: its topic (a
  // key absent here is of an unknown topic or past its count) and its place in that order.
  const all: TopicPartition[] = [];
  const topicOf = new Map<TopicPartition, string>();
  const ordinal = new Map<TopicPartition, number>();
  for (const [topic, count] of [...partitionCounts].sort(([a], [b]) => a.localeCompare(b))) {
    for (let partition = 0; partition < count; partition++) {
      const key = tp(topic, partition);
      ordinal.set(key, all.length);
      all.push(key);
      topicOf.set(key, topic);
    }
  }
  const eligibleFor = (key: TopicPartition, memberId: string): boolean => {
    const topic = topicOf.get(key);
    return topic !== undefined && byId.get(memberId)!.topics.has(topic);
  };
  const owner = new Map<TopicPartition, string>();

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

  // 3. Balance: the most-loaded member gives the least-loaded one it can give to a partition,
  // its highest that member may take (low partitions stay put), until no two members it could
  // move between differ by more than one. A move takes several partitions at once where that
  // is what single moves would come to: as many as leave the giver at or above the mean and the
  // taker at or below it (the floor and ceiling of partitions per member), at most half their
  // difference. So with identical subscriptions a member joining a group of 10,000 partitions
  // costs a few passes, not one per partition moved (with differing ones, the mean of all
  // members can still leave single moves); each move lowers the sum of the squared loads, so
  // the loop ends.
  const meanFloor = Math.floor(owner.size / Math.max(1, members.length));
  const meanCeil = Math.ceil(owner.size / Math.max(1, members.length));
  for (;;) {
    let moved = false;
    const byLoad = [...sortedIds].sort((a, b) => assignment.get(b)!.size - assignment.get(a)!.size || a.localeCompare(b));
    outer: for (const heavy of byLoad) {
      const given = assignment.get(heavy)!;
      for (let index = byLoad.length - 1; index >= 0; index--) {
        const light = byLoad[index]!;
        const taken = assignment.get(light)!;
        const half = Math.floor((given.size - taken.size) / 2);
        if (half < 1) break;
        const excess = Math.max(1, Math.min(half, given.size - meanCeil, meanFloor - taken.size));
        const candidates: TopicPartition[] = [];
        for (const key of given) if (eligibleFor(key, light)) candidates.push(key);
        if (candidates.length === 0) continue;
        candidates.sort((a, b) => ordinal.get(b)! - ordinal.get(a)!);
        for (const key of candidates.slice(0, excess)) {
          given.delete(key);
          taken.add(key);
        }
        moved = true;
        stats.moves++;
        break outer;
      }
    }
    if (!moved) break;
  }
  return assignment;
}
