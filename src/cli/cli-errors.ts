/**
 * How the CLI ends: one clear line on stderr and a documented exit code.
 *   0 success, 1 the server (or the storage) refused or failed, 2 usage error, 130 interrupted
 *   (a second Ctrl-C, or `produce` stopped before the end of its input).
 */
import { environmentName, givenByEnvironment } from './environment.js';
import { meantOption } from './option-suggestion.js';
import { escapeUnprintable } from '../common/printable.js';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** As a shell reports a command ended by SIGINT (128 + 2). */
export const EXIT_INTERRUPTED = 130;

/** A mistake in the command line itself; exits with code 2. */
export class UsageError extends Error {}

/**
 * `<tool>: <message>`, the one line a failure prints (the developer benchmarks name themselves).
 * Control characters and the like are escaped (`\u001b`), line breaks excepted: a message may
 * quote a name as it was typed or stored (`group "..." not found`), and its escape sequences
 * must not reach the terminal.
 */
export function failureLine(error: unknown, tool = 'strata'): string {
  const message = error instanceof Error ? error.message : String(error);
  // Line by line: a message made of lines on purpose (a local broker's last output, after the
  // bench's failure) keeps them.
  return `${tool}: ${message.split('\n').map(escapeUnprintable).join('\n')}`;
}

/** What yargs' usage object gives a failure handler: the running command's usage lines (`$0 topics create <name>`). */
export interface UsageLines {
  getUsage(): [string, string][];
}

/** What a failure handler knows of the command line, besides yargs' message. */
export interface FailedCommandLine {
  /** The command-line tokens, as given. */
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  /** The running command's usage lines (`UsageLines`). */
  usage: [string, string][];
  /** What yargs took as positional arguments, the command's words first (`topics`, `lst`). */
  positionals: readonly string[];
  /** The option names of the running command (dashed, as declared), for a misspelt one. */
  optionNames: readonly string[];
  /** The commands the running command has (the top level's: serve, topics...), for an unknown one. */
  commands: readonly string[];
}

/**
 * yargs' message for a wrong command line (its parser's too) as one line a person can act on:
 * on one line ("Invalid values:\n  Argument: ..."), worded as the CLI's own messages are
 * (`--acks must be one of all, leader, none, got "maybe"`, `--count needs a value`), without
 * camel-case twins, without the options that STRATA_* variables gave and the command line did
 * not name (an unknown command lists them as unknown too), with the option a misspelt one most
 * likely meant, with the command's usage for a missing argument, naming the unknown command
 * beside the one suggested (or the commands there are, when none is near it), and naming
 * options as options (`--group and --partition are mutually exclusive`).
 */
export function usageMessage(message: string, commandLine: FailedCommandLine): string {
  const { argv, env, usage } = commandLine;
  const choice = choiceProblem(message, argv, env);
  if (choice !== null) return choice;
  const text = withoutEnvironmentOptions(withoutCamelCaseTwins(message.replace(/\s*\n\s*/g, ' ').trim()), argv, env);
  const command = usage[0]?.[0];
  const suggestion = /^Did you mean (.+)\?$/.exec(text);
  if (suggestion !== null) {
    // yargs suggests for the first word after the running command's own ("lst" in "topics lst").
    const typed = commandLine.positionals[commandWords(command).length];
    return typed === undefined ? `unknown command; did you mean "${suggestion[1]}"?` : `unknown command "${typed}"; did you mean "${suggestion[1]}"?`;
  }
  const withoutValue = /^Not enough arguments following: (.+)$/.exec(text);
  if (withoutValue !== null) return `${optionSpelled(withoutValue[1]!)} needs a value`;
  if (/^Not enough non-option arguments/.test(text) && command !== undefined && /[<[]/.test(command)) {
    return `an argument is missing: ${command.replace(/^\$0\b/, 'strata')} (see --help)`;
  }
  const conflict = /^Arguments (\S+) and (\S+) are mutually exclusive$/.exec(text);
  if (conflict !== null) return `${optionSpelled(conflict[1]!)} and ${optionSpelled(conflict[2]!)} are mutually exclusive`;
  const unknownCommand = unknownCommandProblem(text, commandLine);
  if (unknownCommand !== null) return unknownCommand;
  return withMeantOption(text, argv, commandLine.optionNames);
}

/**
 * "Unknown argument: frobnicate" where a command (or a subcommand of `topics`...) was expected
 * as `unknown command "frobnicate"` with the commands there are; null for another message.
 */
function unknownCommandProblem(message: string, commandLine: FailedCommandLine): string | null {
  if (commandLine.commands.length === 0) return null;
  const unknown = /^Unknown arguments?: (.+)$/.exec(message)?.[1]?.split(', ') ?? [];
  const words = commandWords(commandLine.usage[0]?.[0]);
  const typed = commandLine.positionals[words.length];
  if (typed === undefined || !unknown.includes(typed)) return null;
  const within = words.length === 0 ? '' : ` of ${words.join(' ')}`;
  return `unknown command "${typed}"; the commands${within} are ${commandLine.commands.join(', ')} (see --help)`;
}

/** The command's words in a usage line (`topics` of `$0 topics`), none for the top level. */
function commandWords(usageLine: string | undefined): string[] {
  return (usageLine ?? '').split(' ').filter((word) => word !== '$0' && word !== '' && !/^[<[]/.test(word));
}

/** `--retention-ms` of the name yargs gives (`retention-ms`, `retentionMs`), `-n` of a letter. */
export function optionSpelled(name: string): string {
  return name.length === 1 ? `-${name}` : `--${name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase()}`;
}

/**
 * yargs' "Invalid values: Argument: acks, Given: "maybe", Choices: "all", "leader", "none"" as
 * `--acks must be one of all, leader, none, got "maybe"` (the first such option only), naming
 * the STRATA_* variable instead when it gave the value; null for another message.
 */
function choiceProblem(message: string, argv: readonly string[], env: NodeJS.ProcessEnv): string | null {
  const match = /^Invalid values:\s*Argument: (.+?), Given: (.*), Choices: (.*)$/m.exec(message);
  if (match === null) return null;
  const [, name, given, choices] = match as unknown as [string, string, string, string];
  const option = givenByEnvironment(name, argv, env) ? environmentName(name) : optionSpelled(name);
  // yargs writes each value as JSON: the choices are shown bare, the value given as it wrote it.
  return `${option} must be one of ${(JSON.parse(`[${choices}]`) as unknown[]).join(', ')}, got ${given}`;
}

/**
 * "Unknown argument: retnetion-ms" with the option it most likely meant, when it was typed as
 * an option (`--retnetion-ms`): a word typed as an argument is not a misspelt option. With
 * several unknown, each misspelt one is paired with its option ("did you mean --count for
 * --cuont, --from for --form?").
 */
function withMeantOption(message: string, argv: readonly string[], optionNames: readonly string[]): string {
  const unknown = /^Unknown arguments?: (.+)$/.exec(message)?.[1]?.split(', ') ?? [];
  const meant = unknown.flatMap((name) => {
    if (!argv.some((token) => token === `--${name}` || token.startsWith(`--${name}=`))) return [];
    const option = meantOption(name, optionNames);
    return option === undefined ? [] : [{ name, option }];
  });
  if (meant.length === 0) return message;
  if (unknown.length === 1) return `${message}; did you mean --${meant[0]!.option}?`;
  return `${message}; did you mean ${meant.map(({ name, option }) => `--${option} for --${name}`).join(', ')}?`;
}

/** "Unknown arguments: server, frobnicate" without `server` when only STRATA_SERVER gave it. */
function withoutEnvironmentOptions(message: string, argv: readonly string[], env: NodeJS.ProcessEnv): string {
  return keepingUnknownArguments(message, (names) => names.filter((name) => !givenByEnvironment(name, argv, env)));
}

/** An "Unknown arguments: ..." message with only the names `keep` keeps (as it was if none), singular for one. */
function keepingUnknownArguments(message: string, keep: (names: string[]) => string[]): string {
  const match = /^Unknown arguments?: (.*)$/.exec(message);
  if (match === null) return message;
  const kept = keep(match[1]!.split(', '));
  return kept.length === 0 ? message : `Unknown argument${kept.length === 1 ? '' : 's'}: ${kept.join(', ')}`;
}

/**
 * yargs names an unknown dashed option twice, as typed and camel-cased ("Unknown arguments:
 * max-records, maxRecords"): keeps the name as typed, and the singular when one is left.
 */
function withoutCamelCaseTwins(message: string): string {
  return keepingUnknownArguments(message, (names) => {
    const twins = new Set(names.filter((name) => name.includes('-')).map(camelCase));
    return names.filter((name) => !twins.has(name));
  });
}

/**
 * A problem when an option that takes one value was given more than once (`--count 1 --count
 * 2`, `-n 5 --lines 6`); null otherwise. yargs turns such an option into an array, which each
 * command would then refuse with a message about "1,2". `options` are yargs' own: the
 * repeatable options (`array`) and each option's aliases (`alias`).
 */
export function repeatedOptionProblem(parsed: Readonly<Record<string, unknown>>, options: { array: readonly string[]; alias: Readonly<Record<string, readonly string[]>> }): string | null {
  const repeatable = new Set(options.array);
  for (const [name, value] of Object.entries(parsed)) {
    // Camel-case twins ("maxRecords") carry the same values as the name as declared.
    if (!Array.isArray(value) || name === '_' || repeatable.has(name) || /[A-Z]/.test(name)) continue;
    const canonical = Object.keys(options.alias).find((key) => key === name || options.alias[key]!.includes(name)) ?? name;
    const names = [canonical, ...(options.alias[canonical] ?? [])].filter((alias) => !/[A-Z]/.test(alias));
    const spelled = names.map((alias) => (alias.length === 1 ? `-${alias}` : `--${alias}`)).join('/');
    return repeatedProblem(spelled, value.length);
  }
  return null;
}

/** The problem of an option that takes one value given `times` times. */
export function repeatedProblem(spelled: string, times: number): string {
  return `${spelled} was given ${times} times; it takes one value`;
}

export function camelCase(name: string): string {
  return name.replace(/-+([a-z0-9])/gi, (_, letter: string) => letter.toUpperCase());
}
