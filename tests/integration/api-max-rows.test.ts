import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fullListNote } from '../../src/cli/list-command.ts';
import { keepLeases, type Lease } from '../../src/collector/leases.ts';
import { parseKeyring } from '../../src/crypto/keyring.ts';
import { API_MAX_ROWS } from '../../src/db/api-max-rows.ts';
import { sealApiKey } from '../../src/n8n/api-key.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { resealSourceKeys } from '../../src/sources/reseal-source-keys.ts';
import { runCliWith } from '../support/cli.ts';
import { setPlan } from '../support/fixtures.ts';
import { useOwnStack } from '../support/own-stack.ts';
import { uniqueId } from '../support/stack.ts';

/**
 * Class: more rows than one call hands over. A Supabase project's API answers at most its
 * Max rows (1,000) of a set-returning function and drops the rest without an error, and the
 * local stack does the same: a function that claims or pages rows never takes more, and a
 * caller that needs them all walks the pages. On a stack of its own: a thousand tenants or
 * sources would show in every other test file's lists.
 */
const own = useOwnStack();

/** A tenant of this file's stack on a plan of its own. */
async function tenantOnOwnStack() {
  const plan = await setPlan(
    {
      id: uniqueId('plan'),
      name: 'Test plan',
      included_executions: 10,
      limit_policy: 'hard_limit',
    },
    own.db,
  );
  const { data, error } = await own.db.rpc('add_tenant', {
    name: uniqueId('tenant'),
    plan_id: plan.id,
    external_ref: uniqueId('ext'),
  });
  if (error || !data) throw new Error(`add_tenant: ${error?.message}`);
  return data;
}

/**
 * Set-returning functions whose rows an argument bounds below the limit, or that have few
 * rows by nature, each with why. Every other one must take at most private.api_max_rows()
 * (directly or through private.page_size).
 */
const BOUNDED_OTHERWISE: Record<string, string> = {
  renew_collector_leases: 'a row per lease passed: a run holds at most one claim (≤ 1,000)',
  resume_collector_sources: 'a row per lease handed over: a slice (MAX_SLICE_SOURCES, 1,000)',
  reconcile_counters: 'inserts every finding; its answer only lists them for the log',
  maintain_execution_partitions: 'a row per partition made or dropped: a few a month',
  tenant_usage_summary: 'a row per tenant the caller belongs to, or the one asked for',
  tenant_usage_daily: 'a row per day, at most 400 a call',
  tenant_invoice_preview: "one tenant's current period",
  export_usage_size: 'one row of totals',
};

describe('what one call hands over', () => {
  it('is the same number in SQL and TypeScript: 1,000, Supabase’s default Max rows', async () => {
    const { rows } = await own.pool.query('select private.api_max_rows() as n');
    expect(rows[0].n).toBe(API_MAX_ROWS);
    expect(API_MAX_ROWS).toBe(1000);
  });

  it('bounds every set-returning function of the API', async () => {
    const { rows } = await own.pool.query<{ name: string; body: string }>(
      `select p.proname as name, p.prosrc as body
       from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
       where n.nspname = 'public' and p.proretset
       order by 1`,
    );
    expect(rows.length).toBeGreaterThan(20);
    const unbounded = rows
      // claim_deliveries (the alert and webhook outboxes' claim) takes at most api_max_rows.
      .filter((r) => !/private\.(api_max_rows|page_size|claim_deliveries)\(/.test(r.body))
      .map((r) => r.name)
      .filter((name) => !(name in BOUNDED_OTHERWISE));
    expect(unbounded).toEqual([]);
    // Each exception names a function that exists and really is set-returning.
    const names = new Set(rows.map((r) => r.name));
    expect(Object.keys(BOUNDED_OTHERWISE).filter((n) => !names.has(n))).toEqual([]);
  });

  it('re-encrypts the key of every source, past the first 1,000', async () => {
    const tenant = await tenantOnOwnStack();
    const old = parseKeyring(`k8:${randomBytes(32).toString('base64')}`);
    const sealed = sealApiKey(old, tenant.id, 'n8n_api_key');
    const count = API_MAX_ROWS + 5;
    await own.pool.query(
      `insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext)
       select $1, 'source ' || i, 'https://n8n-' || i || '.example.test', $2
       from generate_series(1, $3) i`,
      [tenant.id, sealed, count],
    );
    const rotated = parseKeyring(
      `k9:${randomBytes(32).toString('base64')},k8:${old.keys.get('k8')?.toString('base64')}`,
    );
    const summary = await resealSourceKeys({
      db: own.db,
      keyring: rotated,
      tenantIds: [tenant.id],
    });
    expect(summary).toMatchObject({ ok: true, value: { sources: count, resealed: count } });
    const { rows } = await own.pool.query(
      `select count(*)::int as n from public.n8n_sources
       where tenant_id = $1 and api_key_ciphertext like 'fm1.k9.%'`,
      [tenant.id],
    );
    expect(rows[0].n).toBe(count);
  });

  it('a run holding more leases than one call answers keeps every one of them', async () => {
    const tenant = await tenantOnOwnStack();
    const count = API_MAX_ROWS + 5;
    const { rows: sources } = await own.pool.query<{ id: string }>(
      `insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext)
       select $1, 'source ' || i, 'https://lease-' || i || '.example.test', 'fm1.k1.x'
       from generate_series(1, $2) i returning id`,
      [tenant.id, count],
    );
    const ids = sources.map((r) => r.id);
    const claimed: Lease[] = [];
    for (let i = 0; i < ids.length; i += API_MAX_ROWS) {
      const { data, error } = await own.db.rpc('claim_collector_sources', {
        lease_seconds: 12,
        max_sources: API_MAX_ROWS,
        source_ids: ids.slice(i, i + API_MAX_ROWS),
        ignore_schedule: true,
      });
      expect(error).toBeNull();
      claimed.push(...((data ?? []) as Lease[]));
    }
    expect(claimed).toHaveLength(count);
    const expiry = async () =>
      (
        await own.pool.query(
          `select min(lease_expires_at) as at from public.collector_source_state
           where source_id = any($1)`,
          [ids],
        )
      ).rows[0].at as Date;
    const before = await expiry();
    // Renewed every 2 s (a sixth of the lease).
    const leases = keepLeases({ db: own.db, leaseSeconds: 12, log: silentLogger });
    leases.hold(claimed);
    await expect
      .poll(async () => (await expiry()).getTime() > before.getTime(), { timeout: 20_000 })
      .toBe(true);
    await leases.stop();
    expect(ids.filter((id) => leases.isLost(id))).toEqual([]);
  });

  it('pages what Stripe’s meter should hold by tenant, period and customer', async () => {
    const tenant = await tenantOnOwnStack();
    await own.pool.query(
      "update public.plans set stripe_meter_id = 'mtr_paging' where id = (select plan_id from public.tenants where id = $1)",
      [tenant.id],
    );
    // Five periods, the third billed to two customers (the customer changed mid-period).
    await own.pool.query(
      `insert into public.meter_reports (tenant_id, period_start, period_end, stripe_customer_id,
         event_name, reported_through, value, identifier, event_timestamp, status, sent_at)
       select $1::uuid, p, p + interval '1 day', c, 'n8n_executions', i, 1,
              'paging:' || $1::text || ':' || i, p, 'sent', now()
       from (values (1, '2026-01-01'::timestamptz, 'cus_a'), (2, '2026-01-02', 'cus_a'),
                    (3, '2026-01-03', 'cus_a'), (4, '2026-01-03', 'cus_b'),
                    (5, '2026-01-04', 'cus_a'), (6, '2026-01-05', 'cus_a')) v(i, p, c)`,
      [tenant.id],
    );
    const seen: string[] = [];
    let after: { tenant_id: string; period_start: string; stripe_customer_id: string } | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const { data, error } = await own.db.rpc('sent_meter_totals', {
        since: '2026-01-01T00:00:00Z',
        max_rows: 2,
        ...(after
          ? {
              after_tenant_id: after.tenant_id,
              after_period_start: after.period_start,
              after_customer_id: after.stripe_customer_id,
            }
          : {}),
      });
      expect(error).toBeNull();
      const ours = (data ?? []).filter((r) => r.tenant_id === tenant.id);
      if ((data ?? []).length === 0) break;
      expect(data?.length).toBeLessThanOrEqual(2);
      seen.push(...ours.map((r) => `${r.period_start.slice(0, 10)} ${r.stripe_customer_id}`));
      after = data?.at(-1);
    }
    expect(seen).toEqual([
      '2026-01-01 cus_a',
      '2026-01-02 cus_a',
      '2026-01-03 cus_a',
      '2026-01-03 cus_b',
      '2026-01-04 cus_a',
      '2026-01-05 cus_a',
    ]);
  });

  it('a CLI list as long as one call hands over says there may be more', async () => {
    const env = {
      SUPABASE_URL: own.stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: own.stack.serviceRoleKey,
    };
    const before = await runCliWith(['tenants', 'list'], { env });
    expect(before.err).not.toContain('showing the first');
    const tenant = await tenantOnOwnStack();
    await own.pool.query(
      `insert into public.tenants (name, plan_id, external_ref)
       select 'Bulk ' || i, t.plan_id, 'bulk-' || i
       from generate_series(1, $2) i, public.tenants t where t.id = $1`,
      [tenant.id, API_MAX_ROWS],
    );
    const listed = await runCliWith(['tenants', 'list'], { env });
    expect(listed.code).toBe(0);
    expect(listed.err).toContain(fullListNote('--tenant'));
    const json = await runCliWith(['tenants', 'list', '--json'], { env });
    expect(JSON.parse(json.out)).toHaveLength(API_MAX_ROWS);
    expect(json.err).toContain(fullListNote('--tenant'));
    expect(fullListNote('--tenant')).toBe(
      'showing the first 1,000, as many as one call to the database hands over: there may be more; narrow the list with --tenant',
    );
  });
});
