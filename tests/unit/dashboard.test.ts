import { describe, expect, it } from 'vitest';
import { noun } from '../../src/domain/words.ts';
import type { DailyUsage, UsageAlert, UsageSummary } from '../../src/usage-client/index.ts';
import { alertsUnreadFirst } from '../../web/src/alerts.ts';
import { loadConfig } from '../../web/src/config.ts';
import { actionErrorMessage, loadErrorMessage, signInErrorMessage } from '../../web/src/errors.ts';
import { formatter } from '../../web/src/format.ts';
import {
  daysLeft,
  meterShares,
  periodLengthInDays,
  periodSeries,
  toUsageView,
} from '../../web/src/widget/usage-view.ts';

const summary = (overrides: Partial<UsageSummary> = {}): UsageSummary => ({
  tenantId: 't1',
  tenantName: 'Acme',
  planId: 'free',
  planName: 'Free',
  limitPolicy: 'hard_limit',
  subscriptionStatus: 'none',
  periodStart: '2026-12-01T00:00:00+00:00',
  periodEnd: '2027-01-01T00:00:00+00:00',
  used: 25,
  quota: 30,
  remaining: 5,
  percent: 83.3,
  level: 'warning',
  overageUnits: 0,
  estimatedOverageAmount: 0,
  currency: 'usd',
  reserved: 3,
  executions: 40,
  failed: 1,
  ...overrides,
});

const day = (d: string, billable: number): DailyUsage => ({
  day: d,
  executions: billable + 1,
  billable,
  failed: 0,
  durationMs: 0,
});

describe('the usage view', () => {
  const now = new Date('2026-12-20T12:00:00Z');

  it('keeps reserved runs apart from used ones', () => {
    const view = toUsageView(summary(), now);
    expect(view).toMatchObject({ used: 25, reserved: 3, quota: 30, blockedNow: false });
    expect(meterShares(view)).toEqual({ used: (100 * 25) / 30, reserved: 10 });
  });

  it('is blocked now when collected plus reserved runs reach a hard limit', () => {
    expect(toUsageView(summary({ used: 27, reserved: 3 }), now).blockedNow).toBe(true);
    expect(toUsageView(summary({ used: 27, reserved: 2 }), now).blockedNow).toBe(false);
    expect(
      toUsageView(summary({ limitPolicy: 'overage', used: 40, reserved: 3 }), now).blockedNow,
    ).toBe(false);
    expect(
      toUsageView(summary({ limitPolicy: 'unlimited', quota: null, used: 40 }), now).blockedNow,
    ).toBe(false);
  });

  it('scales the bar to the overshoot and shows none without a quota', () => {
    const over = toUsageView(summary({ used: 50, reserved: 10 }), now);
    expect(meterShares(over)).toEqual({ used: (100 * 50) / 60, reserved: (100 * 10) / 60 });
    expect(meterShares(toUsageView(summary({ quota: null }), now))).toEqual({
      used: 0,
      reserved: 0,
    });
    expect(meterShares(toUsageView(summary({ quota: 0, used: 0, reserved: 0 }), now))).toEqual({
      used: 100,
      reserved: 0,
    });
  });

  it('counts days left up to the period end, never below zero', () => {
    expect(daysLeft('2027-01-01T00:00:00Z', now)).toBe(12);
    expect(daysLeft('2026-12-20T12:00:01Z', now)).toBe(1);
    expect(daysLeft('2026-12-01T00:00:00Z', now)).toBe(0);
  });

  it('splits the daily series at the first day of the current period', () => {
    const days = [
      day('2026-11-29', 4),
      day('2026-11-30', 5),
      day('2026-12-01', 6),
      day('2026-12-02', 7),
    ];
    const series = periodSeries(days, '2026-12-01T00:00:00+00:00', '2027-01-01T00:00:00+00:00');
    expect(series.previous.map((d) => d.billable)).toEqual([4, 5]);
    expect(series.current.map((d) => d.billable)).toEqual([6, 7]);
    expect(series.labels).toHaveLength(31);
    expect(series.labels[0]).toBe('Day 1');
  });

  it('counts the UTC days a period touches, the anchor day of a mid-day period too', () => {
    expect(periodLengthInDays('2026-12-01T00:00:00Z', '2027-01-01T00:00:00Z')).toBe(31);
    expect(periodLengthInDays('2026-02-01T00:00:00Z', '2026-03-01T00:00:00Z')).toBe(28);
    expect(periodLengthInDays('2026-11-15T12:00:00Z', '2026-12-15T12:00:00Z')).toBe(31);
  });
});

describe('formatting', () => {
  const f = formatter('en-US');

  it('shows money from minor units, half cents rounded up', () => {
    expect(f.money(70.5, 'eur')).toBe('€0.71');
    expect(f.money(123_456, 'usd')).toBe('$1,234.56');
    expect(f.money(500, 'jpy')).toBe('¥500');
  });

  it('shows durations at a useful precision', () => {
    expect(f.duration(null)).toBe('—');
    expect(f.duration(896.4)).toBe('896 ms');
    expect(f.duration(2_400)).toBe('2.4 s');
    expect(f.duration(1_616_000)).toBe('26m 56s');
    expect(f.duration(3_725_000)).toBe('1h 2m');
  });

  it("shows the day of an instant, without its time, in the reader's time zone", () => {
    // Noon UTC falls on the same day in every time zone within eleven hours of it.
    expect(f.date('2026-12-03T12:00:00Z')).toBe('Dec 3, 2026');
    expect(f.dateTime('2026-12-03T12:00:00Z')).toMatch(/^Dec 3, 2026, \d{1,2}:\d{2}\s?[AP]M$/);
  });

  it('puts a count with its noun, singular for exactly one, the number in the locale', () => {
    expect(f.counted(1, 'execution')).toBe('1 execution');
    expect(f.counted(0, 'execution')).toBe('0 executions');
    expect(f.counted(1_050, 'execution')).toBe('1,050 executions');
    expect(f.counted(2, 'entry', 'entries')).toBe('2 entries');
    expect(formatter('de-DE').counted(1_050, 'execution')).toBe('1.050 executions');
    // The words are English: French counts 0 as singular, the English words do not.
    expect(formatter('fr-FR').counted(0, 'day')).toBe('0 days');
    expect(noun(1, 'gap')).toBe('gap');
    expect(noun(3, 'gap')).toBe('gaps');
  });

  it('shows a period [start, end) by its first and last day', () => {
    expect(f.period('2026-12-01T00:00:00Z', '2027-01-01T00:00:00Z')).toBe('Dec 1 – Dec 31, 2026');
  });
});

describe('messages a person can act on', () => {
  it('tells a wrong password from an unreachable service', () => {
    expect(
      signInErrorMessage({
        name: 'AuthApiError',
        status: 400,
        code: 'invalid_credentials',
        message: 'Invalid login credentials',
      }),
    ).toBe('Wrong email or password.');
    expect(signInErrorMessage({ status: 400, message: 'Invalid login credentials' })).toBe(
      'Wrong email or password.',
    );
    expect(
      signInErrorMessage({
        name: 'AuthRetryableFetchError',
        status: 0,
        message: 'Failed to fetch',
      }),
    ).toMatch(/cannot be reached/);
    expect(signInErrorMessage({ status: 429, code: 'over_request_rate_limit' })).toMatch(
      /Too many/,
    );
    expect(signInErrorMessage({ status: 503, message: 'upstream' })).toMatch(/problem right now/);
  });

  it('sends an ended session back to the sign-in page', () => {
    expect(loadErrorMessage({ code: 'PGRST303', message: 'JWT expired' })).toEqual({
      message: 'Your session has ended. Sign in again.',
      expired: true,
    });
    expect(loadErrorMessage({ code: '', message: 'TypeError: Failed to fetch' }).expired).toBe(
      false,
    );
    expect(loadErrorMessage({ code: '22023', message: 'bad range' }).message).toBe(
      'Usage could not be loaded: bad range.',
    );
  });

  it('asks for another try when an action fails, rather than waiting for the page', () => {
    expect(actionErrorMessage({ code: '', message: 'TypeError: Failed to fetch' })).toEqual({
      message: 'The usage service cannot be reached. Check your connection, then try again.',
      expired: false,
    });
    expect(actionErrorMessage({ code: 'PGRST303', message: 'JWT expired' })).toEqual({
      message: 'Your session has ended. Sign in again.',
      expired: true,
    });
    expect(actionErrorMessage({ code: 'P0002', message: 'alert 7 not found' }).message).toBe(
      'alert 7 not found.',
    );
  });
});

describe('the dashboard config', () => {
  const json =
    (body: unknown, status = 200) =>
    async () =>
      Response.json(body, { status });
  const built = {
    VITE_SUPABASE_URL: 'https://built.supabase.co',
    VITE_SUPABASE_ANON_KEY: 'built-anon',
  };

  it('prefers a served config.json, so one build runs against any local stack', async () => {
    const result = await loadConfig(
      json({ supabaseUrl: 'http://127.0.0.1:5999', supabaseAnonKey: 'local' }),
      built,
    );
    expect(result).toEqual({
      ok: true,
      value: { supabaseUrl: 'http://127.0.0.1:5999', supabaseAnonKey: 'local' },
    });
  });

  it('names the invoice-preview function only where a served config.json does', async () => {
    const result = await loadConfig(
      json({
        supabaseUrl: 'http://127.0.0.1:5999',
        supabaseAnonKey: 'local',
        invoicePreviewUrl: '/api/v1/invoice-preview',
      }),
      built,
    );
    expect(result).toMatchObject({ value: { invoicePreviewUrl: '/api/v1/invoice-preview' } });
  });

  it('falls back to the build-time values when there is no usable config.json', async () => {
    const expected = {
      ok: true,
      value: {
        supabaseUrl: built.VITE_SUPABASE_URL,
        supabaseAnonKey: 'built-anon',
        // a Netlify deploy: the functions are on the site's own origin
        invoicePreviewUrl: '/api/v1/invoice-preview',
      },
    };
    expect(await loadConfig(json({}, 404), built)).toEqual(expected);
    expect(
      await loadConfig(json({ supabaseUrl: 'not a url', supabaseAnonKey: 'x' }), built),
    ).toEqual(expected);
    expect(
      await loadConfig(async () => {
        throw new TypeError('Failed to fetch');
      }, built),
    ).toEqual(expected);
  });

  it('says what to set when neither is there', async () => {
    const result = await loadConfig(json({}, 404), {});
    expect(result).toMatchObject({ ok: false, error: { code: 'missing_config' } });
  });
});

describe('alerts', () => {
  const alert = (id: number, readAt: string | null): UsageAlert => ({
    id,
    tenantId: 't1',
    periodStart: '',
    periodEnd: '',
    threshold: 80,
    used: 0,
    quota: 0,
    createdAt: '',
    readAt,
  });

  it('lists unread ones first, each group newest first', () => {
    const sorted = alertsUnreadFirst([
      alert(1, null),
      alert(2, 'x'),
      alert(3, null),
      alert(4, 'x'),
    ]);
    expect(sorted.map((a) => a.id)).toEqual([3, 1, 4, 2]);
  });
});
