import { fail, ok, type Result } from '../../domain/result.ts';
import type { AlertMessage } from './message.ts';

/**
 * What a send answers: ok once the provider accepted the message, else `upstream_failed`
 * with what went wrong, the text recorded as the attempt's error.
 */
export type ChannelSend = Result<null, 'upstream_failed'>;

/**
 * One way out for an alert. Channels never retry: the delivery table does, with backoff,
 * across runs.
 */
export interface AlertChannel {
  /** `deliveryKey` is the same on every attempt for one alert and channel. */
  send(message: AlertMessage, deliveryKey: string): Promise<ChannelSend>;
}

/** Per-request limit for every channel's HTTP call. */
export const DEFAULT_CHANNEL_TIMEOUT_MS = 8000;

/** How a channel reaches its provider. */
export interface HttpChannelOptions {
  fetch?: typeof fetch;
  timeoutMs?: number;
}

/**
 * POSTs a JSON message to a provider: ok once it accepted it (2xx); otherwise a failure
 * `<service> answered <status>` followed by what `explain` makes of the answer's start. A
 * timeout or a network failure is a failure naming the service.
 */
export async function postMessage(
  service: string,
  options: HttpChannelOptions,
  request: { url: string; headers?: Record<string, string>; message: unknown },
  explain: (body: string) => string,
): Promise<ChannelSend> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHANNEL_TIMEOUT_MS;
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(request.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...request.headers },
      body: JSON.stringify(request.message),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const failure = error as Error & { cause?: unknown };
    if (failure.name === 'TimeoutError' || failure.name === 'AbortError') {
      return fail('upstream_failed', `${service} did not answer within ${timeoutMs} ms`);
    }
    const cause = failure.cause instanceof Error ? failure.cause.message : failure.message;
    return fail('upstream_failed', `${service} could not be reached: ${cause}`);
  }
  const body = await bodySnippet(response);
  if (!response.ok) {
    return fail('upstream_failed', `${service} answered ${response.status}${explain(body)}`);
  }
  return ok(null);
}

/** The start of a response body, for an error message (never the whole of a large page). */
async function bodySnippet(response: Response, max = 300): Promise<string> {
  const text = (await response.text().catch(() => '')).trim().replace(/\s+/g, ' ');
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
