// Goal: serve's pre-checks refuse what yargs would misread (two config files, a config flag
// without a path, an empty number) and leave every other command line alone; method: the
// checks called directly on argument lists (the CLI's exit codes are in errors.test.ts).
import { describe, expect, it } from 'vitest';
import { serveInputProblem } from '../../src/cli/serve-input.js';

const COMMANDS = ['serve', 'topics', 'produce', 'consume'];
const problem = (argv: string[], env: NodeJS.ProcessEnv = {}): string | null => serveInputProblem(argv, env, COMMANDS);

describe('serveInputProblem', () => {
  it.each([
    [['serve', '--config', 'a.json', '--config=b.json'], '--config was given 2 times; it takes one value'],
    [['--log-level', 'debug', 'serve', '--config', 'a.json', '--config', 'b.json'], '--config was given 2 times; it takes one value'],
    [['serve', '--config'], '--config needs the path of a JSON file of options'],
    [['serve', '--config', '-'], '--config needs the path of a JSON file of options'],
    [['serve', '--config='], '--config was given an empty path; give the path of a JSON file of options'],
    [['serve', '--retention-ms', ' '], '--retention-ms was given an empty value; give a number'],
    [['serve', '--segment-bytes='], '--segment-bytes was given an empty value; give a number'],
  ])('%j: %s', (argv, expected) => {
    expect(problem(argv)).toBe(expected);
  });

  it('reads the environment of serve only', () => {
    expect(problem(['serve'], { STRATA_CONFIG: '' })).toBe('STRATA_CONFIG is set but empty; give the path of a JSON file of options, or unset it');
    expect(problem(['serve'], { STRATA_FLUSH_MS: '' })).toBe('STRATA_FLUSH_MS is set but empty; give a number, or unset it');
    expect(problem(['topics', 'list'], { STRATA_CONFIG: '', STRATA_FLUSH_MS: '' })).toBeNull();
  });

  it('leaves alone other commands, what follows --, a string option left empty, --help and --version', () => {
    expect(problem(['topics', 'create', 't', '--config', 'a=1', '--config', 'b=2'])).toBeNull();
    expect(problem(['serve', '--', '--config', 'a.json', '--config', 'b.json'])).toBeNull();
    expect(problem(['serve', '--metrics-listen', '', '--config', 'a.json'])).toBeNull();
    expect(problem(['serve', '--config', '--help'])).toBeNull();
    expect(problem(['serve', '--retention-ms=', '--version'])).toBeNull();
  });
});
