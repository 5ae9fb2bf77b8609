import { failureLine } from '../src/cli/cli-errors.js';

/**
 * How a developer benchmark ends when it fails: one line on stderr, `<tool>: <message>`, and exit
 * code 1, as `strata` reports a failure. A stack trace says where in the benchmark's own code the
 * error surfaced, which is rarely the question: what failed (a broker that would not start, a
 * directory that could not be made) is in the message.
 */
export function exitWithFailureLine(tool: string): (error: unknown) => never {
  return (error) => {
    process.stderr.write(`${failureLine(error, tool)}\n`);
    process.exit(1);
  };
}
