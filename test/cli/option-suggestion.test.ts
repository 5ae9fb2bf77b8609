// Goal: a misspelt option name gets the option it most likely meant, and a name meant for
// something else gets no guess; method: meantOption on the names of serve's options, as the
// config file and the command line both ask it.
import { describe, expect, it } from 'vitest';
import { SERVE_OPTIONS } from '../../src/config/broker-options.js';
import { meantOption } from '../../src/cli/option-suggestion.js';

const SERVE = Object.keys(SERVE_OPTIONS);

describe('meantOption', () => {
  it.each([
    ['retention_ms', 'retention-ms'],
    ['RETENTION_MS', 'retention-ms'],
    ['retention.ms', 'retention-ms'],
    ['retentionMS', 'retention-ms'],
    ['retnetion-ms', 'retention-ms'], // two letters swapped
    ['retention-m', 'retention-ms'], // one missing
    ['data-dirr', 'data-dir'], // one extra
    ['lissten', 'listen'],
    ['log-levl', 'log-level'],
  ])('%s: %s', (name, meant) => {
    expect(meantOption(name, SERVE)).toBe(meant);
  });

  it.each([['retention-days'], ['verbose'], ['port'], ['x']])('%s: no guess', (name) => {
    expect(meantOption(name, SERVE)).toBeUndefined();
  });

  it('takes one edit at most in a short name: two leave too little of it', () => {
    expect(meantOption('cuont', ['count', 'from'])).toBe('count');
    expect(meantOption('fmor', ['count', 'from'])).toBeUndefined();
    expect(meantOption('to', ['tls'])).toBeUndefined();
  });
});
