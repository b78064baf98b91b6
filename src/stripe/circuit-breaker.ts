import CircuitBreaker from 'opossum';
import { stripeFailureKind } from './errors.ts';

/** A run's breaker for its calls to Stripe (stripeCircuitBreaker). */
export type StripeCircuitBreaker = CircuitBreaker<[() => Promise<unknown>], unknown>;

/**
 * Stripe down: once more than half of at least five recent calls found it unavailable (no
 * answer, a timeout, a 5xx stripe-node's retries did not get past), a run stops calling it
 * rather than burn its budget on timeouts, and leaves the rest for the next run. Only
 * unavailability trips it: the other failures are answers about one request. After 30 s
 * (a run longer than a scheduled function's) one call is let through to see whether Stripe
 * is back.
 */
export const stripeCircuitBreaker = (): StripeCircuitBreaker =>
  new CircuitBreaker((call: () => Promise<unknown>) => call(), {
    timeout: false,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    resetTimeout: 30_000,
    errorFilter: (e: unknown) => stripeFailureKind(e) !== 'unavailable',
  });

/** `call`'s answer through `breaker`; while it is open, refused at once, never sent. */
export const throughBreaker = <T>(breaker: StripeCircuitBreaker, call: () => Promise<T>) =>
  breaker.fire(call) as Promise<T>;

/** Whether a call failed because the breaker was open: nothing reached Stripe. */
export const refusedByOpenBreaker = (error: unknown): boolean =>
  (error as { code?: string } | null)?.code === 'EOPENBREAKER';
