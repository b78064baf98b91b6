import { describe, expect, it } from 'vitest';
import { checkWalkIds, MAX_ID_JUMP, topToConfirm } from '../../src/collector/page-checks.ts';
import { pageOf } from '../support/n8n-pages.ts';

/**
 * A walk's newest id becomes the next walk's floor: the rules that keep an id n8n never
 * assigned, or ids that restarted below the ones collected, from deciding it.
 */

const first = (highWaterId: number) => ({ firstPage: true, highWaterId });

describe('topToConfirm', () => {
  it('asks n8n by id for a newest id more than MAX_ID_JUMP above the next known one', () => {
    expect(MAX_ID_JUMP).toBe(250_000);
    expect(topToConfirm(first(0), pageOf([5 + MAX_ID_JUMP, 5]))).toBeNull();
    expect(topToConfirm(first(0), pageOf([6 + MAX_ID_JUMP, 5]))).toEqual({
      id: 6 + MAX_ID_JUMP,
      below: 5,
    });
    // The highest id an earlier walk listed counts as known, the page's next id too.
    expect(topToConfirm(first(100), pageOf([101 + MAX_ID_JUMP]))).toEqual({
      id: 101 + MAX_ID_JUMP,
      below: 100,
    });
    expect(topToConfirm(first(100), pageOf([101 + MAX_ID_JUMP, 100 + MAX_ID_JUMP]))).toBeNull();
  });

  it('has nothing to compare with on a new source listing one execution, nor past a walk`s first page', () => {
    expect(topToConfirm(first(0), pageOf([3_000_000]))).toBeNull();
    expect(topToConfirm({ firstPage: false, highWaterId: 5 }, pageOf([3_000_000, 6]))).toBeNull();
    expect(topToConfirm(first(5), pageOf([]))).toBeNull();
  });
});

describe('checkWalkIds', () => {
  it('refuses an id beyond what a number holds exactly, on any page', () => {
    const check = checkWalkIds(
      { firstPage: false, highWaterId: 0 },
      pageOf(['9007199254740992', 4]),
    );
    expect(check).toMatchObject({
      ok: false,
      message: expect.stringMatching(/beyond 9007199254740991/),
    });
    expect(checkWalkIds(first(0), pageOf([Number.MAX_SAFE_INTEGER]))).toEqual({ ok: true });
  });

  it('refuses a first page whose newest id lies far below the highest listed before', () => {
    // At most 1,000 below, and at most half of the ids assigned.
    expect(checkWalkIds(first(20), pageOf([10]))).toEqual({ ok: true });
    expect(checkWalkIds(first(20), pageOf([9]))).toMatchObject({
      ok: false,
      message: expect.stringMatching(/newest execution is id 9, more than 10 below id 20/),
    });
    expect(checkWalkIds(first(5000), pageOf([4000]))).toEqual({ ok: true });
    expect(checkWalkIds(first(5000), pageOf([3999]))).toMatchObject({ ok: false });
    // Mid-walk pages lie below the top by design; an empty list says nothing.
    expect(checkWalkIds({ firstPage: false, highWaterId: 5000 }, pageOf([3]))).toEqual({
      ok: true,
    });
    expect(checkWalkIds(first(5000), pageOf([]))).toEqual({ ok: true });
  });
});
