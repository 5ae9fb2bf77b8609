// Goal: show that `strata serve`'s options turn into the broker's settings with their documented
// defaults, and that a value no broker could use is refused with a message naming the flag;
// method: the option table's own defaults run through serveSettings, one field changed at a time.
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/common/errors.js';
import { SERVE_OPTIONS, brokerOptions, serveSettings } from '../../src/config/broker-options.js';
import { DEFAULT_TAIL_CACHE_BYTES, TAIL_CACHE_BYTES_MAX } from '../../src/storage/tail-cache.js';

type Parsed = Parameters<typeof serveSettings>[0];

function defaults(): Parsed {
  return Object.fromEntries(Object.entries(SERVE_OPTIONS).map(([name, option]) => [name, option.default])) as unknown as Parsed;
}

describe('serve options', () => {
  it('default to data in ./data, gRPC on 127.0.0.1:50051, direct writes, small I/O on the event loop and a 16 MiB tail cache', () => {
    const settings = serveSettings(defaults());
    expect(settings).toMatchObject({ dataDir: './data', listen: '127.0.0.1:50051', metricsListen: '127.0.0.1:9464', directWrites: true, tailCacheBytes: DEFAULT_TAIL_CACHE_BYTES });
    expect(serveSettings({ ...defaults(), 'write-mode': 'buffered' }).directWrites).toBe(false);
    expect(settings.inlineIo).toBe(true);
    expect(brokerOptions(settings).inlineIo).toBe(true);
    expect(brokerOptions(serveSettings({ ...defaults(), 'small-io': 'thread-pool' })).inlineIo).toBe(false);
    expect(DEFAULT_TAIL_CACHE_BYTES).toBe(16 * 1024 * 1024);
    expect(brokerOptions(settings).tailCacheBytes).toBe(DEFAULT_TAIL_CACHE_BYTES);
  });

  it('take --tail-cache-bytes 0 to turn the cache off, and refuse a negative, fractional or unallocatable size', () => {
    expect(serveSettings({ ...defaults(), 'tail-cache-bytes': 0 }).tailCacheBytes).toBe(0);
    for (const bad of [-1, 1.5, TAIL_CACHE_BYTES_MAX + 1]) {
      expect(() => serveSettings({ ...defaults(), 'tail-cache-bytes': bad })).toThrow(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: `--tail-cache-bytes must be an integer from 0 to ${TAIL_CACHE_BYTES_MAX}, got ${bad}` }),
      );
    }
  });

  it('bound the memory of sealed segments\' indexes at 128 MiB by default, and refuse a negative or fractional --index-cache-bytes', () => {
    expect(brokerOptions(serveSettings(defaults())).indexCacheBytes).toBe(128 * 1024 * 1024);
    expect(brokerOptions(serveSettings({ ...defaults(), 'index-cache-bytes': 0 })).indexCacheBytes).toBe(0);
    for (const bad of [-1, 1.5]) {
      expect(() => serveSettings({ ...defaults(), 'index-cache-bytes': bad })).toThrow(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: `--index-cache-bytes must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got ${bad}` }),
      );
    }
  });

  it('refuse an empty --data-dir (the broker would write into the current directory)', () => {
    for (const empty of ['', ' ']) {
      expect(() => serveSettings({ ...defaults(), 'data-dir': empty })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringMatching(/^--data-dir must not be empty/) }));
    }
  });

  it('refuse a --listen without a port, and a port no socket can have on either listener', () => {
    expect(() => serveSettings({ ...defaults(), listen: 'localhost' })).toThrow('--listen must be host:port, got "localhost"');
    expect(() => serveSettings({ ...defaults(), listen: '127.0.0.1:65536' })).toThrow('--listen must have a port from 0 to 65535, got "127.0.0.1:65536"');
    expect(() => serveSettings({ ...defaults(), 'metrics-listen': '[::]:99999' })).toThrow('--metrics-listen must have a port from 0 to 65535, got "[::]:99999"');
    expect(serveSettings({ ...defaults(), listen: '0.0.0.0:65535', 'metrics-listen': '127.0.0.1:0' })).toMatchObject({ listen: '0.0.0.0:65535', metricsListen: '127.0.0.1:0' });
  });

  it('refuses --listen and --metrics-listen on one port of one host, or of every interface, and takes other pairs', () => {
    for (const [listen, metrics] of [['127.0.0.1:7000', '127.0.0.1:7000'], ['0.0.0.0:7000', '127.0.0.1:7000'], ['[::]:7000', '10.0.0.1:7000'], ['[::1]:7000', '[::]:7000']]) {
      expect(() => serveSettings({ ...defaults(), listen, 'metrics-listen': metrics }), `${listen} ${metrics}`).toThrow(
        `--listen (${listen}) and --metrics-listen (${metrics}) take the same port: the gRPC and the HTTP listener each need their own; give one of them another port`,
      );
    }
    for (const [listen, metrics] of [['127.0.0.1:0', '127.0.0.1:0'], ['127.0.0.1:7000', '127.0.0.2:7000'], ['0.0.0.0:7000', '[::1]:7000'], ['127.0.0.1:7000', '127.0.0.1:7001'], ['127.0.0.1:7000', '']]) {
      expect(serveSettings({ ...defaults(), listen, 'metrics-listen': metrics }), `${listen} ${metrics}`).toMatchObject({ listen, metricsListen: metrics });
    }
  });

  it('refuse a topic default out of range, naming its flag, as a topic config would be refused; and a default partition count or session timeout no topic or member could have', () => {
    const refused = (overrides: Partial<Parsed>): unknown => {
      try {
        serveSettings({ ...defaults(), ...overrides });
      } catch (error) {
        return error;
      }
      throw new Error(`${JSON.stringify(overrides)} was taken`);
    };
    expect(refused({ 'retention-ms': -5 })).toMatchObject({ code: ErrorCode.INVALID_ARGUMENT, message: '--retention-ms must be an integer from -1 to 9007199254740991, got -5' });
    expect(refused({ 'segment-bytes': Number.NaN })).toMatchObject({ message: '--segment-bytes must be an integer from 1024 to 2147483648, got a non-number' });
    expect(refused({ 'index-interval-bytes': 1.5 })).toMatchObject({ message: '--index-interval-bytes must be an integer from 0 to 2147483648, got 1.5' });
    expect(refused({ 'segment-index-bytes': 100 })).toMatchObject({ message: '--segment-index-bytes must be an integer from 1024 to 1073741824, got 100' });
    expect(serveSettings({ ...defaults(), 'segment-index-bytes': 4096 }).topicDefaults).toMatchObject({ segmentIndexBytes: 4096 });
    expect(refused({ 'max-message-bytes': 2 * 1024 * 1024, 'max-request-bytes': 1024 * 1024 })).toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: 'the default max.message.bytes of 2097152 does not fit in one request to this broker: its largest request (--max-request-bytes) is 1048576 bytes, which leaves 1047552 for a batch; raise --max-request-bytes or lower --max-message-bytes',
    });
    expect(refused({ 'default-partitions': 20_000 })).toMatchObject({ message: '--default-partitions must be an integer from 1 to 10000, got 20000' });
    expect(refused({ 'group-session-timeout-ms': 50 })).toMatchObject({ message: '--group-session-timeout-ms must be an integer from 100 to 1800000, got 50' });
    expect(refused({ 'retention-check-interval-ms': 3e9 })).toMatchObject({ message: '--retention-check-interval-ms must be an integer from 1 to 2147483647, got 3000000000' });
    expect(refused({ 'recovery-checkpoint-interval-ms': 0 })).toMatchObject({ message: '--recovery-checkpoint-interval-ms must be an integer from 1 to 2147483647, got 0' });
    expect(refused({ 'recovery-checkpoint-interval-ms': 2 ** 31 })).toMatchObject({ message: '--recovery-checkpoint-interval-ms must be an integer from 1 to 2147483647, got 2147483648' });
    // serve's exit guard waits 5 s past it, on a timer whose longest delay is 2^31 - 1 ms.
    expect(refused({ 'shutdown-timeout-ms': 2_147_483_000 })).toMatchObject({ message: '--shutdown-timeout-ms must be an integer from 1 to 2147478647, got 2147483000' });
    expect(refused({ 'shutdown-timeout-ms': 0 })).toMatchObject({ message: '--shutdown-timeout-ms must be an integer from 1 to 2147478647, got 0' });
    expect(serveSettings({ ...defaults(), 'shutdown-timeout-ms': 2_147_478_647 }).shutdownTimeoutMs).toBe(2_147_478_647);
    expect(brokerOptions(serveSettings(defaults())).recoveryCheckpointIntervalMs).toBe(60_000);
    expect(brokerOptions(serveSettings({ ...defaults(), 'recovery-checkpoint-interval-ms': 5_000 })).recoveryCheckpointIntervalMs).toBe(5_000);
    expect(refused({ 'max-request-bytes': Number.NaN })).toMatchObject({ message: '--max-request-bytes must be a positive integer, got a non-number' });
    expect(refused({ 'offsets-retention-ms': 0 })).toMatchObject({ message: '--offsets-retention-ms must be a positive integer, or -1 to keep offsets for ever, got 0' });
    expect(refused({ 'offsets-retention-ms': -2 })).toMatchObject({ message: '--offsets-retention-ms must be a positive integer, or -1 to keep offsets for ever, got -2' });
    expect(serveSettings({ ...defaults(), 'offsets-retention-ms': -1 }).offsetsRetentionMs).toBe(-1);
    expect(serveSettings(defaults()).offsetsRetentionMs).toBe(7 * 24 * 60 * 60 * 1000);
    expect(serveSettings({ ...defaults(), 'retention-ms': -1, 'max-message-bytes': 1024 * 1024 - 1024, 'max-request-bytes': 1024 * 1024 }).topicDefaults).toMatchObject({ retentionMs: -1, maxMessageBytes: 1047552 });
  });

  it('bound the produce memory of all connections at 64 MiB by default, and refuse one below --max-request-bytes', () => {
    expect(serveSettings(defaults()).produceMemoryBytes).toBe(64 * 1024 * 1024);
    expect(serveSettings({ ...defaults(), 'produce-memory-bytes': 256 * 1024 * 1024 }).produceMemoryBytes).toBe(256 * 1024 * 1024);
    expect(serveSettings({ ...defaults(), 'produce-memory-bytes': 2 * 1024 * 1024, 'max-request-bytes': 2 * 1024 * 1024 }).produceMemoryBytes).toBe(2 * 1024 * 1024);
    expect(() => serveSettings({ ...defaults(), 'produce-memory-bytes': 32 * 1024 * 1024 })).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message:
          '--produce-memory-bytes (33554432) is below --max-request-bytes (67108864): a request of the largest size would overfill it on its own; raise --produce-memory-bytes or lower --max-request-bytes',
      }),
    );
    expect(() => serveSettings({ ...defaults(), 'produce-memory-bytes': 0 })).toThrow('--produce-memory-bytes must be a positive integer, got 0');
  });
});
