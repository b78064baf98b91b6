import type { Db } from '../db/client.ts';
import { bearerGuard } from '../http/bearer.ts';
import { errorResponse } from '../http/responses.ts';
import type { Logger } from '../observability/logger.ts';
import { type AttentionInputs, needsAttention } from './attention.ts';

/**
 * GET /api/v1/status, for the operator's monitoring: per-source lag and errors, pending and
 * late Stripe reports, undelivered alerts, scheduled functions, last collector runs
 * (operator_status). 200 when nothing needs attention, 503 when something does, so an
 * uptime check can alert on it.
 */
export interface StatusHandlerDeps {
  db: Db;
  operatorSecrets: readonly string[];
  log: Logger;
}

export function createStatusHandler(deps: StatusHandlerDeps) {
  const refuseUnlessOperator = bearerGuard(deps.operatorSecrets, 'operator');
  return async (req: Request): Promise<Response> => {
    if (req.method !== 'GET')
      return errorResponse('method_not_allowed', 'Use GET', undefined, { allow: 'GET' });
    const refused = refuseUnlessOperator(req);
    if (refused) return refused;
    const { data, error } = await deps.db.rpc('operator_status', {});
    if (error || !data) {
      deps.log.error({ error: error?.message }, 'status: database unavailable');
      return errorResponse('unavailable', 'The database cannot answer right now');
    }
    const status = data as unknown as AttentionInputs & Record<string, unknown>;
    const attention = needsAttention(status);
    return Response.json(
      { healthy: attention.length === 0, needs_attention: attention, ...status },
      { status: attention.length === 0 ? 200 : 503 },
    );
  };
}
