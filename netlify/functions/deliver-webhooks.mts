import { loadWebhooksConfig } from '../../src/config/webhooks-env.ts';
import { resultResponse } from '../../src/http/responses.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { recordedRun, scheduledRecordBy } from '../../src/ops/scheduled-run.ts';
import { drainWebhooks } from '../../src/webhooks/deliver-webhooks.ts';
import { webhookDependencies } from '../../src/webhooks/from-config.ts';

/**
 * Every minute (netlify.toml): send due webhook deliveries, signed, retrying failed ones on
 * their backoff schedule. Netlify stops a scheduled function after 30 s, and the lease of
 * what it claimed outlasts that.
 */
export default async () => {
  const invokedAt = Date.now();
  const config = loadWebhooksConfig();
  const deps = webhookDependencies(config, { log: createLogger(config.LOG_LEVEL) });
  const result = await recordedRun(
    {
      db: deps.db,
      functionName: 'deliver-webhooks',
      log: deps.log,
      recordBy: scheduledRecordBy(invokedAt, config.DB_TIMEOUT_MS),
    },
    (log) => drainWebhooks({ ...deps, log, budgetMs: 22_000 }),
  );
  return resultResponse(result);
};
