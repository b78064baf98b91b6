import type { Config } from '@netlify/functions';
import { loadEnforceConfig } from '../../src/config/env.ts';
import { createEnforceHandler, enforceDependencies } from '../../src/enforcement/handler.ts';
import { configuredHandler } from '../../src/http/netlify-handler.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';

/** The runner asks before every n8n run: POST /api/v1/enforce. */
export default configuredHandler('enforce', () => {
  const config = loadEnforceConfig();
  return createEnforceHandler(
    enforceDependencies(config, createLogger(config.LOG_LEVEL, { fn: 'enforce' })),
  );
});

export const config: Config = { path: '/api/v1/enforce' };
