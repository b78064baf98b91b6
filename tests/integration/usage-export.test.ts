import { beforeAll, describe, expect, it } from 'vitest';
import {
  exportUsageCsv,
  exportUsageCsvBlob,
  getUsageExportPage,
  type UsageDb,
} from '../../src/usage-client/index.ts';
import { parseCsv } from '../support/csv.ts';
import {
  createPlan,
  createTenant,
  ingestExecutions,
  memberOf,
  type Run,
} from '../support/fixtures.ts';
import { anonClient, superuser } from '../support/stack.ts';

/**
 * The dashboard's "Download CSV" as the browser runs it: the usage-client helper, signed
 * in as a tenant member, over the tenant_usage_export RPC under row-level security. The
 * CSV is checked against the counters the ingestion moved, read as the superuser.
 */

const monthStart = (offset = 0) => {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1);
};

async function counters(tenantId: string, periodStart: number) {
  const { rows } = await superuser().query(
    `select executions::int, billable::int, billable_failed::int
     from public.usage_counters where tenant_id = $1 and period_start = $2`,
    [tenantId, new Date(periodStart).toISOString()],
  );
  return rows[0];
}

describe('tenant CSV export', () => {
  const current = monthStart();
  const previous = monthStart(-1);
  let tenantA: string;
  let tenantB: string;
  let memberA: UsageDb;

  beforeAll(async () => {
    const plan = await createPlan({ included_executions: 100 });
    tenantA = (await createTenant(plan.id)).id;
    tenantB = (await createTenant(plan.id)).id;
    memberA = (await memberOf(tenantA)).db;
    const runs: Run[] = Array.from({ length: 37 }, (_, i) => ({
      workflow: i % 3 === 0 ? 'wf-a' : 'wf-b',
      startedAt: current + i * 1000,
      status: i % 5 === 0 ? 'error' : i % 7 === 0 ? 'canceled' : 'success',
      mode: i % 4 === 0 ? 'manual' : 'trigger',
    }));
    // Two sources, so the keyset's source tie-break is crossed; a hostile workflow id.
    await ingestExecutions(tenantA, runs.slice(0, 20));
    await ingestExecutions(tenantA, [
      ...runs.slice(20),
      { workflow: '=HYPERLINK("https://evil.example","x"),1', startedAt: current + 1000 },
    ]);
    await ingestExecutions(tenantA, [{ workflow: 'wf-old', startedAt: previous + 1000 }]);
    await ingestExecutions(tenantB, [
      { workflow: 'wf-b-secret', startedAt: current + 500 },
      { workflow: 'wf-b-secret', startedAt: current + 600 },
    ]);
  });

  it("holds exactly the executions behind the current period's counters", async () => {
    const { data: csv, error } = await exportUsageCsv(memberA, { tenantId: tenantA });
    expect(error).toBeNull();
    const rows = parseCsv(csv as string);
    const truth = await counters(tenantA, current);
    expect(rows).toHaveLength(truth.executions);
    expect(rows.filter((r) => r.billable === 'true')).toHaveLength(truth.billable);
    expect(
      rows.filter((r) => r.billable === 'true' && ['error', 'crashed'].includes(r.status ?? '')),
    ).toHaveLength(truth.billable_failed);
    expect(new Set(rows.map((r) => Date.parse(r.billing_period_start ?? '')))).toEqual(
      new Set([current]),
    );
    expect(rows.map((r) => r.workflow_id)).not.toContain('wf-old');
    const hostile = rows.find((r) => r.workflow_id?.includes('HYPERLINK'));
    expect(hostile?.workflow_id?.startsWith("'=")).toBe(true);
  });

  it('gives the same rows page by page as in one go, each once', async () => {
    const whole = await exportUsageCsv(memberA, { tenantId: tenantA });
    const seen: number[] = [];
    const paged = await exportUsageCsv(memberA, {
      tenantId: tenantA,
      pageRows: 7,
      onProgress: (n) => seen.push(n),
    });
    expect(paged.data).toBe(whole.data);
    expect(seen).toEqual([7, 14, 21, 28, 35, 38]);
    const rows = parseCsv(paged.data as string);
    const keys = rows.map((r) => `${r.source_id}/${r.execution_id}`);
    expect(new Set(keys).size).toBe(rows.length);
  });

  it('exports an earlier period by an instant inside it', async () => {
    const { data } = await exportUsageCsv(memberA, {
      tenantId: tenantA,
      periodStart: new Date(previous + 86_400_000),
    });
    const rows = parseCsv(data as string);
    expect(rows.map((r) => r.workflow_id)).toEqual(['wf-old']);
    expect(rows).toHaveLength((await counters(tenantA, previous)).executions);
  });

  it('makes a text/csv Blob of the same CSV for a download link', async () => {
    const text = await exportUsageCsv(memberA, { tenantId: tenantA });
    const blob = await exportUsageCsvBlob(memberA, { tenantId: tenantA });
    expect(blob.data?.type).toBe('text/csv;charset=utf-8');
    expect(await blob.data?.text()).toBe(text.data);
  });

  it("never gives a member of A one row of B's, and a user of neither nothing", async () => {
    const { data } = await exportUsageCsv(memberA, { tenantId: tenantB });
    expect(parseCsv(data as string)).toEqual([]);
    expect(data).not.toContain('wf-b-secret');
    // B's rows are there: the empty answer is row-level security, not missing data.
    const memberB = (await memberOf(tenantB)).db;
    expect(
      parseCsv((await exportUsageCsv(memberB, { tenantId: tenantB })).data as string),
    ).toHaveLength(2);
    const stranger = (await memberOf()).db;
    expect((await getUsageExportPage(stranger, { tenantId: tenantA })).data).toEqual([]);
  });

  it('answers anon 401 and refuses a page size below 1 or a partial keyset with 400', async () => {
    const anon = await exportUsageCsv(anonClient(), { tenantId: tenantA });
    expect(anon.error).toMatchObject({ code: '42501' });
    const { status, data } = await anonClient().rpc('tenant_usage_export', { tenant_id: tenantA });
    expect({ status, data }).toEqual({ status: 401, data: null });
    const zero = await memberA.rpc('tenant_usage_export', { tenant_id: tenantA, max_rows: 0 });
    expect({ status: zero.status, code: zero.error?.code }).toEqual({ status: 400, code: '22023' });
    const partial = await memberA.rpc('tenant_usage_export', {
      tenant_id: tenantA,
      after_occurred_at: new Date().toISOString(),
    });
    expect({ status: partial.status, code: partial.error?.code }).toEqual({
      status: 400,
      code: '22023',
    });
  });
});
