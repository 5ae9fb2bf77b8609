// Goal: a client repeating a bad request cannot fill the broker's log: each kind of failed
// request (method and Strata's error code, else status code) is logged at most once per 10 s,
// the line counting those left out (told at the end of the 10 s when no line came), with the
// client's address, at info for routine answers (NOT_FOUND), while the metrics still count every
// one; unexpected failures are each logged at error.
// Method: RequestFailureLog with a manual clock, and a real gRPC server with a logger that keeps
// its lines, asked for a missing topic again and again.
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { expect, it, vi } from 'vitest';
import { Broker } from '../../src/broker/broker.js';
import { Admin } from '../../src/client/admin.js';
import { StrataClientError } from '../../src/client/errors.js';
import { ManualClock } from '../../src/common/clock.js';
import { ErrorCode, StrataError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import { GroupCoordinator } from '../../src/groups/group-coordinator.js';
import { StrataGrpcServer } from '../../src/server/grpc-server.js';
import { BrokerMetrics } from '../../src/server/metrics.js';
import { RequestFailureLog } from '../../src/server/request-failure-log.js';
import { toGrpcFailure } from '../../src/server/status.js';
import { rejectedWith } from '../helpers/rejected-with.js';
import { removeDirectory, temporaryDirectory } from '../helpers/test-server.js';

interface Line {
  level: number;
  msg: string;
  method?: string;
  code?: number;
  reason?: string;
  failedSinceLastLine?: number;
  peer?: string;
}

function keptLines(level: string): { lines: Line[]; logger: Logger } {
  const lines: Line[] = [];
  const logger: Logger = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
  return { lines, logger };
}

const notFound = toGrpcFailure(new StrataError(ErrorCode.NOT_FOUND, 'topic "gone" not found'));
const invalid = toGrpcFailure(new StrataError(ErrorCode.INVALID_ARGUMENT, 'partition must be at least 0'));

it('logs each method and code at most once per 10 s, counting the failures left out', () => {
  const { lines, logger } = keptLines('info');
  const clock = new ManualClock();
  const log = new RequestFailureLog(logger, clock);
  const kinds = (): unknown[] => lines.map(({ method, code, failedSinceLastLine }) => ({ method, code, failedSinceLastLine }));
  for (let attempt = 0; attempt < 5; attempt++) {
    log.note('DescribeTopic', notFound, null);
    log.note('Fetch', notFound, null);
    clock.advance(1_000);
  }
  log.note('DescribeTopic', invalid, null);
  expect(kinds()).toEqual([
    { method: 'DescribeTopic', code: status.NOT_FOUND, failedSinceLastLine: 0 },
    { method: 'Fetch', code: status.NOT_FOUND, failedSinceLastLine: 0 },
    { method: 'DescribeTopic', code: status.INVALID_ARGUMENT, failedSinceLastLine: 0 },
  ]);
  expect(lines[0]).toMatchObject({ msg: 'request failed', codeName: 'NOT_FOUND', reason: 'topic "gone" not found' });
  clock.advance(5_000); // 10 s after the first lines
  log.note('DescribeTopic', notFound, null);
  expect(kinds().slice(3)).toEqual([{ method: 'DescribeTopic', code: status.NOT_FOUND, failedSinceLastLine: 4 }]);
  // A routine answer (a lookup of what is not there) at info, a refused argument at warn.
  expect(lines.map(({ level }) => level)).toEqual([30, 30, 40, 30]);
});

it('tells the failures left out at the end of the 10 s, by the latest, when no line came meanwhile', () => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  try {
    const { lines, logger } = keptLines('info');
    const clock = new ManualClock();
    const log = new RequestFailureLog(logger, clock);
    log.note('Fetch', invalid, null, '127.0.0.1:1000');
    for (const port of [1001, 1002, 1003]) {
      clock.advance(1_000);
      log.note('Fetch', invalid, null, `127.0.0.1:${port}`);
    }
    expect(lines.map(({ peer, failedSinceLastLine }) => ({ peer, failedSinceLastLine }))).toEqual([{ peer: '127.0.0.1:1000', failedSinceLastLine: 0 }]);
    clock.advance(7_000);
    vi.advanceTimersByTime(9_000); // the end of the interval of the first line
    expect(lines.map(({ peer, failedSinceLastLine }) => ({ peer, failedSinceLastLine }))).toEqual([
      { peer: '127.0.0.1:1000', failedSinceLastLine: 0 },
      { peer: '127.0.0.1:1003', failedSinceLastLine: 2 },
    ]);
    // A new interval from that line: the next failure within it waits for its end too.
    clock.advance(1_000);
    log.note('Fetch', invalid, null, '127.0.0.1:1004');
    expect(lines).toHaveLength(2);
    clock.advance(9_000);
    vi.advanceTimersByTime(10_000);
    expect(lines.slice(2).map(({ peer, failedSinceLastLine }) => ({ peer, failedSinceLastLine }))).toEqual([{ peer: '127.0.0.1:1004', failedSinceLastLine: 0 }]);
    vi.advanceTimersByTime(60_000);
    expect(lines).toHaveLength(3); // nothing more to tell
  } finally {
    vi.useRealTimers();
  }
});

it("keeps failures of different Strata codes apart when they share a gRPC code: a full disk is not hidden behind a client's record too large", () => {
  const { lines, logger } = keptLines('warn');
  const log = new RequestFailureLog(logger, new ManualClock());
  for (let attempt = 0; attempt < 3; attempt++) log.note('Produce', toGrpcFailure(new StrataError(ErrorCode.RECORD_TOO_LARGE, 'records[0] is too large')), null);
  log.note('Produce', toGrpcFailure(new StrataError(ErrorCode.DISK_FULL, 'the disk is full')), null);
  expect(lines.map(({ code, reason }) => ({ code, reason }))).toEqual([
    { code: status.RESOURCE_EXHAUSTED, reason: 'records[0] is too large' },
    { code: status.RESOURCE_EXHAUSTED, reason: 'the disk is full' },
  ]);
  expect(lines[1]).toMatchObject({ strataCode: 'DISK_FULL', codeName: 'RESOURCE_EXHAUSTED' });
});

it('logs every unexpected failure at error, with its stack', () => {
  const { lines, logger } = keptLines('warn');
  const log = new RequestFailureLog(logger, new ManualClock());
  for (let attempt = 0; attempt < 3; attempt++) log.note('Produce', toGrpcFailure(new TypeError(`bug ${attempt}`)), new TypeError(`bug ${attempt}`));
  expect(lines.map(({ level, msg }) => ({ level, msg }))).toEqual(Array(3).fill({ level: 50, msg: 'request failed unexpectedly' }));
  expect(lines[2]).toMatchObject({ err: { message: 'bug 2', stack: expect.stringContaining('TypeError') } });
});

it('a client asking a real broker for a missing topic again and again gets a line naming it, and every failure is counted', async () => {
  const dataDir = temporaryDirectory('strata-failure-log-');
  const { lines, logger } = keptLines('info');
  const broker = await Broker.open({ dataDir });
  const metrics = new BrokerMetrics();
  const coordinator = new GroupCoordinator(broker, { sessionTimeoutMs: 45_000, heartbeatIntervalMs: 5_000, sessionCheckIntervalMs: 3_600_000 });
  metrics.attach(broker, coordinator);
  const server = await StrataGrpcServer.start(broker, coordinator, { listen: '127.0.0.1:0', maxRequestBytes: 1024 * 1024, produceMemoryBytes: 64 * 1024 * 1024, logger, metrics });
  const admin = new Admin({ server: server.address });
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      expect((await rejectedWith(admin.describeTopic('missing'), StrataClientError)).code).toBe('NOT_FOUND');
    }
    expect((await rejectedWith(admin.createTopic('bad/name', { partitions: 1 }), StrataClientError)).code).toBe('INVALID_ARGUMENT');
    const failed = lines.filter((line) => line.msg === 'request failed');
    expect(failed.map(({ method, code }) => ({ method, code }))).toEqual([
      { method: 'DescribeTopic', code: status.NOT_FOUND },
      { method: 'CreateTopic', code: status.INVALID_ARGUMENT },
    ]);
    expect(failed[0]!.reason).toMatch(/missing/);
    expect(failed.map(({ level }) => level)).toEqual([30, 40]);
    expect(failed[0]!.peer).toMatch(/^(ipv4:)?127\.0\.0\.1:\d+$/);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^strata_requests_total\{method="DescribeTopic",code="NOT_FOUND"\} 20$/m);
  } finally {
    await admin.close();
    await server.shutdown(5_000);
    await coordinator.close();
    await broker.close();
    removeDirectory(dataDir);
  }
});
