// Goal: the developer benchmarks under bench/ end a failed run as `strata` does: one line on
// stderr naming the tool and what failed, no stack trace, exit code 1; method: each compiled
// benchmark (dist/bench/, built by `npm test`) run so that it fails at its first step, its
// temporary directory pointed at a regular file. The assignor benchmark, which has no such
// step, is run in its quick form.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

const run = promisify(execFile);
const directory = temporaryDirectory('strata-developer-bench-test-');
afterAll(() => removeDirectory(directory));
const notADirectory = join(directory, 'a-file');
writeFileSync(notADirectory, '');

/** Runs dist/bench/<name>.js with `args`, TMPDIR set to a file; resolves with its exit code and stderr. */
async function failedRun(name: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const failure = await run(process.execPath, [join(PACKAGE_ROOT, 'dist', 'bench', `${name}.js`), ...args], { timeout: 60_000, env: { ...process.env, TMPDIR: notADirectory, STRATA_LOG_LEVEL: 'error' } }).then(
    () => null,
    (error: { code: number; stderr: string }) => error,
  );
  expect(failure).not.toBeNull();
  return { code: failure!.code, stderr: failure!.stderr };
}

it.each([
  ['broker-bench', ['--records', '1000'], `broker-bench: ENOTDIR: not a directory, mkdtemp '${notADirectory}/strata-bench-XXXXXX'\n`],
  ['groups-bench', [], `groups-bench: ENOTDIR: not a directory, mkdtemp '${notADirectory}/strata-bench-XXXXXX'\n`],
  ['storage-bench', ['--quick', '--dir', notADirectory], `storage-bench: EEXIST: file already exists, mkdir '${notADirectory}'\n`],
])('%s: one line and exit code 1', async (name, args, line) => {
  expect(await failedRun(name, args)).toEqual({ code: 1, stderr: line });
});

it('assignor-bench --quick prints a line per case with both timings', async () => {
  const { stdout } = await run(process.execPath, [join(PACKAGE_ROOT, 'dist', 'bench', 'assignor-bench.js'), '--quick'], { timeout: 60_000 });
  const lines = stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^case +all at once +one join$/);
  expect(lines.slice(1, 3)).toEqual([
    expect.stringMatching(/^same topic: 10 members, 100 partitions \(1 topic, all\) +\d+\.\d ms +\d+\.\d ms$/),
    expect.stringMatching(/^differing: 20 members, 50 partitions \(3 of 10 topics each\) +\d+\.\d ms +\d+\.\d ms$/),
  ]);
  expect(lines[3]).toMatch(/^load average/);
});
