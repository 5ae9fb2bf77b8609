/**
 * Characters that must not reach an operator's terminal as they are: C0 and C1 controls and
 * DEL (escape sequences), the Unicode line separators, and the bidirectional overrides and
 * isolates that make text display in another order than it is stored ("Trojan Source").
 */
const UNPRINTABLE = '\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';

/** Matches one unprintable character. */
export const UNPRINTABLE_CHARACTER = new RegExp(`[${UNPRINTABLE}]`);
const UNPRINTABLE_CHARACTERS = new RegExp(`[${UNPRINTABLE}]`, 'g');

/** `text` with each unprintable character written as `\uXXXX`. */
export function escapeUnprintable(text: string): string {
  return text.replace(UNPRINTABLE_CHARACTERS, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
