// A gRPC call over raw HTTP/2 whose response stream is paused from the start: grpc-js's client
// buffers every message of a call it has never read from, which would hide the broker's side of
// flow control.
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from 'node:http2';

/** The 5-byte gRPC length prefix and `message`, as one frame. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** A call to `path` (`/package.Service/Method`) whose answers are not read until a subclass reads them. */
export class PausedCall {
  /** Resolves with the stream's RST_STREAM code once it closes (NGHTTP2_NO_ERROR after a status). */
  readonly closed: Promise<number>;
  protected readonly session: ClientHttp2Session;
  protected readonly stream: ClientHttp2Stream;

  /** With `token`, the call carries it as `authorization: Bearer <token>`. */
  constructor(address: string, path: string, token?: string) {
    this.session = connect(`http://${address}`);
    this.session.on('error', () => undefined);
    const authorization = token === undefined ? {} : { authorization: `Bearer ${token}` };
    this.stream = this.session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...authorization });
    this.stream.on('error', () => undefined);
    this.stream.pause();
    this.closed = new Promise((resolve) => this.stream.once('close', () => resolve(this.stream.rstCode ?? -1)));
  }

  /** The call's grpc-status, once it has come (null before). */
  grpcStatus: number | null = null;
  private pending = Buffer.alloc(0);

  /** Starts reading: `onMessage` gets each gRPC message received, and the trailers set `grpcStatus`. */
  protected readMessages(onMessage: (message: Buffer) => void): void {
    // A call answered by a status alone gets it in its headers ("trailers-only").
    for (const event of ['response', 'trailers'] as const) {
      this.stream.on(event, (headers) => {
        if (headers['grpc-status'] !== undefined) this.grpcStatus = Number(headers['grpc-status']);
      });
    }
    this.stream.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 5 && this.pending.length >= 5 + this.pending.readUInt32BE(1)) {
        const length = this.pending.readUInt32BE(1);
        onMessage(this.pending.subarray(5, 5 + length));
        this.pending = this.pending.subarray(5 + length);
      }
    });
    this.stream.resume(); // a 'data' listener alone does not resume a stream paused explicitly
  }

  /** Writes one message; resolves once HTTP/2 flow control has let it out. */
  write(message: Uint8Array): Promise<void> {
    return this.writeFrames(grpcFrame(message));
  }

  /** Writes `frames` (gRPC messages framed already) at once; resolves once they are out. */
  writeFrames(frames: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => this.stream.write(frames, (error) => (error ? reject(error) : resolve())));
  }

  close(): void {
    this.stream.close();
    this.session.close();
  }
}
