import type { Config } from '@netlify/functions';
import { loadStatusConfig } from '../../src/config/reporter-env.ts';
import { createServiceClient } from '../../src/db/client.ts';
import { configuredHandler } from '../../src/http/netlify-handler.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { createStatusHandler } from '../../src/ops/status-handler.ts';

/** The operator's monitoring: GET /api/v1/status with an operator secret. */
export default configuredHandler('status', () => {
  const config = loadStatusConfig();
  return createStatusHandler({
    db: createServiceClient(config),
    operatorSecrets: config.OPERATOR_SECRETS,
    log: createLogger(config.LOG_LEVEL, { fn: 'status' }),
  });
});

export const config: Config = { path: '/api/v1/status' };
