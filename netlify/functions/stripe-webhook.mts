import type { Config } from '@netlify/functions';
import {
  createStripeWebhookHandler,
  stripeWebhookDependencies,
} from '../../src/billing/stripe-webhook-handler.ts';
import { loadStripeWebhookConfig } from '../../src/config/billing-env.ts';
import { ConfigError } from '../../src/config/env.ts';
import { errorResponse } from '../../src/http/responses.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';

/** Stripe's webhook: subscription changes keep each tenant's plan, status and period in sync. */
let handler: ((req: Request) => Promise<Response>) | undefined;

export default async (req: Request): Promise<Response> => {
  if (!handler) {
    try {
      const config = loadStripeWebhookConfig();
      handler = createStripeWebhookHandler(
        stripeWebhookDependencies(config, createLogger(config.LOG_LEVEL, { fn: 'stripe-webhook' })),
      );
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      createLogger('error', { fn: 'stripe-webhook' }).error(
        { problems: error.problems },
        'stripe-webhook: invalid environment',
      );
      // A 500 makes Stripe retry the event once the environment is fixed.
      return errorResponse(
        'internal',
        'flowmeter is misconfigured; the operator has been told in the logs',
      );
    }
  }
  return handler(req);
};

export const config: Config = { path: '/api/v1/stripe/webhook' };
