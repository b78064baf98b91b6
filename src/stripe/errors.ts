/**
 * What a failed Stripe call means for the caller, read from the fields stripe-node puts on
 * its errors (`statusCode`, `code`, `headers`), never from the message text, which Stripe
 * may reword at any time.
 *
 * - `duplicate`: Stripe already holds a meter event with this identifier — an earlier
 *   attempt reached it. Stripe's OpenAPI spec documents the refusal as error code
 *   `duplicate_meter_event` ("A meter event with a duplicate identifier has already been
 *   submitted", schema `v2.error.duplicate_meter_event`).
 * - `auth`: the key is wrong, revoked or lacks the permission (401, 403): every call will
 *   fail the same way until someone changes the key.
 * - `rate_limited`: 429 (or 400 `rate_limit`); stripe-node does not retry it.
 * - `refused`: any other 4xx — this request's data, fixed only by changing the data.
 * - `unavailable`: no answer, a timeout or a 5xx that stripe-node's retries did not get past.
 */
export type StripeFailureKind = 'duplicate' | 'auth' | 'rate_limited' | 'refused' | 'unavailable';

const DUPLICATE_METER_EVENT_CODE = 'duplicate_meter_event';

interface StripeErrorFields {
  statusCode?: number;
  code?: string;
  headers?: Record<string, string | string[] | undefined>;
}

const fields = (error: unknown): StripeErrorFields =>
  typeof error === 'object' && error !== null ? (error as StripeErrorFields) : {};

export function stripeFailureKind(error: unknown): StripeFailureKind {
  const { statusCode, code } = fields(error);
  if (statusCode === 429 || code === 'rate_limit') return 'rate_limited';
  if (statusCode === 400 && code === DUPLICATE_METER_EVENT_CODE) return 'duplicate';
  if (statusCode === 401 || statusCode === 403) return 'auth';
  if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) return 'refused';
  return 'unavailable';
}

/**
 * How long Stripe asked the caller to wait (`Retry-After`, in seconds or as an HTTP date),
 * in milliseconds; undefined when it did not say.
 */
export function retryAfterMs(error: unknown, now: number): number | undefined {
  const raw = fields(error).headers?.['retry-after'];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Calls found Stripe unavailable until a run's circuit breaker opened (stoppedBy
 * 'unavailable'), as messages to people say it.
 */
export const STRIPE_KEPT_FAILING = 'Stripe kept failing (no answer, timeouts or 5xx errors)';
