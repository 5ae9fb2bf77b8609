/**
 * `strata serve`: runs the broker until SIGTERM or SIGINT (SIGHUP reads the tokens file and the
 * TLS files again, those it was given, and stops nothing), then shuts down gracefully: in-flight
 * calls get `--shutdown-timeout-ms` to finish (then they are cut off), the logs are closed, and
 * the process exits 0 (1 if calls had to be cut off or the shutdown failed; 1 as well, forced,
 * if the whole stop takes 5 s longer than that bound).
 *
 * The signal handlers are installed before the start, not once the broker serves: in a
 * container node is PID 1, and PID 1 gets no default action for SIGTERM, so a signal without a
 * handler would be ignored and `docker stop` or a pod deletion during a long recovery would wait
 * for SIGKILL. A signal during the start logs one line and calls the start off (recovery is
 * crash-safe: the next start recovers again), and the process exits 1 at once.
 */
import type { Argv } from 'yargs';
import { SERVE_OPTIONS, type ServeSettings, serveSettings } from '../../config/broker-options.js';
import { SHUTDOWN_GUARD_MS } from '../../common/broker-limits.js';
import { ErrorCode, StrataError } from '../../common/errors.js';
import { UsageError } from '../cli-errors.js';
import { rootLogger, setLogLevel } from '../../common/logger.js';
import { type RunningBroker, StartAborted, runBroker } from '../../server/run-broker.js';
import { BROKER_NODE_FLAGS, missingBrokerNodeFlags } from '../../config/node-flags.js';
import { readConfigFile } from '../config-file.js';
import { type ConfigFileOptions, serveOptionNames } from '../serve-option-names.js';
import { handleStopSignals } from '../../common/signal-takeover.js';

/** `commandLine`: the tokens the CLI was given, to name a bad option's value by where it came from. */
export function serveCommand(yargs: Argv, commandLine: readonly string[]): Argv {
  // The config file as yargs read it (the path resolved), for naming a bad value by its key.
  let config: ConfigFileOptions | null = null;
  const readConfig = (path: string): Record<string, unknown> => {
    const options = readConfigFile(path);
    config = { path, options };
    return options;
  };
  return yargs.command(
    'serve',
    'Run a broker (data in --data-dir, gRPC on --listen)',
    (command) =>
      command
        // Each flag takes a value: without one, yargs would quietly use the default.
        .options(Object.fromEntries(Object.entries(SERVE_OPTIONS).map(([name, option]) => [name, { ...option, requiresArg: true }])))
        .config('config', 'Path to a JSON file of options (flags and STRATA_* variables win over it)', readConfig)
        .example('strata serve', 'data in ./data, gRPC on 127.0.0.1:50051')
        .example('STRATA_LISTEN=0.0.0.0:50051 strata serve --data-dir /var/lib/strata', 'listen on all interfaces')
        .example('strata serve --config strata.json', 'options from a JSON file ({"data-dir": "...", "retention-ms": 86400000})')
        .epilog('Every option can also be set as STRATA_<OPTION> (e.g. STRATA_DATA_DIR) or in the --config JSON file; flags win over the environment, which wins over the file.'),
    async (argv) => {
      // First, and never removed: a SIGHUP (`systemctl reload`) until the process ends must not
      // end it. One before the settings are read has nothing to read again: they read the files.
      let reloadable: ServeSettings | null = null;
      process.on('SIGHUP', () => {
        if (reloadable !== null) reloadFiles(reloadable);
      });
      let settings: ServeSettings;
      try {
        settings = serveSettings(argv as never, serveOptionNames(commandLine, process.env, config));
      } catch (error) {
        // A value out of range or of the wrong form: the command line (or its config file) is wrong.
        if (error instanceof StrataError && error.code === ErrorCode.INVALID_ARGUMENT) throw new UsageError(error.message);
        throw error;
      }
      reloadable = settings;
      setLogLevel(settings.logLevel);
      const missing = missingBrokerNodeFlags();
      if (missing.length > 0) {
        rootLogger.warn({ missing }, `node was started without ${missing.join(' ')}: expect more and longer garbage-collection pauses under load (start it as \`node ${BROKER_NODE_FLAGS.join(' ')} bin/strata.js serve\`, as npm start does)`);
      }
      const startup = new AbortController();
      let running: RunningBroker | null = null;
      let stopped: () => void = () => undefined;
      const whenStopped = new Promise<void>((resolve) => (stopped = resolve));
      let signalled = false;
      // When the stop must be over, work left after it included: bound + SHUTDOWN_GUARD_MS.
      let exitDeadlineMs = Number.POSITIVE_INFINITY;
      // Listening for every signal (not once): with no listener left, a second Ctrl-C or
      // SIGTERM would kill the process in the middle of its graceful stop.
      const onSignal = (signal: NodeJS.Signals): void => {
        if (signalled && running === null) {
          // Stopping a start has no time bound (a recovery under way cannot be interrupted).
          rootLogger.warn({ signal }, `${signal} again during start-up: exiting now (log recovery is crash-safe and runs again at the next start)`);
          process.exit(1);
        }
        if (signalled) {
          rootLogger.warn({ signal }, `${signal} while stopping: already stopping, within --shutdown-timeout-ms (SIGKILL ends the process at once, and the next start recovers the logs)`);
          return;
        }
        signalled = true;
        if (running === null) {
          rootLogger.warn({ signal }, `${signal} during start-up: stopping before serving (log recovery is crash-safe and runs again at the next start)`);
          startup.abort();
          return;
        }
        exitDeadlineMs = performance.now() + settings.shutdownTimeoutMs + SHUTDOWN_GUARD_MS;
        stopRunning(running, signal, settings.shutdownTimeoutMs).then(stopped, stopped);
      };
      const stopHandlingSignals = handleStopSignals(onSignal);
      try {
        try {
          running = await runBroker(settings, rootLogger, startup.signal);
        } catch (error) {
          if (!(error instanceof StartAborted)) throw error;
          // Recovery may still be running in the background (it cannot be interrupted), and
          // would keep the process alive until it finishes: exit now.
          process.exit(1);
        }
        await whenStopped;
      } finally {
        stopHandlingSignals();
      }
      // Stopped: the process ends once its last work is done (the log lines written). The removal
      // of a deleted topic's directory may still be under way, which the next start finishes:
      // it may not keep the process alive past the guard's deadline (the one bound operators give
      // their grace periods), nor make a stop that finished report itself late.
      const leftMs = Number.isFinite(exitDeadlineMs) ? Math.max(0, exitDeadlineMs - performance.now()) : SHUTDOWN_GUARD_MS;
      setTimeout(() => {
        rootLogger.info("exiting with the removal of deleted topics' directories still under way; the next start goes on with it");
        process.exit();
      }, leftMs).unref();
    },
  );
}

/**
 * SIGHUP: reads the tokens file (`--auth-tokens-file`) and the TLS files again, so tokens are
 * added or revoked and a renewed certificate served without a restart. Each is taken or not on
 * its own: one with a problem is logged, and what was in use before stays. A broker with
 * neither logs that it has nothing to read.
 */
function reloadFiles(settings: ServeSettings): void {
  const { authenticator, tls } = settings;
  if (authenticator === null && tls === null) {
    rootLogger.info('SIGHUP: nothing to read again (no --auth-tokens-file, no TLS files)');
    return;
  }
  if (authenticator !== null) {
    try {
      authenticator.reload();
      rootLogger.info({ file: authenticator.file, tokens: authenticator.tokenCount }, 'SIGHUP: tokens read again');
    } catch (error) {
      rootLogger.error({ file: authenticator.file }, `SIGHUP: the tokens file was not taken, the tokens before stay: ${(error as Error).message}`);
    }
  }
  if (tls !== null) {
    try {
      const material = tls.reload(Date.now());
      rootLogger.info({ ...material.files, certificateValidTo: material.validTo }, 'SIGHUP: TLS files read again; new connections get this certificate');
    } catch (error) {
      rootLogger.error({ ...tls.material.files }, `SIGHUP: the TLS files were not taken, the certificate before stays: ${(error as Error).message}`);
    }
  }
}

/** Stops the running broker; sets the exit code (1 if calls were cut off or closing failed). */
async function stopRunning(running: RunningBroker, signal: NodeJS.Signals, shutdownTimeoutMs: number): Promise<void> {
  rootLogger.info({ signal }, 'shutting down');
  const guard = setTimeout(() => {
    rootLogger.error('shutdown did not finish in time; exiting');
    process.exit(1);
  }, shutdownTimeoutMs + SHUTDOWN_GUARD_MS);
  guard.unref();
  try {
    const result = await running.stop();
    process.exitCode = result.forced ? 1 : 0;
  } catch (error) {
    rootLogger.error({ err: error }, 'shutdown failed');
    process.exitCode = 1;
  } finally {
    clearTimeout(guard);
  }
}
