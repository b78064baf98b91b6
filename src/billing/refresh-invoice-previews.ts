import type Stripe from 'stripe';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { callFailed } from '../db/rpc-result.ts';
import { ok, type Result } from '../domain/result.ts';
import type { Logger } from '../observability/logger.ts';
import {
  PREVIEW_EXPAND,
  type PreviewAmounts,
  type PreviewDrift,
  type PreviewTarget,
  previewAmounts,
  previewDrift,
} from './invoice-preview.ts';

/**
 * A row of reconciliation_findings: what a check found wrong, recorded once. The preview
 * check here makes them, as do reconcile.ts's counter and Stripe checks.
 */
export type Finding = Database['public']['Tables']['reconciliation_findings']['Row'];

/** Stripe's answer for a subscription with nothing left to invoice. */
const NO_UPCOMING_INVOICE = 'invoice_upcoming_none';

/**
 * How long a refresh holds its tenant-period against concurrent ones: longer than the
 * Stripe client's timeout with its retries, so a live refresh keeps it; a crashed one
 * holds nobody up for longer.
 */
const CLAIM_SECONDS = 60;

export interface RefreshInvoicePreviewsInput {
  db: Db;
  stripe: Stripe;
  log: Logger;
  /** Only these tenants; all with a live subscription otherwise. */
  tenantIds?: string[];
  /** Previews fetched more recently than this are kept (the cache's lifetime). */
  maxAgeSeconds: number;
  /**
   * Compare each preview with what was reported and record a finding when they disagree;
   * skipped for a tenant whose reports are pending or were sent within `settleMs` (Stripe
   * aggregates meter events asynchronously).
   */
  compare?: { settleMs: number };
  /** No fetch starts after this long; the tenants left are `deferred` (oldest cache first). */
  budgetMs?: number;
  now?: () => number;
}

export interface RefreshInvoicePreviewsSummary {
  refreshed: number;
  /** Stripe has no upcoming invoice for the subscription. */
  none: number;
  failed: Array<{ tenantId: string; message: string }>;
  /** Left for the next run: the budget ran out. */
  deferred: number;
  /** Being refreshed by another caller right now; its cached preview is the answer. */
  inProgress: number;
  compared: number;
  findings: Finding[];
}

const stripeCode = (error: unknown) =>
  typeof error === 'object' && error !== null ? (error as { code?: string }).code : undefined;

async function comparePreview(
  input: RefreshInvoicePreviewsInput,
  target: PreviewTarget,
  drift: PreviewDrift,
): Promise<Finding | undefined> {
  const { data, error } = await input.db.rpc('record_reconciliation_finding', {
    kind: 'invoice_preview_drift',
    tenant_id: target.tenant_id,
    period_start: target.period_start,
    expected: drift.expected,
    actual: drift.actual,
    detail: drift.detail,
  });
  if (error) {
    input.log.error({ target, error: error.message }, 'could not record the preview drift');
    return undefined;
  }
  input.log.error({ finding: data }, "Stripe's invoice preview disagrees with flowmeter");
  return data ?? undefined;
}

const settled = (target: PreviewTarget, settleMs: number, now: number) =>
  target.pending === 0 &&
  (target.last_sent_at === null || now - Date.parse(target.last_sent_at) >= settleMs);

/**
 * Asks Stripe for one target's preview and records it (or that there is none), counting the
 * outcome in `summary`; the amounts when Stripe previewed an invoice, null otherwise.
 */
async function fetchPreview(
  input: RefreshInvoicePreviewsInput,
  target: PreviewTarget,
  summary: RefreshInvoicePreviewsSummary,
): Promise<Result<PreviewAmounts | null>> {
  const { db, stripe, log } = input;
  const where = {
    tenant_id: target.tenant_id,
    period_start: target.period_start,
    period_end: target.period_end,
    stripe_customer_id: target.stripe_customer_id,
    stripe_subscription_id: target.stripe_subscription_id,
  };
  let invoice: unknown;
  try {
    invoice = await stripe.invoices.createPreview({
      customer: target.stripe_customer_id,
      subscription: target.stripe_subscription_id,
      expand: PREVIEW_EXPAND,
    });
  } catch (stripeError) {
    if (stripeCode(stripeError) === NO_UPCOMING_INVOICE) {
      const recorded = await db.rpc('record_invoice_preview', { ...where, status: 'none' });
      if (recorded.error) return callFailed('record_invoice_preview', recorded);
      summary.none += 1;
      return ok(null);
    }
    const message = `Stripe did not preview the invoice: ${(stripeError as Error).message}`;
    log.warn({ tenantId: target.tenant_id, error: message }, 'invoice preview failed');
    summary.failed.push({ tenantId: target.tenant_id, message });
    return ok(null);
  }
  const amounts = previewAmounts(invoice);
  if (!amounts.ok) {
    log.error({ tenantId: target.tenant_id, error: amounts.message }, 'invoice preview refused');
    summary.failed.push({ tenantId: target.tenant_id, message: amounts.message });
    return ok(null);
  }
  const p = amounts.value;
  const recorded = await db.rpc('record_invoice_preview', {
    ...where,
    status: 'ok',
    currency: p.currency,
    total: p.total,
    amount_due: p.amountDue,
    subtotal: p.subtotal,
    usage_quantity: p.usageQuantity,
    usage_amount: p.usageAmount,
  });
  if (recorded.error) return callFailed('record_invoice_preview', recorded);
  summary.refreshed += 1;
  return ok(p);
}

/**
 * Fetches Stripe's upcoming-invoice preview (invoices.createPreview) for each tenant whose
 * cached one is missing or older than `maxAgeSeconds`, and caches it per tenant and period.
 * Each tenant-period is claimed before Stripe is asked, so concurrent refreshes ask once; the
 * others count it `inProgress`. A subscription Stripe has nothing to invoice for is cached
 * as `none`; any other failure leaves the cached preview as it was and is reported per tenant.
 */
export async function refreshInvoicePreviews(
  input: RefreshInvoicePreviewsInput,
): Promise<Result<RefreshInvoicePreviewsSummary>> {
  const { db, log } = input;
  const now = input.now ?? Date.now;
  const deadline = input.budgetMs === undefined ? Number.POSITIVE_INFINITY : now() + input.budgetMs;
  const targets = await db.rpc('invoice_preview_targets', {
    max_age_seconds: input.maxAgeSeconds,
    ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
  });
  if (targets.error) return callFailed('invoice_preview_targets', targets);
  const summary: RefreshInvoicePreviewsSummary = {
    refreshed: 0,
    none: 0,
    failed: [],
    deferred: 0,
    inProgress: 0,
    compared: 0,
    findings: [],
  };
  for (const target of targets.data ?? []) {
    if (now() >= deadline) {
      summary.deferred += 1;
      continue;
    }
    const claim = await db.rpc('claim_invoice_preview_refresh', {
      tenant_id: target.tenant_id,
      period_start: target.period_start,
      max_age_seconds: input.maxAgeSeconds,
      lease_seconds: CLAIM_SECONDS,
    });
    if (claim.error) return callFailed('claim_invoice_preview_refresh', claim);
    if (claim.data === null) {
      summary.inProgress += 1;
      continue;
    }
    let fetched: Result<PreviewAmounts | null>;
    try {
      fetched = await fetchPreview(input, target, summary);
    } finally {
      const released = await db.rpc('release_invoice_preview_claim', {
        tenant_id: target.tenant_id,
        period_start: target.period_start,
        claimed_until: claim.data,
      });
      if (released.error) {
        log.warn(
          { tenantId: target.tenant_id, error: released.error.message },
          'invoice preview claim left to expire',
        );
      }
    }
    if (!fetched.ok) return fetched;
    const p = fetched.value;
    if (!p) continue;

    const { compare } = input;
    if (!compare || !p.complete) continue;
    if (!settled(target, compare.settleMs, now())) continue;
    summary.compared += 1;
    const drift = previewDrift(target, p);
    const finding = drift && (await comparePreview(input, target, drift));
    if (finding) summary.findings.push(finding);
  }
  return ok(summary);
}
