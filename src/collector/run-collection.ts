import pLimit from 'p-limit';
import { z } from 'zod';
import type { Keyring } from '../crypto/keyring.ts';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { callFailed } from '../db/rpc-result.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import { openApiKey } from '../n8n/api-key.ts';
import type { N8nClient } from '../n8n/client.ts';
import type { Logger } from '../observability/logger.ts';
import { batchReleases, keepLeases, type Lease, type Release } from './leases.ts';
import {
  type ClaimedSource,
  claimedSourceSchema,
  cutWithRun,
  type SourceOutcome,
  type SyncSettings,
  type SyncStats,
  syncSource,
} from './sync-source.ts';

export type RunTrigger = 'schedule' | 'background' | 'manual';
export type { Lease } from './leases.ts';

/**
 * Passes leases to a longer-running worker. `not_configured` is a supported setup (no
 * background function); `refused` is a fault the run records for the operator.
 */
export type HandOff = (
  runId: string,
  leases: Lease[],
  /** Aborted when the run must end: the hand-off gives up and counts as refused. */
  signal?: AbortSignal,
) => Promise<Result<null, 'not_configured' | 'refused'>>;

/** Sources whose hand-off was refused in a run, and why the first refusal happened. */
interface HandOffRefusal {
  sources: number;
  error: string;
}

export interface CollectionSettings extends SyncSettings {
  /** Stop starting new pages this long after the run began. */
  budgetMs: number;
  /**
   * Cut every call still in flight (an ingest, a claim, a hand-off) this long after the run
   * began, so that releasing the leases and recording the run still end inside the
   * function's limit. Never before the budget; no cut when absent.
   */
  cutAfterMs?: number;
  concurrency: number;
  leaseSeconds: number;
  /** Sources per claim, and the most one background invocation is handed. */
  sliceSources: number;
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
  /**
   * Passes sources to a longer-running worker: the due sources beyond what this run can
   * finish in its budget, a slice per worker, and at the end the walks it left unfinished.
   */
  handOff?: HandOff;
  now?: () => number;
  /**
   * Aborted when the budget is spent: every n8n request and retry wait in flight ends then,
   * so the run always has time to hand off and record its end. By default a timer of
   * `budgetMs`; tests pass their own.
   */
  budgetSignal?: AbortSignal;
  /** Aborted at `settings.cutAfterMs` by default; tests pass their own. */
  cutSignal?: AbortSignal;
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
  /**
   * Sources whose lease another run had taken by the time this one got to them: handed
   * over but no longer resumable, or lost while waiting or being worked.
   */
  sourcesLeaseLost: number;
  pages: number;
  executionsIngested: number;
  billableCounted: number;
  errors: Array<{ source_id: string; tenant_id: string; error: string }>;
  /** Some call to the database got no answer (the CLI exits 3). */
  databaseUnreachable: boolean;
  /** Sources a background worker was configured for but refused (or could not be reached). */
  sourcesHandOffRefused: number;
  handOffError: string | null;
}

/**
 * What one run can finish in its budget: as many sources as its pool works in one second
 * each. A source with nothing new takes a list request and an RPC, well under a second even
 * against a slow n8n; one with a backlog that outlasts the budget is handed over at the end.
 */
const ownShare = (settings: CollectionSettings) =>
  settings.concurrency * Math.max(1, Math.floor(settings.budgetMs / 1000));

const leaseOf = (source: ClaimedSource): Lease => ({
  source_id: source.source_id,
  lease_token: source.lease_token,
});

/** Hands one slice to a background worker; a hand-off that throws counts as refused. */
const handSlice = (
  handOff: HandOff,
  runId: string,
  slice: ClaimedSource[],
  cut: AbortSignal | undefined,
) =>
  handOff(runId, slice.map(leaseOf), cut).catch((error: unknown) =>
    fail('refused', `the hand-off failed: ${(error as Error).message}`),
  );

/** A refused slice, added to what the run has already recorded as refused. */
const withRefused = (
  refusal: HandOffRefusal | null,
  sources: number,
  error: string,
): HandOffRefusal => ({
  sources: (refusal?.sources ?? 0) + sources,
  error: refusal?.error ?? error,
});

type Claim = Database['public']['Functions']['claim_collector_sources']['Args'];

async function claim(db: Db, args: Claim, cut?: AbortSignal): Promise<Result<ClaimedSource[]>> {
  const { data, error, status } = await cutWithRun(cut, db.rpc('claim_collector_sources', args));
  if (error) return callFailed('claim_collector_sources', { error, status });
  return claimedSources('claim_collector_sources', data);
}

/** The sources a claim or resume answered, or a failure naming a shape this version does not read. */
function claimedSources(fn: string, data: unknown): Result<ClaimedSource[]> {
  const parsed = z.array(claimedSourceSchema).safeParse(data ?? []);
  if (parsed.success) return ok(parsed.data);
  return fail(
    'internal',
    `${fn} answered in a shape this version does not read: ${z.prettifyError(parsed.error)}`,
  );
}

/**
 * Which sources a run claims from: every due one, or the ones asked for (due or not); never
 * one this run or its workers already attempted.
 */
function claimScope(input: RunCollectionInput, runId: string) {
  return (max: number): Claim => ({
    lease_seconds: input.settings.leaseSeconds,
    max_sources: max,
    not_since_run: runId,
    ...(input.select && 'sourceIds' in input.select
      ? { source_ids: input.select.sourceIds, ignore_schedule: true }
      : {}),
  });
}

/** Claims slice by slice, up to `most`; stops at the first slice not full. */
async function claimUpTo(
  db: Db,
  scope: ReturnType<typeof claimScope>,
  sliceSources: number,
  most: number,
): Promise<Result<ClaimedSource[]>> {
  const claimed: ClaimedSource[] = [];
  while (claimed.length < most) {
    const want = Math.min(sliceSources, most - claimed.length);
    const slice = await claim(db, scope(want));
    if (!slice.ok) return slice;
    claimed.push(...slice.value);
    if (slice.value.length < want) break;
  }
  return ok(claimed);
}

async function selectSources(
  input: RunCollectionInput,
  scope: ReturnType<typeof claimScope>,
): Promise<Result<ClaimedSource[]>> {
  const { db, settings, select } = input;
  if (select && 'leases' in select) {
    const { data, error, status } = await db.rpc('resume_collector_sources', {
      source_ids: select.leases.map((l) => l.source_id),
      lease_tokens: select.leases.map((l) => l.lease_token),
    });
    if (error) return callFailed('resume_collector_sources', { error, status });
    return claimedSources('resume_collector_sources', data);
  }
  const most = input.handOff ? ownShare(settings) : Number.POSITIVE_INFINITY;
  return claimUpTo(db, scope, settings.sliceSources, most);
}

/** What the fan-out did; `unreachable`: a claim got no answer before anything cut it. */
interface FanOut {
  invocations: number;
  sources: number;
  refused: HandOffRefusal | null;
  unreachable: boolean;
}

const noFanOut = (): FanOut => ({ invocations: 0, sources: 0, refused: null, unreachable: false });

/**
 * Hands the due sources this run will not get to to background workers, a slice each,
 * until none is left, a hand-off is refused (its slice is then released at once) or the
 * budget runs out (the rest stay due, first in line for the next run). A claim that got no
 * answer may still have committed: the sources it leased wait out their lease, no run
 * taking them, then the first run after collects them.
 */
async function fanOut(
  input: RunCollectionInput,
  runId: string,
  scope: ReturnType<typeof claimScope>,
  handOff: HandOff,
  releases: ReturnType<typeof batchReleases>,
  log: Logger,
  deadline: number,
  cut: AbortSignal | undefined,
): Promise<FanOut> {
  const { db, settings } = input;
  const now = input.now ?? Date.now;
  const sent = noFanOut();
  while (now() < deadline) {
    const claimed = await claim(db, scope(settings.sliceSources), cut);
    if (!claimed.ok) {
      const unanswered = claimed.error.code === 'unavailable';
      const fields = { error: claimed.error.message, lease_seconds: settings.leaseSeconds };
      const rest = unanswered
        ? 'what that claim leased, if it committed, is collected once the lease runs out; the next run collects the rest'
        : 'the next run collects the rest';
      // The run had to end: an expected stop, not a failure or an outage.
      if (cut?.aborted) log.warn(fields, `fan-out cut while claiming: ${rest}`);
      else {
        sent.unreachable = unanswered;
        log.error(
          fields,
          `fan-out stopped, its claim ${unanswered ? 'unanswered' : 'failed'}: ${rest}`,
        );
      }
      break;
    }
    const slice = claimed.value;
    if (slice.length === 0) break;
    const handed = await handSlice(handOff, runId, slice, cut);
    if (!handed.ok) {
      // Never worked: freed as such, they keep their health and stay first in line, ahead of
      // the sources this run collects (a success would put them last, run after run).
      for (const source of slice) releases.add({ ...leaseOf(source), deferral: 'unworked' });
      if (handed.error.code === 'refused') {
        sent.refused = { sources: slice.length, error: handed.error.message };
      }
      log.warn(
        { sources: slice.length, reason: handed.error.message },
        'fan-out not handed over; the next run collects these',
      );
      break;
    }
    sent.invocations += 1;
    sent.sources += slice.length;
    if (slice.length < settings.sliceSources) break;
  }
  return sent;
}

/**
 * One collector run: claims what it can finish of the due sources (each under a lease,
 * kept alive for the whole run, so two runs never work one source), fans the rest out to
 * background workers a slice each, syncs its own through a bounded pool until the budget,
 * hands unfinished walks over, releases leases in batches, and records the run. One failing
 * source never stops the others.
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
      ? callFailed('start_collector_run', { error: startError, status: startStatus })
      : fail('internal', 'start_collector_run returned no run id');
  }
  const runLog = log.child({ run_id: runId, trigger: input.trigger });
  const budgetSignal = input.budgetSignal ?? AbortSignal.timeout(Math.max(0, deadline - now()));
  const cutAfterMs =
    settings.cutAfterMs === undefined
      ? undefined
      : Math.max(settings.budgetMs, settings.cutAfterMs);
  const cutSignal =
    input.cutSignal ??
    (cutAfterMs === undefined
      ? undefined
      : AbortSignal.timeout(Math.max(0, started + cutAfterMs - now())));
  // The run is recorded as ended even when it could not claim its sources, so it never
  // reads as killed; the failure is what the operator sees (collector_health).
  const ended = (message: string, unreachable: boolean) =>
    db.rpc('finish_collector_run', {
      run_id: runId,
      stats: { errors: [{ error: message }], database_unreachable: unreachable, failure: message },
    });
  try {
    const collected = await collectClaimed(input, {
      runId,
      runLog,
      deadline,
      started,
      budgetSignal,
      cutSignal,
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
    cutSignal: AbortSignal | undefined;
  },
): Promise<Result<RunSummary>> {
  const { db, settings } = input;
  const { runId, runLog, deadline, started, budgetSignal, cutSignal } = run;
  const now = input.now ?? Date.now;

  const scope = claimScope(input, runId);
  const selected = await selectSources(input, scope);
  if (!selected.ok) return selected;
  const sources = selected.value;
  // Handed leases that no longer resume were taken over by another run meanwhile.
  const lostBeforeStart =
    input.select && 'leases' in input.select ? input.select.leases.length - sources.length : 0;
  input.onSourceEvent?.({ type: 'claimed', sources });
  runLog.info({ sources: sources.length }, 'sources claimed');

  const leases = keepLeases({ db, leaseSeconds: settings.leaseSeconds, log: runLog });
  leases.hold(sources);
  const releases = batchReleases({ db, log: runLog });
  const release = (source: ClaimedSource, end: Omit<Release, keyof Lease> = {}) => {
    leases.drop(source.source_id);
    releases.add({ ...leaseOf(source), ...end });
  };
  // Sources the budget ran out before: deferred like a cut walk, but nothing of them was worked.
  const unworked = new Set<string>();
  // Beside this run's own work, so the background workers start at once.
  const fannedOut =
    input.trigger === 'schedule' && input.handOff && sources.length >= ownShare(settings)
      ? fanOut(input, runId, scope, input.handOff, releases, runLog, deadline, cutSignal).catch(
          (error: unknown) => {
            // What was handed over is collected; what was not stays due for the next run.
            runLog.error({ error: (error as Error).message }, 'fan-out stopped');
            return noFanOut();
          },
        )
      : Promise.resolve(noFanOut());

  const limit = pLimit(settings.concurrency);
  const outcomes = await Promise.all(
    sources.map((source) =>
      limit(async (): Promise<[ClaimedSource, SourceOutcome]> => {
        const sourceLog = runLog.child({
          source_id: source.source_id,
          tenant_id: source.tenant_id,
        });
        const nothing = { pages: 0, executionsIngested: 0, billableCounted: 0 };
        let outcome: SourceOutcome;
        if (leases.isLost(source.source_id)) {
          outcome = { status: 'lease_lost', ...nothing };
        } else if (now() >= deadline || budgetSignal.aborted) {
          unworked.add(source.source_id);
          outcome = { status: 'deferred', ...nothing };
        } else {
          try {
            const apiKey = openApiKey(input.keyring, source.tenant_id, source.api_key_ciphertext);
            outcome = await syncSource({
              db,
              n8n: input.createN8nClient({ baseUrl: source.base_url, apiKey }),
              source,
              deadline,
              signal: budgetSignal,
              ...(cutSignal ? { cut: cutSignal } : {}),
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
              ...nothing,
            };
          }
        }
        if (outcome.status === 'ok') release(source);
        else if (outcome.status === 'failed') release(source, { error: outcome.error });
        else if (outcome.status === 'lease_lost') leases.drop(source.source_id);
        const level = outcome.status === 'failed' ? 'error' : 'info';
        sourceLog[level]({ ...outcome }, `source ${outcome.status}`);
        input.onSourceEvent?.({ type: 'done', source, outcome });
        return [source, outcome];
      }),
    ),
  );

  const deferred = outcomes.filter(([, o]) => o.status === 'deferred').map(([s]) => s);
  const fanned = await fannedOut;
  if (fanned.invocations) runLog.info(fanned, 'due sources handed to background workers');
  let refused = fanned.refused;
  if (deferred.length) {
    const handOff = input.handOff;
    const slices: ClaimedSource[][] = [];
    for (let i = 0; i < deferred.length; i += settings.sliceSources) {
      slices.push(deferred.slice(i, i + settings.sliceSources));
    }
    // Side by side: the run is past its budget, and one after the other the hand-offs'
    // timeouts would add up beyond the scheduled function's limit.
    const answers = await Promise.all(
      slices.map((slice) =>
        handOff
          ? handSlice(handOff, runId, slice, cutSignal)
          : fail('not_configured', 'no hand-off'),
      ),
    );
    let handedOff = 0;
    slices.forEach((slice, i) => {
      const answer = answers[i];
      if (answer?.ok) {
        for (const s of slice) leases.drop(s.source_id);
        handedOff += slice.length;
        return;
      }
      if (answer?.error.code === 'refused') {
        refused = withRefused(refused, slice.length, answer.error.message);
      }
      // The saved cursor lets the next run resume; free the lease so it can, recording no
      // success: nothing says the source is collected until a walk of it completes.
      for (const s of slice) {
        release(s, { deferral: unworked.has(s.source_id) ? 'unworked' : 'cut' });
      }
    });
    runLog.info({ sources: deferred.length, handedOff }, 'walks unfinished at the budget');
  }
  await leases.stop();

  const summary: RunSummary = {
    runId,
    sourcesOk: outcomes.filter(([, o]) => o.status === 'ok').length,
    sourcesFailed: outcomes.filter(([, o]) => o.status === 'failed').length,
    sourcesDeferred: deferred.length,
    sourcesLeaseLost:
      lostBeforeStart + outcomes.filter(([, o]) => o.status === 'lease_lost').length,
    pages: outcomes.reduce((n, [, o]) => n + o.pages, 0),
    executionsIngested: outcomes.reduce((n, [, o]) => n + o.executionsIngested, 0),
    billableCounted: outcomes.reduce((n, [, o]) => n + o.billableCounted, 0),
    errors: outcomes.flatMap(([s, o]) =>
      o.status === 'failed'
        ? [{ source_id: s.source_id, tenant_id: s.tenant_id, error: o.error }]
        : [],
    ),
    databaseUnreachable:
      fanned.unreachable ||
      outcomes.some(([, o]) => o.status === 'failed' && o.databaseUnreachable),
    sourcesHandOffRefused: refused?.sources ?? 0,
    handOffError: refused?.error ?? null,
  };
  // Side by side: each call has its own deadline, and the run must end inside its function's.
  const [, { error: finishError }] = await Promise.all([
    releases.flush(),
    db.rpc('finish_collector_run', {
      run_id: runId,
      stats: {
        sources_ok: summary.sourcesOk,
        sources_failed: summary.sourcesFailed,
        sources_deferred: summary.sourcesDeferred,
        sources_lease_lost: summary.sourcesLeaseLost,
        pages: summary.pages,
        executions_ingested: summary.executionsIngested,
        billable_counted: summary.billableCounted,
        errors: summary.errors,
        database_unreachable: summary.databaseUnreachable,
        sources_handoff_refused: summary.sourcesHandOffRefused,
        ...(summary.handOffError === null ? {} : { handoff_error: summary.handOffError }),
      },
    }),
  ]);
  if (finishError) runLog.error({ error: finishError.message }, 'could not record the run');
  runLog.info({ ...summary, duration_ms: now() - started }, 'collector run finished');
  return ok(summary);
}
