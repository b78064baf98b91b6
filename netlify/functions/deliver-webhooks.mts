import { loadWebhooksConfig } from '../../src/config/webhooks-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { scheduledFunction, sendStartBy } from '../../src/ops/scheduled-run.ts';
import { drainWebhooks } from '../../src/webhooks/deliver-webhooks.ts';
import { webhookDependencies } from '../../src/webhooks/from-config.ts';

/**
 * Every minute (netlify.toml): send due webhook deliveries, signed, retrying failed ones on
 * their backoff schedule. Netlify stops a scheduled function after 30 s: no send starts once
 * one could not end (WEBHOOK_TIMEOUT_MS) and be recorded in time, and the lease of what it
 * claimed outlasts the function.
 */
export default scheduledFunction('deliver-webhooks', loadWebhooksConfig, (config, invokedAt) => {
  const deps = webhookDependencies(config, { log: createLogger(config.LOG_LEVEL) });
  const startBy = sendStartBy(invokedAt, config.DB_TIMEOUT_MS, config.WEBHOOK_TIMEOUT_MS);
  return {
    ...deps,
    work: (log) =>
      drainWebhooks({
        ...deps,
        log,
        startBy,
        // Claims only what can be sent by then: a round of sends per timeout that fits.
        budgetMs: startBy + config.WEBHOOK_TIMEOUT_MS - Date.now(),
      }),
  };
});
