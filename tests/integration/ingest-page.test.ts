import { describe, expect, it } from 'vitest';
import { createSource, useN8nServer } from '../support/collector.ts';
import { claimSource } from '../support/leases.ts';
import { serviceClient, superuser } from '../support/stack.ts';

/**
 * ingest_execution_page called as the collector calls it, for what its set-based shape must
 * still hold: every execution in its own billing period when a page spans two, an id stored
 * in another month never counted again, and executions tied to their source's tenant.
 */

const server = useN8nServer();
const DAY = 86_400_000;

async function leased() {
  const source = await createSource(server);
  const claimed = await claimSource(source.sourceId);
  return { ...source, leaseToken: claimed.lease_token };
}

const execution = (id: number, startedAt: Date) => ({
  id: String(id),
  status: 'success',
  mode: 'trigger',
  workflow_id: 'wf',
  started_at: startedAt.toISOString(),
  stopped_at: new Date(startedAt.getTime() + 700).toISOString(),
});

async function ingest(
  source: { sourceId: string; leaseToken: string },
  executions: ReturnType<typeof execution>[],
) {
  const { data, error } = await serviceClient().rpc('ingest_execution_page', {
    source_id: source.sourceId,
    lease_token: source.leaseToken,
    executions,
  });
  if (error) throw new Error(error.message);
  return data as { inserted: number };
}

async function periodsOf(tenantId: string) {
  const { rows } = await superuser().query(
    `select period_start, period_end, executions::int from public.usage_counters
     where tenant_id = $1 order by period_start`,
    [tenantId],
  );
  return rows;
}

describe('ingest_execution_page', () => {
  it('counts each execution of a page that spans two billing periods in its own period', async () => {
    const source = await leased();
    const now = new Date();
    // Mid-month anchors, so a month's step never lands on a day the month does not have.
    const periodStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 15, 12));
    const periodEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 15, 12));
    const previousStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 15, 12));
    await superuser().query(
      'update public.tenants set current_period_start = $2, current_period_end = $3 where id = $1',
      [source.tenantId, periodStart, periodEnd],
    );

    await ingest(source, [
      execution(3, new Date(periodStart.getTime() + 3_600_000)),
      execution(2, new Date(periodStart.getTime() + 1000)),
      execution(1, new Date(periodStart.getTime() - 1000)),
    ]);

    expect(await periodsOf(source.tenantId)).toEqual([
      { period_start: previousStart, period_end: periodStart, executions: 1 },
      { period_start: periodStart, period_end: periodEnd, executions: 2 },
    ]);
  });

  it('never counts again an id already stored in another month, whatever time n8n now gives it', async () => {
    const source = await leased();
    const thisMonth = new Date(Date.now() - 60_000);
    const lastMonth = new Date(thisMonth.getTime() - 35 * DAY);

    expect((await ingest(source, [execution(7, lastMonth)])).inserted).toBe(1);
    expect(
      (await ingest(source, [execution(8, thisMonth), execution(7, thisMonth)])).inserted,
    ).toBe(1);

    const { rows } = await superuser().query(
      'select count(*)::int as n from public.executions where source_id = $1 and execution_id = 7',
      [source.sourceId],
    );
    expect(rows[0].n).toBe(1);
    const counted = await periodsOf(source.tenantId);
    expect(counted.reduce((sum, row) => sum + row.executions, 0)).toBe(2);
  });

  it("refuses an execution under a tenant other than its source's, and a deleted tenant takes its executions along", async () => {
    const source = await leased();
    const other = await leased();
    await ingest(source, [execution(1, new Date(Date.now() - 60_000))]);

    await expect(
      superuser().query(
        `insert into public.executions (source_id, execution_id, tenant_id, workflow_id, mode, status,
           started_at, stopped_at, occurred_at, duration_ms, billable, period_start)
         select source_id, 2, $2, workflow_id, mode, status, started_at, stopped_at, occurred_at,
                duration_ms, billable, period_start
         from public.executions where source_id = $1`,
        [source.sourceId, other.tenantId],
      ),
    ).rejects.toThrow(/executions_source_fkey/);

    await superuser().query('delete from public.tenants where id = $1', [source.tenantId]);
    const { rows } = await superuser().query(
      'select count(*)::int as n from public.executions where source_id = $1',
      [source.sourceId],
    );
    expect(rows[0].n).toBe(0);
  });
});
