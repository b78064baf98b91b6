import { type AlertChannel, type HttpChannelOptions, postMessage } from './channel.ts';
import { renderSlack } from './message.ts';

export interface SlackChannelOptions extends HttpChannelOptions {
  /** https://hooks.slack.com/services/… — a secret: it never appears in errors or logs. */
  webhookUrl: string;
}

/**
 * A Slack incoming webhook. Slack has no idempotency key: a repeat of a delivery whose
 * success was not recorded posts the message again.
 */
export function createSlackChannel(options: SlackChannelOptions): AlertChannel {
  return {
    send(message) {
      return postMessage(
        'Slack',
        options,
        { url: options.webhookUrl, message: renderSlack(message) },
        // Slack answers errors as plain text: invalid_payload, no_service, channel_is_archived…
        (body) => (body ? `: ${body}` : ''),
      );
    },
  };
}
