import type { StripeWebhookConfig } from '../config/billing-env.ts';
import { createServiceClient, type Db } from '../db/client.ts';
import { readBodyWithin } from '../http/request-body.ts';
import { errorResponse } from '../http/responses.ts';
import type { Logger } from '../observability/logger.ts';
import { createStripeClient, type Stripe } from '../stripe/client.ts';
import { handleStripeEvent } from './stripe-webhook.ts';

/** Stripe's events are a few kilobytes; a subscription with many items stays far below this. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface StripeWebhookHandlerDeps {
  db: Db;
  /** Used for signature verification only, which is local: it never calls Stripe. */
  stripe: Stripe;
  webhookSecret: string;
  log: Logger;
  /** Milliseconds since the epoch; a signature more than 5 minutes older is refused. */
  now?: () => number;
}

export function stripeWebhookDependencies(
  config: StripeWebhookConfig,
  log: Logger,
  fetchImpl?: typeof fetch,
): StripeWebhookHandlerDeps {
  return {
    db: createServiceClient(config, fetchImpl),
    // Verifying a signature needs the signing secret, not an API key.
    stripe: createStripeClient({ secretKey: 'sk_webhook_verification_only' }),
    webhookSecret: config.STRIPE_WEBHOOK_SECRET,
    log,
  };
}

const isSignatureError = (error: unknown) =>
  (error as { type?: unknown } | null)?.type === 'StripeSignatureVerificationError';

/**
 * POST /api/v1/stripe/webhook. The raw body is verified against the Stripe-Signature header
 * before it is parsed. 200 {received, outcome} once the event is recorded (or ignored),
 * also when it is recorded as rejected (then with the reason: Stripe retrying an event that
 * cannot be applied would only repeat the rejection for days); 400 bad or missing
 * signature, or a body that is not an event with an id; 405 method; 413 body too large;
 * 500 only when the database did not take the event, so that Stripe retries it.
 */
export function createStripeWebhookHandler(deps: StripeWebhookHandlerDeps) {
  const now = deps.now ?? Date.now;
  return async (req: Request): Promise<Response> => {
    if (req.method !== 'POST') {
      return errorResponse('method_not_allowed', 'Use POST', undefined, { allow: 'POST' });
    }
    const tooLarge = () =>
      errorResponse('payload_too_large', `The body may be at most ${MAX_BODY_BYTES} bytes`);
    const bytes = await readBodyWithin(req, MAX_BODY_BYTES);
    if (bytes === undefined) return tooLarge();
    // As Request.text() decodes it: the signature is checked over these very characters.
    const rawBody = new TextDecoder().decode(bytes);

    const signature = req.headers.get('stripe-signature');
    if (!signature) {
      return errorResponse(
        'invalid_request',
        'Only Stripe may call this endpoint: no Stripe-Signature header',
      );
    }
    let event: Stripe.Event;
    try {
      event = deps.stripe.webhooks.constructEvent(
        rawBody,
        signature,
        deps.webhookSecret,
        undefined,
        undefined,
        now(),
      );
    } catch (error) {
      if (isSignatureError(error)) {
        deps.log.warn({ reason: (error as Error).message }, 'stripe-webhook: signature refused');
        return errorResponse(
          'invalid_request',
          'The Stripe-Signature header does not match this body, its secret or the current time',
        );
      }
      return errorResponse('invalid_request', 'The body is not a JSON Stripe event');
    }

    const handled = await handleStripeEvent({ db: deps.db, event });
    if (!handled.ok) {
      // A signed body may still be any JSON (null, a number): read nothing from it here.
      deps.log.error(
        { error: handled.error },
        handled.error.code === 'internal'
          ? 'stripe-webhook: event not recorded; Stripe will retry it'
          : 'stripe-webhook: not an event that can be recorded',
      );
      return errorResponse(handled.error.code, handled.error.message);
    }
    const result = handled.value;
    const fields = { event: event.id, type: event.type, ...result };
    if (result.outcome === 'rejected') {
      deps.log.warn(fields, 'stripe-webhook: event rejected; it needs the operator');
      return Response.json({ received: true, outcome: result.outcome, reason: result.detail });
    }
    if (result.outcome === 'unknown_tenant' || result.unmappedPriceIds) {
      deps.log.warn(fields, 'stripe-webhook: event needs the operator');
    } else {
      deps.log.info(fields, 'stripe-webhook: event handled');
    }
    return Response.json({ received: true, outcome: result.outcome });
  };
}
