// Goal: the words after `--` are the command's arguments, as POSIX tools take them: produce
// writes them as records (and does not read stdin), topic and group commands take a name that
// starts with a dash, a word left over is refused, and an option left without its value before
// the `--` is refused rather than given the word after it; method: the compiled CLI run as
// child processes against a real in-process broker, what it wrote read back with the Admin client
// and the CLI.
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';

const shared = useBrokerWithAdmin();

function at(...args: string[]): string[] {
  return ['--server', shared.broker.address, ...args];
}

/** The values of the records of a one-partition topic, as `consume` prints them. */
async function values(topic: string): Promise<string[]> {
  const consumed = await runCli(at('consume', topic));
  expect(consumed.code, consumed.stderr).toBe(0);
  return consumed.stdout.split('\n').slice(0, -1);
}

describe('words after --', () => {
  it('are the records produce writes, dashes and all, with stdin left unread', async () => {
    await shared.admin.createTopic('operands-values', { partitions: 1 });
    // Options may still come before the --; after it, nothing is an option.
    const produced = await runCli(['produce', 'operands-values', '--server', shared.broker.address, '--', '-dash', '--literal', '--server', '-5']);
    expect(produced.code, produced.stderr).toBe(0);
    expect(produced.stderr).toMatch(/^produced 4 records to 1 partition of "operands-values" /);
    const fromValues = await runCli(at('produce', 'operands-values', '--', '-n'), { input: 'a stdin line\n' });
    expect(fromValues.code, fromValues.stderr).toBe(0);
    expect(await values('operands-values')).toEqual(['-dash', '--literal', '--server', '-5', '-n']);
  });

  it('name the topic of topics create, describe and delete, and the group of groups describe', async () => {
    const created = await runCli(at('topics', 'create', '--partitions', '2', '--', '-lead'));
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toBe('created topic "-lead" with 2 partitions\n');
    const described = await runCli(at('topics', 'describe', '--', '-lead'));
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/^topic {7}-lead\npartitions {2}2\n/);
    const group = await runCli(at('groups', 'describe', '--', '-no-such-group'));
    expect({ code: group.code, stderr: group.stderr }).toEqual({ code: 1, stderr: 'strata: group "-no-such-group" not found\n' });
    const deleted = await runCli(at('topics', 'delete', '--', '-lead'));
    expect(deleted.code, deleted.stderr).toBe(0);
    expect((await shared.admin.listTopics()).map((topic) => topic.name)).not.toContain('-lead');
  });

  it('left over, are refused as unknown arguments rather than dropped', async () => {
    for (const args of [['topics', 'create', '--', 'operands-a', 'operands-b'], ['topics', 'list', '--', '-x']]) {
      const result = await runCli(at(...args));
      expect({ code: result.code, stdout: result.stdout }).toEqual({ code: 2, stdout: '' });
      expect(result.stderr).toBe(`strata: Unknown argument: ${args[args.length - 1]}\n`);
    }
    expect((await shared.admin.listTopics()).map((topic) => topic.name)).not.toContain('operands-a');
  });

  it('are not the value of an option given none before the --', async () => {
    await shared.admin.createTopic('operands-options', { partitions: 1 });
    for (const option of ['--key', '--header']) {
      const result = await runCli(at('produce', 'operands-options', option, '--', 'k=v'));
      expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 2, stderr: `strata: ${option} needs a value (the words after -- are arguments, not option values)\n` });
    }
    expect(await values('operands-options')).toEqual([]);
  });
});
