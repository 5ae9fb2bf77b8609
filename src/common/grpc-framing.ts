/**
 * Lets grpc-js frame a message in the memory just before it instead of copying it.
 *
 * Every gRPC message goes on the wire behind a 5-byte prefix: a compressed flag and the
 * message's length. grpc-js (1.14) writes that prefix by allocating a new buffer of the
 * message's size plus five and copying the message into it, on the client
 * (`CompressionFilter.sendMessage`) and on the server (`serializeMessage`). The producer's
 * requests and the broker's raw fetch responses are encoded by hand around batches that are
 * already in memory, and its decoded ones by hand into a buffer of their own, so that copy is
 * the only one left on their way to the socket. Producing
 * 1 KiB records, it was 9 % of the producer's CPU, and each 1 MiB request brought a fresh 1 MiB
 * allocation.
 *
 * So a message whose encoder kept `GRPC_FRAME_PREFIX_BYTES` of its own memory free in front of
 * it is marked (`markFramingRoom`), and the two grpc-js framing steps are wrapped: a marked
 * message sent uncompressed gets its prefix written into that room and goes out as one view of
 * its own memory. Everything else (unmarked messages, compressed ones, messages over the send
 * limit) goes through grpc-js's own code unchanged.
 *
 * The contract of a marked message: its memory, prefix room included, is not written again
 * until the peer has answered it (or its call has ended), since the HTTP/2 stream reads it
 * until the bytes are on the socket. The producer hands a batch buffer back to its pool only
 * once the broker has acknowledged the batch; the broker's read buffers, and the buffers it
 * encodes decoded records into (record-responses.ts), are fresh per response.
 *
 * This reaches into grpc-js's internal modules, as `widenFlowControlWindows` does. If an
 * upgrade changes their shape, `installInPlaceFraming` returns false and grpc-js copies as
 * before; `test/common/grpc-framing.test.ts` fails so that the upgrade is noticed.
 */
import { createRequire } from 'node:module';

/** The gRPC length prefix: one flag byte and a 32-bit big-endian length. */
export const GRPC_FRAME_PREFIX_BYTES = 5;

const withRoom = new WeakSet<Uint8Array>();

/**
 * Marks `message` as having `GRPC_FRAME_PREFIX_BYTES` bytes of its own, unused memory just
 * before it, and returns it. The caller vouches for that room: it must lie inside a buffer the
 * caller allocated (a view's byteOffset alone does not say who owns the bytes before it), and
 * the contract above holds. The first mark installs the wraps, so no sender can mark messages
 * that grpc-js would then copy anyway; where they cannot be installed, nothing is marked.
 */
export function markFramingRoom(message: Buffer): Buffer {
  if (installInPlaceFraming() && message.byteOffset >= GRPC_FRAME_PREFIX_BYTES) withRoom.add(message);
  return message;
}

/** Whether `message` is marked by `markFramingRoom` (and so will be framed in place). */
export function hasFramingRoom(message: Buffer): boolean {
  return withRoom.has(message);
}

/** A marked message with its prefix written in front of it, as one buffer; null if unmarked. */
function framedInPlace(message: unknown): Buffer | null {
  if (!(message instanceof Uint8Array) || !withRoom.has(message)) return null;
  const framed = Buffer.from(message.buffer, message.byteOffset - GRPC_FRAME_PREFIX_BYTES, message.length + GRPC_FRAME_PREFIX_BYTES);
  framed[0] = 0; // not compressed
  framed.writeUInt32BE(message.length, 1);
  return framed;
}

interface WriteObject {
  message: Buffer;
  flags?: number;
}

interface ClientCompressionFilter {
  currentCompressionAlgorithm: unknown;
  maxSendMessageLength: unknown;
  sendMessage(message: Promise<WriteObject>): Promise<WriteObject>;
}

interface ServerCall {
  handler: { serialize(value: unknown): Buffer };
  serializeMessage(value: unknown): Buffer;
}

let installed: boolean | null = null;

/**
 * Wraps grpc-js's client and server framing steps, once per process. Returns whether both are
 * in place; false leaves grpc-js as it was.
 */
export function installInPlaceFraming(): boolean {
  if (installed !== null) return installed;
  installed = false;
  const require = createRequire(import.meta.url);
  let clientFilter: { prototype: ClientCompressionFilter } | undefined;
  let serverCall: { prototype: ServerCall } | undefined;
  try {
    clientFilter = (require('@grpc/grpc-js/build/src/compression-filter.js') as { CompressionFilter?: { prototype: ClientCompressionFilter } }).CompressionFilter;
    serverCall = (require('@grpc/grpc-js/build/src/server-interceptors.js') as { BaseServerInterceptingCall?: { prototype: ServerCall } }).BaseServerInterceptingCall;
  } catch {
    return false;
  }
  const clientSend = clientFilter?.prototype.sendMessage;
  const serverSerialize = serverCall?.prototype.serializeMessage;
  if (typeof clientSend !== 'function' || typeof serverSerialize !== 'function') return false;

  clientFilter!.prototype.sendMessage = async function sendMessage(this: ClientCompressionFilter, message: Promise<WriteObject>): Promise<WriteObject> {
    const written = await message;
    const limit = this.maxSendMessageLength;
    if (this.currentCompressionAlgorithm === 'identity' && typeof limit === 'number' && (limit === -1 || written.message.length <= limit)) {
      const framed = framedInPlace(written.message);
      if (framed !== null) return { message: framed, flags: written.flags };
    }
    return clientSend.call(this, Promise.resolve(written));
  };
  serverCall!.prototype.serializeMessage = function serializeMessage(this: ServerCall, value: unknown): Buffer {
    // Only a pass-through serializer hands back the marked buffer itself (in Strata every marked
    // message has one; another would serialise twice here, still correctly).
    if (withRoom.has(value as Uint8Array)) {
      const message = this.handler.serialize(value);
      const framed = message === value ? framedInPlace(message) : null;
      if (framed !== null) return framed;
    }
    return serverSerialize.call(this, value);
  };
  installed = true;
  return true;
}
