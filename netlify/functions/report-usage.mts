import { reporterDependencies, reporterSettings } from '../../src/billing/from-config.ts';
import { runReporter } from '../../src/billing/report-usage.ts';
import { SCHEDULED_FUNCTION_LIMIT_MS } from '../../src/config/env.ts';
import { loadReporterConfig } from '../../src/config/reporter-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { scheduledFunction } from '../../src/ops/scheduled-run.ts';

/**
 * Scheduled (hourly by default; the schedule is in netlify.toml so an operator can change
 * it): report unreported billable usage to Stripe Billing Meters.
 */
export default scheduledFunction('report-usage', loadReporterConfig, (config, invokedAt) => {
  const deps = reporterDependencies(config, createLogger(config.LOG_LEVEL));
  return {
    ...deps,
    work: (log) =>
      runReporter({
        ...deps,
        log,
        settings: reporterSettings(config, SCHEDULED_FUNCTION_LIMIT_MS - (Date.now() - invokedAt)),
      }),
  };
});
