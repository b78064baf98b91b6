import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  createStripeWebhookHandler,
  MAX_BODY_BYTES,
} from '../../src/billing/stripe-webhook-handler.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { STRIPE_API_VERSION, type Stripe } from '../../src/stripe/client.ts';
import { unreachableDb } from '../support/enforcement.ts';
import { faultyDb, rpcFetch } from '../support/faults.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { anonClient, serviceClient, superuser } from '../support/stack.ts';
import {
  DAY,
  deliver,
  delivery,
  handler,
  iso,
  linkedTenant,
  mapPrice,
  monthFrom,
  nowSeconds,
  recordedEvent,
  type SubscriptionShape,
  stripe,
  stripeId,
  subscriptionEvent,
  tenantState,
  webhookSecret,
} from '../support/stripe-events.ts';

/** The creation, just now, of subscription `id` of `customer` to `price` for a month. */
const createdNow = (
  id: string,
  customer: string,
  price: string,
  metadata?: Record<string, string>,
) =>
  subscriptionEvent('customer.subscription.created', {
    id,
    customer,
    items: [{ price, ...monthFrom(nowSeconds()) }],
    ...(metadata ? { metadata } : {}),
  });

/** Delivers the creation of the subscription `shape` describes, made at `created`. */
const deliverCreated = (shape: SubscriptionShape, created: number) =>
  deliver(subscriptionEvent('customer.subscription.created', shape, created));

/** Delivers `event`: it must end as `outcome`, leaving the tenant's row matching `state`. */
async function expectDelivered(
  event: Stripe.Event,
  outcome: string,
  tenantId: string,
  state: Record<string, unknown>,
) {
  expect((await deliver(event)).body.outcome).toBe(outcome);
  expect(await tenantState(tenantId)).toMatchObject(state);
}

/** What the tenant's row holds while it is live on `planId` through subscription `subscriptionId`. */
const liveOn = (planId: string, subscriptionId: string) => ({
  plan_id: planId,
  subscription_status: 'active',
  stripe_subscription_id: subscriptionId,
});

/** The deletion of the subscription `shape` describes, at `created`: it ends canceled. */
const deletedEvent = (shape: SubscriptionShape, created: number) =>
  subscriptionEvent('customer.subscription.deleted', { ...shape, status: 'canceled' }, created);

describe('stripe webhook: subscription sync', () => {
  it('created: the tenant takes the mapped plan, status, period and Stripe ids', async () => {
    const { tenant, customer, pro, proPrice, subscription } = await linkedTenant();
    const start = nowSeconds() - 3600;
    const event = subscriptionEvent('customer.subscription.created', {
      id: subscription,
      customer,
      items: [
        { price: proPrice, ...monthFrom(start) },
        { price: stripeId('price'), ...monthFrom(start), metered: true },
      ],
    });

    const { status, body } = await deliver(event);

    expect(status).toBe(200);
    expect(body).toEqual({ received: true, outcome: 'applied' });
    const state = await tenantState(tenant.id);
    expect(state).toMatchObject({
      plan_id: pro.id,
      subscription_status: 'active',
      stripe_customer_id: customer,
      stripe_subscription_id: subscription,
      trial_ends_at: null,
    });
    expect(state.current_period_start.toISOString()).toBe(iso(start));
    expect(state.current_period_end.toISOString()).toBe(iso(start + 30 * DAY));
    expect(state.stripe_synced_at.toISOString()).toBe(iso(event.created));
    expect(await recordedEvent(event.id)).toMatchObject({
      type: 'customer.subscription.created',
      outcome: 'applied',
      tenant_id: tenant.id,
      detail: null,
    });
  });

  it('a trial: status trialing and the trial end', async () => {
    const { tenant, customer, proPrice, subscription } = await linkedTenant();
    const start = nowSeconds() - 60;
    const trialEnd = start + 14 * DAY;
    const event = subscriptionEvent('customer.subscription.created', {
      id: subscription,
      customer,
      status: 'trialing',
      trialEnd,
      items: [{ price: proPrice, start, end: trialEnd }],
    });
    expect((await deliver(event)).body.outcome).toBe('applied');
    const state = await tenantState(tenant.id);
    expect(state.subscription_status).toBe('trialing');
    expect(state.trial_ends_at.toISOString()).toBe(iso(trialEnd));
  });

  it('finds the tenant by metadata.flowmeter_tenant_id when no Stripe id is stored yet', async () => {
    const tenant = await createTenant();
    const pro = await createPlan();
    const price = await mapPrice(pro.id);
    const customer = stripeId('cus');
    const subscription = stripeId('sub');
    const event = createdNow(subscription, customer, price, { flowmeter_tenant_id: tenant.id });

    await expectDelivered(event, 'applied', tenant.id, {
      plan_id: pro.id,
      stripe_customer_id: customer,
      stripe_subscription_id: subscription,
    });

    // From now on the stored subscription id finds it, metadata or not.
    const later = subscriptionEvent(
      'customer.subscription.updated',
      {
        id: subscription,
        customer,
        status: 'past_due',
        items: [{ price, ...monthFrom(nowSeconds()) }],
      },
      event.created + 10,
    );
    expect((await deliver(later)).body.outcome).toBe('applied');
    expect((await tenantState(tenant.id)).subscription_status).toBe('past_due');
  });

  it('updated: a plan change moves the tenant to the new price’s plan and period', async () => {
    const { tenant, customer, proPrice, subscription } = await linkedTenant();
    const start = nowSeconds() - 20 * DAY;
    const created = nowSeconds() - 100;
    await deliverCreated(
      { id: subscription, customer, items: [{ price: proPrice, ...monthFrom(start) }] },
      created,
    );
    const enterprise = await createPlan({ included_executions: 1_000_000 });
    const enterprisePrice = await mapPrice(enterprise.id);
    // Upgrading with a new billing cycle anchor starts a new period now.
    const newStart = nowSeconds();
    const upgraded = subscriptionEvent(
      'customer.subscription.updated',
      { id: subscription, customer, items: [{ price: enterprisePrice, ...monthFrom(newStart) }] },
      created + 50,
    );
    expect((await deliver(upgraded)).body.outcome).toBe('applied');
    const state = await tenantState(tenant.id);
    expect(state.plan_id).toBe(enterprise.id);
    expect(state.current_period_start.toISOString()).toBe(iso(newStart));
  });

  it('deleted: the tenant’s subscription is canceled', async () => {
    const { tenant, customer, proPrice, subscription } = await linkedTenant();
    const created = nowSeconds() - 100;
    const items = [{ price: proPrice, ...monthFrom(nowSeconds() - DAY) }];
    await deliverCreated({ id: subscription, customer, items }, created);
    const deleted = deletedEvent({ id: subscription, customer, items }, created + 30);
    expect((await deliver(deleted)).body).toEqual({ received: true, outcome: 'applied' });
    expect(await tenantState(tenant.id)).toMatchObject({
      subscription_status: 'canceled',
      stripe_subscription_id: subscription,
    });
  });

  it('a price mapped to no plan: status and period still sync, the plan is kept, the event says why', async () => {
    const { tenant, customer, subscription } = await linkedTenant();
    const unmapped = stripeId('price');
    const event = createdNow(subscription, customer, unmapped);
    await expectDelivered(event, 'applied', tenant.id, liveOn(tenant.plan_id, subscription));
    expect((await recordedEvent(event.id)).detail).toMatch(
      new RegExp(`^unmapped_price: no plan for ${unmapped}`),
    );
  });
});

describe('stripe webhook: delivery at least once, in any order', () => {
  it('a replayed event is a duplicate and changes nothing', async () => {
    const { tenant, customer, proPrice, subscription } = await linkedTenant();
    const event = createdNow(subscription, customer, proPrice);
    expect((await deliver(event)).body.outcome).toBe('applied');
    const before = await tenantState(tenant.id);
    const recorded = await recordedEvent(event.id);

    const replay = await deliver(event);
    expect(replay).toEqual({ status: 200, body: { received: true, outcome: 'duplicate' } });
    expect(await tenantState(tenant.id)).toEqual(before);
    expect(await recordedEvent(event.id)).toEqual(recorded);
  });

  it('the same event delivered concurrently is applied once', async () => {
    const { tenant, customer, proPrice, subscription } = await linkedTenant();
    const event = createdNow(subscription, customer, proPrice);
    const outcomes = (await Promise.all(Array.from({ length: 8 }, () => deliver(event)))).map(
      (r) => r.body.outcome,
    );
    expect(outcomes.filter((o) => o === 'applied')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(7);
    expect((await tenantState(tenant.id)).stripe_subscription_id).toBe(subscription);
  });

  it('an older event arriving after a newer one is stale: the newer state stays', async () => {
    const { tenant, customer, pro, proPrice, subscription } = await linkedTenant();
    const basic = await createPlan({ included_executions: 100 });
    const basicPrice = await mapPrice(basic.id);
    const t0 = nowSeconds() - 600;
    const older = subscriptionEvent(
      'customer.subscription.updated',
      {
        id: subscription,
        customer,
        status: 'past_due',
        items: [{ price: basicPrice, ...monthFrom(t0 - 30 * DAY) }],
      },
      t0,
    );
    const newer = subscriptionEvent(
      'customer.subscription.updated',
      { id: subscription, customer, items: [{ price: proPrice, ...monthFrom(t0) }] },
      t0 + 120,
    );

    expect((await deliver(newer)).body.outcome).toBe('applied');
    expect((await deliver(older)).body).toEqual({ received: true, outcome: 'stale' });

    const state = await tenantState(tenant.id);
    expect(state).toMatchObject({ plan_id: pro.id, subscription_status: 'active' });
    expect(state.current_period_start.toISOString()).toBe(iso(t0));
    expect(state.stripe_synced_at.toISOString()).toBe(iso(newer.created));
    expect(await recordedEvent(older.id)).toMatchObject({ outcome: 'stale', tenant_id: tenant.id });
  });

  it('events for one tenant arriving at once: the newest state wins', async () => {
    const { tenant, customer, proPrice, subscription } = await linkedTenant();
    const t0 = nowSeconds() - 600;
    const statuses = ['incomplete', 'active', 'past_due', 'unpaid', 'active', 'past_due'] as const;
    const events = statuses.map((status, i) =>
      subscriptionEvent(
        'customer.subscription.updated',
        { id: subscription, customer, status, items: [{ price: proPrice, ...monthFrom(t0) }] },
        t0 + i * 10,
      ),
    );
    const outcomes = await Promise.all(events.map((e) => deliver(e)));
    expect(outcomes.every((o) => ['applied', 'stale'].includes(o.body.outcome as string))).toBe(
      true,
    );
    const state = await tenantState(tenant.id);
    expect(state.subscription_status).toBe('past_due');
    expect(state.stripe_synced_at.toISOString()).toBe(iso(t0 + 50));
  });

  it('within the same second, a created event does not undo a deletion', async () => {
    const { tenant, customer, proPrice, subscription } = await linkedTenant();
    const second = nowSeconds() - 30;
    const items = [{ price: proPrice, ...monthFrom(second) }];
    const created = subscriptionEvent(
      'customer.subscription.created',
      { id: subscription, customer, status: 'incomplete', items },
      second,
    );
    const deleted = subscriptionEvent(
      'customer.subscription.deleted',
      { id: subscription, customer, status: 'incomplete_expired', items },
      second,
    );
    expect((await deliver(deleted)).body.outcome).toBe('applied');
    expect((await deliver(created)).body.outcome).toBe('stale');
    expect((await tenantState(tenant.id)).subscription_status).toBe('canceled');
  });

  it('the end of an old subscription does not end the tenant’s new one', async () => {
    const { tenant, customer, pro, proPrice } = await linkedTenant();
    const oldSubscription = stripeId('sub');
    const newSubscription = stripeId('sub');
    const t0 = nowSeconds() - 300;
    const items = [{ price: proPrice, ...monthFrom(t0) }];
    await deliverCreated({ id: newSubscription, customer, items }, t0);
    const oldEnded = deletedEvent({ id: oldSubscription, customer, items }, t0 + 60);
    await expectDelivered(oldEnded, 'superseded', tenant.id, liveOn(pro.id, newSubscription));
  });
});

/**
 * A tenant whose customer has subscription A to starter, 20 days into its period, and has
 * just bought subscription B to pro: the creation event of each, made when it started.
 */
async function starterThenPro() {
  const { tenant, customer, pro, proPrice } = await linkedTenant();
  const starter = await createPlan({ included_executions: 1000 });
  const starterPrice = await mapPrice(starter.id);
  const t0 = nowSeconds() - 600;
  const a: SubscriptionShape = {
    id: stripeId('sub'),
    customer,
    items: [{ price: starterPrice, ...monthFrom(t0 - 20 * DAY) }],
  };
  const b: SubscriptionShape = {
    id: stripeId('sub'),
    customer,
    items: [{ price: proPrice, ...monthFrom(t0) }],
  };
  const aCreated = subscriptionEvent('customer.subscription.created', a, t0 - 20 * DAY);
  const bCreated = subscriptionEvent('customer.subscription.created', b, t0);
  return { tenant, starter, pro, a, b, t0, aCreated, bCreated };
}

describe('stripe webhook: the customer’s old subscription', () => {
  /**
   * A tenant on starter (subscription A) whose customer bought pro (subscription B); A is
   * then set to cancel at its period end (an update, still active) and deleted at it.
   */
  async function upgradeThroughNewSubscription() {
    const { tenant, pro, a: old, b: current, t0, aCreated, bCreated } = await starterThenPro();
    const events = {
      oldCreated: aCreated,
      newCreated: bCreated,
      oldSetToCancel: subscriptionEvent(
        'customer.subscription.updated',
        { ...old, status: 'active' },
        t0 + 60,
      ),
      oldDeleted: deletedEvent(old, t0 + 120),
    };
    return { tenant, events, onPro: liveOn(pro.id, current.id), old, current, t0 };
  }

  it('an update to the old subscription (cancel at period end) does not take the tenant off its new one', async () => {
    const { tenant, events, onPro } = await upgradeThroughNewSubscription();
    expect((await deliver(events.oldCreated)).body.outcome).toBe('applied');
    await expectDelivered(events.newCreated, 'applied', tenant.id, onPro);

    await expectDelivered(events.oldSetToCancel, 'superseded', tenant.id, onPro);
    await expectDelivered(events.oldDeleted, 'superseded', tenant.id, onPro);
    expect(await recordedEvent(events.oldSetToCancel.id)).toMatchObject({
      outcome: 'superseded',
      tenant_id: tenant.id,
    });
  });

  it('in every arrival order the tenant ends on the new subscription', async () => {
    const names = ['oldCreated', 'newCreated', 'oldSetToCancel', 'oldDeleted'] as const;
    const orders = permutations([...names]);
    expect(orders).toHaveLength(24);
    for (const order of orders) {
      const { tenant, events, onPro } = await upgradeThroughNewSubscription();
      for (const name of order) await deliver(events[name]);
      expect(await tenantState(tenant.id), order.join(' → ')).toMatchObject(onPro);
    }
  });

  it('once the new subscription has ended, the tenant is back on the old live one, and its later update applies', async () => {
    const { tenant, events, old, current, t0 } = await upgradeThroughNewSubscription();
    await deliver(events.oldCreated);
    await deliver(events.newCreated);
    const newEnded = deletedEvent(current, t0 + 30);
    const onOld = { subscription_status: 'active', stripe_subscription_id: old.id };
    await expectDelivered(newEnded, 'superseded', tenant.id, onOld);
    await expectDelivered(events.oldSetToCancel, 'applied', tenant.id, onOld);
  });
});

describe('stripe webhook: a newer subscription that was deleted', () => {
  /**
   * A tenant on starter (subscription A, live) whose customer bought pro (subscription B),
   * which was then updated and deleted: Stripe does not deliver B's events in order, and
   * may deliver its deletion before its creation.
   */
  async function newerSubscriptionDeleted() {
    const { tenant, starter, a, b, t0, aCreated, bCreated } = await starterThenPro();
    const events = {
      aCreated,
      bCreated,
      bUpdated: subscriptionEvent('customer.subscription.updated', b, t0 + 60),
      bDeleted: deletedEvent(b, t0 + 120),
    };
    return { tenant, events, onA: liveOn(starter.id, a.id), a, b, t0 };
  }

  it('its deletion arriving before its creation does not move the tenant onto it, and the older one’s later events apply', async () => {
    const { tenant, events, onA, a, b, t0 } = await newerSubscriptionDeleted();
    expect((await deliver(events.aCreated)).body.outcome).toBe('applied');
    await expectDelivered(events.bDeleted, 'superseded', tenant.id, onA);

    await expectDelivered(events.bCreated, 'stale', tenant.id, onA);
    await expectDelivered(events.bUpdated, 'stale', tenant.id, onA);
    const aSetToCancel = subscriptionEvent(
      'customer.subscription.updated',
      { ...a, status: 'active' },
      t0 + 180,
    );
    expect((await deliver(aSetToCancel)).body.outcome).toBe('applied');
    expect((await tenantState(tenant.id)).stripe_synced_at.toISOString()).toBe(
      iso(aSetToCancel.created),
    );
    expect(await recordedEvent(events.bCreated.id)).toMatchObject({
      outcome: 'stale',
      tenant_id: tenant.id,
      detail: expect.stringContaining(
        `subscription ${b.id} holds the state of a customer.subscription.deleted event`,
      ),
    });
  });

  it('in every arrival order the tenant ends on the older live subscription', async () => {
    const names = ['aCreated', 'bCreated', 'bUpdated', 'bDeleted'] as const;
    const orders = permutations([...names]);
    expect(orders).toHaveLength(24);
    for (const order of orders) {
      const { tenant, events, onA, b } = await newerSubscriptionDeleted();
      await deliverNeverLiveOnceDeleted(tenant.id, order, events, { bDeleted: b.id });
      expect(await tenantState(tenant.id), order.join(' → ')).toMatchObject(onA);
    }
  });

  it('once the older one has ended too, in every arrival order the tenant ends canceled', async () => {
    const names = ['aCreated', 'aDeleted', 'bCreated', 'bUpdated', 'bDeleted'] as const;
    const orders = permutations([...names]);
    expect(orders).toHaveLength(120);
    for (const order of orders) {
      const { tenant, events, a, b, t0 } = await newerSubscriptionDeleted();
      const aDeleted = deletedEvent(a, t0 - 60);
      await deliverNeverLiveOnceDeleted(
        tenant.id,
        order,
        { ...events, aDeleted },
        { aDeleted: a.id, bDeleted: b.id },
      );
      expect(await tenantState(tenant.id), order.join(' → ')).toMatchObject({
        subscription_status: 'canceled',
        stripe_subscription_id: b.id,
      });
    }
  });
});

/**
 * Delivers `events` in `order`, and checks after each that the tenant is not live on a
 * subscription whose deletion (`deletions`: the deletion event's name → its subscription)
 * has arrived.
 */
async function deliverNeverLiveOnceDeleted<Name extends string>(
  tenantId: string,
  order: readonly Name[],
  events: Record<Name, Stripe.Event>,
  deletions: Partial<Record<Name, string>>,
) {
  const ended = new Set<string>();
  for (const name of order) {
    await deliver(events[name]);
    const deletedSubscription = deletions[name];
    if (deletedSubscription) ended.add(deletedSubscription);
    const state = await tenantState(tenantId);
    if (ended.has(state.stripe_subscription_id)) {
      expect(state.subscription_status, `${order.join(' → ')}, after ${name}`).toBe('canceled');
    }
  }
}

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

describe('stripe webhook: events it cannot place', () => {
  it('an unknown tenant: 200 to Stripe, recorded for the operator', async () => {
    const subscription = stripeId('sub');
    const customer = stripeId('cus');
    const event = createdNow(subscription, customer, stripeId('price'));
    expect(await deliver(event)).toEqual({
      status: 200,
      body: { received: true, outcome: 'unknown_tenant' },
    });
    const recorded = await recordedEvent(event.id);
    expect(recorded).toMatchObject({ outcome: 'unknown_tenant', tenant_id: null });
    expect(recorded.detail).toContain(subscription);
    expect(recorded.detail).toContain(customer);
  });

  it('an unknown-tenant event resent after the tenant is linked is applied', async () => {
    const tenant = await createTenant();
    const customer = stripeId('cus');
    const subscription = stripeId('sub');
    const event = createdNow(subscription, customer, stripeId('price'), {
      flowmeter_tenant_id: randomUUID(),
    });
    expect((await deliver(event)).body.outcome).toBe('unknown_tenant');
    expect((await recordedEvent(event.id)).detail).toMatch(/names no tenant/);

    await superuser().query('update public.tenants set stripe_customer_id = $2 where id = $1', [
      tenant.id,
      customer,
    ]);
    expect((await deliver(event)).body.outcome).toBe('applied');
    expect((await tenantState(tenant.id)).stripe_subscription_id).toBe(subscription);
    expect(await recordedEvent(event.id)).toMatchObject({
      outcome: 'applied',
      tenant_id: tenant.id,
    });
    expect((await deliver(event)).body.outcome).toBe('duplicate');
  });

  it('other event types: 200 ignored, nothing recorded', async () => {
    const event = {
      id: stripeId('evt'),
      object: 'event',
      api_version: STRIPE_API_VERSION,
      created: nowSeconds(),
      data: {
        object: {
          id: stripeId('in'),
          object: 'invoice',
          customer: stripeId('cus'),
          status: 'paid',
        },
      },
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type: 'invoice.paid',
    } as unknown as Stripe.Event;
    expect(await deliver(event)).toEqual({
      status: 200,
      body: { received: true, outcome: 'ignored' },
    });
    expect(await recordedEvent(event.id)).toBeNull();
  });
});

describe('stripe webhook: signature, contract and failures', () => {
  async function signedFor(tenantId: string) {
    const { customer, proPrice, subscription } = await linkedTenantOn(tenantId);
    return createdNow(subscription, customer, proPrice);
  }

  /** Links an existing tenant to a fresh customer, so a valid event would change it. */
  async function linkedTenantOn(tenantId: string) {
    const customer = stripeId('cus');
    await superuser().query('update public.tenants set stripe_customer_id = $2 where id = $1', [
      tenantId,
      customer,
    ]);
    const proPrice = await mapPrice((await createPlan()).id);
    return { customer, proPrice, subscription: stripeId('sub') };
  }

  async function refusedChangingNothing(
    make: (payload: string) => Request,
    status: number,
    code: string,
  ) {
    const tenant = await createTenant();
    const event = await signedFor(tenant.id);
    const before = await tenantState(tenant.id);
    const response = await handler(make(JSON.stringify(event)));
    expect(response.status).toBe(status);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(code);
    expect(await tenantState(tenant.id)).toEqual(before);
    expect(await recordedEvent(event.id)).toBeNull();
  }

  it('a body changed after signing (one byte): 400, nothing changes', async () => {
    await refusedChangingNothing(
      (payload) =>
        delivery(payload, { tamper: (p) => p.replace('"status":"active"', '"status":"activ3"') }),
      400,
      'invalid_request',
    );
  });

  it('a signature made with another secret: 400, nothing changes', async () => {
    await refusedChangingNothing(
      (payload) => delivery(payload, { secret: `whsec_${randomBytes(24).toString('hex')}` }),
      400,
      'invalid_request',
    );
  });

  it('no Stripe-Signature header: 400, nothing changes', async () => {
    await refusedChangingNothing(
      (payload) => delivery(payload, { signature: null }),
      400,
      'invalid_request',
    );
  });

  it('a malformed Stripe-Signature header: 400, nothing changes', async () => {
    await refusedChangingNothing(
      (payload) => delivery(payload, { signature: 'v1=deadbeef' }),
      400,
      'invalid_request',
    );
  });

  it('a genuine signature older than five minutes (a replay by someone else): 400', async () => {
    await refusedChangingNothing(
      (payload) => delivery(payload, { timestamp: nowSeconds() - 600 }),
      400,
      'invalid_request',
    );
  });

  it('a signed body that is not JSON: 400', async () => {
    const response = await handler(delivery('not json'));
    expect(response.status).toBe(400);
  });

  it('other methods: 405 with Allow', async () => {
    const response = await handler(delivery('', { method: 'GET', signature: null }));
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
  });

  it('a body over 1 MiB: 413 before anything else', async () => {
    const event = createdNow(stripeId('sub'), stripeId('cus'), stripeId('price'), {
      padding: 'x'.repeat(MAX_BODY_BYTES),
    });
    const response = await handler(delivery(JSON.stringify(event)));
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
      'payload_too_large',
    );
    expect(await recordedEvent(event.id)).toBeNull();
  });

  const renamingOutcome = () =>
    faultyDb(
      rpcFetch(async (_call, send) => {
        const { outcome, ...rest } = (await (await send()).json()) as Record<string, unknown>;
        return Response.json({ ...rest, result: outcome });
      }),
    );

  it.each([
    [
      'the database unreachable: 500, so that Stripe retries',
      'customer.subscription.updated',
      unreachableDb,
    ],
    [
      'an answer of apply_stripe_subscription_event with a renamed key: 500, not a half-read outcome',
      'customer.subscription.created',
      renamingOutcome,
    ],
  ] as const)('%s', async (_, type, db) => {
    const failing = createStripeWebhookHandler({
      db: db(),
      stripe,
      webhookSecret,
      log: silentLogger,
    });
    const event = subscriptionEvent(type, {
      id: stripeId('sub'),
      customer: stripeId('cus'),
      items: [{ price: stripeId('price'), ...monthFrom(nowSeconds()) }],
    });
    const response = await failing(delivery(JSON.stringify(event)));
    expect(response.status).toBe(500);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('internal');
  });
});

describe('stripe webhook: SQL API', () => {
  const valid = () => ({
    event_id: stripeId('evt'),
    event_type: 'customer.subscription.updated',
    event_created: new Date().toISOString(),
    subscription_id: stripeId('sub'),
    customer_id: stripeId('cus'),
    status: 'active',
    price_ids: [stripeId('price')],
    period_start: iso(nowSeconds()),
    period_end: iso(nowSeconds() + 30 * DAY),
    subscription_created: iso(nowSeconds() - 60),
  });

  it.each([
    ['an event id without evt_', { event_id: 'ev_1' }, /event_id must be a Stripe event id/],
    ['a subscription id without sub_', { subscription_id: 'si_1' }, /subscription_id must be/],
    ['a customer id without cus_', { customer_id: 'acct_1' }, /customer_id must be/],
    [
      'a status Stripe does not have',
      { status: 'none' },
      /status must be a Stripe subscription status/,
    ],
    [
      'a period ending before it starts',
      { period_end: iso(nowSeconds() - DAY) },
      /period_end .* must be after period_start/,
    ],
    [
      'another kind of event',
      { event_type: 'invoice.paid' },
      /customer\.subscription\.\* event type/,
    ],
  ])('refuses %s with a clear message, recording nothing', async (_, change, message) => {
    const args = { ...valid(), ...change };
    const { error } = await serviceClient().rpc('apply_stripe_subscription_event', args);
    expect(error?.message).toMatch(message);
    expect(await recordedEvent(args.event_id)).toBeNull();
  });

  it('upsert_plan_price maps, remaps, and refuses bad input clearly', async () => {
    const a = await createPlan();
    const b = await createPlan();
    const price = await mapPrice(a.id);
    const { data } = await serviceClient().rpc('upsert_plan_price', {
      stripe_price_id: price,
      plan_id: b.id,
    });
    expect(data).toMatchObject({ stripe_price_id: price, plan_id: b.id });
    const bad = await serviceClient().rpc('upsert_plan_price', {
      stripe_price_id: 'prod_123',
      plan_id: a.id,
    });
    expect(bad.error?.message).toMatch(/must be a Stripe price id/);
    const missing = await serviceClient().rpc('upsert_plan_price', {
      stripe_price_id: stripeId('price'),
      plan_id: 'no-such-plan',
    });
    expect(missing.error?.message).toMatch(/no plan has the id/);
  });

  it('the API roles can neither call the functions nor read the tables', async () => {
    const anon = anonClient();
    expect((await anon.rpc('apply_stripe_subscription_event', valid())).error).not.toBeNull();
    expect(
      (await anon.rpc('upsert_plan_price', { stripe_price_id: stripeId('price'), plan_id: 'x' }))
        .error,
    ).not.toBeNull();
    const { rows } = await superuser().query(`
      select r.rolname, c.relname from pg_class c
      cross join (values ('anon'), ('authenticated')) r(rolname)
      where c.oid in ('public.stripe_events'::regclass, 'public.plan_prices'::regclass,
                      'public.stripe_subscriptions'::regclass)
        and has_table_privilege(r.rolname, c.oid, 'select')`);
    expect(rows).toEqual([]);
  });
});
