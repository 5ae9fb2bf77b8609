// Goal: every way a CLI command can fail ends with the documented exit code and one clear line
// on stderr (1: the broker refused or could not be reached, 2: the command line is wrong);
// method: the compiled CLI run as child processes against a real in-process broker (and against
// a port nothing listens on), asserting the exact code and stderr.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { type CliProcess, STRATA_BIN, runCli, startCli } from '../helpers/cli.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';
import { waitUntil } from '../helpers/wait.js';

const shared = useBrokerWithAdmin({ groupHeartbeatIntervalMs: 500 });
let closedPort: number;
const running: CliProcess[] = [];

beforeAll(async () => {
  await shared.admin.createTopic('errors-existing', { partitions: 2 });
  // A port that was free a moment ago and has no listener now.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closedPort = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
// Registered after the broker's hooks, so run before its afterAll: the processes go first.
afterAll(() => {
  for (const process of running) process.kill();
});

async function expectFailure(args: string[], code: 1 | 2, stderr: string | RegExp, input?: string): Promise<void> {
  const result = await runCli(args, input === undefined ? {} : { input });
  expect(result.code, `strata ${args.join(' ')}: stderr ${result.stderr}`).toBe(code);
  expect(result.stdout).toBe('');
  expect(result.stderr.endsWith('\n')).toBe(true);
  expect(result.stderr.split('\n')).toHaveLength(2); // exactly one line
  if (typeof stderr === 'string') expect(result.stderr).toBe(`${stderr}\n`);
  else expect(result.stderr).toMatch(stderr);
}

function at(...args: string[]): string[] {
  return [...args, '--server', shared.broker.address];
}

describe('the broker refuses: exit 1 with its message', () => {
  it.each([
    [['consume', 'x']],
    [['consume', 'x', '--group', 'g']],
    [['produce', 'x', 'value']],
    [['tail', 'x']],
    [['topics', 'describe', 'x']],
    [['topics', 'delete', 'x']],
    [['topics', 'alter', 'x', '--config', 'retention.ms=1']],
    [['topics', 'alter', 'x', '--partitions', '3']],
  ])('an unknown topic: strata %j', { concurrent: true }, async (args) => {
    await expectFailure(at(...args), 1, 'strata: topic "x" not found');
  });

  it('an unknown group, an existing topic, a bad config, a partition or offset out of range', async () => {
    await expectFailure(at('groups', 'describe', 'nobody'), 1, 'strata: group "nobody" not found');
    await expectFailure(at('topics', 'create', 'errors-existing'), 1, /^strata: topic "errors-existing" already exists\n$/);
    await expectFailure(at('topics', 'create', 'bad/name'), 1, /^strata: .*topic name.*\n$/i);
    await expectFailure(at('topics', 'alter', 'errors-existing', '--config', 'no.such.config=1'), 1, /^strata: .*no\.such\.config.*\n$/);
    await expectFailure(at('topics', 'alter', 'errors-existing', '--reset', 'no.such.config'), 1, /^strata: cannot reset unknown topic config "no\.such\.config"; known: .*\n$/);
    await expectFailure(at('topics', 'alter', 'errors-existing', '--partitions', '2'), 1, 'strata: topic "errors-existing" has 2 partitions; the new count must be larger, got 2');
    await shared.admin.createTopic('errors-one-partition', { partitions: 1 });
    await expectFailure(at('topics', 'alter', 'errors-one-partition', '--partitions', '1'), 1, 'strata: topic "errors-one-partition" has 1 partition; the new count must be larger, got 1');
    await expectFailure(at('consume', 'errors-existing', '--partition', '7'), 1, 'strata: partition 7 of topic "errors-existing" not found: it has 2 partitions');
    await expectFailure(at('produce', 'errors-existing', '--partition', '7', 'v'), 1, 'strata: partition 7 of topic "errors-existing" not found: it has 2 partitions');
    await expectFailure(at('consume', 'errors-existing', '--partition', '0', '--from', '99'), 1, /^strata: offset 99 is out of range for errors-existing-0: .*\n$/);
  });

  it('an offset past the end of every partition (one past some ends starts those at their ends; --follow says so and follows)', async () => {
    const topic = 'errors-past-end';
    await shared.admin.createTopic(topic, { partitions: 3 });
    const producer = new Producer({ server: shared.broker.address });
    try {
      await Promise.all(['a', 'b', 'c'].map((value) => producer.send({ topic, partition: 0, value })));
    } finally {
      await producer.close();
    }
    await expectFailure(at('consume', topic, '--from', '99'), 1, `strata: offset 99 is past the end of every partition of "${topic}" (the furthest ends at 3); give a smaller --from, or --partition for one partition's range`);
    expect(await runCli(at('consume', topic, '--from', '2'))).toMatchObject({ code: 0, stdout: 'c\n', stderr: '' });
    expect(await runCli(at('consume', topic, '--from', '3'))).toMatchObject({ code: 0, stdout: '', stderr: '' }); // at the end: nothing yet, not a mistake
    const following = startCli(at('consume', topic, '--from', '99', '--follow'));
    running.push(following);
    await waitUntil(() => following.stderr.includes('\n'), () => `the line about the offset; stderr: ${following.stderr}`, 20_000);
    expect(following.stderr).toBe(`strata: offset 99 is past the end of every partition of "${topic}" (the furthest ends at 3); following from their ends\n`);
    const more = new Producer({ server: shared.broker.address });
    try {
      await more.send({ topic, partition: 1, value: 'new' });
    } finally {
      await more.close();
    }
    await following.waitForLine((line) => line === 'new', 20_000);
    expect(await following.interrupt()).toEqual({ code: 0, signal: null });
    expect(following.lines).toEqual(['new']);
  });

  it('a name with an escape sequence: the line shows it escaped, as the terminal must not get it', async () => {
    await expectFailure(at('groups', 'describe', 'bad\x1b[31mred'), 1, 'strata: group "bad\\u001b[31mred" not found');
    await expectFailure(at('topics', 'describe', 'bad\x1b[31mred'), 1, /^strata: topic name "bad\\u001b\[31mred" has characters outside/);
  });

  it('a malformed input line stops produce after the records before it', async () => {
    await expectFailure(at('produce', 'errors-existing', '--format', 'json'), 1, /^strata: input line 2 is not JSON: .* \(1 record was produced before it\)\n$/, '{"value":"ok"}\nnot json\n{"value":"never"}\n');
    await expectFailure(at('produce', 'errors-existing', '--key-separator', ':'), 1, 'strata: input line 1 has no key separator ":"', 'no separator here\n');
    await expectFailure(at('produce', 'errors-existing', '--format', 'json'), 1, /^strata: input line 1: value is not valid base64\n$/, '{"value":{"base64":"!!"}}\n');
  });

  it('a failed send and a malformed line read before the failure was known: produce names both', async () => {
    await shared.admin.createTopic('errors-small', { partitions: 1, configs: { 'max.message.bytes': '2000' } });
    const input = ['{"value":"ok"}', JSON.stringify({ value: 'x'.repeat(3000) }), 'not json', '{"value":"never read"}'].join('\n');
    await expectFailure(
      at('produce', 'errors-small', '--format', 'json'),
      1,
      /^strata: input line 2 \(3,012 bytes\) was not sent: .*max\.message\.bytes of 2000; 1 other record was produced \(1 before it, 0 after it\); reading then stopped: input line 3 is not JSON: .*\n$/,
      input,
    );
    expect((await shared.admin.describeTopic('errors-small')).partitions[0]!.highWatermark).toBe(1);
  });

  it('a failed file step the broker answers with UNAVAILABLE: its message, not "cannot reach the broker"', async () => {
    await shared.admin.createTopic('errors-half-deleted');
    const graveyard = join(shared.broker.dataDir, 'deleted');
    rmSync(graveyard, { recursive: true, force: true });
    writeFileSync(graveyard, ''); // a file where deleted topics' directories go: the move fails
    try {
      await expectFailure(
        at('topics', 'delete', 'errors-half-deleted'),
        1,
        'strata: topic "errors-half-deleted" is deleted, but moving its directory out of the topics directory failed with EEXIST: the broker tries again at its next start, and until the directory is gone a topic of this name cannot be created (it may be removed by hand; the broker log names it)',
      );
    } finally {
      rmSync(graveyard);
      rmSync(join(shared.broker.dataDir, 'topics', 'errors-half-deleted'), { recursive: true, force: true });
    }
  });

  it('resetting or deleting a group that has members', async () => {
    const member = startCli(at('consume', 'errors-existing', '--group', 'busy', '--follow'));
    running.push(member);
    await waitUntil(() => shared.admin.describeGroup('busy').then((group) => group.members.length === 1, () => false), () => `the member to join; stderr: ${member.stderr}`, 20_000);
    const stopFirst = '; stop its consumers first \\(a static member that left, or a consumer stopped without leaving, keeps its place until its session ends: once they are stopped, try again within \\d+ s\\)\\n$';
    await expectFailure(at('groups', 'reset-offsets', 'busy', '--topic', 'errors-existing', '--to', 'earliest'), 1, new RegExp(`^strata: cannot reset offsets of group "busy": it has 1 member${stopFirst}`));
    await expectFailure(at('groups', 'delete', 'busy'), 1, new RegExp(`^strata: cannot delete group "busy": it has 1 member${stopFirst}`));
    expect(await member.interrupt()).toEqual({ code: 0, signal: null });
    expect(member.stderr).toBe('');
  });
});

describe('strata repair of a partition that is not there', () => {
  it('exits 1 and creates nothing for an unknown topic or partition; exits 2 for an illegal topic name', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'strata-repair-cli-'));
    try {
      await expectFailure(['repair', '--data-dir', dataDir, '--topic', 'typo', '--partition', '0'], 1, `strata: no partition 0 of topic "typo" in ${dataDir}: it is not a data directory (no metadata.mdb)`);
      await expectFailure(['repair', '--dir', join(dataDir, 'nowhere')], 1, `strata: no partition directory ${join(dataDir, 'nowhere')}`);
      await expectFailure(['repair', '--data-dir', dataDir, '--topic', '../../x', '--partition', '0'], 2, /^strata: --topic: topic name "\.\.\/\.\.\/x" has characters outside/);
      expect(readdirSync(dataDir)).toEqual([]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('strata repair and STRATA_DIR', () => {
  it('takes the partition to repair from its command line only: STRATA_DIR is reported and ignored', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'strata-repair-env-'));
    try {
      const result = await runCli(['repair', '--data-dir', dataDir, '--topic', 't', '--partition', '0'], { env: { STRATA_DIR: join(dataDir, 'elsewhere') } });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`strata: ignoring environment variable STRATA_DIR: no option has that name\nstrata: no partition 0 of topic "t" in ${dataDir}: it is not a data directory (no metadata.mdb)\n`);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('strata dump-log of what is not a segment file', () => {
  it('a directory: exit 2, saying to give one of its .log files; a missing file: exit 1, naming it', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'strata-dump-dir-'));
    try {
      await expectFailure(['dump-log', directory], 2, `strata: ${directory} is a directory: give one of its segment .log files (a partition directory holds 00000000000000000000.log and later ones)`);
      await expectFailure(['dump-log', join(directory, 'nosuch.log')], 1, `strata: cannot open ${join(directory, 'nosuch.log')}: no such file`);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe('the broker cannot be reached: exit 1', { concurrent: true }, () => {
  it.each([[['topics', 'list']], [['groups', 'list']], [['produce', 't', 'v']], [['consume', 't']], [['tail', 't']]])('strata %j', async (args) => {
    const server = `127.0.0.1:${closedPort}`;
    const result = await runCli([...args, '--server', server]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(new RegExp(`^strata: cannot reach the broker at 127\\.0\\.0\\.1:${closedPort} \\(.*\\); is it running\\? Set --server or STRATA_SERVER\\n$`));
  });

  it('says what to check when the address answers but not as a gRPC server (the metrics port)', async () => {
    const result = await runCli(['topics', 'list', '--server', shared.broker.metricsAddress!]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `strata: cannot reach the broker at ${shared.broker.metricsAddress} (something answers there, but not as a gRPC server (grpc-js: Protocol error): is it the broker's --listen address, not its --metrics-listen one?); set --server or STRATA_SERVER\n`,
    );
  });

  it('a plaintext client at a TLS listener: the reason without the time grpc-js stamps on it', async () => {
    const tlsFiles = join(PACKAGE_ROOT, 'test', 'fixtures', 'tls');
    const server = createTlsServer({ cert: readFileSync(join(tlsFiles, 'server.pem')), key: readFileSync(join(tlsFiles, 'server-key.pem')) });
    server.on('tlsClientError', () => undefined); // the CLI's plaintext HTTP/2 preface
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const result = await runCli(['topics', 'list', '--server', address]);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`strata: cannot reach the broker at ${address} (Failed to connect); is it running? Set --server or STRATA_SERVER; if the broker serves TLS, add --tls or --tls-ca-file\n`);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('names only the unknown command, not the options STRATA_* variables give', async () => {
    const result = await runCli(['frobnicate'], { env: { STRATA_SERVER: `127.0.0.1:${closedPort}` } });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('strata: unknown command "frobnicate"; the commands are serve, topics, produce, consume, tail, groups, bench, repair, dump-log (see --help)\n');
  });

  it('takes the address from STRATA_SERVER', async () => {
    const result = await runCli(['topics', 'list'], { env: { STRATA_SERVER: `127.0.0.1:${closedPort}` } });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot reach the broker at 127.0.0.1:${closedPort}`);
    const reachable = await runCli(['topics', 'list'], { env: { STRATA_SERVER: shared.broker.address } });
    expect(reachable.code).toBe(0);
    expect(reachable.stdout).toContain('errors-existing');
  });
});

describe('the command line is wrong: exit 2', { concurrent: true }, () => {
  it.each([
    [[], /^strata: give a command: serve, topics, produce, consume, tail, groups, bench, repair or dump-log \(see --help\)\n$/],
    [['frobnicate'], /^strata: unknown command "frobnicate"; the commands are serve, topics, produce, consume, tail, groups, bench, repair, dump-log \(see --help\)\n$/],
    [['topics', 'frobnicate'], /^strata: unknown command "frobnicate"; the commands of topics are create, list, describe, alter, delete \(see --help\)\n$/],
    [['topics'], /give a topics command/],
    [['topics', 'create'], /^strata: an argument is missing: strata topics create <name> \(see --help\)\n$/],
    [['topics', 'create', '--config', 'retention.ms=1000'], /^strata: an argument is missing: strata topics create <name>/],
    [['consume'], /^strata: an argument is missing: strata consume <topic> \(see --help\)\n$/],
    [['topicz', 'list'], /^strata: unknown command "topicz"; did you mean "topics"\?\n$/],
    [['topics', 'lst'], /^strata: unknown command "lst"; did you mean "list"\?\n$/],
    [['--server', '127.0.0.1:1', 'groups', 'lsit'], /^strata: unknown command "lsit"; did you mean "list"\?\n$/],
    [['topics', 'list', '--bogus'], /Unknown argument: bogus/],
    [['consume', 't', '--max-records', '3'], /^strata: Unknown argument: max-records\n$/],
    [['consume', 't', '--max-records', '3', '--from-start'], /^strata: Unknown arguments: max-records, from-start\n$/],
    [['consume', 't', '--cuont', '3'], /^strata: Unknown argument: cuont; did you mean --count\?\n$/],
    // Several unknown: each misspelt one paired with its option, the others left as they are.
    [['consume', 't', '--cuont', '3', '--frobnicate', '--form', 'start'], /^strata: Unknown arguments: cuont, frobnicate, form; did you mean --count for --cuont, --from for --form\?\n$/],
    // An argument near an option's name is not taken for a misspelt option.
    [['topics', 'list', 'servr'], /^strata: Unknown argument: servr\n$/],
    [['topics', 'create', 't', '--partitions', '0'], /^strata: --partitions must be an integer from 1 to 10000, got 0\n$/],
    [['topics', 'create', 't', '--partitions', '20000'], /^strata: --partitions must be an integer from 1 to 10000, got 20000\n$/],
    [['topics', 'create', 't', '--partitions', 'many'], /--partitions must be an integer from 1 to 10000, got a non-number/],
    [['topics', 'create', 't', '--config', 'retention.ms'], /--config takes KEY=VALUE, got "retention.ms"/],
    [['topics', 'alter', 't'], /^strata: give at least one --config KEY=VALUE or --reset KEY, or --partitions N\n$/],
    [['topics', 'alter', 't', '--partitions', '4', '--config', 'retention.ms=1'], /^strata: --partitions and --config are mutually exclusive\n$/],
    [['topics', 'alter', 't', '--partitions', '0'], /^strata: --partitions must be an integer from 1 to 10000, got 0\n$/],
    [['topics', 'alter', 't', '--partitions', '10001'], /^strata: --partitions must be an integer from 1 to 10000, got 10001\n$/],
    [['produce', 't', '--acks', 'maybe', 'v'], /^strata: --acks must be one of all, leader, none, got "maybe"\n$/],
    [['produce', 't', '--acks', '2', 'v'], /^strata: --acks must be one of all, leader, none, got 2\n$/],
    [['produce', 't', '--format', 'xml'], /^strata: --format must be one of text, json, got "xml"\n$/],
    [['consume', 't', '--from'], /^strata: --from needs a value\n$/],
    [['consume', 't', '--count'], /^strata: --count needs a value\n$/],
    [['tail', 't', '-n'], /^strata: -n needs a value\n$/],
    // An option of choices given without its value is refused, not taken as its default.
    [['produce', 't', '--format'], /^strata: --format needs a value\n$/],
    [['produce', 't', 'v', '--acks'], /^strata: --acks needs a value\n$/],
    [['consume', 't', '--format'], /^strata: --format needs a value\n$/],
    [['tail', 't', '--format'], /^strata: --format needs a value\n$/],
    [['bench', 'produce', '--flush'], /^strata: --flush needs a value\n$/],
    [['bench', 'produce', '--acks'], /^strata: --acks needs a value\n$/],
    [['bench', 'produce', '--path'], /^strata: --path needs a value\n$/],
    [['bench', 'produce', '--write-mode'], /^strata: --write-mode needs a value\n$/],
    [['bench', 'produce', '--small-io'], /^strata: --small-io needs a value\n$/],
    [['bench', 'e2e', '--reader'], /^strata: --reader needs a value\n$/],
    [['bench', 'baseline', '--workload'], /^strata: --workload needs a value\n$/],
    [['repair', '--data-dir'], /^strata: --data-dir needs a value\n$/],
    [['repair', '--topic'], /^strata: --topic needs a value\n$/],
    [['repair', '--partition'], /^strata: --partition needs a value\n$/],
    [['repair', '--dir'], /^strata: --dir needs a value\n$/],
    // A key given twice is refused, not the last value kept unsaid.
    [['produce', 't', '--header', 'a=1', '--header', 'a=2', 'v'], /^strata: --header gives "a" twice \(a=1, a=2\); give each key once\n$/],
    [['topics', 'create', 't', '--config', 'retention.ms=1', '--config', 'retention.ms=2'], /^strata: --config gives "retention.ms" twice \(retention.ms=1, retention.ms=2\); give each key once\n$/],
    [['topics', 'alter', 't', '--config', 'retention.ms=1', '--config', 'retention.ms=2'], /^strata: --config gives "retention.ms" twice/],
    [['produce', 't', '--key', 'k', '--key-separator', ':'], /^strata: --key and --key-separator are mutually exclusive\n$/],
    [['produce', 't', '--format', 'json', '--key-separator', ':'], /--key-separator is for --format text/],
    [['produce', 't', '--header', 'novalue', 'v'], /--header takes KEY=VALUE/],
    [['produce', 't', '--partition', '-1', 'v'], /--partition must be an integer from 0 to 2147483647, got -1/],
    [['groups', 'reset-offsets', 'g', '--topic', 't', '--to', 'earliest', '--partition', '3000000000'], /^strata: --partition must be an integer from 0 to 2147483647, got 3000000000\n$/],
    [['consume', 't', '--partition', '2147483648'], /--partition must be an integer from 0 to 2147483647, got 2147483648/],
    [['groups', 'reset-offsets', 'g', '--topic', 't', '--to', '1969-12-31'], /^strata: --to: 1969-12-31 is before 1970, earlier than any record's timestamp can be; give a later time, or earliest\n$/],
    [['consume', 't', '--from', 'yesterday'], /--from takes earliest, latest, an offset or an ISO-8601 time/],
    [['consume', 't', '--count', '-5'], /--count must be a non-negative integer, got -5/],
    [['consume', 't', '--group', 'g', '--partition', '1'], /^strata: --group and --partition are mutually exclusive\n$/],
    [['consume', 't', '--group', 'g', '--from', '10'], /with --group, --from is earliest or latest/],
    [['tail', 't', '-n', 'x'], /-n must be an integer from 0 to/],
    [['groups', 'reset-offsets', 'g', '--topic', 't'], /give --to earliest\|latest\|OFFSET\|TIME/],
    [['groups', 'reset-offsets', 'g', '--to', 'earliest'], /^strata: Missing required argument: topic\n$/],
    [['groups', 'reset-offsets', 'g', '--topic', 't', '--to', 'soon'], /--to takes earliest, latest, an offset or an ISO-8601 time/],
    [['topics', 'list', '--server', 'no-port'], /--server must be HOST:PORT, got "no-port"/],
    [['topics', 'list', '--server', '127.0.0.1:70000'], /^strata: --server must have a port from 1 to 65535, got "127.0.0.1:70000"\n$/],
    [['consume', 't', '--count', '1', '--count=2'], /^strata: --count was given 2 times; it takes one value\n$/],
    [['bench', 'produce', '--records', '10', '--record-size', '1', '--records=20'], /^strata: --records was given 2 times; it takes one value\n$/],
    [['groups', 'reset-offsets', 'g', '--partition', '0', '--partition', '1', '--to', 'earliest', '--topic', 't', '--topic', 'u'], /^strata: --topic was given 2 times; it takes one value\n$/],
    [['tail', 't', '-n', '5', '--lines', '6'], /^strata: -n\/--lines was given 2 times; it takes one value\n$/],
    [['consume', 't', '--count', '1', '--count', '2', '--count', '3'], /^strata: --count was given 3 times; it takes one value\n$/],
    [['bench', 'produce', '--records', 'abc'], /^strata: --records must be a positive integer, got a non-number\n$/],
  ])('strata %j', async (args, message) => {
    const result = await runCli(args.includes('--server') ? args : at(...args));
    expect(result.code, result.stderr).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^strata: /);
    expect(result.stderr).toMatch(message);
    expect(result.stderr.split('\n')).toHaveLength(2);
  });

  it('--help and --version succeed', async () => {
    for (const command of [[], ['topics'], ['topics', 'create'], ['produce'], ['consume'], ['tail'], ['groups'], ['groups', 'reset-offsets']]) {
      const help = await runCli([...command, '--help']);
      expect(help.code).toBe(0);
      if (command.length > 0) expect(help.stdout).toContain('--server');
      if (command.length > 0 && command[0] !== 'topics' && command[0] !== 'groups') expect(help.stdout).toContain('Examples:');
    }
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe('strata serve with a --config file or a value it cannot use: exit 2, naming the file or flag and what is wrong', { concurrent: true }, () => {
  const directory = mkdtempSync(join(tmpdir(), 'strata-config-file-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const path = join(directory, name);
    writeFileSync(path, text);
    return path;
  };
  // The broker never starts, so its data directory is never made; if it did, on ports of its own.
  const dataDir = join(directory, 'data');
  const serveFlags = ['--data-dir', dataDir, '--listen', '127.0.0.1:0', '--metrics-listen', ''];

  it.each([
    ['a file that is not there', () => ['--config', join(directory, 'missing.json')], /^strata: config file .*missing\.json: no such file\n$/],
    ['a file that is not JSON', () => ['--config', file('broken.json', '{"data-dir": ')], /^strata: config file .*broken\.json is not valid JSON: Unexpected end of JSON input\n$/],
    ['a file that is not JSON, without quoting it', () => ['--config', file('secret.json', 'root:x:0:0:root')], /^strata: config file .*secret\.json is not valid JSON: Unexpected token 'r'\n$/],
    ['a JSON array', () => ['--config', file('array.json', '["data-dir"]')], /^strata: config file .*array\.json must hold one JSON object of options, like .*; it holds an array\n$/],
    ['a long file that is not JSON, without quoting it', () => ['--config', file('passwd.json', 'root:x:0:0:root:/root:/bin/bash\n')], /^strata: config file .*passwd\.json is not valid JSON: Unexpected token 'r'\n$/],
    ['null for a number', () => ['--config', file('null.json', '{"retention-ms": null}')], /^strata: config file .*null\.json: "retention-ms" must be a number, not null\n$/],
    ['a number for a path', () => ['--config', file('number.json', '{"data-dir": 5}')], /^strata: config file .*number\.json: "data-dir" must be a string, not a number\n$/],
    ['an empty number on the command line', () => ['--retention-ms='], /^strata: --retention-ms was given an empty value; give a number\n$/],
    ['an empty number on the command line, in camelCase', () => ['--retentionMs='], /^strata: --retention-ms was given an empty value; give a number\n$/],
    ['a number option negated (yargs would make it 0)', () => ['--no-retention-ms'], /^strata: --no-retention-ms is not an option: every option of serve takes a value; give --retention-ms one \(see strata serve --help\)\n$/],
    ['a flag without its value', () => ['--retention-ms'], /^strata: --retention-ms needs a value\n$/],
    ['a flag without its value, in camelCase', () => ['--retentionMs'], /^strata: --retention-ms needs a value\n$/],
    ['--listen without its value', () => ['--listen'], /^strata: --listen needs a value\n$/],
    ['--data-dir without its value', () => ['--data-dir'], /^strata: --data-dir needs a value\n$/],
    ['a value none of the choices', () => ['--log-level', 'loud'], /^strata: --log-level must be one of trace, debug, info, warn, error, fatal, silent, got "loud"\n$/],
    ['a write mode none of the choices', () => ['--write-mode', 'fast'], /^strata: --write-mode must be one of buffered, direct, got "fast"\n$/],
    ['a misspelt option on the command line', () => ['--retnetion-ms', '5'], /^strata: Unknown argument: retnetion-ms; did you mean --retention-ms\?\n$/],
    ['a list for an option', () => ['--config', file('list.json', '{"retention-ms": [1, 2]}')], /^strata: config file .*list\.json: "retention-ms" must be a number, not an array\n$/],
    ['a directory', () => ['--config', directory], /^strata: config file .* is a directory; give a JSON file of options\n$/],
    ['two files', () => ['--config', file('one.json', '{}'), `--config=${file('two.json', '{}')}`], /^strata: --config was given 2 times; it takes one value\n$/],
    ['two files, one before the command', () => [`--config=${file('three.json', '{}')}`, 'serve', '--config', file('four.json', '{}')], /^strata: --config was given 2 times; it takes one value\n$/],
    ['no file', () => ['--config', '--retention-ms', '1'], /^strata: --config needs the path of a JSON file of options\n$/],
    ['an empty path', () => ['--config='], /^strata: --config was given an empty path; give the path of a JSON file of options\n$/],
    ['an empty tokens file on the command line (the broker would ask for no token)', () => ['--auth-tokens-file='], /^strata: --auth-tokens-file was given no path; give the file, or leave the option out \(without it, no token is asked for\)\n$/],
    ['an empty client CA file in a config file (the broker would ask for no certificate)', () => ['--config', file('empty-ca.json', '{"tlsClientCaFile": ""}')], /^strata: config file .*empty-ca\.json: "tlsClientCaFile" is empty; give the path of the file, or leave the key out \(without it, no client certificate is asked for\)\n$/],
    ['a value none of the choices', () => ['--config', file('choice.json', '{"flush": "sometimes"}')], /^strata: config file .*choice\.json: "flush" must be one of always, interval, not "sometimes"\n$/],
    ['an option it does not know', () => ['--config', file('unknown.json', '{"retention-days": 7}')], /^strata: config file .*unknown\.json: "retention-days" is no option; options are named as the flags of strata serve --help, like "retention-ms"\n$/],
    ['a config file named in a config file', () => ['--config', file('nested.json', '{"config": "other.json"}')], /^strata: config file .*nested\.json: "config" cannot name another config file; give the options it holds here\n$/],
    ['an option spelt with underscores', () => ['--config', file('underscore.json', '{"retention_ms": 7}')], /^strata: config file .*underscore\.json: "retention_ms" is no option; did you mean "retention-ms"\?\n$/],
    ['a misspelt option in the file', () => ['--config', file('misspelt.json', '{"retnetion-ms": 7}')], /^strata: config file .*misspelt\.json: "retnetion-ms" is no option; did you mean "retention-ms"\?\n$/],
    ['null for a number, in camelCase', () => ['--config', file('camel.json', '{"retentionMs": null}')], /^strata: config file .*camel\.json: "retentionMs" must be a number, not null\n$/],
    ['a number in hex, as a string', () => ['--config', file('hex.json', '{"retention-ms": "0x10"}')], /^strata: config file .*hex\.json: "retention-ms" must be a number \(or a string of decimal digits\), not "0x10"\n$/],
    ['a number in hex on the command line', () => ['--retention-ms', '0x10'], /^strata: --retention-ms must be an integer in decimal digits, got "0x10"\n$/],
    ['one option set by two keys', () => ['--config', file('twice.json', '{"retention-ms": 7000, "retentionMs": 8000}')], /^strata: config file .*twice\.json: "retention-ms" and "retentionMs" both set --retention-ms; keep one\n$/],
  ])('%s', async (_, args, message) => {
    const given = args();
    const result = await runCli([...(given.includes('serve') ? [] : ['serve']), ...given, ...serveFlags]);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('an address in use: one line on stderr naming the flag (grpc-js says nothing of its own there, nor logs an error)', async () => {
    const result = await runCli(['serve', '--data-dir', join(directory, 'in-use'), '--listen', shared.broker.address, '--metrics-listen', '']);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/^strata: cannot listen on [^\n]* \(--listen\): the address is in use [^\n]*; give another --listen\n$/);
    const logLines = result.stdout.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { level: number; msg: string });
    expect(logLines.filter((line) => line.level >= 50).map((line) => line.msg)).toEqual([]);
  });

  it('a value no broker can use, from a flag, the environment or the file, named where it was given: the data directory is not touched', async () => {
    const negative = file('negative.json', '{"retentionMs": -5}');
    const given: [string[], Record<string, string>, string][] = [
      [['--retention-ms', '-5'], {}, '--retention-ms'],
      [[], { STRATA_RETENTION_MS: '-5' }, 'STRATA_RETENTION_MS'],
      [['--config', negative], {}, `config file ${negative}: "retentionMs"`],
      // The flag wins over the variable, which wins over the file: the one that gave the value is named.
      [['--config', negative, '--retention-ms', '-5'], { STRATA_RETENTION_MS: '1000' }, '--retention-ms'],
      [['--config', negative], { STRATA_RETENTION_MS: '-5' }, 'STRATA_RETENTION_MS'],
    ];
    for (const [args, env, named] of given) {
      const result = await runCli(['serve', ...serveFlags, ...args], { env });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toBe(`strata: ${named} must be an integer from -1 to 9007199254740991, got -5\n`);
    }
    const fraction = await runCli(['serve', ...serveFlags, '--config', file('fraction.json', '{"produce-memory-bytes": 1.5}')]);
    expect(fraction.stderr).toBe(`strata: config file ${join(directory, 'fraction.json')}: "produce-memory-bytes" must be a positive integer, got 1.5\n`);
    // Two options compared: each named where it was given.
    const small = file('small.json', '{"produceMemoryBytes": 1}');
    const below = await runCli(['serve', ...serveFlags, '--config', small], { env: { STRATA_MAX_REQUEST_BYTES: '2000000' } });
    expect(below.stderr).toBe(`strata: "produceMemoryBytes" of config file ${small} (1) is below STRATA_MAX_REQUEST_BYTES (2000000): a request of the largest size would overfill it on its own; raise --produce-memory-bytes or lower --max-request-bytes\n`);
    const result = await runCli(['serve', ...serveFlags, '--max-request-bytes', '100000']);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^strata: the default max\.message\.bytes of 1048576 does not fit in one request to this broker: .*; raise --max-request-bytes or lower --max-message-bytes\n$/);
    // TLS and token files are read and checked then too.
    const absent = join(directory, 'absent.pem');
    const tls = await runCli(['serve', ...serveFlags, '--tls-cert-file', absent, '--tls-key-file', absent]);
    expect({ code: tls.code, stderr: tls.stderr }).toEqual({ code: 2, stderr: `strata: --tls-cert-file ${absent} cannot be read: ENOENT (no such file or directory)\n` });
    const tokens = await runCli(['serve', ...serveFlags], { env: { STRATA_AUTH_TOKENS_FILE: file('tokens.json', '{"tokens": [{"name": "a", "sha256": "secret", "permissions": ["read"]}]}') } });
    expect(tokens.code, tokens.stderr).toBe(2);
    expect(tokens.stderr).toMatch(/^strata: --auth-tokens-file .*tokens\.json: tokens\[0\]\.sha256 must be the token's SHA-256 as 64 hex digits/);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('an empty STRATA_ variable for a number option the same way, and --help is answered whatever else is wrong', async () => {
    const empty = await runCli(['serve', ...serveFlags], { env: { STRATA_RETENTION_MS: '' } });
    expect(empty.code, empty.stderr).toBe(2);
    expect(empty.stderr).toBe('strata: STRATA_RETENTION_MS is set but empty; give a number, or unset it\n');
    const help = await runCli(['serve', '--config', '--help'], { env: { STRATA_CONFIG: '' } });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('--config');
  });

  it('an empty data directory, from a flag or STRATA_DATA_DIR, named where it was given: not the current directory', async () => {
    for (const [args, env, named] of [[['--data-dir='], {}, '--data-dir'], [[], { STRATA_DATA_DIR: '' }, 'STRATA_DATA_DIR']] as const) {
      const result = await runCli(['serve', ...args, '--listen', '127.0.0.1:0', '--metrics-listen', ''], { env });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toBe(`strata: ${named} must not be empty (an unset shell variable?): the broker would keep its data in the current directory\n`);
    }
  });

  it('a log level pino does not know in STRATA_LOG_LEVEL: one line from serve, and from a client command before it sends anything', async () => {
    for (const level of ['verbose', '']) {
      const serve = await runCli(['serve', ...serveFlags], { env: { STRATA_LOG_LEVEL: level } });
      expect(serve.code, serve.stderr).toBe(2);
      expect(serve.stderr).toBe(`strata: STRATA_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "${level}"\n`);
      // consume asks the broker for the topic first (NOT_FOUND here, exit 1, were it sent).
      for (const command of [['topics', 'create', 'errors-log-level'], ['consume', 'errors-log-level']]) {
        const result = await runCli(at(...command), { env: { STRATA_LOG_LEVEL: level } });
        expect(result.code, result.stderr).toBe(2);
        expect(result.stderr).toBe(`strata: STRATA_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "${level}"\n`);
      }
    }
    // Given on the command line too (in camelCase), the bad value is the flag's, not the variable's.
    const flagged = await runCli(['serve', ...serveFlags, '--logLevel', 'loud'], { env: { STRATA_LOG_LEVEL: 'warn' } });
    expect(flagged.stderr).toBe('strata: --log-level must be one of trace, debug, info, warn, error, fatal, silent, got "loud"\n');
    expect((await shared.admin.listTopics()).map((topic) => topic.name)).not.toContain('errors-log-level');
    expect((await runCli(at('topics', 'list'), { env: { STRATA_LOG_LEVEL: 'warn' } })).code).toBe(0);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('STRATA_CONFIG is serve\'s alone: topics create does not take it as a topic config', async () => {
    const result = await runCli(at('topics', 'create', 'errors-config-variable'), { env: { STRATA_CONFIG: join(directory, 'absent.json') } });
    expect(result.code, result.stderr).toBe(0);
    expect(await shared.admin.describeTopic('errors-config-variable')).toMatchObject({ name: 'errors-config-variable' });
  });

  it("STRATA_PARTITIONS (bench's) is not a topic command's: topics alter does not add partitions, and topics create takes the broker default", async () => {
    const env = { STRATA_PARTITIONS: '4' };
    expect((await runCli(at('topics', 'create', 'errors-partitions-variable'), { env })).code).toBe(0);
    const altered = await runCli(at('topics', 'alter', 'errors-partitions-variable', '--config', 'retention.ms=60000'), { env });
    expect(altered.code, altered.stderr).toBe(0);
    expect((await shared.admin.describeTopic('errors-partitions-variable')).partitions).toHaveLength(1);
  });

  it("STRATA_PARTITION (consume's) does not narrow a groups reset-offsets to one partition", async () => {
    const result = await runCli(at('groups', 'reset-offsets', 'errors-partition-variable', '--topic', 'errors-existing', '--to', 'earliest'), { env: { STRATA_PARTITION: '1' } });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split('\n').filter((line) => line.startsWith('errors-existing'))).toHaveLength(2);
  });

  it('a flag variable that is neither true nor false is refused, not taken as false', async () => {
    const result = await runCli(at('topics', 'list'), { env: { STRATA_TLS: 'maybe' } });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toBe('strata: STRATA_TLS must be true or false (1 or 0, yes or no, on or off also do), got "maybe"; set it so, or unset it\n');
    const help = await runCli(['topics', 'list', '--help'], { env: { STRATA_TLS: 'maybe' } });
    expect(help.code, help.stderr).toBe(0);
    const short = await runCli(['topics', 'list', '-h'], { env: { STRATA_TLS: 'maybe' } });
    expect(short.code, short.stderr).toBe(0);
    expect(short.stdout).toBe(help.stdout);
  });

  it("STRATA_TOPIC and STRATA_PARTITION (consume's) do not pick the partition a repair cuts", async () => {
    const dataDir = join(directory, 'repair-variables');
    const env = { STRATA_TOPIC: 'orders', STRATA_PARTITION: '2' };
    const named = await runCli(['repair', '--data-dir', dataDir, '--topic', 'orders'], { env });
    expect(named.code, named.stderr).toBe(2);
    expect(named.stderr).toBe('strata: give --topic and --partition, or --dir\n');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('the same from STRATA_CONFIG, set to a file that is not there or to nothing', async () => {
    const absent = await runCli(['serve', ...serveFlags], { env: { STRATA_CONFIG: join(directory, 'absent.json') } });
    expect(absent.code, absent.stderr).toBe(2);
    expect(absent.stderr).toMatch(/^strata: config file .*absent\.json: no such file\n$/);
    const empty = await runCli(['serve', ...serveFlags], { env: { STRATA_CONFIG: '' } });
    expect(empty.code, empty.stderr).toBe(2);
    expect(empty.stderr).toBe('strata: STRATA_CONFIG is set but empty; give the path of a JSON file of options, or unset it\n');
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe('stdout on a full disk: exit 1 with one line', () => {
  /** Runs `strata ARGS...` with stdout on /dev/full (every write fails with ENOSPC). */
  async function runIntoFullDisk(args: string[]): Promise<{ code: number | null; stderr: string }> {
    const full = openSync('/dev/full', 'w');
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('STRATA_')) env[name] = value;
    const child = spawn(process.execPath, [STRATA_BIN, ...args], { stdio: ['ignore', full, 'pipe'], env });
    closeSync(full);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
    return { code, stderr };
  }

  it.skipIf(!existsSync('/dev/full'))('consume, with and without a group, and tail', async () => {
    const topic = 'errors-full-disk';
    await shared.admin.createTopic(topic, { partitions: 1 });
    const producer = new Producer({ server: shared.broker.address });
    try {
      await Promise.all(['a', 'b', 'c'].map((value) => producer.send({ topic, partition: 0, value })));
    } finally {
      await producer.close();
    }
    const line = 'strata: cannot write to stdout: ENOSPC (no space left on device)\n';
    for (const args of [
      ['consume', topic, '--count', '3'],
      ['consume', topic, '--group', 'errors-full-disk', '--count', '3'],
      ['tail', topic, '-n', '3'],
    ]) {
      expect(await runIntoFullDisk(at(...args)), args.join(' ')).toEqual({ code: 1, stderr: line });
    }
    // No line was written, so the group's position stays at the first record.
    expect((await shared.admin.fetchOffsets('errors-full-disk')).map(({ partition, offset }) => ({ partition, offset }))).toEqual([{ partition: 0, offset: 0 }]);
  });
});

it('serve --help shows what leaving out a TLS or token file means, not an empty default that would be refused', async () => {
  const { code, stdout } = await runCli(['serve', '--help']);
  expect(code).toBe(0);
  expect(stdout).not.toContain('[default: ""]');
  for (const [option, meaning] of [['tls-cert-file', 'plaintext'], ['tls-client-ca-file', 'no client certificate asked for'], ['auth-tokens-file', 'no token asked for']]) {
    expect(stdout).toMatch(new RegExp(`--${option} [^]*?\\[default: none: ${meaning}\\]`));
  }
});
