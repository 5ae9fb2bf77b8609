/**
 * The live line of a benchmark: on a terminal, once a second, one line on stderr rewritten in
 * place ("produce: 1,234,567 records, 1,402,311 records/s now"). Not on a terminal (a pipe, a
 * file, CI) it prints nothing, so redirected output holds only the report.
 */
const INTERVAL_MS = 1_000;

export interface ProgressStream {
  isTTY?: boolean;
  write(text: string): boolean;
}

export class Progress {
  private readonly enabled: boolean;

  constructor(private readonly stream: ProgressStream = process.stderr) {
    this.enabled = stream.isTTY === true;
  }

  /** Shows `label` with `count()` (records so far) until the returned function is called. */
  start(label: string, count: () => number): () => void {
    if (!this.enabled) return () => undefined;
    let last = count();
    let lastAt = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      const current = count();
      const rate = ((current - last) * 1000) / (now - lastAt);
      last = current;
      lastAt = now;
      this.stream.write(`\r\x1b[2K${label}: ${formatInteger(current)} records, ${formatInteger(rate)} records/s now`);
    }, INTERVAL_MS);
    timer.unref();
    return () => {
      clearInterval(timer);
      this.stream.write('\r\x1b[2K');
    };
  }
}

export function formatInteger(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}
