import type { EnforceConfig } from '../config/env.ts';
import { createServiceClient, type Db } from '../db/client.ts';
import { bearerGuard } from '../http/bearer.ts';
import { errorResponse, readJsonRequest } from '../http/responses.ts';
import type { Logger } from '../observability/logger.ts';
import { type EnforceSettings, enforce } from './enforce.ts';
import { type Decision, enforceRequestSchema } from './schema.ts';

const MAX_BODY_BYTES = 8 * 1024;

export interface EnforceHandlerDeps {
  db: Db;
  runnerSecrets: readonly string[];
  settings: EnforceSettings;
  log: Logger;
}

export function enforceDependencies(
  config: EnforceConfig,
  log: Logger,
  fetchImpl?: typeof fetch,
): EnforceHandlerDeps {
  return {
    db: createServiceClient(config, fetchImpl, { timeoutMs: config.ENFORCE_DB_TIMEOUT_MS }),
    runnerSecrets: config.RUNNER_SECRETS,
    settings: {
      reservationTtlSeconds: Math.round(config.RESERVATION_TTL_MINUTES * 60),
      failMode: config.ENFORCE_FAIL_MODE,
    },
    log,
  };
}

function usageHeaders(decision: Decision): Record<string, string> {
  return {
    ...(decision.limit !== null ? { 'x-usage-limit': String(decision.limit) } : {}),
    ...(decision.remaining !== null ? { 'x-usage-remaining': String(decision.remaining) } : {}),
    ...(decision.periodEnd
      ? { 'x-usage-reset': String(Math.floor(Date.parse(decision.periodEnd) / 1000)) }
      : {}),
  };
}

/**
 * POST /api/v1/enforce. 200 with the decision when the run may start, 402 with the same
 * body when it may not; 400 bad body, 401 bad secret, 404 unknown tenant, 405 method,
 * 413 body too large, 415 not JSON, 500 when no decision could be made (never an allow),
 * 503 database unreachable in fail-closed mode.
 */
export function createEnforceHandler(deps: EnforceHandlerDeps) {
  const refuseUnlessRunner = bearerGuard(deps.runnerSecrets, 'runner');
  return async (req: Request): Promise<Response> => {
    if (req.method !== 'POST') {
      return errorResponse('method_not_allowed', 'Use POST', undefined, { allow: 'POST' });
    }
    const refused = refuseUnlessRunner(req);
    if (refused) return refused;
    const request = await readJsonRequest(req, {
      maxBytes: MAX_BODY_BYTES,
      schema: enforceRequestSchema,
      invalid: 'The body does not match the enforce request schema',
      fieldDetails: true,
    });
    if (!request.ok) return request.response;
    const outcome = await enforce(deps.db, request.value, deps.settings);
    if (!outcome.ok) {
      const { code, message, details } = outcome.error;
      if (code === 'unavailable')
        deps.log.error({ details }, 'enforce: database unavailable, failing closed');
      if (code === 'internal') deps.log.error({ details }, 'enforce: no decision could be made');
      if (code === 'invalid_request')
        deps.log.warn({ details }, 'enforce: the database refused a value of the request');
      return errorResponse(code, message);
    }
    if (outcome.failedOpen)
      deps.log.error(
        { tenant: request.value.tenant, details: outcome.failedOpen },
        'enforce: database unavailable, failing open',
      );
    const decision = outcome.value;
    return Response.json(decision, {
      status: decision.allowed ? 200 : 402,
      headers: usageHeaders(decision),
    });
  };
}
