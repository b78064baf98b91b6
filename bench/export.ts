import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createServiceClient } from '../src/db/client.ts';
import { exportRange } from '../src/export/export-range.ts';
import { EXPORT_FORMATS, type ExportFormat, exportUsage } from '../src/export/export-usage.ts';
import { fmt } from './stats.ts';
import {
  benchSources,
  daysOption,
  machine,
  parseNumberOptions,
  printTargets,
  startStackProcess,
  storeExecutions,
  writeResults,
} from './support.ts';

/**
 * `flowmeter export usage --by execution` at two sizes: the export streams keyset pages
 * through the RPC endpoint (its own process, as PostgREST is) into a file, so its peak
 * memory must not grow with the number of executions. Prints rows/s and the exporting
 * process's peak RSS at each size and the ratio; writes bench/results/export-<time>.json.
 */
const options = parseNumberOptions('bench-export', {
  small: ['--small <n>', 'executions stored for the first export', 100_000],
  large: ['--large <n>', 'executions stored for the second export', 1_000_000],
  tenants: ['--tenants <n>', 'tenants the executions belong to', 8],
  days: daysOption,
});

interface Run {
  executions: number;
  format: ExportFormat;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  bytes: number;
  peakRssMiB: number;
}

const MiB = 2 ** 20;
const stack = await startStackProcess();
const admin = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
admin.on('error', () => {});
const dir = await mkdtemp(join(tmpdir(), 'flowmeter-bench-export-'));
const runs: Run[] = [];

/** One export of everything stored, with the process's RSS sampled while it runs. */
async function measureExport(executions: number, format: ExportFormat): Promise<Run> {
  const range = exportRange({
    from: new Date(Date.now() - options.days * 86_400_000).toISOString().slice(0, 10),
    now: new Date(),
  });
  if (!range.ok) throw new Error(range.error.message);
  const file = join(dir, `usage.${format}`);
  const output = createWriteStream(file);
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  const started = performance.now();
  const result = await exportUsage({
    db: createServiceClient({
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
    }),
    tenantIds: null,
    range: range.value,
    by: 'execution',
    format,
    output,
    endOutput: true,
  }).finally(() => clearInterval(sampler));
  const seconds = (performance.now() - started) / 1000;
  if (!result.ok) throw new Error(`export failed: ${result.error.message}`);
  const { size } = await stat(file);
  await rm(file);
  const run = {
    executions,
    format,
    rows: result.value.rows,
    seconds,
    rowsPerSecond: result.value.rows / seconds,
    bytes: size,
    peakRssMiB: peak / MiB,
  };
  console.log(
    `${executions.toLocaleString().padStart(10)} executions, ${format.padEnd(4)}  ${fmt(seconds, 1).padStart(6)} s  ${fmt(run.rowsPerSecond, 0).padStart(7)} rows/s  ${fmt(size / MiB, 0).padStart(5)} MiB written  peak RSS ${fmt(run.peakRssMiB, 0)} MiB`,
  );
  if (run.rows !== executions) throw new Error(`exported ${run.rows} rows of ${executions}`);
  return run;
}

try {
  await admin.query(
    "insert into public.plans (id, name, included_executions, limit_policy) values ('bench', 'Bench', 100000, 'hard_limit')",
  );
  await admin.query(
    "insert into public.tenants (name, plan_id, external_ref) select 'bench ' || i, 'bench', 'bench-' || i from generate_series(1, $1) i",
    [options.tenants],
  );
  const sources = await benchSources(admin);
  for (const executions of [options.small, options.large]) {
    await storeExecutions(admin, { sources, total: executions, days: options.days });
    for (const format of EXPORT_FORMATS) runs.push(await measureExport(executions, format));
  }

  const ratios = EXPORT_FORMATS.map((format) => {
    const [small, large] = runs.filter((r) => r.format === format) as [Run, Run];
    const ratio = large.peakRssMiB / small.peakRssMiB;
    console.log(
      `${format}: peak RSS ${fmt(large.peakRssMiB, 0)} / ${fmt(small.peakRssMiB, 0)} MiB = ×${fmt(ratio)} for ×${fmt(large.executions / small.executions, 0)} the executions; rows/s ×${fmt(large.rowsPerSecond / small.rowsPerSecond)}`,
    );
    return { format, ratio };
  });
  const targets = Object.fromEntries(
    ratios.map(({ format, ratio }) => [
      `${format}: peak RSS large / small ≤ 1.5 (flat memory)`,
      { value: ratio, met: ratio <= 1.5 },
    ]),
  );
  printTargets(targets);
  const at = new Date().toISOString();
  await writeResults('export', at, { at, machine: machine(), options, runs, targets });
} finally {
  await rm(dir, { recursive: true, force: true });
  await admin.end();
  await stack.stop();
}
