import type { Config } from '@netlify/functions';
import {
  createStripeWebhookHandler,
  stripeWebhookDependencies,
} from '../../src/billing/stripe-webhook-handler.ts';
import { loadStripeWebhookConfig } from '../../src/config/billing-env.ts';
import { configuredHandler } from '../../src/http/netlify-handler.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';

/**
 * Stripe's webhook: subscription changes keep each tenant's plan, status and period in
 * sync. With a bad environment it answers 500, which makes Stripe retry the event once the
 * environment is fixed.
 */
export default configuredHandler('stripe-webhook', () => {
  const config = loadStripeWebhookConfig();
  return createStripeWebhookHandler(
    stripeWebhookDependencies(config, createLogger(config.LOG_LEVEL, { fn: 'stripe-webhook' })),
  );
});

export const config: Config = { path: '/api/v1/stripe/webhook' };
