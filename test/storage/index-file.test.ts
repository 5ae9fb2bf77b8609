// Goal: show that an index file's trailer tells its entries from damage and from files without one; method: write entries with `indexFileBytes`, change the file, and read it back with `indexFileEntries`.
import { describe, expect, it } from 'vitest';
import { INDEX_TRAILER_BYTES, indexFileBytes, indexFileEntries } from '../../src/storage/index-file.js';

const entries = Buffer.from(Array.from({ length: 36 }, (_, index) => (index * 7) & 0xff));

describe('index file trailer', () => {
  it('reads back the entries it was written with, an empty index too', () => {
    const file = indexFileBytes(entries);
    expect(file.length).toBe(entries.length + INDEX_TRAILER_BYTES);
    expect(indexFileEntries(file, 12)).toEqual(entries);
    expect(indexFileEntries(indexFileBytes(Buffer.alloc(0)), 8)).toEqual(Buffer.alloc(0));
  });

  it('refuses a file with any one bit of its entries or checksum flipped', () => {
    const file = indexFileBytes(entries);
    for (let bit = 0; bit < (entries.length + 4) * 8; bit++) {
      const damaged = Buffer.from(file);
      const byte = bit >> 3 < entries.length ? bit >> 3 : entries.length + 4 + ((bit >> 3) - entries.length);
      damaged[byte]! ^= 1 << (bit & 7);
      expect(indexFileEntries(damaged, 12), `bit ${bit & 7} of byte ${byte}`).toBe('index file checksum does not match its entries');
    }
  });

  it('refuses a file without the trailer (damaged, or from a version before it), and one of part entries', () => {
    expect(indexFileEntries(entries, 12)).toMatch(/lacks its checksum trailer/);
    expect(indexFileEntries(Buffer.alloc(5), 12)).toMatch(/lacks its checksum trailer/);
    expect(indexFileEntries(indexFileBytes(entries.subarray(0, 30)), 12)).toBe('index file size is not a whole number of entries');
  });
});
