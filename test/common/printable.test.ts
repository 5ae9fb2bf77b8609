// What the CLI prints is escaped: no control, line-separator or bidirectional-override
// character from a stored name or a client id reaches the operator's terminal as it is.
import { describe, expect, it } from 'vitest';
import { formatFields, formatTable } from '../../src/cli/output.js';
import { UNPRINTABLE_CHARACTER, escapeUnprintable } from '../../src/common/printable.js';

describe('escapeUnprintable', () => {
  it('writes controls, line separators and bidi overrides as \\uXXXX and leaves the rest', () => {
    expect(escapeUnprintable('ops\u001b[2Jgroup')).toBe('ops\\u001b[2Jgroup');
    expect(escapeUnprintable('a\nb\tc\u007f\u0085\u2028\u202e\u2066')).toBe('a\\u000ab\\u0009c\\u007f\\u0085\\u2028\\u202e\\u2066');
    expect(escapeUnprintable('commandes-été 主题 ✓')).toBe('commandes-été 主题 ✓');
  });

  it('is what the CLI tables and field lists print', () => {
    const table = formatTable(['GROUP', 'STATE'], [['evil\u001b]0;owned\u0007', 'empty']]);
    const fields = formatFields([['client id', 'x\u202eevil']]);
    expect([...table.split('\n'), ...fields.split('\n')].some((line) => UNPRINTABLE_CHARACTER.test(line))).toBe(false);
    expect(table).toContain('evil\\u001b]0;owned\\u0007');
    expect(fields).toBe('client id  x\\u202eevil');
  });
});
