import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { runCollection } from '../src/collector/run-collection.ts';
import { PAGES_PER_INGEST } from '../src/collector/sync-source.ts';
import { toIngestRow } from '../src/collector/walk.ts';
import { createServiceClient } from '../src/db/client.ts';
import { rpcFetch } from '../src/db/fetch.ts';
import { sealApiKey } from '../src/n8n/api-key.ts';
import { createN8nClient, type N8nClient } from '../src/n8n/client.ts';
import { parseExecution, parseExecutionPage } from '../src/n8n/schemas.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { type CpuSample, cpuDelta } from './cpu.ts';
import { type HeapUse, heapUse, profiled } from './heap.ts';
import { fmt } from './stats.ts';
import { machine, parseNumberOptions, printTargets, writeResults } from './support.ts';
import { startCollectorBench, syntheticExecution, syntheticPath } from './synthetic-n8n.ts';

/**
 * npm run bench:ingest: collection throughput on the real path (n8n client → collector →
 * supabase-js → RPC endpoint → ingest_execution_page) against a synthetic n8n that makes
 * its pages on the fly, with an optional latency per request. In the same run: the same
 * pages replayed straight into the SQL function over pg (the ceiling), and two baselines,
 * one RPC per execution and one INSERT per execution. The real path runs twice: first into
 * a partition that does not exist yet (as on the first collection of every month), then
 * into the same partition once it has statistics. Writes bench/results/ingest-<time>.json.
 */
const options = parseNumberOptions('bench-ingest', {
  executions: ['--executions <n>', 'executions per collected source', 200_000],
  latency: ['--latency <ms>', "the synthetic n8n's latency per request", 0, Number],
  baseline: ['--baseline <n>', 'executions sent by each per-execution baseline', 2000],
});

const PAGE = 250;
const bench = await startCollectorBench({ latencyMs: options.latency });
const { stack, probe, upstream, admin, keyring } = bench;

/** Time spent per party over a series, summed (the walk runs them side by side). */
interface Spent {
  listMs: number;
  rpcMs: number;
  ingestCalls: number;
}

/** A series' throughput and where its pages' time went. */
interface SeriesResult {
  name: string;
  executions: number;
  seconds: number;
  perSecond: number;
  pages?: number;
  ingestCalls?: number;
  msPerPage?: { wall: number; fetchAndParse: number; ingestRpc: number; overlapped: number };
  cpuMsPerPage?: CpuSample;
  peakRssMiB: number;
  heap?: HeapUse;
}

const peakRssMiB = () => process.resourceUsage().maxRSS / 1024;
// A month no test or other series touches, whose partition does not exist yet: in the past,
// as the collector refuses executions that start ahead of its clock.
const { rows: monthRows } = await admin.query<{ month: Date; partition: string }>(
  `select date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' - interval '6 months' as month,
          'executions_' || to_char(date_trunc('month', now() at time zone 'UTC') - interval '6 months', 'YYYY_MM') as partition`,
);
const month = monthRows[0] as { month: Date; partition: string };
/** The newest execution of every source: a fortnight into that month. */
const newestAt = month.month.getTime() + 14 * 86_400_000;

async function addSource(executions: number): Promise<{ sourceId: string; baseUrl: string }> {
  const { rows } = await admin.query<{ id: string }>(
    "insert into public.tenants (name, plan_id) values ('bench ingest', 'bench-ingest') returning id",
  );
  const tenantId = (rows[0] as { id: string }).id;
  const apiKey = `n8n_api_${randomBytes(8).toString('hex')}`;
  const baseUrl = `${upstream.url}${syntheticPath({ executions, growth: 0, newestAt })}`;
  const { rows: sources } = await admin.query<{ id: string }>(
    `insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext)
     values ($1, 'bench', $2, $3) returning id`,
    [tenantId, baseUrl, sealApiKey(keyring, tenantId, apiKey)],
  );
  const sourceId = (sources[0] as { id: string }).id;
  // A new source backfills from the start of that month, not of the tenant's current period.
  await admin.query(
    'insert into public.collector_source_state (source_id, backfill_from) values ($1, $2)',
    [sourceId, month.month],
  );
  return { sourceId, baseUrl };
}

/** The real path: one collector run over a new source of `options.executions`. */
async function realPath(name: string): Promise<SeriesResult> {
  const { sourceId } = await addSource(options.executions);
  const spent: Spent = { listMs: 0, rpcMs: 0, ingestCalls: 0 };
  const timedFetch: typeof fetch = async (input, init) => {
    const t0 = performance.now();
    const response = await rpcFetch(input, init);
    if (String(input).endsWith('/rpc/ingest_execution_page')) {
      spent.rpcMs += performance.now() - t0;
      spent.ingestCalls += 1;
    }
    return response;
  };
  const timedClient = (client: N8nClient): N8nClient => ({
    ...client,
    async listExecutions(params) {
      const t0 = performance.now();
      const page = await client.listExecutions(params);
      spent.listMs += performance.now() - t0;
      return page;
    },
  });
  const db = createServiceClient(
    { SUPABASE_URL: stack.supabaseUrl, SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey },
    timedFetch,
  );
  const cpuBefore = probe?.();
  const started = performance.now();
  const { value: collected, profile } = await profiled(() =>
    runCollection({
      db,
      keyring,
      log: silentLogger,
      trigger: 'manual',
      select: { sourceIds: [sourceId] },
      createN8nClient: ({ baseUrl, apiKey }) => timedClient(createN8nClient({ baseUrl, apiKey })),
      settings: {
        budgetMs: 3_600_000,
        concurrency: 1,
        leaseSeconds: 600,
        sliceSources: 1,
        openMaxAgeMs: 14 * 86_400_000,
        revisitBatch: 100,
        probeBatch: 1000,
        probeConcurrency: 4,
      },
    }),
  );
  if (!collected.ok) throw new Error(`${name}: ${collected.error.message}`);
  const summary = collected.value;
  const seconds = (performance.now() - started) / 1000;
  if (summary.executionsIngested !== options.executions || summary.errors.length) {
    throw new Error(
      `${name}: collected ${summary.executionsIngested}, ${JSON.stringify(summary.errors)}`,
    );
  }
  const pages = summary.pages;
  const wall = (seconds * 1000) / pages;
  return {
    name,
    executions: summary.executionsIngested,
    seconds,
    perSecond: summary.executionsIngested / seconds,
    pages,
    ingestCalls: spent.ingestCalls,
    msPerPage: {
      wall,
      fetchAndParse: spent.listMs / pages,
      ingestRpc: spent.rpcMs / pages,
      // Fetching the next page while the previous ones are ingested.
      overlapped: (spent.listMs + spent.rpcMs) / pages - wall,
    },
    cpuMsPerPage: cpuDelta(cpuBefore, probe?.(), pages),
    peakRssMiB: peakRssMiB(),
    heap: heapUse(profile, summary.executionsIngested),
  };
}

/**
 * The walk's cursor chain alone: every page listed after the one before through the n8n
 * client, nothing stored. n8n hands out the next cursor with each page, so no walk lists
 * faster than this: with L ms of latency a page costs L plus the chain's own time per page,
 * which bounds the real path's share of 250/L.
 */
async function fetchChain(): Promise<SeriesResult> {
  const n8n = createN8nClient({
    baseUrl: `${upstream.url}${syntheticPath({ executions: options.executions, growth: 0, newestAt })}`,
    apiKey: 'bench',
  });
  let cursor: string | null = null;
  let pages = 0;
  let executions = 0;
  const cpuBefore = probe?.();
  const started = performance.now();
  do {
    const page = await n8n.listExecutions({ limit: PAGE, ...(cursor ? { cursor } : {}) });
    cursor = page.nextCursor;
    executions += page.data.length;
    pages += 1;
  } while (cursor);
  const seconds = (performance.now() - started) / 1000;
  return {
    name: 'fetch chain alone (n8n client, nothing stored)',
    executions,
    seconds,
    perSecond: executions / seconds,
    pages,
    msPerPage: {
      wall: (seconds * 1000) / pages,
      fetchAndParse: (seconds * 1000) / pages,
      ingestRpc: 0,
      overlapped: 0,
    },
    cpuMsPerPage: cpuDelta(cpuBefore, probe?.(), pages),
    peakRssMiB: peakRssMiB(),
  };
}

/** A lease on a new source, taken as the service role over `client`. */
async function leasedSource(client: pg.PoolClient, executions: number) {
  const { sourceId } = await addSource(executions);
  const { rows } = await client.query<{ lease_token: string }>(
    `select lease_token from public.claim_collector_sources(
       lease_seconds => 3600, max_sources => 1, source_ids => array[$1]::uuid[], ignore_schedule => true)`,
    [sourceId],
  );
  return { sourceId, leaseToken: (rows[0] as { lease_token: string }).lease_token };
}

/**
 * The pages the synthetic n8n serves for a source of `total`, as the collector sends them:
 * PAGES_PER_INGEST to a call, with the progress of the last.
 */
async function* batchesOf(baseUrl: string, total: number) {
  let cursor: string | null = null;
  do {
    const rows = [];
    let pages = 0;
    do {
      const url = new URL(`${baseUrl}/api/v1/executions`);
      url.searchParams.set('limit', String(PAGE));
      if (cursor) url.searchParams.set('cursor', cursor);
      const parsed = parseExecutionPage(await (await fetch(url)).json());
      if (!parsed.ok) throw new Error(parsed.message);
      cursor = parsed.page.nextCursor;
      rows.push(...parsed.page.data.map(toIngestRow));
      pages += 1;
    } while (cursor && pages < PAGES_PER_INGEST);
    yield {
      rows: JSON.stringify(rows),
      walk: JSON.stringify({ cursor, top_id: total, done: cursor === null }),
      pages,
    };
  } while (cursor);
}

/** The same pages straight into ingest_execution_page over pg: what the path could reach. */
async function replayCeiling(): Promise<SeriesResult> {
  const client = await admin.connect();
  try {
    await client.query('set role service_role');
    const { sourceId, leaseToken } = await leasedSource(client, options.executions);
    const { rows } = await client.query<{ base_url: string }>(
      'select base_url from public.n8n_sources where id = $1',
      [sourceId],
    );
    let ms = 0;
    let pages = 0;
    const cpuBefore = probe?.();
    for await (const batch of batchesOf(
      (rows[0] as { base_url: string }).base_url,
      options.executions,
    )) {
      const t0 = performance.now();
      await client.query('select public.ingest_execution_page($1, $2, $3::jsonb, $4::jsonb)', [
        sourceId,
        leaseToken,
        batch.rows,
        batch.walk,
      ]);
      ms += performance.now() - t0;
      pages += batch.pages;
    }
    return {
      name: 'replay into the SQL function over pg (ceiling)',
      executions: options.executions,
      seconds: ms / 1000,
      perSecond: options.executions / (ms / 1000),
      pages,
      cpuMsPerPage: cpuDelta(cpuBefore, probe?.(), pages),
      peakRssMiB: peakRssMiB(),
    };
  } finally {
    await client.query('reset role');
    client.release();
  }
}

/** A baseline series: `write` for every execution id from the newest down, timed. */
async function perExecution(
  name: string,
  write: (id: number) => Promise<void>,
): Promise<SeriesResult> {
  const started = performance.now();
  for (let id = options.baseline; id >= 1; id--) await write(id);
  const seconds = (performance.now() - started) / 1000;
  return {
    name,
    executions: options.baseline,
    seconds,
    perSecond: options.baseline / seconds,
    peakRssMiB: peakRssMiB(),
  };
}

/** One execution per ingest RPC through supabase-js and the RPC endpoint. */
async function rpcPerExecution(): Promise<SeriesResult> {
  const client = await admin.connect();
  const { sourceId, leaseToken } = await leasedSource(client, options.baseline);
  client.release();
  const db = createServiceClient({
    SUPABASE_URL: stack.supabaseUrl,
    SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
  });
  return perExecution('baseline: one RPC per execution', async (id) => {
    const { error } = await db.rpc('ingest_execution_page', {
      source_id: sourceId,
      lease_token: leaseToken,
      executions: [executionRow(id, options.baseline)],
    });
    if (error) throw new Error(error.message);
  });
}

/** One plain INSERT of the raw row per execution over pg (no counters, no progress). */
async function insertPerExecution(): Promise<SeriesResult> {
  const { sourceId } = await addSource(options.baseline);
  const { rows } = await admin.query<{ tenant_id: string }>(
    'select tenant_id from public.n8n_sources where id = $1',
    [sourceId],
  );
  const tenantId = (rows[0] as { tenant_id: string }).tenant_id;
  const client = await admin.connect();
  try {
    return await perExecution('baseline: one INSERT per execution', async (id) => {
      const e = executionRow(id, options.baseline);
      await client.query(
        `insert into public.executions (source_id, execution_id, tenant_id, workflow_id, mode, status,
           started_at, stopped_at, occurred_at, duration_ms, billable, period_start)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $7, 700, $5 = 'trigger', date_trunc('month', $7::timestamptz))
         on conflict do nothing`,
        [sourceId, id, tenantId, e.workflow_id, e.mode, e.status, e.started_at, e.stopped_at],
      );
    });
  } finally {
    client.release();
  }
}

/** Execution `id` of a source of `top`, as the collector sends it. */
function executionRow(id: number, top: number) {
  const parsed = parseExecution(syntheticExecution(id, { executions: top, growth: 0, newestAt }));
  if (!parsed.ok) throw new Error(parsed.message);
  return toIngestRow(parsed.execution);
}

function print(s: SeriesResult, reference?: SeriesResult) {
  const ratio = reference
    ? `  ×${fmt(s.perSecond / reference.perSecond)} of ${reference.name.split(' (')[0]}`
    : '';
  console.log(
    `${s.name.padEnd(52)} ${String(s.executions).padStart(8)} in ${fmt(s.seconds, 1).padStart(6)} s = ${fmt(s.perSecond, 0).padStart(7)}/s${ratio}`,
  );
  if (s.msPerPage && s.ingestCalls === undefined) {
    console.log(`${''.padEnd(52)} per page ${fmt(s.msPerPage.wall)} ms`);
  } else if (s.msPerPage) {
    const p = s.msPerPage;
    console.log(
      `${''.padEnd(52)} per page ${fmt(p.wall)} ms: fetch + parse ${fmt(p.fetchAndParse)}, ingest RPC ${fmt(p.ingestRpc)} (${s.ingestCalls} calls for ${s.pages} pages), of which overlapped ${fmt(p.overlapped)}`,
    );
  }
  if (s.heap) {
    const h = s.heap;
    const live = h.liveAfterFullMiB
      ? `${fmt(h.liveAfterFullMiB.min, 1)}–${fmt(h.liveAfterFullMiB.max, 1)} MiB in use after each of ${h.fullCollections} full collections`
      : 'no full collection';
    console.log(
      `${''.padEnd(52)} heap: ${fmt(h.promotedKiBPer1000, 0)} KiB promoted per 1,000 executions, ${live}, at most ${fmt(h.peakHeapMiB, 0)} MiB`,
    );
  }
  if (s.cpuMsPerPage) {
    const c = s.cpuMsPerPage;
    console.log(
      `${''.padEnd(52)} cpu/page ms: collector + upstream ${fmt(c.client)}, RPC endpoint ${fmt(c.rpc)}, postgres ${fmt(c.postgres)}`,
    );
  }
}

try {
  await admin.query(
    "insert into public.plans (id, name, included_executions, limit_policy) values ('bench-ingest', 'Bench ingest', null, 'unlimited')",
  );
  const { rows: existing } = await admin.query('select to_regclass($1) as r', [
    `private.${month.partition}`,
  ]);
  if (existing[0].r !== null) throw new Error(`${month.partition} exists already`);

  console.log(
    `ingest: ${options.executions.toLocaleString()} executions per source, ${options.latency} ms upstream latency, pages of ${PAGE}\n`,
  );
  const fresh = await realPath(`real path, new partition (${month.partition})`);
  print(fresh);
  const { rows: analyzed } = await admin.query<{ analyzed: boolean }>(
    `select coalesce(last_analyze, last_autoanalyze) is not null as analyzed
     from pg_stat_user_tables where schemaname = 'private' and relname = $1`,
    [month.partition],
  );
  // The warm series: the same partition with statistics, however they came.
  await admin.query(`analyze private.${month.partition}`);
  const warm = await realPath('real path, warm partition');
  print(warm);
  const chain = await fetchChain();
  print(chain);
  const ceiling = await replayCeiling();
  print(ceiling);
  const perRpc = await rpcPerExecution();
  print(perRpc);
  const perInsert = await insertPerExecution();
  print(perInsert);

  console.log('\nratios:');
  console.log(
    `  real (warm) / one RPC per execution:   ×${fmt(warm.perSecond / perRpc.perSecond, 1)}`,
  );
  console.log(
    `  real (warm) / one INSERT per execution: ×${fmt(warm.perSecond / perInsert.perSecond, 1)}`,
  );
  console.log(
    `  real (warm) / replay ceiling:           ×${fmt(warm.perSecond / ceiling.perSecond)}`,
  );
  console.log(
    `  real (warm) / fetch chain alone:        ×${fmt(warm.perSecond / chain.perSecond)}`,
  );
  console.log(
    `  new partition / warm (time):            ×${fmt(warm.perSecond / fresh.perSecond)}`,
  );
  if (options.latency > 0) {
    console.log(
      `  of 250/L: real (warm) ×${fmt(warm.perSecond / ((PAGE * 1000) / options.latency))}, fetch chain alone ×${fmt(chain.perSecond / ((PAGE * 1000) / options.latency))} (its own ${fmt((chain.msPerPage?.wall ?? 0) - options.latency)} ms a page over L)`,
    );
  }
  // The real path runs first, so the peak by its end is the collector's; the series after it
  // allocate faster than the collector and let V8 grow its heap further.
  const realPathPeakRssMiB = warm.peakRssMiB;
  console.log(
    `  peak RSS: ${fmt(realPathPeakRssMiB, 0)} MiB by the end of the real path, ${fmt(peakRssMiB(), 0)} MiB over the whole run`,
  );
  // What the collector holds, as against what V8 let grow before collecting: a walk that
  // kept anything per execution would raise this with --executions, peak RSS or not.
  const live = [fresh, warm].flatMap((s) =>
    s.heap?.liveAfterFullMiB ? [s.heap.liveAfterFullMiB.max] : [],
  );
  console.log(
    live.length
      ? `  heap in use after a full collection during the real path: at most ${fmt(Math.max(...live), 1)} MiB`
      : '  no full collection during the real path (the run ended before V8 needed one)',
  );

  const latencyTarget = options.latency > 0 ? (0.9 * (PAGE * 1000)) / options.latency : 20_000;
  const result = {
    at: new Date().toISOString(),
    machine: machine(),
    options,
    series: [fresh, warm, chain, ceiling, perRpc, perInsert],
    newPartitionAnalyzedByTheCollector: analyzed[0]?.analyzed ?? false,
    ratios: {
      realOverRpcPerExecution: warm.perSecond / perRpc.perSecond,
      realOverInsertPerExecution: warm.perSecond / perInsert.perSecond,
      realOverCeiling: warm.perSecond / ceiling.perSecond,
      realOverFetchChain: warm.perSecond / chain.perSecond,
      warmOverNewPartition: warm.perSecond / fresh.perSecond,
    },
    peakRssMiB: peakRssMiB(),
    realPathPeakRssMiB,
    targets: {
      'new partition within 1.5× of warm': {
        value: warm.perSecond / fresh.perSecond,
        met: warm.perSecond / fresh.perSecond <= 1.5,
      },
      [options.latency > 0
        ? `≥ 0.9 × 250/L = ${fmt(latencyTarget, 0)} executions/s`
        : '≥ 20,000 executions/s without upstream latency']: {
        value: warm.perSecond,
        met: warm.perSecond >= latencyTarget,
      },
    },
  };
  printTargets(result.targets);
  await writeResults('ingest', result.at, result);
} finally {
  await bench.stop();
}
