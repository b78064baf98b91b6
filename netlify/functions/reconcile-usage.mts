import { reporterDependencies } from '../../src/billing/from-config.ts';
import { runReconciliation, startOfLastMonth } from '../../src/billing/reconcile.ts';
import { loadReconcileConfig } from '../../src/config/reporter-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { recordedRun } from '../../src/observability/scheduled-run.ts';

/**
 * Daily: counters = raw rows for this month and the last, and what Stripe accepted =
 * Stripe's meter event summaries. Findings land in reconciliation_findings.
 */
export default async () => {
  const config = loadReconcileConfig();
  const { db, stripe, log } = reporterDependencies(config, createLogger(config.LOG_LEVEL));
  const since = startOfLastMonth();
  const summary = await recordedRun(
    { db, functionName: 'reconcile-usage', log },
    async (runLog) => {
      const result = await runReconciliation({
        db,
        stripe,
        log: runLog,
        since,
        repair: config.RECONCILE_REPAIR,
      });
      return {
        counterFindings: result.counterFindings.length,
        stripeChecked: result.stripeChecked,
        stripeFindings: result.stripeFindings.length,
      };
    },
  );
  return Response.json(summary);
};
