import { z } from 'zod';
import {
  count,
  parseEnv,
  requireRunEndInsideScheduledLimit,
  secretList,
  serverEnvSchema,
  variable,
} from './env.ts';

type Env = Record<string, string | undefined>;

/** report-usage: the Stripe reporter. Without STRIPE_SECRET_KEY it runs dry. */
const reporterEnvSchema = serverEnvSchema.extend({
  STRIPE_SECRET_KEY: variable('a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_…)')
    .regex(/^(sk|rk)_(test|live)_[A-Za-z0-9]+$/, {
      error:
        'must be a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_…), from Developers → API keys',
    })
    .optional(),
  // A Stripe-compatible endpoint instead of api.stripe.com (local demos and benchmarks).
  STRIPE_API_BASE: z.url({ error: 'must be a URL, like http://127.0.0.1:12111' }).optional(),
  REPORTER_BUDGET_SECONDS: count(5, 25, 18, ' seconds'),
  // Test mode allows far fewer requests than live mode's ~1,000/s.
  REPORTER_RATE_PER_SECOND: count(1, 10_000, 25, ' per second'),
  REPORTER_CONCURRENCY: count(1, 64, 8),
  // One claim: at most the 1,000 rows the API hands over (Supabase's Max rows).
  REPORTER_MAX_ROWS: count(1, 1000, 1000),
  INVOICE_FINALIZATION_GRACE_MINUTES: count(0, 72 * 60, 60, ' minutes'),
});

const checkedReporterEnvSchema = reporterEnvSchema.superRefine(
  requireRunEndInsideScheduledLimit('REPORTER_BUDGET_SECONDS'),
);

export type ReporterConfig = z.infer<typeof checkedReporterEnvSchema>;
export const loadReporterConfig = (env: Env = process.env): ReporterConfig =>
  parseEnv(checkedReporterEnvSchema, env);

/** reconcile-usage: the daily reconciliation. */
const reconcileEnvSchema = reporterEnvSchema.extend({
  // Set counters to the raw-row totals when they differ, and correct Stripe's meter where it
  // drifted (each repair is still a finding).
  RECONCILE_REPAIR: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default('false')
    .transform((v) => v === 'true'),
  // Comparisons with Stripe's meter in flight at once, within the run's 10 s for them: each
  // is one read (Stripe allows about 100 reads a second in live mode, 25 in test mode).
  RECONCILE_CONCURRENCY: count(1, 50, 4),
});

/** No budget rule: the reconciliation sends no reports, so REPORTER_BUDGET_SECONDS is not its. */
export type ReconcileConfig = z.infer<typeof reconcileEnvSchema>;
export const loadReconcileConfig = (env: Env = process.env): ReconcileConfig =>
  parseEnv(reconcileEnvSchema, env);

/** GET /api/v1/status: the operator's monitoring. */
const statusEnvSchema = serverEnvSchema.extend({
  // Secrets the operator's monitoring sends as Authorization: Bearer <secret>, comma-separated.
  OPERATOR_SECRETS: secretList(),
});
export type StatusConfig = z.infer<typeof statusEnvSchema>;
export const loadStatusConfig = (env: Env = process.env): StatusConfig =>
  parseEnv(statusEnvSchema, env);

/** `flowmeter tenants usage`: Stripe's invoice preview, refreshed when the cached one is old. */
const invoicePreviewEnvSchema = serverEnvSchema.extend({
  STRIPE_SECRET_KEY: reporterEnvSchema.shape.STRIPE_SECRET_KEY,
  STRIPE_API_BASE: reporterEnvSchema.shape.STRIPE_API_BASE,
  // How long a fetched preview is shown before the next view asks Stripe again.
  INVOICE_PREVIEW_TTL_SECONDS: count(30, 86_400, 300, ' seconds'),
});
export type InvoicePreviewConfig = z.infer<typeof invoicePreviewEnvSchema>;
export const loadInvoicePreviewConfig = (env: Env = process.env): InvoicePreviewConfig =>
  parseEnv(invoicePreviewEnvSchema, env);

/**
 * POST /api/v1/invoice-preview, which the dashboards call with the user's JWT: it needs the
 * anon key to ask the database, as that user, whether they belong to the tenant.
 */
const invoicePreviewEndpointEnvSchema = invoicePreviewEnvSchema.extend({
  SUPABASE_ANON_KEY: variable(
    "the project's anon (publishable) key, from Project Settings → API keys",
  ),
});
export type InvoicePreviewEndpointConfig = z.infer<typeof invoicePreviewEndpointEnvSchema>;
export const loadInvoicePreviewEndpointConfig = (
  env: Env = process.env,
): InvoicePreviewEndpointConfig => parseEnv(invoicePreviewEndpointEnvSchema, env);
