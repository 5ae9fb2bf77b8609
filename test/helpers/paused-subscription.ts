// A Subscribe call over raw HTTP/2 whose response stream is paused from the start (see PausedCall).
import { strata } from '../../src/generated/strata.js';
import { decodeBatches } from '../../src/storage/record-batch.js';
import { PausedCall, grpcFrame } from './paused-call.js';

const v1 = strata.v1;

/** A Subscribe call over raw HTTP/2 whose response stream is paused from the start. */
export class PausedSubscription extends PausedCall {
  readonly responses: strata.v1.SubscribeResponse[] = [];

  /** With `token`, the call carries it as `authorization: Bearer <token>`. */
  constructor(address: string, request: strata.v1.SubscribeRequest.$Properties, token?: string) {
    super(address, '/strata.v1.Log/Subscribe', token);
    this.stream.end(grpcFrame(v1.SubscribeRequest.encode(v1.SubscribeRequest.create(request)).finish()));
  }

  /** Starts reading: every gRPC message received is decoded into `responses`. */
  read(): void {
    this.readMessages((message) => this.responses.push(v1.SubscribeResponse.decode(message)));
  }

  /** Values of the records received from `partition`, in order (raw batches decoded). */
  values(partition: number): string[] {
    return this.responses
      .filter((response) => response.partition === partition)
      .flatMap((response) => decodeBatches(Buffer.from(response.batches)).map((record) => record.value!.toString('utf8', 0, 8).split(';')[0]!));
  }
}

