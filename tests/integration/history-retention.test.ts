import { describe, expect, it, onTestFinished } from 'vitest';
import { type Logger, silentLogger } from '../../src/observability/logger.ts';
import { runUpkeep } from '../../src/ops/upkeep.ts';
import { collect, createSource, useN8nServer } from '../support/collector.ts';
import { askEnforce, currentCounters } from '../support/enforcement.ts';
import { dropRequest, faultyDb, rpcFetch, waitForLockWait } from '../support/faults.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';

const server = useN8nServer();

/**
 * Reservations for a tenant: `released` of them released `daysAgo` days ago as collected,
 * plus `active` still live. Returns their ids, released first.
 */
async function seedReservations(
  tenantId: string,
  spec: { released: number; daysAgo: number; active?: number },
) {
  const { rows } = await superuser().query<{ id: string }>(
    `insert into public.usage_reservations (tenant_id, period_start, run_ref, created_at, expires_at, released_at, release_reason)
     select $1, date_trunc('month', now() - make_interval(days => $3::int)), null,
            now() - make_interval(days => $3::int), now() - make_interval(days => $3::int) + interval '30 minutes',
            case when g <= $2::int then now() - make_interval(days => $3::int) end,
            case when g <= $2::int then 'collected' end
     from generate_series(1, $2::int + $4::int) g
     returning id::text`,
    [tenantId, spec.released, spec.daysAgo, spec.active ?? 0],
  );
  return rows.map((r) => r.id);
}

async function remaining(tenantId: string): Promise<number> {
  const { rows } = await superuser().query(
    'select count(*)::int as n from public.usage_reservations where tenant_id = $1',
    [tenantId],
  );
  return rows[0].n;
}

async function prune(args: { retention_months?: number; batch?: number }) {
  const { data, error } = await serviceClient().rpc('prune_history', args);
  return {
    data: data as {
      reservations: number;
      scheduled_runs: number;
      collector_runs: number;
      invoice_previews: number;
    } | null,
    error,
  };
}

/** Scheduled and collector runs under a name of this test's own, `daysAgo` days ago. */
async function seedRuns(name: string, daysAgo: number[]) {
  for (const days of daysAgo) {
    await superuser().query(
      `insert into public.scheduled_runs (function_name, started_at, finished_at, ok)
       values ($1, now() - make_interval(days => $2::int), now() - make_interval(days => $2::int), true)`,
      [name, days],
    );
  }
}

async function runsNamed(name: string): Promise<number> {
  const { rows } = await superuser().query(
    'select count(*)::int as n from public.scheduled_runs where function_name = $1',
    [name],
  );
  return rows[0].n;
}

describe('history is pruned after the retention', () => {
  it('deletes released reservations older than the retention, oldest first, a batch at a time', async () => {
    const tenant = await createTenant((await createPlan()).id);
    await seedReservations(tenant.id, { released: 5, daysAgo: 70, active: 2 });
    const recent = await createTenant((await createPlan()).id);
    await seedReservations(recent.id, { released: 3, daysAgo: 10 });

    const first = await prune({ retention_months: 1, batch: 3 });
    expect(first.error).toBeNull();
    expect(first.data?.reservations).toBe(3);
    // Old released ones go; unreleased ones (however old) and recently released ones stay.
    expect(await remaining(tenant.id)).toBe(4);
    const second = await prune({ retention_months: 1, batch: 3 });
    expect(second.data?.reservations).toBe(2);
    expect(await remaining(tenant.id)).toBe(2);
    expect((await prune({ retention_months: 1 })).data?.reservations).toBe(0);
    expect(await remaining(recent.id)).toBe(3);
  });

  it('deletes scheduled and collector runs older than the retention, keeping recent ones', async () => {
    const name = uniqueId('job').toLowerCase();
    await seedRuns(name, [400, 70, 10]);
    const { rows } = await superuser().query<{ id: string }>(
      `insert into public.collector_runs (trigger, started_at, finished_at)
       values ('manual', now() - interval '400 days', now() - interval '400 days'),
              ('manual', now() - interval '10 days', now() - interval '10 days')
       returning id`,
    );
    const { data } = await prune({ retention_months: 1 });
    expect(data?.scheduled_runs).toBeGreaterThanOrEqual(2);
    expect(data?.collector_runs).toBeGreaterThanOrEqual(1);
    expect(await runsNamed(name)).toBe(1);
    const kept = await superuser().query(
      'select id from public.collector_runs where id = any($1::uuid[]) order by started_at',
      [rows.map((r) => r.id)],
    );
    expect(kept.rows).toEqual([{ id: rows[1]?.id }]);
  });

  it('deletes invoice previews of periods that ended before the retention, and dead claims', async () => {
    const tenant = await createTenant((await createPlan()).id);
    // Monthly periods, `monthsAgo` months before this one, each with its cached preview.
    const periods = [5, 4, 3, 0];
    await superuser().query(
      `insert into public.invoice_previews (tenant_id, period_start, period_end, stripe_customer_id,
         stripe_subscription_id, status, fetched_at)
       select $1, date_trunc('month', now()) - make_interval(months => m),
              date_trunc('month', now()) - make_interval(months => m - 1),
              'cus_retention', 'sub_retention', 'none', date_trunc('month', now()) - make_interval(months => m - 1)
       from unnest($2::int[]) m`,
      [tenant.id, periods],
    );
    await superuser().query(
      `insert into public.invoice_preview_claims (tenant_id, period_start, claimed_until)
       values ($1, date_trunc('month', now()) - interval '5 months', date_trunc('month', now()) - interval '4 months'),
              ($1, date_trunc('month', now()), now() + interval '1 minute')`,
      [tenant.id],
    );
    const left = async (table: string) =>
      (
        await superuser().query(
          `select (extract(year from age(date_trunc('month', now()), period_start)) * 12
                  + extract(month from age(date_trunc('month', now()), period_start)))::int as months_ago
           from public.${table} where tenant_id = $1 order by period_start`,
          [tenant.id],
        )
      ).rows.map((r) => r.months_ago);

    // Retention of two months: the cutoff is the start of the month two months ago, so the
    // periods that ended three and four months ago go, oldest first, a batch at a time.
    const first = await prune({ retention_months: 2, batch: 1 });
    expect(first.error).toBeNull();
    expect(first.data?.invoice_previews).toBe(1);
    expect(await left('invoice_previews')).toEqual([4, 3, 0]);
    expect((await prune({ retention_months: 2 })).data?.invoice_previews).toBeGreaterThanOrEqual(1);
    expect(await left('invoice_previews')).toEqual([3, 0]);
    expect(await left('invoice_preview_claims')).toEqual([0]);
  });

  it('refuses a retention or batch below 1 and deletes nothing', async () => {
    const tenant = await createTenant((await createPlan()).id);
    await seedReservations(tenant.id, { released: 2, daysAgo: 400 });
    for (const args of [{ retention_months: 0 }, { batch: 0 }]) {
      const { data, error } = await prune(args);
      expect(data).toBeNull();
      expect(error?.message).toMatch(/must be at least 1/);
    }
    expect(await remaining(tenant.id)).toBe(2);
  });

  it('the scheduled upkeep prunes with the raw-execution retention; a collector run does not', async () => {
    const tenant = await createTenant((await createPlan()).id);
    await seedReservations(tenant.id, { released: 4, daysAgo: 70, active: 1 });
    const name = uniqueId('job').toLowerCase();
    await seedRuns(name, [70]);
    const source = await createSource(server);
    const upkeep = (retentionMonths: number) =>
      runUpkeep({ db: serviceClient(), retentionMonths, log: silentLogger });

    await collect([source], { trigger: 'schedule' });
    expect(await remaining(tenant.id)).toBe(5); // collection does no upkeep
    await upkeep(6);
    expect(await remaining(tenant.id)).toBe(5); // within six months
    expect(await runsNamed(name)).toBe(1);
    const summary = await upkeep(1);
    expect(await remaining(tenant.id)).toBe(1);
    expect(await runsNamed(name)).toBe(0);
    expect(summary.pruned).toMatchObject({ reservations: expect.any(Number) });
  });
});

describe('the upkeep reads prune_history’s answer by name', () => {
  it('an answer with a renamed key is logged naming it, and nothing is reported as pruned', async () => {
    const errors: Array<{ fields: object; message: string | undefined }> = [];
    const log: Logger = {
      ...silentLogger,
      error: (fields, message) => errors.push({ fields, message }),
      child: () => log,
    };
    const renamed = faultyDb(
      rpcFetch(async (call, send) => {
        if (call.fn !== 'prune_history') return send();
        const { reservations, ...rest } = (await (await send()).json()) as Record<string, unknown>;
        return Response.json({ ...rest, released_reservations: reservations });
      }),
    );
    // A retention far back enough that nothing of other test files' history is pruned.
    const summary = await runUpkeep({ db: renamed, retentionMonths: 600, log });
    expect(summary.pruned).toEqual({});
    expect(summary.failed).toEqual([
      'prune_history answered in a shape this version does not read',
    ]);
    expect(errors).toEqual([
      {
        fields: { error: expect.stringMatching(/→ at reservations/) },
        message: 'prune_history answered in a shape this version does not read',
      },
    ]);
  });
});

describe('an upkeep that fails says so', () => {
  it.each(['maintain_execution_partitions', 'prune_history'])(
    'a call of %s that never reaches the database is listed as failed, the other still runs',
    async (fn) => {
      const calls: string[] = [];
      const db = faultyDb(
        rpcFetch((call, send) => {
          calls.push(call.fn);
          return call.fn === fn ? dropRequest(call) : send();
        }),
      );
      const summary = await runUpkeep({ db, retentionMonths: 600, log: silentLogger });
      expect(calls).toEqual(['maintain_execution_partitions', 'prune_history']);
      expect(summary.failed).toEqual([expect.stringMatching(new RegExp(`^${fn} failed: `))]);
    },
  );
});

describe('pruning never takes a reservation a retry brings back', () => {
  /**
   * A tenant whose run `r` had its reservation expire long before the retention cutoff;
   * a transaction holds that reservation's row lock until `release()`, so the retry and
   * the prune queue behind it in the order the test starts them.
   */
  async function expiredLongAgo() {
    const tenant = await createTenant((await createPlan({ included_executions: 5 })).id);
    const { rows } = await superuser().query<{ id: string }>(
      `insert into public.usage_reservations (tenant_id, period_start, run_ref, created_at, expires_at, released_at, release_reason)
       values ($1, now() - interval '400 days', 'r', now() - interval '400 days',
               now() - interval '399 days', now() - interval '399 days', 'expired')
       returning id::text`,
      [tenant.id],
    );
    const holder = await superuser().connect();
    await holder.query('begin');
    await holder.query('select 1 from public.usage_reservations where id = $1 for update', [
      rows[0]?.id,
    ]);
    let held = true;
    const release = async () => {
      if (!held) return;
      held = false;
      await holder.query('commit');
      holder.release();
    };
    // A test that fails before releasing must not leave the lock (and a pool connection
    // of the RPC endpoint, with the retry waiting on it) to the other files.
    onTestFinished(release);
    return { tenant, id: Number(rows[0]?.id), release };
  }

  async function live(tenantId: string) {
    const { rows } = await superuser().query(
      'select id::int, run_ref from public.usage_reservations where tenant_id = $1 and released_at is null',
      [tenantId],
    );
    return rows;
  }

  /** prune_history on a connection of its own, so the test can see it wait. */
  async function startPrune() {
    const client = await superuser().connect();
    const { rows } = await client.query('select pg_backend_pid() as pid');
    const done = client
      .query('select public.prune_history(retention_months => 1, batch => 100000)')
      .finally(() => client.release());
    await waitForLockWait({ pid: rows[0].pid });
    return { done };
  }

  it('a retry that revives the reservation first keeps it', async () => {
    const { tenant, id, release } = await expiredLongAgo();
    const retry = askEnforce(tenant.id, { runRef: 'r' });
    // The RPC endpoint's statement carries the arguments, so the tenant id finds it.
    await waitForLockWait({ queryLike: tenant.id });
    const pruning = await startPrune();
    await release();
    const [answer] = await Promise.all([retry, pruning.done]);

    expect(answer).toMatchObject({ status: 200, body: { reservationId: id } });
    expect(await live(tenant.id)).toEqual([{ id, run_ref: 'r' }]);
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
  });

  it('a retry whose old reservation is pruned first reserves afresh', async () => {
    const { tenant, id, release } = await expiredLongAgo();
    const pruning = await startPrune();
    const retry = askEnforce(tenant.id, { runRef: 'r' });
    await waitForLockWait({ queryLike: tenant.id });
    await release();
    const [answer] = await Promise.all([retry, pruning.done]);

    expect(answer.status).toBe(200);
    expect(answer.body.reservationId).not.toBeNull();
    expect(answer.body.reservationId).not.toBe(id);
    expect(await live(tenant.id)).toEqual([{ id: answer.body.reservationId, run_ref: 'r' }]);
    expect(await currentCounters(tenant.id)).toMatchObject({ reserved: '1' });
  });
});
