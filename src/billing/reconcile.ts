import type Stripe from 'stripe';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import type { Logger } from '../observability/logger.ts';
import { refreshInvoicePreviews } from './refresh-invoice-previews.ts';

export type Finding = Database['public']['Tables']['reconciliation_findings']['Row'];

export interface ReconcileInput {
  db: Db;
  stripe: Stripe | null;
  log: Logger;
  /** Tenant-periods starting at or after this are checked; keep it within raw retention. */
  since: Date;
  repair?: boolean;
  tenantIds?: string[];
  /** Stripe's summaries are eventually consistent: skip totals sent more recently. */
  settleMs?: number;
  /** How long the invoice preview check may start fetches for (the scheduled run's 30 s). */
  previewBudgetMs?: number;
  now?: () => number;
}

export interface ReconcileSummary {
  counterFindings: Finding[];
  stripeChecked: number;
  stripeFindings: Finding[];
  stripeSkipped: number;
  /** Current periods whose Stripe invoice preview was compared with flowmeter's estimate. */
  previewChecked: number;
  previewFindings: Finding[];
  /** Previews not fetched: the budget ran out, or Stripe failed (compared next time). */
  previewSkipped: number;
}

async function stripeTotal(
  stripe: Stripe,
  meterId: string,
  customer: string,
  start: string,
  end: string,
) {
  let total = 0;
  for await (const summary of stripe.billing.meters.listEventSummaries(meterId, {
    customer,
    start_time: Math.floor(Date.parse(start) / 1000),
    end_time: Math.floor(Date.parse(end) / 1000),
  })) {
    total += summary.aggregated_value;
  }
  return total;
}

/** The daily job's default window: billing periods starting this month or the last (UTC). */
export function startOfLastMonth(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
}

/**
 * Daily reconciliation: recomputes counters from raw executions (recording any drift,
 * repairing it only when asked), then compares what Stripe accepted per customer and
 * period with Stripe's own meter event summaries, and Stripe's upcoming-invoice preview
 * with flowmeter's estimate for what it reported (refreshing the cached previews).
 */
export async function runReconciliation(
  input: ReconcileInput,
): Promise<Result<ReconcileSummary, 'unavailable'>> {
  const { db, stripe, log } = input;
  const now = input.now ?? Date.now;
  const { data: counterFindings, error } = await db.rpc('reconcile_counters', {
    since: input.since.toISOString(),
    repair: input.repair ?? false,
    ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
  });
  if (error) return fail('unavailable', `reconcile_counters failed: ${error.message}`);
  for (const f of counterFindings ?? []) {
    log.error({ finding: f }, f.repaired ? 'counter drift repaired' : 'counter drift found');
  }

  const summary: ReconcileSummary = {
    counterFindings: counterFindings ?? [],
    stripeChecked: 0,
    stripeFindings: [],
    stripeSkipped: 0,
    previewChecked: 0,
    previewFindings: [],
    previewSkipped: 0,
  };
  if (!stripe) return ok(summary);

  const { data: totals, error: totalsError } = await db.rpc('sent_meter_totals', {
    since: input.since.toISOString(),
  });
  if (totalsError) {
    return fail('unavailable', `sent_meter_totals failed: ${totalsError.message}`);
  }
  const settle = input.settleMs ?? 3600_000;
  for (const total of totals ?? []) {
    if (input.tenantIds && !input.tenantIds.includes(total.tenant_id)) continue;
    if (now() - Date.parse(total.last_sent_at) < settle) {
      summary.stripeSkipped += 1;
      continue;
    }
    let atStripe: number;
    try {
      atStripe = await stripeTotal(
        stripe,
        total.stripe_meter_id,
        total.stripe_customer_id,
        total.period_start,
        total.period_end,
      );
    } catch (stripeError) {
      log.warn({ total, error: (stripeError as Error).message }, 'could not compare with Stripe');
      continue;
    }
    summary.stripeChecked += 1;
    if (atStripe === total.sent) continue;
    log.error({ total, atStripe }, 'Stripe disagrees with what was reported');
    const { data: finding, error: recordError } = await db.rpc('record_reconciliation_finding', {
      kind: 'stripe_drift',
      tenant_id: total.tenant_id,
      period_start: total.period_start,
      expected: total.sent,
      actual: atStripe,
      detail: `flowmeter sent ${total.sent} for ${total.stripe_customer_id} on ${total.stripe_meter_id}; Stripe's summary says ${atStripe}`,
    });
    if (recordError) log.error({ total, error: recordError.message }, 'could not record the drift');
    else if (finding) summary.stripeFindings.push(finding);
  }

  const previews = await refreshInvoicePreviews({
    db,
    stripe,
    log,
    maxAgeSeconds: 0,
    compare: { settleMs: settle },
    now,
    ...(input.previewBudgetMs === undefined ? {} : { budgetMs: input.previewBudgetMs }),
    ...(input.tenantIds ? { tenantIds: input.tenantIds } : {}),
  });
  if (!previews.ok) return previews;
  summary.previewChecked = previews.value.compared;
  summary.previewFindings = previews.value.findings;
  summary.previewSkipped = previews.value.deferred + previews.value.failed.length;
  return ok(summary);
}
