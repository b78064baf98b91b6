import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { classifyRpcFailure } from '../db/rpc-failure.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import { DECISION_REASONS, type Decision, type EnforceRequest } from './schema.ts';

export interface EnforceSettings {
  reservationTtlSeconds: number;
  /** When the database cannot be reached: allow (open) or refuse (closed). */
  failMode: 'open' | 'closed';
}

/**
 * enforce_usage's jsonb answer, parsed where it enters TypeScript: a key renamed in SQL
 * fails here (and in every enforce test) instead of reading as undefined.
 */
const enforceUsageAnswerSchema = z.discriminatedUnion('reason', [
  z.object({ reason: z.literal('unknown_tenant') }),
  z.object({
    allowed: z.boolean(),
    reason: z.enum(DECISION_REASONS).exclude(['fail_open']),
    tenant_id: z.uuid(),
    committed: z.number().int(),
    limit: z.number().int().nullable(),
    remaining: z.number().int().nullable(),
    percent: z.number().nullable(),
    level: z.enum(['normal', 'warning', 'limit', 'overage']),
    period_start: z.iso.datetime({ offset: true }),
    period_end: z.iso.datetime({ offset: true }),
    reservation_id: z.number().int().nullable(),
  }),
]);

/** Fail-open answer: allowed, with nothing known about usage. */
const failOpenDecision: Decision = {
  allowed: true,
  reason: 'fail_open',
  tenantId: null,
  committed: null,
  limit: null,
  remaining: null,
  percent: null,
  level: 'normal',
  periodStart: null,
  periodEnd: null,
  reservationId: null,
};

export type EnforceOutcome = Result<
  Decision,
  'unknown_tenant' | 'unavailable' | 'invalid_request' | 'internal'
> & {
  /** Set when the database could not be reached and the decision failed open: why. */
  failedOpen?: { cause: string; code: string | null; status: number };
};

/**
 * One decision: a single SQL call, mapped to the API's shape. Only a database that could
 * not be reached may fail open; a refusal or an answer that cannot be read is never an
 * allow (classifyRpcFailure draws that line).
 */
export async function enforce(
  db: Db,
  request: EnforceRequest,
  settings: EnforceSettings,
): Promise<EnforceOutcome> {
  const { data, error, status } = await db.rpc('enforce_usage', {
    tenant: request.tenant,
    ...(request.workflowId ? { workflow_id: request.workflowId } : {}),
    ...(request.runRef ? { run_ref: request.runRef } : {}),
    reserve: !request.dryRun,
    reservation_ttl_seconds: settings.reservationTtlSeconds,
  });
  if (error) {
    const failure = classifyRpcFailure({ status, error });
    const details = { cause: failure.message, code: failure.code, status: failure.status };
    switch (failure.kind) {
      case 'unreachable':
        if (settings.failMode === 'open') return { ...ok(failOpenDecision), failedOpen: details };
        return fail('unavailable', 'Usage cannot be checked right now; try again shortly', details);
      case 'refused_input':
        return fail(
          'invalid_request',
          `The database refused a value of this request (${failure.message}); check tenant, workflowId and runRef`,
          details,
        );
      case 'internal':
        return fail('internal', 'Usage could not be checked; the operator has been told', details);
    }
  }
  const answer = enforceUsageAnswerSchema.safeParse(data);
  if (!answer.success) {
    return fail('internal', 'Usage could not be checked; the operator has been told', {
      cause: 'enforce_usage answered in a shape this version does not read',
      issues: answer.error.issues,
    });
  }
  const d = answer.data;
  if (d.reason === 'unknown_tenant') {
    return fail('unknown_tenant', `No tenant has the id or external reference "${request.tenant}"`);
  }
  return ok({
    allowed: d.allowed,
    reason: d.reason,
    tenantId: d.tenant_id,
    committed: d.committed,
    limit: d.limit,
    remaining: d.remaining,
    percent: d.percent,
    level: d.level,
    periodStart: d.period_start,
    periodEnd: d.period_end,
    reservationId: d.reservation_id,
  });
}
