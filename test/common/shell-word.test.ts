// Goal: a path in a command that a message tells an operator to run pastes into a POSIX shell
// as one word, with nothing in it expanded; method: sh itself splits and echoes the words.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shellWord } from '../../src/common/shell-word.js';

describe('shellWord', () => {
  it('leaves a plain path as it is', () => {
    expect(shellWord('/var/lib/strata/topics/orders-v2/0')).toBe('/var/lib/strata/topics/orders-v2/0');
  });

  it('quotes anything a shell would split or expand, so that sh reads back the same one word', () => {
    for (const text of ['/data/my topics/0', '/data/$HOME/`id`/0', "/data/it's/0", '/data/*/0', '/data/a;b|c&d/0', '/data/new\nline']) {
      const words = execFileSync('sh', ['-c', `for word in ${shellWord(text)}; do printf '%s\\0' "$word"; done`]).toString().split('\0').slice(0, -1);
      expect(words, text).toEqual([text]);
    }
  });
});
