/**
 * What a token may name: the topics and the consumer groups of its entry in
 * `--auth-tokens-file` (`"topics": ["orders", "audit.*"]`), as Kafka's ACLs name literal and
 * prefixed resources. A pattern is a whole name, a prefix followed by `*`, or `*` alone for every
 * one; a token whose entry has no list may name every topic (or group). Handlers check each
 * topic and group a call names against the scope of the call's token before they look it up,
 * so a refusal says nothing of whether the topic or group exists; answers that list topics or
 * groups leave out the others (`NameScope.within`).
 */
import { ErrorCode, StrataError } from '../common/errors.js';
import { groupIdProblem } from '../common/group-id.js';
import { escapeUnprintable } from '../common/printable.js';
import { TOPIC_NAME_CHARACTERS, TOPIC_NAME_LENGTH_MAX, topicNameProblem } from '../common/topic-name.js';
import { invalidArgument } from './status.js';
import { NameScope } from '../common/name-scope.js';

/**
 * Why `pattern` cannot be a pattern, or null when it can: `*`, or a whole name or a non-empty
 * prefix followed by `*` that `problemOf` finds nothing wrong with (its answer follows the
 * quoted pattern). `whole` is what a whole name is called, in errors.
 */
function patternProblem(pattern: unknown, whole: string, problemOf: (name: string, prefix: boolean) => string | null): string | null {
  if (typeof pattern !== 'string') return 'must be a string';
  if (pattern === '*') return null;
  const prefix = pattern.endsWith('*');
  const name = prefix ? pattern.slice(0, -1) : pattern;
  if (name === '') return 'is empty';
  if (name.includes('*')) return `${JSON.stringify(pattern)} has a "*" before its end; a pattern is ${whole}, a prefix followed by "*", or "*" alone`;
  const problem = problemOf(name, prefix);
  return problem === null ? null : `${JSON.stringify(pattern)} ${problem}`;
}

/** Why `pattern` cannot be a topic pattern: a legal topic name, or a prefix of legal characters (which may be "." or ".."). */
export function topicPatternProblem(pattern: unknown): string | null {
  return patternProblem(pattern, 'a name', (name, prefix) => {
    if (!prefix) {
      const problem = topicNameProblem(name);
      return problem === null ? null : `is not a topic name: ${problem}`;
    }
    if (name.length >= TOPIC_NAME_LENGTH_MAX) return `is not a topic name prefix: a topic name has at most ${TOPIC_NAME_LENGTH_MAX} characters`;
    return TOPIC_NAME_CHARACTERS.test(name) ? null : 'is not a topic name prefix: it has characters outside [a-zA-Z0-9._-]';
  });
}

/** Why `pattern` cannot be a group pattern: a group id, or a prefix of one. */
export function groupPatternProblem(pattern: unknown): string | null {
  return patternProblem(pattern, 'an id', (id) => {
    const problem = groupIdProblem(id);
    return problem === null ? null : `is not a group id: ${problem}`;
  });
}

/** The topics and groups the token of a call may name. */
export class TokenScope {
  /** A broker without tokens, or a token whose entry lists neither topics nor groups. */
  static readonly OPEN = new TokenScope('', NameScope.EVERY, NameScope.EVERY);

  constructor(
    /** The token's name, for refusals ('' for OPEN). */
    readonly tokenName: string,
    readonly topics: NameScope,
    readonly groups: NameScope,
  ) {}

  /**
   * Throws PERMISSION_DENIED when the token may not name `topic`; a name no topic can have is
   * INVALID_ARGUMENT first, as the broker would answer it.
   */
  checkTopic(topic: string): void {
    if (this.topics.every) return;
    const problem = topicNameProblem(topic);
    if (problem !== null) throw invalidArgument(problem);
    if (!this.topics.allows(topic)) throw this.refusal(`use topic "${topic}"`, `its topics are ${this.topics}`);
  }

  /** `checkTopic` of each of `topics`. */
  checkTopics(topics: Iterable<string>): void {
    if (this.topics.every) return;
    for (const topic of topics) this.checkTopic(topic);
  }

  /** Throws PERMISSION_DENIED when the token may not name `groupId`; an empty or overlong id is INVALID_ARGUMENT first. */
  checkGroup(groupId: string): void {
    if (this.groups.every) return;
    const problem = groupIdProblem(groupId);
    if (problem !== null) throw invalidArgument(problem);
    if (!this.groups.allows(groupId)) throw this.refusal(`use group "${escapeUnprintable(groupId)}"`, `its groups are ${this.groups}`);
  }

  /**
   * Throws PERMISSION_DENIED unless the token may name each of `topics`, those group `groupId`
   * has offsets for, for a call that removes all of them (DeleteGroup, DeleteOffsets of every
   * topic). The refusal names none of them: the token may not learn of them.
   */
  checkTopicsOfGroup(groupId: string, topics: Iterable<string>): void {
    if (this.topics.every) return;
    for (const topic of topics) {
      if (!this.topics.allows(topic)) {
        throw this.refusal(`remove every offset of group "${escapeUnprintable(groupId)}"`, `the group has offsets of topics other than its topics, ${this.topics}; those must be deleted by a token that may use them`);
      }
    }
  }

  private refusal(action: string, grant: string): StrataError {
    return new StrataError(ErrorCode.PERMISSION_DENIED, `token "${this.tokenName}" may not ${action}: ${grant} (see its entry in --auth-tokens-file)`);
  }
}
