import { randomUUID } from 'node:crypto';
import { reporterDependencies } from '../../src/billing/from-config.ts';
import { runReporter } from '../../src/billing/report-usage.ts';
import { loadReporterConfig } from '../../src/config/reporter-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';

/**
 * Scheduled (hourly by default; the schedule is in netlify.toml so an operator can change
 * it): report unreported billable usage to Stripe Billing Meters.
 */
export default async () => {
  const config = loadReporterConfig();
  const summary = await runReporter(
    reporterDependencies(
      config,
      createLogger(config.LOG_LEVEL, { fn: 'report-usage', run_id: randomUUID() }),
    ),
  );
  return Response.json(summary);
};
