import { randomUUID } from 'node:crypto';
import type { SupabaseClient } from '@supabase/supabase-js';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.types.ts';
import {
  acknowledgeGaps,
  getHealth,
  getOverview,
  getTenantDetail,
  listTenants,
  resendAlertDelivery,
  setSourceEnabled,
} from '../../src/operator-client/index.ts';
import { addMember, createTenant, createUser, setPlan } from '../support/fixtures.ts';
import {
  anonClient,
  asRole,
  inTransaction,
  serviceClient,
  superuser,
  uniqueId,
  userClient,
} from '../support/stack.ts';

/**
 * The operator console's RPCs as a browser calls them: supabase-js with an operator's JWT
 * (app_metadata.flowmeter_role = operator, as `flowmeter operators add` sets it). Fixtures
 * write the state the collector, enforcement and the reporter would have written; the
 * expected numbers are read back from the tables. System-wide totals are compared inside
 * one snapshot, so other test files writing meanwhile cannot move them.
 */
type Db = SupabaseClient<Database>;

const operatorId = randomUUID();
const operatorEmail = `${operatorId}@operators.example.test`;
const operatorClaims = { email: operatorEmail, app_metadata: { flowmeter_role: 'operator' } };
const operator = () => userClient(operatorId, operatorClaims);
const CURRENCY = 'zzx';

interface World {
  planFlat: string;
  planOverage: string;
  nearLimit: string;
  overage: string;
  quiet: string;
  sourceId: string;
  alertId: number;
  channelId: number;
}
let world: World;

const planId = async (args: Parameters<typeof setPlan>[0]) => (await setPlan(args)).id;

async function counters(tenantId: string, billable: number, executions: number, reserved = 0) {
  await superuser().query(
    `insert into public.usage_counters (tenant_id, period_start, period_end, executions, billable,
                                        billable_success, reserved)
     select $1, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC',
            (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC',
            $3, $2, $2, $4`,
    [tenantId, billable, executions, reserved],
  );
}

beforeAll(async () => {
  const planFlat = await planId({
    id: uniqueId('flat'),
    name: 'Flat',
    included_executions: 100,
    currency: CURRENCY,
    recurring_amount: 4900,
  });
  const planOverage = await planId({
    id: uniqueId('over'),
    name: 'Overage',
    limit_policy: 'overage',
    included_executions: 50,
    overage_unit_amount: 2,
    currency: CURRENCY,
  });
  const nearLimit = (await createTenant(planFlat)).id;
  const overage = (await createTenant(planOverage)).id;
  const quiet = (await createTenant(planFlat)).id;
  const db = superuser();
  await db.query(
    "update public.tenants set subscription_status = 'active' where id = any ($1::uuid[])",
    [[nearLimit, overage]],
  );
  const { data: channel, error: channelError } = await serviceClient().rpc('add_alert_channel', {
    kind: 'email',
    target: `${uniqueId('ops')}@example.test`,
    tenant_id: nearLimit,
  });
  if (channelError || !channel) throw new Error(`add_alert_channel: ${channelError?.message}`);
  // 90 of 100 reaches the 80 % threshold: the counters' trigger raises the alert and its delivery.
  // Reserved counts the three reservations below, one of them expired and not yet swept.
  await counters(nearLimit, 90, 120, 3);
  await counters(overage, 70, 70);
  const { rows: alerts } = await db.query(
    'select id from public.usage_alerts where tenant_id = $1 and threshold = 80',
    [nearLimit],
  );
  await db.query(
    `update public.alert_deliveries set status = 'failed', attempts = 10, next_attempt_at = null,
            last_error = 'smtp said no' where alert_id = $1 and channel_id = $2`,
    [alerts[0].id, channel.id],
  );
  const { data: source, error: sourceError } = await serviceClient().rpc('add_n8n_source', {
    tenant_id: nearLimit,
    name: 'main',
    base_url: `https://${uniqueId('n8n')}.example.test`,
    api_key_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
  });
  if (sourceError || !source) throw new Error(`add_n8n_source: ${sourceError?.message}`);
  await db.query(
    `insert into public.collector_source_state (source_id, consecutive_failures, last_error, last_error_at,
                                                last_success_at)
     values ($1, 3, 'n8n answered 401', now(), now() - interval '2 hours')`,
    [source.id],
  );
  await db.query(
    `insert into public.collection_gaps (source_id, tenant_id, kind, from_id, to_id)
     values ($1, $2, 'pruned', 10, 20), ($1, $2, 'vanished', 30, 30)`,
    [source.id, nearLimit],
  );
  await db.query(
    `insert into public.meter_reports (tenant_id, period_start, period_end, stripe_customer_id, event_name,
                                       reported_through, value, identifier, event_timestamp, status, attempts,
                                       last_error, sent_at)
     select $1::uuid, p.s, p.s + interval '1 month', 'cus_test', 'executions', x.through, 10,
            'flowmeter:' || $1::text || ':' || x.through, now(), x.status, x.attempts, x.last_error,
            case when x.status = 'sent' then now() end
     from (select date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' as s) p
     cross join (values (10, 'sent', 1, null::text), (20, 'pending', 2, 'stripe 500'), (30, 'pending', 0, null),
                        (40, 'late', 1, null)) x(through, status, attempts, last_error)`,
    [nearLimit],
  );
  // run-0 expired without being swept: it holds no run any more, so it is not in flight.
  await db.query(
    `insert into public.usage_reservations (tenant_id, period_start, workflow_id, run_ref, expires_at)
     select $1, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC', 'wf-' || i, 'run-' || i,
            now() + make_interval(mins => i)
     from generate_series(0, 2) i`,
    [nearLimit],
  );
  await db.query(
    `update public.usage_reservations set created_at = now() - interval '10 minutes',
            expires_at = now() - interval '1 minute'
     where tenant_id = $1 and run_ref = 'run-0'`,
    [nearLimit],
  );
  world = {
    planFlat,
    planOverage,
    nearLimit,
    overage,
    quiet,
    sourceId: source.id,
    alertId: Number(alerts[0].id),
    channelId: Number(channel.id),
  };
});

/** Every operator RPC with arguments aimed at real objects, so a missing check would act. */
const operatorCalls = (): Array<
  [string, (db: Db) => PromiseLike<{ status: number; error: unknown }>]
> => [
  ['operator_overview', (db) => db.rpc('operator_overview')],
  ['operator_tenants', (db) => db.rpc('operator_tenants', {})],
  ['operator_tenant', (db) => db.rpc('operator_tenant', { tenant_id: world.nearLimit })],
  ['operator_health', (db) => db.rpc('operator_health')],
  [
    'operator_set_source_enabled',
    (db) => db.rpc('operator_set_source_enabled', { source_id: world.sourceId, enabled: false }),
  ],
  [
    'operator_acknowledge_gaps',
    (db) => db.rpc('operator_acknowledge_gaps', { source_id: world.sourceId }),
  ],
  [
    'operator_resend_alert_delivery',
    (db) =>
      db.rpc('operator_resend_alert_delivery', {
        alert_id: world.alertId,
        channel_id: world.channelId,
      }),
  ],
];

describe('operator console: who may call', () => {
  it('covers every operator function authenticated may execute', async () => {
    const { rows } = await superuser().query(`
      select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'public' and p.proname like 'operator\\_%'
        and has_function_privilege('authenticated', p.oid, 'execute')
      order by 1`);
    expect(rows.map((r) => r.proname)).toEqual(
      operatorCalls()
        .map(([name]) => name)
        .sort(),
    );
  });

  const callers: Array<[string, () => Promise<Db>, number]> = [
    [
      'a tenant user',
      async () => {
        const userId = await createUser();
        await addMember(world.nearLimit, userId, 'owner');
        return userClient(userId, { email: `${userId}@example.test` });
      },
      403,
    ],
    ['a signed-in user of no tenant', () => userClient(randomUUID()), 403],
    [
      'a user who set the operator mark in their own user_metadata',
      () => userClient(randomUUID(), { user_metadata: { flowmeter_role: 'operator' } }),
      403,
    ],
    ['anon', async () => anonClient(), 401],
  ];
  for (const [name] of operatorCalls()) {
    for (const [who, client, status] of callers) {
      it(`${name} refuses ${who} with ${status}`, async () => {
        const db = await client();
        const call = operatorCalls().find(([n]) => n === name);
        const response = await call?.[1](db);
        expect(response?.status).toBe(status);
        expect(response?.error).toMatchObject({ code: '42501' });
      });
    }
  }

  it('left nothing changed and nothing recorded', async () => {
    const db = superuser();
    const { rows: sources } = await db.query(
      'select enabled from public.n8n_sources where id = $1',
      [world.sourceId],
    );
    expect(sources[0].enabled).toBe(true);
    const { rows: gaps } = await db.query(
      'select count(*)::int as n from public.collection_gaps where source_id = $1 and acknowledged_at is not null',
      [world.sourceId],
    );
    expect(gaps[0].n).toBe(0);
    const { rows: delivery } = await db.query(
      'select status from public.alert_deliveries where alert_id = $1 and channel_id = $2',
      [world.alertId, world.channelId],
    );
    expect(delivery[0].status).toBe('failed');
    const { rows: audit } = await db.query(
      'select count(*)::int as n from public.operator_actions where tenant_id = $1',
      [world.nearLimit],
    );
    expect(audit[0].n).toBe(0);
  });

  it('the audit table is closed to the API roles, operators included', async () => {
    for (const role of ['anon', 'authenticated'] as const) {
      await expect(
        asRole(role, { sub: operatorId, ...operatorClaims }, (client) =>
          client.query('select * from public.operator_actions'),
        ),
      ).rejects.toMatchObject({ code: '42501' });
    }
  });
});

/**
 * Runs `fn` in one repeatable-read snapshot: first as the operator (as PostgREST would),
 * then back as the superuser to read what the tables hold at that same instant.
 */
const inOneSnapshot = <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> =>
  inTransaction(fn, { begin: 'begin isolation level repeatable read' });

async function asOperator(client: pg.PoolClient, sql: string, params: unknown[] = []) {
  await client.query(
    "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)",
    [JSON.stringify({ role: 'authenticated', sub: operatorId, ...operatorClaims })],
  );
  const { rows } = await client.query(sql, params);
  await client.query('reset role');
  return rows[0];
}

describe('operator_overview', () => {
  const scoped = async () => {
    const { data, error } = await getOverview(await operator(), {
      planIds: [world.planFlat, world.planOverage],
    });
    expect(error).toBeNull();
    if (!data) throw new Error('no overview');
    return data;
  };

  it('counts, revenue, top tenants and those near their limit, equal to the tables', async () => {
    const data = await scoped();
    expect(data.tenants).toBe(3);
    expect(data.tenants_by_plan).toEqual(
      [
        { plan_id: world.planFlat, plan_name: 'Flat', tenants: 2 },
        { plan_id: world.planOverage, plan_name: 'Overage', tenants: 1 },
      ].sort((a, b) => (a.plan_id < b.plan_id ? -1 : 1)),
    );
    expect(data.tenants_by_status).toEqual([
      { subscription_status: 'active', tenants: 2 },
      { subscription_status: 'none', tenants: 1 },
    ]);
    expect(data.executions).toEqual({ total: 190, billable: 160, reserved: 2 });
    // Flat: 4900 from its one active tenant (quiet has no subscription); Overage: no known
    // price, 20 executions over 50 at 2 each.
    expect(data.revenue).toEqual([
      {
        currency: CURRENCY,
        recurring_amount: 4900,
        priced_tenants: 1,
        unpriced_tenants: 1,
        estimated_overage_amount: 40,
        overage_units: 20,
      },
    ]);
    expect(data.top_by_usage.map((t) => [t.tenant_id, t.used])).toEqual([
      [world.nearLimit, 90],
      [world.overage, 70],
    ]);
    expect(data.top_by_quota_share.map((t) => [t.tenant_id, t.percent])).toEqual([
      [world.overage, 140],
      [world.nearLimit, 90],
    ]);
    expect(data.near_limit.total).toBe(2);
    expect(data.near_limit.tenants).toEqual([
      expect.objectContaining({ tenant_id: world.overage, level: 'overage', used: 70, quota: 50 }),
      expect.objectContaining({ tenant_id: world.nearLimit, level: 'warning', reserved: 2 }),
    ]);
  });

  it('system-wide totals equal the tables in the same snapshot', async () => {
    await inOneSnapshot(async (client) => {
      const { overview } = await asOperator(
        client,
        'select public.operator_overview(100, 500) as overview',
      );
      const { rows } = await client.query(`
        select (select count(*)::int from public.tenants) as tenants,
               (select coalesce(sum(executions), 0)::int from private.tenant_usage_summary_rows(null)) as executions,
               (select coalesce(sum(used), 0)::int from private.tenant_usage_summary_rows(null)) as billable,
               (select count(*)::int from private.tenant_usage_summary_rows(null) where level <> 'normal') as near`);
      const expected = rows[0];
      expect(overview.tenants).toBe(expected.tenants);
      expect(overview.executions.total).toBe(expected.executions);
      expect(overview.executions.billable).toBe(expected.billable);
      expect(overview.near_limit.total).toBe(expected.near);
      const sum = (xs: Array<{ tenants: number }>) => xs.reduce((n, x) => n + x.tenants, 0);
      expect(sum(overview.tenants_by_plan)).toBe(expected.tenants);
      expect(sum(overview.tenants_by_status)).toBe(expected.tenants);
    });
  });

  it('compares this period so far with as many days from the start of the previous one', async () => {
    // Calendar-month periods (no subscription bounds): this month's first day counts now;
    // last month's first day and its day at today's offset count as before, the day after
    // that offset does not.
    const db = superuser();
    const { rows } = await db.query(`
      select d.elapsed, d.previous_first + d.elapsed < d.current_first as offset_in_previous,
             d.previous_first + d.elapsed + 1 < d.current_first as next_in_previous
      from (select (date_trunc('month', now() at time zone 'UTC'))::date as current_first,
                   (date_trunc('month', now() at time zone 'UTC') - interval '1 month')::date as previous_first,
                   (now() at time zone 'UTC')::date - (date_trunc('month', now() at time zone 'UTC'))::date as elapsed) d`);
    const { elapsed, offset_in_previous, next_in_previous } = rows[0];
    const previousFirst =
      "(date_trunc('month', now() at time zone 'UTC') - interval '1 month')::date";
    const insertDay = (tenant: string, day: string, billable: number) =>
      db.query(
        `insert into public.usage_daily (tenant_id, day, executions, billable) values ($1, ${day}, $2, $2)`,
        [tenant, billable],
      );
    await insertDay(world.nearLimit, "date_trunc('month', now() at time zone 'UTC')::date", 11);
    await insertDay(world.overage, previousFirst, 7);
    if (offset_in_previous) await insertDay(world.quiet, `${previousFirst} + ${elapsed}`, 5);
    if (next_in_previous)
      await insertDay(world.nearLimit, `${previousFirst} + ${elapsed + 1}`, 1000);
    const previous = 7 + (offset_in_previous ? 5 : 0);
    expect((await scoped()).trend).toEqual({
      executions: 11,
      billable: 11,
      previous_executions: previous,
      previous_billable: previous,
      billable_change_percent: Math.round(((11 - previous) * 1000) / previous) / 10,
    });
  });

  it('answers 400 for a top list out of range', async () => {
    const { status, error } = await (await operator()).rpc('operator_overview', { top_rows: 0 });
    expect(status).toBe(400);
    expect(error?.code).toBe('22023');
  });
});

describe('operator_tenants', () => {
  it('lists the tenants with their current period, filtered by plan', async () => {
    const { data, error } = await listTenants(await operator(), {
      planIds: [world.planFlat, world.planOverage],
      sort: 'percent',
      descending: true,
    });
    expect(error).toBeNull();
    expect(data?.total).toBe(3);
    expect(data?.next).toBeNull();
    expect(data?.rows.map((r) => [r.tenant_id, r.used, r.percent, r.level, r.reserved])).toEqual([
      [world.overage, 70, 140, 'overage', 0],
      [world.nearLimit, 90, 90, 'warning', 2],
      [world.quiet, 0, 0, 'normal', 0],
    ]);
  });

  it('ranks on reserved by the runs in flight it shows, an expired reservation not yet swept left out', async () => {
    const { data, error } = await listTenants(await operator(), {
      planIds: [world.planFlat, world.planOverage],
      sort: 'reserved',
      descending: true,
      maxRows: 1,
    });
    expect(error).toBeNull();
    expect(data?.rows.map((r) => [r.tenant_id, r.reserved])).toEqual([[world.nearLimit, 2]]);
    // The cursor holds the sort value the page was ranked by.
    expect(Number(data?.next?.num)).toBe(2);
  });

  it('ranks by usage in each tenant’s own billing period: subscription, stale subscription, calendar month', async () => {
    const plan = await planId({
      id: uniqueId('periods'),
      name: 'Periods',
      included_executions: 40,
    });
    const [current, stale, calendar] = await Promise.all([
      createTenant(plan),
      createTenant(plan),
      createTenant(plan),
    ]);
    const db = superuser();
    // current: a subscription period around now; stale: one that ended months ago, so its
    // periods roll on monthly from the anchor; calendar: no subscription.
    await db.query(
      `update public.tenants set current_period_start = now() - interval '3 days',
              current_period_end = now() + interval '27 days' where id = $1`,
      [current.id],
    );
    await db.query(
      `update public.tenants set current_period_start = now() - interval '100 days',
              current_period_end = now() - interval '70 days' where id = $1`,
      [stale.id],
    );
    const usage: Array<[string, number]> = [
      [current.id, 34],
      [stale.id, 44],
      [calendar.id, 12],
    ];
    for (const [tenantId, billable] of usage) {
      await db.query(
        `insert into public.usage_counters (tenant_id, period_start, period_end, executions, billable, billable_success)
         select $1, bp.period_start, bp.period_end, $2, $2, $2
         from public.tenants t
         cross join lateral private.billing_period(t.current_period_start, t.current_period_end, now()) bp
         where t.id = $1`,
        [tenantId, billable],
      );
    }
    const { rows: expected } = await db.query(
      `select tenant_id, used::int, percent::float, level from private.operator_tenant_rows()
       where plan_id = $1 order by used desc, tenant_id desc`,
      [plan],
    );
    expect(expected.map((r) => r.level)).toEqual(['overage', 'warning', 'normal']);
    for (const sort of ['used', 'percent', 'level'] as const) {
      const { data, error } = await listTenants(await operator(), {
        planIds: [plan],
        sort,
        descending: true,
      });
      expect(error).toBeNull();
      expect(data?.rows.map((r) => [r.tenant_id, r.used, r.percent, r.level])).toEqual(
        expected.map((r) => [r.tenant_id, r.used, r.percent, r.level]),
      );
    }
    const { data: overLimit } = await listTenants(await operator(), {
      planIds: [plan],
      levels: ['overage', 'limit'],
    });
    expect(overLimit?.rows.map((r) => r.tenant_id)).toEqual([stale.id]);
  });

  it('answers 400 for an unknown sort column, a bad cursor, a page too large or a search too long', async () => {
    const db = await operator();
    for (const args of [
      { sort: 'password' },
      { after: { id: 'nope' } },
      { max_rows: 501 },
      { search: 'x'.repeat(201) },
    ]) {
      const { status, error } = await db.rpc('operator_tenants', args);
      expect(status).toBe(400);
      expect(error?.code).toBe('22023');
    }
  });
});

describe('operator_tenant', () => {
  it('shows one tenant as the tenant sees it, with sources, ledger, alerts and reservations', async () => {
    const { data, error } = await getTenantDetail(await operator(), world.nearLimit);
    expect(error).toBeNull();
    if (!data) return;
    const { rows: summary } = await superuser().query(
      'select * from private.tenant_usage_summary_rows(array[$1::uuid])',
      [world.nearLimit],
    );
    expect(data.summary).toMatchObject({
      tenant_id: world.nearLimit,
      used: Number(summary[0].used),
      quota: Number(summary[0].quota),
      level: summary[0].level,
      reserved: 2,
      executions: 120,
    });
    expect(data.history[0]).toMatchObject({
      is_current: true,
      used: 90,
      pending_to_stripe: 20,
      late: 10,
    });
    expect(data.sources).toHaveLength(1);
    expect(data.sources[0]).toMatchObject({
      id: world.sourceId,
      consecutive_failures: 3,
      last_error: 'n8n answered 401',
      gaps: 2,
      unacknowledged_gaps: 2,
    });
    expect(data.sources[0]?.lag_seconds).toBeGreaterThanOrEqual(7200);
    expect(data.sources[0]?.recent_gaps.map((g) => g.kind).sort()).toEqual(['pruned', 'vanished']);
    expect(data.ledger).toMatchObject({
      pending: 2,
      retrying: 1,
      failing: 0,
      sent: 1,
      late: 1,
      late_unknown: 0,
      review: 0,
    });
    expect(data.ledger.reports.find((r) => r.attempts === 2)?.last_error).toBe('stripe 500');
    const alert = data.alerts.find((a) => a.id === world.alertId);
    expect(alert).toMatchObject({ threshold: 80, used: 90, quota: 100 });
    expect(alert?.deliveries.find((d) => d.channel_id === world.channelId)).toMatchObject({
      channel_kind: 'email',
      status: 'failed',
      last_error: 'smtp said no',
    });
    expect(JSON.stringify(data.alerts)).not.toContain('@example.test');
    expect(data.reservations.active).toBe(2);
    expect(data.reservations.rows.map((r) => r.run_ref)).toEqual(['run-1', 'run-2']);
  });

  it('answers 404 for an unknown tenant', async () => {
    const { status, error } = await (await operator()).rpc('operator_tenant', {
      tenant_id: randomUUID(),
    });
    expect(status).toBe(404);
    expect(error?.code).toBe('PT404');
  });
});

describe('operator_health', () => {
  it('is operator_status with collector_health, read in the same snapshot', async () => {
    await inOneSnapshot(async (client) => {
      const { health } = await asOperator(client, 'select public.operator_health() as health');
      const { rows } = await client.query(
        'select public.operator_status() as status, public.collector_health() as collector',
      );
      expect(health).toEqual({ ...rows[0].status, collector: rows[0].collector });
    });
  });

  it('raises the failing source as `flowmeter status` does', async () => {
    const { data, error } = await getHealth(await operator());
    expect(error).toBeNull();
    expect(data?.status.sources.failing).toBeGreaterThanOrEqual(1);
    expect(data?.needsAttention.some((line) => /sources? failing/.test(line))).toBe(true);
  });
});

describe('operator actions', () => {
  async function lastAction() {
    const { rows } = await superuser().query(
      'select * from public.operator_actions where tenant_id = $1 order by id desc limit 1',
      [world.nearLimit],
    );
    return rows[0];
  }

  it('disable and enable a source, each recorded with who did it', async () => {
    const db = await operator();
    const off = await setSourceEnabled(db, { sourceId: world.sourceId, enabled: false });
    expect(off.data?.enabled).toBe(false);
    expect(await lastAction()).toMatchObject({
      actor_sub: operatorId,
      actor_email: operatorEmail,
      action: 'source_disabled',
      object_type: 'n8n_source',
      object_id: world.sourceId,
      detail: expect.objectContaining({ was_enabled: true }),
    });
    const on = await setSourceEnabled(db, { sourceId: world.sourceId, enabled: true });
    expect(on.data?.enabled).toBe(true);
    expect((await lastAction()).action).toBe('source_enabled');
    const { rows } = await superuser().query(
      'select enabled from public.n8n_sources where id = $1',
      [world.sourceId],
    );
    expect(rows[0].enabled).toBe(true);
  });

  it('acknowledge a source’s gaps, recorded', async () => {
    const { data } = await acknowledgeGaps(await operator(), world.sourceId);
    expect(data?.acknowledged).toBe(2);
    expect(await lastAction()).toMatchObject({
      action: 'gaps_acknowledged',
      object_id: world.sourceId,
      detail: { acknowledged: 2 },
    });
    const detail = await getTenantDetail(await operator(), world.nearLimit);
    expect(detail.data?.sources[0]).toMatchObject({ gaps: 2, unacknowledged_gaps: 0 });
  });

  it('re-send a failed delivery once: due again, recorded; a second time is 409', async () => {
    const db = await operator();
    const { data } = await resendAlertDelivery(db, {
      alertId: world.alertId,
      channelId: world.channelId,
    });
    expect(data?.status).toBe('pending');
    const { rows } = await superuser().query(
      `select status, attempts, next_attempt_at <= now() as due from public.alert_deliveries
       where alert_id = $1 and channel_id = $2`,
      [world.alertId, world.channelId],
    );
    expect(rows[0]).toEqual({ status: 'pending', attempts: 0, due: true });
    const recorded = await lastAction();
    expect(recorded).toMatchObject({
      action: 'alert_delivery_resent',
      object_type: 'alert_delivery',
      object_id: `${world.alertId}/${world.channelId}`,
      actor_sub: operatorId,
    });
    const again = await db.rpc('operator_resend_alert_delivery', {
      alert_id: world.alertId,
      channel_id: world.channelId,
    });
    expect(again.status).toBe(409);
    expect((await lastAction()).id).toBe(recorded.id);
  });

  it('answers 404 for an unknown source and records nothing', async () => {
    const { status } = await (await operator()).rpc('operator_set_source_enabled', {
      source_id: randomUUID(),
      enabled: false,
    });
    expect(status).toBe(404);
  });
});
