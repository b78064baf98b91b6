import { z } from 'zod';

/** A customer-period's place in the walk: sent_meter_totals' order. */
const walkKeySchema = z.object({
  tenant_id: z.string(),
  period_start: z.string(),
  stripe_customer_id: z.string(),
});

export type WalkKey = z.infer<typeof walkKeySchema>;

/**
 * What a scheduled reconciliation records of itself (scheduled_runs.summary), and what
 * status reads back: counts, the latest Stripe failure of each kind (cut to 300
 * characters), so a comparison Stripe refused is a finding until a run makes it, and where
 * the walk of the customer-periods stopped, so the next run starts there. Apart from
 * reconcile.ts so that status (in the browser too) reads it without the reconciliation.
 * From the first release on, a field is only ever added, as optional with a default: the
 * run before an upgrade recorded the older shape, and status names a summary it cannot read.
 */
export const reconcileRunSummarySchema = z.object({
  counterFindings: z.number().int().nonnegative(),
  stripeChecked: z.number().int().nonnegative(),
  stripeDeferred: z.number().int().nonnegative(),
  /** The first customer-period the run had no time for: where the next run starts. */
  stripeResumeFrom: walkKeySchema.nullable(),
  stripeFailed: z.number().int().nonnegative(),
  stripeError: z.string().nullable(),
  stripeFindings: z.number().int().nonnegative(),
  previewChecked: z.number().int().nonnegative(),
  previewFindings: z.number().int().nonnegative(),
  previewSkipped: z.number().int().nonnegative(),
  previewFailed: z.number().int().nonnegative(),
  previewError: z.string().nullable(),
});

export type ReconcileRunSummary = z.infer<typeof reconcileRunSummarySchema>;
