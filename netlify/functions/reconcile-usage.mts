import { reconcileDbTimeoutMs, reporterDependencies } from '../../src/billing/from-config.ts';
import {
  lastResumePoint,
  reconcileRunSummary,
  runReconciliation,
  startOfLastMonth,
} from '../../src/billing/reconcile.ts';
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
export default scheduledFunction('reconcile-usage', loadReconcileConfig, (config, invokedAt) => {
  const { db, stripe, log } = reporterDependencies(config, createLogger(config.LOG_LEVEL), {
    dbTimeoutMs: reconcileDbTimeoutMs(config),
  });
  const since = startOfLastMonth();
  return {
    // The run's record keeps the usual deadline, so recording it fits in what is left.
    db: createServiceClient(config),
    log,
    work: async (runLog) => {
      // Where the last run's time for Stripe's meter ran out: this run compares from there.
      const resumeFrom = await lastResumePoint(db, 'reconcile-usage');
      if (!resumeFrom.ok) return resumeFrom;
      const result = await runReconciliation({
        db,
        stripe,
        log: runLog,
        since,
        resumeFrom: resumeFrom.value,
        repair: config.RECONCILE_REPAIR,
        // Inside the scheduled function's 30 s, counted from its start: a comparison or a
        // fetch started by then ends within Stripe's 10 s timeout, and the run is recorded.
        until: { meter: invokedAt + 10_000, previews: invokedAt + 15_000 },
        concurrency: config.RECONCILE_CONCURRENCY,
        finalizationGraceMinutes: config.INVOICE_FINALIZATION_GRACE_MINUTES,
      });
      // What status reads of the run: Stripe failures are findings until a run has none.
      return result.ok ? ok(reconcileRunSummary(result.value)) : result;
    },
  };
});
