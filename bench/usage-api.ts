import { createClient } from '@supabase/supabase-js';
import pg from 'pg';
import type { Database } from '../src/db/database.types.ts';
import { signJwt } from '../src/local/keys.ts';
import {
  getDailyUsage,
  getUsageSummary,
  getWorkflowBreakdown,
  type UsageDb,
  type UsageResult,
} from '../src/usage-client/index.ts';
import { fmt, measure, measureMedian, type Series } from './stats.ts';
import {
  benchOptions,
  benchSources,
  daysOption,
  machine,
  printTargets,
  startStackProcess,
  storeExecutions,
  writeResults,
} from './support.ts';

/**
 * The tenant usage API as a frontend calls it (supabase-js signed in as a tenant user →
 * RPC endpoint in its own process → Postgres), with few and with many raw executions
 * stored: the summary and the daily series read counters and daily totals only, so their
 * time must not grow with the executions table. The per-workflow breakdown reads one
 * tenant-period of raw executions by design; it is measured for information. Writes
 * bench/results/usage-api-<time>.json.
 */
const options = benchOptions(
  'bench-usage-api',
  { requests: 2000, tenants: 'tenants (one signed-in member each) the load is spread over' },
  { days: daysOption },
);

const stack = await startStackProcess();
const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
admin.on('error', () => {});
const results: Series[] = [];
const log = (s: Series, small?: Series) =>
  console.log(
    `${s.name.padEnd(60)} c=${String(s.concurrency).padStart(2)}  p50 ${fmt(s.p50).padStart(7)} ms  p99 ${fmt(s.p99).padStart(7)} ms  ${fmt(s.perSecond, 0).padStart(6)}/s${small ? `  p50 ×${fmt(s.p50 / small.p50)}  p99 ×${fmt(s.p99 / small.p99)} of small` : ''}`,
  );

try {
  await admin.query(
    "insert into public.plans (id, name, included_executions, limit_policy, overage_unit_amount) values ('bench', 'Bench', 100000, 'overage', 0.2)",
  );
  const { rows: tenants } = await admin.query<{ id: string; user_id: string }>(
    `with t as (
       insert into public.tenants (name, plan_id) select 'bench ' || i, 'bench' from generate_series(1, $1) i
       returning id),
     u as (
       insert into auth.users (id, email, role, aud)
       select gen_random_uuid(), 'bench-' || t.id || '@example.test', 'authenticated', 'authenticated' from t
       returning id as user_id, email)
     insert into public.tenant_members (tenant_id, user_id)
     select t.id, u.user_id from t join u on u.email = 'bench-' || t.id || '@example.test'
     returning tenant_id as id, user_id`,
    [options.tenants],
  );
  const sources = await benchSources(admin);

  // Each tenant's member, signed in as Supabase Auth would sign them in.
  const clients: UsageDb[] = await Promise.all(
    tenants.map(async (t) => {
      const token = await signJwt(
        stack.jwtSecret,
        { sub: t.user_id, role: 'authenticated', aud: 'authenticated' },
        24 * 3600,
      );
      return createClient<Database>(stack.supabaseUrl, stack.anonKey, {
        auth: { persistSession: false, autoRefreshToken: false },
        global: { headers: { Authorization: `Bearer ${token}` } },
      });
    }),
  );

  const store = (total: number) => storeExecutions(admin, { sources, total, days: options.days });

  const checked = async (call: Promise<UsageResult<unknown[]>>) => {
    const { data, error } = await call;
    if (error) throw new Error(`${error.code}: ${error.message}`);
    if (!data?.length) throw new Error('no rows: the member should see their tenant');
  };
  const client = (i: number) => clients[i % clients.length] as UsageDb;
  const tenantOf = (i: number) => tenants[i % tenants.length]?.id as string;
  const summary = (i: number) => checked(getUsageSummary(client(i), tenantOf(i)));
  const daily = (i: number) => checked(getDailyUsage(client(i), { tenantId: tenantOf(i) }));
  const breakdown = (i: number) =>
    checked(getWorkflowBreakdown(client(i), { tenantId: tenantOf(i), maxRows: 20 }));

  const { requests } = options;
  const breakdownRequests = Math.max(20, Math.floor(requests / 20));
  const measureRepeated = (
    name: string,
    concurrency: number,
    total: number,
    task: (i: number) => Promise<unknown>,
  ) => measureMedian(options.repeat, name, concurrency, total, task);

  async function measureAll(label: string): Promise<Series[]> {
    await measure('warm-up', 16, 500, summary);
    await measure('warm-up', 16, 500, daily);
    const series = [
      await measureRepeated(`summary, ${label}`, 1, requests, summary),
      await measureRepeated(`summary, ${label}`, 16, requests, summary),
      await measureRepeated(`daily series (default range), ${label}`, 1, requests, daily),
      await measureRepeated(`daily series (default range), ${label}`, 16, requests, daily),
      await measureRepeated(`workflow breakdown (info), ${label}`, 1, breakdownRequests, breakdown),
    ];
    results.push(...series);
    return series;
  }

  await store(options.small);
  const small = await measureAll(`${options.small.toLocaleString()} executions stored`);
  for (const s of small) log(s);
  await store(options.large);
  const large = await measureAll(`${options.large.toLocaleString()} executions stored`);
  for (const [i, s] of large.entries()) log(s, small[i]);

  const targets: Record<string, { value: number; met: boolean }> = {};
  for (const [i, s] of large.entries()) {
    const base = small[i] as Series;
    if (s.name.startsWith('workflow breakdown')) continue;
    const what = `${s.name.split(',')[0]} c=${s.concurrency}`;
    targets[`${what}: p50 large / small ≤ 2`] = {
      value: s.p50 / base.p50,
      met: s.p50 / base.p50 <= 2,
    };
    targets[`${what}: p99 large / small ≤ 2`] = {
      value: s.p99 / base.p99,
      met: s.p99 / base.p99 <= 2,
    };
  }
  const report = {
    at: new Date().toISOString(),
    machine: machine(),
    options,
    series: results,
    targets,
  };
  printTargets(targets);
  await writeResults('usage-api', report.at, report);
} finally {
  await admin.end();
  await stack.stop();
}
