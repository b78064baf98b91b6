import type { Database } from '../db/database.types.ts';

type MeterReport = Database['public']['Tables']['meter_reports']['Row'];

/** Stripe accepts meter event timestamps at most 35 days old. */
const MAX_EVENT_AGE_MS = 35 * 86400_000 - 3600_000;

/**
 * A send started this close to the invoice's finalization could be answered after it: the
 * report is then late rather than sent into an invoice that may already be final.
 */
const FINALIZATION_MARGIN_MS = 60_000;

/**
 * Why a pending report may no longer be sent at this moment, or null when it may: its
 * period's invoice is final (or about to be), or its timestamp is older than Stripe takes.
 * Decided at send time, because a report claimed on time can wait pending through an
 * outage, a revoked key or a backlog until its invoice has closed.
 */
export function lateness(
  report: Pick<MeterReport, 'period_end' | 'event_timestamp'>,
  at: number,
  finalizationGraceMinutes: number,
): string | null {
  const finalizes = Date.parse(report.period_end) + finalizationGraceMinutes * 60_000;
  if (at >= finalizes - FINALIZATION_MARGIN_MS) {
    return `not sent: the invoice for the period ending ${report.period_end} is final (finalizes ${new Date(finalizes).toISOString()}); bill it by hand`;
  }
  if (at - Date.parse(report.event_timestamp) > MAX_EVENT_AGE_MS) {
    return 'not sent: older than Stripe accepts meter events (35 days); bill it by hand';
  }
  return null;
}

/**
 * Why a report found late is not plainly "not billed": an earlier attempt had no answer, so
 * Stripe may have taken it before the invoice finalized. Billing it by hand without looking
 * would bill it twice, so the ledger says to check Stripe first.
 */
export const lateWithUnknownOutcome = (late: string, identifier: string) =>
  `${late.replace(/; bill it by hand$/, '')}; outcome unknown: an earlier attempt had no answer, so Stripe may hold it (then it is on the invoice): check the meter's events in Stripe for identifier ${identifier} before billing it by hand`;
