// Goal: a produce phase measures its server's CPU time and peak RSS over the measured records
// alone: both windows start once the warm-up is acknowledged, before the first measured send,
// so the warm-up is left out of the figures; method: the phase run against the no-op server in
// this process, with a stand-in for the server process the run started whose CPU time is the
// records the no-op server has taken so far (one second each): the phase's server CPU time then
// counts the records sent inside its window, whatever the machine's speed.
import { expect, it } from 'vitest';
import { NoopState } from '../../src/bench/noop-server.js';
import { useNoopServer } from '../helpers/noop-server.js';
import { type MeasuredServer, type PhaseContext, runPhase } from '../../src/bench/phases.js';
import { benchPhaseContext } from '../helpers/bench-phase-context.js';
import type { ServerMemory } from '../../src/bench/server-process.js';

/** The stand-in's memory, reported as it is. */
const MEMORY: ServerMemory = { rssMiB: 40, rssPeakSampledMiB: 50, rssPeakMiB: 60, rssPeakPhaseMiB: 60 };

/**
 * A server process as a phase sees it, whose CPU time is the records `topic` (one partition)
 * holds on the no-op server, and which keeps what it was asked and when (in records held).
 */
class RecordCountingServer implements MeasuredServer {
  /** The records held at each reading of the CPU time. */
  readonly cpuReadings: number[] = [];
  /** The records held at each reset of the peaks. */
  readonly peakResets: number[] = [];

  constructor(
    private readonly state: NoopState,
    private readonly topic: string,
  ) {}

  private recordsHeld(): number {
    return this.state.topic(this.topic)?.state.get(0)?.endOffset ?? 0;
  }

  cpuSeconds(): number {
    const records = this.recordsHeld();
    this.cpuReadings.push(records);
    return records;
  }

  resetPeaks(): boolean {
    this.peakResets.push(this.recordsHeld());
    return true;
  }

  memory(): ServerMemory {
    return MEMORY;
  }
}

const noop = useNoopServer(() => new NoopState());


for (const path of ['raw', 'records'] as const) {
  it(`${path} path: CPU time and the peak RSS count from the first measured send, the warm-up left out`, async () => {
    const topic = `measured-${path}`;
    const measuredServer = new RecordCountingServer(noop.state, topic);
    const context: PhaseContext = {
      ...benchPhaseContext(noop.server.address, 'no-op', { topic, path, records: 300, durationSeconds: 1, batchBytes: path === 'raw' ? 16 * 1024 : 512 * 1024 }),
      server: measuredServer,
    };
    const { rows } = await runPhase('produce', context, 200);
    // Read before the load, again once the 200 warm-up records were in (and no measured one
    // yet), and after the 300 measured ones.
    expect(measuredServer.cpuReadings).toEqual([0, 200, 500]);
    // The peaks reset once, at the same point.
    expect(measuredServer.peakResets).toEqual([200]);
    const [row] = rows;
    expect(row).toMatchObject({ workload: 'produce', records: 300, serverMemory: MEMORY });
    // The server's CPU time of the measured records alone: one "second" for each of the 300.
    expect(row!.cpu.serverSeconds).toBe(300);
    expect(row!.cpu.serverMicrosPerRecord).toBe(1_000_000);
  });
}
