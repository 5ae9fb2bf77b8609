// A Subscribe call over raw HTTP/2 whose response stream is paused from the start: grpc-js's
// client buffers every message of a call it has never read from, which would hide the broker's
// side of flow control.
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from 'node:http2';
import { strata } from '../../src/generated/strata.js';
import { decodeBatches } from '../../src/storage/record-batch.js';

const v1 = strata.v1;

/** A Subscribe call over raw HTTP/2 whose response stream is paused from the start. */
export class PausedSubscription {
  readonly responses: strata.v1.SubscribeResponse[] = [];
  private readonly session: ClientHttp2Session;
  private readonly stream: ClientHttp2Stream;
  private pending = Buffer.alloc(0);

  /** With `token`, the call carries it as `authorization: Bearer <token>`. */
  constructor(address: string, request: strata.v1.SubscribeRequest.$Properties, token?: string) {
    this.session = connect(`http://${address}`);
    this.session.on('error', () => undefined);
    const authorization = token === undefined ? {} : { authorization: `Bearer ${token}` };
    this.stream = this.session.request({ ':method': 'POST', ':path': '/strata.v1.Log/Subscribe', 'content-type': 'application/grpc', te: 'trailers', ...authorization });
    this.stream.on('error', () => undefined);
    this.stream.pause();
    const message = Buffer.from(v1.SubscribeRequest.encode(v1.SubscribeRequest.create(request)).finish());
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    this.stream.end(Buffer.concat([prefix, message]));
    this.closed = new Promise((resolve) => this.stream.once('close', () => resolve(this.stream.rstCode ?? -1)));
  }

  /** Resolves with the stream's RST_STREAM code once it closes (NGHTTP2_NO_ERROR after a status). */
  readonly closed: Promise<number>;

  /** Starts reading: every gRPC message received is decoded into `responses`. */
  read(): void {
    this.stream.on('data', (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 5 && this.pending.length >= 5 + this.pending.readUInt32BE(1)) {
        const length = this.pending.readUInt32BE(1);
        this.responses.push(v1.SubscribeResponse.decode(this.pending.subarray(5, 5 + length)));
        this.pending = this.pending.subarray(5 + length);
      }
    });
    this.stream.resume(); // a 'data' listener alone does not resume a stream paused explicitly
  }

  /** Values of the records received from `partition`, in order (raw batches decoded). */
  values(partition: number): string[] {
    return this.responses
      .filter((response) => response.partition === partition)
      .flatMap((response) => decodeBatches(Buffer.from(response.batches)).map((record) => record.value!.toString('utf8', 0, 8).split(';')[0]!));
  }

  close(): void {
    this.stream.close();
    this.session.close();
  }
}

