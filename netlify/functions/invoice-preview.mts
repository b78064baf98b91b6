import type { Config } from '@netlify/functions';
import { stripeClientFrom } from '../../src/billing/from-config.ts';
import { createInvoicePreviewHandler } from '../../src/billing/invoice-preview-handler.ts';
import { loadInvoicePreviewEndpointConfig } from '../../src/config/reporter-env.ts';
import { createServiceClient, createUserClient } from '../../src/db/client.ts';
import { configuredHandler } from '../../src/http/netlify-handler.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';

/** The dashboards' Stripe invoice preview: POST /api/v1/invoice-preview with the user's JWT. */
export default configuredHandler('invoice-preview', () => {
  const config = loadInvoicePreviewEndpointConfig();
  return createInvoicePreviewHandler({
    db: createServiceClient(config),
    userDb: (token) => createUserClient(config, token),
    stripe: stripeClientFrom(config),
    log: createLogger(config.LOG_LEVEL, { fn: 'invoice-preview' }),
    ttlSeconds: config.INVOICE_PREVIEW_TTL_SECONDS,
  });
});

export const config: Config = { path: '/api/v1/invoice-preview', method: ['POST'] };
