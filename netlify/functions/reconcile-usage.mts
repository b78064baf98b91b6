import { reconcileDbTimeoutMs, reporterDependencies } from '../../src/billing/from-config.ts';
import { runReconciliation, startOfLastMonth } from '../../src/billing/reconcile.ts';
import { loadReconcileConfig } from '../../src/config/reporter-env.ts';
import { createServiceClient } from '../../src/db/client.ts';
import { ok } from '../../src/domain/result.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { scheduledFunction } from '../../src/ops/scheduled-run.ts';

/**
 * Daily: counters = raw rows for this month and the last, and what Stripe accepted =
 * Stripe's meter event summaries, and Stripe's invoice previews = flowmeter's estimate.
 * Findings land in reconciliation_findings.
 */
export default scheduledFunction('reconcile-usage', loadReconcileConfig, (config) => {
  const { db, stripe, log } = reporterDependencies(config, createLogger(config.LOG_LEVEL), {
    dbTimeoutMs: reconcileDbTimeoutMs(config),
  });
  const since = startOfLastMonth();
  return {
    // The run's record keeps the usual deadline, so recording it fits in what is left.
    db: createServiceClient(config),
    log,
    work: async (runLog) => {
      const result = await runReconciliation({
        db,
        stripe,
        log: runLog,
        since,
        repair: config.RECONCILE_REPAIR,
        // Within the scheduled function's 30 s, beside the counter and summary checks.
        previewBudgetMs: 10_000,
        finalizationGraceMinutes: config.INVOICE_FINALIZATION_GRACE_MINUTES,
      });
      if (!result.ok) return result;
      return ok({
        counterFindings: result.value.counterFindings.length,
        stripeChecked: result.value.stripeChecked,
        stripeFindings: result.value.stripeFindings.length,
        previewChecked: result.value.previewChecked,
        previewFindings: result.value.previewFindings.length,
        previewSkipped: result.value.previewSkipped,
      });
    },
  };
});
