import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { needsAttention } from '../../src/ops/attention.ts';
import { operatorStatusSchema } from '../../src/ops/operator-status.ts';
import { createTenant } from '../support/fixtures.ts';
import { serviceClient, superuser } from '../support/stack.ts';
import {
  deliver,
  delivery,
  handler,
  linkedTenant,
  monthFrom,
  nowSeconds,
  recordedEvent,
  stripeId,
  subscriptionEvent,
  tenantState,
} from '../support/stripe-events.ts';

/**
 * Class: Stripe events that are correctly signed but cannot be applied — malformed, of a
 * subscription status Stripe may add later, or with data the database refuses. None is a
 * 500 (Stripe would retry it for days, to the same end): each is recorded as rejected with
 * its reason, answered 200, and shown to the operator; an event without an id to record
 * it by is a 400. Later events still sync.
 */

type Json = Record<string, unknown>;

/** A valid created event for a linked tenant, as JSON to break. */
async function validEvent() {
  const linked = await linkedTenant();
  const event = subscriptionEvent('customer.subscription.created', {
    id: linked.subscription,
    customer: linked.customer,
    items: [{ price: linked.proPrice, ...monthFrom(nowSeconds()) }],
  });
  return { ...linked, event: JSON.parse(JSON.stringify(event)) as Json };
}

const subscriptionOf = (event: Json) => (event.data as Json).object as Json;
const firstItemOf = (event: Json) =>
  ((subscriptionOf(event).items as Json).data as Json[])[0] as Json;

async function deliverJson(event: Json) {
  const response = await handler(delivery(JSON.stringify(event)));
  return { status: response.status, body: (await response.json()) as Json };
}

describe('a signed event that cannot be applied is rejected, never a 500', () => {
  it.each<[string, (event: Json) => void, RegExp]>([
    ['no items', (e) => Object.assign(subscriptionOf(e).items as Json, { data: [] }), /no items/],
    ['an item without a price', (e) => delete firstItemOf(e).price, /price/],
    [
      'a status Stripe may add later',
      (e) => Object.assign(subscriptionOf(e), { status: 'suspended' }),
      /Unknown subscription status "suspended"/,
    ],
    ['a created time no date can hold', (e) => Object.assign(e, { created: 1e16 }), /created/],
    [
      'a period start as text',
      (e) => Object.assign(firstItemOf(e), { current_period_start: 'yesterday' }),
      /current_period_start/,
    ],
    [
      'a customer that is no Stripe customer id',
      (e) => Object.assign(subscriptionOf(e), { customer: 'acct_1' }),
      /customer/,
    ],
    ['no subscription at all', (e) => Object.assign(e.data as Json, { object: null }), /object/],
    ['a type that is not text', (e) => Object.assign(e, { type: 42 }), /type/],
    [
      // zod's length checks read this `length` before its type check stops them.
      'a status whose length no check can read',
      (e) => Object.assign(subscriptionOf(e), { status: { length: { toString: '' } } }),
      /data\.object\.status: holds a value of the wrong type/,
    ],
  ])('%s: 200 rejected with the reason; the tenant is unchanged', async (_, breakIt, reason) => {
    const { tenant, event } = await validEvent();
    breakIt(event);
    const before = await tenantState(tenant.id);
    const { status, body } = await deliverJson(event);
    expect(status).toBe(200);
    expect(body).toMatchObject({ received: true, outcome: 'rejected' });
    expect(body.reason).toMatch(reason);
    expect(await tenantState(tenant.id)).toEqual(before);
    expect(await recordedEvent(event.id as string)).toMatchObject({
      outcome: 'rejected',
      detail: expect.stringMatching(reason),
    });
  });

  it('data the database refuses (a customer linked to another tenant): rejected, and applied once resent after the fix', async () => {
    const { tenant, customer, event } = await validEvent();
    // Another tenant holds the subscription id the event carries.
    const other = await createTenant();
    const subscription = subscriptionOf(event).id as string;
    await superuser().query('update public.tenants set stripe_subscription_id = $2 where id = $1', [
      other.id,
      subscription,
    ]);
    await superuser().query('update public.tenants set stripe_customer_id = $2 where id = $1', [
      tenant.id,
      customer,
    ]);
    const first = await deliverJson(event);
    expect(first).toMatchObject({ status: 200, body: { outcome: 'rejected' } });
    expect(first.body.reason).toMatch(/already linked to another tenant/);

    // The operator unlinks the other tenant, then resends the event from the Dashboard.
    await superuser().query(
      'update public.tenants set stripe_subscription_id = null where id = $1',
      [other.id],
    );
    const resent = await deliverJson(event);
    expect(resent).toMatchObject({ status: 200, body: { outcome: 'applied' } });
    expect(await recordedEvent(event.id as string)).toMatchObject({ outcome: 'applied' });
    expect((await tenantState(tenant.id)).stripe_subscription_id).toBe(subscription);
  });

  it('a status Stripe adds later does not break the sync: the next event with a known status applies', async () => {
    const { tenant, event } = await validEvent();
    const created = event.created as number;
    Object.assign(subscriptionOf(event), { status: 'suspended' });
    expect((await deliverJson(event)).body.outcome).toBe('rejected');
    const later = subscriptionEvent(
      'customer.subscription.updated',
      {
        id: subscriptionOf(event).id as string,
        customer: subscriptionOf(event).customer as string,
        status: 'past_due',
        items: [
          {
            price: (firstItemOf(event).price as Json).id as string,
            ...monthFrom(nowSeconds()),
          },
        ],
      },
      created + 1,
    );
    expect((await deliver(later)).body.outcome).toBe('applied');
    expect((await tenantState(tenant.id)).subscription_status).toBe('past_due');
  });

  it.each([
    ['a JSON array', '[]'],
    ['a number', '42'],
    ['null', 'null'],
    ['an object without an id', '{"type":"customer.subscription.updated"}'],
    ['an id that is no event id', '{"id":"nope","type":"customer.subscription.updated"}'],
  ])('%s with a valid signature: 400, nothing recorded', async (_, payload) => {
    const response = await handler(delivery(payload));
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
      'invalid_request',
    );
  });

  it('any change to a valid event’s fields answers 200 or 400, never a 500 (property)', async () => {
    const { event } = await validEvent();
    const paths = [
      ['id'],
      ['type'],
      ['created'],
      ['data'],
      ['data', 'object'],
      ['data', 'object', 'id'],
      ['data', 'object', 'customer'],
      ['data', 'object', 'status'],
      ['data', 'object', 'trial_end'],
      ['data', 'object', 'metadata'],
      ['data', 'object', 'items'],
      ['data', 'object', 'items', 'data'],
    ];
    const hostile = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.boolean(),
      fc.double(),
      fc.integer(),
      fc.string(),
      fc.constantFrom('\u0000', '\ud800', 'evt_', 'sub_x\u0000', 'x'.repeat(5000), -1, 1e300),
      fc.array(fc.anything(), { maxLength: 3 }),
      fc.dictionary(fc.string(), fc.anything(), { maxKeys: 3 }),
      fc.constant({ length: { toString: '' } }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom(...paths), hostile), { minLength: 1, maxLength: 3 }),
        async (changes) => {
          const copy = structuredClone(event);
          // Fresh id per case so that no case is a replay of another.
          copy.id = stripeId('evt');
          for (const [path, value] of changes) {
            let target: unknown = copy;
            for (const key of path.slice(0, -1)) {
              target = target && typeof target === 'object' ? (target as Json)[key] : undefined;
            }
            if (target && typeof target === 'object') {
              (target as Json)[path.at(-1) as string] = value;
            }
          }
          const response = await handler(delivery(JSON.stringify(copy)));
          expect([200, 400]).toContain(response.status);
        },
      ),
      { numRuns: 60, seed: 1301 },
    );
  });
});

describe('rejected events reach the operator', () => {
  it('operator_status counts them and the attention line says what to do', async () => {
    const { event } = await validEvent();
    Object.assign(subscriptionOf(event), { status: 'suspended' });
    await deliverJson(event);
    const { data, error } = await serviceClient().rpc('operator_status', {});
    expect(error).toBeNull();
    const status = operatorStatusSchema.parse(data);
    expect(status.stripe_events.rejected).toBeGreaterThanOrEqual(1);
    expect(needsAttention(status)).toContainEqual(
      expect.stringMatching(
        /Stripe webhook events? rejected.*resend the event from the Stripe Dashboard/,
      ),
    );
  });
});
