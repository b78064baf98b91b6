import { beforeAll, describe, expect, it } from 'vitest';
import {
  getDailyUsage,
  getUsageHistory,
  getUsageSummary,
  getWorkflowBreakdown,
  listAlerts,
  markAlertRead,
  type UsageDb,
} from '../../src/usage-client/index.ts';
import { collect, createSource, useN8nServer } from '../support/collector.ts';
import {
  createPlan,
  createTenant,
  ingestExecutions as ingest,
  memberOf,
  recent,
  setPlan,
} from '../support/fixtures.ts';
import { DAY, HOUR } from '../support/milliseconds.ts';
import { anonClient, serviceClient, superuser, uniqueId } from '../support/stack.ts';

/**
 * The tenant usage API as a frontend calls it: supabase-js signed in as a tenant user,
 * row-level security the only wall. Usage is stored by the real ingestion
 * (ingest_execution_page, or the whole collector against a fake n8n), so periods, days
 * and counters are the system's own; expectations are computed by hand.
 */
const server = useN8nServer();

const iso = (ms: number) => new Date(ms).toISOString();
const dayOf = (ms: number) => iso(ms).slice(0, 10);
/** Start of the UTC month `offset` months from the one containing `ms`. */
const monthStart = (ms: number, offset = 0) => {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1);
};
const sameInstant = (actual: string, expected: number) => expect(Date.parse(actual)).toBe(expected);

const ok = <T>(result: { data: T | null; error: unknown }): T => {
  expect(result.error).toBeNull();
  return result.data as T;
};

/** The ground truth, read as the superuser. */
async function countersRow(tenantId: string, periodStart: number) {
  const { rows } = await superuser().query(
    `select executions::int, billable::int, billable_failed::int, reserved::int
     from public.usage_counters where tenant_id = $1 and period_start = $2`,
    [tenantId, iso(periodStart)],
  );
  return rows[0];
}

/** A tenant on a new plan of these terms, and a member of it signed in with supabase-js. */
async function memberOfTenantOn(plan: Omit<Parameters<typeof setPlan>[0], 'id'>) {
  const { id: planId } = await setPlan({ id: uniqueId('plan'), ...plan });
  const tenantId = (await createTenant(planId)).id;
  const { db: member } = await memberOf(tenantId);
  return { planId, tenantId, member };
}

describe('a tenant on the calendar month with a hand-computed month', () => {
  const now = Date.now();
  const current = monthStart(now);
  const previous = monthStart(now, -1);
  const lastSecondOfPrevious = current - 1000;
  const bulkDay = previous + 9 * DAY; // the 10th of last month
  let tenantId: string;
  let member: UsageDb;

  beforeAll(async () => {
    ({ tenantId, member } = await memberOfTenantOn({
      name: 'Overage',
      limit_policy: 'overage',
      included_executions: 20,
      overage_unit_amount: 0.25,
      currency: 'eur',
    }));

    // Last month, one page: 26 executions, 23 billable, 3 billable failures.
    const durationsA = Array.from({ length: 20 }, (_, i) => (i + 1) * 100); // 100 … 2000
    await ingest(tenantId, [
      ...durationsA.map((d, i) => ({
        workflow: 'wf-a',
        startedAt: bulkDay + i * 60_000,
        status: i < 2 ? ('error' as const) : ('success' as const),
        durationMs: d,
      })),
      { workflow: 'wf-b', startedAt: bulkDay + HOUR, mode: 'manual', durationMs: 500 },
      { workflow: 'wf-b', startedAt: bulkDay + HOUR + 1, mode: 'manual', durationMs: 500 },
      {
        workflow: 'wf-b',
        startedAt: bulkDay + HOUR + 2,
        status: 'crashed',
        mode: 'webhook',
        durationMs: 500,
      },
      { workflow: 'wf-b', startedAt: bulkDay + HOUR + 3, status: 'canceled', durationMs: 500 },
      { workflow: 'wf-c', startedAt: bulkDay + 2 * HOUR, durationMs: null },
      // 23:59:59 on the last day of last month
      { workflow: 'wf-edge', startedAt: lastSecondOfPrevious, durationMs: 1000 },
    ]);
    // This month, another page: 00:00:00 on the 1st, then 24 more: 25 billable of 20.
    await ingest(tenantId, [
      { workflow: 'wf-edge', startedAt: current, durationMs: 1000 },
      ...Array.from({ length: 24 }, (_, i) => ({
        workflow: 'wf-now',
        startedAt: current + (i + 1) * 1000,
        durationMs: 200,
      })),
    ]);
  });

  it('summarises the current period from its counters, with the overage estimate', async () => {
    const [summary, ...others] = ok(await getUsageSummary(member, tenantId));
    expect(others).toEqual([]);
    expect(summary).toMatchObject({
      tenantId,
      limitPolicy: 'overage',
      subscriptionStatus: 'none',
      used: 25,
      quota: 20,
      remaining: 0,
      percent: 125,
      level: 'overage',
      overageUnits: 5,
      estimatedOverageAmount: 1.25, // 5 × 0.25 minor units
      currency: 'eur',
      reserved: 0,
      executions: 25,
      failed: 0,
    });
    sameInstant(summary?.periodStart as string, current);
    sameInstant(summary?.periodEnd as string, monthStart(now, 1));
    expect(await countersRow(tenantId, current)).toMatchObject({ billable: 25, executions: 25 });
  });

  it('counts 23:59:59 on the last day in last month and 00:00:00 on the 1st in this month', async () => {
    const history = ok(await getUsageHistory(member, { tenantId }));
    expect(history).toHaveLength(2);
    const [thisMonth, lastMonth] = history;
    sameInstant(thisMonth?.periodStart as string, current);
    sameInstant(lastMonth?.periodStart as string, previous);
    sameInstant(lastMonth?.periodEnd as string, current);
    expect(thisMonth).toMatchObject({ isCurrent: true, used: 25, executions: 25, overageUnits: 5 });
    expect(lastMonth).toMatchObject({
      isCurrent: false,
      used: 23,
      quota: 20,
      overageUnits: 3,
      executions: 26,
      failed: 3,
    });
    expect(await countersRow(tenantId, previous)).toMatchObject({
      executions: 26,
      billable: 23,
      billable_failed: 3,
    });

    const edgeLastMonth = ok(
      await getWorkflowBreakdown(member, { tenantId, periodStart: new Date(previous) }),
    ).find((w) => w.workflowId === 'wf-edge');
    const edgeThisMonth = ok(await getWorkflowBreakdown(member, { tenantId })).find(
      (w) => w.workflowId === 'wf-edge',
    );
    expect(edgeLastMonth?.executions).toBe(1);
    expect(edgeThisMonth?.executions).toBe(1);
  });

  it('breaks last month down per workflow, paginated by workflow id', async () => {
    const pageAfter = async (afterWorkflowId?: string) =>
      ok(
        await getWorkflowBreakdown(member, {
          tenantId,
          periodStart: iso(previous),
          maxRows: 2,
          ...(afterWorkflowId === undefined ? {} : { afterWorkflowId }),
        }),
      );
    const first = await pageAfter();
    const second = await pageAfter(first.at(-1)?.workflowId as string);
    const third = await pageAfter(second.at(-1)?.workflowId as string);
    expect(third).toEqual([]);
    expect([...first, ...second]).toEqual([
      // 18 of 20 succeeded; mean of 100…2000 = 1050, sum 21,000; p95 = 1900 + 0.05 × 100 (interpolated)
      {
        workflowId: 'wf-a',
        executions: 20,
        billable: 20,
        successRate: 0.9,
        avgDurationMs: 1050,
        p95DurationMs: 1905,
        totalDurationMs: 21_000,
      },
      // 2 manual (not billable) successes, a crashed webhook run, a canceled trigger run
      {
        workflowId: 'wf-b',
        executions: 4,
        billable: 1,
        successRate: 0.5,
        avgDurationMs: 500,
        p95DurationMs: 500,
        totalDurationMs: 2000,
      },
      {
        workflowId: 'wf-c',
        executions: 1,
        billable: 1,
        successRate: 1,
        avgDurationMs: null,
        p95DurationMs: null,
        totalDurationMs: 0,
      },
      {
        workflowId: 'wf-edge',
        executions: 1,
        billable: 1,
        successRate: 1,
        avgDurationMs: 1000,
        p95DurationMs: 1000,
        totalDurationMs: 1000,
      },
    ]);
    // Any instant inside the period selects it.
    const midMonth = ok(
      await getWorkflowBreakdown(member, { tenantId, periodStart: iso(bulkDay + 5 * DAY) }),
    );
    expect(midMonth.map((w) => w.workflowId)).toEqual(['wf-a', 'wf-b', 'wf-c', 'wf-edge']);
  });

  it('gives a continuous daily series with zeros, split at UTC midnight', async () => {
    const from = bulkDay - DAY;
    const to = current + DAY;
    const series = ok(
      await getDailyUsage(member, { tenantId, fromDay: dayOf(from), toDay: new Date(to) }),
    );
    expect(series).toHaveLength(Math.round((to - from) / DAY) + 1);
    expect(series.map((d) => d.day)).toEqual(
      Array.from({ length: series.length }, (_, i) => dayOf(from + i * DAY)),
    );
    const nonZero = series.filter((d) => d.executions > 0);
    expect(nonZero).toEqual([
      // wf-a 20 (2 errors) + wf-b 4 (crashed, canceled) + wf-c 1; 100+…+2000 + 4 × 500 ms
      { day: dayOf(bulkDay), executions: 25, billable: 22, failed: 4, durationMs: 23_000 },
      { day: dayOf(lastSecondOfPrevious), executions: 1, billable: 1, failed: 0, durationMs: 1000 },
      { day: dayOf(current), executions: 25, billable: 25, failed: 0, durationMs: 5800 },
    ]);
  });

  it('defaults the daily series to the start of last period through today', async () => {
    const series = ok(await getDailyUsage(member, { tenantId }));
    expect(series[0]?.day).toBe(dayOf(previous));
    expect(series.at(-1)?.day).toBe(dayOf(now));
    expect(series).toHaveLength(Math.round((Date.parse(dayOf(now)) - previous) / DAY) + 1);
  });

  it('shows what was reported to Stripe per period', async () => {
    const reports: Array<[number, number, string]> = [
      [15, 15, 'sent'],
      [20, 5, 'sent'],
      [22, 2, 'pending'],
      [23, 1, 'late'],
    ];
    for (const [through, value, status] of reports) {
      await superuser().query(
        `insert into public.meter_reports (tenant_id, period_start, period_end, stripe_customer_id, event_name,
           reported_through, value, identifier, event_timestamp, status)
         values ($1, $2, $3, 'cus_test', 'n8n_executions', $4, $5, $6, $3::timestamptz - interval '1 second', $7)`,
        [tenantId, iso(previous), iso(current), through, value, uniqueId('id'), status],
      );
    }
    const [thisMonth, lastMonth] = ok(await getUsageHistory(member, { tenantId }));
    expect(lastMonth).toMatchObject({ reportedToStripe: 20, pendingToStripe: 2, late: 1 });
    expect(thisMonth).toMatchObject({ reportedToStripe: 0, pendingToStripe: 0, late: 0 });
  });

  it('pages through history with before', async () => {
    const page1 = ok(await getUsageHistory(member, { tenantId, maxRows: 1 }));
    const page2 = ok(
      await getUsageHistory(member, { tenantId, maxRows: 1, before: page1[0]?.periodStart }),
    );
    const page3 = ok(
      await getUsageHistory(member, { tenantId, maxRows: 1, before: page2[0]?.periodStart }),
    );
    expect(page1.map((p) => Date.parse(p.periodStart))).toEqual([current]);
    expect(page2.map((p) => Date.parse(p.periodStart))).toEqual([previous]);
    expect(page3).toEqual([]);
  });

  it('lists the alerts newest first, pages them and marks one read', async () => {
    // 80 % and 100 % of 20, reached in each month's page
    const all = ok(await listAlerts(member, { tenantId }));
    expect(
      all.map((a) => [Date.parse(a.periodStart), a.threshold, a.used, a.quota]).sort(),
    ).toEqual(
      [
        [current, 100, 25, 20],
        [current, 80, 25, 20],
        [previous, 100, 23, 20],
        [previous, 80, 23, 20],
      ].sort(),
    );
    const ids = all.map((a) => a.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));

    const page1 = ok(await listAlerts(member, { tenantId, maxRows: 3 }));
    const page2 = ok(
      await listAlerts(member, { tenantId, maxRows: 3, beforeId: page1.at(-1)?.id }),
    );
    expect([...page1, ...page2].map((a) => a.id)).toEqual(ids);

    const read = ok(await markAlertRead(member, ids[1] as number));
    expect(read.readAt).not.toBeNull();
    const unread = ok(await listAlerts(member, { tenantId, unreadOnly: true }));
    expect(unread.map((a) => a.id)).toEqual(ids.filter((id) => id !== ids[1]));
  });

  it('refuses a range over 400 days, a reversed range and an empty page', async () => {
    const tooLong = await getDailyUsage(member, {
      tenantId,
      fromDay: '2025-01-01',
      toDay: '2026-02-05',
    });
    expect(tooLong.error).toMatchObject({ code: '22023' });
    const reversed = await getDailyUsage(member, {
      tenantId,
      fromDay: '2026-02-05',
      toDay: '2026-02-04',
    });
    expect(reversed.error).toMatchObject({ code: '22023' });
    const empty = await getWorkflowBreakdown(member, { tenantId, maxRows: 0 });
    expect(empty.error).toMatchObject({ code: '22023' });
    const { status } = await member.rpc('tenant_usage_history', {
      tenant_id: tenantId,
      max_rows: 0,
    });
    expect(status).toBe(400);
    // 400 days exactly is fine
    const longest = ok(
      await getDailyUsage(member, { tenantId, fromDay: '2025-01-01', toDay: '2026-02-04' }),
    );
    expect(longest).toHaveLength(400);
  });

  it('refuses infinite times and days with a 400 naming the argument', async () => {
    const calls: Array<[string, Record<string, unknown>, string]> = [
      ['tenant_usage_daily', { from_day: '-infinity', to_day: '2026-02-04' }, 'from_day'],
      ['tenant_usage_daily', { to_day: 'infinity' }, 'to_day'],
      ['tenant_workflow_breakdown', { period_start: 'infinity' }, 'period_start'],
      ['tenant_usage_history', { before: '-infinity' }, 'before'],
      ['tenant_usage_export', { period_start: '-infinity' }, 'period_start'],
      [
        'tenant_usage_export',
        {
          after_occurred_at: 'infinity',
          after_source_id: '00000000-0000-0000-0000-000000000000',
          after_execution_id: 1,
        },
        'after_occurred_at',
      ],
    ];
    for (const [fn, args, named] of calls) {
      const answer = await member.rpc(fn as 'tenant_usage_daily', { tenant_id: tenantId, ...args });
      expect({ fn, status: answer.status }).toEqual({ fn, status: 400 });
      expect({ fn, message: answer.error?.message }).toEqual({
        fn,
        message: `${named} must be a date or time, not ${String(Object.values(args)[Object.keys(args).indexOf(named)])}`,
      });
    }
  });
});

describe('a trialing tenant whose Stripe period starts mid-month', () => {
  const now = Date.now();
  // The 15th at 12:00 UTC of this month, or of last month before that moment.
  const fifteenth = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 15, 12);
  const start = fifteenth <= now ? fifteenth : monthStart(now, -1) + 14 * DAY + 12 * HOUR;
  const end = monthStart(start, 1) + 14 * DAY + 12 * HOUR;
  const previousStart = monthStart(start, -1) + 14 * DAY + 12 * HOUR;
  let tenantId: string;
  let member: UsageDb;

  beforeAll(async () => {
    const trial = await memberOfTenantOn({
      name: 'Hard',
      limit_policy: 'hard_limit',
      included_executions: 10,
      alert_thresholds: [50, 100],
    });
    ({ tenantId, member } = trial);
    await superuser().query('update public.plans set trial_included_executions = 4 where id = $1', [
      trial.planId,
    ]);
    await superuser().query(
      `update public.tenants set subscription_status = 'trialing', current_period_start = $2,
         current_period_end = $3 where id = $1`,
      [tenantId, iso(start), iso(end)],
    );
    await ingest(tenantId, [
      { workflow: 'wf-a', startedAt: previousStart },
      { workflow: 'wf-a', startedAt: start - 1000, status: 'error' }, // 11:59:59: last period
      { workflow: 'wf-a', startedAt: start }, // 12:00:00: this period
      { workflow: 'wf-b', startedAt: start + 1000 },
      { workflow: 'wf-b', startedAt: start + 2000 },
      { workflow: 'wf-b', startedAt: start + 3000, mode: 'manual' },
    ]);
  });

  it('summarises the Stripe period with the trial quota', async () => {
    const [summary] = ok(await getUsageSummary(member, tenantId));
    sameInstant(summary?.periodStart as string, start);
    sameInstant(summary?.periodEnd as string, end);
    expect(summary).toMatchObject({
      subscriptionStatus: 'trialing',
      limitPolicy: 'hard_limit',
      used: 3,
      quota: 4,
      remaining: 1,
      percent: 75,
      level: 'warning', // at or above the lowest threshold, 50 %
      overageUnits: 0,
      estimatedOverageAmount: 0,
      executions: 4,
      failed: 0,
    });
  });

  it('splits the periods at the anchor instant, not at midnight', async () => {
    const [current, lastPeriod, ...older] = ok(await getUsageHistory(member, { tenantId }));
    expect(older).toEqual([]);
    sameInstant(current?.periodStart as string, start);
    sameInstant(lastPeriod?.periodStart as string, previousStart);
    sameInstant(lastPeriod?.periodEnd as string, start);
    expect(current).toMatchObject({ isCurrent: true, used: 3, quota: 4, executions: 4 });
    // past periods show the plan's own quota, not the trial's
    expect(lastPeriod).toMatchObject({ isCurrent: false, used: 2, quota: 10, failed: 1 });

    const last = ok(
      await getWorkflowBreakdown(member, { tenantId, periodStart: iso(previousStart) }),
    );
    expect(last).toEqual([
      expect.objectContaining({ workflowId: 'wf-a', executions: 2, billable: 2, successRate: 0.5 }),
    ]);
    const thisPeriod = ok(await getWorkflowBreakdown(member, { tenantId }));
    expect(thisPeriod).toEqual([
      expect.objectContaining({ workflowId: 'wf-a', executions: 1, billable: 1 }),
      expect.objectContaining({ workflowId: 'wf-b', executions: 3, billable: 2 }),
    ]);
  });

  it('keeps the daily series in UTC days: the anchor day holds both periods', async () => {
    const series = ok(await getDailyUsage(member, { tenantId }));
    expect(series[0]?.day).toBe(dayOf(previousStart));
    const anchorDay = series.find((d) => d.day === dayOf(start));
    expect(anchorDay).toEqual({
      day: dayOf(start),
      executions: 5,
      billable: 4,
      failed: 1,
      durationMs: 5000,
    });
  });
});

describe('collected through the real collector', () => {
  it("gives a member their tenant's numbers, equal to the counters, with reservations in flight", async () => {
    const source = await createSource(server);
    source.fake.addMany(60, (i) => ({
      startedAt: recent(600 - i),
      workflowId: `wf-${i % 3}`,
      mode: i % 10 === 0 ? 'manual' : 'trigger',
      status: i % 7 === 0 ? 'error' : i % 11 === 0 ? 'canceled' : 'success',
    }));
    const run = await collect([source]);
    expect(run.errors).toEqual([]);
    const { error } = await serviceClient().rpc('enforce_usage', { tenant: source.tenantId });
    expect(error).toBeNull();

    const { db } = await memberOf(source.tenantId);
    const [summary] = ok(await getUsageSummary(db));
    const counters = await countersRow(source.tenantId, monthStart(Date.now()));
    expect(summary).toMatchObject({
      tenantId: source.tenantId,
      used: counters.billable,
      executions: counters.executions,
      failed: counters.billable_failed,
      reserved: 1,
      quota: 1_000_000,
    });
    expect(counters.executions).toBe(60);

    const workflows = ok(await getWorkflowBreakdown(db, { tenantId: source.tenantId }));
    expect(workflows.map((w) => w.workflowId)).toEqual(['wf-0', 'wf-1', 'wf-2']);
    const sum = (k: 'executions' | 'billable') => workflows.reduce((n, w) => n + w[k], 0);
    expect(sum('executions')).toBe(counters.executions);
    expect(sum('billable')).toBe(counters.billable);

    const days = ok(await getDailyUsage(db, { tenantId: source.tenantId }));
    expect(days.reduce((n, d) => n + d.billable, 0)).toBe(counters.billable);
  });
});

describe('reservations in flight', () => {
  it('counts an expired reservation not yet swept as no longer reserved', async () => {
    const tenantId = (await createTenant((await createPlan({ included_executions: 10 })).id)).id;
    for (const run of ['run-a', 'run-b']) {
      const { error } = await serviceClient().rpc('enforce_usage', {
        tenant: tenantId,
        workflow_id: 'wf-a',
        run_ref: run,
      });
      expect(error).toBeNull();
    }
    // run-a's time ran out and no decision has swept it yet: the counter still holds it.
    await superuser().query(
      `with expired as (
         update public.usage_reservations set expires_at = now() - interval '1 minute'
         where tenant_id = $1 and run_ref = 'run-a' returning period_start)
       update public.usage_counters c set reservations_next_expiry = now() - interval '1 minute'
       from expired where c.tenant_id = $1 and c.period_start = expired.period_start`,
      [tenantId],
    );
    expect((await countersRow(tenantId, monthStart(Date.now()))).reserved).toBe(2);

    const { db } = await memberOf(tenantId);
    const [summary] = ok(await getUsageSummary(db));
    expect(summary?.reserved).toBe(1);
  });
});

describe('security', () => {
  let tenantA: string;
  let tenantB: string;
  let alertOfA: number;

  beforeAll(async () => {
    tenantA = (await createTenant((await createPlan({ included_executions: 2 })).id)).id;
    const unlimited = await setPlan({
      id: uniqueId('plan'),
      name: 'Unlimited',
      limit_policy: 'unlimited',
    });
    tenantB = (await createTenant(unlimited.id)).id;
    await ingest(tenantA, [
      { workflow: 'wf-a', startedAt: Date.now() - 60_000 },
      { workflow: 'wf-a', startedAt: Date.now() - 30_000 },
    ]);
    await ingest(tenantB, [{ workflow: 'wf-b', startedAt: Date.now() - 60_000 }]);
    const { rows } = await superuser().query(
      'select id::int from public.usage_alerts where tenant_id = $1 order by id limit 1',
      [tenantA],
    );
    alertOfA = rows[0].id;
  });

  const callsFor = (tenantId: string) =>
    [
      ['tenant_usage_summary', { tenant_id: tenantId }],
      ['tenant_usage_daily', { tenant_id: tenantId }],
      ['tenant_workflow_breakdown', { tenant_id: tenantId }],
      ['tenant_usage_history', { tenant_id: tenantId }],
      ['tenant_usage_export', { tenant_id: tenantId }],
      ['tenant_alerts', { tenant_id: tenantId }],
    ] as const;

  it("gives a member of B nothing of A's, from every function", async () => {
    const { db } = await memberOf(tenantB);
    for (const [fn, args] of callsFor(tenantA)) {
      const { data, error, status } = await db.rpc(fn, args);
      expect({ fn, error, status, data }).toEqual({ fn, error: null, status: 200, data: [] });
    }
    // B's own usage is there: the empty answers are row-level security, not missing data
    // (B's unlimited plan raises no alerts).
    for (const [fn, args] of callsFor(tenantB).filter(([fn]) => fn !== 'tenant_alerts')) {
      const { data } = await db.rpc(fn, args);
      expect(data, fn).not.toEqual([]);
    }
    const [onlyB, ...rest] = ok(await getUsageSummary(db));
    expect(rest).toEqual([]);
    expect(onlyB?.tenantId).toBe(tenantB);
    const marked = await markAlertRead(db, alertOfA);
    expect(marked.error).toMatchObject({ code: 'PT404' });
  });

  it('gives a signed-in user of no tenant nothing', async () => {
    const { db } = await memberOf();
    expect(ok(await getUsageSummary(db))).toEqual([]);
    for (const [fn, args] of callsFor(tenantA)) {
      const { data } = await db.rpc(fn, args);
      expect(data, fn).toEqual([]);
    }
  });

  it('answers anon 401 on every function', async () => {
    const anon = anonClient();
    for (const [fn, args] of callsFor(tenantA)) {
      const { data, error, status } = await anon.rpc(fn, args);
      expect({ fn, status, code: error?.code, data }).toEqual({
        fn,
        status: 401,
        code: '42501',
        data: null,
      });
    }
    expect((await getUsageSummary(anon)).error).toMatchObject({ code: '42501' });
  });

  it('shows a member of two tenants both, each with its own numbers', async () => {
    const { db } = await memberOf(tenantA, tenantB);
    const rows = ok(await getUsageSummary(db));
    const byTenant = new Map(rows.map((r) => [r.tenantId, r]));
    expect(rows).toHaveLength(2);
    expect(byTenant.get(tenantA)).toMatchObject({
      used: 2,
      quota: 2,
      remaining: 0,
      percent: 100,
      level: 'limit',
      limitPolicy: 'hard_limit',
    });
    expect(byTenant.get(tenantB)).toMatchObject({
      used: 1,
      quota: null,
      remaining: null,
      percent: null,
      level: 'normal',
      limitPolicy: 'unlimited',
    });
    const alertsA = ok(await listAlerts(db, { tenantId: tenantA }));
    const alertsB = ok(await listAlerts(db, { tenantId: tenantB }));
    expect(alertsA.length).toBeGreaterThan(0);
    expect(new Set(alertsA.map((a) => a.tenantId))).toEqual(new Set([tenantA]));
    expect(alertsB).toEqual([]); // unlimited plans raise none
  });
});
