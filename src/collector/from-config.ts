import type { CollectorConfig } from '../config/env.ts';
import { createServiceClient } from '../db/client.ts';
import { createN8nClient } from '../n8n/client.ts';
import type { Logger } from '../observability/logger.ts';
import { createLogger } from '../observability/pino-logger.ts';
import {
  type CollectionSettings,
  type Lease,
  type RunCollectionInput,
  runCollection,
} from './run-collection.ts';

export const BACKGROUND_FUNCTION_PATH = '/.netlify/functions/collect-usage-background';
export const INTERNAL_SECRET_HEADER = 'x-flowmeter-internal-secret';

export function collectionSettings(
  config: CollectorConfig,
  budgetSeconds: number,
): CollectionSettings {
  return {
    budgetMs: budgetSeconds * 1000,
    concurrency: config.COLLECTOR_CONCURRENCY,
    leaseSeconds: config.COLLECTOR_LEASE_SECONDS,
    sliceSources: config.COLLECTOR_SLICE_SOURCES,
    openMaxAgeMs: config.COLLECTOR_OPEN_MAX_AGE_HOURS * 3600_000,
    revisitBatch: config.COLLECTOR_REVISIT_BATCH,
    probeBatch: config.COLLECTOR_PROBE_BATCH,
    probeConcurrency: config.COLLECTOR_PROBE_CONCURRENCY,
  };
}

/**
 * Hands unfinished walks to collect-usage-background with their leases. Returns false when
 * it cannot (no secret or site URL configured, or the call failed); the caller then frees
 * the leases and the next scheduled run resumes from the saved cursors.
 */
export function backgroundHandOff(
  config: CollectorConfig,
  log: Logger,
  fetchImpl: typeof fetch = fetch,
) {
  return async (runId: string, leases: Lease[]): Promise<boolean> => {
    if (!config.FLOWMETER_INTERNAL_SECRET || !config.URL) return false;
    const response = await fetchImpl(new URL(BACKGROUND_FUNCTION_PATH, config.URL), {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [INTERNAL_SECRET_HEADER]: config.FLOWMETER_INTERNAL_SECRET,
      },
      body: JSON.stringify({ run_id: runId, leases }),
      signal: AbortSignal.timeout(5000),
    });
    if (response.status !== 202) {
      log.error({ status: response.status }, 'background hand-off refused');
      return false;
    }
    return true;
  };
}

/** Everything a collector run needs, built from validated configuration. */
export function collectorDependencies(
  config: CollectorConfig,
  overrides: { log?: Logger; fetch?: typeof fetch } = {},
): Pick<RunCollectionInput, 'db' | 'keyring' | 'log' | 'createN8nClient'> {
  return {
    db: createServiceClient(config, overrides.fetch, { timeoutMs: config.COLLECTOR_DB_TIMEOUT_MS }),
    keyring: config.FLOWMETER_ENCRYPTION_KEYS,
    log: overrides.log ?? createLogger(config.LOG_LEVEL),
    createN8nClient: ({ baseUrl, apiKey }) =>
      createN8nClient({
        baseUrl,
        apiKey,
        timeoutMs: config.N8N_REQUEST_TIMEOUT_MS,
        ...(overrides.fetch ? { fetch: overrides.fetch } : {}),
      }),
  };
}

export { runCollection };
