import { fail, ok, type Result } from '../domain/result.ts';

/** UTC days, both inclusive, as `YYYY-MM-DD`. */
export interface ExportRange {
  fromDay: string;
  toDay: string;
}

/** The longest range one export covers: a year, so a mistyped year is refused, not run. */
const MAX_EXPORT_DAYS = 366;

const DAY_MS = 86_400_000;
const utcDay = (day: string) => Date.parse(`${day}T00:00:00Z`);
const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The instants an execution's start must lie between: [fromDay 00:00Z, day after toDay 00:00Z). */
export const rangeInstants = (range: ExportRange) => ({
  fromAt: new Date(utcDay(range.fromDay)).toISOString(),
  toAt: new Date(utcDay(range.toDay) + DAY_MS).toISOString(),
});

function monthDays(period: string): ExportRange {
  const [year, month] = period.split('-').map(Number) as [number, number];
  return {
    fromDay: isoDay(Date.UTC(year, month - 1, 1)),
    toDay: isoDay(Date.UTC(year, month, 0)),
  };
}

/**
 * The days an export covers, from `--period YYYY-MM` (a UTC calendar month), `--from` /
 * `--to` (days, `--to` defaulting to today) or neither (this month up to today). Each
 * value is already well-formed; what is refused here is the combination: both ways at
 * once, `--to` alone, a start after the end or in the future, more than a year.
 */
export function exportRange(input: {
  period?: string;
  from?: string;
  to?: string;
  now: Date;
}): Result<ExportRange, 'invalid_request'> {
  const today = isoDay(input.now.getTime());
  if (input.period && (input.from || input.to)) {
    return fail('invalid_request', 'give either --period or --from/--to, not both');
  }
  if (input.to && !input.from) {
    return fail('invalid_request', '--to needs --from (the first day to export)');
  }
  const range: ExportRange = input.period
    ? monthDays(input.period)
    : input.from
      ? { fromDay: input.from, toDay: input.to ?? today }
      : { fromDay: `${today.slice(0, 7)}-01`, toDay: today };
  if (range.fromDay > today) {
    return fail('invalid_request', `${range.fromDay} is in the future: nothing to export yet`);
  }
  if (range.fromDay > range.toDay) {
    return fail('invalid_request', `--from ${range.fromDay} is after --to ${range.toDay}`);
  }
  const days = (utcDay(range.toDay) - utcDay(range.fromDay)) / DAY_MS + 1;
  if (days > MAX_EXPORT_DAYS) {
    return fail(
      'invalid_request',
      `${range.fromDay} to ${range.toDay} is ${days} days; at most ${MAX_EXPORT_DAYS} per export: split it (e.g. one --period per month)`,
    );
  }
  return ok(range);
}
