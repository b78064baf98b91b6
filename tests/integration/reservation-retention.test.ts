import { describe, expect, it } from 'vitest';
import { collect, createSource, useN8nServer } from '../support/collector.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { serviceClient, superuser } from '../support/stack.ts';

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
  return serviceClient().rpc('prune_released_reservations', args);
}

describe('released reservations are pruned after the retention', () => {
  it('deletes released reservations older than the retention, oldest first, a batch at a time', async () => {
    const tenant = await createTenant((await createPlan()).id);
    await seedReservations(tenant.id, { released: 5, daysAgo: 70, active: 2 });
    const recent = await createTenant((await createPlan()).id);
    await seedReservations(recent.id, { released: 3, daysAgo: 10 });

    const first = await prune({ retention_months: 1, batch: 3 });
    expect(first).toMatchObject({ data: 3, error: null });
    // Old released ones go; unreleased ones (however old) and recently released ones stay.
    expect(await remaining(tenant.id)).toBe(4);
    const second = await prune({ retention_months: 1, batch: 3 });
    expect(second.data).toBe(2);
    expect(await remaining(tenant.id)).toBe(2);
    expect((await prune({ retention_months: 1 })).data).toBe(0);
    expect(await remaining(recent.id)).toBe(3);
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

  it("the collector's scheduled upkeep prunes them with the raw-execution retention", async () => {
    const tenant = await createTenant((await createPlan()).id);
    await seedReservations(tenant.id, { released: 4, daysAgo: 70, active: 1 });
    const source = await createSource(server);

    await collect([source], { settings: { retentionMonths: 6 } });
    expect(await remaining(tenant.id)).toBe(5); // a manual run does no upkeep
    await collect([source], { trigger: 'schedule', settings: { retentionMonths: 6 } });
    expect(await remaining(tenant.id)).toBe(5); // within six months
    await collect([source], { trigger: 'schedule', settings: { retentionMonths: 1 } });
    expect(await remaining(tenant.id)).toBe(1);
  });
});
