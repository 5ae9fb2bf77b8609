/**
 * The words after `--` are operands, as POSIX utilities take them: `strata produce t -- -1 --x`
 * writes the records "-1" and "--x", and `strata topics create -- -lead` creates the topic
 * "-lead" (a legal name). yargs (18) does otherwise: it puts those words in `argv._` once the
 * command's positional arguments are filled, so a command took none of them (produce read
 * stdin instead, and a name after `--` was "missing").
 *
 * Method: before yargs parses, the first `--` is taken out and each word after it marked with a
 * leading NUL, a character no command-line argument can hold. yargs-parser takes a marked word
 * for an argument like any word that does not start with a dash, so it fills the positional
 * arguments in order, and words left over are refused by strict mode as unknown arguments. A
 * middleware run before validation takes the marks off (`unmarkOperands`), and messages show
 * the words unmarked (`withoutMarks`). A marked word that ended up as an option's value (`--key
 * -- x`: the option had no value before the `--`) is refused as that option lacking a value.
 */

/** Marks a word that came after `--`. */
const OPERAND_MARK = '\u0000';
const OPERAND_MARKS = /\u0000/g;

/** `argv` without its first `--`, each word after it marked as an operand. */
export function markOperands(argv: readonly string[]): string[] {
  const end = argv.indexOf('--');
  if (end < 0) return [...argv];
  return [...argv.slice(0, end), ...argv.slice(end + 1).map((word) => OPERAND_MARK + word)];
}

/** `text` (a message, a word) without operand marks. */
export function withoutMarks(text: string): string {
  return text.includes(OPERAND_MARK) ? text.replace(OPERAND_MARKS, '') : text;
}

function marked(value: unknown): boolean {
  return typeof value === 'string' && value.startsWith(OPERAND_MARK);
}

function unmarked(value: unknown): unknown {
  if (typeof value === 'string') return withoutMarks(value);
  if (Array.isArray(value)) return value.map(unmarked);
  return value;
}

/**
 * Takes the marks off the words of `parsed` (yargs' argv, changed in place): the positional
 * arguments named in `positionals`, and `_`. Returns the name of an option that took a marked
 * word as its value (it had none before the `--`), or null.
 */
export function unmarkOperands(parsed: Record<string, unknown>, positionals: readonly string[]): string | null {
  let optionWithoutValue: string | null = null;
  for (const [name, value] of Object.entries(parsed)) {
    const holdsOperand = marked(value) || (Array.isArray(value) && value.some(marked));
    if (!holdsOperand) continue;
    if (name !== '_' && !positionals.includes(name) && !/[A-Z]/.test(name)) optionWithoutValue ??= name;
    parsed[name] = unmarked(value);
  }
  return optionWithoutValue;
}
