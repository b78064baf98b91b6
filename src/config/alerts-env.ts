/*
 * The alert sender's environment. Slack webhooks and e-mail recipients are not here: they
 * are rows of alert_channels (add_alert_channel), per tenant or global. E-mail needs a
 * Resend key and a sender; without them e-mail deliveries fail, visibly, and are retried.
 */

import type { z } from 'zod';
import { parseEnv, serverEnvSchema, variable } from './env.ts';

type Env = Record<string, string | undefined>;

const RESEND_KEY = 'a Resend API key (re_…) with permission to send';
const EMAIL_FROM =
  'a sender on a domain verified in Resend, like alerts@example.com or Flowmeter <alerts@example.com>';
const emailFrom =
  /^(?:[^<>@\r\n]*<[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+>|[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+)$/;

/** Without the cross-field rule, for schemas that extend it (zod cannot extend a refined object). */
const alertsEnvObject = serverEnvSchema.extend({
  RESEND_API_KEY: variable(RESEND_KEY)
    .regex(/^re_[A-Za-z0-9_]+$/, { error: `must be ${RESEND_KEY}` })
    .optional(),
  ALERT_EMAIL_FROM: variable(EMAIL_FROM)
    .regex(emailFrom, { error: `must be ${EMAIL_FROM}` })
    .optional(),
});

/** A Resend key is useless without a sender. */
function requireAlertEmailFrom(
  env: { RESEND_API_KEY?: string | undefined; ALERT_EMAIL_FROM?: string | undefined },
  ctx: z.RefinementCtx,
): void {
  if (env.RESEND_API_KEY && !env.ALERT_EMAIL_FROM) {
    ctx.addIssue({
      code: 'custom',
      path: ['ALERT_EMAIL_FROM'],
      message: `is required when RESEND_API_KEY is set: ${EMAIL_FROM}`,
    });
  }
}

const alertsEnvSchema = alertsEnvObject.superRefine(requireAlertEmailFrom);

export type AlertsConfig = z.infer<typeof alertsEnvSchema>;
export const loadAlertsConfig = (env: Env = process.env): AlertsConfig =>
  parseEnv(alertsEnvSchema, env);
