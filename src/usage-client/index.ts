/*
 * Typed helpers for the tenant usage API (docs/usage-api.md), for a frontend that reads
 * Supabase with the signed-in user's JWT: one `supabase.rpc()` call each, arguments and
 * rows in camelCase. Row-level security decides what the user sees; a tenant they are not
 * a member of gives empty results. Timestamps stay ISO strings, days `YYYY-MM-DD`.
 */

import type { PostgrestError, SupabaseClient } from '@supabase/supabase-js';
// The browser build: no Node stream or Buffer, so the dashboard can bundle it.
import { stringify } from 'csv-stringify/browser/esm/sync';
import { z } from 'zod';
import type { Database } from '../db/database.types.ts';
import { dbNumber } from '../db/json-number.ts';

export type UsageDb = SupabaseClient<Database>;

/** A refusal or failure from the database, or an answer whose shape this client does not know. */
export type UsageError = PostgrestError | { code: 'unexpected_shape'; message: string };

export type UsageResult<T> = { data: T; error: null } | { data: null; error: UsageError };

type Functions = Database['public']['Functions'];
type RowOf<F extends keyof Functions> =
  Functions[F]['Returns'] extends ReadonlyArray<infer R> ? R : Functions[F]['Returns'];

const count = dbNumber;
const limitPolicy = z.enum(['hard_limit', 'overage', 'unlimited']);
/** normal; warning at the plan's lowest alert threshold; limit at 100 %; overage above. */
export const usageLevel = z.enum(['normal', 'warning', 'limit', 'overage']);

export type LimitPolicy = z.infer<typeof limitPolicy>;
export type UsageLevel = z.infer<typeof usageLevel>;

/**
 * A row of public.tenant_usage_summary_row, the type every summary returns (the tenant's,
 * the operator console's). Postgres has no NOT NULL on a composite type's fields, so the
 * generated type leaves each one nullable; this says which are, and checks it.
 */
export const usageSummaryRowSchema = z.object({
  tenant_id: z.string(),
  tenant_name: z.string(),
  plan_id: z.string(),
  plan_name: z.string(),
  limit_policy: limitPolicy,
  subscription_status: z.string(),
  period_start: z.string(),
  period_end: z.string(),
  used: count,
  quota: count.nullable(),
  remaining: count.nullable(),
  percent: count.nullable(),
  level: usageLevel,
  overage_units: count,
  estimated_overage_amount: count,
  currency: z.string(),
  reserved: count,
  executions: count,
  failed: count,
});
export type UsageSummaryRow = z.infer<typeof usageSummaryRowSchema>;

export interface UsageSummary {
  tenantId: string;
  tenantName: string;
  planId: string;
  planName: string;
  limitPolicy: LimitPolicy;
  subscriptionStatus: string;
  periodStart: string;
  periodEnd: string;
  /** Collected billable executions in the current period. */
  used: number;
  /** null on unlimited plans; the trial quota while trialing. */
  quota: number | null;
  remaining: number | null;
  percent: number | null;
  level: UsageLevel;
  overageUnits: number;
  /** In the currency's minor unit (cents); 0 unless the plan bills overage. */
  estimatedOverageAmount: number;
  currency: string;
  /** Runs allowed by enforcement and not collected yet. */
  reserved: number;
  executions: number;
  /** Billable executions that ended in error or crashed. */
  failed: number;
}

export interface DailyUsage {
  day: string;
  executions: number;
  billable: number;
  failed: number;
  durationMs: number;
}

export interface WorkflowUsage {
  workflowId: string;
  executions: number;
  billable: number;
  /** 0 to 1. */
  successRate: number;
  avgDurationMs: number | null;
  p95DurationMs: number | null;
  /** Sum of the known durations; 0 when none is known. */
  totalDurationMs: number;
}

export interface UsagePeriod {
  periodStart: string;
  periodEnd: string;
  isCurrent: boolean;
  used: number;
  /** The plan's quota as it is now, not as it was then; null on unlimited plans. */
  quota: number | null;
  overageUnits: number;
  executions: number;
  failed: number;
  reportedToStripe: number;
  pendingToStripe: number;
  late: number;
  /** Executions added (positive) or taken off (negative) by corrections of the period. */
  corrected: number;
  /** Credited to the customer's balance by corrections, in the currency's minor unit. */
  creditedAmount: number;
}

/** One correction of a period's billed usage, with the reason the operator gave. */
export interface UsageCorrection {
  id: number;
  periodStart: string;
  periodEnd: string;
  delta: number;
  reason: string;
  method: 'meter_event' | 'cancel' | 'credit' | 'none';
  creditAmount: number | null;
  currency: string | null;
  status: 'pending' | 'sent' | 'recorded' | 'late' | 'review';
  createdAt: string;
  sentAt: string | null;
}

export interface UsageAlert {
  id: number;
  tenantId: string;
  periodStart: string;
  periodEnd: string;
  /** Percent of the quota. */
  threshold: number;
  used: number;
  quota: number;
  createdAt: string;
  readAt: string | null;
}

export const toUsageSummary = (r: UsageSummaryRow): UsageSummary => ({
  tenantId: r.tenant_id,
  tenantName: r.tenant_name,
  planId: r.plan_id,
  planName: r.plan_name,
  limitPolicy: r.limit_policy,
  subscriptionStatus: r.subscription_status,
  periodStart: r.period_start,
  periodEnd: r.period_end,
  used: r.used,
  quota: r.quota,
  remaining: r.remaining,
  percent: r.percent,
  level: r.level,
  overageUnits: r.overage_units,
  estimatedOverageAmount: r.estimated_overage_amount,
  currency: r.currency,
  reserved: r.reserved,
  executions: r.executions,
  failed: r.failed,
});

export const toDailyUsage = (r: RowOf<'tenant_usage_daily'>): DailyUsage => ({
  day: r.day,
  executions: r.executions,
  billable: r.billable,
  failed: r.failed,
  durationMs: r.duration_ms,
});

export const toWorkflowUsage = (r: RowOf<'tenant_workflow_breakdown'>): WorkflowUsage => ({
  workflowId: r.workflow_id,
  executions: r.executions,
  billable: r.billable,
  successRate: r.success_rate,
  avgDurationMs: r.avg_duration_ms,
  p95DurationMs: r.p95_duration_ms,
  totalDurationMs: r.total_duration_ms,
});

export const toUsagePeriod = (r: RowOf<'tenant_usage_history'>): UsagePeriod => ({
  periodStart: r.period_start,
  periodEnd: r.period_end,
  isCurrent: r.is_current,
  used: r.used,
  quota: r.quota,
  overageUnits: r.overage_units,
  executions: r.executions,
  failed: r.failed,
  reportedToStripe: r.reported_to_stripe,
  pendingToStripe: r.pending_to_stripe,
  late: r.late,
  corrected: r.corrected,
  creditedAmount: r.credited_amount,
});

export const toUsageCorrection = (r: RowOf<'tenant_usage_corrections'>): UsageCorrection => ({
  id: r.id,
  periodStart: r.period_start,
  periodEnd: r.period_end,
  delta: r.delta,
  reason: r.reason,
  method: r.method as UsageCorrection['method'],
  creditAmount: r.credit_amount,
  currency: r.currency,
  status: r.status as UsageCorrection['status'],
  createdAt: r.created_at,
  sentAt: r.sent_at,
});

export interface ExecutionUsage {
  /** startedAt, else stoppedAt: the instant that put it in its period and day. */
  occurredAt: string;
  sourceId: string;
  /** n8n's execution id. */
  executionId: number;
  workflowId: string;
  mode: string;
  status: string;
  startedAt: string | null;
  stoppedAt: string | null;
  durationMs: number | null;
  billable: boolean;
  billingPeriodStart: string;
  billingPeriodEnd: string;
}

export const toExecutionUsage = (r: RowOf<'tenant_usage_export'>): ExecutionUsage => ({
  occurredAt: r.occurred_at,
  sourceId: r.source_id,
  executionId: r.execution_id,
  workflowId: r.workflow_id,
  mode: r.mode,
  status: r.status,
  startedAt: r.started_at,
  stoppedAt: r.stopped_at,
  durationMs: r.duration_ms,
  billable: r.billable,
  billingPeriodStart: r.billing_period_start,
  billingPeriodEnd: r.billing_period_end,
});

export const toUsageAlert = (r: RowOf<'mark_alert_read'>): UsageAlert => ({
  id: r.id,
  tenantId: r.tenant_id,
  periodStart: r.period_start,
  periodEnd: r.period_end,
  threshold: r.threshold,
  used: r.used,
  quota: r.quota,
  createdAt: r.created_at,
  readAt: r.read_at,
});

/** A day as the API takes it: `YYYY-MM-DD`, a Date's UTC day. */
export const toDay = (day: string | Date): string =>
  typeof day === 'string' ? day : day.toISOString().slice(0, 10);

const toInstant = (at: string | Date): string => (typeof at === 'string' ? at : at.toISOString());

/** `convert(value)`, or undefined when the value is left out, so the SQL default applies. */
const given = <A, B>(value: A | undefined, convert: (value: A) => B): B | undefined =>
  value === undefined ? undefined : convert(value);

type Compact<T> = { [K in keyof T as undefined extends T[K] ? never : K]: T[K] } & {
  [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined>;
};

/** Named arguments without the ones left out, so the SQL defaults apply. */
export function rpcArgs<T extends Record<string, unknown>>(args: T): Compact<T> {
  return Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined)) as Compact<T>;
}

function mapResult<R, T>(
  response: { data: R | null; error: PostgrestError | null },
  map: (data: R) => T,
): UsageResult<T> {
  if (response.error) return { data: null, error: response.error };
  return { data: map(response.data as R), error: null };
}

/**
 * One set-returning function as a function of the client and of the query its arguments
 * are made from, each row mapped to the client's shape.
 */
function usageRows<F extends keyof Functions, Input extends unknown[], T>(
  fn: F,
  args: (...input: Input) => Functions[F]['Args'],
  toRow: (row: RowOf<F>) => T,
): (supabase: UsageDb, ...input: Input) => Promise<UsageResult<T[]>> {
  return async (supabase, ...input) => {
    const response = await supabase.rpc(fn, args(...input));
    try {
      return mapResult(
        response as { data: RowOf<F>[] | null; error: PostgrestError | null },
        (rows) => rows.map(toRow),
      );
    } catch (error) {
      // A row the schema refuses: the database runs other migrations than this client. An
      // answer, not a crash, so a page or widget can say so instead of hanging.
      if (!(error instanceof z.ZodError)) throw error;
      const path = error.issues[0]?.path.join('.');
      return {
        data: null,
        error: {
          code: 'unexpected_shape',
          message: `${fn} answered in an unexpected shape (${path}); apply the latest migrations`,
        },
      };
    }
  };
}

/**
 * The current period of every tenant the user belongs to, or of one tenant. A row not of
 * the summary's shape is an `unexpected_shape` error: the database runs other migrations.
 */
export const getUsageSummary = usageRows(
  'tenant_usage_summary',
  (tenantId?: string) => rpcArgs({ tenant_id: tenantId }),
  (row) => toUsageSummary(usageSummaryRowSchema.parse(row)),
);

export interface DailyUsageQuery {
  tenantId: string;
  /** Default: the start of the previous billing period. */
  fromDay?: string | Date;
  /** Default: today (UTC). At most 400 days from fromDay. */
  toDay?: string | Date;
}

/** One row per UTC day, days without usage as zeros. */
export const getDailyUsage = usageRows(
  'tenant_usage_daily',
  (query: DailyUsageQuery) =>
    rpcArgs({
      tenant_id: query.tenantId,
      from_day: given(query.fromDay, toDay),
      to_day: given(query.toDay, toDay),
    }),
  toDailyUsage,
);

export interface WorkflowBreakdownQuery {
  tenantId: string;
  /** Default: the current period; otherwise the period containing this instant. */
  periodStart?: string | Date;
  /** Default 50, at most 500. */
  maxRows?: number;
  /** The last workflowId of the previous page. */
  afterWorkflowId?: string;
}

/** Usage per workflow in one period, in workflowId order. */
export const getWorkflowBreakdown = usageRows(
  'tenant_workflow_breakdown',
  (query: WorkflowBreakdownQuery) =>
    rpcArgs({
      tenant_id: query.tenantId,
      period_start: given(query.periodStart, toInstant),
      max_rows: query.maxRows,
      after_workflow_id: query.afterWorkflowId,
    }),
  toWorkflowUsage,
);

export interface UsageHistoryQuery {
  tenantId: string;
  /** Default 12, at most 100. */
  maxRows?: number;
  /** Periods starting before this instant: the last periodStart of the previous page. */
  before?: string | Date;
}

/** Billing periods with counters, newest first. */
export const getUsageHistory = usageRows(
  'tenant_usage_history',
  (query: UsageHistoryQuery) =>
    rpcArgs({
      tenant_id: query.tenantId,
      max_rows: query.maxRows,
      before: given(query.before, toInstant),
    }),
  toUsagePeriod,
);

export interface InvoicePreview {
  tenantId: string;
  periodStart: string;
  periodEnd: string;
  /** `none`: Stripe has no upcoming invoice for the subscription; the amounts are null. */
  status: 'ok' | 'none';
  currency: string | null;
  /** Minor units (cents), after discounts and tax. */
  total: number | null;
  amountDue: number | null;
  subtotal: number | null;
  /** Executions the metered lines bill: the usage Stripe holds. */
  usageQuantity: number | null;
  /** What Stripe bills for them, in minor units. */
  usageAmount: number | null;
  /** When Stripe answered. */
  fetchedAt: string;
}

export const toInvoicePreview = (r: RowOf<'tenant_invoice_preview'>): InvoicePreview => ({
  tenantId: r.tenant_id,
  periodStart: r.period_start,
  periodEnd: r.period_end,
  status: r.status as InvoicePreview['status'],
  currency: r.currency,
  total: r.total,
  amountDue: r.amount_due,
  subtotal: r.subtotal,
  usageQuantity: r.usage_quantity,
  usageAmount: r.usage_amount,
  fetchedAt: r.fetched_at,
});

/**
 * Stripe's upcoming-invoice preview of the current period as the server last fetched it, of
 * every tenant of the user or of one; none before the first fetch or without a subscription.
 */
export const getInvoicePreview = usageRows(
  'tenant_invoice_preview',
  (tenantId?: string) => rpcArgs({ tenant_id: tenantId }),
  toInvoicePreview,
);

export interface UsageCorrectionsQuery {
  tenantId: string;
  /** Only the period starting here; every period by default. */
  periodStart?: string | Date;
  /** Default 50, at most 200. */
  maxRows?: number;
}

/** Corrections of the tenant's billed usage, newest first. */
export const getUsageCorrections = usageRows(
  'tenant_usage_corrections',
  (query: UsageCorrectionsQuery) =>
    rpcArgs({
      tenant_id: query.tenantId,
      for_period: given(query.periodStart, toInstant),
      max_rows: query.maxRows,
    }),
  toUsageCorrection,
);

export interface AlertsQuery {
  tenantId: string;
  unreadOnly?: boolean;
  /** Default 50, at most 200. */
  maxRows?: number;
  /** The last id of the previous page. */
  beforeId?: number;
}

/** The tenant's usage alerts, newest first. */
export const listAlerts = usageRows(
  'tenant_alerts',
  (query: AlertsQuery) =>
    rpcArgs({
      tenant_id: query.tenantId,
      unread_only: query.unreadOnly,
      max_rows: query.maxRows,
      before_id: query.beforeId,
    }),
  toUsageAlert,
);

/** Acknowledges an alert (the first read time is kept); 404 when it is not the user's. */
export async function markAlertRead(
  supabase: UsageDb,
  alertId: number,
): Promise<UsageResult<UsageAlert>> {
  const response = await supabase.rpc('mark_alert_read', { alert_id: alertId });
  return mapResult(response, toUsageAlert);
}

export interface UsageExportQuery {
  tenantId: string;
  /** Default: the current period; otherwise the period containing this instant. */
  periodStart?: string | Date;
  /** Rows per call; default and at most 1000. */
  pageRows?: number;
  /** After each page, with the rows read so far: for a progress indicator. */
  onProgress?: (rowsRead: number) => void;
  /** Stops between pages (a Cancel button); the result is then an AbortError's failure. */
  signal?: AbortSignal;
}

/** One page of the period's executions, after the last one of the previous page. */
export async function getUsageExportPage(
  supabase: UsageDb,
  query: UsageExportQuery & { after?: ExecutionUsage },
): Promise<UsageResult<ExecutionUsage[]>> {
  const { after } = query;
  let call = supabase.rpc(
    'tenant_usage_export',
    rpcArgs({
      tenant_id: query.tenantId,
      period_start: given(query.periodStart, toInstant),
      max_rows: query.pageRows,
      after_occurred_at: after?.occurredAt,
      after_source_id: after?.sourceId,
      after_execution_id: after?.executionId,
    }),
  );
  if (query.signal) call = call.abortSignal(query.signal);
  return mapResult(await call, (rows) => rows.map(toExecutionUsage));
}

/** The CSV's columns, in order: each field under its snake_case name, as the SQL names it. */
const EXPORT_COLUMNS = (
  [
    'occurredAt',
    'workflowId',
    'executionId',
    'sourceId',
    'mode',
    'status',
    'billable',
    'startedAt',
    'stoppedAt',
    'durationMs',
    'billingPeriodStart',
    'billingPeriodEnd',
  ] satisfies Array<keyof ExecutionUsage>
).map((key) => ({ key, header: key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) }));

const csvOptions = (header: boolean) => ({
  header,
  columns: EXPORT_COLUMNS,
  // A workflow id like "=HYPERLINK(…)" is shown as text, not run, by the spreadsheet.
  escape_formulas: true,
  cast: { boolean: (value: boolean) => String(value) },
});

/**
 * Every execution counted in one billing period, as CSV pieces (header first), read page
 * by page: the rows whose totals are that period's counters. Ends at an empty page, so a
 * page cut short by the project's max-rows setting loses nothing.
 */
async function usageCsvParts(
  supabase: UsageDb,
  query: UsageExportQuery,
): Promise<UsageResult<string[]>> {
  const parts = [stringify([], csvOptions(true))];
  let after: ExecutionUsage | undefined;
  let rowsRead = 0;
  for (;;) {
    const page = await getUsageExportPage(supabase, { ...query, ...(after ? { after } : {}) });
    if (page.error) return page;
    if (page.data.length === 0) return { data: parts, error: null };
    parts.push(stringify(page.data, csvOptions(false)));
    rowsRead += page.data.length;
    query.onProgress?.(rowsRead);
    after = page.data.at(-1);
  }
}

/** The period's executions as CSV text (one line per execution, a header line first). */
export async function exportUsageCsv(
  supabase: UsageDb,
  query: UsageExportQuery,
): Promise<UsageResult<string>> {
  const parts = await usageCsvParts(supabase, query);
  return parts.error ? parts : { data: parts.data.join(''), error: null };
}

/** The same CSV as a Blob (`text/csv`), for a download link; no single string is built. */
export async function exportUsageCsvBlob(
  supabase: UsageDb,
  query: UsageExportQuery,
): Promise<UsageResult<Blob>> {
  const parts = await usageCsvParts(supabase, query);
  return parts.error
    ? parts
    : { data: new Blob(parts.data, { type: 'text/csv;charset=utf-8' }), error: null };
}
