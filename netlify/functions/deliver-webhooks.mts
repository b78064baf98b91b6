import { loadWebhooksConfig } from '../../src/config/webhooks-env.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { scheduledFunction } from '../../src/ops/scheduled-run.ts';
import { drainWebhooks } from '../../src/webhooks/deliver-webhooks.ts';
import { webhookDependencies } from '../../src/webhooks/from-config.ts';

/**
 * Every minute (netlify.toml): send due webhook deliveries, signed, retrying failed ones on
 * their backoff schedule. Netlify stops a scheduled function after 30 s, and the lease of
 * what it claimed outlasts that.
 */
export default scheduledFunction('deliver-webhooks', loadWebhooksConfig, (config) => {
  const deps = webhookDependencies(config, { log: createLogger(config.LOG_LEVEL) });
  return {
    ...deps,
    work: (log) => drainWebhooks({ ...deps, log, budgetMs: 22_000 }),
  };
});
