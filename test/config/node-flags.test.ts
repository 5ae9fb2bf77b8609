// Goal: every way this project starts the broker passes the broker's V8 flags, and the broker can
// tell when it was started without them; method: read package.json's start script (the
// Dockerfile and systemd unit are checked in test/deploy) and call the check with sample argv.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import { BROKER_NODE_FLAGS, missingBrokerNodeFlags } from '../../src/config/node-flags.js';

describe('broker node flags', () => {
  it('npm start (the broker) and npm run bench (the benchmark client) pass them to node before the script', () => {
    const scripts = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start).toBe(['node', ...BROKER_NODE_FLAGS, 'bin/strata.js', 'serve'].join(' '));
    expect(scripts.bench).toBe(['node', ...BROKER_NODE_FLAGS, 'bin/strata.js', 'bench'].join(' '));
  });

  it('names the flags a process was started without', () => {
    expect(missingBrokerNodeFlags([...BROKER_NODE_FLAGS, '--enable-source-maps'])).toEqual([]);
    expect(missingBrokerNodeFlags([])).toEqual([...BROKER_NODE_FLAGS]);
  });
});
