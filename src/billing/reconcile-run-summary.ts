import { z } from 'zod';
import type { ReconcileSummary } from './reconcile.ts';

/**
 * What a scheduled reconciliation records of itself (scheduled_runs.summary), and what
 * status reads back: counts, and the latest Stripe failure of each kind (cut to 300
 * characters), so a comparison Stripe refused is a finding until a run makes it.
 */
export const reconcileRunSummarySchema = z.object({
  counterFindings: z.number().int().nonnegative(),
  stripeChecked: z.number().int().nonnegative(),
  stripeDeferred: z.number().int().nonnegative(),
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

export const reconcileRunSummary = (r: ReconcileSummary): ReconcileRunSummary => ({
  counterFindings: r.counterFindings.length,
  stripeChecked: r.stripeChecked,
  stripeDeferred: r.stripeDeferred,
  stripeFailed: r.stripeFailed,
  stripeError: r.stripeError?.slice(0, 300) ?? null,
  stripeFindings: r.stripeFindings.length,
  previewChecked: r.previewChecked,
  previewFindings: r.previewFindings.length,
  previewSkipped: r.previewSkipped,
  previewFailed: r.previewFailed,
  previewError: r.previewError?.slice(0, 300) ?? null,
});
