import { z } from 'zod';
import { dbNumber } from '../db/json-number.ts';
import { dbTimestamp } from '../db/json-time.ts';

const when = dbTimestamp.nullable();
const number = dbNumber;

/** operator_status()'s JSON, checked: the status screen and the attention rules rely on every field. */
export const operatorStatusSchema = z.object({
  generated_at: dbTimestamp,
  sources: z.object({
    total: number,
    enabled: number,
    failing: number,
    never_collected: number,
    stalled: number,
    max_lag_seconds: number.nullable(),
    worst: z.array(
      z.object({
        id: z.string(),
        tenant_id: z.string(),
        tenant_name: z.string(),
        base_url: z.string(),
        enabled: z.boolean(),
        last_success_at: when,
        lag_seconds: number.nullable(),
        consecutive_failures: number,
        last_error: z.string().nullable(),
      }),
    ),
  }),
  meter_reports: z.object({
    pending: number,
    pending_value: number,
    retrying: number,
    oldest_pending_at: when,
    /** Pending and never attempted: deferred run after run, or a dry run's. */
    unattempted: number,
    oldest_unattempted_at: when,
    late: number,
    late_value: number,
    /** Of the late ones, those an attempt may have put on the invoice (its answer was lost). */
    late_unknown: number,
    late_unknown_value: number,
    /** Not sent again until a person checks Stripe: an answer lost past the identifier's window. */
    review: number,
    last_error: z.string().nullable(),
    failing_threshold: number,
    failing: number,
    auth_failing: z.boolean(),
    auth_error: z.string().nullable(),
    /** Tenants on a plan metered in Stripe without a Stripe customer: their usage is never reported. */
    unlinked: z.object({
      tenants: number,
      executions: number,
      example_tenant_id: z.string().nullable(),
      example_tenant_name: z.string().nullable(),
    }),
    corrections: z.object({
      pending: number,
      /** Pending and never attempted: deferred run after run. */
      unattempted: number,
      oldest_unattempted_at: when,
      failing: number,
      review: number,
      late: number,
      last_error: z.string().nullable(),
    }),
  }),
  stripe_events: z.object({
    rejected: number,
    last_rejected_at: when,
    last_rejected_id: z.string().nullable(),
    last_reason: z.string().nullable(),
    /** Customers whose newest subscription event (last 30 days) is on a plan and found no tenant. */
    customers_without_tenant: number,
    last_customer_without_tenant: z
      .object({ customer_id: z.string(), plan_id: z.string(), event_id: z.string() })
      .nullable(),
  }),
  reconciliation: z.object({
    unrepaired: number,
    last_found_at: when,
    last_kind: z.string().nullable(),
    last_detail: z.string().nullable(),
  }),
  alert_deliveries: z.object({
    pending: number,
    sending: number,
    retrying: number,
    given_up: number,
    oldest_at: when,
    /** Pending to an enabled channel: never attempted. */
    unattempted: number,
    oldest_unattempted_at: when,
    last_error: z.string().nullable(),
  }),
  webhook_deliveries: z.object({
    retrying: number,
    given_up: number,
    /** Pending to an enabled endpoint: never attempted. */
    unattempted: number,
    oldest_unattempted_at: when,
    failing_endpoints: z.array(
      z.object({
        id: z.string(),
        url: z.string(),
        retrying: number,
        given_up: number,
        last_error: z.string().nullable(),
      }),
    ),
  }),
  scheduled_functions: z.array(
    z.object({
      function_name: z.string(),
      last_started_at: dbTimestamp,
      last_finished_at: when,
      last_ok: z.boolean().nullable(),
      last_error: z.string().nullable(),
      /** What the run recorded it did (its function's own summary shape). */
      last_summary: z.unknown(),
      last_success_at: when,
      failures_since_success: number,
    }),
  ),
  collector_runs: z.array(
    z.object({
      id: z.string(),
      trigger: z.string(),
      started_at: dbTimestamp,
      finished_at: when,
      sources_ok: number,
      sources_failed: number,
      sources_deferred: number,
      executions_ingested: number,
      errors: number,
    }),
  ),
});

export type OperatorStatus = z.infer<typeof operatorStatusSchema>;
