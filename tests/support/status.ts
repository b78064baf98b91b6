import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../src/observability/logger.ts';
import { createStatusHandler } from '../../src/ops/status-handler.ts';
import { serviceClient } from './stack.ts';

/**
 * The status endpoint over the test database, with an operator secret of its own: `get`
 * asks it as the operator does, unless given other headers or another method.
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
  ) => handler(new Request('https://flowmeter.test/api/v1/status', { method, headers }));
  return { get };
}
