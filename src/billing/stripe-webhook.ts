import type Stripe from 'stripe';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { parseOutside } from '../domain/parse-outside.ts';
import { fail, ok, type Result } from '../domain/result.ts';

/** The events that carry a subscription's whole state; every other type is acknowledged and ignored. */
const SUBSCRIPTION_EVENT_TYPES = [
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
] as const;

export type SubscriptionEvent =
  | Stripe.CustomerSubscriptionCreatedEvent
  | Stripe.CustomerSubscriptionUpdatedEvent
  | Stripe.CustomerSubscriptionDeletedEvent;

/** The subscription's metadata key naming the tenant, for subscriptions not yet linked to one. */
const TENANT_METADATA_KEY = 'flowmeter_tenant_id';

/** What apply_stripe_subscription_event needs from one event: its arguments, one to one. */
export interface SubscriptionSnapshot {
  event_id: string;
  event_type: SubscriptionEvent['type'];
  event_created: string;
  subscription_id: string;
  subscription_created: string;
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
  | 'rejected'
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

/**
 * The statuses a subscription may have today (stripe-node's Subscription.Status). Stripe may
 * add more; an event carrying one is rejected for the operator, never applied as if it
 * meant something it does not.
 */
export const KNOWN_SUBSCRIPTION_STATUSES = [
  'trialing',
  'active',
  'past_due',
  'unpaid',
  'canceled',
  'incomplete',
  'incomplete_expired',
  'paused',
] as const satisfies readonly Stripe.Subscription.Status[];

const isoFromUnix = (seconds: number) => new Date(seconds * 1000).toISOString();

/** Letters, digits and underscores after the prefix: test-mode ids carry `_test_`. */
const stripeId = (prefix: string) =>
  z
    .string()
    .max(255)
    .regex(new RegExp(`^${prefix}_[A-Za-z0-9_]+$`), { error: `must be a Stripe id (${prefix}_…)` });

/** Seconds since the epoch that a Date can hold (years 1970 to 9999). */
const unixSeconds = z.number().int().min(0).max(253_402_300_799);

/** What flowmeter reads of any event before it knows its type: enough to record it. */
const eventEnvelopeSchema = z.object({ id: stripeId('evt') });

/**
 * What flowmeter reads of a customer.subscription.* event, checked before use: a correctly
 * signed event is still input, and one Stripe shaped differently must be rejected with a
 * reason rather than crash the handler.
 */
const subscriptionEventSchema = z.object({
  id: stripeId('evt'),
  type: z.enum(SUBSCRIPTION_EVENT_TYPES),
  created: unixSeconds,
  data: z.object({
    object: z.object({
      id: stripeId('sub'),
      created: unixSeconds,
      customer: z.union([stripeId('cus'), z.object({ id: stripeId('cus') })]),
      status: z.string().min(1).max(100),
      trial_end: unixSeconds.nullish(),
      metadata: z.record(z.string(), z.string()).nullish(),
      items: z.object({
        data: z
          .array(
            z.object({
              price: z.object({ id: stripeId('price') }),
              current_period_start: unixSeconds,
              current_period_end: unixSeconds,
            }),
          )
          .min(1, { error: 'has no items, so no period' }),
      }),
    }),
  }),
});

const firstIssue = (error: z.ZodError) => {
  const issue = error.issues[0];
  return issue ? `${issue.path.join('.') || 'the event'}: ${issue.message}` : 'malformed';
};

export function isSubscriptionEvent(event: Stripe.Event): event is SubscriptionEvent {
  return (SUBSCRIPTION_EVENT_TYPES as readonly string[]).includes(event.type);
}

/**
 * The subscription state an event describes, or why it has none. Since API 2025-03-31 the
 * billing period lives on each item; the subscription's period spans them all (items on
 * one billing cycle share it). A deleted subscription is canceled whatever status the
 * payload carries; any other event must carry a status flowmeter knows.
 */
export function subscriptionSnapshot(
  event: SubscriptionEvent,
): Result<SubscriptionSnapshot, 'invalid_request'> {
  const parsed = parseOutside(subscriptionEventSchema, event);
  if (!parsed.success) {
    return fail('invalid_request', `Malformed subscription event: ${firstIssue(parsed.error)}`);
  }
  const { type, data } = parsed.data;
  const subscription = data.object;
  const items = subscription.items.data;
  const deleted = type === 'customer.subscription.deleted';
  if (
    !deleted &&
    !(KNOWN_SUBSCRIPTION_STATUSES as readonly string[]).includes(subscription.status)
  ) {
    return fail(
      'invalid_request',
      `Unknown subscription status ${JSON.stringify(subscription.status)} (known: ${KNOWN_SUBSCRIPTION_STATUSES.join(', ')}); the tenant keeps its state until an event with a known status arrives`,
    );
  }
  const hint = subscription.metadata?.[TENANT_METADATA_KEY]?.trim();
  return ok({
    event_id: parsed.data.id,
    event_type: type,
    event_created: isoFromUnix(parsed.data.created),
    subscription_id: subscription.id,
    subscription_created: isoFromUnix(subscription.created),
    customer_id:
      typeof subscription.customer === 'string' ? subscription.customer : subscription.customer.id,
    status: deleted ? 'canceled' : subscription.status,
    price_ids: items.map((item) => item.price.id),
    period_start: isoFromUnix(Math.min(...items.map((item) => item.current_period_start))),
    period_end: isoFromUnix(Math.max(...items.map((item) => item.current_period_end))),
    ...(subscription.trial_end != null ? { trial_end: isoFromUnix(subscription.trial_end) } : {}),
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
  /** Already verified against the webhook signing secret; its shape is not checked yet. */
  event: Stripe.Event;
}

/** The database refused the data (a check, a constraint, a raised exception), not failed. */
const refusedByDatabase = (error: { code?: string }) => /^(22|23|P0)/.test(error.code ?? '');

/**
 * Applies a verified Stripe event. Subscription events update their tenant in one SQL
 * call that also records the event (idempotent on its id, ordered by its created time);
 * other types are ignored without touching the database. A subscription event that cannot
 * be applied — malformed, an unknown status, data the database refuses — is recorded as
 * `rejected` with the reason, for the operator: Stripe retrying it would change nothing.
 * `invalid_request`: the event has no id to record it by. `internal`: the database did not
 * take the event; answer Stripe with an error so that it retries.
 */
export async function handleStripeEvent(
  input: HandleStripeEventInput,
): Promise<Result<HandledStripeEvent, 'invalid_request' | 'internal'>> {
  const { db, event } = input;
  const envelope = parseOutside(eventEnvelopeSchema, event);
  if (!envelope.success) {
    return fail('invalid_request', `The event cannot be recorded: ${firstIssue(envelope.error)}`);
  }
  if (typeof event.type === 'string' && !isSubscriptionEvent(event)) {
    return ok({ outcome: 'ignored' });
  }
  const reject = (reason: string) => rejectStripeEvent(db, event, reason);
  if (typeof event.type !== 'string') return reject('Malformed event: type: must be a string');
  const snapshot = subscriptionSnapshot(event as SubscriptionEvent);
  if (!snapshot.ok) return reject(snapshot.error.message);

  const { data, error } = await db.rpc('apply_stripe_subscription_event', snapshot.value);
  if (error && refusedByDatabase(error)) return reject(error.message);
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

/** record_rejected_stripe_event's jsonb answer, parsed where it enters TypeScript. */
const rejectedEventAnswerSchema = z.object({ outcome: z.enum(['rejected', 'duplicate']) });

async function rejectStripeEvent(
  db: Db,
  event: Stripe.Event,
  reason: string,
): Promise<Result<HandledStripeEvent, 'internal'>> {
  const { type, created } = event as { type?: unknown; created?: unknown };
  const { data, error } = await db.rpc('record_rejected_stripe_event', {
    event_id: event.id,
    reason,
    ...(typeof type === 'string' ? { event_type: type } : {}),
    ...(unixSeconds.safeParse(created).success
      ? { event_created: isoFromUnix(created as number) }
      : {}),
  });
  if (error || !data) {
    return fail('internal', `Stripe event ${event.id} could not be recorded as rejected`, {
      cause: error?.message ?? 'no answer',
    });
  }
  const answer = rejectedEventAnswerSchema.safeParse(data);
  if (!answer.success) {
    return fail(
      'internal',
      `Stripe event ${event.id}: record_rejected_stripe_event answered in an unknown shape`,
    );
  }
  const { outcome } = answer.data;
  return ok({ outcome, ...(outcome === 'rejected' ? { detail: reason } : {}) });
}
