import { describe, expect, it } from 'vitest';
import { exportRange, rangeInstants } from '../../src/export/export-range.ts';

const now = new Date('2026-12-01T09:30:00Z');

describe('exportRange', () => {
  it('takes --period as its UTC calendar month, leap days included', () => {
    expect(exportRange({ period: '2024-02', now })).toEqual({
      ok: true,
      value: { fromDay: '2024-02-01', toDay: '2024-02-29' },
    });
    expect(exportRange({ period: '2026-11', now })).toMatchObject({
      value: { fromDay: '2026-11-01', toDay: '2026-11-30' },
    });
  });

  it('defaults to this month up to today, and --to to today', () => {
    expect(exportRange({ now })).toMatchObject({
      value: { fromDay: '2026-12-01', toDay: '2026-12-01' },
    });
    expect(exportRange({ from: '2026-10-15', now })).toMatchObject({
      value: { fromDay: '2026-10-15', toDay: '2026-12-01' },
    });
  });

  it('allows a year (366 days) and not a day more', () => {
    expect(exportRange({ from: '2024-01-01', to: '2024-12-31', now }).ok).toBe(true);
    expect(exportRange({ from: '2024-01-01', to: '2025-01-01', now })).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringMatching(/367 days/) },
    });
  });

  it.each([
    [{ period: '2026-11', from: '2026-11-01' }, /not both/],
    [{ to: '2026-11-01' }, /--to needs --from/],
    [{ from: '2026-11-02', to: '2026-11-01' }, /after --to/],
    [{ from: '2026-12-02' }, /in the future/],
    [{ period: '2027-01' }, /in the future/],
  ])('refuses %j', (input, message) => {
    expect(exportRange({ ...input, now })).toMatchObject({
      ok: false,
      error: { code: 'invalid_request', message: expect.stringMatching(message) },
    });
  });

  it('turns days into the half-open range of execution starts', () => {
    expect(rangeInstants({ fromDay: '2026-11-01', toDay: '2026-11-30' })).toEqual({
      fromAt: '2026-11-01T00:00:00.000Z',
      toAt: '2026-12-01T00:00:00.000Z',
    });
  });
});
