/**
 * Token authentication and per-method permissions (`--auth-tokens-file`). A client sends
 * `authorization: Bearer <token>` metadata on every call; the broker knows each token only by
 * its SHA-256, with a name (for logs and errors) and the permissions it grants:
 *
 * - `read`: fetch, subscribe, list offsets, describe and list topics, and everything a consumer
 *   group member does (heartbeat, commit, fetch offsets) plus listing and describing groups;
 * - `write`: produce (unary, stream, InitProducer), and describing and listing topics, which a
 *   producer needs for partition counts;
 * - `admin`: every call, topic administration and offset resets and group deletion included.
 *
 * A call without a token the broker knows is refused with UNAUTHENTICATED; one whose token lacks
 * the method's permission with PERMISSION_DENIED. The health service and server reflection need
 * no token: probes and tools such as grpcurl must reach them, and they reveal no data. An entry
 * may also list the topics and the groups its token may name (token-scope.ts); the handlers
 * check those against `scopeOf` the call.
 *
 * The file (JSON):
 *   { "tokens": [ { "name": "orders-service", "sha256": "<64 hex digits>", "permissions": ["write"],
 *                   "topics": ["orders", "orders-audit.*"] } ] }
 * `printf %s "$TOKEN" | sha256sum | cut -d' ' -f1` gives a token's SHA-256. Tokens are looked up by their hash,
 * so the time a lookup takes says nothing about a token's characters.
 */
import { createHash } from 'node:crypto';
import { type Metadata, ResponderBuilder, ServerInterceptingCall, ServerListenerBuilder, type ServerInterceptor, status } from '@grpc/grpc-js';
import { ErrorCode, StrataError, readFlagFile } from '../common/errors.js';
import { invalidArgument as invalid, toGrpcFailure, toServiceError } from './status.js';
import type { HandlerContext } from './unary-handler.js';
import { REFUSAL_LINES, ThrottledWarning } from '../common/throttled-warning.js';
import { ADMIN_SERVICE_NAME, GROUPS_SERVICE_NAME, LOG_SERVICE_NAME } from './service-definitions.js';
import { NameScope } from '../common/name-scope.js';
import { TokenScope, groupPatternProblem, topicPatternProblem } from './token-scope.js';

const PERMISSIONS = ['read', 'write', 'admin'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** The metadata key of the token, as gRPC's own token credentials send it. */
const AUTHORIZATION_METADATA = 'authorization';

const READ_OR_WRITE: readonly Permission[] = ['read', 'write', 'admin'];
const READ: readonly Permission[] = ['read', 'admin'];
const WRITE: readonly Permission[] = ['write', 'admin'];
const ADMIN: readonly Permission[] = ['admin'];

/** The permissions that allow each method of Strata's services, by method name per service. */
export const METHOD_PERMISSIONS: Readonly<Record<string, Readonly<Record<string, readonly Permission[]>>>> = {
  [LOG_SERVICE_NAME]: {
    Produce: WRITE,
    ProduceStream: WRITE,
    InitProducer: WRITE,
    Fetch: READ,
    Subscribe: READ,
    ListOffsets: READ,
  },
  [ADMIN_SERVICE_NAME]: {
    ListTopics: READ_OR_WRITE,
    DescribeTopic: READ_OR_WRITE,
    CreateTopic: ADMIN,
    DeleteTopic: ADMIN,
    AlterTopicConfigs: ADMIN,
    AddPartitions: ADMIN,
  },
  [GROUPS_SERVICE_NAME]: {
    Heartbeat: READ,
    CommitOffsets: READ,
    CommitOffsetsStream: READ,
    FetchOffsets: READ,
    ListGroups: READ,
    DescribeGroup: READ,
    ResetOffsets: ADMIN,
    DeleteOffsets: ADMIN,
    DeleteGroup: ADMIN,
  },
};

interface KnownToken {
  name: string;
  permissions: ReadonlySet<Permission>;
  scope: TokenScope;
}

/** The token a call was let through with, what it called, and from which reading of the file. */
interface CallToken {
  known: KnownToken;
  service: string;
  method: string;
  generation: number;
}

export interface TokenEntry {
  name: string;
  /** SHA-256 of the token, 64 hex digits. */
  sha256: string;
  permissions: readonly Permission[];
  /** The topics the token may name (token-scope.ts); absent: every topic. */
  topics?: readonly string[];
  /** The consumer groups the token may name; absent: every group. */
  groups?: readonly string[];
}

/** The tokens a broker accepts, and the check of each call against them. */
export class TokenAuthenticator {
  private byHash = new Map<string, KnownToken>();
  /** The token of each call let through, by its metadata (the object its handler gets): hashed once a call. */
  private readonly callTokens = new WeakMap<Metadata, CallToken>();
  /** How many times the tokens were taken: a call let through at an earlier one is checked again. */
  private generation = 0;
  private readonly reloadListeners = new Set<() => void>();

  /** `file`: where the entries were read from, for the start-up log line and `reload` ('' when not from a file). */
  constructor(entries: readonly TokenEntry[], readonly file = '') {
    this.take(entries);
  }

  /** Reads and checks a tokens file; every problem is an INVALID_ARGUMENT naming the flag and the entry. */
  static fromFile(path: string): TokenAuthenticator {
    return new TokenAuthenticator(readTokensFile(path), path);
  }

  /**
   * Reads the file again and takes its tokens in place of the ones before (`strata serve` does
   * it on SIGHUP). Calls under way are checked again too: a stream's next request is checked
   * against the new tokens (`scopeOf`), and open subscriptions are told (`onReload`), so a
   * revoked or narrowed token stops at once, not when its streams end. A file with a problem
   * changes nothing: it throws, and the tokens before stay.
   */
  reload(): void {
    if (this.file === '') throw new Error('these tokens were not read from a file');
    this.take(readTokensFile(this.file));
    for (const listener of [...this.reloadListeners]) listener();
  }

  /** Calls `listener` after each reload, until the returned function is called. */
  onReload(listener: () => void): () => void {
    this.reloadListeners.add(listener);
    return () => this.reloadListeners.delete(listener);
  }

  private take(entries: readonly TokenEntry[]): void {
    const byHash = new Map<string, KnownToken>();
    for (const entry of entries) {
      const scope =
        entry.topics === undefined && entry.groups === undefined
          ? TokenScope.OPEN
          : new TokenScope(entry.name, entry.topics === undefined ? NameScope.EVERY : new NameScope(entry.topics), entry.groups === undefined ? NameScope.EVERY : new NameScope(entry.groups));
      byHash.set(entry.sha256.toLowerCase(), { name: entry.name, permissions: new Set(entry.permissions), scope });
    }
    this.byHash = byHash;
    this.generation++;
  }

  get tokenCount(): number {
    return this.byHash.size;
  }

  /**
   * Null when a call to `service`/`method` with `metadata` may go on; otherwise the refusal.
   * Services other than Strata's (health, reflection) need no token.
   */
  refusal(service: string, method: string, metadata: Metadata): StrataError | null {
    const methods = METHOD_PERMISSIONS[service];
    if (methods === undefined) return null;
    const known = this.identify(metadata);
    if (known instanceof StrataError) return known;
    // A method this table does not name needs admin: a new method is closed until it is listed.
    const allowed = methods[method] ?? ADMIN;
    if (allowed.some((permission) => known.permissions.has(permission))) {
      this.callTokens.set(metadata, { known, service, method, generation: this.generation });
      return null;
    }
    return new StrataError(
      ErrorCode.PERMISSION_DENIED,
      `token "${known.name}" may not call ${service.replace(/^strata\.v1\./, '')}/${method}: that needs the ${allowed.join(' or ')} permission, and it has ${[...known.permissions].join(', ')}`,
    );
  }

  /**
   * The topics and groups the token of a call `refusal` let through may name; `metadata` is the
   * call's (a handler's `call.metadata`). Throws when the tokens were read again since the call
   * began and its token is no longer known (UNAUTHENTICATED) or no longer has the call's
   * permission (PERMISSION_DENIED); a token still known gets its new scope.
   */
  scopeOf(metadata: Metadata): TokenScope {
    return this.callerOf(metadata).scope;
  }

  /**
   * The token of the call with `metadata`, as the tokens are now: its scope and its name (which a
   * consumer-group member or a producer id it makes is bound to) at one lookup. Checked again
   * after a reload, as `scopeOf` says.
   */
  callerOf(metadata: Metadata): Caller & { name: string } {
    const call = this.callTokens.get(metadata);
    if (call === undefined) {
      const known = this.identify(metadata);
      if (known instanceof StrataError) throw known;
      return known;
    }
    if (call.generation === this.generation) return call.known;
    // Read again since the call began: checked as a new call would be (which records it anew).
    const refusal = this.refusal(call.service, call.method, metadata);
    if (refusal === null) return this.callTokens.get(metadata)!.known;
    if (refusal.code !== ErrorCode.UNAUTHENTICATED) throw refusal;
    throw new StrataError(ErrorCode.UNAUTHENTICATED, `token "${call.known.name}" is no longer accepted: the broker read its tokens file again since this call began, and the token is not in it; use a token it lists`);
  }

  /** The known token `metadata` carries, or the UNAUTHENTICATED refusal. */
  private identify(metadata: Metadata): KnownToken | StrataError {
    const values = metadata.get(AUTHORIZATION_METADATA);
    const header = values.length === 1 && typeof values[0] === 'string' ? values[0] : null;
    const token = header !== null && /^bearer /i.test(header) ? header.slice('bearer '.length).trim() : null;
    if (token === null || token === '') {
      return new StrataError(ErrorCode.UNAUTHENTICATED, `this broker needs a token: send it as "${AUTHORIZATION_METADATA}: Bearer <token>" metadata (the strata CLI reads STRATA_TOKEN)`);
    }
    const known = this.byHash.get(createHash('sha256').update(token).digest('hex'));
    return known ?? new StrataError(ErrorCode.UNAUTHENTICATED, 'the token is not one this broker knows (see its --auth-tokens-file)');
  }
}

/** The scope of a call with `metadata`: every topic and group on a broker without tokens. */
export function callScope(authenticator: TokenAuthenticator | null | undefined, metadata: Metadata): TokenScope {
  return authenticator ? authenticator.scopeOf(metadata) : TokenScope.OPEN;
}

/** Who makes a call: what its token may name, and the token's name (null on a broker without tokens). */
export interface Caller {
  readonly scope: TokenScope;
  readonly name: string | null;
}

const OPEN_CALLER: Caller = Object.freeze({ scope: TokenScope.OPEN, name: null });

/** The caller of a call with `metadata`, scope and name at one lookup (no object made for it). */
export function callCaller(authenticator: TokenAuthenticator | null | undefined, metadata: Metadata): Caller {
  return authenticator ? authenticator.callerOf(metadata) : OPEN_CALLER;
}

/** Reads and checks a tokens file (`--auth-tokens-file`); every problem is an INVALID_ARGUMENT naming the flag, the file and the entry. */
function readTokensFile(path: string): TokenEntry[] {
  const flag = '--auth-tokens-file';
  const text = readFlagFile(flag, path).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalid(`${flag} ${path} is not JSON: ${(error as Error).message}`);
  }
  const entries = parseTokenEntries(parsed, `${flag} ${path}`);
  if (entries.length === 0) throw invalid(`${flag} ${path} lists no token: every call would be refused; add one, or leave ${flag} unset`);
  return entries;
}

/**
 * The entries of a parsed tokens file: names unique and not empty, hashes 64 hex digits and
 * unique, permissions from PERMISSIONS, topics and groups (when given) non-empty lists of
 * patterns (token-scope.ts). `where` names the file in errors.
 */
export function parseTokenEntries(parsed: unknown, where: string): TokenEntry[] {
  const tokens = (parsed as { tokens?: unknown } | null)?.tokens;
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray(tokens)) {
    throw invalid(`${where} must be an object with a "tokens" list: {"tokens": [{"name": ..., "sha256": ..., "permissions": [...]}]}`);
  }
  const names = new Set<string>();
  const hashes = new Set<string>();
  return tokens.map((raw: unknown, index) => {
    const at = `${where}: tokens[${index}]`;
    if (typeof raw !== 'object' || raw === null) throw invalid(`${at} must be an object with name, sha256 and permissions`);
    const { name, sha256, permissions, topics, groups, ...rest } = raw as Record<string, unknown>;
    const unknownKeys = Object.keys(rest);
    if (unknownKeys.length > 0) throw invalid(`${at} has unknown field(s) ${unknownKeys.map((key) => JSON.stringify(key)).join(', ')}; it takes name, sha256, permissions, topics and groups`);
    if (typeof name !== 'string' || name.trim() === '') throw invalid(`${at}.name must be a non-empty string`);
    if (names.has(name)) throw invalid(`${at}.name "${name}" is given twice`);
    names.add(name);
    if (typeof sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(sha256)) {
      throw invalid(`${at}.sha256 must be the token's SHA-256 as 64 hex digits (printf %s "$TOKEN" | sha256sum | cut -d' ' -f1), not the token itself`);
    }
    if (hashes.has(sha256.toLowerCase())) throw invalid(`${at}.sha256 is the same as another token's`);
    hashes.add(sha256.toLowerCase());
    if (!Array.isArray(permissions) || permissions.length === 0) throw invalid(`${at}.permissions must be a non-empty list of ${PERMISSIONS.join(', ')}`);
    for (const permission of permissions) {
      if (!(PERMISSIONS as readonly unknown[]).includes(permission)) throw invalid(`${at}.permissions has ${JSON.stringify(permission)}; known: ${PERMISSIONS.join(', ')}`);
    }
    return {
      name,
      sha256,
      permissions: permissions as Permission[],
      ...(topics !== undefined ? { topics: patternList(topics, `${at}.topics`, 'every topic', 'topic names and prefixes ("orders", "orders.*")', topicPatternProblem) } : {}),
      ...(groups !== undefined ? { groups: patternList(groups, `${at}.groups`, 'every group', 'group ids and prefixes ("billing", "billing-*")', groupPatternProblem) } : {}),
    };
  });
}

/** A checked list of topic or group patterns; `at` names the field in errors. */
function patternList(list: unknown, at: string, every: string, patterns: string, problemOf: (pattern: unknown) => string | null): string[] {
  if (!Array.isArray(list) || list.length === 0) throw invalid(`${at} must be a non-empty list of ${patterns}, or "*"; leave it out for ${every}`);
  return list.map((pattern: unknown, index) => {
    const problem = problemOf(pattern);
    if (problem !== null) throw invalid(`${at}[${index}] ${problem}`);
    return pattern as string;
  });
}

/**
 * A grpc-js server interceptor that refuses calls `authenticator` refuses before their handler
 * starts, with the status, the `strata-error` trailer and the count in `strata_requests_total`
 * that a handler's refusal would have.
 */
export function tokenAuthInterceptor(authenticator: TokenAuthenticator, context: HandlerContext): ServerInterceptor {
  const log = new ThrottledWarning(context.logger, 'request refused: no token, or no permission (lines at most every 10 s)', REFUSAL_LINES);
  // Each path's service and method, split once rather than at every call.
  const names = new Map<string, { service: string; method: string }>();
  return (methodDescriptor, call) => {
    let name = names.get(methodDescriptor.path);
    if (name === undefined) {
      const [service = '', method = ''] = methodDescriptor.path.replace(/^\//, '').split('/');
      names.set(methodDescriptor.path, (name = { service, method }));
    }
    const { service, method } = name;
    // Health and reflection need no token: their calls get no layer (grpc-js chains what an
    // interceptor returns through the interface alone, as transportRefusals relies on too).
    if (METHOD_PERMISSIONS[service] === undefined) return call as ServerInterceptingCall;
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const refusal = authenticator.refusal(service, method, metadata);
        if (refusal === null) {
          next(metadata);
          return;
        }
        const failure = toGrpcFailure(refusal);
        const { code, details, metadata: trailer } = toServiceError(failure);
        context.metrics?.countRefusal(method, failure.code, failure.strataCode);
        log.note({ method, code: failure.code, codeName: status[failure.code], reason: failure.details, peer: call.getPeer() });
        call.sendStatus({ code: code!, details: details!, ...(trailer !== undefined ? { metadata: trailer } : {}) });
      })
      .build();
    return new ServerInterceptingCall(call, new ResponderBuilder().withStart((next) => next(listener)).build());
  };
}
