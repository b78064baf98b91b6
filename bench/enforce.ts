import { randomBytes } from 'node:crypto';
import { cpus, totalmem } from 'node:os';
import { createClient } from '@supabase/supabase-js';
import { Command } from 'commander';
import pg from 'pg';
import type { Database } from '../src/db/database.types.ts';
import { createEnforceHandler } from '../src/enforcement/handler.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { fmt, measure, type Series } from './stats.ts';
import { positive, startStackProcess, writeResults } from './support.ts';

/**
 * npm run bench: the enforcement hot path on this machine, against a baseline measured in
 * the same run (a bare `select 1` round trip to the same PostgreSQL at the same
 * concurrency). The RPC endpoint runs in its own process, as PostgREST does in
 * production. Writes bench/results/enforce-<time>.json.
 */
const options = new Command()
  .name('bench')
  .option('--requests <n>', 'requests per series', positive, 4000)
  .option('--large <n>', 'stored executions for the large-table comparison', positive, 10_000_000)
  .option('--small <n>', 'stored executions for the small-table comparison', positive, 10_000)
  .option('--tenants <n>', 'tenants the load is spread over', positive, 64)
  .parse()
  .opts<{ requests: number; large: number; small: number; tenants: number }>();

const stack = await startStackProcess();
const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
admin.on('error', () => {});
const results: Series[] = [];
const log = (s: Series, baseline?: Series) =>
  console.log(
    `${s.name.padEnd(44)} c=${String(s.concurrency).padStart(2)}  p50 ${fmt(s.p50).padStart(6)} ms  p99 ${fmt(s.p99).padStart(6)} ms  ${fmt(s.perSecond, 0).padStart(6)}/s${baseline ? `  p99 ×${fmt(s.p99 / baseline.p99)} of baseline` : ''}`,
  );

try {
  // Tenants on a hard-limit plan with room to spare, so every decision reserves (the
  // expensive path) and none is blocked.
  await admin.query(
    "insert into public.plans (id, name, included_executions, limit_policy) values ('bench', 'Bench', 1000000000, 'hard_limit')",
  );
  const { rows: tenants } = await admin.query<{ id: string }>(
    "insert into public.tenants (name, plan_id) select 'bench ' || i, 'bench' from generate_series(1, $1) i returning id",
    [options.tenants],
  );
  const tenantIds = tenants.map((t) => t.id);
  const { rows: sources } = await admin.query<{ id: string; tenant_id: string }>(
    `insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext)
     select id, 'bench', 'https://bench-' || id || '.example', 'fm1.x' from public.tenants where plan_id = 'bench'
     returning id, tenant_id`,
  );
  await admin.query('select private.ensure_execution_partition(now())');

  async function storeExecutions(total: number) {
    // Spread over the bench sources, this month, as the collector would store them.
    const { rows } = await admin.query('select count(*)::bigint as n from public.executions');
    const have = Number(rows[0].n);
    const per = Math.ceil((total - have) / sources.length);
    if (per <= 0) return;
    const started = performance.now();
    for (const [i, source] of sources.entries()) {
      await admin.query(
        `insert into public.executions (source_id, execution_id, tenant_id, workflow_id, mode, status,
           started_at, stopped_at, occurred_at, duration_ms, billable, period_start)
         select $1, $3 + g, $2, 'wf' || (g % 20), 'trigger', 'success',
                date_trunc('month', now()) + (g % 86400) * interval '1 second',
                date_trunc('month', now()) + (g % 86400) * interval '1 second' + interval '2 seconds',
                date_trunc('month', now()) + (g % 86400) * interval '1 second', 2000, true, date_trunc('month', now())
         from generate_series(1, $4) g`,
        [source.id, source.tenant_id, have + i * per, per],
      );
    }
    await admin.query('analyze public.executions');
    console.log(
      `stored ${total.toLocaleString()} executions (${fmt((performance.now() - started) / 1000, 1)} s)`,
    );
  }

  await storeExecutions(options.small);

  const secret = randomBytes(32).toString('hex');
  const handler = createEnforceHandler({
    db: createClient<Database>(stack.supabaseUrl, stack.serviceRoleKey, {
      auth: { persistSession: false },
    }),
    runnerSecrets: [secret],
    settings: { reservationTtlSeconds: 1800, failMode: 'closed' },
    log: silentLogger,
  });
  const viaHandler = async (i: number) => {
    const response = await handler(
      new Request('https://bench/api/v1/enforce', {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenant: tenantIds[i % tenantIds.length], workflowId: 'wf1' }),
      }),
    );
    if (response.status !== 200)
      throw new Error(`unexpected ${response.status}: ${await response.text()}`);
    await response.arrayBuffer();
  };

  const service = new pg.Pool({ connectionString: stack.databaseUrl, max: 64 });
  service.on('error', () => {});
  service.on('connect', (client) => void client.query('set role service_role'));
  const viaSql = (i: number) =>
    service.query('select public.enforce_usage($1)', [tenantIds[i % tenantIds.length]]);
  const baselineQuery = () => service.query('select 1');

  const { requests } = options;
  await measure('warm-up', 16, 500, viaHandler);
  for (const c of [1, 16, 64]) {
    const baseline = await measure('baseline: select 1 over pg', c, requests, baselineQuery);
    const full = await measure(
      'full path: handler→supabase-js→RPC→Postgres',
      c,
      requests,
      viaHandler,
    );
    results.push(baseline, full);
    log(baseline);
    log(full, baseline);
  }
  const sqlBaseline = await measure('baseline: select 1 over pg', 16, requests, baselineQuery);
  const sqlOnly = await measure('SQL decision alone (enforce_usage)', 16, requests, viaSql);
  results.push(sqlBaseline, sqlOnly);
  log(sqlOnly, sqlBaseline);

  const small = await measure(
    `SQL decision, ${options.small.toLocaleString()} executions stored`,
    16,
    requests,
    viaSql,
  );
  await storeExecutions(options.large);
  await measure('warm-up', 16, 500, viaSql);
  const large = await measure(
    `SQL decision, ${options.large.toLocaleString()} executions stored`,
    16,
    requests,
    viaSql,
  );
  results.push(small, large);
  log(small);
  log(large);

  const full16 = results.find(
    (r) => r.name.startsWith('full path') && r.concurrency === 16,
  ) as Series;
  const summary = {
    at: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
    },
    options,
    series: results,
    targets: {
      'full path p99 at 16 concurrent ≤ 5 ms': { value: full16.p99, met: full16.p99 <= 5 },
      'full path ≥ 2,000 decisions/s at 16 concurrent': {
        value: full16.perSecond,
        met: full16.perSecond >= 2000,
      },
      'p99 with large / small table ≤ 1.2': {
        value: large.p99 / small.p99,
        met: large.p99 / small.p99 <= 1.2,
      },
      'p50 with large / small table ≤ 1.2': {
        value: large.p50 / small.p50,
        met: large.p50 / small.p50 <= 1.2,
      },
    },
  };
  console.log('\ntargets:');
  for (const [name, { value, met }] of Object.entries(summary.targets)) {
    console.log(`  ${met ? '✓' : '✗'} ${name}: ${fmt(value)}`);
  }
  await writeResults('enforce', summary.at, summary);
  await service.end();
} finally {
  await admin.end();
  await stack.stop();
}
