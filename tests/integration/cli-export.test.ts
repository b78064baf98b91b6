import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { cli } from '../support/cli.ts';
import { parseCsv } from '../support/csv.ts';
import { createPlan, createTenant, ingestExecutions, type Run } from '../support/fixtures.ts';
import { superuser } from '../support/stack.ts';

/**
 * `flowmeter export usage` in-process against the test stack: every grouping in both
 * formats, checked against the counters and daily totals the ingestion moved, and every
 * bad argument refused with exit 2 before anything is read or written.
 */
const DAY = 86_400_000;
const now = new Date();
const lastMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
const period = new Date(lastMonth).toISOString().slice(0, 7);

const ndjson = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

const sum = (rows: Record<string, unknown>[], key: string) =>
  rows.reduce((total, r) => total + Number(r[key]), 0);

describe('flowmeter export usage', () => {
  let tenantA: { id: string; external_ref: string };
  let tenantB: { id: string; external_ref: string };
  let countersA: { executions: number; billable: number };

  beforeAll(async () => {
    const plan = await createPlan();
    tenantA = (await createTenant(plan.id)) as typeof tenantA;
    tenantB = (await createTenant(plan.id)) as typeof tenantB;
    // Last month: 3 days and 3 workflows of A, one execution of B; one of A this month.
    const runs: Run[] = Array.from({ length: 30 }, (_, i) => ({
      workflow: `wf-${i % 3}`,
      startedAt: lastMonth + (i % 3) * DAY + i * 1000,
      status: i % 4 === 0 ? 'error' : 'success',
      mode: i % 5 === 0 ? 'manual' : 'trigger',
    }));
    await ingestExecutions(tenantA.id, runs);
    await ingestExecutions(tenantA.id, [
      { workflow: 'wf-now', startedAt: Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) },
    ]);
    await ingestExecutions(tenantB.id, [{ workflow: 'wf-b', startedAt: lastMonth + 5 * DAY }]);
    const { rows } = await superuser().query(
      'select executions::int, billable::int from public.usage_counters where tenant_id = $1 and period_start = $2',
      [tenantA.id, new Date(lastMonth).toISOString()],
    );
    countersA = rows[0];
  });

  const exportOf = (by: string, format: string, ...extra: string[]) =>
    cli([
      'export',
      'usage',
      '--tenant',
      tenantA.external_ref,
      '--period',
      period,
      '--by',
      by,
      '--format',
      format,
      ...extra,
    ]);

  it('per day, as CSV: one row per day with usage, equal to the daily totals and the counters', async () => {
    const result = await exportOf('day', 'csv');
    expect(result.code).toBe(EXIT.ok);
    const rows = parseCsv(result.out);
    expect(Object.keys(rows[0] ?? {})).toEqual([
      'tenant_id',
      'external_ref',
      'day',
      'executions',
      'billable',
      'failed',
      'duration_ms',
    ]);
    const { rows: daily } = await superuser().query(
      `select to_char(day, 'YYYY-MM-DD') as day, executions::text, billable::text, failed::text, duration_ms::text
       from public.usage_daily where tenant_id = $1 and day >= $2 and day < $3 order by day`,
      [tenantA.id, new Date(lastMonth).toISOString(), new Date(lastMonth + 31 * DAY).toISOString()],
    );
    expect(
      rows.map(({ day, executions, billable, failed, duration_ms }) => ({
        day,
        executions,
        billable,
        failed,
        duration_ms,
      })),
    ).toEqual(daily.filter((d) => d.day.startsWith(period)));
    expect(new Set(rows.map((r) => r.external_ref))).toEqual(new Set([tenantA.external_ref]));
    expect(sum(rows, 'executions')).toBe(countersA.executions);
    expect(sum(rows, 'billable')).toBe(countersA.billable);
    expect(result.err).toMatch(/exporting: 3 days/);
    expect(result.err).toMatch(/exported 3 rows \(per day, .* as CSV/);
  });

  it('per day, as NDJSON: the same rows, one JSON object per line', async () => {
    const csv = parseCsv((await exportOf('day', 'csv')).out);
    const result = await exportOf('day', 'json');
    expect(result.code).toBe(EXIT.ok);
    const rows = ndjson(result.out);
    expect(
      rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)]))),
    ).toEqual(csv);
  });

  it('per workflow, in both formats: the workflows of the period, adding up to the counters', async () => {
    for (const format of ['csv', 'json']) {
      const result = await exportOf('workflow', format);
      expect(result.code).toBe(EXIT.ok);
      const rows = format === 'csv' ? parseCsv(result.out) : ndjson(result.out);
      expect(rows.map((r) => r.workflow_id)).toEqual(['wf-0', 'wf-1', 'wf-2']);
      expect(sum(rows, 'executions')).toBe(countersA.executions);
      expect(sum(rows, 'billable')).toBe(countersA.billable);
      expect(result.err).toMatch(/exporting: 30 executions/);
    }
  });

  it('per execution, in both formats: every execution once, as many billable as counted', async () => {
    for (const format of ['csv', 'json']) {
      const result = await exportOf('execution', format);
      expect(result.code).toBe(EXIT.ok);
      const rows = format === 'csv' ? parseCsv(result.out) : ndjson(result.out);
      expect(rows).toHaveLength(countersA.executions);
      expect(new Set(rows.map((r) => `${r.source_id}/${r.execution_id}`)).size).toBe(rows.length);
      expect(rows.filter((r) => String(r.billable) === 'true')).toHaveLength(countersA.billable);
      expect(new Set(rows.map((r) => r.tenant_id))).toEqual(new Set([tenantA.id]));
      expect(rows.map((r) => r.workflow_id)).not.toContain('wf-now');
    }
  });

  it('without --tenant, every tenant; --from/--to select days', async () => {
    const all = await cli([
      'export',
      'usage',
      '--period',
      period,
      '--by',
      'execution',
      '--format',
      'json',
    ]);
    expect(all.code).toBe(EXIT.ok);
    const tenants = new Set(ndjson(all.out).map((r) => r.tenant_id));
    expect(tenants).toContain(tenantA.id);
    expect(tenants).toContain(tenantB.id);
    const day2 = new Date(lastMonth + DAY).toISOString().slice(0, 10);
    const one = await cli([
      'export',
      'usage',
      '--tenant',
      tenantA.id,
      '--from',
      day2,
      '--to',
      day2,
      '--by',
      'day',
    ]);
    expect(parseCsv(one.out).map((r) => [r.day, r.executions])).toEqual([[day2, '10']]);
  });

  it('writes --output to the file, not stdout, and leaves no partial file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'export-'));
    const file = join(dir, 'usage.csv');
    const result = await exportOf('execution', 'csv', '--output', file);
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toBe('');
    expect(parseCsv(await readFile(file, 'utf8'))).toHaveLength(countersA.executions);
    expect(existsSync(`${file}.partial`)).toBe(false);
    expect(result.err).toMatch(new RegExp(`to ${file}`));
  });

  it.each([
    [['--period', '2026-13'], /--period.*must be a month like 2026-11/],
    [['--period', '26-11'], /must be a month like/],
    [['--from', '2026-02-30', '--to', '2026-03-01'], /must be a day that exists/],
    [['--from', 'yesterday'], /must be a day like 2026-11-01/],
    [['--from', '2026-11-10', '--to', '2026-11-01'], /--from 2026-11-10 is after --to 2026-11-01/],
    [['--period', '2026-11', '--from', '2026-11-01'], /either --period or --from\/--to, not both/],
    [['--to', '2026-11-01'], /--to needs --from/],
    [['--from', '2020-01-01', '--to', '2026-01-01'], /2193 days; at most 366 per export/],
    [['--from', '2999-01-01'], /2999-01-01 is in the future/],
    [['--by', 'hour'], /--by.*Allowed choices are day, workflow, execution/],
    [['--format', 'xml'], /--format.*Allowed choices are csv, json/],
    [
      ['--tenant', 'no-such-tenant'],
      /no tenant has the id or external reference "no-such-tenant": `flowmeter tenants list`/,
    ],
    [
      ['--output', '/nonexistent-dir/usage.csv'],
      /cannot write \/nonexistent-dir\/usage.csv \(ENOENT\)/,
    ],
  ])('refuses %j with exit 2 and a message, writing nothing', async (args, message) => {
    const result = await cli([
      'export',
      'usage',
      ...(args.includes('--by') ? [] : ['--by', 'day']),
      ...args,
    ]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(message);
    expect(result.out).toBe('');
  });

  it('refuses a missing --by with exit 2', async () => {
    const result = await cli(['export', 'usage', '--period', period]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/required option '--by <grouping>' not specified/);
  });

  it('exits 3 when the database cannot be reached, leaving no file behind', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'export-')), 'usage.csv');
    const result = await cli(['export', 'usage', '--by', 'day', '--output', file], {
      SUPABASE_URL: 'http://127.0.0.1:9',
    });
    expect(result.code).toBe(EXIT.unavailable);
    expect(result.err).toMatch(/could not reach the database/);
    expect(result.out).toBe('');
    expect([existsSync(file), existsSync(`${file}.partial`)]).toEqual([false, false]);
  });
});
