import type {
  DailyUsage,
  LimitPolicy,
  UsageLevel,
  UsageSummary,
} from '../../../src/usage-client/index.ts';

/**
 * What the usage widget shows, computed from the API's rows without I/O. Every read of a
 * usage field happens here, so a renamed field in the API is one edit.
 */
export interface UsageView {
  tenantName: string;
  planName: string;
  limitPolicy: LimitPolicy;
  level: UsageLevel;
  /** Collected billable executions. */
  used: number;
  /** Allowed by enforcement, not collected yet: counted against the limit, shown apart. */
  reserved: number;
  quota: number | null;
  remaining: number | null;
  percent: number | null;
  overageUnits: number;
  /** Minor units (cents), fractional. */
  overageAmount: number;
  currency: string;
  periodStart: string;
  periodEnd: string;
  daysLeft: number;
  /** Runs are refused now: a hard limit reached by collected plus reserved runs. */
  blockedNow: boolean;
}

/** The usage levels in words: the widget and the operator console name them alike. */
export const LEVEL_LABEL: Record<UsageLevel, string> = {
  normal: 'Normal',
  warning: 'Warning',
  limit: 'At the limit',
  overage: 'Over the limit',
};

const DAY_MS = 86_400_000;

export const daysLeft = (periodEnd: string, now: Date): number =>
  Math.max(0, Math.ceil((Date.parse(periodEnd) - now.getTime()) / DAY_MS));

export function toUsageView(summary: UsageSummary, now: Date): UsageView {
  const used = summary.used;
  const reserved = summary.reserved;
  return {
    tenantName: summary.tenantName,
    planName: summary.planName,
    limitPolicy: summary.limitPolicy,
    level: summary.level,
    used,
    reserved,
    quota: summary.quota,
    remaining: summary.remaining,
    percent: summary.percent,
    overageUnits: summary.overageUnits,
    overageAmount: summary.estimatedOverageAmount,
    currency: summary.currency,
    periodStart: summary.periodStart,
    periodEnd: summary.periodEnd,
    daysLeft: daysLeft(summary.periodEnd, now),
    blockedNow:
      summary.limitPolicy === 'hard_limit' &&
      summary.quota !== null &&
      used + reserved >= summary.quota,
  };
}

/** Share of the bar each part takes, 0 to 100; reserved runs sit after the used ones. */
export function meterShares(view: UsageView): { used: number; reserved: number } {
  if (view.quota === null) return { used: 0, reserved: 0 };
  if (view.quota === 0) return { used: 100, reserved: 0 };
  const scale = Math.max(view.quota, view.used + view.reserved);
  return { used: (100 * view.used) / scale, reserved: (100 * view.reserved) / scale };
}

export interface DayPoint {
  day: string;
  billable: number;
  executions: number;
  failed: number;
}

/** This period's days so far and the previous period's, each from its first day. */
export interface PeriodSeries {
  /** "Day 1" … the longer of the two periods. */
  labels: string[];
  current: DayPoint[];
  previous: DayPoint[];
}

const utcDay = (instant: string) => new Date(Date.parse(instant)).toISOString().slice(0, 10);

/** Days the period touches, counted in UTC days: the anchor day of a mid-day period counts. */
export function periodLengthInDays(periodStart: string, periodEnd: string): number {
  const first = Date.parse(`${utcDay(periodStart)}T00:00:00Z`);
  const last = Date.parse(
    `${new Date(Date.parse(periodEnd) - 1).toISOString().slice(0, 10)}T00:00:00Z`,
  );
  return Math.round((last - first) / DAY_MS) + 1;
}

/**
 * Splits the API's continuous daily series (previous period start … today) at the first
 * day of the current period.
 */
export function periodSeries(
  days: DailyUsage[],
  periodStart: string,
  periodEnd: string,
): PeriodSeries {
  const firstDay = utcDay(periodStart);
  const point = (d: DailyUsage): DayPoint => ({
    day: d.day,
    billable: d.billable,
    executions: d.executions,
    failed: d.failed,
  });
  const current = days.filter((d) => d.day >= firstDay).map(point);
  const previous = days.filter((d) => d.day < firstDay).map(point);
  const length = Math.max(
    periodLengthInDays(periodStart, periodEnd),
    current.length,
    previous.length,
  );
  return {
    labels: Array.from({ length }, (_, i) => `Day ${i + 1}`),
    current,
    previous,
  };
}
