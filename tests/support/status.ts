import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../src/observability/logger.ts';
import { needsAttention } from '../../src/ops/attention.ts';
import { operatorStatusSchema } from '../../src/ops/operator-status.ts';
import type { ScheduledFunctionName } from '../../src/ops/scheduled-functions.ts';
import { createStatusHandler } from '../../src/ops/status-handler.ts';
import { serviceClient } from './stack.ts';

/**
 * The status endpoint over the test database, with an operator secret of its own: `get`
 * asks it as the operator does, unless given other headers or another method; `forTenants`
 * asks about those tenants only, so other test files' data cannot change the answer.
 */
export function statusEndpoint() {
  const secret = randomBytes(32).toString('hex');
  const handler = createStatusHandler({
    db: serviceClient(),
    operatorSecrets: [secret],
    log: silentLogger,
  });
  const get = (
    headers: Record<string, string> = { authorization: `Bearer ${secret}` },
    method = 'GET',
    query = '',
  ) => handler(new Request(`https://flowmeter.test/api/v1/status${query}`, { method, headers }));
  const forTenants = (tenantIds: string[]) =>
    get(
      { authorization: `Bearer ${secret}` },
      'GET',
      `?${tenantIds.map((id) => `tenant=${id}`).join('&')}`,
    );
  return { get, forTenants };
}

/** operator_status() of these tenants only, so other test files' data cannot change it, as status reads it. */
export async function operatorStatusOf(tenantIds: string[]) {
  const { data, error } = await serviceClient().rpc('operator_status', { tenant_ids: tenantIds });
  if (error) throw new Error(error.message);
  return operatorStatusSchema.parse(data);
}

/**
 * What status asks of a person for these tenants, given `functionName`'s latest run recorded
 * `summary` as the scheduled function does (through JSON, as the row holds it).
 */
export async function attentionAfterRun(
  tenantIds: string[],
  functionName: ScheduledFunctionName,
  summary: unknown,
) {
  const status = await operatorStatusOf(tenantIds);
  return needsAttention({
    ...status,
    scheduled_functions: [
      {
        function_name: functionName,
        last_started_at: status.generated_at,
        failures_since_success: 0,
        last_error: null,
        last_summary: JSON.parse(JSON.stringify(summary)),
      },
    ],
  });
}
