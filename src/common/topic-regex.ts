/**
 * Regex subscriptions (`subscribed_topic_regex`) in RE2 syntax, the syntax Kafka's KIP-848
 * consumer groups use (RE2/J). re2js matches in time linear in the topic name, so no pattern a
 * member sends, such as `(a+)+b`, can stall the broker's event loop the way a backtracking
 * JavaScript RegExp would. The pattern must match the whole topic name. Shared by the broker,
 * which matches topics with it, and the client, which refuses a bad pattern before sending it.
 */
import { RE2JS } from 're2js';

/** Longest pattern accepted: a bound on what each member may make the broker compile and keep. */
export const TOPIC_REGEX_LENGTH_MAX = 1000;

export interface TopicRegex {
  readonly source: string;
  /** True when the whole of `topic` matches. */
  matches(topic: string): boolean;
}

/** Compiles `source`; throws an Error whose message says what is wrong with it. */
export function compileTopicRegex(source: string): TopicRegex {
  if (source.length > TOPIC_REGEX_LENGTH_MAX) {
    throw new Error(`it is ${source.length} characters long; the limit is ${TOPIC_REGEX_LENGTH_MAX}`);
  }
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(source);
  } catch (error) {
    throw new Error(`${(error as Error).message} (the syntax is RE2's: no lookaround or backreferences)`);
  }
  return { source, matches: (topic) => compiled.matches(topic) };
}
