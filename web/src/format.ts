import { formatMoney } from '../../src/domain/money.ts';
import { noun } from '../../src/domain/words.ts';

/**
 * Formatting of the dashboard's numbers, dates and money in the reader's locale; pure, so
 * the widget and the pages show one thing one way.
 */
export interface Formatter {
  count(n: number): string;
  /** A count and its noun: "1 execution", "1,050 executions". */
  counted(n: number, one: string, many?: string): string;
  percent(n: number): string;
  /** An amount in the currency's minor unit (cents), fractional, as an estimate. */
  money(minorUnits: number, currency: string): string;
  duration(ms: number | null): string;
  day(isoDay: string): string;
  period(start: string, end: string): string;
  time(at: Date): string;
  /** The day of an instant, where the time of day is detail (it goes in a title). */
  date(iso: string): string;
  dateTime(iso: string): string;
}

export function formatter(locale?: string): Formatter {
  const counts = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
  const percents = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
  const days = new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric', timeZone: 'UTC' });
  const fullDays = new Intl.DateTimeFormat(locale, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    timeZone: 'UTC',
  });
  const times = new Intl.DateTimeFormat(locale, { timeStyle: 'medium' });
  const dates = new Intl.DateTimeFormat(locale, { dateStyle: 'medium' });
  const dateTimes = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' });
  return {
    count: (n) => counts.format(n),
    counted: (n, one, many) => `${counts.format(n)} ${noun(n, one, many)}`,
    percent: (n) => `${percents.format(n)} %`,
    money: (minorUnits, currency) => formatMoney(minorUnits, currency, locale),
    duration(ms) {
      if (ms === null) return '—';
      if (ms < 1000) return `${Math.round(ms)} ms`;
      const seconds = ms / 1000;
      if (seconds < 60) return `${percents.format(seconds)} s`;
      const minutes = Math.floor(seconds / 60);
      if (minutes < 60) return `${minutes}m ${Math.floor(seconds % 60)}s`;
      return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
    },
    day: (isoDay) => days.format(new Date(`${isoDay}T00:00:00Z`)),
    // A period is [start, end): its last day is the one before end.
    period: (start, end) =>
      `${days.format(new Date(start))} – ${fullDays.format(new Date(Date.parse(end) - 1))}`,
    time: (at) => times.format(at),
    date: (iso) => dates.format(new Date(iso)),
    dateTime: (iso) => dateTimes.format(new Date(iso)),
  };
}
