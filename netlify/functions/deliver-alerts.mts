import { alertDependencies, deliverAlerts } from '../../src/alerts/from-config.ts';
import { loadAlertsConfig } from '../../src/config/alerts-env.ts';
import { resultResponse } from '../../src/http/responses.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { recordedRun, scheduledRecordBy } from '../../src/ops/scheduled-run.ts';

/**
 * Every 5 minutes: deliver new usage alerts (created by the collector when usage crosses
 * a plan threshold) to Slack and e-mail, retrying failed deliveries with the same key.
 */
export default async () => {
  const invokedAt = Date.now();
  const config = loadAlertsConfig();
  const deps = alertDependencies(config, { log: createLogger(config.LOG_LEVEL) });
  const result = await recordedRun(
    {
      db: deps.db,
      functionName: 'deliver-alerts',
      log: deps.log,
      recordBy: scheduledRecordBy(invokedAt, config.DB_TIMEOUT_MS),
    },
    (log) => deliverAlerts({ ...deps, log }),
  );
  return resultResponse(result);
};

export const config = { schedule: '*/5 * * * *' };
