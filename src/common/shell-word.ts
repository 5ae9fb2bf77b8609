/**
 * A path or name as one word of a POSIX shell command, for the commands that messages tell an
 * operator to run: as it is when it holds only characters no shell treats specially, else in
 * single quotes (inside which nothing is expanded), an embedded quote written as '\''.
 */
export function shellWord(text: string): string {
  return /^[\w./:@%+=,-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}
