// Goal: checkTopicName accepts exactly Kafka's legal topic names and refuses the rest with a
// message that says why; method: direct unit calls over tables of legal and illegal names.
import { describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { TOPIC_NAME_LENGTH_MAX, checkTopicName } from '../../src/common/topic-name.js';

/** The StrataError checkTopicName throws for `name` (fails the test if it accepts it). */
function refusal(name: unknown): StrataError {
  try {
    checkTopicName(name);
  } catch (error) {
    expect(error).toBeInstanceOf(StrataError);
    return error as StrataError;
  }
  throw new Error(`expected ${JSON.stringify(name)} to be refused`);
}

describe('checkTopicName', () => {
  it('has the Kafka length limit of 249', () => {
    expect(TOPIC_NAME_LENGTH_MAX).toBe(249);
  });

  it.each([
    ['a single letter', 'a'],
    ['a single digit', '0'],
    ['every legal character class', 'Orders_2024-v1.events'],
    ['a leading dot', '.hidden'],
    ['a leading dash', '-dash'],
    ['three dots', '...'],
    ['dots around a name', '..a..'],
    ['only underscores', '___'],
    ['exactly 249 characters', 'x'.repeat(249)],
    ['249 characters of mixed classes', 'aZ9._-'.repeat(41) + 'abc'],
  ])('accepts %s', (_label, name) => {
    expect(() => checkTopicName(name)).not.toThrow();
  });

  it.each<[string, unknown, RegExp]>([
    ['the empty string', '', /topic name is empty/],
    ['undefined', undefined, /topic name is empty/],
    ['null', null, /topic name is empty/],
    ['a number', 42, /topic name is empty/],
    ['"."', '.', /topic name "\." is not allowed/],
    ['".."', '..', /topic name "\.\." is not allowed/],
    ['250 characters', 'x'.repeat(250), /topic name is 250 characters long; the limit is 249/],
    ['10000 characters', 'y'.repeat(10_000), /10000 characters long; the limit is 249/],
    ['a path traversal', '../etc', /"\.\.\/etc" has characters outside \[a-zA-Z0-9\._-\]/],
    ['a slash', 'a/b', /"a\/b" has characters outside/],
    ['a backslash', 'a\\b', /has characters outside/],
    ['an absolute path', '/etc/passwd', /has characters outside/],
    ['a space', 'sp ace', /"sp ace" has characters outside/],
    ['a trailing newline', 'abc\n', /"abc\\n" has characters outside/],
    ['a NUL byte', 'a\0b', /has characters outside/],
    ['a tab', 'a\tb', /has characters outside/],
    ['a colon', 'a:b', /has characters outside/],
    ['an asterisk', 'topic*', /has characters outside/],
    ['non-ASCII letters', 'tøpic', /"tøpic" has characters outside/],
    ['CJK characters', '主题', /has characters outside/],
    ['an emoji', 'log-📜', /has characters outside/],
    ['a fullwidth dot look-alike', 'a．b', /has characters outside/],
  ])('refuses %s', (_label, name, message) => {
    const error = refusal(name);
    expect(error.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(error.message).toMatch(message);
  });

  it('checks length before characters, so a long illegal name reports its length', () => {
    expect(refusal('/'.repeat(250)).message).toMatch(/250 characters long/);
  });

  it('counts UTF-16 code units: 249 ASCII characters plus one emoji is over the limit', () => {
    // The emoji is 2 code units, so the name is 251 long and refused for its length first.
    expect(refusal('x'.repeat(249) + '📜').message).toMatch(/251 characters long/);
  });
});
