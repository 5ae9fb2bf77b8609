// Goal: the first SIGTERM or SIGINT ends `consume` (with and without --group) and `tail` even
// while their reader has stopped reading (`| less` left on its first page, `| sleep`), and a
// group member still commits no further than what stdout took, and leaves; method: the compiled
// CLI run as a child process against a real in-process broker with a topic of 4 MB of lines,
// its stdout left unread until the process has exited (waited for with a deadline), then read.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { type CliProcess, startCli } from '../helpers/cli.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';
import { waitUntil } from '../helpers/wait.js';

const shared = useBrokerWithAdmin({ groupHeartbeatIntervalMs: 500 });
const running: CliProcess[] = [];
const TOPIC = 'unread-output';
/** 1000-byte lines: far more than a pipe and the writer's chunk hold. */
const RECORDS = 4000;

beforeAll(async () => {
  await shared.admin.createTopic(TOPIC, { partitions: 1 });
  const producer = new Producer({ server: shared.broker.address });
  try {
    await Promise.all(Array.from({ length: RECORDS }, (_, index) => producer.send({ topic: TOPIC, value: `${String(index).padStart(4, '0')}${'v'.repeat(995)}` })));
  } finally {
    await producer.close();
  }
});
// Registered after the broker's hooks, so run before its afterAll: the processes go first.
afterAll(() => {
  for (const process of running) process.kill();
});

/** Starts `strata ARGS...` with stdout unread, and returns once its output has started to back up. */
async function startBackedUp(args: string[]): Promise<CliProcess> {
  const command = startCli([...args, '--server', shared.broker.address], { unreadStdout: true });
  running.push(command);
  // Bytes waiting on our side: the rest of the 4 MB waits in the command, which cannot finish.
  await waitUntil(() => command.child.stdout!.readableLength > 0, () => `output from strata ${args.join(' ')}; stderr: ${command.stderr}`, 20_000);
  return command;
}

/** Everything the command's stdout held for the reader, once read to its end. */
async function readAll(command: CliProcess): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of command.child.stdout as Readable) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

describe('a signal while stdout is not read', () => {
  it.each([
    ['SIGTERM', ['consume', TOPIC]],
    ['SIGINT', ['consume', TOPIC, '--follow']],
    ['SIGTERM', ['tail', TOPIC, '-n', String(RECORDS)]],
  ] as const)('%s ends strata %j at once, exit 0', async (signal, args) => {
    const command = await startBackedUp([...args]);
    expect(await command.interrupt(15_000, signal)).toEqual({ code: 0, signal: null });
    expect(command.stderr).toBe('');
    const printed = await readAll(command);
    expect(printed.length).toBeLessThan(RECORDS * 1000);
  });

  it('ends consume --group at once; the member commits no line stdout did not take, and leaves', async () => {
    const group = 'unread-output-group';
    const command = await startBackedUp(['consume', TOPIC, '--group', group, '--follow']);
    expect(await command.interrupt(15_000, 'SIGTERM')).toEqual({ code: 0, signal: null });
    expect(command.stderr).toBe('');
    const wholeLines = (await readAll(command)).split('\n').length - 1;
    const description = await shared.admin.describeGroup(group);
    expect(description.members).toEqual([]);
    const committed = description.partitions[0]?.committedOffset ?? -1;
    expect(committed).toBeLessThanOrEqual(wholeLines);
    expect(committed).toBeLessThan(RECORDS);
  });
});
