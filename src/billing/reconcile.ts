import pLimit from 'p-limit';
import type Stripe from 'stripe';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { callFailed } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import type { Logger } from '../observability/logger.ts';
import {
  type ReconcileRunSummary,
  reconcileRunSummarySchema,
  type WalkKey,
} from './reconcile-run-summary.ts';
import { recordCorrection } from './record-correction.ts';
import { type Finding, refreshInvoicePreviews } from './refresh-invoice-previews.ts';
import { sendCorrections } from './send-corrections.ts';

export interface ReconcileInput {
  db: Db;
  stripe: Stripe | null;
  log: Logger;
  /** Tenant-periods starting at or after this are checked; keep it within raw retention. */
  since: Date;
  /** Also repair: counters to the raw rows, and Stripe's meter (a correction) to what was billed. */
  repair?: boolean;
  tenantIds?: string[];
  /** Stripe finalizes an invoice this long after its period ends (default 1 h). */
  finalizationGraceMinutes?: number;
  /** Stripe's summaries are eventually consistent: skip totals sent more recently. */
  settleMs?: number;
  /**
   * Instants (epoch ms, on `now`'s clock) after which no comparison with Stripe's meter and
   * no invoice preview fetch starts: a scheduled run's 30 s leave room for both and for
   * recording the run. Unset (the CLI): everything is compared.
   */
  until?: { meter: number; previews: number };
  /** Comparisons with Stripe's meter in flight at once (default 4). */
  concurrency?: number;
  /**
   * Where the walk of the customer-periods starts: at this one (where the previous run's
   * time ran out: lastResumePoint) when it is still to compare, else at `startAt`.
   */
  resumeFrom?: WalkKey | null;
  /** Where the walk starts without `resumeFrom`, in [0, 1) (default random). */
  startAt?: number;
  now?: () => number;
}

export interface ReconcileSummary {
  counterFindings: Finding[];
  stripeChecked: number;
  stripeFindings: Finding[];
  /**
   * Not compared yet: sent within the settling time, with corrections still on their way to
   * Stripe, or with a report attempted but unanswered (Stripe may hold it or not).
   */
  stripeSkipped: number;
  /**
   * Not compared: the run's time for Stripe's meter (`until.meter`) ran out first. The next
   * run starts its walk at the first of them (`stripeResumeFrom`), so the runs together
   * compare every customer-period in turn.
   */
  stripeDeferred: number;
  /** The first customer-period of the walk that was deferred; null when none was. */
  stripeResumeFrom: WalkKey | null;
  /** Not compared: Stripe refused or failed the summaries request (a deleted customer, a key that may not read meters). */
  stripeFailed: number;
  /** The latest such failure's message, null when none failed. */
  stripeError: string | null;
  /** Current periods whose Stripe invoice preview was compared with flowmeter's estimate. */
  previewChecked: number;
  previewFindings: Finding[];
  /** Previews not fetched: the budget ran out or another refresh had it (compared next time). */
  previewSkipped: number;
  /** Previews Stripe failed or answered with what flowmeter cannot read. */
  previewFailed: number;
  /** The latest such failure's message, null when none failed. */
  previewError: string | null;
}

/** What a scheduled reconciliation records of itself (reconcileRunSummarySchema). */
export const reconcileRunSummary = (r: ReconcileSummary): ReconcileRunSummary => ({
  counterFindings: r.counterFindings.length,
  stripeChecked: r.stripeChecked,
  stripeDeferred: r.stripeDeferred,
  stripeResumeFrom: r.stripeResumeFrom,
  stripeFailed: r.stripeFailed,
  stripeError: r.stripeError?.slice(0, 300) ?? null,
  stripeFindings: r.stripeFindings.length,
  previewChecked: r.previewChecked,
  previewFindings: r.previewFindings.length,
  previewSkipped: r.previewSkipped,
  previewFailed: r.previewFailed,
  previewError: r.previewError?.slice(0, 300) ?? null,
});

const wholeMinute = (at: string) => Math.floor(Date.parse(at) / 60_000) * 60;

/**
 * The window (Unix seconds) Stripe's meter event summaries are asked for a billing period:
 * Stripe takes only windows aligned to whole minutes, and a period Stripe started at an odd
 * second is not. From its start's minute to its end's minute: flowmeter stamps the
 * period's events before its last whole minute (private.meter_event_stamp), so the window
 * holds all of them and none of the period before it (stamped before this one's minute).
 */
const summaryWindow = (period: { start: string; end: string }) => ({
  start_time: wholeMinute(period.start),
  end_time: wholeMinute(period.end),
});

async function stripeTotal(
  stripe: Stripe,
  meterId: string,
  customer: string,
  period: { start: string; end: string },
) {
  let total = 0;
  for await (const summary of stripe.billing.meters.listEventSummaries(meterId, {
    customer,
    ...summaryWindow(period),
  })) {
    total += summary.aggregated_value;
  }
  return total;
}

/** The daily job's default window: billing periods starting this month or the last (UTC). */
export function startOfLastMonth(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
}

/** The list walked from the item at index `first` round to the one before it. */
function rotate<T>(items: readonly T[], first: number): T[] {
  const at = Math.min(items.length - 1, Math.max(0, first));
  return items.length === 0 ? [] : [...items.slice(at), ...items.slice(0, at)];
}

/**
 * The list walked from the item at `startAt` (a fraction of its length) round to the one
 * before it.
 */
export const walkFrom = <T>(items: readonly T[], startAt: number): T[] =>
  rotate(items, Math.floor(startAt * items.length));

const sameKey = (a: WalkKey, b: WalkKey) =>
  a.tenant_id === b.tenant_id &&
  Date.parse(a.period_start) === Date.parse(b.period_start) &&
  a.stripe_customer_id === b.stripe_customer_id;

/**
 * The walk over `items`: from `resumeFrom` when the list holds it (a run that ran out of
 * time hands its first deferred one on, so runs that cannot compare everything compare
 * every customer-period in turn), else from `startAt` (the first run, or the one it named
 * is no longer to compare).
 */
export function resumedWalk<T extends WalkKey>(
  items: readonly T[],
  resumeFrom: WalkKey | null | undefined,
  startAt: number,
): T[] {
  const at = resumeFrom ? items.findIndex((item) => sameKey(item, resumeFrom)) : -1;
  return at < 0 ? walkFrom(items, startAt) : rotate(items, at);
}

/**
 * Where the latest successful run of `functionName` stopped its walk (null when none
 * recorded one, or it compared everything): what the scheduled reconciliation starts from.
 */
export async function lastResumePoint(
  db: Db,
  functionName: string,
): Promise<Result<WalkKey | null>> {
  const { data, error, status } = await db.rpc('last_run_summary', { function_name: functionName });
  if (error) return callFailed('last_run_summary', { error, status });
  const summary = reconcileRunSummarySchema.safeParse(data);
  return ok(summary.success ? summary.data.stripeResumeFrom : null);
}

type SentMeterTotal = Database['public']['Functions']['sent_meter_totals']['Returns'][number];

/**
 * What Stripe's meter should hold per customer and period since `since`, page by page (the
 * API hands over at most 1,000 rows a call), until a page comes back empty.
 */
async function sentMeterTotals(db: Db, since: Date): Promise<Result<SentMeterTotal[]>> {
  const all: SentMeterTotal[] = [];
  for (;;) {
    const last = all.at(-1);
    const page = await db.rpc('sent_meter_totals', {
      since: since.toISOString(),
      ...(last
        ? {
            after_tenant_id: last.tenant_id,
            after_period_start: last.period_start,
            after_customer_id: last.stripe_customer_id,
          }
        : {}),
    });
    if (page.error) return callFailed('sent_meter_totals', page);
    if (!page.data?.length) return ok(all);
    all.push(...page.data);
  }
}

/** Counters recomputed from raw executions: each drift recorded, logged, and repaired when asked. */
async function reconcileCounters(input: ReconcileInput): Promise<Result<Finding[]>> {
  const { data, error, status } = await input.db.rpc('reconcile_counters', {
    since: input.since.toISOString(),
    repair: input.repair ?? false,
    ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
  });
  if (error) return callFailed('reconcile_counters', { error, status });
  for (const f of data ?? []) {
    input.log.error({ finding: f }, f.repaired ? 'counter drift repaired' : 'counter drift found');
  }
  return ok(data ?? []);
}

/**
 * Daily reconciliation: recomputes counters from raw executions (recording any drift,
 * repairing it only when asked), then compares what Stripe's meter should hold per customer
 * and period with Stripe's own meter event summaries, and Stripe's upcoming-invoice preview
 * with flowmeter's estimate for what it reported (refreshing the cached previews). Asked to
 * repair, a difference with Stripe's meter becomes a correction of kind repair, recorded and
 * sent like `flowmeter adjust`'s (a meter event, a cancellation or a credit); what is not
 * sent now goes with the next report-usage run.
 */
export async function runReconciliation(input: ReconcileInput): Promise<Result<ReconcileSummary>> {
  const counterFindings = await reconcileCounters(input);
  if (!counterFindings.ok) return counterFindings;
  const summary: ReconcileSummary = {
    counterFindings: counterFindings.value,
    stripeChecked: 0,
    stripeFindings: [],
    stripeSkipped: 0,
    stripeDeferred: 0,
    stripeResumeFrom: null,
    stripeFailed: 0,
    stripeError: null,
    previewChecked: 0,
    previewFindings: [],
    previewSkipped: 0,
    previewFailed: 0,
    previewError: null,
  };
  const { db, stripe, log } = input;
  if (!stripe) return ok(summary);

  const now = input.now ?? Date.now;
  const totals = await sentMeterTotals(db, input.since);
  if (!totals.ok) return totals;
  const settle = input.settleMs ?? 3600_000;
  const repairs: number[] = [];
  const limit = pLimit(input.concurrency ?? 4);
  const walk = resumedWalk(totals.value, input.resumeFrom, input.startAt ?? Math.random());
  let firstDeferred = Number.POSITIVE_INFINITY;
  const compare = async (total: SentMeterTotal, place: number) => {
    if (input.tenantIds && !input.tenantIds.includes(total.tenant_id)) return;
    if (
      now() - Date.parse(total.last_sent_at) < settle ||
      total.unsettled_corrections > 0 ||
      // A report whose answer was lost may be on the meter: Stripe above `sent` is no drift
      // until its resend says whether Stripe holds it.
      total.unanswered_reports > 0
    ) {
      summary.stripeSkipped += 1;
      return;
    }
    if (input.until && now() >= input.until.meter) {
      summary.stripeDeferred += 1;
      firstDeferred = Math.min(firstDeferred, place);
      return;
    }
    let atStripe: number;
    try {
      atStripe = await stripeTotal(stripe, total.stripe_meter_id, total.stripe_customer_id, {
        start: total.period_start,
        end: total.period_end,
      });
    } catch (stripeError) {
      const message = (stripeError as Error).message;
      log.warn({ total, error: message }, 'could not compare with Stripe');
      summary.stripeFailed += 1;
      summary.stripeError = `${total.stripe_customer_id} on ${total.stripe_meter_id}: ${message}`;
      return;
    }
    summary.stripeChecked += 1;
    if (atStripe === total.sent) return;
    log.error({ total, atStripe }, 'Stripe disagrees with what was reported');
    const detail = `flowmeter sent ${total.sent} for ${total.stripe_customer_id} on ${total.stripe_meter_id}; Stripe's summary says ${atStripe}`;
    const repair = input.repair
      ? await recordCorrection({
          db,
          tenantId: total.tenant_id,
          period: { start: total.period_start },
          delta: total.sent - atStripe,
          kind: 'repair',
          reason: `reconciliation: ${detail}`,
          requestedBy: 'reconcile --repair',
          // Two overlapping reconciliations that find the same drift record one repair.
          requestKey: `repair:${total.tenant_id}:${total.period_start}:${total.sent}:${atStripe}`,
          finalizationGraceMinutes: input.finalizationGraceMinutes ?? 60,
        })
      : null;
    if (repair && !repair.ok)
      log.error({ total, error: repair.error.message }, 'drift not repaired');
    if (repair?.ok) repairs.push(repair.value.correction.id);
    const { data: finding, error: recordError } = await db.rpc('record_reconciliation_finding', {
      kind: 'stripe_drift',
      tenant_id: total.tenant_id,
      period_start: total.period_start,
      expected: total.sent,
      actual: atStripe,
      repaired: repair?.ok ?? false,
      detail: repair?.ok
        ? `${detail}; correction ${repair.value.correction.id} (${repair.value.correction.method}) brings Stripe to ${total.sent}`
        : repair
          ? `${detail}; not repaired: ${repair.error.message}`
          : detail,
    });
    if (recordError) log.error({ total, error: recordError.message }, 'could not record the drift');
    else if (finding) summary.stripeFindings.push(finding);
  };
  await Promise.all(walk.map((total, place) => limit(() => compare(total, place))));
  const resume = walk[firstDeferred];
  summary.stripeResumeFrom = resume
    ? {
        tenant_id: resume.tenant_id,
        period_start: resume.period_start,
        stripe_customer_id: resume.stripe_customer_id,
      }
    : null;
  if (repairs.length > 0) {
    const sent = await sendCorrections({
      db,
      stripe,
      log,
      ids: repairs,
      ...(input.until ? { until: input.until.previews } : {}),
      finalizationGraceMinutes: input.finalizationGraceMinutes ?? 60,
      now,
    });
    if (!sent.ok) log.error({ error: sent.error.message }, 'repairs recorded, not sent yet');
  }

  const previews = await refreshInvoicePreviews({
    db,
    stripe,
    log,
    maxAgeSeconds: 0,
    compare: { settleMs: settle },
    now,
    ...(input.until ? { budgetMs: Math.max(0, input.until.previews - now()) } : {}),
    ...(input.tenantIds ? { tenantIds: input.tenantIds } : {}),
  });
  if (!previews.ok) return previews;
  summary.previewChecked = previews.value.compared;
  summary.previewFindings = previews.value.findings;
  summary.previewSkipped = previews.value.deferred + previews.value.inProgress;
  summary.previewFailed = previews.value.failed.length;
  const lastFailure = previews.value.failed.at(-1);
  summary.previewError = lastFailure
    ? `tenant ${lastFailure.tenantId}: ${lastFailure.message}`
    : null;
  return ok(summary);
}
