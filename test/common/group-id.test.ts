// The group id rule shared by the broker and the client.
import { describe, expect, it } from 'vitest';
import { GROUP_ID_LENGTH_MAX, groupIdProblem, newGroupIdProblem } from '../../src/common/group-id.js';

describe('group ids', () => {
  it('accepts 1 to 255 characters, including spaces and non-ASCII letters', () => {
    for (const id of ['g', 'orders consumers', 'commandes-été', 'g'.repeat(GROUP_ID_LENGTH_MAX)]) {
      expect(groupIdProblem(id), id).toBeNull();
      expect(newGroupIdProblem(id), id).toBeNull();
    }
  });

  it('refuses empty and overlong ids everywhere', () => {
    for (const check of [groupIdProblem, newGroupIdProblem]) {
      expect(check('')).toBe('group id is required');
      expect(check('g'.repeat(256))).toBe('group id is 256 characters long; the limit is 255');
    }
  });

  it('refuses control characters in a new group, naming the character and its position', () => {
    expect(newGroupIdProblem('ops\u001b[2Jgroup')).toBe('group id "ops\\u001b[2Jgroup" contains the unprintable character U+001B at position 3; use printable characters');
    for (const control of ['\u0000', '\n', '\t', '\u007f', '\u0085', '\u009f', '\u2028', '\u202e', '\u2066']) expect(newGroupIdProblem(`g${control}`), JSON.stringify(control)).toMatch(/unprintable character/);
    expect(newGroupIdProblem('a\u202eb')).toBe('group id "a\\u202eb" contains the unprintable character U+202E at position 1; use printable characters'); // the message is safe to print
    expect(groupIdProblem('ops\u001b[2Jgroup')).toBeNull(); // a group stored before the rule can still be read and deleted
  });
});
