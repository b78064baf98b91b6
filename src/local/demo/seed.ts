import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Keyring } from '../../crypto/keyring.ts';
import type { Db } from '../../db/client.ts';
import { sealApiKey } from '../../n8n/api-key.ts';
import type { DemoN8n } from './n8n-server.ts';
import type { DemoTenantTraffic } from './runner.ts';

/**
 * The demo's plans and tenants (created once, kept in the local database) and a fresh n8n
 * source per tenant on every start: the demo n8n lives in memory and numbers its
 * executions from 1 again, so the previous start's sources are disabled.
 */
const PLANS = [
  { id: 'demo-free', name: 'Free (demo)', limit_policy: 'hard_limit', included_executions: 30 },
  {
    id: 'demo-pro',
    name: 'Pro (demo)',
    limit_policy: 'overage',
    included_executions: 60,
    overage_unit_amount: 0.2,
  },
  { id: 'demo-scale', name: 'Scale (demo)', limit_policy: 'unlimited', included_executions: null },
] as const;

const TENANTS = [
  { name: 'Acme (free plan)', ref: 'demo-acme', plan: 'demo-free', perMinute: 12, customer: null },
  {
    name: 'Globex (pro plan)',
    ref: 'demo-globex',
    plan: 'demo-pro',
    perMinute: 30,
    customer: 'cus_demoGlobex',
  },
  {
    name: 'Initech (unlimited)',
    ref: 'demo-initech',
    plan: 'demo-scale',
    perMinute: 6,
    customer: null,
  },
] as const;

export async function seedDemo(options: {
  db: Db;
  databaseUrl: string;
  keyring: Keyring;
  n8n: DemoN8n;
}): Promise<DemoTenantTraffic[]> {
  const { db } = options;
  for (const plan of PLANS) {
    const { error } = await db.rpc('upsert_plan', {
      ...plan,
      included_executions: plan.included_executions ?? undefined,
    });
    if (error) throw new Error(`demo plan ${plan.id}: ${error.message}`);
  }
  const admin = new pg.Client({ connectionString: options.databaseUrl });
  await admin.connect();
  try {
    // The reporter needs a metered plan and a Stripe customer to have something to report.
    await admin.query(
      "update public.plans set stripe_meter_event_name = 'n8n_executions' where id = 'demo-pro'",
    );
    await admin.query(`update public.n8n_sources set enabled = false where base_url like $1`, [
      `${new URL(options.n8n.url).origin}/%`,
    ]);
    const traffic: DemoTenantTraffic[] = [];
    const nonce = randomBytes(3).toString('hex');
    for (const tenant of TENANTS) {
      const existing = await admin.query<{ id: string }>(
        'select id from public.tenants where external_ref = $1',
        [tenant.ref],
      );
      let tenantId = existing.rows[0]?.id;
      if (!tenantId) {
        const { data, error } = await db.rpc('create_tenant', {
          name: tenant.name,
          plan_id: tenant.plan,
          external_ref: tenant.ref,
        });
        if (error || !data) throw new Error(`demo tenant ${tenant.ref}: ${error?.message}`);
        tenantId = data.id;
      }
      if (tenant.customer) {
        await admin.query(
          'update public.tenants set stripe_customer_id = $2 where id = $1 and stripe_customer_id is null',
          [tenantId, tenant.customer],
        );
      }
      const apiKey = `demo_${randomBytes(12).toString('hex')}`;
      const n8n = options.n8n.instance(`${tenant.ref}-${nonce}`, apiKey);
      const { error } = await db.rpc('add_n8n_source', {
        tenant_id: tenantId,
        name: `${tenant.name} n8n (demo)`,
        base_url: `${options.n8n.url}/${tenant.ref}-${nonce}`,
        api_key_ciphertext: sealApiKey(options.keyring, tenantId, apiKey),
      });
      if (error) throw new Error(`demo source for ${tenant.ref}: ${error.message}`);
      traffic.push({
        name: tenant.name,
        externalRef: tenant.ref,
        n8n,
        runsPerMinute: tenant.perMinute,
        workflows: ['wfOrders', 'wfCrmSync', 'wfSlackDigest'],
      });
    }
    return traffic;
  } finally {
    await admin.end();
  }
}
