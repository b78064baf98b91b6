import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { stringify } from 'csv-stringify';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { ok, type Result, ThrownFailure } from '../domain/result.ts';
import { type ExportRange, rangeInstants } from './export-range.ts';

export const EXPORT_GROUPINGS = ['day', 'workflow', 'execution'] as const;
export type ExportGrouping = (typeof EXPORT_GROUPINGS)[number];
export const EXPORT_FORMATS = ['csv', 'json'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

type Functions = Database['public']['Functions'];
type Row<F extends keyof Functions> =
  Functions[F]['Returns'] extends ReadonlyArray<infer R> ? R : never;
type DayRow = Row<'export_usage_days'>;
type WorkflowRow = Row<'export_usage_workflows'>;
type ExecutionRow = Row<'export_usage_executions'>;

/**
 * Supabase's default PostgREST max-rows, so a page is not cut short against a default
 * project; a cut page would still be safe, since the next page starts after its last row.
 */
const EXPORT_PAGE_ROWS = 1000;

export type ExportProgress =
  /** What the export covers, from the daily totals: tenant-days, or executions. */
  | { type: 'size'; total: number; unit: 'days' | 'executions' }
  /** A page read: how much of `total` it covers. */
  | { type: 'page'; covered: number };

export interface ExportSummary {
  rows: number;
}

/**
 * Pages of a keyset read, one ahead: the next page is asked for as soon as the last row of
 * this one is known, so the database works while the rows are written. At most two pages
 * are held. The read ends at an empty page.
 */
async function* keysetRows<R>(
  readPage: (after: R | undefined) => Promise<R[]>,
  onPage: (rows: R[]) => void,
): AsyncGenerator<R> {
  const ahead = (after: R | undefined) => {
    const page = readPage(after);
    // Awaited below; until then a failure must not count as unhandled.
    page.catch(() => {});
    return page;
  };
  let next = ahead(undefined);
  for (;;) {
    const page = await next;
    if (page.length === 0) return;
    next = ahead(page.at(-1));
    onPage(page);
    yield* page;
  }
}

type PageAnswer<R> = Parameters<typeof rpcResult<R[]>>[0];

const unwrapPage = <R>(response: PageAnswer<R>): R[] => {
  const result = rpcResult(response);
  // A page that could not be read is carried through the stream to the result.
  if (!result.ok) throw new ThrownFailure(result.error);
  return result.value;
};

interface Grouping<R> {
  columns: Array<keyof R & string>;
  /** The export function's answer for the page after `after`. */
  read: (after: R | undefined) => PromiseLike<PageAnswer<R>>;
  covered: (rows: R[]) => number;
}

/** The totals a row per tenant and day or per workflow carries, in their export order. */
const TOTALS = ['executions', 'billable', 'failed', 'duration_ms'] as const;

function groupingFor(
  db: Db,
  by: ExportGrouping,
  tenantIds: string[] | null,
  range: ExportRange,
  pageRows: number,
): Grouping<DayRow> | Grouping<WorkflowRow> | Grouping<ExecutionRow> {
  const { fromAt, toAt } = rangeInstants(range);
  const page = { tenant_ids: tenantIds ?? undefined, max_rows: pageRows };
  const instants = { ...page, from_at: fromAt, to_at: toAt };
  if (by === 'day') {
    return {
      columns: ['tenant_id', 'external_ref', 'day', ...TOTALS],
      read: (after: DayRow | undefined) =>
        db.rpc('export_usage_days', {
          ...page,
          from_day: range.fromDay,
          to_day: range.toDay,
          after_tenant_id: after?.tenant_id,
          after_day: after?.day,
        }),
      covered: (rows) => rows.length,
    } satisfies Grouping<DayRow>;
  }
  if (by === 'workflow') {
    return {
      columns: ['tenant_id', 'external_ref', 'workflow_id', ...TOTALS],
      read: (after: WorkflowRow | undefined) =>
        db.rpc('export_usage_workflows', {
          ...instants,
          after_tenant_id: after?.tenant_id,
          after_workflow_id: after?.workflow_id,
        }),
      covered: (rows) => rows.reduce((sum, r) => sum + r.executions, 0),
    } satisfies Grouping<WorkflowRow>;
  }
  return {
    columns: [
      'tenant_id',
      'external_ref',
      'source_id',
      'execution_id',
      'workflow_id',
      'mode',
      'status',
      'occurred_at',
      'started_at',
      'stopped_at',
      'duration_ms',
      'billable',
      'period_start',
    ],
    read: (after: ExecutionRow | undefined) =>
      db.rpc('export_usage_executions', {
        ...instants,
        after_tenant_id: after?.tenant_id,
        after_occurred_at: after?.occurred_at,
        after_source_id: after?.source_id,
        after_execution_id: after?.execution_id,
      }),
    covered: (rows) => rows.length,
  } satisfies Grouping<ExecutionRow>;
}

/** Rows as text: CSV with a header line, or NDJSON (one JSON object per line). */
function formatter(format: ExportFormat, columns: string[]): Transform {
  if (format === 'csv') {
    return stringify({
      header: true,
      columns,
      // A cell that starts like a formula is not run by the spreadsheet that opens it.
      escape_formulas: true,
      cast: { boolean: (value) => String(value) },
    });
  }
  return new Transform({
    writableObjectMode: true,
    transform(row, _encoding, done) {
      done(null, `${JSON.stringify(row)}\n`);
    },
  });
}

/**
 * Usage of some tenants (null: all) over some UTC days, per tenant and day, workflow or
 * execution, written to `output` as it is read: one keyset page at a time through the
 * service-only export functions, each row waiting for the output to take the one before,
 * so memory stays flat however many executions there are. A failed read ends the export
 * with the rows written so far; the failure is the result.
 */
export async function exportUsage(input: {
  db: Db;
  tenantIds: string[] | null;
  range: ExportRange;
  by: ExportGrouping;
  format: ExportFormat;
  output: NodeJS.WritableStream;
  /** False for a stream that outlives the export (the process's stdout). */
  endOutput: boolean;
  pageRows?: number;
  onProgress?: (event: ExportProgress) => void;
}): Promise<Result<ExportSummary>> {
  const { db, range, by } = input;
  const size = rpcResult(
    await db.rpc('export_usage_size', {
      tenant_ids: input.tenantIds ?? undefined,
      from_day: range.fromDay,
      to_day: range.toDay,
    }),
  );
  if (!size.ok) return size;
  const [totals] = size.value;
  input.onProgress?.(
    by === 'day'
      ? { type: 'size', total: totals?.days ?? 0, unit: 'days' }
      : { type: 'size', total: totals?.executions ?? 0, unit: 'executions' },
  );

  // Each grouping's read and covered take the rows that grouping reads.
  const grouping = groupingFor(
    db,
    by,
    input.tenantIds,
    range,
    input.pageRows ?? EXPORT_PAGE_ROWS,
  ) as unknown as Grouping<Record<string, unknown>>;
  let rows = 0;
  const source = Readable.from(
    keysetRows(
      async (after) => unwrapPage(await grouping.read(after)),
      (page) => {
        rows += page.length;
        input.onProgress?.({ type: 'page', covered: grouping.covered(page) });
      },
    ),
  );
  try {
    await pipeline(source, formatter(input.format, grouping.columns), input.output, {
      end: input.endOutput,
    });
  } catch (error) {
    if (error instanceof ThrownFailure) return { ok: false, error: error.failure };
    throw error;
  }
  return ok({ rows });
}
