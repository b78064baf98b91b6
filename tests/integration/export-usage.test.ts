import { beforeAll, describe, expect, it } from 'vitest';
import { createServiceClient } from '../../src/db/client.ts';
import { rpcFetch } from '../../src/db/fetch.ts';
import { EXPORT_GROUPINGS, exportUsage } from '../../src/export/export-usage.ts';
import { CapturedStream } from '../support/cli.ts';
import { createPlan, createTenant, ingestExecutions, type Run } from '../support/fixtures.ts';
import { stack } from '../support/stack.ts';

/**
 * The export service over the real export functions: small pages give the same rows as
 * one big page, each once, and a read failing mid-way is the result, not a thrown error
 * or a silently short file.
 */
const DAY = 86_400_000;
const now = new Date();
const lastMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
const range = {
  fromDay: new Date(lastMonth).toISOString().slice(0, 10),
  toDay: new Date(lastMonth + 27 * DAY).toISOString().slice(0, 10),
};

/** The service client, its fetch failing from the `failFrom`-th call on (network down). */
function client(failFrom = Number.POSITIVE_INFINITY) {
  let calls = 0;
  return createServiceClient(
    { SUPABASE_URL: stack.supabaseUrl, SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey },
    (input, init) => {
      calls += 1;
      return calls >= failFrom
        ? Promise.reject(new TypeError('fetch failed'))
        : rpcFetch(input, init);
    },
  );
}

describe('exportUsage', () => {
  let tenantIds: string[];

  beforeAll(async () => {
    const plan = await createPlan();
    tenantIds = [(await createTenant(plan.id)).id, (await createTenant(plan.id)).id];
    for (const [t, tenantId] of tenantIds.entries()) {
      const runs: Run[] = Array.from({ length: 23 + t }, (_, i) => ({
        workflow: `wf-${i % 6}`,
        startedAt: lastMonth + (i % 9) * DAY + i * 1000,
      }));
      // Two sources with the same start times: the keyset's source tie-break is crossed.
      await ingestExecutions(tenantId, runs);
      await ingestExecutions(tenantId, runs.slice(0, 5));
    }
  });

  it.each(EXPORT_GROUPINGS)('per %s, pages of 4 give the rows of one page of 1000', async (by) => {
    const run = async (pageRows: number) => {
      const output = new CapturedStream();
      const covered: number[] = [];
      const result = await exportUsage({
        db: client(),
        tenantIds,
        range,
        by,
        format: 'json',
        output,
        endOutput: true,
        pageRows,
        onProgress: (e) => {
          if (e.type === 'page') covered.push(e.covered);
        },
      });
      return { result, lines: output.text.split('\n').filter(Boolean), covered };
    };
    const small = await run(4);
    const large = await run(1000);
    expect(small.result).toEqual({ ok: true, value: { rows: large.lines.length } });
    expect(small.lines).toEqual(large.lines);
    expect(new Set(small.lines).size).toBe(small.lines.length);
    expect(small.covered.length).toBe(Math.ceil(large.lines.length / 4));
    expect(small.covered.reduce((a, b) => a + b, 0)).toBe(large.covered.reduce((a, b) => a + b, 0));
  });

  it('returns the failure when the database goes away mid-way, after the rows read before', async () => {
    const output = new CapturedStream();
    const result = await exportUsage({
      db: client(4), // the size, two pages, then nothing
      tenantIds,
      range,
      by: 'execution',
      format: 'csv',
      output,
      endOutput: true,
      pageRows: 5,
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'unavailable' } });
    // The header and at most the two pages read; never a row twice.
    const lines = output.text.split('\n').filter(Boolean);
    expect(lines.length).toBeLessThanOrEqual(11);
    expect(new Set(lines).size).toBe(lines.length);
  });
});
