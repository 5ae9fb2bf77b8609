// Goal: show that the broker, killed with SIGKILL at arbitrary moments while producers with
// acks=ALL have several requests in flight, never loses, alters, duplicates or reorders an
// acknowledged record, and keeps each partition's offsets contiguous from 0; method: run the real
// CLI (`strata serve`, spawnBroker) on one data directory, produce keyed records (50 per request)
// to a 3-partition topic through concurrent unary Produce calls and a pipelined ProduceStream,
// record every acknowledged (partition, offset range, content), SIGKILL the process after a
// seeded-random number of acknowledgements (12 kills), restart it on the same directory, fetch
// every partition from offset 0 and check it against what was acknowledged, then keep producing.
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import Long from 'long';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { partitionForKey } from '../../src/broker/partitioner.js';
import type { strata } from '../../src/generated/strata.js';
import { TestClient, v1 } from '../helpers/grpc-client.js';
import { mulberry32, seedMessage, testSeed } from '../helpers/seeded-random.js';
import { type BrokerProcess, removeDirectory, spawnBroker, temporaryDirectory } from '../helpers/test-server.js';

const SEED = testSeed('crash-loop.test.ts');
const at = seedMessage(SEED);

const TOPIC = 'crash-loop';
const PARTITIONS = 3;
const KILLS = 12;
const RECORDS_PER_REQUEST = 50;
const UNARY_WORKERS = 3;
/** Requests the ProduceStream keeps in flight. */
const STREAM_WINDOW = 4;
/** Small segments, so rolls happen (and get interrupted) during the run. */
const BROKER_ARGS = ['--segment-bytes', String(128 * 1024), '--log-level', 'info'];
/**
 * Work budget for the kill rounds. Not an assertion: when the machine is slow and less than
 * ~1 s per remaining round is left, rounds kill after at most 3 acknowledgements, so the file
 * stays well under 40 s.
 */
const BUDGET_MS = 24_000;
/** Safety net: a round whose kill target is never reached is killed after this long anyway. */
const ROUND_LIMIT_MS = 8_000;
const TIMESTAMP_BASE = 1_700_000_000_000;

interface ExpectedRecord {
  id: number;
  partition: number;
  key: Buffer;
  value: Buffer | null;
  headers: { key: string; value: Buffer | null }[];
  timestamp: number;
}

/** Everything the producer did and saw, across rounds. */
class Ledger {
  /** Every record ever sent (acknowledged or not), by id. */
  readonly sent = new Map<number, ExpectedRecord>();
  /** Per partition: offset -> id of the acknowledged record there. */
  readonly acked: Map<number, number>[] = Array.from({ length: PARTITIONS }, () => new Map());
  /** Per partition: the ids at each offset seen by the last verification (a recovered log). */
  observed: number[][] = Array.from({ length: PARTITIONS }, () => []);
  nextId = 0;
  ackedRequests = 0;
  failedRequests = 0;
  /** Server misbehaviour seen while producing (checked after each round). */
  readonly problems: string[] = [];
}

function makeRequest(ledger: Ledger, random: () => number, correlationId: number): { request: strata.v1.ProduceRequest; groups: Map<number, ExpectedRecord[]> } {
  const records: strata.v1.Record[] = [];
  const groups = new Map<number, ExpectedRecord[]>();
  for (let index = 0; index < RECORDS_PER_REQUEST; index++) {
    const id = ledger.nextId++;
    // Mostly a small pool of hot keys (so every partition gets records), sometimes a fresh one.
    const key = Buffer.from(random() < 0.8 ? `user-${Math.floor(random() * 40)}` : `unique-${id}-${Math.floor(random() * 1e9)}`);
    let value: Buffer | null = null;
    if (random() >= 0.04) {
      const padding = Buffer.alloc(Math.floor(random() * 160));
      for (let byte = 0; byte < padding.length; byte++) padding[byte] = Math.floor(random() * 256);
      value = Buffer.concat([Buffer.from(`id=${id};`), padding]);
    }
    const headers: ExpectedRecord['headers'] = [{ key: 'id', value: Buffer.from(String(id)) }];
    if (random() < 0.1) headers.push({ key: 'null-header', value: null });
    const partition = partitionForKey(key, PARTITIONS);
    const expected: ExpectedRecord = { id, partition, key, value, headers, timestamp: TIMESTAMP_BASE + id };
    ledger.sent.set(id, expected);
    let group = groups.get(partition);
    if (group === undefined) groups.set(partition, (group = []));
    group.push(expected);
    records.push(
      v1.Record.create({
        key,
        value,
        headers: headers.map((header) => v1.Header.create(header)),
        timestamp: Long.fromNumber(expected.timestamp),
      }),
    );
  }
  // acks is left at its default, ACKS_ALL.
  return { request: v1.ProduceRequest.create({ topic: TOPIC, records, correlationId: Long.fromNumber(correlationId, true) }), groups };
}

/** Books an acknowledgement: each batch must cover exactly the request's records for its partition. */
function recordAck(ledger: Ledger, response: strata.v1.ProduceResponse, groups: Map<number, ExpectedRecord[]>, what: string): void {
  ledger.ackedRequests++;
  const partitions = response.batches.map((batch) => batch.partition).sort();
  if (JSON.stringify(partitions) !== JSON.stringify([...groups.keys()].sort())) {
    ledger.problems.push(`${what}: acknowledged partitions ${JSON.stringify(partitions)}, expected ${JSON.stringify([...groups.keys()].sort())}`);
    return;
  }
  for (const batch of response.batches) {
    const group = groups.get(batch.partition)!;
    const base = Long.fromValue(batch.baseOffset).toNumber();
    const last = Long.fromValue(batch.lastOffset).toNumber();
    if (last - base + 1 !== group.length || base < 0 || batch.duplicate) {
      ledger.problems.push(`${what}: partition ${batch.partition} acknowledged ${base}..${last} (duplicate ${batch.duplicate}) for ${group.length} records`);
      continue;
    }
    for (let index = 0; index < group.length; index++) {
      const offset = base + index;
      const previous = ledger.acked[batch.partition]!.get(offset);
      if (previous !== undefined) {
        ledger.problems.push(`${what}: partition ${batch.partition} offset ${offset} acknowledged twice (records ${previous} and ${group[index]!.id})`);
      }
      ledger.acked[batch.partition]!.set(offset, group[index]!.id);
    }
  }
}

interface KillPlan {
  /** SIGKILL once this many requests were acknowledged in the round (0: right after starting). */
  afterAcks: number;
  /** Extra delay between reaching the target and the kill (0: in the same tick). */
  delayMs: number;
}

/**
 * Produces on `broker` with UNARY_WORKERS concurrent unary calls and one ProduceStream with
 * STREAM_WINDOW requests in flight, SIGKILLs the process as `plan` says, and returns once every
 * request has either been acknowledged or failed and the process has exited.
 */
async function produceUntilKilled(broker: BrokerProcess, ledger: Ledger, random: () => number, plan: KillPlan, what: string): Promise<void> {
  const client = new TestClient(broker.address);
  // Connect first, so an early kill lands while appends are under way, not during the handshake.
  await client.call('log.listOffsets', v1.ListOffsetsRequest.create({ topic: TOPIC, partition: 0 }));
  let killSent = false;
  let killScheduled = false;
  let roundAcks = 0;
  let correlation = 0;
  const kill = (): void => {
    if (killSent) return;
    killSent = true;
    broker.child.kill('SIGKILL');
  };
  const scheduleKill = (): void => {
    if (killScheduled) return;
    killScheduled = true;
    if (plan.delayMs === 0) kill();
    else setTimeout(kill, plan.delayMs);
  };
  const onAck = (): void => {
    roundAcks++;
    if (roundAcks >= plan.afterAcks) scheduleKill();
  };
  const safety = setTimeout(() => {
    ledger.problems.push(`${what}: only ${roundAcks} of ${plan.afterAcks} acknowledgements within ${ROUND_LIMIT_MS} ms; killed anyway`);
    kill();
  }, ROUND_LIMIT_MS);

  const unaryWorker = async (worker: number): Promise<void> => {
    while (!killSent) {
      const { request, groups } = makeRequest(ledger, random, correlation++);
      try {
        const response = await client.call<strata.v1.ProduceResponse>('log.produce', request, 15_000);
        recordAck(ledger, response, groups, `${what}, unary worker ${worker}`);
        onAck();
      } catch (error) {
        ledger.failedRequests++;
        if (!killSent) ledger.problems.push(`${what}: unary produce failed before the kill: ${(error as ServiceError).code} ${(error as Error).message}`);
        return;
      }
    }
  };

  const streamWorker = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const stream = (client.log as unknown as { produceStream(): ClientDuplexStream<strata.v1.ProduceRequest, strata.v1.ProduceResponse> }).produceStream();
      const pending = new Map<string, Map<number, ExpectedRecord[]>>();
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        ledger.failedRequests += pending.size;
        resolve();
      };
      const sendOne = (): void => {
        const { request, groups } = makeRequest(ledger, random, correlation++);
        pending.set(Long.fromValue(request.correlationId).toString(), groups);
        stream.write(request);
      };
      const refill = (): void => {
        while (!killSent && pending.size < STREAM_WINDOW) sendOne();
      };
      stream.on('data', (response: strata.v1.ProduceResponse) => {
        const id = Long.fromValue(response.correlationId).toString();
        const groups = pending.get(id);
        if (groups === undefined) {
          ledger.problems.push(`${what}: ProduceStream answered unknown correlation id ${id}`);
          return;
        }
        pending.delete(id);
        if (response.error) {
          ledger.failedRequests++;
          if (!killSent) ledger.problems.push(`${what}: ProduceStream request ${id} failed before the kill: ${response.error.code} ${response.error.message}`);
        } else {
          recordAck(ledger, response, groups, `${what}, stream request ${id}`);
          onAck();
        }
        refill();
      });
      stream.on('error', (error: ServiceError) => {
        if (!killSent) ledger.problems.push(`${what}: ProduceStream failed before the kill: ${error.code} ${error.message}`);
        finish();
      });
      stream.on('end', finish);
      refill();
    });

  const workers = [streamWorker(), ...Array.from({ length: UNARY_WORKERS }, (_, worker) => unaryWorker(worker))];
  if (plan.afterAcks === 0) scheduleKill();
  await Promise.all(workers);
  clearTimeout(safety);
  client.close();
  const { code, signal } = await broker.exited;
  expect(signal, at(`${what}: the broker dies of our SIGKILL (exit code ${code}); log: ${broker.logLines.slice(-5).join('\n')}`)).toBe('SIGKILL');
}

function describeRecord(record: { key: Uint8Array | null; value: Uint8Array | null; headers: { key: string; value: Uint8Array | null }[]; timestamp: number }): string {
  const bytes = (value: Uint8Array | null) => (value === null ? 'null' : Buffer.from(value).toString('hex').slice(0, 48));
  return JSON.stringify({
    key: bytes(record.key),
    value: bytes(record.value),
    headers: record.headers.map((header) => [header.key, bytes(header.value)]),
    timestamp: record.timestamp,
  });
}

/** Reads partition `partition` from offset 0 to its high watermark. */
async function readPartition(client: TestClient, partition: number, what: string): Promise<strata.v1.Record[]> {
  const first = await client.call<strata.v1.ListOffsetsResponse>('log.listOffsets', v1.ListOffsetsRequest.create({ topic: TOPIC, partition, position: v1.StartPosition.create({ latest: true }) }));
  const end = Long.fromValue(first.highWatermark).toNumber();
  expect(Long.fromValue(first.logStartOffset).toNumber(), at(`${what}: partition ${partition} log start offset`)).toBe(0);
  const records: strata.v1.Record[] = [];
  let offset = 0;
  while (offset < end) {
    const fetched = await client.call<strata.v1.FetchResponse>('log.fetch', v1.FetchRequest.create({ topic: TOPIC, partition, offset: Long.fromNumber(offset) }));
    expect(fetched.records.length, at(`${what}: fetch of partition ${partition} at ${offset} below the high watermark ${end} returns records`)).toBeGreaterThan(0);
    records.push(...fetched.records);
    offset = Long.fromValue(fetched.nextOffset).toNumber();
  }
  return records;
}

/**
 * Checks the restarted broker's log against the ledger: contiguous offsets from 0, every record
 * one the producer sent, with its content, on its key's partition, at most once; every
 * acknowledged record at its acknowledged offset; everything seen by the last verification
 * still at the same offset. Returns the log end of each partition.
 */
async function verify(address: string, ledger: Ledger, what: string): Promise<number[]> {
  const client = new TestClient(address);
  try {
    const description = await client.call<strata.v1.TopicDescription>('admin.describeTopic', v1.DescribeTopicRequest.create({ name: TOPIC }));
    expect(description.partitions.map((partition) => partition.error), at(`${what}: no partition is fenced`)).toEqual(Array(PARTITIONS).fill(''));
    const problems: string[] = [];
    const problem = (message: string) => {
      if (problems.length < 20) problems.push(message);
    };
    const seen = new Map<number, string>();
    const observed: number[][] = [];
    const ends: number[] = [];
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const records = await readPartition(client, partition, what);
      const ids: number[] = [];
      records.forEach((record, index) => {
        const offset = Long.fromValue(record.offset).toNumber();
        const where = `partition ${partition} offset ${offset}`;
        if (offset !== index) problem(`${where}: found at position ${index}; offsets are not contiguous from 0`);
        const idHeader = record.headers.find((header) => header.key === 'id');
        const id = idHeader?.value ? Number(Buffer.from(idHeader.value).toString()) : NaN;
        ids.push(id);
        const expected = ledger.sent.get(id);
        const actual = {
          key: record.key ?? null,
          value: record.value ?? null,
          headers: record.headers.map((header) => ({ key: header.key, value: header.value ?? null })),
          timestamp: Long.fromValue(record.timestamp).toNumber(),
        };
        if (expected === undefined) {
          problem(`${where}: a record the producer never sent: ${describeRecord(actual)}`);
          return;
        }
        if (seen.has(id)) problem(`${where}: record ${id} appears again (first at ${seen.get(id)})`);
        seen.set(id, where);
        if (expected.partition !== partition) problem(`${where}: record ${id} belongs on partition ${expected.partition} (murmur2 of its key)`);
        if (describeRecord(actual) !== describeRecord(expected) || !Buffer.from(actual.value ?? []).equals(expected.value ?? Buffer.alloc(0))) {
          problem(`${where}: record ${id} differs from what was sent: ${describeRecord(actual)} vs ${describeRecord(expected)}`);
        }
      });
      for (const [offset, id] of ledger.acked[partition]!) {
        if (offset >= records.length) problem(`partition ${partition}: acknowledged record ${id} at offset ${offset} is missing (the log ends at ${records.length})`);
        else if (ids[offset] !== id) problem(`partition ${partition} offset ${offset}: holds record ${ids[offset]}, but record ${id} was acknowledged there`);
      }
      ledger.observed[partition]!.forEach((id, offset) => {
        if (ids[offset] !== id) problem(`partition ${partition} offset ${offset}: held record ${id} after the previous restart, now ${ids[offset] ?? 'nothing'}`);
      });
      observed.push(ids);
      ends.push(records.length);
    }
    expect(problems, at(`${what}: log contents`)).toEqual([]);
    ledger.observed = observed;
    return ends;
  } finally {
    client.close();
  }
}

describe(`broker crash loop: SIGKILL while producing with acks=ALL (seed ${SEED})`, () => {
  let dataDir: string;
  let broker: BrokerProcess | null = null;

  beforeAll(() => {
    // spawnBroker hands this process's environment to `strata serve`, which takes STRATA_*
    // variables as options and refuses unknown ones ("Unknown argument: testSeed"): hide the seed.
    vi.stubEnv('STRATA_TEST_SEED', undefined);
    dataDir = temporaryDirectory('strata-crash-loop-');
  });

  afterAll(async () => {
    if (broker !== null && broker.child.exitCode === null && broker.child.signalCode === null) {
      broker.child.kill('SIGKILL');
      await broker.exited;
    }
    if (dataDir !== undefined) removeDirectory(dataDir);
    vi.unstubAllEnvs();
  });

  it(`keeps every acknowledged record, once, at its offset, over ${KILLS} SIGKILLs`, async () => {
    const random = mulberry32(SEED);
    const ledger = new Ledger();
    broker = await spawnBroker(dataDir, BROKER_ARGS);
    const admin = new TestClient(broker.address);
    try {
      await admin.call('admin.createTopic', v1.CreateTopicRequest.create({ name: TOPIC, partitions: PARTITIONS }));
    } finally {
      admin.close();
    }
    const summary: string[] = [];
    const startedAt = Date.now();
    for (let round = 1; round <= KILLS; round++) {
      const roundStartedAt = Date.now();
      // Mostly right after a random number of acknowledgements (in the same tick or a few ms
      // later); every fifth round 2 to 100 ms after the first requests went out.
      const early = round % 5 === 0;
      const plan: KillPlan = {
        afterAcks: early ? 0 : 1 + Math.floor(random() * 30),
        delayMs: early ? 2 + Math.floor(random() * 100) : random() < 0.5 ? 0 : 1 + Math.floor(random() * 5),
      };
      const perRoundLeft = (BUDGET_MS - (roundStartedAt - startedAt)) / (KILLS - round + 1);
      if (perRoundLeft < 1_000) plan.afterAcks = Math.min(plan.afterAcks, 3);
      const what = `kill ${round} (after ${plan.afterAcks} acks + ${plan.delayMs} ms)`;
      const before = { acked: ledger.ackedRequests, failed: ledger.failedRequests };
      await produceUntilKilled(broker, ledger, random, plan, what);
      expect(ledger.problems, at(`${what}: producing`)).toEqual([]);
      broker = await spawnBroker(dataDir, BROKER_ARGS).catch((error: unknown) => {
        throw new Error(at(`restart after ${what}: ${(error as Error).message}`));
      });
      const ends = await verify(broker.address, ledger, `after ${what}`);
      const present = ends.reduce((sum, end) => sum + end, 0);
      const acknowledged = ledger.acked.reduce((sum, partition) => sum + partition.size, 0);
      summary.push(
        `${what}: ${ledger.ackedRequests - before.acked} requests acked, ${ledger.failedRequests - before.failed} not; ` +
          `log ends ${ends.join('/')}, ${present - acknowledged} unacknowledged records kept so far; ${Date.now() - roundStartedAt} ms`,
      );
    }
    console.log(`crash-loop.test.ts [seed ${SEED}]\n  ${summary.join('\n  ')}`);
    expect(ledger.ackedRequests, at('some requests were acknowledged across the run')).toBeGreaterThan(0);

    // One last stretch of producing on the survivor, then a clean stop.
    const client = new TestClient(broker.address);
    try {
      const { request, groups } = makeRequest(ledger, random, -1 >>> 0);
      recordAck(ledger, await client.call<strata.v1.ProduceResponse>('log.produce', request), groups, 'final produce');
      expect(ledger.problems, at('final produce')).toEqual([]);
    } finally {
      client.close();
    }
    await verify(broker.address, ledger, 'final');
    broker.child.kill('SIGTERM');
    const { code } = await broker.exited;
    expect(code, at('the broker stops cleanly on SIGTERM')).toBe(0);
  });
});
