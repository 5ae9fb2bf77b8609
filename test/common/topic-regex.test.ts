// Subscription regexes: RE2 syntax, whole-name matches, linear-time matching and a length bound.
import { describe, expect, it } from 'vitest';
import { TOPIC_REGEX_LENGTH_MAX, compileTopicRegex } from '../../src/common/topic-regex.js';

describe('compileTopicRegex', () => {
  it('matches whole topic names only', () => {
    const regex = compileTopicRegex('orders\\..*');
    expect(['orders.eu', 'orders.', 'orders.eu.x'].map((topic) => regex.matches(topic))).toEqual([true, true, true]);
    expect(['ordersXeu', 'old-orders.eu', 'orders'].map((topic) => regex.matches(topic))).toEqual([false, false, false]);
    const alternation = compileTopicRegex('a|b');
    expect([alternation.matches('a'), alternation.matches('b'), alternation.matches('ab')]).toEqual([true, true, false]);
    expect(compileTopicRegex('(?i)ORDERS').matches('orders')).toBe(true);
  });

  // A backtracking engine takes about 2^n steps for this pattern on n a's; a topic name may be
  // 249 characters long. The test would not finish if matching backtracked.
  it('matches a pattern that backtracks catastrophically in a JavaScript RegExp', () => {
    const regex = compileTopicRegex('(a+)+b');
    expect(regex.matches('a'.repeat(249))).toBe(false);
    expect(regex.matches(`${'a'.repeat(248)}b`)).toBe(true);
    expect(compileTopicRegex('(a|a)*c').matches('a'.repeat(249))).toBe(false);
  });

  it('refuses patterns RE2 does not support, or cannot parse, saying why', () => {
    expect(() => compileTopicRegex('(?=orders)o.*')).toThrow(/unsupported Perl syntax.*no lookaround or backreferences/);
    expect(() => compileTopicRegex('(a)\\1')).toThrow(/RE2/);
    expect(() => compileTopicRegex('a)|(b')).toThrow(/unexpected \)/);
    expect(() => compileTopicRegex('orders(')).toThrow(/missing closing \)/);
  });

  // 989 characters, 122,893 instructions: 2.5 s per match on a 249-character name.
  it('refuses a pattern whose compiled program is over the limit, however short', () => {
    expect(() => compileTopicRegex('(.{0,30}){30}c')).toThrow('it compiles to 1863 instructions; the limit is 500 (large repetition counts such as {30} multiply the size)');
    const alternatives = Array.from({ length: 66 }, (_, index) => `(.{0,30}){30}${String.fromCharCode(97 + (index % 26))}`).join('|');
    expect(alternatives.length).toBeLessThanOrEqual(TOPIC_REGEX_LENGTH_MAX);
    expect(() => compileTopicRegex(alternatives)).toThrow(/instructions; the limit is 500/);
    expect(compileTopicRegex('(.{0,48}){5}c').matches(`${'a'.repeat(48)}c`)).toBe(true); // 493 instructions
  });

  it('refuses a pattern longer than the limit', () => {
    const longest = `[${'a'.repeat(TOPIC_REGEX_LENGTH_MAX - 3)}]+`; // one character class: a small program
    expect(compileTopicRegex(longest).matches('aaa')).toBe(true);
    expect(() => compileTopicRegex('a'.repeat(TOPIC_REGEX_LENGTH_MAX + 1))).toThrow(`it is ${TOPIC_REGEX_LENGTH_MAX + 1} characters long; the limit is ${TOPIC_REGEX_LENGTH_MAX}`);
  });
});
