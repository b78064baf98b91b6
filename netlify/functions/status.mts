import type { Config } from '@netlify/functions';
import { ConfigError } from '../../src/config/env.ts';
import { loadStatusConfig } from '../../src/config/reporter-env.ts';
import { createServiceClient } from '../../src/db/client.ts';
import { errorResponse } from '../../src/http/responses.ts';
import { createLogger } from '../../src/observability/pino-logger.ts';
import { createStatusHandler } from '../../src/ops/status-handler.ts';

/** The operator's monitoring: GET /api/v1/status with an operator secret. */
let handler: ((req: Request) => Promise<Response>) | undefined;

export default async (req: Request): Promise<Response> => {
  if (!handler) {
    try {
      const config = loadStatusConfig();
      handler = createStatusHandler({
        db: createServiceClient(config),
        operatorSecrets: config.OPERATOR_SECRETS,
        log: createLogger(config.LOG_LEVEL, { fn: 'status' }),
      });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      createLogger('error', { fn: 'status' }).error(
        { problems: error.problems },
        'status: invalid environment',
      );
      return errorResponse(
        'internal',
        'flowmeter is misconfigured; the operator has been told in the logs',
      );
    }
  }
  return handler(req);
};

export const config: Config = { path: '/api/v1/status' };
