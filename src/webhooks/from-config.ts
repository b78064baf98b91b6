import type { WebhooksConfig } from '../config/webhooks-env.ts';
import { createServiceClient, type Db } from '../db/client.ts';
import type { Logger } from '../observability/logger.ts';
import { createLogger } from '../observability/pino-logger.ts';
import type { DeliverWebhooksInput } from './deliver-webhooks.ts';
import { type HostResolver, resolveHost } from './endpoint-url.ts';
import { publicOnlyFetch } from './public-fetch.ts';

/** Everything deliverWebhooks needs, built from validated configuration. */
export function webhookDependencies(
  config: WebhooksConfig,
  overrides: { log?: Logger; db?: Db; resolve?: HostResolver } = {},
): Pick<
  DeliverWebhooksInput,
  'db' | 'keyring' | 'mode' | 'fetch' | 'log' | 'timeoutMs' | 'concurrency'
> & {
  resolve: HostResolver;
} {
  const resolve = overrides.resolve ?? resolveHost;
  return {
    db: overrides.db ?? createServiceClient(config),
    keyring: config.FLOWMETER_ENCRYPTION_KEYS,
    mode: config.WEBHOOK_MODE,
    // Looked up per call in local mode so an interceptor installed later (tests) applies.
    fetch:
      config.WEBHOOK_MODE === 'production'
        ? publicOnlyFetch(resolve)
        : (url, init) => globalThis.fetch(url, init),
    log: overrides.log ?? createLogger(config.LOG_LEVEL),
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    concurrency: config.WEBHOOK_CONCURRENCY,
    resolve,
  };
}
