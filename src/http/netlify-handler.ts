import { ConfigError } from '../config/env.ts';
import { createLogger } from '../observability/pino-logger.ts';
import { errorResponse } from './responses.ts';

type Handler = (req: Request) => Promise<Response>;

/**
 * A Netlify function's handler, built from the environment on its first request and kept
 * for the instance's life. A bad environment is logged for the operator and answered 500
 * (without details) on every request until it is fixed; any other error is thrown.
 */
export function configuredHandler(fn: string, build: () => Handler): Handler {
  let handler: Handler | undefined;
  return async (req) => {
    if (!handler) {
      try {
        handler = build();
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        createLogger('error', { fn }).error(
          { problems: error.problems },
          `${fn}: invalid environment`,
        );
        return errorResponse(
          'internal',
          'flowmeter is misconfigured; the operator has been told in the logs',
        );
      }
    }
    return handler(req);
  };
}
