/**
 * Batch buffers, reused. At hundreds of MB/s a producer would otherwise allocate a batch-sized
 * buffer per batch, and V8 answers that much external memory with frequent full garbage
 * collections. Kafka's producer keeps a BufferPool for the same reason.
 *
 * Batches that start small are pooled too. A producer with a trickle of records (linger 0, a
 * latency workload) starts each batch at twice its partition's last one, so at 10,000 records/s
 * of 1 KiB it used to allocate a buffer of about 20 KiB, an ArrayBuffer of its own, for every
 * batch, a thousand a second. V8 frees such buffers during a young-generation collection, often
 * on the main thread: in an e2e run, the client's scavenges that did spent 0.95–1.0 ms of their
 * 1.5 ms freeing ArrayBuffers (these and grpc-js's), and 0.66–0.75 ms with batches pooled.
 *
 * Buffers come in size classes: the largest is `maxBytes` (a full batch and its headroom), the
 * others powers of two from `minBytes` up to it. `take(bytes)` hands out a buffer of the smallest
 * class that holds `bytes`, so a batch gets at most twice what it asked for.
 *
 * A buffer comes back only once its batch is acknowledged: the broker has then received the
 * request, so nothing still reads it, not even the HTTP/2 stream that sent it (grpc-js frames the
 * request in the buffer itself, see grpc-framing.ts). Buffers of failed batches are left to the
 * garbage collector. At most `maxHeldBytes` of buffers wait in the pool.
 */
export class BufferPool {
  /** Free buffers by size class. */
  private readonly free = new Map<number, Buffer[]>();
  private heldBytes = 0;

  constructor(
    private readonly minBytes: number,
    private readonly maxBytes: number,
    private readonly maxHeldBytes: number,
  ) {
    if (!Number.isInteger(Math.log2(minBytes))) throw new RangeError(`the smallest buffers of a pool must be a power of two of bytes, got ${minBytes}`);
  }

  /** The size of the buffers `take(bytes)` hands out; null when `bytes` is over `maxBytes`. */
  private classFor(bytes: number): number | null {
    if (bytes > this.maxBytes) return null;
    return Math.min(this.maxBytes, Math.max(this.minBytes, 2 ** Math.ceil(Math.log2(bytes))));
  }

  /** A buffer of at least `bytes` (of its size class), or null when `bytes` is over `maxBytes`. */
  take(bytes: number): Buffer | null {
    const size = this.classFor(bytes);
    if (size === null) return null;
    const buffer = this.free.get(size)?.pop();
    if (buffer === undefined) return Buffer.allocUnsafeSlow(size);
    this.heldBytes -= size;
    return buffer;
  }

  /** Takes back a buffer that `take` handed out; others, and any over the bound, are dropped. */
  give(buffer: Buffer): void {
    const size = buffer.length;
    if (this.classFor(size) !== size || buffer.buffer.byteLength !== size || this.heldBytes + size > this.maxHeldBytes) return;
    let buffers = this.free.get(size);
    if (buffers === undefined) {
      buffers = [];
      this.free.set(size, buffers);
    }
    buffers.push(buffer);
    this.heldBytes += size;
  }

  /** Bytes of buffers waiting to be reused. */
  get size(): number {
    return this.heldBytes;
  }
}
