// Goal: a token's topics and groups allow exactly the names and prefixes listed (or every one
// with "*"), a refusal names the token, what it asked for and what it may use, a name no topic or
// group can have is INVALID_ARGUMENT before any refusal, and the tokens file takes and checks the
// lists; method: NameScope, TokenScope and TokenAuthenticator on plain data.
import { createHash } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import { LOG_SERVICE_NAME } from '../../src/server/service-definitions.js';
import { TokenAuthenticator, callScope, parseTokenEntries } from '../../src/server/token-auth.js';
import { NameScope } from '../../src/common/name-scope.js';
import { TokenScope } from '../../src/server/token-scope.js';

const sha256 = (token: string): string => createHash('sha256').update(token).digest('hex');

/** The code and message `check` throws, or null when it does not. */
function thrown(check: () => void): { code: ErrorCode; message: string } | null {
  try {
    check();
  } catch (error) {
    if (!(error instanceof StrataError)) throw error;
    return { code: error.code, message: error.message };
  }
  return null;
}

describe('NameScope', () => {
  it('allows whole names and prefixes, and every name with "*"', () => {
    const scope = new NameScope(['orders', 'audit.*']);
    expect(['orders', 'audit.', 'audit.eu', 'audit.eu.x'].map((name) => scope.allows(name))).toEqual([true, true, true, true]);
    expect(['orders2', 'order', 'audit', 'audit-eu', 'xorders'].map((name) => scope.allows(name))).toEqual([false, false, false, false, false]);
    expect(scope.every).toBe(false);
    expect(new NameScope(['orders', '*']).allows('anything')).toBe(true);
    expect(String(scope)).toBe('"orders", "audit.*"');
  });

  it('keeps of a list the entries whose names it allows, and hands back the list itself when it allows every name', () => {
    const entries = [{ topic: 'orders' }, { topic: 'payments' }, { topic: 'audit.eu' }];
    expect(new NameScope(['orders', 'audit.*']).within(entries, (entry) => entry.topic)).toEqual([{ topic: 'orders' }, { topic: 'audit.eu' }]);
    expect(NameScope.EVERY.within(entries, (entry) => entry.topic)).toBe(entries);
  });
});

describe('TokenScope', () => {
  const scope = new TokenScope('billing', new NameScope(['orders', 'audit.*']), new NameScope(['billing-*']));

  it('refuses a topic or group outside its lists with PERMISSION_DENIED, naming the token, the name and its lists', () => {
    expect(thrown(() => scope.checkTopic('orders'))).toBeNull();
    expect(thrown(() => scope.checkTopics(['audit.eu', 'orders']))).toBeNull();
    expect(thrown(() => scope.checkGroup('billing-eu'))).toBeNull();
    expect(thrown(() => scope.checkTopic('payments'))).toEqual({
      code: ErrorCode.PERMISSION_DENIED,
      message: 'token "billing" may not use topic "payments": its topics are "orders", "audit.*" (see its entry in --auth-tokens-file)',
    });
    expect(thrown(() => scope.checkTopics(['orders', 'payments']))?.code).toBe(ErrorCode.PERMISSION_DENIED);
    expect(thrown(() => scope.checkGroup('billing'))).toEqual({
      code: ErrorCode.PERMISSION_DENIED,
      message: 'token "billing" may not use group "billing": its groups are "billing-*" (see its entry in --auth-tokens-file)',
    });
    // A group's topics outside the token's are not named.
    expect(thrown(() => scope.checkTopicsOfGroup('billing-eu', ['orders', 'audit.eu']))).toBeNull();
    expect(thrown(() => scope.checkTopicsOfGroup('billing-eu', ['orders', 'payments']))).toEqual({
      code: ErrorCode.PERMISSION_DENIED,
      message: 'token "billing" may not remove every offset of group "billing-eu": the group has offsets of topics other than its topics, "orders", "audit.*"; those must be deleted by a token that may use them (see its entry in --auth-tokens-file)',
    });
  });

  it('answers a name no topic or group can have with INVALID_ARGUMENT, as the broker would', () => {
    expect(thrown(() => scope.checkTopic(''))).toEqual({ code: ErrorCode.INVALID_ARGUMENT, message: 'topic name is empty' });
    expect(thrown(() => scope.checkTopic('audit/x'))?.code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(thrown(() => scope.checkGroup(''))).toEqual({ code: ErrorCode.INVALID_ARGUMENT, message: 'group id is required' });
  });

  it('refuses nothing when open', () => {
    for (const check of [() => TokenScope.OPEN.checkTopic('x'), () => TokenScope.OPEN.checkGroup('y'), () => TokenScope.OPEN.checkTopicsOfGroup('g', ['t'])]) expect(thrown(check)).toBeNull();
  });
});

describe('the scope of a call', () => {
  const metadata = (token: string): Metadata => {
    const made = new Metadata();
    made.set('authorization', `Bearer ${token}`);
    return made;
  };
  const authenticator = new TokenAuthenticator([
    { name: 'limited', sha256: sha256('limited-secret'), permissions: ['read'], topics: ['orders'], groups: ['billing'] },
    { name: 'topics-only', sha256: sha256('topics-secret'), permissions: ['read'], topics: ['orders'] },
    { name: 'everything', sha256: sha256('open-secret'), permissions: ['read'] },
  ]);

  it('is the scope of the token the call carries: each list it gives, every name for each it leaves out', () => {
    const limited = authenticator.scopeOf(metadata('limited-secret'));
    expect([limited.topics.allows('orders'), limited.topics.allows('x'), limited.groups.allows('billing'), limited.groups.allows('x')]).toEqual([true, false, true, false]);
    const topicsOnly = authenticator.scopeOf(metadata('topics-secret'));
    expect([topicsOnly.topics.allows('x'), topicsOnly.groups.allows('x')]).toEqual([false, true]);
    expect(authenticator.scopeOf(metadata('open-secret'))).toBe(TokenScope.OPEN);
    expect(callScope(null, metadata('anything'))).toBe(TokenScope.OPEN);
  });

  it('is checked again when the tokens change meanwhile: the new scope of a token still listed, a refusal for one no longer listed or no longer allowed the call', () => {
    const changing = new TokenAuthenticator([
      { name: 'a', sha256: sha256('a-secret'), permissions: ['read'], topics: ['orders'] },
      { name: 'b', sha256: sha256('b-secret'), permissions: ['read'] },
      { name: 'c', sha256: sha256('c-secret'), permissions: ['read'] },
    ]);
    const calls = { a: metadata('a-secret'), b: metadata('b-secret'), c: metadata('c-secret') };
    for (const call of Object.values(calls)) expect(changing.refusal(LOG_SERVICE_NAME, 'Fetch', call)).toBeNull();
    const retake = (entries: unknown[]): void => (changing as unknown as { take(entries: unknown[]): void }).take(entries);
    retake([
      { name: 'b', sha256: sha256('b-secret'), permissions: ['read'], topics: ['payments'] },
      { name: 'c', sha256: sha256('c-secret'), permissions: ['write'] },
    ]);
    const refusedA = thrown(() => changing.scopeOf(calls.a));
    expect([refusedA?.code, refusedA?.message]).toEqual([
      ErrorCode.UNAUTHENTICATED,
      'token "a" is no longer accepted: the broker read its tokens file again since this call began, and the token is not in it; use a token it lists',
    ]);
    expect([changing.scopeOf(calls.b).topics.allows('orders'), changing.scopeOf(calls.b).topics.allows('payments')]).toEqual([false, true]);
    expect(thrown(() => changing.scopeOf(calls.c))?.code).toBe(ErrorCode.PERMISSION_DENIED);
    expect(thrown(() => changing.scopeOf(metadata('a-secret')))?.code).toBe(ErrorCode.UNAUTHENTICATED);
  });
});

describe('topics and groups in the tokens file', () => {
  const good = { name: 'a', sha256: sha256('x'), permissions: ['read'] };
  const problem = (entry: object): string => {
    try {
      parseTokenEntries({ tokens: [entry] }, 'tokens.json');
    } catch (error) {
      return (error as Error).message;
    }
    return 'taken';
  };

  it('takes lists of names, prefixes and "*", and leaves an entry without them open', () => {
    expect(parseTokenEntries({ tokens: [{ ...good, topics: ['orders', 'audit.*', '*'], groups: ['billing-*'] }] }, 'tokens.json')).toEqual([{ ...good, topics: ['orders', 'audit.*', '*'], groups: ['billing-*'] }]);
    expect(parseTokenEntries({ tokens: [good] }, 'tokens.json')).toEqual([good]);
    expect(problem({ ...good, topics: ['..*'] })).toBe('taken'); // a prefix of dots: no whole name, but a prefix of many
  });

  it('names the entry, the field and the pattern of each mistake', () => {
    expect(problem({ ...good, topics: [] })).toBe('tokens.json: tokens[0].topics must be a non-empty list of topic names and prefixes ("orders", "orders.*"), or "*"; leave it out for every topic');
    expect(problem({ ...good, groups: 'billing' })).toBe('tokens.json: tokens[0].groups must be a non-empty list of group ids and prefixes ("billing", "billing-*"), or "*"; leave it out for every group');
    expect(problem({ ...good, topics: ['orders', 'a*b'] })).toBe('tokens.json: tokens[0].topics[1] "a*b" has a "*" before its end; a pattern is a name, a prefix followed by "*", or "*" alone');
    expect(problem({ ...good, topics: ['orders/eu'] })).toBe('tokens.json: tokens[0].topics[0] "orders/eu" is not a topic name: topic name "orders/eu" has characters outside [a-zA-Z0-9._-]');
    expect(problem({ ...good, topics: ['orders/*'] })).toBe('tokens.json: tokens[0].topics[0] "orders/*" is not a topic name prefix: it has characters outside [a-zA-Z0-9._-]');
    expect(problem({ ...good, topics: [''] })).toBe('tokens.json: tokens[0].topics[0] is empty');
    expect(problem({ ...good, groups: [3] })).toBe('tokens.json: tokens[0].groups[0] must be a string');
    expect(problem({ ...good, groups: [`${'g'.repeat(256)}*`] })).toBe(`tokens.json: tokens[0].groups[0] "${'g'.repeat(256)}*" is not a group id: group id is 256 characters long; the limit is 255`);
    expect(problem({ ...good, scope: ['x'] })).toBe('tokens.json: tokens[0] has unknown field(s) "scope"; it takes name, sha256, permissions, topics and groups');
  });
});
