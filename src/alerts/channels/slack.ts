import { type AlertChannel, bodySnippet, DEFAULT_CHANNEL_TIMEOUT_MS, post } from './channel.ts';
import { renderSlack } from './message.ts';

export interface SlackChannelOptions {
  /** https://hooks.slack.com/services/… — a secret: it never appears in errors or logs. */
  webhookUrl: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

/**
 * A Slack incoming webhook. Slack has no idempotency key: a repeat of a delivery whose
 * success was not recorded posts the message again.
 */
export function createSlackChannel(options: SlackChannelOptions): AlertChannel {
  const fetchImpl = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHANNEL_TIMEOUT_MS;
  return {
    async send(message) {
      const response = await post('Slack', fetchImpl, options.webhookUrl, {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(renderSlack(message)),
        timeoutMs,
      });
      // Slack answers errors as plain text: invalid_payload, no_service, channel_is_archived…
      const body = await bodySnippet(response);
      if (!response.ok) {
        throw new Error(`Slack answered ${response.status}${body ? `: ${body}` : ''}`);
      }
    },
  };
}
