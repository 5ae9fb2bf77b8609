/**
 * The rule for consumer group ids, shared by the broker and the client: 1 to 255 characters, and
 * no control characters (nor bidirectional overrides or line separators, see printable.ts) in
 * a group that is being created or joined. Kafka accepts any string, but such a character in
 * an id cannot be typed back on a command line, and could send escape sequences to an
 * operator's terminal (the CLI's tables escape them anyway). Groups stored before the rule
 * existed can still be described, read and deleted through the Admin API and the CLI.
 */
import { UNPRINTABLE_CHARACTER, escapeUnprintable } from './printable.js';

export const GROUP_ID_LENGTH_MAX = 255;

/** Why `groupId` cannot name a group at all, or null when it can. */
export function groupIdProblem(groupId: unknown): string | null {
  if (typeof groupId !== 'string' || groupId.length === 0) return 'group id is required';
  if (groupId.length > GROUP_ID_LENGTH_MAX) return `group id is ${groupId.length} characters long; the limit is ${GROUP_ID_LENGTH_MAX}`;
  return null;
}

/** Why `groupId` cannot be joined or given offsets, or null when it can. */
export function newGroupIdProblem(groupId: unknown): string | null {
  const problem = groupIdProblem(groupId);
  if (problem !== null) return problem;
  const control = UNPRINTABLE_CHARACTER.exec(groupId as string);
  if (control !== null) {
    const code = control[0].charCodeAt(0).toString(16).padStart(4, '0');
    // Escaped, not JSON.stringify: that leaves C1 controls and bidi overrides as they are.
    return `group id "${escapeUnprintable(groupId as string)}" contains the unprintable character U+${code.toUpperCase()} at position ${control.index}; use printable characters`;
  }
  return null;
}
