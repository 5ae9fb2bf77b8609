/**
 * A gRPC call written frame by frame over Node's own HTTP/2 client, for requests no gRPC library
 * sends: a message marked compressed whose bytes are not, say. The broker is the real one; only
 * the client side is bare.
 */
import { connect } from 'node:http2';

export interface RawCallEnd {
  /** grpc-status, as a number. */
  code: number;
  /** grpc-message, percent-decoded. */
  details: string;
  /** The strata-error trailer, if any. */
  strataError: string | undefined;
}

export interface RawGrpcCall {
  /** Sends one length-prefixed message; `compressed` sets its compressed flag (nothing is compressed here). */
  write(message: Buffer, compressed: boolean): void;
  /** Resolves with the call's status once the broker ends it (from trailers, or a trailers-only answer). */
  readonly ended: Promise<RawCallEnd>;
  close(): void;
}

/** Opens `path` on the broker at `address` (host:port, plaintext) with the given grpc-encoding; `onMessage` gets each answer's bytes. */
export function openRawGrpcCall(address: string, path: string, encoding: string, onMessage: (message: Buffer) => void): RawGrpcCall {
  const session = connect(`http://${address}`);
  session.on('error', () => undefined); // the call's end reports what matters
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'grpc-encoding': encoding });
  let pending = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const length = pending.readUInt32BE(1);
      onMessage(pending.subarray(5, 5 + length));
      pending = pending.subarray(5 + length);
    }
  });
  const ended = new Promise<RawCallEnd>((resolve, reject) => {
    const end = (headers: Record<string, string | string[] | undefined>): boolean => {
      const code = headers['grpc-status'];
      if (typeof code !== 'string') return false;
      const strataError = headers['strata-error'];
      resolve({ code: Number(code), details: decodeURIComponent(String(headers['grpc-message'] ?? '')), strataError: typeof strataError === 'string' ? strataError : undefined });
      return true;
    };
    stream.on('response', (headers) => void end(headers)); // trailers-only
    stream.on('trailers', (trailers) => void end(trailers));
    stream.on('close', () => reject(new Error(`${path} closed without a grpc-status`)));
    stream.on('error', reject);
  });
  return {
    write(message, compressed) {
      const prefix = Buffer.alloc(5);
      prefix.writeUInt8(compressed ? 1 : 0, 0);
      prefix.writeUInt32BE(message.length, 1);
      stream.write(Buffer.concat([prefix, message]));
    },
    ended,
    close() {
      session.destroy();
    },
  };
}
