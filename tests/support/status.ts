import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../src/observability/logger.ts';
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
