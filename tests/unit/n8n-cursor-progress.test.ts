import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkPage } from '../../src/collector/page-checks.ts';
import { pageOf } from '../support/n8n-pages.ts';

/**
 * A cursor that does not make progress: the same cursor again, a page whose ids are not
 * below the previous page's, ids that go up within a page. Each would walk for ever, or
 * (ids going up) bill executions that were never run.
 */

const cursorBelow = (id: number, limit = 250) =>
  Buffer.from(JSON.stringify({ lastId: String(id), limit })).toString('base64');

/** Strictly descending ids, as n8n lists them. */
const descendingIds = fc
  .uniqueArray(fc.integer({ min: 1, max: 1_000_000 }), { minLength: 1, maxLength: 250 })
  .map((ids) => ids.sort((a, b) => b - a));

describe('checkPage: pages that move the walk down', () => {
  it('accepts every strictly descending page below the previous one, with its own cursor', () => {
    fc.assert(
      fc.property(
        descendingIds,
        fc.integer({ min: 1, max: 1000 }),
        fc.boolean(),
        (ids, gap, last) => {
          const previousLowest = (ids[0] as number) + gap;
          const page = pageOf(ids, last ? null : cursorBelow(ids.at(-1) as number));
          const check = checkPage(
            { cursor: cursorBelow(previousLowest), lowestSeenId: previousLowest },
            page,
          );
          expect(check).toEqual({ ok: true });
        },
      ),
    );
  });

  it('accepts the first page of a walk and an empty last page', () => {
    expect(
      checkPage({ cursor: null, lowestSeenId: null }, pageOf([9, 5, 1], cursorBelow(1))),
    ).toEqual({ ok: true });
    expect(checkPage({ cursor: cursorBelow(4), lowestSeenId: 4 }, pageOf([], null))).toEqual({
      ok: true,
    });
  });
});

describe('checkPage: pages that do not', () => {
  it('refuses any page whose ids do not strictly descend (ids going up or repeated)', () => {
    fc.assert(
      fc.property(
        descendingIds.filter((ids) => ids.length >= 2),
        fc.nat(),
        fc.boolean(),
        (ids, at, repeat) => {
          const i = 1 + (at % (ids.length - 1));
          const broken = [...ids];
          // Swap two neighbours (ids go up) or repeat one.
          if (repeat) broken[i] = broken[i - 1] as number;
          else [broken[i - 1], broken[i]] = [broken[i] as number, broken[i - 1] as number];
          const check = checkPage({ cursor: null, lowestSeenId: null }, pageOf(broken, null));
          expect(check.ok).toBe(false);
          if (!check.ok) expect(check.message).toMatch(/strictly descending/);
        },
      ),
    );
  });

  it('refuses a page that does not start below the previous page (the same page again, or ids going up)', () => {
    fc.assert(
      fc.property(descendingIds, fc.integer({ min: 0, max: 1000 }), (ids, above) => {
        const previousLowest = Math.max(1, (ids[0] as number) - above);
        const check = checkPage(
          { cursor: cursorBelow(previousLowest), lowestSeenId: previousLowest },
          pageOf(ids, cursorBelow(ids.at(-1) as number)),
        );
        expect(check.ok).toBe(false);
        if (!check.ok) expect(check.message).toMatch(/not below it/);
      }),
    );
  });

  it('refuses the cursor it was asked with, handed back', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), descendingIds, (cursor, ids) => {
        const check = checkPage({ cursor, lowestSeenId: null }, pageOf(ids, cursor));
        expect(check.ok).toBe(false);
        if (!check.ok) expect(check.message).toMatch(/never end|strictly descending/);
      }),
    );
  });

  it('refuses a next cursor pointing above the page (the walk would go back up)', () => {
    fc.assert(
      fc.property(descendingIds, fc.integer({ min: 1, max: 1000 }), (ids, up) => {
        const check = checkPage(
          { cursor: null, lowestSeenId: null },
          pageOf(ids, cursorBelow((ids.at(-1) as number) + up)),
        );
        expect(check.ok).toBe(false);
        if (!check.ok) expect(check.message).toMatch(/go back up/);
      }),
    );
  });

  it('refuses an empty page that points to another one', () => {
    const check = checkPage(
      { cursor: cursorBelow(10), lowestSeenId: 10 },
      pageOf([], cursorBelow(5)),
    );
    expect(check).toMatchObject({ ok: false, message: expect.stringMatching(/empty page/) });
  });
});
