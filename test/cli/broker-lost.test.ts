// Goal: what `consume`, `tail` and `produce` say when the broker they were using dies (kill -9):
// a group member stopped with Ctrl-C afterwards exits 0 when the group had already committed
// what it printed (its final commit, of the same positions, cannot reach the broker and loses
// nothing); a tail that loses its broker says so, waits for it and follows on once it is back;
// a produce says so too, resends once it is back, and produces every line once; method: the
// compiled CLI run as child processes against a broker run as a child process itself
// (spawnBroker), killed with SIGKILL and started again on its address, awaited with deadlines.
import { readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/admin.js';
import { Producer } from '../../src/client/producer.js';
import { type CliProcess, startCli } from '../helpers/cli.js';
import { type BrokerProcess, removeDirectory, spawnBroker, temporaryDirectory } from '../helpers/test-server.js';
import { waitUntil } from '../helpers/wait.js';
import { LOG_SUFFIX, RECOVERY_CHECKPOINT_FILE, partitionDirectory } from '../../src/storage/file-names.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A broker process with topic `topic` holding the records `values`, and an Admin client of it. */
async function brokerWith(topic: string, values: string[]): Promise<{ broker: BrokerProcess; admin: Admin; dataDir: string }> {
  const dataDir = temporaryDirectory();
  cleanups.push(() => removeDirectory(dataDir));
  const broker = await spawnBroker(dataDir, ['--group-heartbeat-interval-ms', '500']);
  cleanups.push(async () => {
    if (broker.child.exitCode === null && broker.child.signalCode === null) broker.child.kill('SIGKILL');
    await broker.exited;
  });
  const admin = new Admin({ server: broker.address });
  cleanups.push(() => admin.close());
  await admin.createTopic(topic, { partitions: 1 });
  const producer = new Producer({ server: broker.address });
  try {
    await Promise.all(values.map((value) => producer.send({ topic, value })));
  } finally {
    await producer.close();
  }
  return { broker, admin, dataDir };
}

function started(args: string[]): CliProcess {
  const command = startCli(args);
  cleanups.push(() => command.kill());
  return command;
}

async function killBroker(broker: BrokerProcess): Promise<void> {
  broker.child.kill('SIGKILL');
  expect(await broker.exited).toEqual({ code: null, signal: 'SIGKILL' });
}

describe('the broker killed under a running command', () => {
  it('consume --group --follow, then Ctrl-C: exit 0 and nothing said, the printed records having been committed', async () => {
    const { broker, admin } = await brokerWith('lost-group', ['a', 'b', 'c']);
    const member = started(['consume', 'lost-group', '--group', 'lost', '--follow', '--server', broker.address]);
    await member.waitForLineCount(3, 20_000);
    await waitUntil(async () => (await admin.fetchOffsets('lost', ['lost-group']))[0]?.offset === 3, () => `the commit of the 3 records printed; stderr: ${member.stderr}`, 20_000);
    // FetchOffsets shows a commit once LMDB has it, a moment before its flush and its answer:
    // killed then, the broker would take the answer with it, and the member would rightly say
    // it does not know its positions committed. A commit made now is answered only after that
    // flush, so once it is, the member's answer has been sent.
    await admin.resetOffsets('lost-flushed', 'lost-group', 'earliest');
    await killBroker(broker);
    expect(await member.interrupt(30_000)).toEqual({ code: 0, signal: null });
    expect(member.stderr).toBe('');
    expect(member.lines).toEqual(['a', 'b', 'c']);
  });

  it('tail: says it lost the broker, waits for it, and follows on from where it was once it is back on its address', async () => {
    const { broker, dataDir } = await brokerWith('lost-tail', ['a']);
    const tail = started(['tail', 'lost-tail', '--server', broker.address]);
    await tail.waitForLine((line) => line === 'a', 20_000);
    await killBroker(broker);
    await waitUntil(() => tail.stderr.includes('strata: lost the broker'), () => `the line saying the broker was lost; stderr: ${tail.stderr}`, 30_000);
    expect(tail.stderr).toMatch(new RegExp(`^strata: lost the broker at ${broker.address.replace(/\./g, '\\.')} \\([^()]*\\); following lost-tail again once it is back\\n$`));
    const again = await spawnBroker(dataDir, ['--listen', broker.address]);
    cleanups.push(async () => {
      if (again.child.exitCode === null && again.child.signalCode === null) again.child.kill('SIGKILL');
      await again.exited;
    });
    const producer = new Producer({ server: again.address });
    try {
      await producer.send({ topic: 'lost-tail', value: 'b' });
    } finally {
      await producer.close();
    }
    await tail.waitForLine((line) => line === 'b', 30_000);
    expect(await tail.interrupt(30_000)).toEqual({ code: 0, signal: null });
    expect(tail.lines).toEqual(['a', 'b']);
    expect(tail.stderr.split('\n').slice(1)).toEqual(['strata: the broker is back; following lost-tail again', '']);
  });

  // A power loss under flush=interval took records the tail had printed, and the restarted
  // broker gives their offsets out again: the tail went on at the offset it had reached, past the
  // log's new end, got OUT_OF_RANGE and exited 1.
  it('tail: when the broker comes back with records it had printed lost, says so and follows from the new end', async () => {
    const { broker, admin, dataDir } = await brokerWith('cut-tail', []);
    await admin.alterTopicConfigs('cut-tail', { flush: 'interval', 'flush.ms': '3600000' });
    const partitionDir = partitionDirectory(dataDir, 'cut-tail', 0);
    const logFile = (): string => join(partitionDir, readdirSync(partitionDir).find((file) => file.endsWith(LOG_SUFFIX))!);
    const send = async (server: string, values: string[]): Promise<void> => {
      const producer = new Producer({ server });
      try {
        for (const value of values) await producer.send({ topic: 'cut-tail', value });
      } finally {
        await producer.close();
      }
    };
    await send(broker.address, ['a']);
    const keptBytes = statSync(logFile()).size; // what the power loss leaves on disk
    await send(broker.address, ['b', 'c']);
    const tail = started(['tail', 'cut-tail', '--server', broker.address]);
    await tail.waitForLine((line) => line === 'c', 20_000);
    await killBroker(broker);
    truncateSync(logFile(), keptBytes);
    rmSync(join(partitionDir, RECOVERY_CHECKPOINT_FILE), { force: true });
    const again = await spawnBroker(dataDir, ['--listen', broker.address]);
    cleanups.push(async () => {
      if (again.child.exitCode === null && again.child.signalCode === null) again.child.kill('SIGKILL');
      await again.exited;
    });
    const notice = 'strata: cut-tail-0 now ends at offset 1, before offset 3 that was printed up to (records lost in a crash, or cut by a repair); following from 1';
    await waitUntil(() => tail.stderr.includes(notice), () => `the notice of the cut log; stderr: ${tail.stderr}`, 30_000);
    await send(again.address, ['x', 'y']);
    await tail.waitForLine((line) => line === 'y', 30_000);
    expect(await tail.interrupt(30_000)).toEqual({ code: 0, signal: null });
    expect(tail.lines).toEqual(['a', 'b', 'c', 'x', 'y']);
  });

  it('produce: says it lost the broker, resends once it is back, says so, and every line is produced once', async () => {
    const { broker, admin, dataDir } = await brokerWith('lost-produce', []);
    const producer = startCli(['produce', 'lost-produce', '--server', broker.address], { input: 'open' });
    cleanups.push(() => producer.kill());
    producer.child.stdin!.write('a\n');
    await waitUntil(async () => (await admin.describeTopic('lost-produce')).partitions[0]!.highWatermark === 1, 'the first line produced', 20_000);
    await killBroker(broker);
    producer.child.stdin!.write('b\n');
    await waitUntil(() => producer.stderr.includes('strata: lost the broker'), () => `the line saying the broker was lost; stderr: ${producer.stderr}`, 30_000);
    // The reason is the transport's own, not nested in another "cannot reach" (...).
    expect(producer.stderr).toMatch(
      new RegExp(`^strata: lost the broker at ${broker.address.replace(/\./g, '\\.')} \\([^()]*\\); sending the records not yet acknowledged again once it is back \\(each is given up 120 s after it was read\\)\\n$`),
    );
    const again = await spawnBroker(dataDir, ['--listen', broker.address]);
    cleanups.push(async () => {
      if (again.child.exitCode === null && again.child.signalCode === null) again.child.kill('SIGKILL');
      await again.exited;
    });
    await waitUntil(() => producer.stderr.includes('the broker is back'), () => `the line saying the broker is back; stderr: ${producer.stderr}`, 30_000);
    producer.child.stdin!.end('c\n');
    expect(await producer.exitWithin(30_000)).toEqual({ code: 0, signal: null });
    const lines = producer.stderr.split('\n');
    expect(lines[1]).toBe('strata: the broker is back; producing again');
    expect(lines[2]).toMatch(/^produced 3 records to 1 partition of "lost-produce" in /);
    const consumed = startCli(['consume', 'lost-produce', '--server', again.address]);
    expect(await consumed.exitWithin(20_000)).toEqual({ code: 0, signal: null });
    expect(consumed.lines).toEqual(['a', 'b', 'c']);
  });
});
