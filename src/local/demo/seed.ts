import { randomBytes } from 'node:crypto';
import type { Keyring } from '../../crypto/keyring.ts';
import type { Db } from '../../db/client.ts';
import { sealApiKey } from '../../n8n/api-key.ts';
import type { DemoN8n } from './n8n-server.ts';
import type { DemoTenantTraffic } from './runner.ts';

const PLANS = [
  {
    id: 'demo-free',
    name: 'Free (demo)',
    limit_policy: 'hard_limit',
    included_executions: 30,
    recurring_amount: 0,
  },
  {
    id: 'demo-pro',
    name: 'Pro (demo)',
    limit_policy: 'overage',
    included_executions: 60,
    overage_unit_amount: 0.2,
    recurring_amount: 4900,
    stripe_price_id: 'price_demoPro',
  },
  {
    id: 'demo-scale',
    name: 'Scale (demo)',
    limit_policy: 'unlimited',
    included_executions: null,
    recurring_amount: 29900,
    stripe_price_id: 'price_demoScale',
  },
] as const;

const TENANTS = [
  {
    name: 'Acme (free plan)',
    ref: 'demo-acme',
    plan: 'demo-free',
    perMinute: 12,
    customer: null,
    subscription: null,
  },
  {
    name: 'Globex (pro plan)',
    ref: 'demo-globex',
    plan: 'demo-pro',
    perMinute: 30,
    customer: 'cus_demoGlobex',
    subscription: { id: 'sub_demoGlobex', price: 'price_demoPro' },
  },
  {
    name: 'Initech (unlimited)',
    ref: 'demo-initech',
    plan: 'demo-scale',
    perMinute: 6,
    customer: 'cus_demoInitech',
    subscription: { id: 'sub_demoInitech', price: 'price_demoScale' },
  },
] as const;

/**
 * The paying demo tenants' subscriptions, as the Stripe webhook would apply them: active,
 * over this UTC calendar month (the period a tenant without a subscription has, so usage
 * stays where it was). One event per tenant and month: a restart within the month is a
 * duplicate that changes nothing, the first start of a month moves the period on.
 */
async function subscribe(
  db: Db,
  tenantId: string,
  tenant: (typeof TENANTS)[number],
  now: Date,
): Promise<void> {
  if (!tenant.subscription || !tenant.customer) return;
  const periodStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const periodEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  const month = periodStart.toISOString().slice(0, 7).replace('-', '');
  check(
    `demo subscription for ${tenant.ref}`,
    await db.rpc('apply_stripe_subscription_event', {
      event_id: `evt_demo_${tenant.subscription.id}_${month}`,
      event_type: 'customer.subscription.updated',
      event_created: periodStart.toISOString(),
      subscription_id: tenant.subscription.id,
      subscription_created: periodStart.toISOString(),
      customer_id: tenant.customer,
      status: 'active',
      price_ids: [tenant.subscription.price],
      period_start: periodStart.toISOString(),
      period_end: periodEnd.toISOString(),
      tenant_hint: tenantId,
    }),
  );
}

/** The data of a call, or an error naming what the demo was setting up. */
function check<T>(
  what: string,
  response: { data: T | null; error: { message: string } | null },
): T {
  if (response.error || response.data === null) {
    throw new Error(`${what}: ${response.error?.message ?? 'no answer'}`);
  }
  return response.data;
}

/**
 * The demo's plans and tenants (created once, kept in the local database) and a fresh n8n
 * source per tenant on every start: the demo n8n lives in memory and numbers its
 * executions from 1 again, so the previous start's sources are disabled.
 */
export async function seedDemo(options: {
  db: Db;
  keyring: Keyring;
  n8n: DemoN8n;
}): Promise<DemoTenantTraffic[]> {
  const { db } = options;
  for (const plan of PLANS) {
    check(
      `demo plan ${plan.id}`,
      await db.rpc('set_plan', {
        ...plan,
        included_executions: plan.included_executions ?? undefined,
      }),
    );
  }
  // The reporter needs a metered plan and a Stripe customer to have something to report.
  check(
    'demo plan demo-pro',
    await db.rpc('set_plan', { id: 'demo-pro', stripe_meter_event_name: 'n8n_executions' }),
  );
  // The previous start's demo sources point at instances that no longer exist.
  const demoOrigin = `${new URL(options.n8n.url).origin}/`;
  for (const source of check('demo sources', await db.rpc('list_n8n_sources', {}))) {
    if (source.enabled && source.base_url.startsWith(demoOrigin)) {
      check(
        `disabling demo source ${source.id}`,
        await db.rpc('set_n8n_source_enabled', { source_id: source.id, enabled: false }),
      );
    }
  }
  const traffic: DemoTenantTraffic[] = [];
  const nonce = randomBytes(3).toString('hex');
  const existing = new Map(
    check('demo tenants', await db.rpc('list_tenants', { tenants: TENANTS.map((t) => t.ref) })).map(
      (t) => [t.external_ref, t.id],
    ),
  );
  for (const tenant of TENANTS) {
    const tenantId =
      existing.get(tenant.ref) ??
      check(
        `demo tenant ${tenant.ref}`,
        await db.rpc('add_tenant', {
          name: tenant.name,
          plan_id: tenant.plan,
          external_ref: tenant.ref,
          ...(tenant.customer ? { stripe_customer_id: tenant.customer } : {}),
        }),
      ).id;
    await subscribe(db, tenantId, tenant, new Date());
    const apiKey = `demo_${randomBytes(12).toString('hex')}`;
    const n8n = options.n8n.instance(`${tenant.ref}-${nonce}`, apiKey);
    check(
      `demo source for ${tenant.ref}`,
      await db.rpc('add_n8n_source', {
        tenant_id: tenantId,
        name: `${tenant.name} n8n (demo)`,
        base_url: `${options.n8n.url}/${tenant.ref}-${nonce}`,
        api_key_ciphertext: sealApiKey(options.keyring, tenantId, apiKey),
      }),
    );
    traffic.push({
      name: tenant.name,
      externalRef: tenant.ref,
      n8n,
      runsPerMinute: tenant.perMinute,
      workflows: ['wfOrders', 'wfCrmSync', 'wfSlackDigest'],
    });
  }
  return traffic;
}
