import { describe, expect, it } from 'vitest';
import { resumedWalk, walkFrom } from '../../src/billing/reconcile.ts';

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

describe('resumedWalk', () => {
  const key = (tenant: string, customer = 'cus_1') => ({
    tenant_id: tenant,
    period_start: '2026-11-01T00:00:00+00:00',
    stripe_customer_id: customer,
  });
  const items = [key('a'), key('b'), key('b', 'cus_2'), key('c')];

  it('starts at the customer-period the last run stopped at, however its time is written', () => {
    expect(resumedWalk(items, key('b', 'cus_2'), 0.9)[0]).toEqual(key('b', 'cus_2'));
    const sameInstant = { ...key('c'), period_start: '2026-11-01T00:00:00.000Z' };
    expect(resumedWalk(items, sameInstant, 0)[0]).toEqual(key('c'));
    expect([...resumedWalk(items, key('b'), 0)].length).toBe(items.length);
  });

  it('starts exactly there in any length of list, not one before', () => {
    // 15 / 22 × 22 is 14.999…: a fraction of the length would start one item early.
    const many = Array.from({ length: 22 }, (_, i) => key(`t${String(i).padStart(2, '0')}`));
    expect(resumedWalk(many, key('t15'), 0)[0]).toEqual(key('t15'));
  });

  it('starts at the fallback without one, or when the list no longer holds it', () => {
    expect(resumedWalk(items, null, 0.25)).toEqual(walkFrom(items, 0.25));
    expect(resumedWalk(items, undefined, 0.25)).toEqual(walkFrom(items, 0.25));
    expect(resumedWalk(items, key('z'), 0.6)).toEqual(walkFrom(items, 0.6));
    expect(resumedWalk([], key('a'), 0.6)).toEqual([]);
  });
});
