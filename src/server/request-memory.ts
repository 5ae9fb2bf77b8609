/**
 * The broker-wide bound on the bytes of produce requests read and not yet answered, across every
 * connection: Kafka's `queued.max.request.bytes` (`--produce-memory-bytes`). Each ProduceStream
 * also stops being read at its own bound, but that bound is per stream: four producers could
 * otherwise hold four times as much in the broker.
 *
 * Every produce request, unary or streamed, is counted from when it is read until it is answered.
 * While the count is at or over the bound, each ProduceStream stops being read at its next
 * request, and HTTP/2 flow control holds its client back; they are read again once the count is
 * below half the bound. So the count passes the bound by up to one request per stream still
 * reading, as Kafka's does by a request per connection. Stopping every stream at once when the
 * count fills was tried: the streams read first after a wake took all the room, and others
 * went unread for seconds. A unary Produce cannot be held back (its message arrives whole before its
 * handler runs), so it is counted, and so holds the streams back, but it is never refused for
 * memory: its size is bounded by --max-request-bytes.
 */
export class RequestMemory {
  private used = 0;
  private pauseCount = 0;
  private readonly waiting = new Set<() => void>();

  constructor(readonly bytesMax: number) {}

  /** Bytes of requests read and not yet answered. */
  get bytes(): number {
    return this.used;
  }

  /** How many times a stream stopped being read because this memory was full. */
  get pauses(): number {
    return this.pauseCount;
  }

  get full(): boolean {
    return this.used >= this.bytesMax;
  }

  get belowHalf(): boolean {
    return this.used < this.bytesMax / 2;
  }

  take(bytes: number): void {
    this.used += bytes;
  }

  /** Gives back what `take` counted; below half the bound, the streams waiting for room read again. */
  give(bytes: number): void {
    this.used -= bytes;
    if (this.waiting.size === 0 || !this.belowHalf) return;
    const resumes = [...this.waiting];
    this.waiting.clear();
    for (const resume of resumes) resume();
  }

  /** Counts a stream held back by this memory and calls `resume` once the memory is below half. */
  waitForRoom(resume: () => void): void {
    if (!this.waiting.has(resume)) this.pauseCount++;
    this.waiting.add(resume);
  }

  /** Forgets a stream that ended while it waited. */
  forget(resume: () => void): void {
    this.waiting.delete(resume);
  }
}
