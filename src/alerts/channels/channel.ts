import type { AlertMessage } from './message.ts';

/**
 * One way out for an alert. `send` resolves once the provider accepted the message and
 * throws an Error saying what went wrong otherwise. Channels never retry: the delivery
 * table does, with backoff, across runs.
 */
export interface AlertChannel {
  /** `deliveryKey` is the same on every attempt for one alert and channel. */
  send(message: AlertMessage, deliveryKey: string): Promise<void>;
}

/** Per-request limit for every channel's HTTP call. */
export const DEFAULT_CHANNEL_TIMEOUT_MS = 8000;

/** How a channel reaches its provider. */
export interface HttpChannelOptions {
  fetch?: typeof fetch;
  timeoutMs?: number;
}

/**
 * POSTs a JSON message to a provider and resolves once it accepted it (2xx); otherwise
 * throws `<service> answered <status>` followed by what `explain` makes of the answer's
 * start. A timeout or a network failure becomes an Error naming the service.
 */
export async function postMessage(
  service: string,
  options: HttpChannelOptions,
  request: { url: string; headers?: Record<string, string>; message: unknown },
  explain: (body: string) => string,
): Promise<void> {
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
      throw new Error(`${service} did not answer within ${timeoutMs} ms`);
    }
    const cause = failure.cause instanceof Error ? failure.cause.message : failure.message;
    throw new Error(`${service} could not be reached: ${cause}`);
  }
  const body = await bodySnippet(response);
  if (!response.ok) throw new Error(`${service} answered ${response.status}${explain(body)}`);
}

/** The start of a response body, for an error message (never the whole of a large page). */
async function bodySnippet(response: Response, max = 300): Promise<string> {
  const text = (await response.text().catch(() => '')).trim().replace(/\s+/g, ' ');
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
