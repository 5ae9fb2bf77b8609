/**
 * Consumer-group membership in LMDB (the broker's metadata environment, database
 * `group-members`), so that a broker restart keeps every group's members, epochs and partition
 * ownership: members heartbeat on with the epochs they have and keep their partitions, and a
 * member that joins meanwhile is not handed partitions another member is still reading (a
 * broker that forgot its members gave every partition to the first to join).
 *
 * Keys are [group, member id] tuples: [group, ''] holds the group's epoch and assignor, and
 * ['', ''] the epoch floor of forgotten groups (neither a group id nor a member id is empty).
 * Each member is its own record, so a heartbeat writes only the member it concerns, and only
 * when its record changed: `save` compares it with the last one written (kept in memory as
 * JSON without the subscription's topic names, whose list is compared by identity: the group
 * replaces it whole). One call's writes are one batch, so a restart finds the group as it was
 * between two changes, never halfway through one. Sessions and revocation deadlines are not
 * kept: a restarted broker gives every member a whole session from its start, as Kafka does.
 *
 * Answers wait for the writes (`durable`): every write made to a group since it was last known
 * whole on disk, not only the last one, must have succeeded, so no member is told of an epoch or
 * a partition a crash could take back (a write that failed and a later one that succeeded would
 * leave a mix on disk). LMDB applies the writes in the order they are made, so what a crash
 * leaves is a state the group was in. After a failed write, and whenever a group is forgotten,
 * the group is written whole (`sync`): a transaction that, when it runs (after every write made
 * before it, and those queued behind it in the same LMDB batch), makes the group's records what
 * the group is in memory then (none for a group gone), so a stale record cannot outlive it. Failed writes are retried a second later too, so
 * a group nobody heartbeats in does not keep a mix on disk until its next change.
 */
import type { Database, RootDatabase } from 'lmdb';
import { durably } from '../broker/metadata-store.js';
import { NameScope } from '../common/name-scope.js';
import type { AssignorName, TopicPartition } from './assignors.js';
import { type ConsumerGroup, type Member, type Subscription, compileSubscriptionRegex } from './consumer-group.js';

type Key = [string, string];

/** A member as kept: what `Member` holds but its times. */
export interface StoredMember {
  instanceId: string | null;
  clientId: string;
  host: string;
  epoch: number;
  previousEpoch: number;
  topicNames: string[];
  regex: string;
  /** The patterns of its token's topic scope; null for every topic. */
  topicScope: string[] | null;
  tokenName: string | null;
  sessionTimeoutMs: number;
  assigned: TopicPartition[];
  revoking: TopicPartition[];
  vanished: TopicPartition[];
  shrunkSinceAnswer: boolean;
  away: boolean;
}

interface StoredGroup {
  groupEpoch: number;
  assignor: AssignorName;
}

type Stored = StoredMember | StoredGroup | number;

/** A group as loaded: its epoch, assignor and members (with their sessions starting at `nowMs`). */
export interface LoadedGroup {
  groupId: string;
  groupEpoch: number;
  assignor: AssignorName;
  members: Member[];
}

/** A record as last written: its JSON (a member's without its topic names) and a member's subscription. */
interface Written {
  json: string;
  subscription: Subscription | null;
}

export interface MembershipStoreOptions {
  /** The group of that id in memory now (undefined: none), which `sync` writes. */
  groupOf(groupId: string): ConsumerGroup | undefined;
  /** The epoch floor of forgotten groups now. */
  epochFloor(): number;
  /** A write failed; the group is written whole at its next heartbeat, or a second later. */
  writeFailed(groupId: string, error: unknown): void;
}

const GROUP_RECORD = '';
const FLOOR_KEY: Key = ['', ''];
const RETRY_MS = 1_000;

export class MembershipStore {
  private readonly db: Database<Stored, Key>;
  /** Per group, each record as last written (member id, or '' for the group's own). */
  private readonly written = new Map<string, Map<string, Written>>();
  /** Per group, the writes since it was last known whole on disk: an answer waits for them all. */
  private readonly pending = new Map<string, Promise<void>>();
  /** Groups a write of which failed: what LMDB holds of them is not known until a `sync`. */
  private readonly failed = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly root: RootDatabase,
    private readonly options: MembershipStoreOptions,
  ) {
    this.db = root.openDB<Stored, Key>({ name: 'group-members', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
  }

  /**
   * Every group kept, and the epoch floor; members' sessions and revocations start at `nowMs`.
   * A member whose record cannot be taken back (a subscription regex this version refuses) is
   * left out, with the reason (the caller then writes its group whole, `rewrite`): its
   * partitions are free, and the consumer, told NOT_FOUND at its next heartbeat, joins again.
   */
  load(nowMs: number): { floor: number; groups: LoadedGroup[]; skipped: { groupId: string; memberId: string; reason: string }[] } {
    const groups = new Map<string, LoadedGroup>();
    const skipped: { groupId: string; memberId: string; reason: string }[] = [];
    let floor = 0;
    for (const { key, value } of this.db.getRange()) {
      const [groupId, memberId] = key;
      if (groupId === '') {
        floor = value as number;
        continue;
      }
      let group = groups.get(groupId);
      if (group === undefined) groups.set(groupId, (group = { groupId, groupEpoch: 0, assignor: 'uniform', members: [] }));
      if (memberId === GROUP_RECORD) {
        const stored = value as StoredGroup;
        group.groupEpoch = stored.groupEpoch;
        group.assignor = stored.assignor;
        this.recordsOf(groupId).set(memberId, { json: JSON.stringify(value), subscription: null });
        continue;
      }
      let member: Member;
      try {
        member = memberFrom(memberId, value as StoredMember, nowMs);
      } catch (error) {
        skipped.push({ groupId, memberId, reason: (error as Error).message });
        continue;
      }
      group.members.push(member);
      this.recordsOf(groupId).set(memberId, { json: comparedJson(member), subscription: member.subscription });
    }
    return { floor, groups: [...groups.values()], skipped };
  }

  /**
   * Writes what changed of `group`: its own record, those of `memberIds` (of every member when
   * null), and the removal of the members it took out since the last save. Returns at once;
   * `durable` waits.
   */
  save(group: ConsumerGroup, memberIds: Iterable<string> | null): void {
    const { groupId } = group;
    const removed = group.takeRemoved();
    if (this.failed.has(groupId)) {
      this.sync(groupId);
      return;
    }
    const records = this.recordsOf(groupId);
    const changes: { memberId: string; value: Stored | null }[] = [];
    const groupJson = JSON.stringify({ groupEpoch: group.groupEpoch, assignor: group.assignor });
    if (records.get(GROUP_RECORD)?.json !== groupJson) {
      changes.push({ memberId: GROUP_RECORD, value: { groupEpoch: group.groupEpoch, assignor: group.assignor } });
      records.set(GROUP_RECORD, { json: groupJson, subscription: null });
    }
    for (const memberId of removed) {
      if (group.members.has(memberId) || !records.delete(memberId)) continue; // back under the same id, or never written
      changes.push({ memberId, value: null });
    }
    for (const memberId of memberIds ?? group.members.keys()) {
      const member = group.members.get(memberId);
      if (member === undefined) continue;
      const last = records.get(memberId);
      const json = comparedJson(member);
      if (last !== undefined && last.json === json && last.subscription === member.subscription) continue;
      changes.push({ memberId, value: storedOf(member) });
      records.set(memberId, { json, subscription: member.subscription });
    }
    if (changes.length === 0) return;
    this.track(
      groupId,
      this.db.batch(() => {
        for (const { memberId, value } of changes) {
          if (value === null) this.db.remove([groupId, memberId]);
          else this.db.put([groupId, memberId], value);
        }
      }),
      false,
    );
  }

  /**
   * Writes the group whole as it is in memory then (`sync`): a group forgotten (no members, no
   * offsets) loses its records, and the epoch floor is raised; a group whose members were left
   * out at load loses theirs.
   */
  writeWhole(groupId: string): void {
    this.sync(groupId);
  }

  /**
   * Resolves once every change saved for the group is on disk. If a write since the group was
   * last known whole failed, it is written whole (`sync`) and that is waited for; that failing
   * too fails the answer.
   */
  async durable(groupId: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.failed.has(groupId)) this.sync(groupId);
      const writes = this.pending.get(groupId);
      if (writes === undefined) return;
      try {
        await writes;
        return;
      } catch (error) {
        if (attempt > 0) throw error;
      }
    }
  }

  /** Resolves once every write under way has settled, succeeded or failed, and stops the retries (before LMDB closes). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    await Promise.allSettled([...this.pending.values()]);
  }

  /**
   * Makes the group's records what it is in memory when the transaction runs, which is after
   * every write made before it and also after those queued behind it in the same LMDB batch
   * (hence it reads the group then, not now): removes those of members gone, or all of them for
   * a group gone, and writes the kept epoch floor. Supersedes every earlier write of the group.
   */
  private sync(groupId: string): void {
    this.failed.delete(groupId);
    const landed = this.db.transaction(() => {
      const group = this.options.groupOf(groupId);
      const records = new Map<string, Written>();
      for (const key of this.db.getKeys({ start: [groupId, GROUP_RECORD] })) {
        // Until another group's first key: an end key would have to sort after every member
        // id, and ids may hold any printable character.
        if (key[0] !== groupId) break;
        if (group === undefined || (key[1] !== GROUP_RECORD && !group.members.has(key[1]))) this.db.remove(key);
      }
      if (group !== undefined) {
        this.db.put([groupId, GROUP_RECORD], { groupEpoch: group.groupEpoch, assignor: group.assignor });
        records.set(GROUP_RECORD, { json: JSON.stringify({ groupEpoch: group.groupEpoch, assignor: group.assignor }), subscription: null });
        for (const member of group.members.values()) {
          this.db.put([groupId, member.memberId], storedOf(member));
          records.set(member.memberId, { json: comparedJson(member), subscription: member.subscription });
        }
        this.written.set(groupId, records);
      } else {
        this.written.delete(groupId);
      }
      // Written whole too: a sync is rare, and one that failed may have been the one to raise it.
      const floor = this.options.epochFloor();
      if (floor > 0) this.db.put(FLOOR_KEY, floor);
    });
    this.track(groupId, landed, true);
  }

  /**
   * Adds a write to the group's pending ones (`whole`: a `sync`, which supersedes them). A failure
   * marks the group at once, before lmdb-js has named its cause, so that no save made meanwhile
   * is taken as written on top of it.
   */
  private track(groupId: string, landed: Promise<unknown>, whole: boolean): void {
    let marked = false;
    const mark = (error: unknown): never => {
      // Once per write: a sync may have cleared the mark since, and this failure is behind it.
      if (!marked) {
        marked = true;
        this.failed.add(groupId);
        this.written.delete(groupId);
        this.scheduleRetry();
      }
      throw error;
    };
    // Reported once `durably` has the cause lmdb-js names.
    const flushed = durably(this.root, landed.catch(mark)).then(
      () => undefined,
      (error: unknown) => {
        this.options.writeFailed(groupId, error);
        return mark(error);
      },
    );
    const previous = whole ? undefined : this.pending.get(groupId);
    const writes = previous === undefined ? flushed : Promise.all([previous, flushed]).then(() => undefined);
    writes.catch(() => undefined); // waited for by `durable`; a failure is noted above
    this.pending.set(groupId, writes);
    void writes.then(
      () => this.pending.get(groupId) === writes && this.pending.delete(groupId),
      () => undefined,
    );
  }

  /** Writes the groups whose writes failed whole, a second from now (and again while they fail). */
  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.closed) return;
      for (const groupId of [...this.failed]) this.sync(groupId);
    }, RETRY_MS);
    this.retryTimer.unref();
  }

  private recordsOf(groupId: string): Map<string, Written> {
    let records = this.written.get(groupId);
    if (records === undefined) this.written.set(groupId, (records = new Map()));
    return records;
  }
}

/** What `save` compares of a member: its record without the topic names (compared by identity). */
function comparedJson(member: Member): string {
  return JSON.stringify(storedOf(member, false));
}

/** A member as `save` writes it (exported for the churn simulation, which restarts the broker). */
export function storedOf(member: Member, withTopicNames = true): StoredMember {
  return {
    instanceId: member.instanceId,
    clientId: member.clientId,
    host: member.host,
    epoch: member.epoch,
    previousEpoch: member.previousEpoch,
    topicNames: withTopicNames ? [...member.subscription.topicNames] : [],
    regex: member.subscription.regex,
    topicScope: member.topicScope === null ? null : [...member.topicScope.patterns],
    tokenName: member.tokenName,
    sessionTimeoutMs: member.sessionTimeoutMs,
    assigned: [...member.assigned],
    revoking: [...member.revoking],
    vanished: [...member.vanished],
    shrunkSinceAnswer: member.shrunkSinceAnswer,
    away: member.away,
  };
}

/** A member as `load` reads it back, its session and revocation deadline starting at `nowMs`. */
export function memberFrom(memberId: string, stored: StoredMember, nowMs: number): Member {
  return {
    memberId,
    instanceId: stored.instanceId,
    clientId: stored.clientId,
    host: stored.host,
    epoch: stored.epoch,
    previousEpoch: stored.previousEpoch,
    subscription: { topicNames: stored.topicNames, regex: stored.regex },
    regex: compileSubscriptionRegex(stored.regex),
    topicScope: stored.topicScope === null ? null : new NameScope(stored.topicScope),
    tokenName: stored.tokenName,
    sessionTimeoutMs: stored.sessionTimeoutMs,
    lastHeartbeatMs: nowMs,
    assigned: new Set(stored.assigned),
    revoking: new Set(stored.revoking),
    revokingSinceMs: stored.revoking.length > 0 ? nowMs : -1,
    vanished: new Set(stored.vanished),
    shrunkSinceAnswer: stored.shrunkSinceAnswer,
    away: stored.away,
    // Not kept: the broker was down, maybe for longer than the member's session, and a consumer
    // that gave its membership up meanwhile joins again under its id. Until the member heartbeats
    // here, a join under its id is its own, as a join sent again is.
    heartbeated: false,
  };
}
