/**
 * `strata serve`: runs the broker until SIGTERM or SIGINT, then shuts down gracefully within
 * `--shutdown-timeout-ms` and exits 0 (1 if the shutdown had to be forced or failed).
 */
import type { Argv } from 'yargs';
import { SERVE_OPTIONS, serveSettings } from '../../config/broker-options.js';
import { rootLogger, setLogLevel } from '../../common/logger.js';
import { runBroker } from '../../server/run-broker.js';
import { BROKER_NODE_FLAGS, missingBrokerNodeFlags } from '../../config/node-flags.js';

export function serveCommand(yargs: Argv): Argv {
  return yargs.command(
    'serve',
    'Run a broker (data in --data-dir, gRPC on --listen)',
    (command) =>
      command
        .options(SERVE_OPTIONS)
        .config('config', 'Path to a JSON file of options (flags and STRATA_* variables win over it)')
        .example('strata serve', 'data in ./data, gRPC on 127.0.0.1:50051')
        .example('STRATA_LISTEN=0.0.0.0:50051 strata serve --data-dir /var/lib/strata', 'listen on all interfaces')
        .example('strata serve --config strata.json', 'options from a JSON file ({"data-dir": "...", "retention-ms": 86400000})')
        .epilog('Every option can also be set as STRATA_<OPTION> (e.g. STRATA_DATA_DIR) or in the --config JSON file; flags win over the environment, which wins over the file.'),
    async (argv) => {
      const settings = serveSettings(argv as never);
      setLogLevel(settings.logLevel);
      const missing = missingBrokerNodeFlags();
      if (missing.length > 0) {
        rootLogger.warn({ missing }, `node was started without ${missing.join(' ')}: expect more and longer garbage-collection pauses under load (start it as \`node ${BROKER_NODE_FLAGS.join(' ')} bin/strata.js serve\`, as npm start does)`);
      }
      const running = await runBroker(settings);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          rootLogger.info({ signal }, 'shutting down');
          const guard = setTimeout(() => {
            rootLogger.error('shutdown did not finish in time; exiting');
            process.exit(1);
          }, settings.shutdownTimeoutMs + 5_000);
          guard.unref();
          running.stop().then(
            (result) => {
              process.exitCode = result.forced ? 1 : 0;
              resolve();
            },
            (error: unknown) => {
              rootLogger.error({ err: error }, 'shutdown failed');
              process.exitCode = 1;
              resolve();
            },
          );
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    },
  );
}
