import { describe, expect, it } from 'vitest';
import {
  expectNewestPeriodLockedFirst,
  twoPeriodPage,
  twoPeriodTenant,
} from '../support/counter-locks.ts';
import { ingestExecutions } from '../support/fixtures.ts';
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
    // Both periods' rows exist: the next page updates them, locking each as it goes.
    const { tenant, earlier, newer } = await twoPeriodTenant();
    await expectNewestPeriodLockedFirst(
      { tenantId: tenant.id, earlier, newer },
      'ingest_execution_page',
      () => ingestExecutions(tenant.id, twoPeriodPage()),
    );
    const { rows } = await superuser().query<{ executions: string }>(
      'select executions from public.usage_counters where tenant_id = $1 order by period_start',
      [tenant.id],
    );
    expect(rows.map((r) => Number(r.executions))).toEqual([2, 2]);
  });
});
