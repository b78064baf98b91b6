import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { bearerGuard } from '../http/bearer.ts';
import { errorResponse } from '../http/responses.ts';
import type { Logger } from '../observability/logger.ts';
import { collectorHealthSchema } from './collector-health.ts';
import { operatorStatusSchema } from './operator-status.ts';
import { statusFindings } from './status-findings.ts';

const tenantFilterSchema = z.array(z.uuid()).max(100);

export interface StatusHandlerDeps {
  db: Db;
  operatorSecrets: readonly string[];
  log: Logger;
}

/**
 * GET /api/v1/status, for the operator's monitoring: per-source lag and errors, pending and
 * late Stripe reports, undelivered alerts, scheduled functions, last collector runs
 * (operator_status), and the collector's health: killed runs, dead leases, unacknowledged gaps
 * (collector_health). 200 when nothing needs attention, 503 when something does, so an
 * uptime check can alert on it. `?tenant=<id>` (repeatable) limits it to those tenants, as
 * `flowmeter status --tenant` does; findings about whole runs are then left out.
 */
export function createStatusHandler(deps: StatusHandlerDeps) {
  const refuseUnlessOperator = bearerGuard(deps.operatorSecrets, 'operator');
  return async (req: Request): Promise<Response> => {
    if (req.method !== 'GET')
      return errorResponse('method_not_allowed', 'Use GET', undefined, { allow: 'GET' });
    const refused = refuseUnlessOperator(req);
    if (refused) return refused;
    const tenants = tenantFilterSchema.safeParse(new URL(req.url).searchParams.getAll('tenant'));
    if (!tenants.success) {
      return errorResponse(
        'invalid_request',
        'Each tenant= must be a tenant id (a UUID), like ?tenant=2f6c…&tenant=…',
      );
    }
    const filter = tenants.data.length > 0 ? { tenant_ids: tenants.data } : {};
    // Independent reads of the same moment: one round trip, not two.
    const [{ data, error }, collector] = await Promise.all([
      deps.db.rpc('operator_status', filter),
      deps.db.rpc('collector_health', filter),
    ]);
    if (error || !data) {
      deps.log.error({ error: error?.message }, 'status: database unavailable');
      return errorResponse('unavailable', 'The database cannot answer right now');
    }
    // Checked before the rules read it; the answer carries every field as the database gave it.
    const parsed = operatorStatusSchema.safeParse(data);
    if (!parsed.success) {
      deps.log.error({ issue: parsed.error.issues[0] }, 'status: unexpected operator_status shape');
      return errorResponse(
        'internal',
        'The status has an unexpected shape; apply the latest database migrations',
      );
    }
    const health = collectorHealthSchema.safeParse(collector.data);
    if (collector.error || !health.success) {
      deps.log.error({ error: collector.error?.message }, 'status: collector health unavailable');
      return errorResponse('unavailable', 'The database cannot answer right now');
    }
    const attention = statusFindings(parsed.data, health.data, {
      perTenant: tenants.data.length > 0,
    });
    return Response.json(
      {
        healthy: attention.length === 0,
        needs_attention: attention,
        ...(data as object),
        collector: health.data,
      },
      { status: attention.length === 0 ? 200 : 503 },
    );
  };
}
