import type { PostgrestError } from '@supabase/supabase-js';
import pLimit from 'p-limit';
import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import { openApiKey } from '../n8n/api-key.ts';
import type { N8nClient } from '../n8n/client.ts';
import type { Logger } from '../observability/logger.ts';
import {
  type ClaimedSource,
  type SourceOutcome,
  type SyncSettings,
  type SyncStats,
  syncSource,
} from './sync-source.ts';

export type RunTrigger = 'schedule' | 'background' | 'manual';

export interface Lease {
  source_id: string;
  lease_token: string;
}

export interface CollectionSettings extends SyncSettings {
  /** Stop starting new pages this long after the run began. */
  budgetMs: number;
  concurrency: number;
  leaseSeconds: number;
  maxSources: number;
}

export interface RunCollectionInput {
  db: Db;
  keyring: Keyring;
  settings: CollectionSettings;
  trigger: RunTrigger;
  log: Logger;
  createN8nClient: (source: { baseUrl: string; apiKey: string }) => N8nClient;
  /** Which sources: all that are due (default), these ids now, or leases handed over. */
  select?: { sourceIds: string[] } | { leases: Lease[] };
  /** Passes sources whose walk is unfinished at the budget to a longer-running worker. */
  handOff?: (runId: string, leases: Lease[]) => Promise<boolean>;
  now?: () => number;
  /**
   * Aborted when the budget is spent: every n8n request and retry wait in flight ends then,
   * so the run always has time to hand off and record its end. By default a timer of
   * `budgetMs`; tests pass their own.
   */
  budgetSignal?: AbortSignal;
  onSourceEvent?: (event: SourceEvent) => void;
}

export type SourceEvent =
  | { type: 'claimed'; sources: ClaimedSource[] }
  | { type: 'page'; source: ClaimedSource; stats: SyncStats }
  | { type: 'done'; source: ClaimedSource; outcome: SourceOutcome };

export interface RunSummary {
  runId: string;
  sourcesOk: number;
  sourcesFailed: number;
  sourcesDeferred: number;
  pages: number;
  executionsIngested: number;
  billableCounted: number;
  errors: Array<{ source_id: string; tenant_id: string; error: string }>;
  /** Some call to the database got no answer (the CLI exits 3). */
  databaseUnreachable: boolean;
}

/**
 * A failed call that stops the run, named after the call; one that got no answer reads as
 * 'unavailable', so the CLI exits 3 for it.
 */
function databaseFailure(
  fn: string,
  response: { error: PostgrestError; status: number },
): Result<never> {
  const failed = rpcResult({ data: null, ...response });
  return failed.ok
    ? fail('internal', `${fn} failed`)
    : fail(failed.error.code, `${fn} failed: ${failed.error.message}`, failed.error.details);
}

async function selectSources(input: RunCollectionInput): Promise<Result<ClaimedSource[]>> {
  const { db, settings, select } = input;
  if (select && 'leases' in select) {
    const { data, error, status } = await db.rpc('resume_collector_sources', {
      source_ids: select.leases.map((l) => l.source_id),
      lease_tokens: select.leases.map((l) => l.lease_token),
    });
    if (error) return databaseFailure('resume_collector_sources', { error, status });
    return ok(data ?? []);
  }
  const { data, error, status } = await db.rpc('claim_collector_sources', {
    lease_seconds: settings.leaseSeconds,
    max_sources: settings.maxSources,
    ...(select ? { source_ids: select.sourceIds, ignore_schedule: true } : {}),
  });
  if (error) return databaseFailure('claim_collector_sources', { error, status });
  return ok(data ?? []);
}

/**
 * One collector run: claims due sources (each under a lease, so two runs never work one
 * source), syncs them through a bounded pool until the budget, hands unfinished walks to
 * a background worker, and records the run. One failing source never stops the others.
 */
export async function runCollection(input: RunCollectionInput): Promise<Result<RunSummary>> {
  const { db, settings, log } = input;
  const now = input.now ?? Date.now;
  const started = now();
  const deadline = started + settings.budgetMs;

  const {
    data: runId,
    error: startError,
    status: startStatus,
  } = await db.rpc('start_collector_run', {
    trigger: input.trigger,
  });
  if (startError || !runId) {
    return startError
      ? databaseFailure('start_collector_run', { error: startError, status: startStatus })
      : fail('internal', 'start_collector_run returned no run id');
  }
  const runLog = log.child({ run_id: runId, trigger: input.trigger });
  const budgetSignal = input.budgetSignal ?? AbortSignal.timeout(Math.max(0, deadline - now()));
  // The run is recorded as ended even when it could not claim its sources, so it never
  // reads as killed; the error is what the operator sees.
  const ended = (message: string, unreachable: boolean) =>
    db.rpc('finish_collector_run', {
      run_id: runId,
      stats: { errors: [{ error: message }], database_unreachable: unreachable },
    });
  try {
    const collected = await collectClaimed(input, {
      runId,
      runLog,
      deadline,
      started,
      budgetSignal,
    });
    if (!collected.ok) {
      await ended(collected.error.message, collected.error.code === 'unavailable');
    }
    return collected;
  } catch (error) {
    await ended(error instanceof Error ? error.message : String(error), false);
    throw error;
  }
}

async function collectClaimed(
  input: RunCollectionInput,
  run: {
    runId: string;
    runLog: Logger;
    deadline: number;
    started: number;
    budgetSignal: AbortSignal;
  },
): Promise<Result<RunSummary>> {
  const { db, settings } = input;
  const { runId, runLog, deadline, started, budgetSignal } = run;
  const now = input.now ?? Date.now;

  const selected = await selectSources(input);
  if (!selected.ok) return selected;
  const sources = selected.value;
  input.onSourceEvent?.({ type: 'claimed', sources });
  runLog.info({ sources: sources.length }, 'sources claimed');

  const limit = pLimit(settings.concurrency);
  const outcomes = await Promise.all(
    sources.map((source) =>
      limit(async (): Promise<[ClaimedSource, SourceOutcome]> => {
        const sourceLog = runLog.child({
          source_id: source.source_id,
          tenant_id: source.tenant_id,
        });
        let outcome: SourceOutcome;
        try {
          const apiKey = openApiKey(input.keyring, source.tenant_id, source.api_key_ciphertext);
          outcome = await syncSource({
            db,
            n8n: input.createN8nClient({ baseUrl: source.base_url, apiKey }),
            source,
            deadline,
            signal: budgetSignal,
            runId,
            now,
            settings,
            log: sourceLog,
            onPage: (stats) => input.onSourceEvent?.({ type: 'page', source, stats }),
          });
        } catch (error) {
          // Only a key that cannot be decrypted gets here; syncSource returns its own failures.
          outcome = {
            status: 'failed',
            error: `cannot decrypt the n8n API key: ${(error as Error).message}`,
            pages: 0,
            executionsIngested: 0,
            billableCounted: 0,
          };
        }
        if (outcome.status === 'ok' || outcome.status === 'failed') {
          // An unreachable database is recorded on the source when the release gets through.
          const { error } = await db.rpc('release_collector_source', {
            source_id: source.source_id,
            lease_token: source.lease_token,
            ...(outcome.status === 'failed' ? { error: outcome.error } : {}),
          });
          if (error) sourceLog.error({ error: error.message }, 'could not release the lease');
        }
        const level = outcome.status === 'failed' ? 'error' : 'info';
        sourceLog[level]({ ...outcome }, `source ${outcome.status}`);
        input.onSourceEvent?.({ type: 'done', source, outcome });
        return [source, outcome];
      }),
    ),
  );

  const deferred = outcomes.filter(([, o]) => o.status === 'deferred').map(([s]) => s);
  if (deferred.length) {
    const leases = deferred.map((s) => ({ source_id: s.source_id, lease_token: s.lease_token }));
    const handedOff = input.handOff ? await input.handOff(runId, leases).catch(() => false) : false;
    runLog.info({ sources: leases.length, handedOff }, 'walks unfinished at the budget');
    if (!handedOff) {
      // The saved cursor lets the next run resume; free the lease so it can.
      await Promise.all(
        leases.map((l) =>
          db.rpc('release_collector_source', {
            source_id: l.source_id,
            lease_token: l.lease_token,
          }),
        ),
      );
    }
  }

  const summary: RunSummary = {
    runId,
    sourcesOk: outcomes.filter(([, o]) => o.status === 'ok').length,
    sourcesFailed: outcomes.filter(([, o]) => o.status === 'failed').length,
    sourcesDeferred: deferred.length,
    pages: outcomes.reduce((n, [, o]) => n + o.pages, 0),
    executionsIngested: outcomes.reduce((n, [, o]) => n + o.executionsIngested, 0),
    billableCounted: outcomes.reduce((n, [, o]) => n + o.billableCounted, 0),
    errors: outcomes.flatMap(([s, o]) =>
      o.status === 'failed'
        ? [{ source_id: s.source_id, tenant_id: s.tenant_id, error: o.error }]
        : [],
    ),
    databaseUnreachable: outcomes.some(([, o]) => o.status === 'failed' && o.databaseUnreachable),
  };
  const { error: finishError } = await db.rpc('finish_collector_run', {
    run_id: runId,
    stats: {
      sources_ok: summary.sourcesOk,
      sources_failed: summary.sourcesFailed,
      sources_deferred: summary.sourcesDeferred,
      pages: summary.pages,
      executions_ingested: summary.executionsIngested,
      billable_counted: summary.billableCounted,
      errors: summary.errors,
      database_unreachable: summary.databaseUnreachable,
    },
  });
  if (finishError) runLog.error({ error: finishError.message }, 'could not record the run');
  runLog.info({ ...summary, duration_ms: now() - started }, 'collector run finished');
  return ok(summary);
}
