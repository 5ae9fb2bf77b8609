/**
 * The `uniform` assignor alone, in this process: how long the broker's event loop is held by
 * one assignment, for groups whose members share one topic and for groups whose members each
 * subscribe to a different set of topics.
 *
 *   npm run build && node dist/bench/assignor-bench.js [--quick]
 *
 * For each case: the assignment of every member at once from nothing (a topic many members
 * subscribe to appearing, say), and a join: one more member added to the settled assignment,
 * the best of 5 (the broker computes one at every join, leave and topic change).
 * Differing subscriptions: member m subscribes to topics (7m + 13k) mod T for k = 0..S-1; the
 * member that joins subscribes to t0 and t1.
 */
import { loadavg } from 'node:os';
import { formatTable } from '../src/cli/output.js';
import { type Assignment, type AssignorMember, assign } from '../src/groups/assignors.js';

interface Case {
  name: string;
  members: number;
  topics: number;
  partitionsPerTopic: number;
  /** Topics each member subscribes to; 0: all members the one topic. */
  subscriptions: number;
}

const CASES: readonly Case[] = [
  { name: 'same topic', members: 100, topics: 1, partitionsPerTopic: 10_000, subscriptions: 0 },
  { name: 'same topic', members: 1_000, topics: 1, partitionsPerTopic: 10_000, subscriptions: 0 },
  { name: 'differing', members: 500, topics: 200, partitionsPerTopic: 50, subscriptions: 20 },
  { name: 'differing', members: 1_000, topics: 500, partitionsPerTopic: 20, subscriptions: 50 },
  { name: 'differing', members: 2_000, topics: 1_000, partitionsPerTopic: 10, subscriptions: 20 },
];

const QUICK_CASES: readonly Case[] = [
  { name: 'same topic', members: 10, topics: 1, partitionsPerTopic: 100, subscriptions: 0 },
  { name: 'differing', members: 20, topics: 10, partitionsPerTopic: 5, subscriptions: 3 },
];

function topicName(index: number): string {
  return `t${index}`;
}

function membersOf(shape: Case): AssignorMember[] {
  return Array.from({ length: shape.members }, (_, m) => {
    const topics = new Set<string>();
    if (shape.subscriptions === 0) topics.add(topicName(0));
    for (let k = 0; k < shape.subscriptions; k++) topics.add(topicName((m * 7 + k * 13) % shape.topics));
    return { memberId: `member-${m}`, topics };
  });
}

function measure(shape: Case): { initialMs: number; joinMs: number } {
  const counts = new Map(Array.from({ length: shape.topics }, (_, t) => [topicName(t), shape.partitionsPerTopic] as const));
  const members = membersOf(shape);
  let startedAt = performance.now();
  const settled: Assignment = assign('uniform', members, counts, new Map());
  const initialMs = performance.now() - startedAt;
  const joining = { memberId: 'member-new', topics: new Set(shape.subscriptions === 0 ? [topicName(0)] : [topicName(0), topicName(1)]) };
  let joinMs = Number.POSITIVE_INFINITY;
  for (let run = 0; run < 5; run++) {
    startedAt = performance.now();
    assign('uniform', [...members, joining], counts, settled);
    joinMs = Math.min(joinMs, performance.now() - startedAt);
  }
  return { initialMs, joinMs };
}

const quick = process.argv.includes('--quick');
const rows = (quick ? QUICK_CASES : CASES).map((shape) => {
  const { initialMs, joinMs } = measure(shape);
  const partitions = (shape.topics * shape.partitionsPerTopic).toLocaleString('en-US');
  const subscribed = shape.subscriptions === 0 ? '1 topic, all' : `${shape.subscriptions} of ${shape.topics} topics each`;
  return [`${shape.name}: ${shape.members.toLocaleString('en-US')} members, ${partitions} partitions (${subscribed})`, `${initialMs.toFixed(1)} ms`, `${joinMs.toFixed(1)} ms`];
});
console.log(formatTable(['case', 'all at once', 'one join'], rows, ['all at once', 'one join']));
console.log(`load average (1/5/15 min): ${loadavg().map((load) => load.toFixed(2)).join(' / ')}; node ${process.version}`);
