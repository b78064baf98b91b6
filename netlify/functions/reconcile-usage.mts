import { randomUUID } from 'node:crypto';
import { reporterDependencies } from '../../src/billing/from-config.ts';
import { runReconciliation } from '../../src/billing/reconcile.ts';
import { loadReconcileConfig } from '../../src/config/reporter-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';

/**
 * Daily: counters = raw rows for this month and the last, and what Stripe accepted =
 * Stripe's meter event summaries. Findings land in reconciliation_findings.
 */
export default async () => {
  const config = loadReconcileConfig();
  const { db, stripe, log } = reporterDependencies(
    config,
    createLogger(config.LOG_LEVEL, { fn: 'reconcile-usage', run_id: randomUUID() }),
  );
  const now = new Date();
  const since = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  const summary = await runReconciliation({
    db,
    stripe,
    log,
    since,
    repair: config.RECONCILE_REPAIR,
  });
  return Response.json({
    counterFindings: summary.counterFindings.length,
    stripeChecked: summary.stripeChecked,
    stripeFindings: summary.stripeFindings.length,
  });
};
