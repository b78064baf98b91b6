import { recordingReserveMs, SCHEDULED_FUNCTION_LIMIT_MS } from '../config/env.ts';
import type { ReporterConfig } from '../config/reporter-env.ts';
import { createServiceClient } from '../db/client.ts';
import type { Logger } from '../observability/logger.ts';
import { createStripeClient } from '../stripe/client.ts';
import type { ReporterSettings, RunReporterInput } from './report-usage.ts';

/**
 * The reporter's settings; in a function that the platform stops `limitMs` from now (what
 * is left of a scheduled one's 30 s), sends still unanswered two database deadlines before
 * that are cut: one for recording the last report, one for recording the run.
 */
export function reporterSettings(config: ReporterConfig, limitMs?: number): ReporterSettings {
  return {
    budgetMs: config.REPORTER_BUDGET_SECONDS * 1000,
    ratePerSecond: config.REPORTER_RATE_PER_SECOND,
    concurrency: config.REPORTER_CONCURRENCY,
    maxRows: config.REPORTER_MAX_ROWS,
    finalizationGraceMinutes: config.INVOICE_FINALIZATION_GRACE_MINUTES,
    ...(limitMs === undefined
      ? {}
      : { cutAfterMs: limitMs - recordingReserveMs(config.DB_TIMEOUT_MS) }),
  };
}

/** Stripe's client when a key is configured; null otherwise (nothing is sent or compared). */
export function stripeClientFrom(
  config: Pick<ReporterConfig, 'STRIPE_SECRET_KEY' | 'STRIPE_API_BASE'>,
) {
  return config.STRIPE_SECRET_KEY
    ? createStripeClient({ secretKey: config.STRIPE_SECRET_KEY, apiBase: config.STRIPE_API_BASE })
    : null;
}

/**
 * The daily reconciliation's deadline for each database call: recomputing the counters of
 * two months from their raw executions is one long statement, so a call may take what the
 * function has but two database deadlines (one to record the run, one to spare).
 */
export const reconcileDbTimeoutMs = (config: Pick<ReporterConfig, 'DB_TIMEOUT_MS'>): number =>
  Math.max(
    config.DB_TIMEOUT_MS,
    SCHEDULED_FUNCTION_LIMIT_MS - recordingReserveMs(config.DB_TIMEOUT_MS),
  );

export function reporterDependencies(
  config: ReporterConfig,
  log: Logger,
  overrides: { fetch?: typeof fetch; dbTimeoutMs?: number } = {},
): Omit<RunReporterInput, 'now'> {
  return {
    db: createServiceClient(
      config,
      overrides.fetch,
      overrides.dbTimeoutMs === undefined ? {} : { timeoutMs: overrides.dbTimeoutMs },
    ),
    stripe: stripeClientFrom(config),
    settings: reporterSettings(config),
    log,
  };
}
