/**
 * Names an option of `strata serve` in a message the way the operator gave its value: the flag
 * (`--retention-ms`), its variable (`STRATA_RETENTION_MS`) or the config file's key (`config
 * file strata.json: "retentionMs"`), so that a value out of range is blamed on the place that
 * holds it. yargs takes a flag over the variable, and the variable over the file; an option
 * none of them gave has its default and is named by its flag.
 */
import type { OptionNames } from '../config/broker-options.js';
import { environmentName, givenByEnvironment } from './environment.js';
import { optionGiven, spellings } from './option-spellings.js';

export interface ConfigFileOptions {
  path: string;
  /** The file's object, keys as written. */
  options: Readonly<Record<string, unknown>>;
}

export function serveOptionNames(commandLine: readonly string[], env: NodeJS.ProcessEnv, config: ConfigFileOptions | null): OptionNames {
  const end = commandLine.indexOf('--');
  const options = end < 0 ? commandLine : commandLine.slice(0, end);
  /** The flag, or the variable, or the file's key (`inFile` names it), whichever gave the value. */
  const named = (option: string, inFile: (key: string) => string): string => {
    if (optionGiven(options, option)) return `--${option}`;
    if (givenByEnvironment(option, options, env)) return environmentName(option);
    const key = config === null ? undefined : spellings(option).find((spelling) => Object.hasOwn(config.options, spelling));
    return key === undefined ? `--${option}` : inFile(key);
  };
  return {
    subject: (option) => named(option, (key) => `config file ${config!.path}: "${key}"`),
    mention: (option) => named(option, (key) => `"${key}" of config file ${config!.path}`),
  };
}
