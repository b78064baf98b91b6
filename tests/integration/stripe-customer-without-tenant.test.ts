import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { needsAttention } from '../../src/ops/attention.ts';
import { operatorStatusSchema } from '../../src/ops/operator-status.ts';
import { runCliWith } from '../support/cli.ts';
import { waitForLockWait } from '../support/faults.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { healthyStatus } from '../support/healthy-status.ts';
import { inTransaction } from '../support/stack.ts';
import {
  deliver,
  mapPrice,
  monthFrom,
  nowSeconds,
  stripeId,
  subscriptionEvent,
  tenantState,
} from '../support/stripe-events.ts';

/**
 * Class: health that tells the truth about who is billed. A Stripe customer who subscribes
 * to one of the plans while no tenant is linked to them gets no plan applied and none of
 * their usage billed; status names them, with what to do, until a tenant holds their
 * subscription.
 */

/**
 * operator_status()'s Stripe events as they read when the only events recorded are those of
 * `customers`: other test files record events in the same database meanwhile. Read in one
 * repeatable-read snapshot with every other customer's events removed, then rolled back.
 */
const stripeEventsOf = (customers: string[]) =>
  inTransaction(
    async (client) => {
      await client.query(
        'delete from public.stripe_events where customer_id is null or customer_id <> all ($1)',
        [customers],
      );
      const { rows } = await client.query('select public.operator_status() as status');
      return operatorStatusSchema.parse(rows[0].status).stripe_events;
    },
    { begin: 'begin isolation level repeatable read' },
  );

const attentionOf = (events: Awaited<ReturnType<typeof stripeEventsOf>>) =>
  needsAttention({ ...healthyStatus, stripe_events: events });

/** A plan mapped to a Stripe price, and the creation of an unknown customer's subscription to it. */
async function unknownCustomerOnPlan() {
  const plan = await createPlan({ included_executions: 1000 });
  const price = await mapPrice(plan.id);
  const customer = stripeId('cus');
  const subscription = {
    id: stripeId('sub'),
    customer,
    items: [{ price, ...monthFrom(nowSeconds() - 60) }],
  };
  const created = subscriptionEvent(
    'customer.subscription.created',
    subscription,
    nowSeconds() - 60,
  );
  return { plan, price, customer, subscription, created };
}

const cli = (args: string[]) => runCliWith(args);

describe('a Stripe customer on a plan with no tenant', () => {
  it('is named by status until a tenant is linked and its event applies', async () => {
    const { plan, customer, created } = await unknownCustomerOnPlan();
    expect((await deliver(created)).body.outcome).toBe('unknown_tenant');

    const events = await stripeEventsOf([customer]);
    expect(events).toMatchObject({
      customers_without_tenant: 1,
      last_customer_without_tenant: {
        customer_id: customer,
        plan_id: plan.id,
        event_id: created.id,
      },
    });
    const finding = attentionOf(events).find((f) => f.includes(customer));
    expect(finding).toMatch(
      new RegExp(
        `subscribed to a plan \\(${plan.id}\\) with no tenant linked.*flowmeter tenants link <tenant> --stripe-customer ${customer}.*resend the subscription event \\(${created.id}\\)`,
      ),
    );

    // Linked, but the event not yet resent: the tenant still holds none of its state.
    const tenant = await createTenant();
    const linked = await cli(['tenants', 'link', tenant.id, '--stripe-customer', customer]);
    expect(linked.code).toBe(EXIT.ok);
    expect(linked.out).toContain(`is linked to Stripe customer ${customer}`);
    expect((await stripeEventsOf([customer])).customers_without_tenant).toBe(1);

    // Resent from the Dashboard: it applies, and nobody is left unbilled.
    expect((await deliver(created)).body.outcome).toBe('applied');
    expect(await tenantState(tenant.id)).toMatchObject({
      plan_id: plan.id,
      stripe_customer_id: customer,
    });
    const after = await stripeEventsOf([customer]);
    expect(after).toMatchObject({
      customers_without_tenant: 0,
      last_customer_without_tenant: null,
    });
    expect(attentionOf(after)).toEqual([]);
  });

  it('is not named once the subscription has ended, nor when its price maps to no plan', async () => {
    const ended = await unknownCustomerOnPlan();
    await deliver(ended.created);
    const deleted = subscriptionEvent(
      'customer.subscription.deleted',
      { ...ended.subscription, status: 'canceled' },
      nowSeconds() - 30,
    );
    expect((await deliver(deleted)).body.outcome).toBe('unknown_tenant');

    const unmappedCustomer = stripeId('cus');
    const unmapped = subscriptionEvent('customer.subscription.created', {
      id: stripeId('sub'),
      customer: unmappedCustomer,
      items: [{ price: stripeId('price'), ...monthFrom(nowSeconds()) }],
    });
    expect((await deliver(unmapped)).body.outcome).toBe('unknown_tenant');

    const events = await stripeEventsOf([ended.customer, unmappedCustomer]);
    expect(events).toMatchObject({
      customers_without_tenant: 0,
      last_customer_without_tenant: null,
    });
  });

  it('counts each customer once, however many of their events found no tenant', async () => {
    const a = await unknownCustomerOnPlan();
    const b = await unknownCustomerOnPlan();
    await deliver(a.created);
    await deliver(
      subscriptionEvent('customer.subscription.updated', a.subscription, nowSeconds() - 10),
    );
    await deliver(b.created);
    const events = await stripeEventsOf([a.customer, b.customer]);
    expect(events.customers_without_tenant).toBe(2);
    expect(attentionOf(events).join('\n')).toMatch(/and 1 other customer subscribed/);
  });
});

describe('flowmeter tenants link', () => {
  it('refuses a customer another tenant holds, and a tenant linked to another customer, changing nothing', async () => {
    const [first, second] = [await createTenant(), await createTenant()];
    const customer = stripeId('cus');
    expect((await cli(['tenants', 'link', first.id, '--stripe-customer', customer])).code).toBe(
      EXIT.ok,
    );
    const again = await cli(['tenants', 'link', first.id, '--stripe-customer', customer]);
    expect(again.code).toBe(EXIT.ok);

    const taken = await cli(['tenants', 'link', second.id, '--stripe-customer', customer]);
    expect(taken.code).toBe(EXIT.usage);
    expect(taken.err).toMatch(
      new RegExp(`Stripe customer ${customer} is already linked to tenant ${first.id}`),
    );
    const other = stripeId('cus');
    const relink = await cli(['tenants', 'link', first.id, '--stripe-customer', other]);
    expect(relink.code).toBe(EXIT.usage);
    expect(relink.err).toMatch(new RegExp(`is linked to Stripe customer ${customer} already`));
    expect((await tenantState(first.id)).stripe_customer_id).toBe(customer);
    expect((await tenantState(second.id)).stripe_customer_id).toBeNull();

    const malformed = await cli(['tenants', 'link', first.id, '--stripe-customer', 'acme']);
    expect(malformed.code).toBe(EXIT.usage);
    expect(malformed.err).toMatch(/--stripe-customer.*a Stripe customer id \(cus_…\)/);
    const unknown = await cli(['tenants', 'link', 'no-such-tenant', '--stripe-customer', other]);
    expect(unknown.code).toBe(EXIT.usage);
  });

  /**
   * Links a new tenant to a new customer in a transaction held open while `args` (a CLI
   * command given the customer) runs and waits for it (its query mentions `queryLike`);
   * then commits, and expects the command refused, naming the tenant that got the customer.
   */
  async function refusedWhileLinked(args: (customer: string) => string[], queryLike: string) {
    const first = await createTenant();
    const customer = stripeId('cus');
    await inTransaction(async (held) => {
      await held.query('select public.link_stripe_customer($1, $2)', [first.id, customer]);
      const racing = cli(args(customer));
      await waitForLockWait({ queryLike });
      await held.query('commit');
      const refused = await racing;
      expect(refused.code).toBe(EXIT.usage);
      expect(refused.err).toMatch(
        new RegExp(`Stripe customer ${customer} is already linked to tenant ${first.id}`),
      );
    });
    return { first, customer };
  }

  it('two links of one customer at once: one tenant gets it, the other is refused naming it', async () => {
    const second = await createTenant();
    const { first, customer } = await refusedWhileLinked(
      (customer) => ['tenants', 'link', second.id, '--stripe-customer', customer],
      'link_stripe_customer',
    );
    expect((await tenantState(first.id)).stripe_customer_id).toBe(customer);
    expect((await tenantState(second.id)).stripe_customer_id).toBeNull();
  });

  it('a new tenant given a customer being linked meanwhile is refused the same way', async () => {
    const plan = await createPlan();
    await refusedWhileLinked(
      (customer) => [
        'tenants',
        'add',
        'Racing Co',
        '--plan',
        plan.id,
        '--stripe-customer',
        customer,
      ],
      'add_tenant',
    );
  });
});
