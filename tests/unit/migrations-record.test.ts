import { describe, expect, it } from 'vitest';
import { changedSince } from '../../src/local/migrations-record.ts';

describe('changedSince', () => {
  it('names applied files that changed or are gone, not files added since', () => {
    const applied = { 'a.sql': '1', 'b.sql': '2', 'c.sql': '3' };
    expect(changedSince(applied, applied)).toEqual([]);
    expect(changedSince(applied, { ...applied, 'd.sql': '4' })).toEqual([]);
    expect(changedSince(applied, { 'a.sql': '1', 'b.sql': 'two' })).toEqual(['b.sql', 'c.sql']);
  });
});
