import { describe, expect, it } from 'vitest';
import { expectNewestPeriodLockedFirst, twoPeriodTenant } from '../support/counter-locks.ts';
import { waitForLockWait } from '../support/faults.ts';
import {
  createTenant,
  executionPage,
  ingestExecutions,
  leasedSource,
  recentRuns,
} from '../support/fixtures.ts';
import { inTransaction, serviceClient, superuser } from '../support/stack.ts';

/**
 * Class: a repair racing the collector. reconcile_counters compares the raw executions with
 * the counters in one snapshot, then repairs the drifted rows; a collector page that
 * commits new executions between the two must not be undone by the repair. The drift (what
 * the counters hold beyond the raw rows) is what a page leaves alone, since it adds to both
 * at once, so the repair takes off the drift, not the counters' value as the snapshot saw it.
 */

const monthStart = () =>
  new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)).toISOString();

async function counters(tenantId: string) {
  const { rows } = await superuser().query(
    `select executions::int, billable::int, billable_success::int, billable_failed::int
     from public.usage_counters where tenant_id = $1 order by period_start`,
    [tenantId],
  );
  return rows;
}

describe('reconcile --repair racing a collector page', () => {
  it('keeps the executions a page commits while the repair waits for the counters row', async () => {
    const tenant = await createTenant();
    await ingestExecutions(tenant.id, recentRuns(10, 120_000));
    // Drift: the counters hold 3 executions more than the raw rows.
    await superuser().query(
      `update public.usage_counters
       set executions = executions + 3, billable = billable + 3, billable_success = billable_success + 3
       where tenant_id = $1`,
      [tenant.id],
    );

    // A collector page of 2 new executions, stored and counted, not yet committed.
    const db = serviceClient();
    const { sourceId, lease } = await leasedSource(tenant.id);
    await inTransaction(async (collector) => {
      await collector.query('select public.ingest_execution_page($1, $2, $3::jsonb)', [
        sourceId,
        lease,
        JSON.stringify(executionPage(recentRuns(2, 60_000))),
      ]);

      // The repair sees 10 raw rows and 13 counted, and waits for the page's counters row.
      // Sent now (a query builder is sent when it is awaited).
      const repair = Promise.resolve(
        db.rpc('reconcile_counters', {
          since: monthStart(),
          repair: true,
          tenant_ids: [tenant.id],
        }),
      );
      await waitForLockWait({ queryLike: 'reconcile_counters' });
      await collector.query('commit');

      const { data: findings, error: repairError } = await repair;
      expect(repairError).toBeNull();
      expect(findings).toMatchObject([
        { kind: 'counter_drift', expected: 10, actual: 13, repaired: true },
      ]);
    });

    // 12 executions stored, 12 counted: the page's 2 are kept, the drift of 3 is gone.
    expect(await counters(tenant.id)).toEqual([
      { executions: 12, billable: 12, billable_success: 12, billable_failed: 0 },
    ]);
    const { data: again } = await db.rpc('reconcile_counters', {
      since: monthStart(),
      tenant_ids: [tenant.id],
    });
    expect(again).toEqual([]);
  });

  it("locks a tenant's rows newest period first, as the collector and enforcement do, so it cannot deadlock with them", async () => {
    const { tenant, earlier, newer } = await twoPeriodTenant();
    // Drift in both periods, the newer row written last, so a scan in storage order meets
    // the earlier one first.
    await superuser().query(
      'update public.usage_counters set executions = executions + 1, billable = billable + 1, billable_success = billable_success + 1 where tenant_id = $1',
      [tenant.id],
    );
    await superuser().query(
      'update public.usage_counters set updated_at = now() where tenant_id = $1 and period_start = $2',
      [tenant.id, newer],
    );
    const { data, error } = await expectNewestPeriodLockedFirst(
      { tenantId: tenant.id, earlier, newer },
      'reconcile_counters',
      async () =>
        serviceClient().rpc('reconcile_counters', {
          since: earlier.toISOString(),
          repair: true,
          tenant_ids: [tenant.id],
        }),
    );
    expect(error).toBeNull();
    expect(data?.map((f) => f.repaired)).toEqual([true, true]);
    expect(await counters(tenant.id)).toEqual([
      { executions: 1, billable: 1, billable_success: 1, billable_failed: 0 },
      { executions: 1, billable: 1, billable_success: 1, billable_failed: 0 },
    ]);
  });
});
