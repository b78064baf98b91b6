import { DEFAULT_CHANNEL_TIMEOUT_MS } from '../../src/alerts/channels/channel.ts';
import { alertDependencies, deliverAlerts } from '../../src/alerts/from-config.ts';
import { loadAlertsConfig } from '../../src/config/alerts-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { scheduledFunction, sendStartBy } from '../../src/ops/scheduled-run.ts';

/**
 * Every 5 minutes: deliver new usage alerts (created by the collector when usage crosses
 * a plan threshold) to Slack and e-mail, retrying failed deliveries with the same key. A
 * slow channel cannot hold it past Netlify's 30 s: no send starts once one could not end
 * and be recorded in time.
 */
export default scheduledFunction('deliver-alerts', loadAlertsConfig, (config, invokedAt) => {
  const deps = alertDependencies(config, { log: createLogger(config.LOG_LEVEL) });
  return {
    ...deps,
    work: (log) =>
      deliverAlerts({
        ...deps,
        log,
        startBy: sendStartBy(invokedAt, config.DB_TIMEOUT_MS, DEFAULT_CHANNEL_TIMEOUT_MS),
      }),
  };
});

export const config = { schedule: '*/5 * * * *' };
