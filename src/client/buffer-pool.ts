/**
 * Batch buffers of one size, reused. At hundreds of MB/s a producer would otherwise allocate a
 * batch-sized buffer per batch, and V8 answers that much external memory with frequent full
 * garbage collections. Kafka's producer keeps a BufferPool for the same reason.
 *
 * A buffer comes back only once its batch is acknowledged: the broker has then received the
 * request, so nothing still reads it, not even the HTTP/2 stream that sent it (grpc-js frames the
 * request in the buffer itself, see grpc-framing.ts). Buffers of failed batches are left to the
 * garbage collector. At most `maxBuffers` wait in the pool.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly bufferBytes: number,
    private readonly maxBuffers: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.bufferBytes);
  }

  give(buffer: Buffer): void {
    if (buffer.length === this.bufferBytes && this.free.length < this.maxBuffers) this.free.push(buffer);
  }

  /** Buffers waiting to be reused. */
  get size(): number {
    return this.free.length;
  }
}
