import { randomBytes, randomUUID } from 'node:crypto';
import { createStripeWebhookHandler } from '../../src/billing/stripe-webhook-handler.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createStripeClient, STRIPE_API_VERSION, type Stripe } from '../../src/stripe/client.ts';
import { createPlan, createTenant } from './fixtures.ts';
import { serviceClient, superuser } from './stack.ts';

/** Stripe subscription events as API 2026-10-28 sends them, signed, and the state they touch. */
export const webhookSecret = `whsec_${randomBytes(24).toString('hex')}`;
export const stripe = createStripeClient({ secretKey: 'sk_webhook_verification_only' });
export const handler = createStripeWebhookHandler({
  db: serviceClient(),
  stripe,
  webhookSecret,
  log: silentLogger,
});

export const DAY = 86_400;
export const stripeId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;
export const nowSeconds = () => Math.floor(Date.now() / 1000);
export const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

export interface SubscriptionShape {
  id: string;
  customer: string;
  status?: Stripe.Subscription.Status;
  /** Price id and period of each item. */
  items: Array<{ price: string; start: number; end: number; metered?: boolean }>;
  trialEnd?: number | null;
  metadata?: Record<string, string>;
}

/** A subscription as API 2026-10-28 renders it in an event: the period on each item. */
export function subscriptionObject(shape: SubscriptionShape): Stripe.Subscription {
  const created = (shape.items[0]?.start ?? nowSeconds()) - 60;
  return {
    id: shape.id,
    object: 'subscription',
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: shape.items[0]?.start ?? created,
    billing_cycle_anchor_config: null,
    billing_thresholds: null,
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: shape.status === 'canceled' ? nowSeconds() : null,
    cancellation_details: { comment: null, feedback: null, reason: null },
    collection_method: 'charge_automatically',
    created,
    currency: 'usd',
    customer: shape.customer,
    days_until_due: null,
    default_payment_method: stripeId('pm'),
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    ended_at: shape.status === 'canceled' ? nowSeconds() : null,
    items: {
      object: 'list',
      data: shape.items.map((item) => ({
        id: stripeId('si'),
        object: 'subscription_item',
        billing_thresholds: null,
        created,
        current_period_end: item.end,
        current_period_start: item.start,
        discounts: [],
        metadata: {},
        price: {
          id: item.price,
          object: 'price',
          active: true,
          billing_scheme: 'per_unit',
          created: created - DAY,
          currency: 'usd',
          livemode: false,
          lookup_key: null,
          metadata: {},
          nickname: null,
          product: stripeId('prod'),
          recurring: {
            interval: 'month',
            interval_count: 1,
            meter: item.metered ? stripeId('mtr') : null,
            usage_type: item.metered ? 'metered' : 'licensed',
          },
          tax_behavior: 'unspecified',
          tiers_mode: null,
          transform_quantity: null,
          type: 'recurring',
          unit_amount: item.metered ? null : 4900,
          unit_amount_decimal: item.metered ? '0.5' : '4900',
        },
        ...(item.metered ? {} : { quantity: 1 }),
        subscription: shape.id,
        tax_rates: [],
      })),
      has_more: false,
      url: `/v1/subscription_items?subscription=${shape.id}`,
    },
    latest_invoice: stripeId('in'),
    livemode: false,
    metadata: shape.metadata ?? {},
    next_pending_invoice_item_invoice: null,
    on_behalf_of: null,
    pause_collection: null,
    pending_invoice_item_interval: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: null,
    start_date: created,
    status: shape.status ?? 'active',
    test_clock: null,
    transfer_data: null,
    trial_end: shape.trialEnd ?? null,
    trial_settings: { end_behavior: { missing_payment_method: 'create_invoice' } },
    trial_start: shape.trialEnd ? created : null,
  } as unknown as Stripe.Subscription;
}

export function subscriptionEvent(
  type:
    | 'customer.subscription.created'
    | 'customer.subscription.updated'
    | 'customer.subscription.deleted',
  shape: SubscriptionShape,
  created = nowSeconds(),
  id = stripeId('evt'),
): Stripe.Event {
  return {
    id,
    object: 'event',
    api_version: STRIPE_API_VERSION,
    created,
    data: { object: subscriptionObject(shape) },
    livemode: false,
    pending_webhooks: 1,
    request: { id: stripeId('req'), idempotency_key: randomUUID() },
    type,
  } as Stripe.Event;
}

export function delivery(
  payload: string,
  init: {
    secret?: string;
    signature?: string | null;
    timestamp?: number;
    method?: string;
    tamper?: (payload: string) => string;
  } = {},
): Request {
  const signature =
    init.signature === undefined
      ? stripe.webhooks.generateTestHeaderString({
          payload,
          secret: init.secret ?? webhookSecret,
          ...(init.timestamp ? { timestamp: init.timestamp } : {}),
        })
      : init.signature;
  const method = init.method ?? 'POST';
  return new Request('https://flowmeter.test/api/v1/stripe/webhook', {
    method,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
      ...(signature ? { 'stripe-signature': signature } : {}),
    },
    ...(method === 'GET' || method === 'HEAD'
      ? {}
      : { body: init.tamper ? init.tamper(payload) : payload }),
  });
}

export async function deliver(event: Stripe.Event, h = handler) {
  const response = await h(delivery(JSON.stringify(event, null, 2)));
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function tenantState(tenantId: string) {
  const { rows } = await superuser().query(
    `select plan_id, subscription_status, stripe_customer_id, stripe_subscription_id,
            current_period_start, current_period_end, trial_ends_at, stripe_synced_at, updated_at
     from public.tenants where id = $1`,
    [tenantId],
  );
  return rows[0];
}

export async function recordedEvent(eventId: string) {
  const { rows } = await superuser().query(
    'select type, created, outcome, tenant_id, detail from public.stripe_events where id = $1',
    [eventId],
  );
  return rows[0] ?? null;
}

export async function mapPrice(planId: string, priceId = stripeId('price')) {
  const { error } = await serviceClient().rpc('upsert_plan_price', {
    stripe_price_id: priceId,
    plan_id: planId,
  });
  if (error) throw new Error(`upsert_plan_price: ${error.message}`);
  return priceId;
}

/** A tenant on a starter plan, linked to a Stripe customer, and a price mapped to a pro plan. */
export async function linkedTenant() {
  const tenant = await createTenant();
  const customer = stripeId('cus');
  await superuser().query('update public.tenants set stripe_customer_id = $2 where id = $1', [
    tenant.id,
    customer,
  ]);
  const pro = await createPlan({ included_executions: 50_000 });
  const proPrice = await mapPrice(pro.id);
  return { tenant, customer, pro, proPrice, subscription: stripeId('sub') };
}

export const monthFrom = (start: number) => ({ start, end: start + 30 * DAY });
