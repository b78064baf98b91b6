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

/** Calls `fetch`, turning a timeout or a network failure into an Error naming the service. */
export async function post(
  service: string,
  fetchImpl: typeof fetch,
  url: string,
  init: { headers: Record<string, string>; body: string; timeoutMs: number },
): Promise<Response> {
  try {
    return await fetchImpl(url, {
      method: 'POST',
      headers: init.headers,
      body: init.body,
      signal: AbortSignal.timeout(init.timeoutMs),
    });
  } catch (error) {
    const failure = error as Error & { cause?: unknown };
    if (failure.name === 'TimeoutError' || failure.name === 'AbortError') {
      throw new Error(`${service} did not answer within ${init.timeoutMs} ms`);
    }
    const cause = failure.cause instanceof Error ? failure.cause.message : failure.message;
    throw new Error(`${service} could not be reached: ${cause}`);
  }
}

/** The start of a response body, for an error message (never the whole of a large page). */
export async function bodySnippet(response: Response, max = 300): Promise<string> {
  const text = (await response.text().catch(() => '')).trim().replace(/\s+/g, ' ');
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
