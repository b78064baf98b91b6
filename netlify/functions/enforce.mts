import type { Config } from '@netlify/functions';
import { ConfigError, loadEnforceConfig } from '../../src/config/env.ts';
import { createEnforceHandler, enforceDependencies } from '../../src/enforcement/handler.ts';
import { errorResponse } from '../../src/http/responses.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';

/** The runner asks before every n8n run: POST /api/v1/enforce. */
let handler: ((req: Request) => Promise<Response>) | undefined;

export default async (req: Request): Promise<Response> => {
  if (!handler) {
    try {
      const config = loadEnforceConfig();
      handler = createEnforceHandler(
        enforceDependencies(config, createLogger(config.LOG_LEVEL, { fn: 'enforce' })),
      );
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      createLogger('error', { fn: 'enforce' }).error(
        { problems: error.problems },
        'enforce: invalid environment',
      );
      return errorResponse(
        'internal',
        'flowmeter is misconfigured; the operator has been told in the logs',
      );
    }
  }
  return handler(req);
};

export const config: Config = { path: '/api/v1/enforce' };
