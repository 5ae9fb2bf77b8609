/**
 * A set of names given by patterns, as a token's topics and groups are (see
 * `server/token-scope.ts`): a whole name, a prefix followed by `*`, or `*` alone for every
 * name. Pure; the groups keep a member's topic scope by its patterns and rebuild it from them.
 */
/** Whole names and prefixes (`orders.*`), or every name (`*`). */
export class NameScope {
  static readonly EVERY = new NameScope(['*']);

  readonly every: boolean;
  private readonly names: ReadonlySet<string>;
  private readonly prefixes: readonly string[];

  constructor(readonly patterns: readonly string[]) {
    this.every = patterns.includes('*');
    this.names = new Set(patterns.filter((pattern) => !pattern.endsWith('*')));
    this.prefixes = patterns.filter((pattern) => pattern.endsWith('*')).map((pattern) => pattern.slice(0, -1));
  }

  allows(name: string): boolean {
    return this.every || this.names.has(name) || this.prefixes.some((prefix) => name.startsWith(prefix));
  }

  /** The entries of `entries` whose name (`nameOf`) this allows: `entries` itself when it allows every name. */
  within<Entry>(entries: readonly Entry[], nameOf: (entry: Entry) => string): readonly Entry[] {
    return this.every ? entries : entries.filter((entry) => this.allows(nameOf(entry)));
  }

  toString(): string {
    return this.patterns.map((pattern) => JSON.stringify(pattern)).join(', ');
  }
}
