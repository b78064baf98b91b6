/*
 * Typed helpers for the operator console RPCs (docs/operator-console.md), for a browser
 * signed in as an operator: one `supabase.rpc()` call each, every JSON answer checked with
 * a zod schema. Anyone else gets the database's refusal as the error (42501, HTTP 403).
 * Amounts are in the currency's minor unit; timestamps stay ISO strings.
 */

import type { PostgrestError, SupabaseClient } from '@supabase/supabase-js';
import { z } from 'zod';
import type { Database } from '../db/database.types.ts';
import { dbNumber } from '../db/json-number.ts';
import { dbTimestamp } from '../db/json-time.ts';
import { type CollectorHealth, collectorHealthSchema } from '../ops/collector-health.ts';
import { type OperatorStatus, operatorStatusSchema } from '../ops/operator-status.ts';
import { statusFindings } from '../ops/status-findings.ts';
import { rpcArgs, type usageLevel, usageSummaryRowSchema } from '../usage-client/index.ts';

export type OperatorDb = SupabaseClient<Database>;

/** A refusal or failure from the database, or an answer whose shape this client does not know. */
export type OperatorError = PostgrestError | { code: 'unexpected_shape'; message: string };

export type OperatorResult<T> = { data: T; error: null } | { data: null; error: OperatorError };

const number = dbNumber;
const when = dbTimestamp.nullable();

const rankedTenantSchema = usageSummaryRowSchema.pick({
  tenant_id: true,
  tenant_name: true,
  plan_id: true,
  used: true,
  quota: true,
  percent: true,
  level: true,
});

const overviewSchema = z.object({
  generated_at: dbTimestamp,
  tenants: number,
  tenants_by_plan: z.array(
    z.object({ plan_id: z.string(), plan_name: z.string(), tenants: number }),
  ),
  tenants_by_status: z.array(z.object({ subscription_status: z.string(), tenants: number })),
  executions: z.object({ total: number, billable: number, reserved: number }),
  trend: z.object({
    executions: number,
    billable: number,
    previous_executions: number,
    previous_billable: number,
    billable_change_percent: number.nullable(),
  }),
  revenue: z.array(
    z.object({
      currency: z.string(),
      recurring_amount: number,
      priced_tenants: number,
      unpriced_tenants: number,
      estimated_overage_amount: number,
      overage_units: number,
    }),
  ),
  top_by_usage: z.array(rankedTenantSchema),
  top_by_quota_share: z.array(rankedTenantSchema),
  near_limit: z.object({
    total: number,
    tenants: z.array(
      rankedTenantSchema.extend(
        usageSummaryRowSchema.pick({ limit_policy: true, reserved: true }).shape,
      ),
    ),
  }),
});
export type Overview = z.infer<typeof overviewSchema>;

/** The tenant's own summary row and what only the console shows beside it. */
const tenantRowSchema = usageSummaryRowSchema.extend({
  external_ref: z.string().nullable(),
  recurring_amount: number.nullable(),
  created_at: dbTimestamp,
});
export type TenantRow = z.infer<typeof tenantRowSchema>;

const cursorSchema = z.object({
  num: z.union([z.number(), z.string()]),
  text: z.string(),
  id: z.string(),
});
/** Where the next page starts; pass it back unchanged as `after`. */
export type TenantsCursor = z.infer<typeof cursorSchema>;

const tenantsPageSchema = z.object({
  total: number,
  rows: z.array(tenantRowSchema),
  next: cursorSchema.nullable(),
});
export type TenantsPage = z.infer<typeof tenantsPageSchema>;

export const TENANT_SORTS = [
  'name',
  'external_ref',
  'plan',
  'subscription_status',
  'used',
  'quota',
  'percent',
  'level',
  'executions',
  'reserved',
  'estimated_overage_amount',
  'created_at',
] as const;
export type TenantSort = (typeof TENANT_SORTS)[number];

export interface TenantsQuery {
  /** Part of the name or external reference, case-insensitive. */
  search?: string;
  planIds?: string[];
  levels?: Array<z.infer<typeof usageLevel>>;
  statuses?: string[];
  /** Default name. */
  sort?: TenantSort;
  descending?: boolean;
  /** Default 50, at most 500. */
  maxRows?: number;
  /** The previous page's `next`, with the same search, filters and sort. */
  after?: TenantsCursor;
}

const sourceSchema = z.object({
  id: z.string(),
  name: z.string(),
  base_url: z.string(),
  project_id: z.string().nullable(),
  enabled: z.boolean(),
  created_at: dbTimestamp,
  last_attempt_at: when,
  last_success_at: when,
  lag_seconds: number.nullable(),
  consecutive_failures: number,
  last_error: z.string().nullable(),
  last_error_at: when,
  next_attempt_at: when,
  open_executions: number,
  gaps: number,
  unacknowledged_gaps: number,
  recent_gaps: z.array(
    z.object({
      id: number,
      kind: z.string(),
      from_id: number,
      to_id: number,
      detail: z.string().nullable(),
      detected_at: dbTimestamp,
      acknowledged_at: when,
    }),
  ),
});

const tenantDetailSchema = z.object({
  summary: usageSummaryRowSchema.extend({
    external_ref: z.string().nullable(),
    stripe_customer_id: z.string().nullable(),
    stripe_subscription_id: z.string().nullable(),
  }),
  history: z.array(
    z.object({
      period_start: z.string(),
      period_end: z.string(),
      is_current: z.boolean(),
      used: number,
      quota: number.nullable(),
      overage_units: number.nullable(),
      executions: number,
      failed: number,
      reported_to_stripe: number,
      pending_to_stripe: number,
      late: number,
      corrected: number,
      credited_amount: number,
    }),
  ),
  daily: z.array(
    z.object({
      day: z.string(),
      executions: number,
      billable: number,
      failed: number,
      duration_ms: number,
    }),
  ),
  sources: z.array(sourceSchema),
  // Loose on purpose: a count or a row field the console does not know yet (a new kind of
  // ledger entry) still reaches the page, which lists them as they come.
  ledger: z.looseObject({
    pending: number,
    retrying: number,
    failing: number,
    sent: number,
    late: number,
    /** Of the late ones, those an attempt without an answer may have put on the invoice. */
    late_unknown: number,
    /** Held until a person checks Stripe (flowmeter reports resolve). */
    review: number,
    reports: z.array(
      z.looseObject({
        id: number,
        period_start: z.string(),
        period_end: z.string(),
        event_name: z.string(),
        reported_through: number,
        value: number,
        identifier: z.string(),
        event_timestamp: dbTimestamp,
        status: z.string(),
        attempts: number,
        last_error: z.string().nullable(),
        created_at: dbTimestamp,
        sent_at: when,
      }),
    ),
  }),
  /** Corrections of the tenant's billed usage and repairs of Stripe's meter, newest first. */
  corrections: z.array(
    z.object({
      id: number,
      period_start: z.string(),
      period_end: z.string(),
      kind: z.enum(['adjustment', 'repair']),
      delta: number,
      reason: z.string(),
      requested_by: z.string(),
      identifier: z.string(),
      method: z.enum(['meter_event', 'cancel', 'credit', 'none']),
      event_value: number.nullable(),
      cancels_identifier: z.string().nullable(),
      credit_amount: number.nullable(),
      currency: z.string().nullable(),
      stripe_object_id: z.string().nullable(),
      status: z.enum(['pending', 'sent', 'recorded', 'late', 'review']),
      attempts: number,
      last_error: z.string().nullable(),
      created_at: dbTimestamp,
      sent_at: when,
    }),
  ),
  alerts: z.array(
    z.object({
      id: number,
      period_start: z.string(),
      period_end: z.string(),
      threshold: number,
      used: number,
      quota: number,
      created_at: dbTimestamp,
      read_at: when,
      deliveries: z.array(
        z.object({
          channel_id: number,
          channel_kind: z.string(),
          global_channel: z.boolean(),
          status: z.enum(['pending', 'sending', 'delivered', 'failed']),
          attempts: number,
          next_attempt_at: when,
          last_error: z.string().nullable(),
          delivered_at: when,
          created_at: dbTimestamp,
        }),
      ),
    }),
  ),
  reservations: z.object({
    active: number,
    rows: z.array(
      z.object({
        id: number,
        period_start: z.string(),
        workflow_id: z.string().nullable(),
        run_ref: z.string().nullable(),
        created_at: dbTimestamp,
        expires_at: dbTimestamp,
      }),
    ),
  }),
});
export type TenantDetail = z.infer<typeof tenantDetailSchema>;

export interface Health {
  status: OperatorStatus;
  /** collector_health(): killed runs, dead leases, gaps not acknowledged. */
  collector: CollectorHealth;
  /** What needs a person, worded as `flowmeter status` words it; empty when healthy. */
  needsAttention: string[];
}

const sourceToggleSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  name: z.string(),
  base_url: z.string(),
  enabled: z.boolean(),
});
const gapsAcknowledgedSchema = z.object({
  source_id: z.string(),
  tenant_id: z.string(),
  acknowledged: number,
});
const deliveryResentSchema = z.object({
  alert_id: number,
  channel_id: number,
  tenant_id: z.string(),
  status: z.literal('pending'),
  next_attempt_at: dbTimestamp,
});

function parsed<T>(
  response: { data: unknown; error: PostgrestError | null },
  schema: z.ZodType<T>,
): OperatorResult<T> {
  if (response.error) return { data: null, error: response.error };
  const result = schema.safeParse(response.data);
  if (!result.success) {
    return {
      data: null,
      error: {
        code: 'unexpected_shape',
        message: `The database answered in an unexpected shape (${result.error.issues[0]?.path.join('.')}); apply the latest migrations`,
      },
    };
  }
  return { data: result.data, error: null };
}

type Functions = Database['public']['Functions'];

/**
 * One operator RPC as a function of the client and of the input its arguments are made
 * from, the answer checked against its schema.
 */
function operatorRpc<F extends keyof Functions, Input extends unknown[], T>(
  fn: F,
  args: (...input: Input) => Functions[F]['Args'],
  schema: z.ZodType<T>,
): (supabase: OperatorDb, ...input: Input) => Promise<OperatorResult<T>> {
  return async (supabase, ...input) => parsed(await supabase.rpc(fn, args(...input)), schema);
}

/** Counts, revenue, trend and the tenants worth a look, for the whole system. */
export const getOverview = operatorRpc(
  'operator_overview',
  (options: { topRows?: number; maxNearLimit?: number; planIds?: string[] } = {}) =>
    rpcArgs({
      top_rows: options.topRows,
      max_near_limit: options.maxNearLimit,
      plan_ids: options.planIds,
    }),
  overviewSchema,
);

/** One page of the tenants table. */
export const listTenants = operatorRpc(
  'operator_tenants',
  (query: TenantsQuery = {}) =>
    rpcArgs({
      search: query.search,
      plan_ids: query.planIds,
      levels: query.levels,
      statuses: query.statuses,
      sort: query.sort,
      descending: query.descending,
      max_rows: query.maxRows,
      after: query.after,
    }),
  tenantsPageSchema,
);

/** One tenant: its own dashboard's numbers, sources, ledger, alerts and reservations. */
export const getTenantDetail = operatorRpc(
  'operator_tenant',
  (tenantId: string, options: { maxRows?: number } = {}) =>
    rpcArgs({ tenant_id: tenantId, max_rows: options.maxRows }),
  tenantDetailSchema,
);

/** operator_health(): operator_status() with collector_health() under `collector`. */
const healthSchema = operatorStatusSchema.extend({ collector: collectorHealthSchema });

/** The `flowmeter status` snapshot and the findings that need a person, by the same rules. */
export async function getHealth(supabase: OperatorDb): Promise<OperatorResult<Health>> {
  const result = parsed(await supabase.rpc('operator_health'), healthSchema);
  if (result.error) return result;
  const { collector, ...status } = result.data;
  return {
    data: {
      status,
      collector,
      needsAttention: statusFindings(status, collector, { perTenant: false }),
    },
    error: null,
  };
}

export const setSourceEnabled = operatorRpc(
  'operator_set_source_enabled',
  (input: { sourceId: string; enabled: boolean }) => ({
    source_id: input.sourceId,
    enabled: input.enabled,
  }),
  sourceToggleSchema,
);

/** Marks every gap of the source seen; the gaps stay listed. */
export const acknowledgeGaps = operatorRpc(
  'operator_acknowledge_gaps',
  (sourceId: string) => ({ source_id: sourceId }),
  gapsAcknowledgedSchema,
);

/** Makes a failed delivery due now (409 when it is not failed). */
export const resendAlertDelivery = operatorRpc(
  'operator_resend_alert_delivery',
  (input: { alertId: number; channelId: number }) => ({
    alert_id: input.alertId,
    channel_id: input.channelId,
  }),
  deliveryResentSchema,
);
