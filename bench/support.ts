import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import type pg from 'pg';
import { projectRoot } from '../src/local/project.ts';
import type { LocalStackInfo } from '../src/local/stack.ts';
import { fmt } from './stats.ts';

/** What the benchmarks share: argument parsing, the stack in a child process, results. */
const positive = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError('must be a positive whole number');
  return n;
};

/**
 * A numeric option of a benchmark: its flags, what it sets and its default; its value is a
 * whole number of at least 1 unless `parse` reads it otherwise.
 */
type NumberOption = readonly [
  flags: string,
  description: string,
  defaultValue: number,
  parse?: (value: string) => number,
];

/**
 * A benchmark's parsed command line, every option numeric, each under the name commander
 * reads it as (`--db-timeout` is dbTimeout), so that the names and their type are written
 * once, in `options`.
 */
export function parseNumberOptions<Name extends string>(
  name: string,
  options: Record<Name, NumberOption>,
): Record<Name, number> {
  const command = new Command().name(name);
  for (const [
    key,
    [flags, description, defaultValue, parse = positive],
  ] of Object.entries<NumberOption>(options)) {
    const option = new Option(flags, description).argParser(parse).default(defaultValue);
    if (option.attributeName() !== key)
      throw new Error(`${flags} is read as ${option.attributeName()}, not ${key}`);
    command.addOption(option);
  }
  return command.parse().opts<Record<Name, number>>();
}

/** How far back the stored executions go (storeExecutions spreads them over these days). */
export const daysOption: NumberOption = [
  '--days <n>',
  'days back from now the executions are spread over',
  60,
];

/**
 * The parsed command line of a benchmark that measures each series with a small and a
 * large executions table, defined once so such benchmarks agree on what the sizes mean;
 * `more` adds a benchmark's own options.
 */
export function benchOptions<More extends string = never>(
  name: string,
  defaults: { requests: number; tenants: string },
  more = {} as Record<More, NumberOption>,
) {
  return parseNumberOptions(name, {
    requests: ['--requests <n>', 'requests per series', defaults.requests],
    large: ['--large <n>', 'stored executions for the large-table comparison', 10_000_000],
    small: ['--small <n>', 'stored executions for the small-table comparison', 10_000],
    tenants: ['--tenants <n>', defaults.tenants, 64],
    ...more,
    repeat: ['--repeat <n>', 'runs per series; the median of each statistic is kept', 3],
  });
}

interface BenchSource {
  id: string;
  tenant_id: string;
}

/** One n8n source per tenant on the 'bench' plan, for the stored executions to come from. */
export async function benchSources(admin: pg.Pool): Promise<BenchSource[]> {
  const { rows } = await admin.query<BenchSource>(
    `insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext)
     select id, 'bench', 'https://bench-' || id || '.example', 'fm1.x' from public.tenants where plan_id = 'bench'
     returning id, tenant_id`,
  );
  return rows;
}

/**
 * Tops public.executions up to `total` rows, spread evenly over `sources` and 20 workflows,
 * each a billable 2-second run: `at` and `status` are SQL expressions of the row number g
 * (and of `params`, from $5) for when it ran and how it ended. `settle` then brings what
 * the rows feed up to date. The checkpoint writes the new pages out now, not during the
 * next measurement. Nothing happens when the table already holds `total`.
 */
export async function topUpExecutions(options: {
  admin: pg.Pool;
  sources: BenchSource[];
  total: number;
  at: string;
  status: string;
  params?: unknown[];
  settle: () => Promise<unknown>;
}): Promise<void> {
  const { admin, sources, total } = options;
  const { rows } = await admin.query('select count(*)::bigint as n from public.executions');
  const have = Number(rows[0].n);
  const per = Math.ceil((total - have) / sources.length);
  if (per <= 0) return;
  const started = performance.now();
  for (const [i, source] of sources.entries()) {
    await admin.query(
      `insert into public.executions (source_id, execution_id, tenant_id, workflow_id, mode, status,
         started_at, stopped_at, occurred_at, duration_ms, billable, period_start)
       select $1, $3 + g, $2, 'wf' || (g % 20), 'trigger', ${options.status},
              at, at + interval '2 seconds', at, 2000, true,
              date_trunc('month', at at time zone 'UTC') at time zone 'UTC'
       from generate_series(1, $4) g, lateral (select ${options.at} as at) x`,
      [source.id, source.tenant_id, have + i * per, per, ...(options.params ?? [])],
    );
  }
  await options.settle();
  await admin.query('checkpoint');
  console.log(
    `stored ${total.toLocaleString()} executions (${fmt((performance.now() - started) / 1000, 1)} s)`,
  );
}

/**
 * The local stack in a child process (stack-process.ts), as PostgREST runs apart from the
 * functions in production; stop() ends it.
 */
export async function startStackProcess(): Promise<
  LocalStackInfo & { pid: number; stop(): Promise<void> }
> {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('./stack-process.ts', import.meta.url))],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const [line] = (await once(createInterface({ input: child.stdout as Readable }), 'line')) as [
    string,
  ];
  return {
    ...(JSON.parse(line) as LocalStackInfo),
    pid: child.pid as number,
    stop: async () => {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** Writes bench/results/<name>-<time>.json and says where. */
export async function writeResults(name: string, at: string, results: unknown): Promise<void> {
  await mkdir(`${projectRoot}bench/results`, { recursive: true });
  const file = `${projectRoot}bench/results/${name}-${at.replace(/[:.]/g, '-')}.json`;
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
}

/** The machine a result was measured on, for the results file. */
export const machine = () => ({
  cpus: cpus().length,
  model: cpus()[0]?.model,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
});

/** ✓ or ✗ per target, with its measured value where it has one. */
export function printTargets(targets: Record<string, boolean | { value: number; met: boolean }>) {
  console.log('\ntargets:');
  for (const [name, target] of Object.entries(targets)) {
    const met = typeof target === 'boolean' ? target : target.met;
    const value = typeof target === 'boolean' ? '' : `: ${fmt(target.value)}`;
    console.log(`  ${met ? '✓' : '✗'} ${name}${value}`);
  }
}

/**
 * Tops the stored executions up to `total` straight in SQL (collecting that many through
 * n8n would take hours), spread over the bench sources and the last `days` days as the
 * collector would store them (calendar-month periods, their partitions made first), then
 * sets the counters and daily totals they add up to.
 */
export async function storeExecutions(
  admin: pg.Pool,
  input: { sources: BenchSource[]; total: number; days: number },
): Promise<void> {
  await admin.query(
    `select private.ensure_execution_partition(now() - make_interval(days => d))
     from generate_series(0, $1) d`,
    [input.days],
  );
  await topUpExecutions({
    admin,
    sources: input.sources,
    total: input.total,
    at: "now() - ((g::bigint * 7919) % $5) * interval '1 second'",
    status: "case when g % 13 = 0 then 'error' else 'success' end",
    params: [input.days * 86_400],
    settle: async () => {
      await admin.query(
        `insert into public.usage_counters as c (tenant_id, period_start, period_end, executions, billable,
           billable_success, billable_failed, billable_duration_ms)
         select tenant_id, period_start, period_start + interval '1 month', count(*), count(*),
                count(*) filter (where status = 'success'), count(*) filter (where status <> 'success'), sum(duration_ms)
         from public.executions group by tenant_id, period_start
         on conflict (tenant_id, period_start) do update set executions = excluded.executions,
           billable = excluded.billable, billable_success = excluded.billable_success,
           billable_failed = excluded.billable_failed, billable_duration_ms = excluded.billable_duration_ms`,
      );
      await admin.query(
        `insert into public.usage_daily as d (tenant_id, day, executions, billable, failed, duration_ms)
         select tenant_id, (occurred_at at time zone 'UTC')::date, count(*), count(*),
                count(*) filter (where status <> 'success'), sum(duration_ms)
         from public.executions group by 1, 2
         on conflict (tenant_id, day) do update set executions = excluded.executions,
           billable = excluded.billable, failed = excluded.failed, duration_ms = excluded.duration_ms`,
      );
      await admin.query(
        'vacuum analyze public.executions, public.usage_counters, public.usage_daily',
      );
    },
  });
}
