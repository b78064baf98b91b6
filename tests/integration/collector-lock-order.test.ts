import { describe, expect, it } from 'vitest';
import { waitForLockWait } from '../support/faults.ts';
import { createPlan, createTenant, ingestExecutions } from '../support/fixtures.ts';
import { superuser } from '../support/stack.ts';

/**
 * Class: two writers of one tenant's counters rows that could wait on each other. An
 * enforcement retry whose run was reserved in an earlier period holds this period's row and
 * then takes the earlier one (retry_run_reservation); a collector page with executions in
 * both periods takes both rows. If the page took the earlier row first, each would hold
 * what the other waits for, and PostgreSQL would abort one of them as a deadlock: a run
 * refused with an error, or a page collected again. The page takes the newest period's
 * row first, the retry's order, so the second one waits for the first instead.
 */
describe('collector and enforcement: one lock order on the counters rows', () => {
  it('a page over two periods takes the newer row first, leaving the earlier one free until it has it', async () => {
    const plan = await createPlan({ included_executions: 1000 });
    const tenant = await createTenant(plan.id);
    const now = Date.now();
    const lastMonth = new Date(now);
    lastMonth.setUTCDate(1);
    lastMonth.setUTCMonth(lastMonth.getUTCMonth() - 1);
    lastMonth.setUTCHours(12);
    const page = [
      { workflow: 'wf', startedAt: lastMonth.getTime() },
      { workflow: 'wf', startedAt: now - 60_000 },
    ];
    // Both periods' rows exist: the next page updates them, locking each as it goes.
    await ingestExecutions(tenant.id, page);
    const { rows: periods } = await superuser().query<{ period_start: Date }>(
      'select period_start from public.usage_counters where tenant_id = $1 order by period_start',
      [tenant.id],
    );
    expect(periods).toHaveLength(2);
    const [earlier, newer] = periods.map((p) => p.period_start);

    // The retry's first lock: this period's row, held.
    const retry = await superuser().connect();
    try {
      await retry.query('begin');
      await retry.query(
        'select 1 from public.usage_counters where tenant_id = $1 and period_start = $2 for update',
        [tenant.id, newer],
      );
      const collected = ingestExecutions(tenant.id, page);
      await waitForLockWait({ queryLike: 'ingest_execution_page' });
      // The retry's second lock: the earlier period's row. Had the page taken it first, it
      // would be held now, and the two would deadlock.
      await expect(
        retry.query(
          'select 1 from public.usage_counters where tenant_id = $1 and period_start = $2 for update nowait',
          [tenant.id, earlier],
        ),
      ).resolves.toMatchObject({ rowCount: 1 });
      await retry.query('commit');
      await collected;
    } finally {
      await retry.query('rollback').catch(() => {});
      retry.release();
    }
    const { rows } = await superuser().query<{ executions: string }>(
      'select executions from public.usage_counters where tenant_id = $1 order by period_start',
      [tenant.id],
    );
    expect(rows.map((r) => Number(r.executions))).toEqual([2, 2]);
  });
});
