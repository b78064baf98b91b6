import { randomUUID } from 'node:crypto';
import { addMonths, subMonths } from 'date-fns';
import { describe, expect, it } from 'vitest';
import { decisionSchema } from '../../src/enforcement/schema.ts';
import { collect, createSource, useN8nServer } from '../support/collector.ts';
import {
  activeReservations,
  askEnforce,
  currentCounters,
  enforceHandler,
  enforceRequest,
  expireReservations,
  releasedReservations,
  runnerSecret,
  secondRunnerSecret,
  setCollectedUsage,
  unreachableDb,
} from '../support/enforcement.ts';
import { faultyDb, loseResponse, rpcFetch } from '../support/faults.ts';
import { createPlan, createTenant, setPlan } from '../support/fixtures.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';

const server = useN8nServer();
const handler = enforceHandler();

const ask = (tenant: string, extra: Record<string, unknown> = {}, h = handler) =>
  askEnforce(tenant, extra, h);

async function planWith(fields: Record<string, unknown>) {
  const plan = await createPlan();
  // Some cases send null, which set_plan takes as "none" and its generated type does not list.
  return setPlan({ id: plan.id, name: 'Test', ...fields } as Parameters<typeof setPlan>[0]);
}

/** A new tenant on a new plan of these terms. */
async function tenantOn(fields: Record<string, unknown>) {
  return createTenant((await planWith(fields)).id);
}

/** Sets the subscription status; a delinquent one (past_due, unpaid, canceled) since `delinquentDaysAgo`. */
async function setStatus(tenantId: string, status: string, delinquentDaysAgo = 0) {
  await superuser().query(`update public.tenants set subscription_status = $2 where id = $1;`, [
    tenantId,
    status,
  ]);
  await superuser().query(
    `update public.tenants set delinquent_since = now() - make_interval(days => $2)
     where id = $1 and delinquent_since is not null`,
    [tenantId, delinquentDaysAgo],
  );
}

/** Sets the subscription status as a Stripe event would, leaving the delinquency clock to the database. */
async function moveStatus(tenantId: string, status: string) {
  await superuser().query('update public.tenants set subscription_status = $2 where id = $1', [
    tenantId,
    status,
  ]);
}

describe('enforce: policies', () => {
  it('hard limit: allows below the limit with a reservation, blocks at it with 402', async () => {
    const tenant = await tenantOn({ included_executions: 10, limit_policy: 'hard_limit' });
    await setCollectedUsage(tenant.id, 8);

    const first = await ask(tenant.id, { workflowId: 'wf1', runRef: 'run-1' });
    expect(first.status).toBe(200);
    expect(decisionSchema.parse(first.body)).toMatchObject({
      allowed: true,
      reason: 'within_limit',
      committed: 9,
      limit: 10,
      remaining: 1,
      percent: 90,
      level: 'warning',
    });
    expect(first.body.reservationId).toEqual(expect.any(Number));
    expect(first.headers.get('x-usage-limit')).toBe('10');
    expect(first.headers.get('x-usage-remaining')).toBe('1');
    expect(Number(first.headers.get('x-usage-reset'))).toBe(
      Date.parse(first.body.periodEnd as string) / 1000,
    );

    expect((await ask(tenant.id)).body).toMatchObject({
      allowed: true,
      committed: 10,
      remaining: 0,
      level: 'limit',
    });
    const blocked = await ask(tenant.id);
    expect(blocked.status).toBe(402);
    expect(decisionSchema.parse(blocked.body)).toMatchObject({
      allowed: false,
      reason: 'limit_reached',
      committed: 10,
    });
    expect(await activeReservations(tenant.id)).toBe(2);
  });

  it('overage plan: allows above the limit and marks it overage, without reservations', async () => {
    const tenant = await tenantOn({
      included_executions: 100,
      limit_policy: 'overage',
      overage_unit_amount: 0.5,
    });
    await setCollectedUsage(tenant.id, 150);
    const { status, body } = await ask(tenant.id);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      allowed: true,
      reason: 'overage_allowed',
      committed: 150,
      remaining: 0,
      level: 'overage',
    });
    expect(body.reservationId).toBeNull();
    expect((await ask(tenant.id)).body.reason).toBe('overage_allowed');
    await setCollectedUsage(tenant.id, 10);
    expect((await ask(tenant.id)).body).toMatchObject({ reason: 'within_limit', level: 'normal' });
  });

  it('unlimited plan: always allowed, no limit headers', async () => {
    const tenant = await tenantOn({ limit_policy: 'unlimited', included_executions: null });
    await setCollectedUsage(tenant.id, 1_000_000);
    const { status, body, headers } = await ask(tenant.id);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      allowed: true,
      reason: 'unlimited',
      limit: null,
      remaining: null,
      percent: null,
    });
    expect(headers.get('x-usage-limit')).toBeNull();
    expect(headers.get('x-usage-reset')).not.toBeNull();
  });

  it('trial: blocks at the trial quota even on an overage plan', async () => {
    const plan = await planWith({
      included_executions: 1000,
      limit_policy: 'overage',
      overage_unit_amount: 1,
    });
    await superuser().query('update public.plans set trial_included_executions = 3 where id = $1', [
      plan.id,
    ]);
    const tenant = await createTenant(plan.id);
    await setStatus(tenant.id, 'trialing');
    for (let i = 0; i < 3; i++)
      expect((await ask(tenant.id)).body).toMatchObject({
        allowed: true,
        reason: 'trial',
        limit: 3,
      });
    expect((await ask(tenant.id)).body).toMatchObject({ allowed: false, reason: 'limit_reached' });
  });

  it.each(['past_due', 'unpaid', 'canceled'])(
    '%s: allowed during the grace period, then blocked',
    async (status) => {
      const tenant = await tenantOn({ included_executions: 100 });
      await superuser().query('update public.plans set grace_days = 3 where id = $1', [
        tenant.plan_id,
      ]);
      await setStatus(tenant.id, status, 1);
      expect((await ask(tenant.id)).body).toMatchObject({ allowed: true, reason: 'grace_period' });
      await setStatus(tenant.id, status, 4);
      const blocked = await ask(tenant.id);
      expect(blocked.status).toBe(402);
      expect(blocked.body).toMatchObject({ allowed: false, reason: 'subscription_inactive' });
    },
  );

  it.each(['unpaid', 'canceled'])(
    'past_due beyond the grace period, then %s: still blocked; the grace period starts again only after it was paid',
    async (status) => {
      const tenant = await tenantOn({ included_executions: 100, grace_days: 3 });
      await setStatus(tenant.id, 'past_due', 10);
      expect((await ask(tenant.id)).body).toMatchObject({ reason: 'subscription_inactive' });

      // Stripe's dunning gives up: the same unpaid invoice, not a new delinquency.
      await moveStatus(tenant.id, status);
      const after = await ask(tenant.id);
      expect(after.status).toBe(402);
      expect(after.body).toMatchObject({ allowed: false, reason: 'subscription_inactive' });

      // Paid (a new subscription, or the invoice settled), then past due again: a new grace period.
      await moveStatus(tenant.id, 'active');
      expect((await ask(tenant.id)).body).toMatchObject({ allowed: true, reason: 'within_limit' });
      await moveStatus(tenant.id, 'past_due');
      expect((await ask(tenant.id)).body).toMatchObject({ allowed: true, reason: 'grace_period' });
    },
  );

  it.each(['paused', 'incomplete_expired'])('%s: blocked at once', async (status) => {
    const tenant = await tenantOn({ included_executions: 100 });
    await setStatus(tenant.id, status);
    expect((await ask(tenant.id)).body).toMatchObject({
      allowed: false,
      reason: 'subscription_inactive',
    });
  });

  it('accepts the external reference instead of the id', async () => {
    const tenant = await createTenant();
    expect((await ask(tenant.external_ref as string)).body).toMatchObject({
      allowed: true,
      tenantId: tenant.id,
    });
  });

  it('accepts an external reference shaped like a UUID (an account id in the operator’s product)', async () => {
    const plan = await planWith({ included_executions: 5 });
    const externalRef = randomUUID();
    const { data: tenant, error } = await serviceClient().rpc('add_tenant', {
      name: uniqueId('tenant'),
      plan_id: plan.id,
      external_ref: externalRef,
    });
    expect(error).toBeNull();
    const answer = await ask(externalRef, { runRef: 'run-a' });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ allowed: true, tenantId: tenant?.id, committed: 1 });
    // Its id names it as well.
    expect((await ask(tenant?.id as string)).body).toMatchObject({ committed: 2 });
  });

  it('refuses to store an external reference /enforce could never name, and stores one it can', async () => {
    const plan = await planWith({ included_executions: 5 });
    const add = (externalRef: string) =>
      serviceClient().rpc('add_tenant', {
        name: uniqueId('tenant'),
        plan_id: plan.id,
        external_ref: externalRef,
      });
    // Trimmed by the endpoint (white space at an end, of any kind), or refused by it (a
    // control or format character, a space other than the plain one).
    for (const externalRef of [
      ' acme',
      'acme ',
      '\tacme',
      'acme\n',
      'acme\u00a0',
      '\ufeffacme',
      'ac\u200bme',
      'ac\u2003me',
      'ac\u202eme',
    ]) {
      const { error, status } = await add(externalRef);
      expect({ externalRef, status, code: error?.code }).toEqual({
        externalRef,
        status: 400,
        code: '23514',
      });
      expect(error?.message).toMatch(/tenants_external_ref_enforceable/);
    }
    const named = `acme co ${randomUUID().slice(0, 8)} ünïcödé 🚀`;
    const { data: tenant, error } = await add(named);
    expect(error).toBeNull();
    expect((await ask(named)).body).toMatchObject({ allowed: true, tenantId: tenant?.id });
  });

  it('answers 404 for an unknown tenant', async () => {
    const { status, body } = await ask('no-such-tenant');
    expect(status).toBe(404);
    expect(body.error?.code).toBe('unknown_tenant');
    expect((await ask('00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });

  it('a dry run answers without reserving', async () => {
    const tenant = await tenantOn({ included_executions: 5 });
    const { body } = await ask(tenant.id, { dryRun: true });
    expect(body).toMatchObject({ allowed: true, committed: 0, reservationId: null });
    expect(await activeReservations(tenant.id)).toBe(0);
  });
});

describe('enforce: the quota and standing rules have one definition', () => {
  // enforce_usage calls private.plan_quota and private.usage_standing, which the alerts,
  // the tenant usage API and the admin lists use too: a copy of either that drifted from
  // them would fail here.
  it('answers the quota private.plan_quota gives, trial quota included', async () => {
    for (const plan of [
      { limit_policy: 'hard_limit', included_executions: 10, trialing: false },
      { limit_policy: 'hard_limit', included_executions: 10, trialing: true },
      { limit_policy: 'hard_limit', included_executions: 10, trial: 3, trialing: false },
      { limit_policy: 'hard_limit', included_executions: 10, trial: 3, trialing: true },
      { limit_policy: 'overage', included_executions: 10, trial: 4, trialing: true },
      { limit_policy: 'unlimited', trial: 3, trialing: true },
    ]) {
      const tenant = await tenantOn({
        limit_policy: plan.limit_policy,
        included_executions: plan.included_executions ?? null,
        trial_included_executions: plan.trial ?? null,
        ...(plan.limit_policy === 'overage' ? { overage_unit_amount: 1 } : {}),
      });
      if (plan.trialing) await setStatus(tenant.id, 'trialing');
      const { body } = await ask(tenant.id, { dryRun: true });
      const { rows } = await superuser().query(
        'select private.plan_quota($1, $2, $3, $4)::int as quota',
        [plan.limit_policy, plan.trialing, plan.included_executions ?? null, plan.trial ?? null],
      );
      expect({ plan, limit: body.limit }).toEqual({ plan, limit: rows[0].quota });
    }
  });

  it('reports percent, level and remaining as private.usage_standing does', async () => {
    for (const [quota, used] of [
      [100, 0],
      [100, 79],
      [100, 80],
      [100, 100],
      [100, 101],
      [3, 1],
      [0, 0],
    ] as const) {
      const tenant = await tenantOn({
        included_executions: quota,
        limit_policy: 'overage',
        overage_unit_amount: 1,
      });
      await setCollectedUsage(tenant.id, used);
      const { body } = await ask(tenant.id, { dryRun: true });
      const { rows } = await superuser().query(
        'select remaining::int, percent::float8 as percent, level from private.usage_standing($1, $2, $3)',
        [used, quota, [80, 100]],
      );
      expect({ remaining: body.remaining, percent: body.percent, level: body.level }).toEqual(
        rows[0],
      );
    }
  });
});

describe('enforce: periods', () => {
  it("starts afresh in a new period: last period's usage does not count", async () => {
    const tenant = await tenantOn({ included_executions: 10 });
    // A monthly Stripe period that ended a few days ago (the webhook for the next is late).
    const anchor = new Date(Math.floor(Date.now() / 1000) * 1000 - 5 * 86400_000);
    const start = subMonths(anchor, 1);
    const end = anchor;
    await superuser().query(
      'update public.tenants set current_period_start = $2, current_period_end = $3 where id = $1',
      [tenant.id, start, end],
    );
    // The stored Stripe period has ended (no webhook yet): the period steps forward from it.
    await setCollectedUsage(tenant.id, 10, start, end);
    const { body } = await ask(tenant.id);
    expect(body).toMatchObject({ allowed: true, committed: 1 });
    expect(Date.parse(body.periodStart as string)).toBe(end.getTime());
    expect(Date.parse(body.periodEnd as string)).toBe(addMonths(start, 2).getTime());
  });
});

describe('enforce: limits hold between collections', () => {
  it('200 concurrent requests for a tenant 10 below a hard limit allow exactly 10', async () => {
    const tenant = await tenantOn({ included_executions: 50 });
    await setCollectedUsage(tenant.id, 40);
    const results = await Promise.all(Array.from({ length: 200 }, () => ask(tenant.id)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(10);
    expect(results.filter((r) => r.status === 402)).toHaveLength(190);
    expect(await activeReservations(tenant.id)).toBe(10);
  });

  it('the collector releases reservations as real executions arrive', async () => {
    const plan = await planWith({ included_executions: 5 });
    const source = await createSource(server, { planId: plan.id });
    for (let i = 0; i < 3; i++) expect((await ask(source.tenantId)).status).toBe(200);
    expect(await activeReservations(source.tenantId)).toBe(3);

    source.fake.addMany(2, (i) => ({
      startedAt: new Date(Date.now() - (10 - i) * 1000).toISOString(),
    }));
    await collect([source]);
    expect(await activeReservations(source.tenantId)).toBe(1);
    const { body } = await ask(source.tenantId, { dryRun: true });
    expect(body.committed).toBe(3); // 2 collected + 1 still reserved
    expect(await releasedReservations(source.tenantId, 'collected')).toBe(2);
  });

  it('expired reservations stop counting', async () => {
    const tenant = await tenantOn({ included_executions: 2 });
    expect((await ask(tenant.id)).status).toBe(200);
    expect((await ask(tenant.id)).status).toBe(200);
    expect((await ask(tenant.id)).status).toBe(402);
    await expireReservations(tenant.id);
    const after = await ask(tenant.id);
    expect(after.status).toBe(200);
    expect(after.body.committed).toBe(1);
    expect(await releasedReservations(tenant.id, 'expired')).toBe(2);
  });
});

describe('enforce: the fast path stays exact', () => {
  /** A tenant with 5 included executions and two reservations whose TTL has passed. */
  async function withTwoExpiredReservations() {
    const tenant = await tenantOn({ included_executions: 5 });
    await ask(tenant.id);
    await ask(tenant.id);
    await expireReservations(tenant.id);
    return tenant;
  }

  it('sweeps reservations due to expire before allowing, so committed counts only live ones', async () => {
    const tenant = await withTwoExpiredReservations();

    const after = await ask(tenant.id);
    expect(after.body).toMatchObject({ allowed: true, committed: 1, remaining: 4 });
    expect(await activeReservations(tenant.id)).toBe(1);
    const { rows } = await superuser().query(
      'select expires_at from public.usage_reservations where id = $1',
      [after.body.reservationId],
    );
    // The counters row now remembers the one live reservation's expiry.
    expect(await currentCounters(tenant.id)).toMatchObject({
      reserved: '1',
      reservations_next_expiry: rows[0].expires_at,
    });
  });

  it('a dry run does not count expired reservations, and writes nothing', async () => {
    const tenant = await withTwoExpiredReservations();
    const before = await currentCounters(tenant.id);

    const { body } = await ask(tenant.id, { dryRun: true });
    expect(body).toMatchObject({ allowed: true, committed: 0, reservationId: null });
    expect(await activeReservations(tenant.id)).toBe(2);
    expect(await currentCounters(tenant.id)).toEqual(before);
  });

  it('decisions that reserve nothing create no counters row', async () => {
    const overage = await tenantOn({
      included_executions: 5,
      limit_policy: 'overage',
      overage_unit_amount: 0.5,
    });
    const unlimited = await tenantOn({ included_executions: null, limit_policy: 'unlimited' });
    expect((await ask(overage.id)).body).toMatchObject({ allowed: true, committed: 0 });
    expect((await ask(unlimited.id)).body).toMatchObject({ allowed: true, reason: 'unlimited' });
    expect(await currentCounters(overage.id)).toBeNull();
    expect(await currentCounters(unlimited.id)).toBeNull();
  });

  it('a burst racing a due expiry still allows exactly up to the limit', async () => {
    const tenant = await tenantOn({ included_executions: 10 });
    await setCollectedUsage(tenant.id, 2);
    for (let i = 0; i < 5; i++) expect((await ask(tenant.id)).status).toBe(200);
    await expireReservations(tenant.id);

    // 8 slots: the 5 expired reservations free theirs. Some decisions take the fast path,
    // the first to see the due expiry sweeps under the row lock.
    const results = await Promise.all(Array.from({ length: 100 }, () => ask(tenant.id)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(8);
    expect(await activeReservations(tenant.id)).toBe(8);
    expect(await currentCounters(tenant.id)).toMatchObject({ billable: '2', reserved: '8' });
  });

  it('a blocked decision with nothing due to expire neither writes nor locks', async () => {
    const tenant = await tenantOn({ included_executions: 1 });
    expect((await ask(tenant.id)).status).toBe(200);
    const before = await currentCounters(tenant.id);

    expect((await ask(tenant.id)).status).toBe(402);
    // Same row version, same xmax: no update, and no row lock (which would set xmax).
    expect(await currentCounters(tenant.id)).toEqual(before);
  });

  it('deleting a tenant deletes its counters and its reservations, released or not', async () => {
    const tenant = await tenantOn({ included_executions: 5 });
    const other = await tenantOn({ included_executions: 5 });
    await ask(tenant.id);
    await ask(tenant.id);
    await ask(other.id);
    await expireReservations(tenant.id);
    await ask(tenant.id); // releases the two expired ones, reserves a third

    await superuser().query('delete from public.tenants where id = $1', [tenant.id]);
    const { rows } = await superuser().query(
      'select tenant_id, count(*)::int as n from public.usage_reservations where tenant_id = any($1) group by tenant_id',
      [[tenant.id, other.id]],
    );
    expect(rows).toEqual([{ tenant_id: other.id, n: 1 }]);
  });

  it('the collector keeps the earliest expiry in step with the reservations it releases', async () => {
    const plan = await planWith({ included_executions: 5 });
    const source = await createSource(server, { planId: plan.id });
    await ask(source.tenantId);
    await ask(source.tenantId);
    source.fake.addMany(2, (i) => ({
      startedAt: new Date(Date.now() - (10 - i) * 1000).toISOString(),
    }));
    const summary = await collect([source]);
    expect(summary).toMatchObject({ sourcesOk: 1, billableCounted: 2, errors: [] });
    expect(await currentCounters(source.tenantId)).toMatchObject({
      billable: '2',
      reserved: '0',
      reservations_next_expiry: null,
    });
  });
});

/** Gives the tenant a Stripe period of a month that ends an hour from now. */
async function periodEndingSoon(tenantId: string) {
  const end = new Date(Math.floor(Date.now() / 1000) * 1000 + 3600_000);
  const start = subMonths(end, 1);
  await superuser().query(
    'update public.tenants set current_period_start = $2, current_period_end = $3 where id = $1',
    [tenantId, start, end],
  );
  return { start, end };
}

/**
 * That period ends and Stripe's renewal starts the next one, without waiting for it: the
 * period, with its counters and reservations, moves back until it ended a minute ago.
 * Returns the new period's start.
 */
async function rollOver(tenantId: string, period: { start: Date; end: Date }) {
  const shift = period.end.getTime() - Date.now() + 60_000;
  const start = new Date(period.start.getTime() - shift);
  const end = new Date(period.end.getTime() - shift);
  await superuser().query(
    `update public.usage_counters set period_start = $3, period_end = $4
     where tenant_id = $1 and period_start = $2`,
    [tenantId, period.start, start, end],
  );
  await superuser().query(
    'update public.usage_reservations set period_start = $3 where tenant_id = $1 and period_start = $2',
    [tenantId, period.start, start],
  );
  await superuser().query(
    'update public.tenants set current_period_start = $2, current_period_end = $3 where id = $1',
    [tenantId, end, addMonths(end, 1)],
  );
  return end;
}

async function countersOf(tenantId: string) {
  const { rows } = await superuser().query<{ reserved: string }>(
    'select reserved from public.usage_counters where tenant_id = $1 order by period_start',
    [tenantId],
  );
  return rows;
}

async function reservationsOf(tenantId: string) {
  const { rows } = await superuser().query<{
    id: string;
    run_ref: string | null;
    release_reason: string | null;
    live: boolean;
  }>(
    `select id::text, run_ref, release_reason, expires_at > now() as live
     from public.usage_reservations where tenant_id = $1 order by id`,
    [tenantId],
  );
  return rows;
}

describe('enforce: a retried run is decided once (runRef)', () => {
  it('a retry gets the same reservation and reserves nothing more', async () => {
    const tenant = await tenantOn({ included_executions: 5 });
    const first = await ask(tenant.id, { runRef: 'run-a' });
    const retry = await ask(tenant.id, { runRef: 'run-a' });
    expect(first.status).toBe(200);
    expect(retry.status).toBe(200);
    expect(retry.body.reservationId).toBe(first.body.reservationId);
    expect(retry.body.committed).toBe(1);
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
    expect(await reservationsOf(tenant.id)).toEqual([
      { id: String(first.body.reservationId), run_ref: 'run-a', release_reason: null, live: true },
    ]);
  });

  it('a retry of the run that took the last slot is allowed; another run is not', async () => {
    const tenant = await tenantOn({ included_executions: 1 });
    const first = await ask(tenant.id, { runRef: 'run-a' });
    expect(first.status).toBe(200);
    const retry = await ask(tenant.id, { runRef: 'run-a' });
    expect(retry.status).toBe(200);
    expect(retry.body).toMatchObject({
      allowed: true,
      reason: 'within_limit',
      committed: 1,
      reservationId: first.body.reservationId,
    });
    expect((await ask(tenant.id, { runRef: 'run-b' })).status).toBe(402);
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
  });

  it('50 racing retries of one run hold one reservation between them', async () => {
    const tenant = await tenantOn({ included_executions: 10 });
    const results = await Promise.all(
      Array.from({ length: 50 }, () => ask(tenant.id, { runRef: 'run-a' })),
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(new Set(results.map((r) => r.body.reservationId)).size).toBe(1);
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
    expect(await activeReservations(tenant.id)).toBe(1);
  });

  it('at the limit, racing retries of one run and another run still hold one slot', async () => {
    const tenant = await tenantOn({ included_executions: 1 });
    const results = await Promise.all([
      ...Array.from({ length: 50 }, () =>
        ask(tenant.id, { runRef: 'run-a' }).then((r) => ({ ...r, run: 'a' })),
      ),
      ask(tenant.id, { runRef: 'run-b' }).then((r) => ({ ...r, run: 'b' })),
    ]);
    const allowed = results.filter((r) => r.status === 200);
    // Whichever run took the slot, only it is allowed, every time with its one reservation.
    expect(new Set(allowed.map((r) => r.run)).size).toBe(1);
    expect(new Set(allowed.map((r) => r.body.reservationId)).size).toBe(1);
    // Every retry of the winner is allowed: run-a 50 times, or run-b once.
    expect(allowed).toHaveLength(allowed[0]?.run === 'a' ? 50 : 1);
    expect(results.filter((r) => r.status === 402)).toHaveLength(results.length - allowed.length);
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
    expect(await activeReservations(tenant.id)).toBe(1);
  });

  it('a retry after the run was collected is allowed without a new reservation, even at the limit', async () => {
    const plan = await planWith({ included_executions: 1 });
    const source = await createSource(server, { planId: plan.id });
    const first = await ask(source.tenantId, { runRef: 'run-a' });
    expect(first.status).toBe(200);
    source.fake.addMany(1, () => ({ startedAt: new Date(Date.now() - 5000).toISOString() }));
    await collect([source]);

    const retry = await ask(source.tenantId, { runRef: 'run-a' });
    expect(retry.status).toBe(200);
    expect(retry.body).toMatchObject({ committed: 1, reservationId: first.body.reservationId });
    expect(await currentCounters(source.tenantId)).toMatchObject({
      billable: '1',
      reserved: '0',
      reservations_next_expiry: null,
    });
    expect(await activeReservations(source.tenantId)).toBe(0);
    expect((await ask(source.tenantId, { runRef: 'run-b' })).status).toBe(402);
  });

  it('a retry after the reservation expired takes a slot again under the same reservation', async () => {
    const tenant = await tenantOn({ included_executions: 1 });
    const first = await ask(tenant.id, { runRef: 'run-a' });
    await expireReservations(tenant.id);

    const retry = await ask(tenant.id, { runRef: 'run-a' });
    expect(retry.status).toBe(200);
    expect(retry.body).toMatchObject({ committed: 1, reservationId: first.body.reservationId });
    expect(await reservationsOf(tenant.id)).toEqual([
      { id: String(first.body.reservationId), run_ref: 'run-a', release_reason: null, live: true },
    ]);
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
    expect((await ask(tenant.id, { runRef: 'run-b' })).status).toBe(402);
  });

  it('a retry of a blocked run is decided afresh', async () => {
    const tenant = await tenantOn({ included_executions: 1 });
    expect((await ask(tenant.id, { runRef: 'run-a' })).status).toBe(200);
    expect((await ask(tenant.id, { runRef: 'run-b' })).status).toBe(402);
    await expireReservations(tenant.id);
    const retry = await ask(tenant.id, { runRef: 'run-b' });
    expect(retry.status).toBe(200);
    expect(retry.body.committed).toBe(1);
  });

  it('a runner whose answer was lost retries and gets the run counted once', async () => {
    const tenant = await tenantOn({ included_executions: 5 });
    // The decision commits; its answer never reaches the handler (fail-closed: 503).
    const lossy = enforceHandler(
      { failMode: 'closed' },
      faultyDb(rpcFetch((call, send) => loseResponse(call, send))),
    );
    expect((await ask(tenant.id, { runRef: 'run-a' }, lossy)).status).toBe(503);
    expect(await activeReservations(tenant.id)).toBe(1);

    const retry = await ask(tenant.id, { runRef: 'run-a' });
    expect(retry.status).toBe(200);
    const [only] = await reservationsOf(tenant.id);
    expect(retry.body).toMatchObject({ committed: 1, reservationId: Number(only?.id) });
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
    expect(await activeReservations(tenant.id)).toBe(1);
  });

  it('a run allowed just before its period ended holds no slot in the next: its retry is decided afresh', async () => {
    const tenant = await tenantOn({ included_executions: 1 });
    const period = await periodEndingSoon(tenant.id);
    // Run A is allowed just before the period ends; the runner loses the answer.
    expect((await ask(tenant.id, { runRef: 'run-a' })).status).toBe(200);
    const next = await rollOver(tenant.id, period);

    // Run B takes the new period's only slot; A, retried now, would run in it too.
    const b = await ask(tenant.id, { runRef: 'run-b' });
    expect(b.status).toBe(200);
    expect(Date.parse(b.body.periodStart as string)).toBe(next.getTime());
    const retryA = await ask(tenant.id, { runRef: 'run-a' });
    expect(retryA.status).toBe(402);
    expect(retryA.body).toMatchObject({ reason: 'limit_reached', committed: 1 });
    expect(retryA.body.reservationId).toBeNull();
  });

  it('a retry in the next period takes a slot there and releases its hold in the last', async () => {
    const tenant = await tenantOn({ included_executions: 1 });
    const period = await periodEndingSoon(tenant.id);
    const first = await ask(tenant.id, { runRef: 'run-a' });
    expect(first.status).toBe(200);
    await rollOver(tenant.id, period);

    const retryA = await ask(tenant.id, { runRef: 'run-a' });
    expect(retryA.status).toBe(200);
    expect(retryA.body).toMatchObject({ committed: 1, reservationId: first.body.reservationId });
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
    expect(await countersOf(tenant.id)).toEqual([{ reserved: '0' }, { reserved: '1' }]);
    expect(await reservationsOf(tenant.id)).toEqual([
      { id: String(first.body.reservationId), run_ref: 'run-a', release_reason: null, live: true },
    ]);
    expect((await ask(tenant.id, { runRef: 'run-b' })).status).toBe(402);
  });

  it('run references are per tenant', async () => {
    const plan = await planWith({ included_executions: 5 });
    const one = await createTenant(plan.id);
    const two = await createTenant(plan.id);
    const a = await ask(one.id, { runRef: 'shared-ref' });
    const b = await ask(two.id, { runRef: 'shared-ref' });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(b.body.reservationId).not.toBe(a.body.reservationId);
    expect(await activeReservations(two.id)).toBe(1);
  });
});

describe('enforce: contract and security', () => {
  const changesNothing = async (tenantId: string, response: Response, status: number) => {
    expect(response.status).toBe(status);
    expect(await activeReservations(tenantId)).toBe(0);
  };

  it.each([
    ['no secret', null],
    ['a wrong secret', 'f'.repeat(64)],
    ['an empty bearer', ''],
  ])('answers 401 for %s, changing nothing', async (_, secret) => {
    const tenant = await createTenant();
    const response = await handler(enforceRequest({ tenant: tenant.id }, { secret }));
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(((await response.clone().json()) as { error: { code: string } }).error.code).toBe(
      'unauthorized',
    );
    await changesNothing(tenant.id, response, 401);
  });

  it('accepts every active secret and refuses one rotated out', async () => {
    const tenant = await createTenant();
    expect(
      (
        await handler(
          enforceRequest({ tenant: tenant.id, dryRun: true }, { secret: secondRunnerSecret }),
        )
      ).status,
    ).toBe(200);
    const rotated = enforceHandler({}, serviceClient(), [secondRunnerSecret]);
    await changesNothing(
      tenant.id,
      await rotated(enforceRequest({ tenant: tenant.id }, { secret: runnerSecret })),
      401,
    );
  });

  it('answers 405 with Allow for other methods', async () => {
    const response = await handler(enforceRequest(null, { method: 'GET' }));
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
  });

  it.each([
    ['a missing tenant', {}],
    ['an empty tenant', { tenant: '' }],
    ['a tenant that is not a string', { tenant: 42 }],
    ['an unknown field', { tenant: 'x', plan: 'free' }],
    ['a non-boolean dryRun', { tenant: 'x', dryRun: 'yes' }],
  ])('answers 400 with field errors for %s', async (_, body) => {
    const response = await handler(enforceRequest(body));
    expect(response.status).toBe(400);
    const error = ((await response.json()) as { error: { code: string; details: unknown[] } })
      .error;
    expect(error.code).toBe('invalid_request');
    expect(error.details.length).toBeGreaterThan(0);
  });

  it('answers 400 for a body that is not JSON, 413 for an oversized one, 415 for another type; nothing changes', async () => {
    const tenant = await createTenant();
    await changesNothing(
      tenant.id,
      await handler(enforceRequest(`{"tenant": "${tenant.id}"`)),
      400,
    );
    await changesNothing(
      tenant.id,
      await handler(enforceRequest({ tenant: tenant.id, runRef: 'x'.repeat(10_000) })),
      413,
    );
    await changesNothing(
      tenant.id,
      await handler(
        enforceRequest({ tenant: tenant.id }, { headers: { 'content-type': 'text/plain' } }),
      ),
      415,
    );
  });

  it('fails open when the database cannot be reached, if so configured', async () => {
    const open = enforceHandler({ failMode: 'open' }, unreachableDb());
    const response = await open(enforceRequest({ tenant: 'any' }));
    expect(response.status).toBe(200);
    expect(decisionSchema.parse(await response.json())).toMatchObject({
      allowed: true,
      reason: 'fail_open',
    });
  });

  it('fails closed with 503 when so configured', async () => {
    const closed = enforceHandler({ failMode: 'closed' }, unreachableDb());
    const response = await closed(enforceRequest({ tenant: 'any' }));
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('unavailable');
  });
});
