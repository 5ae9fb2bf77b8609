// Goal: the STRATA_* variables a command sees are its own options' (so the strict parser does
// not refuse a variable set for another command, as the Docker image sets STRATA_DATA_DIR for
// `serve`), wherever the command stands among the arguments; method: filterEnvironment on plain
// objects with a table of commands shaped like main.ts's.
import { describe, expect, it } from 'vitest';
import { CLIENT_FLAG_NAMES } from '../../src/cli/client-options.js';
import { BENCH_FLAG_NAMES } from '../../src/cli/commands/bench.js';
import { CONSUME_FLAG_SHORTHANDS } from '../../src/cli/commands/consume.js';
import { commandOf, filterEnvironment, flagVariablesProblem } from '../../src/cli/environment.js';

const OPTIONS_BY_COMMAND = {
  serve: ['config', 'data-dir', 'listen', 'metrics-listen', 'log-level'],
  topics: ['server', 'partitions', 'config'],
  consume: ['server', 'group', 'from'],
};

/** What the Docker image, compose and k8s files set, plus a client setting. */
function deploymentEnvironment(): NodeJS.ProcessEnv {
  return { STRATA_DATA_DIR: '/data', STRATA_LISTEN: '0.0.0.0:50051', STRATA_METRICS_LISTEN: '0.0.0.0:9090', STRATA_LOG_LEVEL: 'info', STRATA_SERVER: 'broker:50051', PATH: '/bin' };
}

describe('filterEnvironment', () => {
  it('keeps only the command\'s own variables when an option and its value come before the command', () => {
    const environment = deploymentEnvironment();
    const unknown = filterEnvironment(['--server', '127.0.0.1:57051', 'topics', 'list'], environment, OPTIONS_BY_COMMAND);
    expect(unknown).toEqual([]);
    expect(environment).toEqual({ STRATA_SERVER: 'broker:50051', PATH: '/bin' });
  });

  it('keeps only the command\'s own variables when the command comes first', () => {
    const environment = deploymentEnvironment();
    filterEnvironment(['serve', '--listen', '127.0.0.1:1'], environment, OPTIONS_BY_COMMAND);
    expect(environment).toEqual({ STRATA_DATA_DIR: '/data', STRATA_LISTEN: '0.0.0.0:50051', STRATA_METRICS_LISTEN: '0.0.0.0:9090', STRATA_LOG_LEVEL: 'info', PATH: '/bin' });
  });

  it('removes and returns variables that name no option, and leaves the rest alone without a command', () => {
    const environment: NodeJS.ProcessEnv = { STRATA_DATADIR: '/data', STRATA_SERVER: 'broker:50051' };
    expect(filterEnvironment(['--help'], environment, OPTIONS_BY_COMMAND)).toEqual(['STRATA_DATADIR']);
    expect(environment).toEqual({ STRATA_SERVER: 'broker:50051' });
  });
});

describe('commandOf', () => {
  it('is the first argument that names a command, not the first without a dash', () => {
    expect(commandOf(['--server', 'consume:1', 'topics', 'list'], Object.keys(OPTIONS_BY_COMMAND))).toBe('topics');
    expect(commandOf(['--server=h:1', 'consume', 'topics'], Object.keys(OPTIONS_BY_COMMAND))).toBe('consume');
    expect(commandOf(['--version'], Object.keys(OPTIONS_BY_COMMAND))).toBeUndefined();
  });
});

describe('flagVariablesProblem', () => {
  it('rewrites true/false, 1/0, yes/no and on/off in any case as yargs reads them, and leaves other variables alone', () => {
    const environment: NodeJS.ProcessEnv = { STRATA_TLS: '1', STRATA_FOLLOW: ' Yes ', STRATA_PRINT_KEY: 'OFF', STRATA_LOCAL: 'false', STRATA_SERVER: '1' };
    expect(flagVariablesProblem(environment, ['consume', 'orders'], ['tls', 'follow', 'print-key', 'local'])).toBeNull();
    expect(environment).toEqual({ STRATA_TLS: 'true', STRATA_FOLLOW: 'true', STRATA_PRINT_KEY: 'false', STRATA_LOCAL: 'false', STRATA_SERVER: '1' });
  });

  it('refuses any other value, an empty one included, naming the variable', () => {
    expect(flagVariablesProblem({ STRATA_TLS: 'maybe' }, ['topics', 'list'], CLIENT_FLAG_NAMES)).toBe('STRATA_TLS must be true or false (1 or 0, yes or no, on or off also do), got "maybe"; set it so, or unset it');
    expect(flagVariablesProblem({ STRATA_FOLLOW: '' }, ['consume', 'orders'], ['follow'])).toBe('STRATA_FOLLOW must be true or false (1 or 0, yes or no, on or off also do), got ""; set it so, or unset it');
  });

  it('leaves alone the variable of a flag given on the command line, which wins over it', () => {
    const environment: NodeJS.ProcessEnv = { STRATA_FOLLOW: 'maybe', STRATA_TLS: 'maybe' };
    expect(flagVariablesProblem(environment, ['consume', 'orders', '--follow', '--no-tls'], ['tls', 'follow'])).toBeNull();
    expect(flagVariablesProblem({ STRATA_PRINT_KEY: 'maybe' }, ['consume', 'orders', '--printKey'], ['print-key'])).toBeNull();
    expect(flagVariablesProblem(environment, ['consume', 'orders', '--', '--follow', '--no-tls'], ['tls', 'follow'])).toMatch(/^STRATA_TLS must be/);
  });

  it("counts a flag's one-letter spelling, alone or in a group, as given", () => {
    expect(flagVariablesProblem({ STRATA_FOLLOW: 'maybe' }, ['consume', 'orders', '-f'], ['follow'], CONSUME_FLAG_SHORTHANDS)).toBeNull();
    expect(flagVariablesProblem({ STRATA_FOLLOW: 'maybe' }, ['consume', 'orders', '-fh'], ['follow'], CONSUME_FLAG_SHORTHANDS)).toBeNull();
    expect(flagVariablesProblem({ STRATA_FOLLOW: 'maybe' }, ['consume', 'orders', '-f=false'], ['follow'], CONSUME_FLAG_SHORTHANDS)).toBeNull();
    expect(flagVariablesProblem({ STRATA_FOLLOW: 'maybe' }, ['consume', 'orders', '-h'], ['follow'], CONSUME_FLAG_SHORTHANDS)).toMatch(/^STRATA_FOLLOW must be/);
    expect(flagVariablesProblem({ STRATA_FOLLOW: 'maybe' }, ['consume', 'orders', '--', '-f'], ['follow'], CONSUME_FLAG_SHORTHANDS)).toMatch(/^STRATA_FOLLOW must be/);
  });

  it("knows each command's flags from their definitions: bench's --records is a count, not a flag", () => {
    expect(CLIENT_FLAG_NAMES).toEqual(['tls']);
    expect([...BENCH_FLAG_NAMES].sort()).toEqual(['local', 'tls']);
    expect(flagVariablesProblem({ STRATA_RECORDS: '500000' }, ['bench', 'produce'], BENCH_FLAG_NAMES)).toBeNull();
  });
});
