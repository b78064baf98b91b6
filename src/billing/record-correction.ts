import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { fail, ok, type Result } from '../domain/result.ts';

export type Correction = Database['public']['Tables']['meter_corrections']['Row'];

/** The most executions one correction may add or take off. */
export const MAX_CORRECTION = 1_000_000_000;

const recordedSchema = z.object({
  created: z.boolean(),
  correction: z.looseObject({
    id: z.coerce.number(),
    identifier: z.string(),
    method: z.enum(['meter_event', 'cancel', 'credit', 'none']),
    status: z.enum(['pending', 'sent', 'recorded', 'late', 'review']),
  }),
});

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
): Promise<Result<{ created: boolean; correction: Correction }>> {
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
      `record_meter_correction answered in an unexpected shape: ${parsed.error.message}`,
    );
  }
  return ok({
    created: parsed.data.created,
    correction: parsed.data.correction as unknown as Correction,
  });
}
