import { randomUUID } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.types.ts';
import { signJwt } from '../../src/local/keys.ts';
import { type LocalStack, startLocalStack } from '../../src/local/stack.ts';
import {
  listTenants,
  TENANT_SORTS,
  type TenantSort,
  type TenantsQuery,
} from '../../src/operator-client/index.ts';
import { setPlan } from '../support/fixtures.ts';
import { uniqueId } from '../support/stack.ts';

/**
 * The tenants table's keyset pagination over 10,000 tenants: walking every page, for every
 * sort column in both directions, with search and filters, returns each matching tenant
 * exactly once and in the order PostgreSQL itself sorts them (ties by tenant id). Names,
 * usage and statuses repeat on purpose, so most pages end inside a run of ties. On a stack
 * of its own: 10,000 tenants in the shared one would slow every other file listing tenants.
 */
const TENANTS = 10_000;
const clientOptions = { auth: { persistSession: false, autoRefreshToken: false } } as const;

let stack: LocalStack;
let pool: pg.Pool;
const superuser = () => pool;
const serviceClient = () =>
  createClient<Database>(stack.supabaseUrl, stack.serviceRoleKey, clientOptions);
async function operator() {
  const token = await signJwt(stack.jwtSecret, {
    sub: randomUUID(),
    role: 'authenticated',
    aud: 'authenticated',
    app_metadata: { flowmeter_role: 'operator' },
  });
  return createClient<Database>(stack.supabaseUrl, stack.anonKey, {
    ...clientOptions,
    global: { headers: { Authorization: `Bearer ${token}` } },
  });
}

let plans: string[];
let refPrefix: string;
let seeded: Set<string>;

const planId = async (args: Parameters<typeof setPlan>[0]) =>
  (await setPlan(args, serviceClient())).id;

afterAll(async () => {
  await pool?.end();
  await stack?.stop();
});

beforeAll(async () => {
  stack = await startLocalStack();
  pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  // Thresholds at 1000 %: the seeded usage raises no alerts for other tests' global channels.
  const limited = await planId({
    id: uniqueId('bulk'),
    name: 'Bulk limited',
    included_executions: 100,
    alert_thresholds: [1000],
  });
  const unlimited = await planId({
    id: uniqueId('bulk'),
    name: 'Bulk unlimited',
    limit_policy: 'unlimited',
    alert_thresholds: [1000],
  });
  plans = [limited, unlimited];
  refPrefix = uniqueId('ref');
  const { rows } = await superuser().query(
    `with seeded as (
       insert into public.tenants (name, external_ref, plan_id, subscription_status)
       select 'Bulk ' || lpad((i % 997)::text, 4, '0') || case when i % 3 = 0 then ' Acme' else '' end,
              case when i % 5 = 0 then null else $3 || '-' || i end,
              case when i % 10 = 0 then $2 else $1 end,
              (array['none', 'active', 'trialing', 'past_due'])[1 + i % 4]
       from generate_series(1, $4::int) i
       returning id
     ), counted as (
       insert into public.usage_counters (tenant_id, period_start, period_end, executions, billable,
                                          billable_success, reserved)
       select s.id, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC',
              (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC',
              u.used + abs(hashtext(s.id::text || 'x')) % 20, u.used, u.used, abs(hashtext(s.id::text)) % 3
       from seeded s
       cross join lateral (select abs(hashtext(s.id::text)) % 150 as used) u
       where abs(hashtext(s.id::text)) % 7 <> 0
     )
     select id from seeded`,
    [limited, unlimited, refPrefix, TENANTS],
  );
  seeded = new Set(rows.map((r) => r.id));
});

/** The documented order of each column (nulls placed as operator_tenants places them). */
const sortExpression: Record<TenantSort, string> = {
  name: 'tenant_name',
  external_ref: "coalesce(external_ref, '')",
  plan: 'plan_name',
  subscription_status: 'subscription_status',
  used: 'used',
  quota: 'coalesce(quota, 1e19)',
  percent: 'coalesce(percent, -1)',
  level: "array_position(array['normal', 'warning', 'limit', 'overage'], level)",
  executions: 'executions',
  reserved: 'reserved',
  estimated_overage_amount: 'estimated_overage_amount',
  created_at: 'created_at',
};

async function expectedOrder(
  sort: TenantSort,
  descending: boolean,
  where = 'true',
  params: unknown[] = [],
): Promise<string[]> {
  const direction = descending ? 'desc' : 'asc';
  const { rows } = await superuser().query(
    `select tenant_id from private.operator_tenant_rows()
     where plan_id = any ($1) and (${where})
     order by ${sortExpression[sort]} ${direction}, tenant_id ${direction}`,
    [plans, ...params],
  );
  return rows.map((r) => r.tenant_id);
}

async function walk(query: TenantsQuery): Promise<{ ids: string[]; totals: Set<number> }> {
  const db = await operator();
  const ids: string[] = [];
  const totals = new Set<number>();
  let after: TenantsQuery['after'];
  for (let page = 0; page < 100; page++) {
    const { data, error } = await listTenants(db, {
      ...query,
      planIds: plans,
      maxRows: 500,
      after,
    });
    if (error || !data) throw new Error(`operator_tenants: ${error?.message}`);
    ids.push(...data.rows.map((r) => r.tenant_id));
    totals.add(data.total);
    if (!data.next) return { ids, totals };
    after = data.next;
  }
  throw new Error('more pages than tenants');
}

// A walk is 21 calls that each rank all 10,000 tenants; on a loaded machine that takes a while.
describe('operator_tenants pagination over 10,000 tenants', { timeout: 120_000 }, () => {
  for (const sort of TENANT_SORTS) {
    for (const descending of [false, true]) {
      it(`sorted by ${sort} ${descending ? 'descending' : 'ascending'}: every tenant once, in order`, async () => {
        const { ids, totals } = await walk({ sort, descending });
        expect(new Set(ids).size).toBe(ids.length);
        expect(new Set(ids)).toEqual(seeded);
        expect([...totals]).toEqual([TENANTS]);
        expect(ids).toEqual(await expectedOrder(sort, descending));
      });
    }
  }

  it('search and filters narrow the walk, case-insensitively, every match once', async () => {
    const query = {
      search: 'ACME',
      statuses: ['active', 'trialing'],
      levels: ['limit', 'overage'] as const,
    };
    const { ids, totals } = await walk({
      ...query,
      levels: [...query.levels],
      sort: 'used',
      descending: true,
    });
    const expected = await expectedOrder(
      'used',
      true,
      "(tenant_name ilike '%acme%' or external_ref ilike '%acme%') and subscription_status = any ($2) and level = any ($3)",
      [query.statuses, query.levels],
    );
    expect(expected.length).toBeGreaterThan(0);
    expect(ids).toEqual(expected);
    expect([...totals]).toEqual([expected.length]);
  });

  it('search finds an external reference by part of it', async () => {
    const { ids } = await walk({ search: `${refPrefix}-123`, sort: 'external_ref' });
    const expected = await expectedOrder('external_ref', false, 'external_ref like $2', [
      `${refPrefix}-123%`,
    ]);
    expect(ids).toEqual(expected);
    expect(ids.length).toBeGreaterThan(1);
  });

  it('takes % and _ in a search literally', async () => {
    for (const search of ['%', '_']) {
      const { ids } = await walk({ search });
      expect(ids).toEqual([]);
    }
  });
});
