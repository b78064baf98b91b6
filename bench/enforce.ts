import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import pg from 'pg';
import { createServiceClient } from '../src/db/client.ts';
import { createEnforceHandler } from '../src/enforcement/handler.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { cpuProbe } from './cpu.ts';
import { fmt, measure, measureAtRate, measureMedian, medianOf, type Series } from './stats.ts';
import {
  benchOptions,
  benchSources,
  machine,
  printTargets,
  startStackProcess,
  topUpExecutions,
  writeResults,
} from './support.ts';

/**
 * npm run bench: the enforcement hot path on this machine, against baselines measured in
 * the same run at the same concurrency: a bare `select 1` round trip to the same
 * PostgreSQL; the handler answered from memory (its own work and supabase-js's); and the
 * transport floor, the same handler → supabase-js → RPC endpoint → PostgreSQL path calling
 * a function that decides nothing. The RPC endpoint runs in its own process, as PostgREST
 * does in production; where /proc exists, each series also reports the CPU the load
 * generator with the handler, the RPC endpoint and PostgreSQL spent per request. Then the
 * full path at a fixed rate (open loop) below the throughput it reached, and the SQL
 * decision with a small, a large and the small history again (A-B-A). Writes
 * bench/results/enforce-<time>.json.
 */
const options = benchOptions('bench', {
  requests: 4000,
  tenants: 'tenants the load is spread over',
});

const stack = await startStackProcess();
const probe = cpuProbe(stack.pid);
const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
admin.on('error', () => {});
const results: Series[] = [];
const cpu = (s: Series) =>
  s.cpuPerRequest
    ? `  cpu/request ms: client ${fmt(s.cpuPerRequest.client, 3)} rpc ${fmt(s.cpuPerRequest.rpc, 3)} pg ${fmt(s.cpuPerRequest.postgres, 3)}`
    : '';
const log = (s: Series, baseline?: Series) =>
  console.log(
    `${s.name.padEnd(48)} c=${String(s.concurrency).padStart(2)}  p50 ${fmt(s.p50).padStart(6)} ms  p99 ${fmt(s.p99).padStart(6)} ms  ${fmt(s.perSecond, 0).padStart(6)}/s${baseline ? `  p99 ×${fmt(s.p99 / baseline.p99)} of ${baseline.name.split(':')[0]}` : ''}${cpu(s)}`,
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
  const sources = await benchSources(admin);
  await admin.query('select private.ensure_execution_partition(now())');

  const storeExecutions = (total: number) =>
    topUpExecutions({
      admin,
      sources,
      total,
      // Spread over the bench sources, this month, as the collector would store them.
      at: "date_trunc('month', now()) + (g % 86400) * interval '1 second'",
      status: "'success'",
      // Vacuumed as well as analysed (and then checkpointed): otherwise autovacuum's pass
      // over the freshly inserted rows, and the checkpoint writing them out, run during the
      // next measurement and are counted as PostgreSQL's CPU per decision.
      settle: () => admin.query('vacuum analyze public.executions'),
    });

  await storeExecutions(options.small);

  const secret = randomBytes(32).toString('hex');
  const settings = { reservationTtlSeconds: 1800, failMode: 'closed' } as const;
  const config = {
    SUPABASE_URL: stack.supabaseUrl,
    SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
  };
  const handlerWith = (fetchImpl?: typeof fetch) =>
    createEnforceHandler({
      db: createServiceClient(config, fetchImpl),
      runnerSecrets: [secret],
      settings,
      log: silentLogger,
    });
  const handler = handlerWith();
  // The same handler with the database's answer from memory: its own work and supabase-js's.
  const stored = JSON.stringify({
    allowed: true,
    reason: 'within_limit',
    tenant_id: tenantIds[0],
    committed: 1,
    limit: 1_000_000_000,
    remaining: 999_999_999,
    percent: 0,
    level: 'normal',
    period_start: '2026-11-01T00:00:00+00:00',
    period_end: '2026-12-01T00:00:00+00:00',
    reservation_id: 1,
  });
  const fromMemory = handlerWith(
    async () =>
      new Response(stored, { status: 200, headers: { 'content-type': 'application/json' } }),
  );
  // The transport floor: every hop of the full path, around a function that decides nothing.
  await admin.query(`
    create function public.bench_noop(tenant text, workflow_id text default null, run_ref text default null,
                                      reserve boolean default true, reservation_ttl_seconds int default 1800)
    returns jsonb language sql volatile set search_path = '' as $$ select ${pg.escapeLiteral(stored)}::jsonb $$;
    grant execute on function public.bench_noop(text, text, text, boolean, int) to service_role`);
  const floorDb = createServiceClient(config);
  const viaFloor = async (i: number) => {
    const { error } = await floorDb.rpc('bench_noop' as 'enforce_usage', {
      tenant: tenantIds[i % tenantIds.length] as string,
      workflow_id: 'wf1',
      reserve: true,
      reservation_ttl_seconds: 1800,
    });
    if (error) throw new Error(error.message);
  };
  // Every run has its own reference, as a runner sends (a repeated one would be a retry).
  let runs = 0;
  const ask = (h: typeof handler) => async (i: number) => {
    const response = await h(
      new Request('https://bench/api/v1/enforce', {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          tenant: tenantIds[i % tenantIds.length],
          workflowId: 'wf1',
          runRef: `bench-${++runs}`,
        }),
      }),
    );
    if (response.status !== 200)
      throw new Error(`unexpected ${response.status}: ${await response.text()}`);
    await response.arrayBuffer();
  };
  const viaHandler = ask(handler);
  const viaMemory = ask(fromMemory);

  const service = new pg.Pool({
    connectionString: stack.databaseUrl,
    max: 64,
    options: '-c role=service_role',
  });
  service.on('error', () => {});
  const viaSql = (i: number) =>
    service.query('select public.enforce_usage($1)', [tenantIds[i % tenantIds.length]]);
  const baselineQuery = () => service.query('select 1');

  const { requests, repeat } = options;
  const series = (name: string, c: number, task: (i: number) => Promise<unknown>) =>
    measureMedian(repeat, name, c, requests, task, probe);
  await measure('warm-up', 16, 500, viaHandler);
  await measure('warm-up', 16, 500, viaFloor);
  for (const c of [1, 16, 64]) {
    const baseline = await series('baseline: select 1 over pg', c, baselineQuery);
    const memory = await series('handler alone: answer from memory', c, viaMemory);
    const floor = await series('transport floor: no-op function, full path', c, viaFloor);
    const full = await series('full path: handler→supabase-js→RPC→Postgres', c, viaHandler);
    results.push(baseline, memory, floor, full);
    log(baseline);
    log(memory);
    log(floor, baseline);
    log(full, floor);
  }
  const at16 = (prefix: string) =>
    results.find((r) => r.name.startsWith(prefix) && r.concurrency === 16) as Series;
  // The same path at a fixed arrival rate instead of as fast as it goes, at half and three
  // quarters of the throughput it reached at 16 concurrent: how long a runner waits on a
  // deployment with headroom, stalls included (see measureAtRate).
  const capacity = at16('full path:').perSecond;
  const paced: Series[] = [];
  for (const share of [0.5, 0.75]) {
    const rate = Math.round(capacity * share);
    const measured = await medianOf(repeat, () =>
      measureAtRate(
        rate,
        `full path, open loop at ${share * 100} % of that: ${rate.toLocaleString()}/s`,
        16,
        requests,
        viaHandler,
        probe,
      ),
    );
    paced.push(measured);
    results.push(measured);
    log(measured);
  }
  const sqlBaseline = await series('baseline: select 1 over pg', 16, baselineQuery);
  const sqlOnly = await series('SQL decision alone (enforce_usage)', 16, viaSql);
  results.push(sqlBaseline, sqlOnly);
  log(sqlOnly, sqlBaseline);

  // History size, A-B-A: the small table before and after the large one, each series from
  // the same reservation state. Drift over the run (a busier machine, a fuller
  // reservations table) then shows as the two small series disagreeing, not in the ratio.
  const historySeries = async (label: string) => {
    await admin.query('delete from public.usage_reservations where tenant_id = any ($1)', [
      tenantIds,
    ]);
    await admin.query(
      'update public.usage_counters set reserved = 0, reservations_next_expiry = null where tenant_id = any ($1)',
      [tenantIds],
    );
    await admin.query('vacuum analyze public.usage_reservations, public.usage_counters');
    await measure('warm-up', 16, 500, viaSql);
    const measured = await series(`SQL decision, ${label}`, 16, viaSql);
    results.push(measured);
    log(measured);
    return measured;
  };
  const storedLabel = (n: number) => `${n.toLocaleString()} executions stored`;
  const small = await historySeries(storedLabel(options.small));
  await storeExecutions(options.large);
  const large = await historySeries(storedLabel(options.large));
  await admin.query('truncate public.executions');
  await storeExecutions(options.small);
  const smallAgain = await historySeries(`${storedLabel(options.small)}, again`);
  const smallBracket = {
    p50: (small.p50 + smallAgain.p50) / 2,
    p99: (small.p99 + smallAgain.p99) / 2,
  };

  const full16 = at16('full path:');
  const floor16 = at16('transport floor');
  // Little's law: with every party on the same cores, c requests in flight cannot average
  // less than c × (CPU per request) ÷ cores, however they are scheduled.
  const cores = cpus().length;
  const cpuOf = (s: Series) =>
    s.cpuPerRequest
      ? s.cpuPerRequest.client + s.cpuPerRequest.rpc + s.cpuPerRequest.postgres
      : null;
  const fullCpu = cpuOf(full16);
  const meanFloor = (cpu: number | null) => (cpu === null ? null : (16 * cpu) / cores);
  const summary = {
    at: new Date().toISOString(),
    machine: machine(),
    options,
    series: results,
    meanLatencyFloorAt16Ms: {
      fullPath: meanFloor(fullCpu),
      transportFloor: meanFloor(cpuOf(floor16)),
    },
    targets: {
      'full path p99 at 16 concurrent ≤ 5 ms': { value: full16.p99, met: full16.p99 <= 5 },
      'full path ≥ 2,000 decisions/s at 16 concurrent': {
        value: full16.perSecond,
        met: full16.perSecond >= 2000,
      },
      // Against the mean of the small-table series before and after.
      'p99 with large / small table ≤ 1.2': {
        value: large.p99 / smallBracket.p99,
        met: large.p99 / smallBracket.p99 <= 1.2,
      },
      'p50 with large / small table ≤ 1.2': {
        value: large.p50 / smallBracket.p50,
        met: large.p50 / smallBracket.p50 <= 1.2,
      },
    },
  };
  printTargets(summary.targets);
  const floors = summary.meanLatencyFloorAt16Ms;
  if (floors.fullPath !== null) {
    console.log(
      `\nthe full path spends ${fmt(fullCpu ?? 0, 3)} ms CPU per decision; 16 in flight on ${cores} cores cannot average under ${fmt(floors.fullPath)} ms (the transport floor alone: ${fmt(floors.transportFloor ?? 0)} ms)`,
    );
  }
  for (const p of paced) {
    console.log(
      `open loop at ${fmt(p.offeredPerSecond ?? 0, 0)} decisions/s (latency from when each was due, ≤ 16 in flight): p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms`,
    );
  }
  // What the decision itself adds, against the same path deciding nothing.
  console.log(
    `\nat 16 concurrent the transport floor alone is p99 ${fmt(floor16.p99)} ms, ${fmt(floor16.perSecond, 0)}/s; the decision adds ${fmt(full16.p99 - floor16.p99)} ms at p99`,
  );
  await writeResults('enforce', summary.at, summary);
  await service.end();
} finally {
  await admin.end();
  await stack.stop();
}
