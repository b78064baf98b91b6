/*
 * The webhook sender's environment. Endpoints and their secrets are rows (flowmeter
 * webhooks add); the secrets are sealed with FLOWMETER_ENCRYPTION_KEYS.
 */

import { z } from 'zod';
import {
  count,
  dbTimeoutEnvShape,
  envSchema,
  parseEnv,
  requireRunEndInsideScheduledLimit,
} from './env.ts';

type Env = Record<string, string | undefined>;

const webhooksEnvSchema = envSchema.extend(dbTimeoutEnvShape).extend({
  // production: https only, to public hosts (checked again at every send); local: npm
  // start and tests, whose receivers listen on this machine.
  WEBHOOK_MODE: z
    .enum(['production', 'local'], {
      error: 'must be production (https to public hosts only) or local (any URL)',
    })
    .default('production'),
  // One attempt's limit; the scheduled sender runs at most 30 s, so it stays well below.
  WEBHOOK_TIMEOUT_MS: count(1000, 15_000, 10_000, ' ms'),
  // Sends in flight at once; a run sends about this many per receiver latency for the
  // 30 s less 2 × DB_TIMEOUT_MS and WEBHOOK_TIMEOUT_MS it may start sends in (bench:deliver).
  WEBHOOK_CONCURRENCY: count(1, 50, 8),
});

// The scheduled sender starts no send that could not end and be recorded inside 30 s: a
// timeout that leaves no such moment would defer every delivery, run after run.
const checkedWebhooksEnvSchema = webhooksEnvSchema.superRefine(
  requireRunEndInsideScheduledLimit('WEBHOOK_TIMEOUT_MS', 1),
);

export type WebhooksConfig = z.infer<typeof checkedWebhooksEnvSchema>;
export const loadWebhooksConfig = (env: Env = process.env): WebhooksConfig =>
  parseEnv(checkedWebhooksEnvSchema, env);
