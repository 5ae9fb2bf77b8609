/**
 * Checks that the deployment files under deploy/ agree with the broker and with each other, by
 * parsing every YAML and JSON file, the Dockerfile and the systemd unit and comparing ports,
 * probes, volumes, option names and paths with the repository (static: no Docker, no cluster).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { EXIT_USAGE } from '../../src/cli/cli-errors.js';
import { SHUTDOWN_GUARD_MS } from '../../src/common/broker-limits.js';
import { SERVE_OPTIONS, serveSettings } from '../../src/config/broker-options.js';
import { BROKER_NODE_FLAGS } from '../../src/config/node-flags.js';
import { BrokerMetrics } from '../../src/server/metrics.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const GRPC_PORT = 50051;
const METRICS_PORT = 9464;

type OptionSpec = { type: string; choices?: readonly string[] };
const OPTION_SPECS: Record<string, OptionSpec> = { ...SERVE_OPTIONS, 'metrics-listen': { type: 'string' } };
/**
 * Names `strata serve` accepts. An unknown flag or --config key is a usage error (yargs runs in
 * strict mode); an unknown STRATA_* variable is reported on stderr and ignored (src/cli/main.ts),
 * so one the deployment files set by mistake would silently not apply.
 */
const KNOWN_OPTIONS = new Set([...Object.keys(OPTION_SPECS), 'config']);

/**
 * What the broker needs besides its configurable memory bounds. It measures 171-217 MiB of peak
 * RSS under produce load and a catch-up read (the README's performance table; 249 MiB once,
 * with produce requests queued on a slow disk, which produce-memory-bytes bounds apart), and
 * that includes the default 16 MiB tail cache: the ring is allocated at start and its pages
 * count once written. Rounded up for room; deploy/README.md ("Memory") states the same budget.
 */
const MEMORY_BASELINE_BYTES = 256 * 2 ** 20;
/** The options that bound the rest of the broker's memory, each adding its bytes to the budget. */
const MEMORY_BOUND_OPTIONS = ['produce-memory-bytes', 'index-cache-bytes', 'tail-cache-bytes'] as const;

// ---------------------------------------------------------------------------------------------
// helpers

function read(path: string): string {
  return readFileSync(path, 'utf8');
}

function walk(directory: string): string[] {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** Every YAML document of a file, as plain data; fails on any parse error or warning. */
function loadYaml(path: string): unknown[] {
  return parseAllDocuments(read(path)).map((document) => {
    expect(document.errors.map(String), path).toEqual([]);
    expect(document.warnings.map(String), path).toEqual([]);
    return document.toJS() as unknown;
  });
}

/** STRATA_RETENTION_MS -> retention-ms; null for variables without the prefix. */
function optionOfEnv(name: string): string | null {
  return name.startsWith('STRATA_') ? name.slice('STRATA_'.length).toLowerCase().replaceAll('_', '-') : null;
}

/** The options `STRATA_*` variables set, typed as `strata serve` reads them (other variables left out). */
function settingsOfEnv(env: Iterable<[string, string | undefined]>): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const [name, value] of env) {
    const option = optionOfEnv(name);
    if (option !== null && value !== undefined) settings[option] = OPTION_SPECS[option]?.type === 'number' ? Number(value) : value;
  }
  return settings;
}

function expectKnownEnv(names: Iterable<string>, where: string): void {
  for (const name of names) {
    const option = optionOfEnv(name);
    if (option !== null) expect(KNOWN_OPTIONS.has(option), `${where}: ${name} is not a strata serve option`).toBe(true);
  }
}

/** Whether a host:port listens on every interface (0.0.0.0 or [::]). */
function allInterfaces(address: string): boolean {
  return address.startsWith('0.0.0.0:') || address.startsWith('[::]:');
}

/** A Kubernetes memory quantity ("512Mi", "1Gi", "1G", "1048576") in bytes. */
function bytesOf(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  expect(match, `cannot parse quantity "${quantity}"`).not.toBeNull();
  const units: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(match![1]) * (match![2] === undefined ? 1 : units[match![2]]!);
}

/** Every `strata serve` option at its default, as yargs would hand them over. */
function optionDefaults(): Record<string, unknown> {
  return Object.fromEntries(Object.entries(SERVE_OPTIONS).map(([name, option]) => [name, option.default]));
}

function portOf(address: string): number {
  const match = /:(\d+)$/.exec(address);
  expect(match, `"${address}" is not host:port`).not.toBeNull();
  return Number(match![1]);
}

/** A systemd or Compose duration ("30s", "1min 30s", "30", "1m30s") in milliseconds. */
function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  let total = 0;
  let rest = trimmed.replaceAll(' ', '');
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|sec|min|s|m|h)/.exec(rest);
    expect(match, `cannot parse duration "${text}"`).not.toBeNull();
    total += Number(match![1]) * units[match![2]!]!;
    rest = rest.slice(match![0].length);
  }
  return total;
}

/** The JSON config of a ConfigMap must only use option names and value types `strata serve` knows. */
function expectValidConfig(config: Record<string, unknown>, where: string): void {
  for (const [key, value] of Object.entries(config)) {
    const spec = OPTION_SPECS[key];
    expect(spec, `${where}: "${key}" is not a strata serve option`).toBeDefined();
    expect(typeof value, `${where}: "${key}" should be a ${spec!.type}`).toBe(spec!.type);
    if (spec!.choices) expect(spec!.choices, `${where}: "${key}"`).toContain(value);
  }
}

/**
 * The options a `strata serve` command line sets (the words after `serve`), each checked as the
 * CLI checks it, since a mistake there is a usage error at start (exit 2): a known name (yargs
 * runs in strict mode), a value for each (the options are `requiresArg`), a number for a number
 * option, one of the choices, no option twice (src/cli/cli-errors.ts refuses repeats), and no
 * positional word. `--no-<name>` is for boolean options only: yargs would make any other false.
 */
function serveFlags(argv: readonly string[], where: string): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  for (let index = 0; index < argv.length; index += 1) {
    const word = argv[index]!;
    const match = /^--([a-z0-9-]+)(?:=([\s\S]*))?$/.exec(word);
    expect(match, `${where}: "${word}" is not a --flag (serve takes no arguments)`).not.toBeNull();
    let name = match![1]!;
    let text = match![2];
    const negated = name.startsWith('no-') && !KNOWN_OPTIONS.has(name);
    if (negated) name = name.slice('no-'.length);
    expect(KNOWN_OPTIONS.has(name), `${where}: --${name} is not a strata serve option`).toBe(true);
    expect(flags[name], `${where}: --${name} is given twice`).toBeUndefined();
    const spec: OptionSpec = OPTION_SPECS[name] ?? { type: 'string' }; // `config`: a path
    if (negated) {
      expect(spec.type, `${where}: --no-${name} negates a boolean only; --${name} is a ${spec.type}`).toBe('boolean');
      flags[name] = false;
      continue;
    }
    if (text === undefined) {
      text = argv[index + 1];
      expect(text !== undefined && !text.startsWith('--'), `${where}: --${name} needs a value`).toBe(true);
      index += 1;
    }
    if (spec.type === 'number') {
      expect(text!.trim() !== '' && Number.isFinite(Number(text)), `${where}: --${name} ${text} is not a number`).toBe(true);
      flags[name] = Number(text);
    } else {
      flags[name] = text;
    }
  }
  expectValidConfig(Object.fromEntries(Object.entries(flags).filter(([name]) => name !== 'config')), where);
  return flags;
}

/**
 * The options `strata serve` runs with: the defaults, then each layer over the one before, given
 * lowest first (the config file, the environment, the flags).
 */
function effectiveSettings(...layers: Record<string, unknown>[]): Record<string, unknown> {
  return Object.assign(optionDefaults(), ...layers);
}

/** How long a broker with these settings may take to stop before it forces its exit. */
function shutdownBoundMs(settings: Record<string, unknown>): number {
  return (settings['shutdown-timeout-ms'] as number) + SHUTDOWN_GUARD_MS;
}

/** The memory a broker with these settings may use: the baseline plus each configurable bound. */
function memoryBudgetBytes(settings: Record<string, unknown>): number {
  return MEMORY_BOUND_OPTIONS.reduce((total, option) => total + (settings[option] as number), MEMORY_BASELINE_BYTES);
}

// ---------------------------------------------------------------------------------------------
// every file

describe('deploy/', () => {
  const files = walk(DEPLOY);

  it('has every deployment file', () => {
    for (const path of [
      'Dockerfile',
      'Dockerfile.dockerignore',
      'docker-compose.yml',
      'prometheus.yml',
      'alerts.yml',
      'alerts.test.yml',
      'k8s/configmap.yaml',
      'k8s/statefulset.yaml',
      'k8s/service.yaml',
      'k8s/kustomization.yaml',
      'systemd/strata.service',
      'README.md',
    ]) {
      expect(existsSync(join(DEPLOY, path)), path).toBe(true);
    }
  });

  it('parses every YAML and JSON file', () => {
    const parsed = files.filter((path) => /\.(ya?ml|json)$/.test(path));
    expect(parsed.length).toBeGreaterThanOrEqual(6);
    for (const path of parsed) {
      if (path.endsWith('.json')) expect(() => JSON.parse(read(path)), path).not.toThrow();
      else expect(loadYaml(path).length, path).toBeGreaterThan(0);
    }
  });

  it('budgets memory for every option that bounds some', () => {
    // A new `*-memory-bytes` or `*-cache-bytes` option belongs in the budget (and the README's).
    const bounds = Object.keys(SERVE_OPTIONS).filter((name) => /-(memory|cache)-bytes$/.test(name));
    expect(new Set(bounds)).toEqual(new Set(MEMORY_BOUND_OPTIONS));
    // The README's **Memory.** part, up to the next bold part or heading: its budget table.
    const readme = read(join(DEPLOY, 'README.md'));
    const start = readme.indexOf('**Memory.**');
    expect(start, 'deploy/README.md has a **Memory.** part').toBeGreaterThanOrEqual(0);
    const memory = readme.slice(start).split(/\n\n(?=\*\*|#)/)[0]!;
    for (const option of MEMORY_BOUND_OPTIONS) expect(memory, `deploy/README.md's memory budget leaves out ${option}`).toContain(`\`${option}\``);
    expect(memory, 'the baseline the test budgets').toContain(`${MEMORY_BASELINE_BYTES / 2 ** 20} MiB`);
  });

  it('README names every file', () => {
    const readme = read(join(DEPLOY, 'README.md'));
    for (const path of files) {
      const name = relative(DEPLOY, path).split('/').join(posix.sep);
      if (name === 'README.md') continue;
      expect(readme.includes(name) || readme.includes(basename(name)), `deploy/README.md does not mention ${name}`).toBe(true);
    }
    expect(readme).toContain(String(GRPC_PORT));
    expect(readme).toContain(String(METRICS_PORT));
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  keyword: string;
  args: string;
  stage: number;
}

/** Instructions with continuation lines joined and comments dropped; stage = index of its FROM. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (pending === '' && /^\s*#/.test(line)) continue;
    if (pending !== '' && /^\s*#/.test(line)) continue; // comments inside a continuation
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full === '') continue;
    const match = /^(\w+)\s+([\s\S]*)$/.exec(full);
    expect(match, `cannot parse Dockerfile line: ${full}`).not.toBeNull();
    const keyword = match![1]!.toUpperCase();
    if (keyword === 'FROM') stage += 1;
    instructions.push({ keyword, args: match![2]!.trim(), stage });
  }
  return instructions;
}

/** Arguments of an exec-form (JSON array) or shell-form instruction. */
function words(args: string): string[] {
  return args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/).filter(Boolean);
}

/** ENV a=b c="d e" (and the legacy ENV a b) as a map. */
function envPairs(args: string): Map<string, string> {
  const pairs = new Map<string, string>();
  if (!args.includes('=')) {
    const [name, ...value] = args.split(/\s+/);
    pairs.set(name!, value.join(' '));
    return pairs;
  }
  for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|'([^']*)'|(\S*))/g)) {
    pairs.set(match[1]!, match[3] ?? match[4] ?? match[5] ?? '');
  }
  return pairs;
}

/** .dockerignore patterns to a predicate (no `!` exceptions are used in ours). */
function dockerIgnore(text: string): (path: string) => boolean {
  const patterns = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((pattern) => {
      expect(pattern.startsWith('!'), 'exceptions are not supported by this check').toBe(false);
      const source = pattern
        .replace(/^\/+|\/+$/g, '')
        .replace(/[.+^${}()|[\]]/g, '\\$&')
        .replaceAll('**/', '\u0000')
        .replaceAll('*', '[^/]*')
        .replaceAll('?', '[^/]')
        .replaceAll('\u0000', '(?:.*/)?');
      return new RegExp(`^${source}$`);
    });
  return (path) => {
    const parts = path.split('/');
    // A path is excluded when it, or a directory above it, matches.
    return parts.some((_, index) => patterns.some((pattern) => pattern.test(parts.slice(0, index + 1).join('/'))));
  };
}

/**
 * What the image gives `strata serve`: the runtime stage's ENV, and the words of its CMD (which
 * a Compose `command` or Kubernetes `args` replaces).
 */
function imageRuntime(): { env: Map<string, string>; cmd: string[] } {
  const instructions = parseDockerfile(read(join(DEPLOY, 'Dockerfile')));
  const finalStage = instructions.at(-1)!.stage;
  const ofFinal = (keyword: string): Instruction[] => instructions.filter((instruction) => instruction.keyword === keyword && instruction.stage === finalStage);
  return {
    env: new Map(ofFinal('ENV').flatMap((instruction) => [...envPairs(instruction.args)])),
    cmd: words(ofFinal('CMD').at(-1)?.args ?? '[]'),
  };
}

/** The files git tracks at or under each path, relative to the repository root. */
function trackedFiles(...paths: string[]): string[] {
  return execFileSync('git', ['ls-files', '-z', '--', ...paths], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter((path) => path !== '');
}

/** Why the checks that list tracked files cannot run; null when they can. */
const NO_GIT_REASON = existsSync(join(ROOT, '.git')) ? null : 'no .git directory (a source archive?): git ls-files cannot list the tracked files';

describe('deploy/Dockerfile', () => {
  const instructions = parseDockerfile(read(join(DEPLOY, 'Dockerfile')));
  const froms = instructions.filter((instruction) => instruction.keyword === 'FROM');
  const stageNames = froms.map((from) => /\s+AS\s+(\S+)$/i.exec(from.args)?.[1] ?? null);
  const finalStage = froms.length - 1;
  const final = (keyword: string): Instruction[] => instructions.filter((instruction) => instruction.keyword === keyword && instruction.stage === finalStage);
  const last = (keyword: string): Instruction => {
    const found = final(keyword);
    expect(found.length, `no ${keyword} in the runtime stage`).toBeGreaterThan(0);
    return found[found.length - 1]!;
  };
  const ignored = dockerIgnore(read(join(DEPLOY, 'Dockerfile.dockerignore')));
  const packageJson = JSON.parse(read(join(ROOT, 'package.json'))) as { scripts: Record<string, string> };

  it('has a build stage and a runtime stage on node:20-bookworm-slim', () => {
    expect(froms.length).toBe(2);
    for (const from of froms) expect(from.args.split(/\s+/)[0]).toBe('node:20-bookworm-slim');
    expect(stageNames[0]).toBeTruthy();
  });

  it('copies only paths that exist: repository paths in the context, or earlier build-stage paths', () => {
    const copies = instructions.filter((instruction) => instruction.keyword === 'COPY' || instruction.keyword === 'ADD');
    expect(copies.length).toBeGreaterThan(0);
    for (const copy of copies) {
      const parts = words(copy.args);
      const flags = parts.filter((part) => part.startsWith('--'));
      const paths = parts.filter((part) => !part.startsWith('--'));
      expect(paths.length, copy.args).toBeGreaterThanOrEqual(2);
      const sources = paths.slice(0, -1);
      const from = flags.find((flag) => flag.startsWith('--from='))?.slice('--from='.length);
      if (from !== undefined) {
        const stage = stageNames.indexOf(from);
        expect(stage, `COPY --from=${from}: no such stage`).toBeGreaterThanOrEqual(0);
        expect(stage, `COPY --from=${from} must name an earlier stage`).toBeLessThan(copy.stage);
        for (const source of sources) expect(source.startsWith('/'), `${source}: use absolute build-stage paths`).toBe(true);
      } else {
        for (const source of sources) {
          const path = source.replace(/^\.\//, '').replace(/\/$/, '');
          expect(existsSync(join(ROOT, path)), `COPY ${source}: not in the repository`).toBe(true);
          expect(ignored(path), `COPY ${source}: excluded by deploy/Dockerfile.dockerignore`).toBe(false);
        }
      }
    }
  });

  /** COPY sources taken from the build context (not --from a stage), as repository paths. */
  const contextSources = (copy: Instruction): string[] => {
    const parts = words(copy.args);
    if (parts.some((part) => part.startsWith('--from='))) return [];
    return parts
      .filter((part) => !part.startsWith('--'))
      .slice(0, -1)
      .map((source) => source.replace(/^\.\//, '').replace(/\/$/, '') || '.');
  };

  it('copies no file that deploy/Dockerfile.dockerignore keeps out of the context', (context) => {
    context.skip(NO_GIT_REASON !== null, NO_GIT_REASON ?? '');
    // The check above looks at each COPY source and its parents; a pattern can also exclude
    // files beneath it (`**/node_modules`, `*.tsbuildinfo`), which the image then lacks.
    const copies = instructions.filter((instruction) => instruction.keyword === 'COPY' || instruction.keyword === 'ADD');
    for (const source of copies.flatMap(contextSources)) {
      const files = trackedFiles(source);
      expect(files.length, `COPY ${source}: git tracks no file there`).toBeGreaterThan(0);
      expect(files.filter(ignored), `COPY ${source}: files excluded by deploy/Dockerfile.dockerignore`).toEqual([]);
    }
  });

  it('has every file `npm run build` reads in the context and copied in before it runs', (context) => {
    context.skip(NO_GIT_REASON !== null, NO_GIT_REASON ?? '');
    // The build's inputs, as package.json's "proto" script and tsconfig.json's include name
    // them (include's test/ and bench/ stay out of the image: tsc compiles what it finds).
    expect(packageJson.scripts.proto).toContain('proto/strata/v1/*.proto');
    const include = (JSON.parse(read(join(ROOT, 'tsconfig.json'))) as { include: string[] }).include;
    expect(include).toEqual(expect.arrayContaining(['src/**/*.ts', 'src/**/*.cts']));
    const inputs = trackedFiles('tsconfig.json', 'proto', 'src').filter((path) => /^(?:tsconfig\.json|proto\/strata\/v1\/[^/]+\.proto|src\/.+\.c?ts)$/.test(path));
    expect(inputs).toContain('tsconfig.json');
    expect(inputs.some((path) => path.endsWith('.proto'))).toBe(true);
    expect(inputs.filter(ignored), 'build inputs excluded by deploy/Dockerfile.dockerignore').toEqual([]);
    const build = instructions.findIndex((instruction) => instruction.keyword === 'RUN' && instruction.stage === 0 && /npm run build\b/.test(instruction.args));
    expect(build, 'no `npm run build` in the build stage').toBeGreaterThanOrEqual(0);
    const copied = instructions.slice(0, build).filter((instruction) => instruction.keyword === 'COPY' && instruction.stage === 0).flatMap(contextSources);
    const isCopied = (path: string): boolean => copied.some((source) => source === '.' || path === source || path.startsWith(`${source}/`));
    expect(inputs.filter((path) => !isCopied(path)), 'build inputs not copied into the build stage before `npm run build`').toEqual([]);
  });

  it('builds with scripts that package.json has', () => {
    const runs = instructions.filter((instruction) => instruction.keyword === 'RUN' && instruction.stage === 0).map((run) => run.args);
    const scripts = runs.flatMap((run) => [...run.matchAll(/npm run (\S+)/g)].map((match) => match[1]!));
    expect(scripts).toContain('build');
    for (const script of scripts) expect(packageJson.scripts[script], `npm run ${script}`).toBeDefined();
    // Without --ignore-scripts, npm ci runs the package's "prepare" (the build) before the
    // sources are copied in, and the image build fails.
    expect(runs.some((run) => /npm ci\b[^&]*--ignore-scripts/.test(run)), 'npm ci --ignore-scripts').toBe(true);
    expect(runs.some((run) => /npm prune --omit=dev|npm ci --omit=dev/.test(run))).toBe(true);
  });

  it('runtime stage holds dist/, bin/, proto/, package.json and node_modules from the build stage', () => {
    const copied = final('COPY')
      .map((copy) => words(copy.args))
      .filter((parts) => parts.some((part) => part === `--from=${stageNames[0]}`))
      .flatMap((parts) => parts.filter((part) => !part.startsWith('--')).slice(0, -1).map((source) => posix.basename(source)));
    expect(new Set(copied)).toEqual(new Set(['dist', 'bin', 'proto', 'package.json', 'node_modules']));
    expect(final('COPY').every((copy) => copy.args.includes('--from='))).toBe(true);
  });

  it('copies them from where the build stage made them to where the entrypoint runs', () => {
    const workdir = (stage: number): string => {
      const found = instructions.filter((instruction) => instruction.keyword === 'WORKDIR' && instruction.stage === stage);
      expect(found.length, `no WORKDIR in stage ${stage}`).toBeGreaterThan(0);
      return found.at(-1)!.args;
    };
    const built = workdir(0);
    const runtime = workdir(finalStage);
    for (const copy of final('COPY')) {
      const paths = words(copy.args).filter((part) => !part.startsWith('--'));
      const target = posix.resolve(runtime, paths.at(-1)!);
      for (const source of paths.slice(0, -1)) {
        // proto/ must sit next to package.json: the broker finds its package root by both.
        expect(posix.dirname(source), `COPY ${source}: not under the build stage's WORKDIR`).toBe(built);
        expect(target, `COPY ${source}`).toBe(posix.join(runtime, posix.basename(source)));
      }
    }
    const script = (JSON.parse(last('ENTRYPOINT').args) as string[]).at(-1)!;
    expect(posix.resolve(runtime, script)).toBe(posix.join(runtime, 'bin', 'strata.js'));
  });

  it('gives /data to the image user before declaring the volume (a new named volume takes its owner)', () => {
    const [uid, gid] = last('USER').args.split(':');
    const users = final('RUN').map((run) => run.args).join(' ');
    const chown = /chown\s+(?:-R\s+)?(\S+?):(\S+)\s+\/data\b/.exec(users);
    expect(chown, 'no chown of /data in the runtime stage').not.toBeNull();
    const idOf = (name: string, kind: 'uid' | 'gid'): string =>
      /^\d+$/.test(name) ? name : (new RegExp(`${kind === 'uid' ? 'useradd' : 'groupadd'}[^&]*--${kind}\\s+(\\d+)[^&]*\\s${name}\\b`).exec(users)?.[1] ?? name);
    expect(idOf(chown![1]!, 'uid')).toBe(uid);
    if (gid !== undefined) expect(idOf(chown![2]!, 'gid')).toBe(gid);
    const runIndex = instructions.findIndex((instruction) => instruction.keyword === 'RUN' && instruction.stage === finalStage && /chown[^&]*\/data\b/.test(instruction.args));
    const volumeIndex = instructions.findIndex((instruction) => instruction.keyword === 'VOLUME' && instruction.stage === finalStage);
    expect(runIndex).toBeLessThan(volumeIndex);
  });

  it('runs as a non-root user', () => {
    const user = last('USER').args.split(':')[0]!;
    expect(['root', '0']).not.toContain(user);
  });

  it('declares VOLUME /data, EXPOSE 50051 9464 and STOPSIGNAL SIGTERM', () => {
    expect(final('VOLUME').flatMap((volume) => words(volume.args))).toContain('/data');
    expect(final('EXPOSE').flatMap((expose) => words(expose.args)).map((port) => Number(port.split('/')[0]))).toEqual(
      expect.arrayContaining([GRPC_PORT, METRICS_PORT]),
    );
    expect(last('STOPSIGNAL').args).toBe('SIGTERM');
  });

  it('sets STRATA_* variables that are options, matching the volume and ports', () => {
    const env = new Map(final('ENV').flatMap((instruction) => [...envPairs(instruction.args)]));
    expectKnownEnv(env.keys(), 'Dockerfile ENV');
    expect(env.get('STRATA_DATA_DIR')).toBe('/data');
    expect(portOf(env.get('STRATA_LISTEN')!)).toBe(GRPC_PORT);
    expect(portOf(env.get('STRATA_METRICS_LISTEN')!)).toBe(METRICS_PORT);
    expect(env.get('STRATA_LISTEN')!.startsWith('0.0.0.0:')).toBe(true);
    expect(env.get('STRATA_METRICS_LISTEN')!.startsWith('0.0.0.0:')).toBe(true);
    // A flag in CMD would win over the ENV above.
    const { cmd } = imageRuntime();
    const settings = effectiveSettings(settingsOfEnv(env), serveFlags(cmd.slice(1), 'Dockerfile CMD'));
    expect([settings['data-dir'], settings.listen, settings['metrics-listen']]).toEqual(['/data', env.get('STRATA_LISTEN'), env.get('STRATA_METRICS_LISTEN')]);
  });

  it('has a HEALTHCHECK on /healthz of the metrics port, with node (no curl in the slim image)', () => {
    const healthcheck = last('HEALTHCHECK').args;
    expect(healthcheck).toMatch(/\bCMD\b/);
    expect(healthcheck).toContain(`127.0.0.1:${METRICS_PORT}/healthz`);
    expect(healthcheck).toMatch(/\bnode\b/);
    expect(healthcheck).not.toMatch(/\b(curl|wget)\b/);
  });

  it('starts `node <the broker flags> bin/strata.js serve`', () => {
    expect(JSON.parse(last('ENTRYPOINT').args)).toEqual(['node', ...BROKER_NODE_FLAGS, 'bin/strata.js']);
    const cmd = JSON.parse(last('CMD').args) as string[];
    expect(cmd[0]).toBe('serve');
    serveFlags(cmd.slice(1), 'Dockerfile CMD');
    expect(existsSync(join(ROOT, 'bin', 'strata.js'))).toBe(true);
  });

  it('ignore file keeps build output, dependencies, data and git out of the context', () => {
    for (const path of ['node_modules', 'node_modules/yaml/package.json', 'dist', 'data', 'test-results', '.git', 'src/generated']) {
      expect(ignored(path), path).toBe(true);
    }
    for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'src/index.ts', 'proto', 'bin/strata.js']) {
      expect(ignored(path), path).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Docker Compose + Prometheus

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string } | string;
  ports?: (string | { target: number; published?: string | number })[];
  volumes?: (string | { type?: string; source?: string; target: string })[];
  environment?: Record<string, string> | string[];
  command?: string | string[];
  stop_grace_period?: string;
  stop_signal?: string;
}

function containerPorts(service: ComposeService): number[] {
  return (service.ports ?? []).map((port) => {
    if (typeof port !== 'string') return Number(port.target);
    const parts = port.split('/')[0]!.split(':');
    return Number(parts[parts.length - 1]);
  });
}

function mounts(service: ComposeService): { source: string; target: string }[] {
  return (service.volumes ?? []).map((volume) => {
    if (typeof volume !== 'string') return { source: volume.source ?? '', target: volume.target };
    const [source, target] = volume.split(':');
    return { source: source!, target: target ?? source! };
  });
}

function environment(service: ComposeService): Map<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return new Map(env.map((entry) => [entry.split('=')[0]!, entry.split('=').slice(1).join('=')]));
  return new Map(Object.entries(env).map(([name, value]) => [name, String(value)]));
}

describe('deploy/docker-compose.yml', () => {
  const compose = loadYaml(join(DEPLOY, 'docker-compose.yml'))[0] as {
    services: Record<string, ComposeService>;
    volumes?: Record<string, unknown>;
  };
  const strata = compose.services.strata!;
  const prometheus = Object.values(compose.services).find((service) => service.image?.startsWith('prom/prometheus'));

  /**
   * The options the broker's container runs with: the image's ENV under the service's
   * environment, under the flags of its `command` (or of the image's CMD), with the config file
   * a --config flag names, read from the directory it is bind-mounted from.
   */
  function composeSettings(): Record<string, unknown> {
    const image = imageRuntime();
    const command = strata.command === undefined ? image.cmd : typeof strata.command === 'string' ? words(strata.command) : strata.command;
    expect(command[0], 'the broker service runs `strata serve`').toBe('serve');
    const flags = serveFlags(command.slice(1), 'compose command');
    let file: Record<string, unknown> = {};
    if (typeof flags.config === 'string') {
      const path = flags.config;
      const mount = mounts(strata).find((entry) => path === entry.target || path.startsWith(`${entry.target}/`));
      expect(mount?.source.startsWith('.'), `--config ${path} is not bind-mounted from the repository`).toBe(true);
      file = JSON.parse(read(resolve(DEPLOY, mount!.source, posix.relative(mount!.target, path)))) as Record<string, unknown>;
      expectValidConfig(file, `compose --config ${path}`);
    }
    return effectiveSettings(file, settingsOfEnv(image.env), settingsOfEnv(environment(strata)), flags);
  }

  it('builds the broker from deploy/Dockerfile with the repository root as context', () => {
    expect(strata).toBeDefined();
    expect(strata.image).toBeTruthy();
    const build = typeof strata.build === 'string' ? { context: strata.build, dockerfile: 'Dockerfile' } : strata.build!;
    const context = resolve(DEPLOY, build.context);
    expect(context).toBe(ROOT);
    expect(resolve(context, build.dockerfile ?? 'Dockerfile')).toBe(join(DEPLOY, 'Dockerfile'));
  });

  it('publishes 50051 and 9464', () => {
    expect(containerPorts(strata)).toEqual(expect.arrayContaining([GRPC_PORT, METRICS_PORT]));
  });

  it('keeps /data in a named volume', () => {
    const data = mounts(strata).find((mount) => mount.target === '/data');
    expect(data, 'no volume at /data').toBeDefined();
    expect(Object.keys(compose.volumes ?? {})).toContain(data!.source);
  });

  it('sets only known STRATA_* variables, consistent with the ports and the volume', () => {
    const env = environment(strata);
    expectKnownEnv(env.keys(), 'compose environment');
    // With the image's ENV and the command's flags: what the broker really uses.
    const settings = composeSettings();
    expect(settings['data-dir']).toBe('/data');
    expect(portOf(settings.listen as string)).toBe(GRPC_PORT);
    expect(portOf(settings['metrics-listen'] as string)).toBe(METRICS_PORT);
    // Published ports reach the container's interface, not its loopback.
    for (const name of ['listen', 'metrics-listen']) expect(allInterfaces(settings[name] as string), name).toBe(true);
  });

  it('gives the graceful shutdown more than its bound before SIGKILL', () => {
    expect(strata.stop_grace_period).toBeDefined();
    expect(durationMs(strata.stop_grace_period!), 'stop_grace_period vs shutdown-timeout-ms + guard').toBeGreaterThan(shutdownBoundMs(composeSettings()));
    if (strata.stop_signal !== undefined) expect(strata.stop_signal).toBe('SIGTERM');
  });

  it('has a prometheus service whose config scrapes strata:9464/metrics', () => {
    expect(prometheus, 'no prom/prometheus service').toBeDefined();
    const config = mounts(prometheus!).find((mount) => mount.target === '/etc/prometheus/prometheus.yml');
    expect(config, 'prometheus.yml is not mounted').toBeDefined();
    const path = resolve(DEPLOY, config!.source);
    expect(path).toBe(join(DEPLOY, 'prometheus.yml'));
    const scrape = loadYaml(path)[0] as {
      scrape_configs: { job_name: string; metrics_path?: string; static_configs?: { targets: string[] }[] }[];
    };
    const jobs = scrape.scrape_configs.filter((job) => (job.static_configs ?? []).some((entry) => entry.targets.includes(`strata:${METRICS_PORT}`)));
    expect(jobs.length, `no scrape job targets strata:${METRICS_PORT}`).toBe(1);
    expect(jobs[0]!.metrics_path ?? '/metrics').toBe('/metrics');
  });

  it("loads deploy/alerts.yml, mounted where prometheus.yml's rule_files says", () => {
    const ruleFiles = (loadYaml(join(DEPLOY, 'prometheus.yml'))[0] as { rule_files?: string[] }).rule_files ?? [];
    const mount = mounts(prometheus!).find((entry) => resolve(DEPLOY, entry.source) === join(DEPLOY, 'alerts.yml'));
    expect(mount, 'alerts.yml is not mounted').toBeDefined();
    expect(ruleFiles).toContain(mount!.target);
  });
});

describe('deploy/alerts.yml', () => {
  interface Rule {
    alert?: string;
    expr?: string;
    for?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  }
  const rules = (loadYaml(join(DEPLOY, 'alerts.yml'))[0] as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap((group) => group.rules);

  it('has alerting rules, each with an expression, a severity and a summary', () => {
    expect(rules.map((rule) => rule.alert)).toEqual(expect.arrayContaining(['StrataDown', 'StrataNotReady', 'StrataPartitionFenced']));
    for (const rule of rules) {
      expect(rule.alert, JSON.stringify(rule)).toMatch(/^Strata[A-Za-z]+$/);
      expect(rule.expr, rule.alert).toBeTruthy();
      expect(['critical', 'warning'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      if (rule.for !== undefined) expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
    }
  });

  it('filters with `and` only on a comparison: a bare metric there matches whatever its value', () => {
    for (const rule of rules) {
      const bare = /\band\b(?:\s+on\s*\([^)]*\))?\s+[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?\s*(?:$|\)|\band\b|\bor\b|\bunless\b)/.exec(rule.expr!.trim());
      expect(bare?.[0], `${rule.alert}: ${rule.expr}`).toBeUndefined();
    }
  });

  /**
   * The labels the series of an expression can have: those of every metric it names (from the
   * broker's registry; `le` too for a histogram's _bucket series), plus `instance` and `job`,
   * which the scrape adds. Fails on a metric the broker does not export.
   */
  const registry = new BrokerMetrics().registry;
  function labelsOf(rule: Rule): Set<string> {
    const labels = new Set(['instance', 'job']);
    for (const [, name] of rule.expr!.matchAll(/\b((?:strata|nodejs|process)_[a-z0-9_]+)/g)) {
      const metric = registry.getSingleMetric(name!) ?? registry.getSingleMetric(name!.replace(/_(bucket|sum|count)$/, ''));
      expect(metric, `${rule.alert}: ${name} is not a metric the broker exports`).toBeDefined();
      for (const label of (metric as unknown as { labelNames: string[] }).labelNames) labels.add(label);
      if (name!.endsWith('_bucket')) labels.add('le');
    }
    return labels;
  }

  it('names only metrics the broker exports, and reports only labels they (or the scrape) have', () => {
    for (const rule of rules) {
      const labels = labelsOf(rule);
      const text = Object.values(rule.annotations ?? {}).join(' ');
      for (const [, label] of text.matchAll(/\$labels\.([a-z_]+)/g)) {
        expect(labels, `${rule.alert} reports $labels.${label}, which its metrics do not have`).toContain(label);
      }
    }
  });

  it('groups and matches only on labels its metrics (or the scrape) have', () => {
    // A misspelt label in `sum by (...)` yields one series without it, in `on (...)` a match on
    // nothing: the rule still evaluates, and fires wrongly or never.
    for (const rule of rules) {
      const labels = labelsOf(rule);
      for (const [clause, list] of rule.expr!.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)) {
        for (const label of list!.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')) {
          expect(labels, `${rule.alert}: "${clause}" names ${label}, which its metrics do not have`).toContain(label);
        }
      }
    }
  });

  it('matches job="..." only on the job deploy/prometheus.yml scrapes', () => {
    const jobs = (loadYaml(join(DEPLOY, 'prometheus.yml'))[0] as { scrape_configs: { job_name: string }[] }).scrape_configs.map((job) => job.job_name);
    let matchers = 0;
    for (const rule of rules) {
      for (const [, job] of rule.expr!.matchAll(/\bjob\s*=(?!~)\s*"([^"]*)"/g)) {
        matchers += 1;
        expect(jobs, `${rule.alert}: job="${job}" is no job_name in deploy/prometheus.yml`).toContain(job);
      }
    }
    expect(matchers, 'StrataDown matches on the job').toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Kubernetes

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [field: string]: unknown;
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface Container {
  name: string;
  args?: string[];
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: { configMapKeyRef?: { name: string; key: string } } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; allowPrivilegeEscalation?: boolean };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  enableServiceLinks?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string; items?: { key: string; path: string }[] } }[];
}
interface StatefulSet extends K8sObject {
  spec: {
    serviceName: string;
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    volumeClaimTemplates: { metadata: { name: string }; spec: { accessModes: string[]; resources: { requests: { storage: string } } } }[];
  };
}
interface Service extends K8sObject {
  spec: { clusterIP?: string; selector: Record<string, string>; ports: { name?: string; port: number; targetPort?: number | string }[] };
}
interface ConfigMap extends K8sObject {
  data: Record<string, string>;
}

describe('deploy/k8s', () => {
  const K8S = join(DEPLOY, 'k8s');
  const kustomization = loadYaml(join(K8S, 'kustomization.yaml'))[0] as { kind: string; resources: string[] };
  const manifests = readdirSync(K8S).filter((name) => /\.ya?ml$/.test(name) && name !== 'kustomization.yaml');
  const objects = manifests.flatMap((name) => loadYaml(join(K8S, name)).filter((document) => document !== null) as K8sObject[]);
  const ofKind = <T extends K8sObject>(kind: string): T[] => objects.filter((object) => object.kind === kind) as T[];
  const statefulSet = ofKind<StatefulSet>('StatefulSet')[0]!;
  const services = ofKind<Service>('Service');
  const configMaps = ofKind<ConfigMap>('ConfigMap');
  const pod = statefulSet.spec.template.spec;
  const container = pod.containers[0]!;
  const containerPort = (port: number | string | undefined): number | undefined =>
    typeof port === 'number' ? port : container.ports?.find((entry) => entry.name === port)?.containerPort;
  /** The flags of the container's `args` (which replace the image's CMD), after `serve`. */
  const argsFlags = (): Record<string, unknown> => serveFlags((container.args ?? []).slice(1), 'StatefulSet args');
  const configPath = (): string | undefined => argsFlags().config as string | undefined;

  /** The JSON config file the container is given with --config, from its ConfigMap. */
  function brokerConfig(): Record<string, unknown> {
    const path = configPath();
    expect(path, 'the container passes --config').toBeDefined();
    const mount = container.volumeMounts!.find((entry) => path!.startsWith(`${entry.mountPath}/`));
    expect(mount, `${path} is not under a volume mount`).toBeDefined();
    const volume = pod.volumes!.find((entry) => entry.name === mount!.name)!;
    expect(volume.configMap, `${mount!.name} is not a ConfigMap volume`).toBeDefined();
    const file = path!.slice(mount!.mountPath.length + 1);
    const key = volume.configMap!.items?.find((item) => item.path === file)?.key ?? file;
    const configMap = configMaps.find((entry) => entry.metadata.name === volume.configMap!.name);
    expect(configMap, `ConfigMap ${volume.configMap!.name}`).toBeDefined();
    expect(configMap!.data[key], `ConfigMap key ${key}`).toBeDefined();
    return JSON.parse(configMap!.data[key]!) as Record<string, unknown>;
  }

  it('kustomization lists exactly the manifests, and they exist', () => {
    expect(kustomization.kind).toBe('Kustomization');
    for (const resource of kustomization.resources) expect(existsSync(join(K8S, resource)), resource).toBe(true);
    expect(new Set(kustomization.resources)).toEqual(new Set(manifests));
    expect(new Set(objects.map((object) => object.kind))).toEqual(new Set(['ConfigMap', 'StatefulSet', 'Service']));
  });

  it('StatefulSet: one replica, selector matching the pod labels', () => {
    expect(ofKind('StatefulSet').length).toBe(1);
    expect(statefulSet.spec.replicas).toBe(1);
    expect(statefulSet.spec.template.metadata.labels).toMatchObject(statefulSet.spec.selector.matchLabels);
  });

  it('StatefulSet: a volumeClaimTemplate mounted at /data, which is the data dir', () => {
    const claims = statefulSet.spec.volumeClaimTemplates.map((claim) => claim.metadata.name);
    const data = container.volumeMounts?.find((mount) => mount.mountPath === '/data');
    expect(data, 'nothing mounted at /data').toBeDefined();
    expect(claims).toContain(data!.name);
    const claim = statefulSet.spec.volumeClaimTemplates.find((entry) => entry.metadata.name === data!.name)!;
    expect(claim.spec.accessModes).toContain('ReadWriteOnce');
    expect(claim.spec.resources.requests.storage).toBeTruthy();
    expect(podSettings()['data-dir']).toBe('/data');
    expect(brokerConfig()['data-dir'], 'data-dir in the file would be overridden by STRATA_DATA_DIR').toBeUndefined();
  });

  it('StatefulSet: liveness /healthz and readiness /readyz on 9464', () => {
    expect(container.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(containerPort(container.livenessProbe?.httpGet?.port)).toBe(METRICS_PORT);
    expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(containerPort(container.readinessProbe?.httpGet?.port)).toBe(METRICS_PORT);
    if (container.startupProbe) {
      expect(containerPort(container.startupProbe.httpGet?.port)).toBe(METRICS_PORT);
      // Not /readyz: a recovery longer than the startup probe's budget would restart the pod forever.
      expect(container.startupProbe.httpGet?.path).toBe('/healthz');
    }
    expect(container.ports?.map((port) => port.containerPort)).toEqual(expect.arrayContaining([GRPC_PORT, METRICS_PORT]));
  });

  it('StatefulSet: args are `serve` and known flags with valid values', () => {
    expect(container.command, 'the image\'s ENTRYPOINT runs node with the broker flags').toBeUndefined();
    expect(container.args?.[0], 'the container runs `strata serve`').toBe('serve');
    argsFlags();
  });

  it('StatefulSet: listens where the ports and probes expect, with known STRATA_* variables only', () => {
    expectKnownEnv((container.env ?? []).map((entry) => entry.name), 'StatefulSet env');
    const settings = podSettings();
    expect(portOf(settings.listen as string)).toBe(GRPC_PORT);
    expect(portOf(settings['metrics-listen'] as string)).toBe(METRICS_PORT);
    // The kubelet probes, and clients connect to, the pod's IP: loopback would not do.
    expect(allInterfaces(settings.listen as string), 'listen').toBe(true);
    expect(allInterfaces(settings['metrics-listen'] as string), 'metrics-listen').toBe(true);
    for (const entry of container.env ?? []) {
      const ref = entry.valueFrom?.configMapKeyRef;
      if (ref) expect(configMaps.find((configMap) => configMap.metadata.name === ref.name)?.data[ref.key], `${entry.name} <- ${ref.name}/${ref.key}`).toBeDefined();
    }
    // Service links would inject STRATA_SERVICE_HOST, STRATA_PORT, ... for the Services named
    // strata*: `strata serve` would report each as unknown and ignore it, and one named like an
    // option would set it.
    expect(pod.enableServiceLinks).toBe(false);
  });

  /**
   * The serve options the container's env sets, typed as `strata serve` reads them: plain values
   * and those taken from a ConfigMap key (which override the config file).
   */
  const envSettings = (): Record<string, unknown> =>
    settingsOfEnv(
      (container.env ?? []).map((entry) => {
        const ref = entry.valueFrom?.configMapKeyRef;
        return [entry.name, ref ? configMaps.find((configMap) => configMap.metadata.name === ref.name)?.data[ref.key] : entry.value];
      }),
    );

  /** The options the broker in the pod runs with: defaults < config file < image ENV < container env < args. */
  const podSettings = (): Record<string, unknown> => effectiveSettings(brokerConfig(), settingsOfEnv(imageRuntime().env), envSettings(), argsFlags());

  it('StatefulSet: resource requests, and a memory limit that holds the broker and its bounds', () => {
    expect(container.resources?.requests?.cpu).toBeTruthy();
    expect(container.resources?.requests?.memory).toBeTruthy();
    expect(container.resources?.limits?.memory).toBeTruthy();
    const request = bytesOf(container.resources!.requests!.memory!);
    const limit = bytesOf(container.resources!.limits!.memory!);
    // Above it the kernel kills the broker (OOMKilled), which then restarts into recovery.
    const budget = memoryBudgetBytes(podSettings());
    expect(limit, `limit ${container.resources!.limits!.memory} is below the memory budget of ${budget / 2 ** 20} MiB`).toBeGreaterThanOrEqual(budget);
    expect(request).toBeLessThanOrEqual(limit);
  });

  it('StatefulSet: terminationGracePeriodSeconds above the shutdown bound', () => {
    const grace = pod.terminationGracePeriodSeconds;
    expect(grace).toBeGreaterThan(10);
    expect(grace! * 1000, 'terminationGracePeriodSeconds vs shutdown-timeout-ms + guard').toBeGreaterThan(shutdownBoundMs(podSettings()));
  });

  it('StatefulSet: runs as non-root, the image user', () => {
    const runAsNonRoot = container.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
    expect(runAsNonRoot).toBe(true);
    const uid = container.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
    const imageUser = parseDockerfile(read(join(DEPLOY, 'Dockerfile')))
      .filter((instruction) => instruction.keyword === 'USER')
      .at(-1)!
      .args.split(':')[0]!;
    if (uid !== undefined) {
      expect(uid).not.toBe(0);
      if (/^\d+$/.test(imageUser)) expect(String(uid)).toBe(imageUser);
    } else {
      // Without runAsUser the kubelet can only verify a numeric image USER.
      expect(imageUser).toMatch(/^\d+$/);
    }
    expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);
  });

  it('Services: expose 50051 and 9464; one is headless and is the StatefulSet serviceName', () => {
    expect(services.length).toBeGreaterThanOrEqual(2);
    for (const service of services) {
      expect(service.spec.ports.map((port) => port.port), service.metadata.name).toEqual(expect.arrayContaining([GRPC_PORT, METRICS_PORT]));
      for (const port of service.spec.ports) expect(containerPort(port.targetPort ?? port.port), `${service.metadata.name}/${port.name}`).toBe(port.port);
      expect(statefulSet.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    }
    const headless = services.filter((service) => service.spec.clusterIP === 'None');
    expect(headless.map((service) => service.metadata.name)).toEqual([statefulSet.spec.serviceName]);
    expect(services.some((service) => service.spec.clusterIP !== 'None')).toBe(true);
  });

  it('ConfigMap: the broker config parses and uses known option names and types', () => {
    const config = brokerConfig();
    expect(Object.keys(config).length).toBeGreaterThan(0);
    expectValidConfig(config, `ConfigMap ${configPath()}`);
    for (const configMap of configMaps) {
      for (const [key, value] of Object.entries(configMap.data)) {
        if (key.endsWith('.json')) expectValidConfig(JSON.parse(value) as Record<string, unknown>, `ConfigMap ${configMap.metadata.name}/${key}`);
      }
    }
  });

  it('ConfigMap: with the env and the defaults, the settings pass the checks `strata serve` makes at start', () => {
    const env = envSettings();
    // Values from ConfigMap keys too (log-level: one of its choices, which yargs checks at start).
    expectValidConfig(env, 'StatefulSet env');
    // Rules between options (produce-memory-bytes >= max-request-bytes, ...) hold only together.
    expect(() => serveSettings(podSettings() as never)).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------
// systemd

/** An INI-style unit: section -> key -> every value assigned (systemd keys can repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | null = null;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#') || line.startsWith(';'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = pending + line;
    pending = '';
    const section = /^\[(.+)\]$/.exec(full);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const assignment = /^([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)$/.exec(full);
    expect(assignment, `cannot parse unit line: ${full}`).not.toBeNull();
    expect(current, `${full} is outside a section`).not.toBeNull();
    const values = current!.get(assignment![1]!) ?? [];
    values.push(assignment![2]!.trim());
    current!.set(assignment![1]!, values);
  }
  return sections;
}

/** Environment= assignments (`A=b "C=d e"`, any number per line) as a map; later ones win. */
function unitEnvironment(assignments: readonly string[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const assignment of assignments) {
    for (const [, quoted, bare] of assignment.matchAll(/"([^"]*)"|(\S+)/g)) {
      const pair = (quoted ?? bare)!;
      const equals = pair.indexOf('=');
      expect(equals, `Environment=${assignment}: "${pair}" is not NAME=value`).toBeGreaterThan(0);
      env.set(pair.slice(0, equals), pair.slice(equals + 1));
    }
  }
  return env;
}

describe('deploy/systemd/strata.service', () => {
  const unit = parseUnit(read(join(DEPLOY, 'systemd', 'strata.service')));
  const service = unit.get('Service')!;
  const value = (key: string): string | undefined => service.get(key)?.at(-1);
  /** The words of ExecStart after `serve`. */
  const serveArgs = (): string[] => {
    const argv = value('ExecStart')!.split(/\s+/);
    expect(argv, 'ExecStart runs `strata serve`').toContain('serve');
    return argv.slice(argv.indexOf('serve') + 1);
  };
  /**
   * The options the unit itself gives the broker: Environment= under ExecStart's flags. Not
   * EnvironmentFile= or a --config added by a drop-in: those are the host's, outside the
   * repository (deploy/README.md asks to raise TimeoutStopSec with shutdown-timeout-ms there).
   */
  const unitSettings = (): Record<string, unknown> =>
    effectiveSettings(settingsOfEnv(unitEnvironment(service.get('Environment') ?? [])), serveFlags(serveArgs(), 'ExecStart'));

  it('has [Unit], [Service] and [Install]', () => {
    expect([...unit.keys()]).toEqual(['Unit', 'Service', 'Install']);
    expect(unit.get('Unit')!.get('Description')?.[0]).toBeTruthy();
    expect(unit.get('Install')!.get('WantedBy')).toContain('multi-user.target');
  });

  it('runs `strata serve --data-dir /var/lib/strata` from an absolute path', () => {
    const execStart = value('ExecStart')!;
    expect(execStart).toBeDefined();
    const argv = execStart.split(/\s+/);
    expect(argv[0]!.startsWith('/')).toBe(true);
    expect(execStart).toMatch(/\bserve\b/);
    expect(execStart).toContain('--data-dir /var/lib/strata');
    expect(unitSettings()['data-dir']).toBe('/var/lib/strata');
    const node = argv.indexOf('node');
    expect(argv.slice(node + 1, node + 1 + BROKER_NODE_FLAGS.length), 'ExecStart passes the broker flags to node').toEqual([...BROKER_NODE_FLAGS]);
    // Installed as /opt/strata/<repository layout>: the script it names must exist here.
    const script = argv.find((arg) => arg.endsWith('strata.js'));
    if (script !== undefined) {
      expect(script.startsWith('/opt/strata/')).toBe(true);
      expect(existsSync(join(ROOT, script.slice('/opt/strata/'.length))), script).toBe(true);
    }
  });

  it('has the required keys', () => {
    const required: Record<string, string> = {
      User: 'strata',
      Restart: 'on-failure',
      StateDirectory: 'strata',
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      KillSignal: 'SIGTERM',
    };
    for (const [key, expected] of Object.entries(required)) expect(value(key), key).toBe(expected);
    expect(service.get('ReadWritePaths')?.join(' ').split(/\s+/)).toContain('/var/lib/strata');
    // A usage error (a bad flag, option value or file) fails the same way at every restart, and
    // RestartSec=5s never trips the start limit: without this, it would restart for ever.
    expect((service.get('RestartPreventExitStatus') ?? []).join(' ').split(/\s+/), 'RestartPreventExitStatus').toContain(String(EXIT_USAGE));
  });

  it('waits longer than the shutdown bound before SIGKILL', () => {
    expect(durationMs(value('TimeoutStopSec')!), 'TimeoutStopSec vs shutdown-timeout-ms + guard').toBeGreaterThan(shutdownBoundMs(unitSettings()));
  });

  it('sets only known STRATA_* variables and leaves the V8 JIT working', () => {
    expectKnownEnv(unitEnvironment(service.get('Environment') ?? []).keys(), 'Environment=');
    expect(value('MemoryDenyWriteExecute')).not.toBe('yes');
  });
});

describe('the image name and tag', () => {
  // Built as `strata:<package version>` (deploy/README.md); every file that runs it names that.
  const version = (JSON.parse(read(join(ROOT, 'package.json'))) as { version: string }).version;
  const expected = `strata:${version}`;

  it('is strata:<package.json version> in docker-compose, the StatefulSet, kustomization and the README build command', () => {
    const compose = loadYaml(join(DEPLOY, 'docker-compose.yml'))[0] as { services: Record<string, ComposeService> };
    expect(compose.services.strata!.image).toBe(expected);
    const statefulSet = loadYaml(join(DEPLOY, 'k8s', 'statefulset.yaml')).find((document) => (document as { kind?: string } | null)?.kind === 'StatefulSet') as {
      spec: { template: { spec: { containers: { image: string }[] } } };
    };
    expect(statefulSet.spec.template.spec.containers[0]!.image).toBe(expected);
    const kustomization = loadYaml(join(DEPLOY, 'k8s', 'kustomization.yaml'))[0] as { images: { name: string; newTag?: string }[] };
    expect(kustomization.images).toContainEqual({ name: 'strata', newTag: version });
    expect(read(join(DEPLOY, 'README.md'))).toContain(`docker build -f deploy/Dockerfile -t ${expected} .`);
  });
});
