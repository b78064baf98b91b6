import { describe, expect, it } from 'vitest';
import {
  isSubscriptionEvent,
  type SubscriptionEvent,
  subscriptionSnapshot,
} from '../../src/billing/stripe-webhook.ts';
import { loadStripeWebhookConfig } from '../../src/config/billing-env.ts';
import { ConfigError } from '../../src/config/env.ts';
import type { Stripe } from '../../src/stripe/client.ts';

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
const JAN_1 = Date.UTC(2027, 0, 1) / 1000;
const DAY = 86_400;

/** The fields the extraction reads, in the shape Stripe sends them (API 2026-10-28). */
function event(
  type: SubscriptionEvent['type'],
  subscription: {
    status?: string;
    customer?: string | { id: string; object: 'customer' };
    items?: Array<{ price: string; start: number; end: number }>;
    trial_end?: number | null;
    metadata?: Record<string, string>;
  } = {},
): SubscriptionEvent {
  const items = subscription.items ?? [
    { price: 'price_base', start: JAN_1, end: JAN_1 + 31 * DAY },
  ];
  return {
    id: 'evt_1QaBcD',
    object: 'event',
    api_version: '2026-10-28.endive',
    created: JAN_1 + 5,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: {
      object: {
        id: 'sub_1QaBcD',
        object: 'subscription',
        created: JAN_1 - 60,
        customer: subscription.customer ?? 'cus_QaBcD',
        status: subscription.status ?? 'active',
        trial_end: subscription.trial_end ?? null,
        metadata: subscription.metadata ?? {},
        items: {
          object: 'list',
          has_more: false,
          url: '/v1/subscription_items?subscription=sub_1QaBcD',
          data: items.map((item, i) => ({
            id: `si_${i}`,
            object: 'subscription_item',
            current_period_start: item.start,
            current_period_end: item.end,
            price: { id: item.price, object: 'price' },
          })),
        },
      },
    },
  } as unknown as SubscriptionEvent;
}

const snapshotOf = (e: SubscriptionEvent) => {
  const result = subscriptionSnapshot(e);
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
};

describe('subscriptionSnapshot', () => {
  it('maps an event to the SQL function’s arguments', () => {
    expect(snapshotOf(event('customer.subscription.created'))).toEqual({
      event_id: 'evt_1QaBcD',
      event_type: 'customer.subscription.created',
      event_created: iso(JAN_1 + 5),
      subscription_id: 'sub_1QaBcD',
      subscription_created: iso(JAN_1 - 60),
      customer_id: 'cus_QaBcD',
      status: 'active',
      price_ids: ['price_base'],
      period_start: iso(JAN_1),
      period_end: iso(JAN_1 + 31 * DAY),
    });
  });

  it('the period spans every item: earliest start, latest end', () => {
    const snapshot = snapshotOf(
      event('customer.subscription.updated', {
        items: [
          { price: 'price_base', start: JAN_1 + 10 * DAY, end: JAN_1 + 41 * DAY },
          { price: 'price_metered', start: JAN_1, end: JAN_1 + 31 * DAY },
          { price: 'price_addon', start: JAN_1 + 5 * DAY, end: JAN_1 + 45 * DAY },
        ],
      }),
    );
    expect(snapshot.period_start).toBe(iso(JAN_1));
    expect(snapshot.period_end).toBe(iso(JAN_1 + 45 * DAY));
    expect(snapshot.price_ids).toEqual(['price_base', 'price_metered', 'price_addon']);
  });

  it('deleted means canceled, whatever status the payload carries', () => {
    expect(snapshotOf(event('customer.subscription.deleted', { status: 'active' })).status).toBe(
      'canceled',
    );
    expect(
      snapshotOf(event('customer.subscription.deleted', { status: 'incomplete_expired' })).status,
    ).toBe('canceled');
    expect(snapshotOf(event('customer.subscription.updated', { status: 'past_due' })).status).toBe(
      'past_due',
    );
  });

  it('takes the id of an expanded customer and the trial end', () => {
    const snapshot = snapshotOf(
      event('customer.subscription.created', {
        customer: { id: 'cus_Expanded', object: 'customer' },
        status: 'trialing',
        trial_end: JAN_1 + 14 * DAY,
      }),
    );
    expect(snapshot.customer_id).toBe('cus_Expanded');
    expect(snapshot.trial_end).toBe(iso(JAN_1 + 14 * DAY));
  });

  it('passes metadata.flowmeter_tenant_id on only when it is a uuid', () => {
    const tenant = '6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f';
    expect(
      snapshotOf(
        event('customer.subscription.created', { metadata: { flowmeter_tenant_id: tenant } }),
      ).tenant_hint,
    ).toBe(tenant);
    expect(
      snapshotOf(
        event('customer.subscription.created', { metadata: { flowmeter_tenant_id: 'acme' } }),
      ),
    ).not.toHaveProperty('tenant_hint');
  });

  it('refuses, naming the field, a value whose length no check can read, instead of throwing', () => {
    const hostile = event('customer.subscription.updated');
    const unreadable = JSON.parse('{"length": {"toString": ""}}');
    (hostile.data.object as unknown as Record<string, unknown>).status = unreadable;
    expect(subscriptionSnapshot(hostile)).toMatchObject({
      ok: false,
      error: {
        code: 'invalid_request',
        message: expect.stringContaining('data.object.status: holds a value of the wrong type'),
      },
    });
  });

  it('refuses a subscription without items: it has no period', () => {
    const result = subscriptionSnapshot(event('customer.subscription.updated', { items: [] }));
    expect(result).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
  });
});

describe('isSubscriptionEvent', () => {
  it('accepts the three subscription events and nothing else', () => {
    for (const type of [
      'customer.subscription.created',
      'customer.subscription.updated',
      'customer.subscription.deleted',
    ] as const)
      expect(isSubscriptionEvent(event(type))).toBe(true);
    for (const type of ['invoice.paid', 'customer.subscription.trial_will_end', 'customer.updated'])
      expect(
        isSubscriptionEvent({ ...event('customer.subscription.created'), type } as Stripe.Event),
      ).toBe(false);
  });
});

describe('loadStripeWebhookConfig', () => {
  const base = {
    SUPABASE_URL: 'https://abcd.supabase.co',
    SUPABASE_SERVICE_ROLE_KEY: 'sb_secret_abc123',
  };

  it('accepts a signing secret', () => {
    expect(
      loadStripeWebhookConfig({ ...base, STRIPE_WEBHOOK_SECRET: 'whsec_abc123' }),
    ).toMatchObject({ STRIPE_WEBHOOK_SECRET: 'whsec_abc123', LOG_LEVEL: 'info' });
  });

  it.each([
    ['missing', undefined, /STRIPE_WEBHOOK_SECRET is required: .*whsec_.*Developers → Webhooks/],
    ['an API key instead', 'sk_test_abc', /STRIPE_WEBHOOK_SECRET must be .*Signing secret/],
  ])('names STRIPE_WEBHOOK_SECRET and where to find it when %s', (_, value, message) => {
    try {
      loadStripeWebhookConfig({ ...base, STRIPE_WEBHOOK_SECRET: value });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toEqual([expect.stringMatching(message)]);
    }
  });
});
