// Goal: when `strata produce` fails to send a record, its one error line names the input line
// that was not sent and counts the other records produced without claiming they all came before
// it (sends fail independently, so later lines may go through), stdin it cannot read fails
// rather than producing nothing, and its progress line reads right and is not drawn over a line
// being typed; method: the produce command from the sources run through yargs against a real
// in-process broker, sendFailureLine and progressLine on counts, checkReadableInput on
// descriptors, showsProgress on the kinds of stdin and stderr.
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yargs from 'yargs';
import { describe, expect, it } from 'vitest';
import { ACKS_OPTION } from '../../src/cli/client-options.js';
import { checkReadableInput, produceCommand, progressLine, sendFailureLine, showsProgress } from '../../src/cli/commands/produce.js';
import { useBrokerWithAdmin } from '../helpers/shared-broker.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

const shared = useBrokerWithAdmin();

/** Runs `strata ARGS...` as main.ts does, failures thrown rather than printed. */
function strata(args: string[]): Promise<unknown> {
  const parser = produceCommand(yargs().strict().exitProcess(false)).fail((message, error) => {
    throw error ?? new Error(message);
  });
  return parser.parseAsync(args);
}

describe('produce with a record the topic cannot take', () => {
  it('names the line not sent, and counts the records produced before and after it', async () => {
    const topic = 'produce-too-large';
    await shared.admin.createTopic(topic, { partitions: 1, configs: { 'max.message.bytes': '2000' } });
    const failed = await strata(['produce', topic, 'a', 'x'.repeat(3000), 'c', '--server', shared.broker.address]).then(
      () => null,
      (error: Error) => error.message,
    );
    expect(failed).toMatch(
      /^input line 2 \(3,000 bytes\) was not sent: a record of at least \d+ bytes \(in a batch of its own\) exceeds topic "produce-too-large"'s max\.message\.bytes of 2000; 2 other records were produced \(1 before it, 1 after it\)$/,
    );
    const description = await shared.admin.describeTopic(topic);
    expect(description.partitions[0]!.highWatermark).toBe(2); // `a` and `c`
  });
});

describe('--acks', () => {
  it("takes Kafka's numbers for the levels, and produces with them", async () => {
    const parse = (value: string): unknown => yargs().option('acks', ACKS_OPTION).strict().parseSync(['--acks', value]).acks;
    expect(['-1', '1', '0', 'all', 'leader', 'none'].map(parse)).toEqual(['all', 'leader', 'none', 'all', 'leader', 'none']);
    const topic = 'produce-kafka-acks';
    await shared.admin.createTopic(topic, { partitions: 1 });
    await strata(['produce', topic, 'a', 'b', '--acks', '-1', '--server', shared.broker.address]);
    await strata(['produce', topic, 'c', '--acks', '1', '--server', shared.broker.address]);
    const description = await shared.admin.describeTopic(topic);
    expect(description.partitions[0]!.highWatermark).toBe(3);
  });
});

describe('sendFailureLine', () => {
  const send = { lineNumber: 7, line: 'héllo', recordNumber: 5, error: null };

  it('counts the other failed records and the produced ones on either side', () => {
    expect(sendFailureLine(new Error('topic "t" not found'), send, 3, 10)).toBe(
      'input line 7 (6 bytes) and 2 other records were not sent: topic "t" not found; 10 other records were produced (4 before it, 6 after it)',
    );
  });

  it('says so when nothing else was produced', () => {
    expect(sendFailureLine(new Error('refused; it was not sent'), { ...send, recordNumber: 1 }, 1, 0)).toBe('input line 7 (6 bytes) was not sent: refused; no other record was produced');
  });

  it('counts one byte as one byte', () => {
    expect(sendFailureLine(new Error('refused'), { ...send, line: 'x', recordNumber: 1 }, 1, 0)).toBe('input line 7 (1 byte) was not sent: refused; no other record was produced');
  });
});

describe('checkReadableInput', () => {
  it('refuses a directory on stdin, which Node.js would read as empty input', () => {
    const directory = temporaryDirectory('strata-produce-');
    const descriptor = openSync(directory, 'r');
    try {
      expect(() => checkReadableInput(descriptor)).toThrow(new Error('cannot read stdin: EISDIR (illegal operation on a directory)'));
    } finally {
      closeSync(descriptor);
      removeDirectory(directory);
    }
  });

  it('accepts a file', () => {
    const directory = temporaryDirectory('strata-produce-');
    writeFileSync(join(directory, 'input'), 'a\n');
    const descriptor = openSync(join(directory, 'input'), 'r');
    try {
      expect(() => checkReadableInput(descriptor)).not.toThrow();
    } finally {
      closeSync(descriptor);
      removeDirectory(directory);
    }
  });
});

describe('the progress line', () => {
  it('is drawn on a terminal, unless stdin is read from a terminal, where it would cover the line being typed', () => {
    expect(showsProgress(true, false)).toBe(true);
    expect(showsProgress(true, true)).toBe(false);
    expect(showsProgress(false, false)).toBe(false);
  });

  it('counts one record as one record', () => {
    expect(progressLine(1, 1, 2)).toBe('1 record acknowledged, 0 in flight (1 records/s)');
    expect(progressLine(12_000, 10_000, 2)).toBe('10,000 records acknowledged, 2,000 in flight (5,000 records/s)');
  });
});
