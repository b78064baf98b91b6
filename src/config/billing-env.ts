import type { z } from 'zod';
import { parseEnv, serverEnvSchema, variable } from './env.ts';

type Env = Record<string, string | undefined>;

const WEBHOOK_SECRET =
  "the webhook endpoint's signing secret (whsec_…): Stripe Dashboard → Developers → Webhooks → the flowmeter endpoint → Signing secret, or the one `stripe listen` prints";

/** stripe-webhook: verifies Stripe's signatures; it never calls Stripe, so needs no API key. */
const stripeWebhookEnvSchema = serverEnvSchema.extend({
  STRIPE_WEBHOOK_SECRET: variable(WEBHOOK_SECRET).regex(/^whsec_[A-Za-z0-9+/=_-]+$/, {
    error: `must be ${WEBHOOK_SECRET}`,
  }),
});

export type StripeWebhookConfig = z.infer<typeof stripeWebhookEnvSchema>;
export const loadStripeWebhookConfig = (env: Env = process.env): StripeWebhookConfig =>
  parseEnv(stripeWebhookEnvSchema, env);
