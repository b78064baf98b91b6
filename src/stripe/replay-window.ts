/**
 * How long after a first attempt a request whose answer was lost may be sent again as it
 * was: Stripe de-duplicates a meter event's identifier, and replays an idempotency key's
 * first answer, for at least 24 hours (stripe-node's MeterEventCreateParams.identifier),
 * not for ever. Past that, less an hour's margin for the send itself, a resend of something
 * Stripe took could be counted again, so it waits for a person who checks Stripe (review).
 */
export const STRIPE_REPLAY_WINDOW_MS = 23 * 3600_000;

/** The window in hours, as messages to people say it. */
export const STRIPE_REPLAY_WINDOW_HOURS = STRIPE_REPLAY_WINDOW_MS / 3600_000;

/** Whether an answer lost at `since` (an ISO instant; null: none lost) is past the window. */
export const pastReplayWindow = (since: string | null, now: number): boolean =>
  since !== null && now - Date.parse(since) > STRIPE_REPLAY_WINDOW_MS;

/**
 * Why a meter event past the window is held for review, with the command (`resolve`, its
 * `--stripe-has` flag left to add) that finishes it once a person has looked in Stripe.
 */
export const heldForReview = (identifier: string, resolve: string): string =>
  `not sent again: an attempt over ${STRIPE_REPLAY_WINDOW_HOURS} hours ago had no answer, so Stripe may no longer recognise identifier ${identifier} and a resend could count it twice: check the meter's events in Stripe, then \`${resolve} --stripe-has yes|no\``;

/**
 * What a person does for meter reports held for review: find their identifiers (`list`
 * prints them), look each up in Stripe, then resolve each.
 */
export const reportReviewSteps = (list = true): string =>
  `${list ? '`flowmeter reports list --status review` lists them with their identifiers: ' : ''}look each up among the meter's events in the Stripe Dashboard, then \`flowmeter reports resolve <id> --stripe-has yes|no\``;
