import type { Db } from '../db/client.ts';
import { fail, ok, type Result } from '../http/responses.ts';
import type { Decision, EnforceRequest } from './schema.ts';

export interface EnforceSettings {
  reservationTtlSeconds: number;
  /** When the database cannot answer: allow (open) or refuse (closed). */
  failMode: 'open' | 'closed';
}

interface SqlDecision {
  allowed: boolean;
  reason: Decision['reason'] | 'unknown_tenant';
  tenant_id?: string;
  committed?: number;
  limit?: number | null;
  remaining?: number | null;
  percent?: number | null;
  level?: Decision['level'];
  period_start?: string;
  period_end?: string;
  reservation_id?: number | null;
}

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

export type EnforceOutcome = Result<Decision, 'unknown_tenant' | 'unavailable'> & {
  failedOpen?: boolean;
};

/** One decision: a single SQL call, mapped to the API's shape. */
export async function enforce(
  db: Db,
  request: EnforceRequest,
  settings: EnforceSettings,
): Promise<EnforceOutcome> {
  const { data, error } = await db.rpc('enforce_usage', {
    tenant: request.tenant,
    ...(request.workflowId ? { workflow_id: request.workflowId } : {}),
    ...(request.runRef ? { run_ref: request.runRef } : {}),
    reserve: !request.dryRun,
    reservation_ttl_seconds: settings.reservationTtlSeconds,
  });
  if (error || !data) {
    if (settings.failMode === 'open') return { ...ok(failOpenDecision), failedOpen: true };
    return fail('unavailable', 'Usage cannot be checked right now; try again shortly', {
      cause: error?.message ?? 'no answer',
    });
  }
  const d = data as unknown as SqlDecision;
  if (d.reason === 'unknown_tenant') {
    return fail('unknown_tenant', `No tenant has the id or external reference "${request.tenant}"`);
  }
  return ok({
    allowed: d.allowed,
    reason: d.reason,
    tenantId: d.tenant_id ?? null,
    committed: d.committed ?? null,
    limit: d.limit ?? null,
    remaining: d.remaining ?? null,
    percent: d.percent ?? null,
    level: d.level ?? 'normal',
    periodStart: d.period_start ?? null,
    periodEnd: d.period_end ?? null,
    reservationId: d.reservation_id ?? null,
  });
}
