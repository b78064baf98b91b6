import { type AlertChannel, bodySnippet, DEFAULT_CHANNEL_TIMEOUT_MS, post } from './channel.ts';
import { renderAlert } from './message.ts';

const RESEND_API_URL = 'https://api.resend.com/emails';

export interface ResendEmailChannelOptions {
  /** re_… */
  apiKey: string;
  /** A sender on a domain verified in Resend, e.g. `Flowmeter <alerts@example.com>`. */
  from: string;
  to: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

/**
 * E-mail through Resend's HTTP API. The delivery key goes out as `Idempotency-Key`: for 24
 * hours Resend answers a repeat with the first response instead of sending again, so a
 * retry after a lost answer never sends a second e-mail.
 */
export function createResendEmailChannel(options: ResendEmailChannelOptions): AlertChannel {
  const fetchImpl = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHANNEL_TIMEOUT_MS;
  return {
    async send(message, deliveryKey) {
      const { subject, text } = renderAlert(message);
      const response = await post('Resend', fetchImpl, RESEND_API_URL, {
        headers: {
          authorization: `Bearer ${options.apiKey}`,
          'content-type': 'application/json',
          'idempotency-key': deliveryKey,
        },
        body: JSON.stringify({ from: options.from, to: [options.to], subject, text }),
        timeoutMs,
      });
      const body = await bodySnippet(response);
      if (!response.ok) {
        throw new Error(`Resend answered ${response.status}: ${resendError(body)}`);
      }
    },
  };
}

/** Resend's error body is `{statusCode, name, message}`; anything else is shown as is. */
function resendError(body: string): string {
  try {
    const parsed = JSON.parse(body) as { name?: unknown; message?: unknown };
    if (typeof parsed.name === 'string' && typeof parsed.message === 'string') {
      return `${parsed.name}: ${parsed.message}`;
    }
  } catch {
    // not JSON: a proxy's page, shown as is
  }
  return body || '(empty body)';
}
