import { type CollectorConfig, recordingReserveMs } from '../config/env.ts';
import { createServiceClient } from '../db/client.ts';
import { fail, ok } from '../domain/result.ts';
import { createN8nClient } from '../n8n/client.ts';
import type { Logger } from '../observability/logger.ts';
import { createLogger } from '../observability/pino-logger.ts';
import {
  type CollectionSettings,
  type HandOff,
  type RunCollectionInput,
  runCollection,
} from './run-collection.ts';

export const BACKGROUND_FUNCTION_PATH = '/.netlify/functions/collect-usage-background';
export const INTERNAL_SECRET_HEADER = 'x-flowmeter-internal-secret';
/** Netlify answers a background invocation with 202 at once; one that does not is refused. */
const HAND_OFF_TIMEOUT_MS = 5000;

/**
 * `spentMs`: what the invocation already used before collecting (the scheduled function's
 * run record and upkeep), so the budget counts from the invocation's start and the run
 * still ends inside Netlify's limit when those were slow. `limitMs`: the function's own
 * limit; calls still in flight are then cut two database deadlines before it, which leaves
 * the time to release the leases beside recording the collector run, then the function's.
 */
export function collectionSettings(
  config: CollectorConfig,
  budgetSeconds: number,
  spentMs = 0,
  limitMs?: number,
): CollectionSettings {
  return {
    budgetMs: Math.max(0, budgetSeconds * 1000 - spentMs),
    ...(limitMs === undefined
      ? {}
      : { cutAfterMs: limitMs - spentMs - recordingReserveMs(config.DB_TIMEOUT_MS) }),
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
 * Hands sources to collect-usage-background with their leases. Not configured (no secret
 * or site URL) is a supported setup and reads apart from a refusal (any answer but 202, or
 * no answer): the caller frees the leases either way and the next scheduled run resumes
 * from the saved cursors, but only a refusal is recorded on the run for the operator.
 */
export function backgroundHandOff(
  config: CollectorConfig,
  log: Logger,
  fetchImpl: typeof fetch = fetch,
): HandOff {
  return async (runId, leases, signal) => {
    if (!config.FLOWMETER_INTERNAL_SECRET || !config.URL) {
      return fail('not_configured', 'FLOWMETER_INTERNAL_SECRET or URL is not set');
    }
    const url = new URL(BACKGROUND_FUNCTION_PATH, config.URL);
    let status: number;
    try {
      const response = await fetchImpl(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [INTERNAL_SECRET_HEADER]: config.FLOWMETER_INTERNAL_SECRET,
        },
        body: JSON.stringify({ run_id: runId, leases }),
        signal: AbortSignal.any([
          AbortSignal.timeout(HAND_OFF_TIMEOUT_MS),
          ...(signal ? [signal] : []),
        ]),
      });
      status = response.status;
    } catch (error) {
      const message = signal?.aborted
        ? `${url.href} did not answer before the run had to end`
        : `${url.href} could not be reached: ${(error as Error).message}`;
      log.error({ error: message }, 'background hand-off refused');
      return fail('refused', message);
    }
    if (status === 202) return ok(null);
    log.error({ status }, 'background hand-off refused');
    return fail('refused', `${url.href} answered ${status}`);
  };
}

/** Everything a collector run needs, built from validated configuration. */
export function collectorDependencies(
  config: CollectorConfig,
  overrides: { log?: Logger; fetch?: typeof fetch } = {},
): Pick<RunCollectionInput, 'db' | 'keyring' | 'log' | 'createN8nClient'> {
  return {
    db: createServiceClient(config, overrides.fetch),
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
