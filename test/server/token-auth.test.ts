// Goal: the tokens file is checked entry by entry with messages naming what is wrong, and a
// call is allowed exactly when its token is known and has a permission its method needs;
// method: TokenAuthenticator and parseTokenEntries on plain data, and the permission table
// against the service definitions.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/common/errors.js';
import { ADMIN_SERVICE_NAME, GROUPS_SERVICE_NAME, LOG_SERVICE_NAME, adminServiceDefinition, groupsServiceDefinition, logServerDefinition } from '../../src/server/service-definitions.js';
import { METHOD_PERMISSIONS, TokenAuthenticator, parseTokenEntries } from '../../src/server/token-auth.js';

const sha256 = (token: string): string => createHash('sha256').update(token).digest('hex');

function withToken(token: string | null, scheme = 'Bearer'): Metadata {
  const metadata = new Metadata();
  if (token !== null) metadata.set('authorization', `${scheme} ${token}`);
  return metadata;
}

const authenticator = new TokenAuthenticator([
  { name: 'reader', sha256: sha256('read-secret'), permissions: ['read'] },
  { name: 'writer', sha256: sha256('write-secret'), permissions: ['write'] },
  { name: 'operator', sha256: sha256('admin-secret').toUpperCase(), permissions: ['admin'] },
]);

describe('the permission table', () => {
  it('names every method of the three services, by the names the server registers', () => {
    const methods = (definition: Record<string, { path: string }>): string[] => Object.values(definition).map((method) => method.path.split('/')[2]!).sort();
    expect(Object.keys(METHOD_PERMISSIONS[LOG_SERVICE_NAME]!).sort()).toEqual(methods(logServerDefinition));
    expect(Object.keys(METHOD_PERMISSIONS[ADMIN_SERVICE_NAME]!).sort()).toEqual(methods(adminServiceDefinition));
    expect(Object.keys(METHOD_PERMISSIONS[GROUPS_SERVICE_NAME]!).sort()).toEqual(methods(groupsServiceDefinition));
  });
});

describe('TokenAuthenticator', () => {
  const refusal = (service: string, method: string, metadata: Metadata) => {
    const found = authenticator.refusal(service, method, metadata);
    return found === null ? null : { code: found.code, message: found.message };
  };

  it('lets each permission call its methods, and admin every one', () => {
    expect(refusal(LOG_SERVICE_NAME, 'Produce', withToken('write-secret'))).toBeNull();
    expect(refusal(LOG_SERVICE_NAME, 'Fetch', withToken('read-secret'))).toBeNull();
    expect(refusal(GROUPS_SERVICE_NAME, 'Heartbeat', withToken('read-secret'))).toBeNull();
    expect(refusal(ADMIN_SERVICE_NAME, 'DescribeTopic', withToken('write-secret'))).toBeNull(); // a producer's partition counts
    expect(refusal(ADMIN_SERVICE_NAME, 'DescribeTopic', withToken('read-secret'))).toBeNull();
    for (const [service, methods] of Object.entries(METHOD_PERMISSIONS)) {
      for (const method of Object.keys(methods)) expect(refusal(service, method, withToken('admin-secret', 'bearer'))).toBeNull();
    }
  });

  it('refuses a missing or unknown token with UNAUTHENTICATED, and a missing permission with PERMISSION_DENIED naming what is needed', () => {
    expect(refusal(LOG_SERVICE_NAME, 'Produce', withToken(null))).toEqual({ code: ErrorCode.UNAUTHENTICATED, message: 'this broker needs a token: send it as "authorization: Bearer <token>" metadata (the strata CLI reads STRATA_TOKEN)' });
    expect(refusal(LOG_SERVICE_NAME, 'Produce', withToken('write-secret', 'Basic'))?.code).toBe(ErrorCode.UNAUTHENTICATED);
    expect(refusal(LOG_SERVICE_NAME, 'Produce', withToken('guess'))).toEqual({ code: ErrorCode.UNAUTHENTICATED, message: 'the token is not one this broker knows (see its --auth-tokens-file)' });
    expect(refusal(LOG_SERVICE_NAME, 'Produce', withToken('read-secret'))).toEqual({
      code: ErrorCode.PERMISSION_DENIED,
      message: 'token "reader" may not call Log/Produce: that needs the write or admin permission, and it has read',
    });
    expect(refusal(ADMIN_SERVICE_NAME, 'CreateTopic', withToken('write-secret'))?.message).toBe('token "writer" may not call Admin/CreateTopic: that needs the admin permission, and it has write');
    expect(refusal(GROUPS_SERVICE_NAME, 'ResetOffsets', withToken('read-secret'))?.code).toBe(ErrorCode.PERMISSION_DENIED);
    // A Strata method the table does not list needs admin.
    expect(refusal(LOG_SERVICE_NAME, 'FutureMethod', withToken('write-secret'))?.code).toBe(ErrorCode.PERMISSION_DENIED);
  });

  it('asks nothing of the health service and server reflection', () => {
    expect(refusal('grpc.health.v1.Health', 'Check', withToken(null))).toBeNull();
    expect(refusal('grpc.reflection.v1.ServerReflection', 'ServerReflectionInfo', withToken(null))).toBeNull();
  });
});

describe('the tokens file', () => {
  const good = { name: 'a', sha256: sha256('x'), permissions: ['read'] };
  const problem = (parsed: unknown): string => {
    try {
      parseTokenEntries(parsed, 'tokens.json');
    } catch (error) {
      return (error as Error).message;
    }
    return 'taken';
  };

  it('names the entry and the field of each mistake', () => {
    expect(problem([])).toMatch(/^tokens\.json must be an object with a "tokens" list/);
    expect(problem({ tokens: [good, { ...good, name: 'b', sha256: 'x' }] })).toBe('tokens.json: tokens[1].sha256 must be the token\'s SHA-256 as 64 hex digits (printf %s "$TOKEN" | sha256sum | cut -d\' \' -f1), not the token itself');
    expect(problem({ tokens: [good, { ...good, sha256: sha256('y') }] })).toBe('tokens.json: tokens[1].name "a" is given twice');
    expect(problem({ tokens: [good, { ...good, name: 'b', sha256: good.sha256.toUpperCase() }] })).toBe("tokens.json: tokens[1].sha256 is the same as another token's");
    expect(problem({ tokens: [{ ...good, permissions: [] }] })).toBe('tokens.json: tokens[0].permissions must be a non-empty list of read, write, admin');
    expect(problem({ tokens: [{ ...good, permissions: ['produce'] }] })).toBe('tokens.json: tokens[0].permissions has "produce"; known: read, write, admin');
    expect(problem({ tokens: [{ ...good, token: 'x' }] })).toBe('tokens.json: tokens[0] has unknown field(s) "token"; it takes name, sha256, permissions, topics and groups');
    expect(problem({ tokens: [{ ...good, name: ' ' }] })).toBe('tokens.json: tokens[0].name must be a non-empty string');
    expect(problem({ tokens: [good] })).toBe('taken');
  });

  it('is read from a file, with the flag and path in every refusal', () => {
    const directory = mkdtempSync(join(tmpdir(), 'strata-tokens-'));
    try {
      const path = join(directory, 'tokens.json');
      expect(() => TokenAuthenticator.fromFile(path)).toThrow(`--auth-tokens-file ${path} cannot be read: ENOENT (no such file or directory)`);
      writeFileSync(path, '{"tokens": [');
      expect(() => TokenAuthenticator.fromFile(path)).toThrow(new RegExp(`^--auth-tokens-file ${path} is not JSON: `));
      writeFileSync(path, JSON.stringify({ tokens: [] }));
      expect(() => TokenAuthenticator.fromFile(path)).toThrow(`--auth-tokens-file ${path} lists no token: every call would be refused; add one, or leave --auth-tokens-file unset`);
      writeFileSync(path, JSON.stringify({ tokens: [good] }));
      const loaded = TokenAuthenticator.fromFile(path);
      expect(loaded.tokenCount).toBe(1);
      expect(loaded.refusal(LOG_SERVICE_NAME, 'Fetch', withToken('x'))).toBeNull();
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
