import type Stripe from 'stripe';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { fail, ok, type Result } from '../domain/result.ts';

/** The events that carry a subscription's whole state; every other type is acknowledged and ignored. */
export const SUBSCRIPTION_EVENT_TYPES = [
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
] as const;

export type SubscriptionEvent =
  | Stripe.CustomerSubscriptionCreatedEvent
  | Stripe.CustomerSubscriptionUpdatedEvent
  | Stripe.CustomerSubscriptionDeletedEvent;

/** The subscription's metadata key naming the tenant, for subscriptions not yet linked to one. */
export const TENANT_METADATA_KEY = 'flowmeter_tenant_id';

/** What apply_stripe_subscription_event needs from one event: its arguments, one to one. */
export interface SubscriptionSnapshot {
  event_id: string;
  event_type: SubscriptionEvent['type'];
  event_created: string;
  subscription_id: string;
  customer_id: string;
  status: string;
  price_ids: string[];
  period_start: string;
  period_end: string;
  trial_end?: string;
  tenant_hint?: string;
}

export type StripeEventOutcome =
  | 'applied'
  | 'stale'
  | 'superseded'
  | 'unknown_tenant'
  | 'duplicate'
  | 'ignored';

export interface HandledStripeEvent {
  outcome: StripeEventOutcome;
  tenantId?: string;
  planId?: string;
  subscriptionStatus?: string;
  /** Set when none of the subscription's prices is mapped to a plan: the plan was kept. */
  unmappedPriceIds?: string[];
  detail?: string;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const isoFromUnix = (seconds: number) => new Date(seconds * 1000).toISOString();

export function isSubscriptionEvent(event: Stripe.Event): event is SubscriptionEvent {
  return (SUBSCRIPTION_EVENT_TYPES as readonly string[]).includes(event.type);
}

/**
 * The subscription state an event describes. Since API 2025-03-31 the billing period lives
 * on each item; the subscription's period spans them all (items on one billing cycle share
 * it). A deleted subscription is canceled whatever status the payload carries.
 */
export function subscriptionSnapshot(
  event: SubscriptionEvent,
): Result<SubscriptionSnapshot, 'invalid_request'> {
  const subscription = event.data.object;
  const items = subscription.items.data;
  if (items.length === 0) {
    return fail('invalid_request', `Subscription ${subscription.id} has no items, so no period`);
  }
  const hint = subscription.metadata?.[TENANT_METADATA_KEY]?.trim();
  return ok({
    event_id: event.id,
    event_type: event.type,
    event_created: isoFromUnix(event.created),
    subscription_id: subscription.id,
    customer_id:
      typeof subscription.customer === 'string' ? subscription.customer : subscription.customer.id,
    status: event.type === 'customer.subscription.deleted' ? 'canceled' : subscription.status,
    price_ids: items.map((item) => item.price.id),
    period_start: isoFromUnix(Math.min(...items.map((item) => item.current_period_start))),
    period_end: isoFromUnix(Math.max(...items.map((item) => item.current_period_end))),
    ...(subscription.trial_end !== null ? { trial_end: isoFromUnix(subscription.trial_end) } : {}),
    // Anything but a uuid could never name a tenant; passing it on would fail the call.
    ...(hint && uuid.test(hint) ? { tenant_hint: hint } : {}),
  });
}

/**
 * apply_stripe_subscription_event's jsonb answer, parsed where it enters TypeScript: a key
 * renamed in SQL fails here (and in the webhook tests) instead of reading as undefined.
 */
const applyStripeEventAnswerSchema = z.discriminatedUnion('outcome', [
  z.object({
    outcome: z.literal('applied'),
    tenant_id: z.uuid(),
    plan_id: z.string(),
    subscription_status: z.string(),
    unmapped_price_ids: z.array(z.string()).nullable(),
  }),
  z.object({ outcome: z.literal('duplicate') }),
  z.object({
    outcome: z.enum(['stale', 'superseded', 'unknown_tenant']),
    tenant_id: z.uuid().nullable(),
    detail: z.string().nullable(),
  }),
]);

export interface HandleStripeEventInput {
  db: Db;
  /** Already verified against the webhook signing secret. */
  event: Stripe.Event;
}

/**
 * Applies a verified Stripe event. Subscription events update their tenant in one SQL
 * call that also records the event (idempotent on its id, ordered by its created time);
 * other types are ignored without touching the database. `internal` means the database
 * did not take the event: answer Stripe with an error so that it retries.
 */
export async function handleStripeEvent(
  input: HandleStripeEventInput,
): Promise<Result<HandledStripeEvent, 'invalid_request' | 'internal'>> {
  const { db, event } = input;
  if (!isSubscriptionEvent(event)) return ok({ outcome: 'ignored' });
  const snapshot = subscriptionSnapshot(event);
  if (!snapshot.ok) return snapshot;

  const { data, error } = await db.rpc('apply_stripe_subscription_event', snapshot.value);
  if (error) {
    return fail('internal', `Stripe event ${event.id} could not be recorded`, {
      cause: error.message,
    });
  }
  const answer = applyStripeEventAnswerSchema.safeParse(data);
  if (!answer.success) {
    return fail('internal', `Stripe event ${event.id} could not be recorded`, {
      cause: 'apply_stripe_subscription_event answered in a shape this version does not read',
      issues: answer.error.issues,
    });
  }
  const result = answer.data;
  switch (result.outcome) {
    case 'duplicate':
      return ok({ outcome: 'duplicate' });
    case 'applied':
      return ok({
        outcome: 'applied',
        tenantId: result.tenant_id,
        planId: result.plan_id,
        subscriptionStatus: result.subscription_status,
        ...(result.unmapped_price_ids ? { unmappedPriceIds: result.unmapped_price_ids } : {}),
      });
    default:
      return ok({
        outcome: result.outcome,
        ...(result.tenant_id ? { tenantId: result.tenant_id } : {}),
        ...(result.detail ? { detail: result.detail } : {}),
      });
  }
}
