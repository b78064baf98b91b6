import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { cli, linkedTenantArgs, meteredPlanArgs } from '../support/cli.ts';
import { createTenant } from '../support/fixtures.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';
import {
  deliver,
  linkedTenant,
  monthFrom,
  nowSeconds,
  recordedEvent,
  subscriptionEvent,
  tenantState,
} from '../support/stripe-events.ts';

/**
 * Class: Stripe test-mode ids. Stripe's test-mode objects carry `_test_` in their ids
 * (`mtr_test_61Qf…`, `evt_test_…`); every place an id is checked takes the prefix followed
 * by letters, digits and underscores, and still refuses another prefix.
 */
const METER = 'mtr_test_61QfGh4uVnB8kRz2d41IqPCzPnxqqSVc';
describe('Stripe test-mode ids', () => {
  it('the CLI takes a test-mode meter id and customer id, and the database stores them', async () => {
    const planId = uniqueId('plan');
    const plan = await cli([...meteredPlanArgs(planId, METER), '--json']);
    expect(plan.code).toBe(EXIT.ok);
    expect(JSON.parse(plan.out)).toMatchObject({ stripe_meter_id: METER });

    const customer = 'cus_test_Qf4uVnB8kRz2';
    const tenant = await cli(linkedTenantArgs(uniqueId('Test mode'), planId, customer));
    expect(tenant.code).toBe(EXIT.ok);
    expect(JSON.parse(tenant.out)).toMatchObject({ stripe_customer_id: customer });
  });

  it('the CLI still refuses another prefix', async () => {
    const refused = await cli([
      'plans',
      'set',
      uniqueId('plan'),
      '--name',
      'X',
      '--included',
      '5',
      '--meter-id',
      'meter_test_1',
    ]);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.err).toMatch(/Stripe meter id \(mtr_…\)/);
  });

  it('the SQL checks take test-mode ids and refuse other prefixes', async () => {
    const planId = uniqueId('plan');
    const { error } = await serviceClient().rpc('set_plan', {
      id: planId,
      name: 'SQL',
      included_executions: 10,
      stripe_meter_id: METER,
    });
    expect(error).toBeNull();
    await expect(
      superuser().query('update public.plans set stripe_meter_id = $2 where id = $1', [
        planId,
        'meter_test_1',
      ]),
    ).rejects.toThrow(/plans_stripe_meter_id_format/);
    const tenant = await createTenant(planId);
    await superuser().query('update public.tenants set stripe_subscription_id = $2 where id = $1', [
      tenant.id,
      'sub_test_1QfGh4',
    ]);
    await expect(
      superuser().query('update public.tenants set stripe_subscription_id = $2 where id = $1', [
        tenant.id,
        'si_test_1',
      ]),
    ).rejects.toThrow(/tenants_stripe_subscription_id_format/);
  });

  it('a webhook event with test-mode ids is applied', async () => {
    const { tenant, customer, proPrice } = await linkedTenant();
    const subscription = 'sub_test_1QfGh4uVnB8kRz2';
    const event = subscriptionEvent(
      'customer.subscription.created',
      { id: subscription, customer, items: [{ price: proPrice, ...monthFrom(nowSeconds()) }] },
      nowSeconds(),
      `evt_test_${uniqueId('e').replace(/-/g, '')}`,
    );
    const { status, body } = await deliver(event);
    expect(status).toBe(200);
    expect(body.outcome).toBe('applied');
    expect(await recordedEvent(event.id)).toMatchObject({ outcome: 'applied' });
    expect((await tenantState(tenant.id)).stripe_subscription_id).toBe(subscription);
  });
});
