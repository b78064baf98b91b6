import { describe, expect, it } from 'vitest';
import { walkFrom } from '../../src/billing/reconcile.ts';

describe('walkFrom', () => {
  it('walks the whole list once, from the place asked for round to the one before', () => {
    const items = ['a', 'b', 'c', 'd'];
    expect(walkFrom(items, 0)).toEqual(['a', 'b', 'c', 'd']);
    expect(walkFrom(items, 0.5)).toEqual(['c', 'd', 'a', 'b']);
    expect(walkFrom(items, 0.99)).toEqual(['d', 'a', 'b', 'c']);
    for (const at of [0, 0.13, 0.5, 0.76, 0.999]) {
      expect([...walkFrom(items, at)].sort()).toEqual(items);
    }
  });

  it('keeps within the list at its edges, and walks an empty one as empty', () => {
    expect(walkFrom(['a', 'b'], 1)).toEqual(['b', 'a']);
    expect(walkFrom(['a', 'b'], -0.5)).toEqual(['a', 'b']);
    expect(walkFrom([], 0.5)).toEqual([]);
  });
});
