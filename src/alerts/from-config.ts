import type { AlertsConfig } from '../config/alerts-env.ts';
import { createServiceClient } from '../db/client.ts';
import type { Logger } from '../observability/logger.ts';
import { createLogger } from '../observability/pino-logger.ts';
import { createResendEmailChannel } from './channels/email.ts';
import { createSlackChannel } from './channels/slack.ts';
import type { AlertChannelFactories, DeliverAlertsInput } from './deliver-alerts.ts';

/** Slack always (its webhook URLs live in alert_channels); e-mail when Resend is configured. */
export function alertChannelFactories(
  config: AlertsConfig,
  fetchImpl?: typeof fetch,
): AlertChannelFactories {
  const { RESEND_API_KEY: apiKey, ALERT_EMAIL_FROM: from } = config;
  return {
    slack: (webhookUrl) =>
      createSlackChannel({ webhookUrl, ...(fetchImpl ? { fetch: fetchImpl } : {}) }),
    ...(apiKey && from
      ? {
          email: (to: string) =>
            createResendEmailChannel({
              apiKey,
              from,
              to,
              ...(fetchImpl ? { fetch: fetchImpl } : {}),
            }),
        }
      : {}),
  };
}

/** Everything deliverAlerts needs, built from validated configuration. */
export function alertDependencies(
  config: AlertsConfig,
  overrides: { log?: Logger; fetch?: typeof fetch; db?: DeliverAlertsInput['db'] } = {},
): Pick<DeliverAlertsInput, 'db' | 'channels' | 'log'> {
  return {
    db: overrides.db ?? createServiceClient(config, overrides.fetch),
    channels: alertChannelFactories(config, overrides.fetch),
    log: overrides.log ?? createLogger(config.LOG_LEVEL),
  };
}

export { deliverAlerts, drainAlerts } from './deliver-alerts.ts';
