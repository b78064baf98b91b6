import { expect } from 'vitest';
import { waitForLockWait } from './faults.ts';
import { createPlan, createTenant, ingestExecutions } from './fixtures.ts';
import { inTransaction, superuser } from './stack.ts';

/** Noon on the 1st of last month (UTC): an instant of the calendar period before this one. */
export function lastMonthNoon(): number {
  const at = new Date();
  at.setUTCDate(1);
  at.setUTCMonth(at.getUTCMonth() - 1);
  at.setUTCHours(12, 0, 0, 0);
  return at.getTime();
}

/** One execution last month and one now, of a tenant on calendar months. */
export const twoPeriodPage = () => [
  { workflow: 'wf', startedAt: lastMonthNoon() },
  { workflow: 'wf', startedAt: Date.now() - 60_000 },
];

/** A tenant with counters rows in two periods (one execution each): their starts. */
export async function twoPeriodTenant() {
  const plan = await createPlan({ included_executions: 1000 });
  const tenant = await createTenant(plan.id);
  await ingestExecutions(tenant.id, twoPeriodPage());
  const { rows } = await superuser().query<{ period_start: Date }>(
    'select period_start from public.usage_counters where tenant_id = $1 order by period_start',
    [tenant.id],
  );
  expect(rows).toHaveLength(2);
  const [earlier, newer] = rows.map((r) => r.period_start) as [Date, Date];
  return { tenant, earlier, newer };
}

const lockRow = (nowait: boolean) =>
  `select 1 from public.usage_counters where tenant_id = $1 and period_start = $2 for update${nowait ? ' nowait' : ''}`;

/**
 * Proves `writer` takes the tenant's counters rows newest period first, as every writer of
 * two of them must (the order enforcement's run-ref retry takes them): another transaction
 * holds the newer row, `writer` starts and waits for it (its backend's query mentions
 * `queryLike`), and the earlier row is still free then, so the other transaction takes it
 * too. Had `writer` taken the earlier row first, each would wait for the other. Then the
 * other transaction commits and `writer`'s answer is returned.
 */
export async function expectNewestPeriodLockedFirst<T>(
  rows: { tenantId: string; earlier: Date; newer: Date },
  queryLike: string,
  writer: () => Promise<T>,
): Promise<T> {
  return inTransaction(async (other) => {
    await other.query(lockRow(false), [rows.tenantId, rows.newer]);
    const written = writer();
    await waitForLockWait({ queryLike });
    await expect(other.query(lockRow(true), [rows.tenantId, rows.earlier])).resolves.toMatchObject({
      rowCount: 1,
    });
    await other.query('commit');
    return await written;
  });
}
