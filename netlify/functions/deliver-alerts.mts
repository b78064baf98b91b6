import { alertDependencies, deliverAlerts } from '../../src/alerts/from-config.ts';
import { loadAlertsConfig } from '../../src/config/alerts-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { scheduledFunction } from '../../src/ops/scheduled-run.ts';

/**
 * Every 5 minutes: deliver new usage alerts (created by the collector when usage crosses
 * a plan threshold) to Slack and e-mail, retrying failed deliveries with the same key.
 */
export default scheduledFunction('deliver-alerts', loadAlertsConfig, (config) => {
  const deps = alertDependencies(config, { log: createLogger(config.LOG_LEVEL) });
  return {
    ...deps,
    work: (log) => deliverAlerts({ ...deps, log }),
  };
});

export const config = { schedule: '*/5 * * * *' };
