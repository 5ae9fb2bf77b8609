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

  // 2. Free partitions go to the least-loaded eligible member: the least loaded of the topic's
  // subscribers, the first in id order among equals.
  const sortedIds = members.map((member) => member.memberId).sort();
  const subscribersOf = new Map<string, string[]>();
  for (const memberId of sortedIds) {
    for (const topic of byId.get(memberId)!.topics) {
      const subscribers = subscribersOf.get(topic);
      if (subscribers === undefined) subscribersOf.set(topic, [memberId]);
      else subscribers.push(memberId);
    }
  }
  for (const key of all) {
    if (owner.has(key)) continue;
    let best: string | null = null;
    for (const memberId of subscribersOf.get(topicOf.get(key)!) ?? []) {
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
  // The taker for a giver is the least-loaded member (the last in id order among equals) with at
  // least two fewer that subscribes to a topic of one of the giver's partitions. Those with two
  // fewer are the end of the members by load; the taker is found by walking them, or, when there
  // are more of them than subscribers of the giver's topics, among those subscribers.
  for (;;) {
    let moved = false;
    // Most loaded first, in id order among equals (indexes into sortedIds, compared by number).
    const loads = sortedIds.map((memberId) => assignment.get(memberId)!.size);
    const byLoad = Array.from(sortedIds.keys())
      .sort((a, b) => loads[b]! - loads[a]! || a - b)
      .map((index) => sortedIds[index]!);
    // Each member's index in byLoad, made when first needed.
    let placeMap: Map<string, number> | null = null;
    const place = (): ReadonlyMap<string, number> => (placeMap ??= new Map(byLoad.map((memberId, index) => [memberId, index])));
    for (const heavy of byLoad) {
      const given = assignment.get(heavy)!;
      let first = byLoad.length;
      while (first > 0 && assignment.get(byLoad[first - 1]!)!.size <= given.size - 2) first--;
      if (first === byLoad.length) break; // no one has two fewer than this one, nor than those after it
      const topics = new Set<string>();
      for (const key of given) topics.add(topicOf.get(key)!);
      const light = takerFor(topics, byLoad, place, first);
      if (light === null) continue;
      const taken = assignment.get(light)!;
      const half = Math.floor((given.size - taken.size) / 2);
      const excess = Math.max(1, Math.min(half, given.size - meanCeil, meanFloor - taken.size));
      const candidates: TopicPartition[] = [];
      for (const key of given) if (eligibleFor(key, light)) candidates.push(key);
      candidates.sort((a, b) => ordinal.get(b)! - ordinal.get(a)!);
      for (const key of candidates.slice(0, excess)) {
        given.delete(key);
        taken.add(key);
      }
      moved = true;
      stats.moves++;
      break;
    }
    if (!moved) break;
  }

  /** The last of `byLoad[first..]` subscribed to one of `topics`, or null (`place`: each member's index in `byLoad`). */
  function takerFor(topics: ReadonlySet<string>, byLoad: readonly string[], place: () => ReadonlyMap<string, number>, first: number): string | null {
    let subscribers = 0;
    for (const topic of topics) subscribers += subscribersOf.get(topic)?.length ?? 0;
    if (byLoad.length - first <= subscribers) {
      for (let index = byLoad.length - 1; index >= first; index--) {
        const member = byId.get(byLoad[index]!)!;
        for (const topic of topics) if (member.topics.has(topic)) return member.memberId;
      }
      return null;
    }
    let best = -1;
    const places = place();
    for (const topic of topics) {
      for (const memberId of subscribersOf.get(topic) ?? []) {
        const index = places.get(memberId)!;
        if (index >= first && index > best) best = index;
      }
    }
    return best < 0 ? null : byLoad[best]!;
  }
  return assignment;
}
