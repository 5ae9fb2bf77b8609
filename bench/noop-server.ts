/**
 * A no-op gRPC server with Strata's Log service shapes: it decodes each Produce request and
 * answers at once without storing anything. It is the transport ceiling of the machine that the
 * broker benchmark compares Strata with, started in the same run with the same grpc-js settings.
 *
 *   node dist/bench/noop-server.js   (prints {"address": "127.0.0.1:PORT"} on stdout)
 */
import { Server, ServerCredentials, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { strata } from '../src/generated/strata.js';
import { widenFlowControlWindows } from '../src/server/grpc-server.js';
import { logServiceDefinition } from '../src/server/service-definitions.js';

const v1 = strata.v1;

function answer(request: strata.v1.ProduceRequest): strata.v1.ProduceResponse {
  return v1.ProduceResponse.create({ correlationId: request.correlationId });
}

const unimplemented = (_call: unknown, callback: sendUnaryData<never>): void => callback({ code: 12, details: 'not in the no-op server' });

const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': -1 });
server.addService(logServiceDefinition, {
  produce: (call: ServerUnaryCall<strata.v1.ProduceRequest, strata.v1.ProduceResponse>, callback: sendUnaryData<strata.v1.ProduceResponse>) =>
    callback(null, answer(call.request)),
  produceStream: (call: ServerDuplexStream<strata.v1.ProduceRequest, strata.v1.ProduceResponse>) => {
    call.on('data', (request: strata.v1.ProduceRequest) => call.write(answer(request)));
    call.on('end', () => call.end());
  },
  initProducer: unimplemented,
  fetch: unimplemented,
  subscribe: (call: { emit(event: 'error', error: object): void }) => call.emit('error', { code: 12, details: 'not in the no-op server' }),
  listOffsets: unimplemented,
});
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  widenFlowControlWindows(server); // the same transport settings as the broker
  process.stdout.write(`${JSON.stringify({ address: `127.0.0.1:${port}` })}\n`);
});
process.on('SIGTERM', () => server.forceShutdown());
