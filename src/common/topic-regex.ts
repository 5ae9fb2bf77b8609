/**
 * Regex subscriptions (`subscribed_topic_regex`) in RE2 syntax, the syntax Kafka's KIP-848
 * consumer groups use (RE2/J). The pattern must match the whole topic name. Shared by the
 * broker, which matches topics with it, and the client, which refuses a bad pattern before
 * sending it.
 *
 * Bounded cost: re2js matches in time linear in the name (at most 249 characters) times the
 * size of the compiled program, so a pattern that makes a backtracking JavaScript RegExp run for
 * ever, such as `(a+)+b`, is harmless. A short pattern can still compile to a large program
 * (`(.{0,30}){30}c` is 1,863 instructions; alternatives of them fill 1,000 characters and
 * made 122,893, which took 2.5 s per match), so the program is bounded too: at most 500
 * instructions, about 0.2 ms per match at worst, while patterns people write take 5 to 30.
 * Each result is also remembered per topic, so a rebalance does not match again.
 */
import { RE2JS } from 're2js';

/** Longest pattern accepted: a bound on what each member may make the broker compile and keep. */
export const TOPIC_REGEX_LENGTH_MAX = 1000;
/** Largest compiled program accepted (re2js instructions). */
export const TOPIC_REGEX_PROGRAM_SIZE_MAX = 500;
/** Topics whose result each pattern remembers; past that it starts over. */
const REMEMBERED_TOPICS_MAX = 10_000;

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
  const programSize = compiled.programSize();
  if (programSize > TOPIC_REGEX_PROGRAM_SIZE_MAX) {
    throw new Error(`it compiles to ${programSize} instructions; the limit is ${TOPIC_REGEX_PROGRAM_SIZE_MAX} (large repetition counts such as {30} multiply the size)`);
  }
  const remembered = new Map<string, boolean>();
  return {
    source,
    matches: (topic) => {
      let result = remembered.get(topic);
      if (result === undefined) {
        if (remembered.size >= REMEMBERED_TOPICS_MAX) remembered.clear();
        result = compiled.matches(topic);
        remembered.set(topic, result);
      }
      return result;
    },
  };
}
