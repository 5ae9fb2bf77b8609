/**
 * Seeded randomness for tests (and the storage benchmark): one PRNG, per-name streams derived
 * from one seed, and the seed handling every seeded test file shares (read it from the
 * environment to replay a run, otherwise pick one and print it so a failure can be replayed).
 * No test-framework imports: bench/storage-bench.ts uses this file outside vitest.
 */

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a over a name's UTF-16 code units (a signed 32-bit integer). */
export function nameHash(name: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < name.length; index++) hash = Math.imul(hash ^ name.charCodeAt(index), 0x01000193);
  return hash;
}

/**
 * An independent stream per name from one seed, so running one test alone (-t) replays the
 * same numbers it gets in a full run.
 */
export function streamFor(seed: number, name: string): () => number {
  return mulberry32((seed ^ nameHash(name)) >>> 0);
}

export interface TestSeedOptions {
  /**
   * A file-specific variable (e.g. CHURN_SEED) that is read before STRATA_TEST_SEED and named in
   * the printed replay hint.
   */
  envVar?: string;
  /** Random seeds are drawn from [0, bound); default 2 ** 32. */
  bound?: number;
}

const printed = new Set<string>();

/**
 * The seed of one test file: `envVar` (when given) or STRATA_TEST_SEED from the environment, as
 * an unsigned 32-bit integer, otherwise a random one. Prints it once per `name`, with how to
 * replay it.
 */
export function testSeed(name: string, options: TestSeedOptions = {}): number {
  const variables = options.envVar === undefined ? ['STRATA_TEST_SEED'] : [options.envVar, 'STRATA_TEST_SEED'];
  const fromEnv = variables.map((variable) => process.env[variable]).find((value) => value !== undefined);
  const seed = fromEnv !== undefined ? Number(fromEnv) >>> 0 : (Math.random() * (options.bound ?? 2 ** 32)) >>> 0;
  if (!printed.has(name)) {
    printed.add(name);
    console.log(`${name} seed ${seed} (set ${variables[0]}=${seed} to replay)`);
  }
  return seed;
}

/** Prefixes an assertion message with the seed: `[seed 123] what`. */
export function seedMessage(seed: number): (what: string) => string {
  return (what) => `[seed ${seed}] ${what}`;
}
