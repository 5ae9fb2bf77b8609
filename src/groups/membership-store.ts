/**
 * Consumer-group membership in LMDB (the broker's metadata environment, database
 * `group-members`), so that a broker restart keeps every group's members, epochs and partition
 * ownership: members heartbeat on with the epochs they have and keep their partitions, and a
 * member that joins meanwhile is not handed partitions another member is still reading (a
 * broker that forgot its members gave every partition to the first to join).
 *
 * Keys are [group, member id] tuples: [group, ''] holds the group's epoch and assignor, and
 * ['', ''] the epoch floor of forgotten groups (neither a group id nor a member id is empty).
 * Each member is its own record, so a heartbeat writes only the member it changed: `save`
 * compares each record it is given with the last one written (as JSON, kept in memory) and
 * writes those that differ, all in one transaction, so a restart finds the group as it was
 * between two changes, never halfway through one. Sessions and revocation deadlines are not
 * kept: a restarted broker gives every member a whole session from its start, as Kafka does.
 *
 * Answers wait for the writes (`durable`): a heartbeat is answered only once every change made
 * to its group until then is flushed to disk, so no member is told of an epoch or a partition a
 * crash could take back. LMDB applies the writes in the order they are made, so what a crash
 * leaves is a state the group was in. A write that fails makes the next `durable` write the
 * whole group again, and fails the answer if that fails too.
 */
import type { Database, RootDatabase } from 'lmdb';
import { durably } from '../broker/metadata-store.js';
import { NameScope } from '../common/name-scope.js';
import type { AssignorName, TopicPartition } from './assignors.js';
import { type ConsumerGroup, type Member, compileSubscriptionRegex } from './consumer-group.js';

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
  heartbeated: boolean;
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

const GROUP_RECORD = '';
const FLOOR_KEY: Key = ['', ''];

export class MembershipStore {
  private readonly db: Database<Stored, Key>;
  /** Per group, the JSON of each record last written (member id, or '' for the group's own). */
  private readonly written = new Map<string, Map<string, string>>();
  /** Per group, the flush of its last write, while it is under way. */
  private readonly writing = new Map<string, Promise<void>>();
  /** Groups whose last write failed: what LMDB holds of them is not known, so all is written again. */
  private readonly failed = new Set<string>();
  private floorWritten = 0;

  constructor(private readonly root: RootDatabase) {
    this.db = root.openDB<Stored, Key>({ name: 'group-members', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
  }

  /**
   * Every group kept, and the epoch floor; members' sessions and revocations start at `nowMs`.
   * A member whose record cannot be taken back (a subscription regex this version refuses) is
   * left out, with the reason, and its record goes at the group's next write: its partitions
   * are free, and the consumer, told NOT_FOUND at its next heartbeat, joins again.
   */
  load(nowMs: number): { floor: number; groups: LoadedGroup[]; skipped: { groupId: string; memberId: string; reason: string }[] } {
    const groups = new Map<string, LoadedGroup>();
    const skipped: { groupId: string; memberId: string; reason: string }[] = [];
    let floor = 0;
    for (const { key, value } of this.db.getRange()) {
      const [groupId, memberId] = key;
      if (groupId === '') {
        floor = value as number;
        this.floorWritten = floor;
        continue;
      }
      let group = groups.get(groupId);
      if (group === undefined) groups.set(groupId, (group = { groupId, groupEpoch: 0, assignor: 'uniform', members: [] }));
      if (memberId === GROUP_RECORD) {
        const stored = value as StoredGroup;
        group.groupEpoch = stored.groupEpoch;
        group.assignor = stored.assignor;
      } else {
        try {
          group.members.push(memberFrom(memberId, value as StoredMember, nowMs));
        } catch (error) {
          skipped.push({ groupId, memberId, reason: (error as Error).message });
          this.recordsOf(groupId).set(memberId, ''); // no JSON is '': the next save removes it
          continue;
        }
      }
      this.recordsOf(groupId).set(memberId, JSON.stringify(value));
    }
    return { floor, groups: [...groups.values()], skipped };
  }

  /**
   * Writes what changed of `group`: its own record, those of `memberIds` (of every member when
   * null), and the removal of members gone. Returns at once; `durable` waits.
   */
  save(group: ConsumerGroup, memberIds: Iterable<string> | null): void {
    const { groupId } = group;
    const records = this.recordsOf(groupId);
    const changes: { memberId: string; value: Stored | null; json: string | null }[] = [];
    const compare = (memberId: string, value: Stored | null): void => {
      const json = value === null ? null : JSON.stringify(value);
      if ((records.get(memberId) ?? null) !== json) changes.push({ memberId, value, json });
    };
    if (this.failed.has(groupId)) {
      // Every record LMDB may hold is compared as unknown (no JSON is ''), so each is written or removed.
      for (const memberId of this.keptIds(groupId)) records.set(memberId, '');
    }
    compare(GROUP_RECORD, { groupEpoch: group.groupEpoch, assignor: group.assignor });
    const ids = new Set(memberIds === null || this.failed.has(groupId) ? group.members.keys() : memberIds);
    // Members removed since (left, fenced, expired, replaced by a static member's new
    // incarnation) are those written and gone: found without encoding the others.
    for (const memberId of records.keys()) if (!group.members.has(memberId)) ids.add(memberId);
    for (const memberId of ids) {
      if (memberId === GROUP_RECORD) continue;
      const member = group.members.get(memberId);
      compare(memberId, member === undefined ? null : storedOf(member));
    }
    this.failed.delete(groupId);
    if (changes.length === 0) return;
    for (const { memberId, json } of changes) {
      if (json === null) records.delete(memberId);
      else records.set(memberId, json);
    }
    this.track(
      groupId,
      this.db.batch(() => {
        for (const { memberId, value } of changes) {
          if (value === null) this.db.remove([groupId, memberId]);
          else this.db.put([groupId, memberId], value);
        }
      }),
    );
  }

  /** Removes a group forgotten (no members, no offsets), raising the kept epoch floor to `floor`. */
  forget(groupId: string, floor: number): void {
    // Read from LMDB rather than `written`, which a failed write leaves incomplete.
    const kept = this.keptIds(groupId);
    this.written.delete(groupId);
    this.failed.delete(groupId);
    const raise = floor > this.floorWritten;
    if (kept.length === 0 && !raise) return;
    if (raise) this.floorWritten = floor;
    this.track(
      groupId,
      this.db.batch(() => {
        for (const memberId of kept) this.db.remove([groupId, memberId]);
        if (raise) this.db.put(FLOOR_KEY, floor);
      }),
    );
  }

  /** The ids of the records LMDB holds of a group ('' for its own). */
  private keptIds(groupId: string): string[] {
    const ids: string[] = [];
    // From the group's first key until another group's: an end key would have to sort after
    // every member id, and ids may hold any printable character.
    for (const key of this.db.getKeys({ start: [groupId, ''] })) {
      if (key[0] !== groupId) break;
      ids.push(key[1]);
    }
    return ids;
  }

  /**
   * Resolves once every change saved for the group is on disk. After a failed write it writes
   * the whole group again (`group`, or nothing when the group is gone) and waits for that.
   */
  async durable(groupId: string, group: ConsumerGroup | undefined): Promise<void> {
    if (this.failed.has(groupId) && group !== undefined) this.save(group, null);
    await this.writing.get(groupId);
  }

  /** Resolves once every write under way has settled, succeeded or failed (before LMDB closes). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.writing.values()]);
  }

  private track(groupId: string, landed: Promise<unknown>): void {
    const flushed = durably(this.root, landed).then(
      () => undefined,
      (error: unknown) => {
        // What LMDB holds of the group is no longer known: the next save writes it all.
        this.failed.add(groupId);
        this.written.delete(groupId);
        throw error;
      },
    );
    // The last write of a group is the one to wait for: LMDB applies them in order.
    this.writing.set(groupId, flushed);
    flushed.then(
      () => this.writing.get(groupId) === flushed && this.writing.delete(groupId),
      () => undefined,
    );
  }

  private recordsOf(groupId: string): Map<string, string> {
    let records = this.written.get(groupId);
    if (records === undefined) this.written.set(groupId, (records = new Map()));
    return records;
  }
}

/** A member as `save` writes it (exported for the churn simulation, which restarts the broker). */
export function storedOf(member: Member): StoredMember {
  return {
    instanceId: member.instanceId,
    clientId: member.clientId,
    host: member.host,
    epoch: member.epoch,
    previousEpoch: member.previousEpoch,
    topicNames: [...member.subscription.topicNames],
    regex: member.subscription.regex,
    topicScope: member.topicScope === null ? null : [...member.topicScope.patterns],
    tokenName: member.tokenName,
    sessionTimeoutMs: member.sessionTimeoutMs,
    assigned: [...member.assigned],
    revoking: [...member.revoking],
    vanished: [...member.vanished],
    shrunkSinceAnswer: member.shrunkSinceAnswer,
    away: member.away,
    heartbeated: member.heartbeated,
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
    heartbeated: stored.heartbeated,
  };
}
