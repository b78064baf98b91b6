/**
 * How long after a first attempt a request whose answer was lost may be sent again as it
 * was: Stripe de-duplicates a meter event's identifier, and replays an idempotency key's
 * first answer, for at least 24 hours (stripe-node's MeterEventCreateParams.identifier),
 * not for ever. Past that, less an hour's margin for the send itself, a resend of something
 * Stripe took could be counted again, so it waits for a person who checks Stripe (review).
 */
export const STRIPE_REPLAY_WINDOW_MS = 23 * 3600_000;
