// Goal: messages marked with room in front are framed there by grpc-js, client and server side,
// and arrive intact; unmarked and compressed messages go through grpc-js's own copy; the first
// mark installs the wrap, which still fits the grpc-js version in package-lock.json. Method: a
// real grpc-js server and client on loopback with a pass-through echo method; the bytes in front
// of each message show whether the frame prefix was written in place.
import { Client, Server, ServerCredentials, credentials, type ServiceDefinition, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GRPC_FRAME_PREFIX_BYTES, installInPlaceFraming, markFramingRoom } from '../../src/common/grpc-framing.js';

const ROOM_FILL = 0xaa;
const passThrough = (message: Buffer): Buffer => message;
const echoService: ServiceDefinition = {
  echo: {
    path: '/strata.test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: passThrough,
    requestDeserialize: passThrough,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  },
};

/** `payload` in a fresh buffer after `GRPC_FRAME_PREFIX_BYTES` of room filled with ROOM_FILL. */
function withRoomBefore(payload: Buffer): { message: Buffer; room: Buffer } {
  const memory = Buffer.alloc(GRPC_FRAME_PREFIX_BYTES + payload.length, ROOM_FILL);
  payload.copy(memory, GRPC_FRAME_PREFIX_BYTES);
  return { message: memory.subarray(GRPC_FRAME_PREFIX_BYTES), room: memory.subarray(0, GRPC_FRAME_PREFIX_BYTES) };
}

function framePrefix(length: number): Buffer {
  const prefix = Buffer.alloc(GRPC_FRAME_PREFIX_BYTES);
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

let server: Server;
let address: string;
/** Each response's room, to check after the call what the server's framing wrote there. */
const responseRooms: Buffer[] = [];

beforeAll(async () => {
  // Not installed here: the first markFramingRoom must install the wraps itself.
  server = new Server();
  server.addService(echoService, {
    echo(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) {
      const marked = call.request[0] === 1;
      const { message, room } = withRoomBefore(call.request);
      responseRooms.push(room);
      callback(null, marked ? markFramingRoom(message) : message);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => {
  server.forceShutdown();
});

async function echo(client: Client, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(echoService.echo!.path, passThrough, passThrough, request, (error, response) => (error ? reject(error) : resolve(response!))),
  );
}

/** A request whose first byte asks the server to mark its response too. */
function payload(markResponse: boolean, bytes: number): Buffer {
  const body = Buffer.alloc(bytes);
  for (let index = 0; index < bytes; index++) body[index] = (index * 7 + 3) & 0xff;
  body[0] = markResponse ? 1 : 0;
  return body;
}

it('frames a marked request and a marked response in the room in front of them', async () => {
  const client = new Client(address, credentials.createInsecure());
  try {
    // Larger than one HTTP/2 frame, so the message goes out in several.
    const body = payload(true, 100_000);
    const { message, room } = withRoomBefore(body);
    const response = await echo(client, markFramingRoom(message));
    expect(response.equals(body)).toBe(true);
    expect(room).toEqual(framePrefix(body.length));
    expect(responseRooms.at(-1)).toEqual(framePrefix(body.length));
  } finally {
    client.close();
  }
});

it('was installed by the first mark, for the grpc-js version in use', () => {
  expect(installInPlaceFraming()).toBe(true);
});

it('leaves unmarked messages to grpc-js, which copies them and leaves the bytes in front alone', async () => {
  const client = new Client(address, credentials.createInsecure());
  try {
    const body = payload(false, 10_000);
    const { message, room } = withRoomBefore(body);
    const response = await echo(client, message);
    expect(response.equals(body)).toBe(true);
    expect(room).toEqual(Buffer.alloc(GRPC_FRAME_PREFIX_BYTES, ROOM_FILL));
    expect(responseRooms.at(-1)).toEqual(Buffer.alloc(GRPC_FRAME_PREFIX_BYTES, ROOM_FILL));
  } finally {
    client.close();
  }
});

it('lets grpc-js compress a marked request when the channel compresses', async () => {
  // 2: gzip (grpc-js's CompressionAlgorithms).
  const client = new Client(address, credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
  try {
    const body = payload(false, 50_000);
    const { message, room } = withRoomBefore(body);
    const response = await echo(client, markFramingRoom(message));
    expect(response.equals(body)).toBe(true);
    expect(room).toEqual(Buffer.alloc(GRPC_FRAME_PREFIX_BYTES, ROOM_FILL));
  } finally {
    client.close();
  }
});

it('leaves a marked request over the channel send limit to grpc-js, which refuses it', async () => {
  const client = new Client(address, credentials.createInsecure(), { 'grpc.max_send_message_length': 1000 });
  try {
    const { message, room } = withRoomBefore(payload(true, 2000));
    await expect(echo(client, markFramingRoom(message))).rejects.toMatchObject({ code: 8 }); // RESOURCE_EXHAUSTED
    expect(room).toEqual(Buffer.alloc(GRPC_FRAME_PREFIX_BYTES, ROOM_FILL));
  } finally {
    client.close();
  }
});
