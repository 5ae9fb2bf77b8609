// Goal: the deployment files pass the checks of the programs that load them, not only this
// repository's reading of them (deploy.test.ts): Prometheus takes prometheus.yml and alerts.yml,
// every alert fires when it should and stays quiet when it should not (deploy/alerts.test.yml,
// promtool's unit tests of rules), a busy broker's /metrics passes promtool's lint, and systemd
// takes strata.service without a warning. Method: promtool (Debian's `prometheus` package) and
// systemd-analyze run on the files, and on the scrape of an in-process broker that has served
// produce, fetch, a refused call and a consumer group.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Long from 'long';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PACKAGE_ROOT } from '../../src/common/package-root.js';
import type { strata } from '../../src/generated/strata.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { notRunnable, prerequisites } from '../helpers/prerequisites.js';
import { type TestBroker, startTestBroker } from '../helpers/test-server.js';

const DEPLOY = join(PACKAGE_ROOT, 'deploy');
const INSTALL = 'apt-get update && apt-get install -y --no-install-recommends prometheus systemd';

const PREREQUISITES = prerequisites(
  'deploy-tools.test.ts',
  'promtool and systemd-analyze',
  [notRunnable('promtool', ['--version']), notRunnable('systemd-analyze', ['--version'])],
  INSTALL,
);

interface Run {
  status: number | null;
  output: string;
}

function run(command: string, args: readonly string[], input?: string): Run {
  const result = spawnSync(command, args, { cwd: PACKAGE_ROOT, input, encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: unknown[];
}

describe('deploy/alerts.test.yml', () => {
  const alerts = (parse(readFileSync(join(DEPLOY, 'alerts.yml'), 'utf8')) as { groups: { rules: { alert?: string }[] }[] }).groups
    .flatMap((group) => group.rules)
    .map((rule) => rule.alert)
    .filter((name): name is string => name !== undefined);
  const tests = parse(readFileSync(join(DEPLOY, 'alerts.test.yml'), 'utf8')) as { rule_files: string[]; tests: { alert_rule_test: AlertTest[] }[] };
  const checks = tests.tests.flatMap((test) => test.alert_rule_test);

  it('loads alerts.yml, and checks every alert both firing and quiet', () => {
    expect(tests.rule_files).toEqual(['alerts.yml']);
    for (const alert of alerts) {
      const own = checks.filter((check) => check.alertname === alert);
      expect(own.some((check) => (check.exp_alerts ?? []).length > 0), `${alert}: no check that it fires`).toBe(true);
      expect(own.some((check) => (check.exp_alerts ?? []).length === 0), `${alert}: no check that it stays quiet`).toBe(true);
    }
    expect(new Set(checks.map((check) => check.alertname))).toEqual(new Set(alerts));
  });

  it('is named in deploy/README.md with the command that runs it', () => {
    expect(readFileSync(join(DEPLOY, 'README.md'), 'utf8')).toContain('promtool test rules deploy/alerts.test.yml');
  });
});

describe.skipIf(PREREQUISITES.skip)('deploy/ files and /metrics, checked by promtool and systemd-analyze', () => {
  it('has its prerequisites: promtool and systemd-analyze', () => {
    PREREQUISITES.require();
  });

  it('prometheus.yml is a Prometheus config whose rule file loads (promtool check config)', () => {
    PREREQUISITES.require();
    // The config names the rule file where the compose setup mounts it; point it at this one.
    const mounted = '/etc/prometheus/alerts.yml';
    const config = readFileSync(join(DEPLOY, 'prometheus.yml'), 'utf8');
    expect(config, `prometheus.yml loads ${mounted}`).toContain(mounted);
    const directory = mkdtempSync(join(tmpdir(), 'strata-promtool-'));
    try {
      const copy = join(directory, 'prometheus.yml');
      writeFileSync(copy, config.replace(mounted, join(DEPLOY, 'alerts.yml')));
      const checked = run('promtool', ['check', 'config', copy]);
      expect(checked.status, checked.output).toBe(0);
      expect(checked.output).toMatch(/SUCCESS: \d+ rules found/);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('alerts.yml passes promtool check rules', () => {
    PREREQUISITES.require();
    const checked = run('promtool', ['check', 'rules', join(DEPLOY, 'alerts.yml')]);
    expect(checked.status, checked.output).toBe(0);
  });

  it("alerts.yml's alerts fire, and stay quiet, as alerts.test.yml expects (promtool test rules)", () => {
    PREREQUISITES.require();
    const tested = run('promtool', ['test', 'rules', join(DEPLOY, 'alerts.test.yml')]);
    expect(tested.status, tested.output).toBe(0);
    expect(tested.output).toContain('SUCCESS');
  });

  it('systemd/strata.service passes systemd-analyze verify without a warning', () => {
    PREREQUISITES.require();
    const unit = join(DEPLOY, 'systemd', 'strata.service');
    const verified = run('systemd-analyze', ['verify', '--man=no', unit]);
    expect(verified.status, verified.output).toBe(0);
    // Unknown keys and bad values are warnings ("Unknown key ..., ignoring"), not failures: a
    // misspelt sandboxing option would silently not apply. Other units the host's systemd loads
    // on the way may warn of their own; only this unit's lines count.
    expect(verified.output.split('\n').filter((line) => line.includes('strata.service'))).toEqual([]);
  });

  describe("a busy broker's /metrics", () => {
    let broker: TestBroker;
    let client: TestClient;

    beforeAll(async () => {
      if (PREREQUISITES.missing !== null) return;
      broker = await startTestBroker();
      client = new TestClient(broker.address);
    });

    afterAll(async () => {
      client?.close();
      await broker?.dispose();
    });

    it('passes promtool check metrics: the only lint is of prom-client\'s own process metrics', async () => {
      PREREQUISITES.require();
      await client.call('admin.createTopic', v1.CreateTopicRequest.create({ name: 'linted', partitions: 2 }));
      const records = ['a', 'b', 'c'].map((value) => v1.Record.create({ key: Buffer.from(value), value: Buffer.from(value) }));
      await client.call('log.produce', v1.ProduceRequest.create({ topic: 'linted', partition: 0, records }));
      await client.call('log.fetch', v1.FetchRequest.create({ topic: 'linted', partition: 0 }));
      await expect(client.call('admin.describeTopic', v1.DescribeTopicRequest.create({ name: 'missing' }))).rejects.toThrow();
      const joined = await client.call<strata.v1.HeartbeatResponse>('groups.heartbeat', v1.HeartbeatRequest.create({ groupId: 'linters', memberEpoch: 0, subscribedTopicNames: ['linted'] }));
      await client.call(
        'groups.commitOffsets',
        v1.CommitOffsetsRequest.create({ groupId: 'linters', memberId: joined.memberId, memberEpoch: joined.memberEpoch, offsets: [v1.OffsetCommit.create({ topic: 'linted', partition: 0, offset: Long.fromNumber(1) })] }),
      );
      const response = await fetch(`http://${broker.metricsAddress!}/metrics`);
      const scrape = await response.text();
      // The scrape has series of every kind the lint looks at: counters, gauges and histograms
      // with labels, of requests, partitions and groups.
      for (const series of ['strata_requests_total{', 'strata_request_duration_seconds_bucket{', 'strata_partition_log_end_offset{', 'strata_group_lag_records{', 'strata_fsync_duration_seconds_bucket{']) {
        expect(scrape, series).toContain(series);
      }
      const linted = run('promtool', ['check', 'metrics'], scrape);
      // 0: no problem; 3: lint problems only (1 would be a scrape promtool cannot parse).
      expect([0, 3], linted.output).toContain(linted.status);
      const problems = linted.output.split('\n').filter((line) => line.trim() !== '');
      // prom-client's default metrics name three gauges nodejs_active_*_total; dashboards
      // for Node.js services expect those names, so they stay. Strata's own pass the lint.
      for (const problem of problems) expect(problem, 'a lint problem outside prom-client\'s process metrics').toMatch(/^(nodejs|process)_[a-z_]+ /);
      expect(problems.filter((line) => line.startsWith('strata_'))).toEqual([]);
    });
  });
});
