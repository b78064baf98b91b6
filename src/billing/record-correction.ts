import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { dbNumber } from '../db/json-number.ts';
import { dbTimestamp } from '../db/json-time.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { fail, ok, type Result } from '../domain/result.ts';

/** A meter_corrections row as the generated types have it: what its other functions answer. */
export type Correction = Database['public']['Tables']['meter_corrections']['Row'];

/** The most executions one correction may add or take off. */
export const MAX_CORRECTION = 1_000_000_000;

/**
 * A meter_corrections row as `to_jsonb` writes it (supabase/migrations/…_meter_corrections.sql):
 * every column, nullable exactly where the table allows null, so a column renamed or dropped
 * on one side fails here by name instead of reaching the CLI as undefined.
 */
const correctionSchema = z.object({
  id: dbNumber,
  tenant_id: z.guid(),
  period_start: dbTimestamp,
  period_end: dbTimestamp,
  stripe_customer_id: z.string(),
  event_name: z.string(),
  kind: z.enum(['adjustment', 'repair']),
  delta: dbNumber,
  reason: z.string(),
  requested_by: z.string(),
  request_key: z.string(),
  identifier: z.string(),
  method: z.enum(['meter_event', 'cancel', 'credit', 'none']),
  event_value: dbNumber.nullable(),
  event_timestamp: dbTimestamp.nullable(),
  cancels_identifier: z.string().nullable(),
  cancelled_value: dbNumber.nullable(),
  cancel_sent_at: dbTimestamp.nullable(),
  credit_amount: dbNumber.nullable(),
  currency: z.string().nullable(),
  stripe_object_id: z.string().nullable(),
  status: z.enum(['pending', 'sent', 'recorded', 'late', 'review']),
  attempts: dbNumber,
  unknown_outcome: z.boolean(),
  first_attempt_at: dbTimestamp.nullable(),
  last_attempt_at: dbTimestamp.nullable(),
  last_error: z.string().nullable(),
  last_error_kind: z.enum(['auth', 'rate_limited', 'refused', 'unavailable']).nullable(),
  claimed_until: dbTimestamp.nullable(),
  created_at: dbTimestamp,
  sent_at: dbTimestamp.nullable(),
});

/** A correction as record_meter_correction answers it, checked; it is a Correction too. */
export type RecordedCorrection = z.infer<typeof correctionSchema>;

const recordedSchema = z.object({ created: z.boolean(), correction: correctionSchema });

export interface RecordCorrectionInput {
  db: Db;
  tenantId: string;
  /** Executions to add (positive) or take off (negative); never 0. */
  delta: number;
  reason: string;
  /** Who asked, kept with the correction: an operator's name, or the reconciliation. */
  requestedBy: string;
  /** The billing period starting in this UTC month (YYYY-MM), or starting exactly here. */
  period: { month: string } | { start: string };
  kind?: 'adjustment' | 'repair';
  /**
   * What makes a repeated request the same correction; by default the request itself
   * (tenant, period, delta, reason), so a retried command records nothing new.
   */
  requestKey?: string;
  finalizationGraceMinutes: number;
}

/** The key of a request given no key of its own: the same request, the same correction. */
function defaultRequestKey(input: Omit<RecordCorrectionInput, 'db' | 'requestKey'>) {
  const digest = createHash('sha256')
    .update(
      JSON.stringify([
        input.kind ?? 'adjustment',
        input.tenantId,
        input.period,
        input.delta,
        input.reason.trim(),
      ]),
    )
    .digest('hex');
  return `request:${digest}`;
}

/**
 * Records a correction of a reported tenant-period in the ledger, before anything is sent:
 * one SQL call decides how it reaches Stripe (a meter event, a cancellation within 24 hours,
 * or a credit) under the period's lock. The same request key answers the correction
 * already recorded (`created: false`).
 */
export async function recordCorrection(
  input: RecordCorrectionInput,
): Promise<Result<{ created: boolean; correction: RecordedCorrection }>> {
  if (
    !Number.isSafeInteger(input.delta) ||
    input.delta === 0 ||
    Math.abs(input.delta) > MAX_CORRECTION
  ) {
    return fail(
      'invalid_request',
      `the correction must be a whole number of executions from -${MAX_CORRECTION} to ${MAX_CORRECTION}, not 0`,
    );
  }
  const answer = rpcResult(
    await input.db.rpc('record_meter_correction', {
      tenant_id: input.tenantId,
      delta: input.delta,
      reason: input.reason,
      requested_by: input.requestedBy,
      request_key: input.requestKey ?? defaultRequestKey(input),
      kind: input.kind ?? 'adjustment',
      finalization_grace_minutes: input.finalizationGraceMinutes,
      ...('month' in input.period
        ? { in_month: `${input.period.month}-01` }
        : { period_start: input.period.start }),
    }),
  );
  if (!answer.ok) {
    const hint = (answer.error.details as { error?: { hint?: string | null } } | undefined)?.error
      ?.hint;
    return fail(
      answer.error.code,
      hint ? `${answer.error.message}. ${hint}` : answer.error.message,
    );
  }
  const parsed = recordedSchema.safeParse(answer.value);
  if (!parsed.success) {
    return fail(
      'internal',
      `record_meter_correction answered in a shape this version does not read: ${z.prettifyError(parsed.error)}`,
    );
  }
  return ok(parsed.data);
}
