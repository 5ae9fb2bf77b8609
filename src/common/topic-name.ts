/**
 * Topic names follow Kafka's rule: 1 to 249 characters from [a-zA-Z0-9._-], not "." or "..".
 * The rule also guarantees a topic's directory stays inside the data directory.
 */
import { ErrorCode, StrataError } from './errors.js';

export const TOPIC_NAME_LENGTH_MAX = 249;
/** The characters a topic name may have: one or more of them. */
export const TOPIC_NAME_CHARACTERS = /^[a-zA-Z0-9._-]+$/;

/** Why `name` is not a legal topic name, or null when it is. */
export function topicNameProblem(name: unknown): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'topic name is empty';
  if (name.length > TOPIC_NAME_LENGTH_MAX) return `topic name is ${name.length} characters long; the limit is ${TOPIC_NAME_LENGTH_MAX}`;
  if (name === '.' || name === '..') return `topic name "${name}" is not allowed`;
  if (!TOPIC_NAME_CHARACTERS.test(name)) return `topic name ${JSON.stringify(name)} has characters outside [a-zA-Z0-9._-]`;
  return null;
}

/** Throws INVALID_ARGUMENT with the reason when `name` is not a legal topic name. */
export function checkTopicName(name: unknown): asserts name is string {
  const problem = topicNameProblem(name);
  if (problem !== null) throw new StrataError(ErrorCode.INVALID_ARGUMENT, problem);
}
