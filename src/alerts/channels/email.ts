import { type AlertChannel, type HttpChannelOptions, postMessage } from './channel.ts';
import { renderAlert } from './message.ts';

const RESEND_API_URL = 'https://api.resend.com/emails';

export interface ResendEmailChannelOptions extends HttpChannelOptions {
  /** re_… */
  apiKey: string;
  /** A sender on a domain verified in Resend, e.g. `Flowmeter <alerts@example.com>`. */
  from: string;
  to: string;
}

/**
 * E-mail through Resend's HTTP API. The delivery key goes out as `Idempotency-Key`: for 24
 * hours Resend answers a repeat with the first response instead of sending again, so a
 * retry after a lost answer never sends a second e-mail.
 */
export function createResendEmailChannel(options: ResendEmailChannelOptions): AlertChannel {
  return {
    send(message, deliveryKey) {
      const { subject, text } = renderAlert(message);
      return postMessage(
        'Resend',
        options,
        {
          url: RESEND_API_URL,
          headers: { authorization: `Bearer ${options.apiKey}`, 'idempotency-key': deliveryKey },
          message: { from: options.from, to: [options.to], subject, text },
        },
        (body) => `: ${resendError(body)}`,
      );
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
