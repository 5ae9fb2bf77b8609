// Goal: serve's pre-checks refuse what yargs would misread (two config files, a config flag
// without a path, an empty number in either spelling, a number not in decimal digits, a negated option, an empty metrics
// address from the environment, an empty TLS or tokens file) and leave every other command line alone; method: the
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
    [['serve', '--retentionMs='], '--retention-ms was given an empty value; give a number'],
    [['serve', '--retentionMs', ''], '--retention-ms was given an empty value; give a number'],
    [['serve', '--config', 'a.json', '--retention-ms', '1', '--no-retention-ms'], '--no-retention-ms is not an option: every option of serve takes a value; give --retention-ms one (see strata serve --help)'],
    [['serve', '--no-retentionBytes=true'], '--no-retentionBytes is not an option: every option of serve takes a value; give --retention-bytes one (see strata serve --help)'],
    [['serve', '--no-data-dir'], '--no-data-dir is not an option: every option of serve takes a value; give --data-dir one (see strata serve --help)'],
    [['serve', '--auth-tokens-file', ''], '--auth-tokens-file was given no path; give the file, or leave the option out (without it, no token is asked for)'],
    [['serve', '--tlsCertFile='], '--tls-cert-file was given no path; give the file, or leave the option out (without it, gRPC is served in plaintext)'],
    [['serve', '--tls-key-file', '--listen', '0.0.0.0:50051'], '--tls-key-file was given no path; give the file, or leave the option out (without it, gRPC is served in plaintext)'],
    [['serve', '--tls-client-ca-file'], '--tls-client-ca-file was given no path; give the file, or leave the option out (without it, no client certificate is asked for)'],
    // yargs reads numbers as JavaScript does: 0x10 would be a retention of 16 ms, 1e3 one of 1000.
    [['serve', '--retention-ms', '0x10'], '--retention-ms must be an integer in decimal digits, got "0x10"'],
    [['serve', '--retentionMs=1e3'], '--retention-ms must be an integer in decimal digits, got "1e3"'],
    [['serve', '--segment-bytes', '-0x10'], '--segment-bytes must be an integer in decimal digits, got "-0x10"'],
    [['serve', '--flush-ms', '1.5'], '--flush-ms must be an integer in decimal digits, got "1.5"'],
    // yargs takes these as values too (-.1e1 is -1: keep for ever).
    [['serve', '--retention-ms=-.1e1'], '--retention-ms must be an integer in decimal digits, got "-.1e1"'],
    [['serve', '--offsets-retention-ms', '-.1e1'], '--offsets-retention-ms must be an integer in decimal digits, got "-.1e1"'],
    [['serve', '--retention-ms=--1'], '--retention-ms must be an integer in decimal digits, got "--1"'],
  ])('%j: %s', (argv, expected) => {
    expect(problem(argv)).toBe(expected);
  });

  it('reads the environment of serve only', () => {
    expect(problem(['serve'], { STRATA_CONFIG: '' })).toBe('STRATA_CONFIG is set but empty; give the path of a JSON file of options, or unset it');
    expect(problem(['serve'], { STRATA_FLUSH_MS: '' })).toBe('STRATA_FLUSH_MS is set but empty; give a number, or unset it');
    expect(problem(['serve'], { STRATA_RETENTION_MS: '0x10' })).toBe('STRATA_RETENTION_MS must be an integer in decimal digits, got "0x10"');
    // Digits with spaces around them (a line of an environment file) are their number.
    expect(problem(['serve'], { STRATA_RETENTION_MS: ' 86400000 ' })).toBeNull();
    expect(problem(['serve'], { STRATA_METRICS_LISTEN: '' })).toBe('STRATA_METRICS_LISTEN is set but empty; give host:port, or unset it (--metrics-listen "" turns the probe server off)');
    expect(problem(['serve', '--metrics-listen', '127.0.0.1:9464'], { STRATA_METRICS_LISTEN: '' })).toBeNull();
    expect(problem(['serve'], { STRATA_AUTH_TOKENS_FILE: ' ' })).toBe('STRATA_AUTH_TOKENS_FILE is set but empty; give the path of the file, or unset it (without it, no token is asked for)');
    expect(problem(['serve'], { STRATA_TLS_CLIENT_CA_FILE: '' })).toBe('STRATA_TLS_CLIENT_CA_FILE is set but empty; give the path of the file, or unset it (without it, no client certificate is asked for)');
    expect(problem(['serve', '--auth-tokens-file', 'tokens.json'], { STRATA_AUTH_TOKENS_FILE: '' })).toBeNull();
    expect(problem(['topics', 'list'], { STRATA_CONFIG: '', STRATA_FLUSH_MS: '', STRATA_METRICS_LISTEN: '', STRATA_AUTH_TOKENS_FILE: '' })).toBeNull();
  });

  it('leaves alone other commands, what follows --, a string option left empty, --help and --version', () => {
    expect(problem(['topics', 'create', 't', '--config', 'a=1', '--config', 'b=2'])).toBeNull();
    expect(problem(['serve', '--', '--config', 'a.json', '--config', 'b.json'])).toBeNull();
    expect(problem(['serve', '--metrics-listen', '', '--config', 'a.json'])).toBeNull();
    expect(problem(['serve', '--config', '--help'])).toBeNull();
    expect(problem(['serve', '--retention-ms=', '--version'])).toBeNull();
    // Negative numbers are numbers; an option where the value should be is yargs' to refuse.
    expect(problem(['serve', '--retention-ms', '-1', '--retention-bytes=-1'])).toBeNull();
    expect(problem(['serve', '--retention-ms', '--listen', '127.0.0.1:0'])).toBeNull();
  });
});
