import type { PostgrestError } from '@supabase/supabase-js';
import pLimit from 'p-limit';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { dbNumber } from '../db/json-number.ts';
import { dbTimestamp } from '../db/json-time.ts';
import { rpcResult } from '../db/rpc-result.ts';
import { ThrownFailure } from '../domain/result.ts';
import { N8nApiError, type N8nClient } from '../n8n/client.ts';
import { decodeCursor } from '../n8n/cursor.ts';
import type { N8nExecution } from '../n8n/schemas.ts';
import type { Logger } from '../observability/logger.ts';
import {
  checkPage,
  checkTimes,
  checkWalkIds,
  topToConfirm,
  unconfirmedTop,
} from './page-checks.ts';
import { toIngestRow, type WalkPosition, walkStep } from './walk.ts';

/**
 * A source as claim_collector_sources and resume_collector_sources return it: a row of
 * private.collector_source_claims, the one place its columns are defined. The generated types
 * cannot see a private view, so the row is parsed here, with the columns a new source leaves
 * null (its walk, backfill and probe) said to be nullable.
 */
export const claimedSourceSchema = z.object({
  source_id: z.guid(),
  tenant_id: z.guid(),
  base_url: z.string().min(1),
  api_key_ciphertext: z.string().min(1),
  project_id: z.string().nullable(),
  lease_token: z.guid(),
  floor_id: dbNumber,
  high_water_id: dbNumber,
  walk_cursor: z.string().nullable(),
  walk_top_id: dbNumber.nullable(),
  backfill_from: dbTimestamp.nullable(),
  supports_started_after: z.boolean().nullable(),
  open_executions: dbNumber,
});

export type ClaimedSource = z.infer<typeof claimedSourceSchema>;

export interface SyncSettings {
  /** An execution still unfinished this long after it was first seen is given up on. */
  openMaxAgeMs: number;
  /** How many open executions to revisit per run. */
  revisitBatch: number;
  /** How many ids missing from n8n's list to fetch by id per run, at most. */
  probeBatch: number;
  /** Requests by id in flight at once, per source. */
  probeConcurrency: number;
  /** Executions per page asked of n8n (its maximum, 250, unless testing). */
  pageSize?: number;
  /** Pages per ingest call (PAGES_PER_INGEST unless testing). */
  pagesPerIngest?: number;
}

export interface SyncStats {
  pages: number;
  executionsIngested: number;
  billableCounted: number;
}

export type SourceOutcome =
  | ({ status: 'ok' } & SyncStats)
  | ({ status: 'deferred' } & SyncStats)
  | ({ status: 'failed'; error: string; databaseUnreachable?: true } & SyncStats)
  | ({ status: 'lease_lost' } & SyncStats);

export interface SyncSourceInput {
  db: Db;
  n8n: N8nClient;
  source: ClaimedSource;
  /** Epoch ms after which no new page is started. */
  deadline: number;
  /** Aborted at the run's deadline: cuts a request or retry chain in flight. */
  signal?: AbortSignal;
  /**
   * Aborted when the run must end to record itself inside its function's limit: cuts a
   * database call still in flight after the budget (the walk then counts as deferred).
   */
  cut?: AbortSignal;
  /** The collector run, so each committed page counts in its summary even if the run dies. */
  runId?: string;
  now: () => number;
  settings: SyncSettings;
  log: Logger;
  onPage?: (stats: SyncStats) => void;
}

/**
 * The part of ingest_execution_page's jsonb summary the collector reads, parsed where it
 * enters TypeScript: a key renamed in SQL fails the collector's tests, not a count.
 */
const ingestSummarySchema = z.object({
  inserted: z.number().int().nonnegative(),
  billable: z.number().int().nonnegative(),
  opened: z.number().int().nonnegative(),
  probes_added: z.number().int().nonnegative(),
});

type IngestSummary = z.infer<typeof ingestSummarySchema>;

/**
 * The answer's data, or the database failure that stops the source, named after the call
 * and thrown up the walk to syncSource, which turns it into the outcome: another run took
 * the lease (conflict), the database could not be reached (unavailable), or it refused the call.
 */
function answered<T>(
  fn: string,
  response: { data: T | null; error: PostgrestError | null; status: number },
): T | null {
  const result = rpcResult(response);
  if (result.ok) return result.value;
  const { code, message } = result.error;
  throw new ThrownFailure({
    code,
    message:
      code === 'conflict'
        ? message
        : code === 'unavailable'
          ? `the database could not be reached (${fn}: ${response.status === 0 ? message : `HTTP ${response.status}`})`
          : `${fn} failed: ${message}`,
  });
}

/** A database call of the run, cut when `cut` aborts (the run must end); as it is without one. */
export const cutWithRun = <Q extends { abortSignal(signal: AbortSignal): Q }>(
  cut: AbortSignal | undefined,
  query: Q,
): Q => (cut ? query.abortSignal(cut) : query);

/** n8n sent something the walk must not store; the source stops until a person looks. */
class RefusedAnswer extends Error {}

type IngestArgs = Database['public']['Functions']['ingest_execution_page']['Args'];

async function ingest(
  input: SyncSourceInput,
  executions: N8nExecution[],
  walk: object | null,
  holes: number[] = [],
): Promise<IngestSummary> {
  const data = answered(
    'ingest_execution_page',
    await cutWithRun(
      input.cut,
      input.db.rpc('ingest_execution_page', {
        source_id: input.source.source_id,
        lease_token: input.source.lease_token,
        executions: executions.map(toIngestRow),
        ...(walk ? { walk: walk as IngestArgs['walk'] } : {}),
        ...(holes.length ? { holes } : {}),
        ...(input.runId ? { run_id: input.runId } : {}),
      }),
    ),
  );
  const summary = ingestSummarySchema.safeParse(data);
  if (!summary.success) {
    // A shape this version does not read is a deployment bug, not an expected failure.
    throw new Error(
      `ingest_execution_page answered in a shape this version does not read: ${z.prettifyError(summary.error)}`,
    );
  }
  return summary.data;
}

/** Fetches ids concurrently (bounded), in order of the list, until the deadline. */
async function fetchByIds(
  input: SyncSourceInput,
  ids: readonly number[],
): Promise<Array<{ id: number; execution: N8nExecution | null }>> {
  const limit = pLimit(input.settings.probeConcurrency);
  const results = await Promise.all(
    ids.map((id) =>
      limit(async () => {
        if (input.now() >= input.deadline || input.signal?.aborted) return undefined;
        const execution = await input.n8n.getExecution(
          String(id),
          input.signal ? { signal: input.signal } : {},
        );
        if (execution && execution.id !== String(id)) {
          throw new RefusedAnswer(
            `n8n answered execution ${execution.id} when asked for ${id}: something between flowmeter and n8n rewrites its answers`,
          );
        }
        return { id, execution };
      }),
    ),
  ).catch((error: unknown) => {
    // One failure fails the source: the requests still queued would be wasted.
    limit.clearQueue();
    throw error;
  });
  return results.filter((r) => r !== undefined);
}

/** Whether n8n answers execution `id` when asked for it by id. */
async function answersById(input: SyncSourceInput, id: number): Promise<boolean> {
  const execution = await input.n8n.getExecution(
    String(id),
    input.signal ? { signal: input.signal } : {},
  );
  return execution?.id === String(id);
}

function refuseImplausible(executions: N8nExecution[], now: number): void {
  const times = checkTimes(executions, now);
  if (!times.ok) throw new RefusedAnswer(times.message);
}

async function listLeased<T>(
  input: SyncSourceInput,
  fn: 'list_open_executions' | 'list_execution_probes',
  maxRows: number,
): Promise<T[]> {
  const data = answered(
    fn,
    await cutWithRun(
      input.cut,
      input.db.rpc(fn, {
        source_id: input.source.source_id,
        lease_token: input.source.lease_token,
        max_rows: maxRows,
      }),
    ),
  );
  return (data ?? []) as T[];
}

type OpenRow = Database['public']['Functions']['list_open_executions']['Returns'][number];
type ProbeRow = Database['public']['Functions']['list_execution_probes']['Returns'][number];

/**
 * Re-fetches executions that were unfinished (gives up on vanished and too-old ones), then
 * the ids the walk found missing from the list. Open executions go first, so a backlog of
 * probes never delays counting a waiting execution that finished.
 */
async function revisitOpenExecutions(input: SyncSourceInput, stats: SyncStats): Promise<void> {
  const { settings, now } = input;
  const open = await listLeased<OpenRow>(input, 'list_open_executions', settings.revisitBatch);
  const abandoned = open
    .filter((row) => now() - Date.parse(row.first_seen_at) > settings.openMaxAgeMs)
    .map((row) => row.execution_id);
  const given = new Set(abandoned);
  const revisited = await fetchByIds(
    input,
    open.map((row) => row.execution_id).filter((id) => !given.has(id)),
  );
  const vanished = revisited.filter((r) => r.execution === null).map((r) => r.id);
  await settle(input, stats, revisited, { vanished, abandoned });

  if (now() >= input.deadline || input.signal?.aborted) return;
  const probes = await listLeased<ProbeRow>(input, 'list_execution_probes', settings.probeBatch);
  if (probes.length === 0) return;
  const answered = await fetchByIds(
    input,
    probes.map((row) => row.execution_id),
  );
  const notFound = answered.filter((r) => r.execution === null).map((r) => r.id);
  await settle(input, stats, answered, { notFound });
}

/** Stores what the fetches by id found, and closes what they did not. */
async function settle(
  input: SyncSourceInput,
  stats: SyncStats,
  fetched: Array<{ execution: N8nExecution | null }>,
  closed: { vanished?: number[]; abandoned?: number[]; notFound?: number[] },
): Promise<void> {
  const { db, source } = input;
  const seen = fetched.flatMap((r) => (r.execution ? [r.execution] : []));
  if (seen.length) {
    refuseImplausible(seen, input.now());
    const summary = await ingest(input, seen, null);
    stats.executionsIngested += summary.inserted;
    stats.billableCounted += summary.billable;
  }
  const vanished = closed.vanished ?? [];
  const abandoned = closed.abandoned ?? [];
  const notFound = closed.notFound ?? [];
  if (vanished.length || abandoned.length || notFound.length) {
    answered(
      'close_open_executions',
      await cutWithRun(
        input.cut,
        db.rpc('close_open_executions', {
          source_id: source.source_id,
          lease_token: source.lease_token,
          vanished,
          abandoned,
          not_found: notFound,
        }),
      ),
    );
    if (vanished.length || abandoned.length) {
      input.log.warn({ vanished, abandoned }, 'gave up on open executions');
    }
    if (notFound.length) {
      input.log.warn({ missing: notFound.length }, 'ids missing from the list answered 404');
    }
  }
}

/** Pages sent to the database in one ingest call, unless the walk ends or the budget does. */
export const PAGES_PER_INGEST = 8;

interface Batch {
  executions: Map<string, N8nExecution>;
  holes: number[];
  walk: object | null;
  pages: number;
}

const emptyBatch = (): Batch => ({ executions: new Map(), holes: [], walk: null, pages: 0 });

/**
 * The walk's pages on their way to the database: several go in one ingest call (one
 * transaction, their progress with them), and one call is in flight while the walk fetches
 * the next pages. Calls for a source run one after another, in walk order, so a failed
 * call stops every later one and the saved cursor stays at the last page committed.
 */
function ingestPipeline(
  input: SyncSourceInput,
  stats: SyncStats,
  onSummary: (summary: IngestSummary) => void,
) {
  let batch = emptyBatch();
  let inFlight: Promise<void> = Promise.resolve();
  let sentAny = false;
  const send = async (b: Batch) => {
    // The run's row counts the pages of the call with its executions, in its transaction.
    const walk = b.walk ? { ...b.walk, pages: b.pages } : null;
    const summary = await ingest(input, [...b.executions.values()], walk, b.holes);
    onSummary(summary);
    stats.pages += b.pages;
    stats.executionsIngested += summary.inserted;
    stats.billableCounted += summary.billable;
    input.onPage?.({ ...stats });
  };
  return {
    add(executions: N8nExecution[], walk: object, holes: number[]) {
      // n8n's pages do not overlap; if one did, its latest answer is what counts.
      for (const e of executions) batch.executions.set(e.id, e);
      batch.holes.push(...holes);
      batch.walk = walk;
      batch.pages += 1;
    },
    get pages() {
      return batch.pages;
    },
    /**
     * Waits for the call in flight, then sends the pages gathered so far without waiting.
     * Returns false, dropping them, if the budget ran out while that call was in flight: a
     * walk page by page would not have fetched them, and the next run fetches them again.
     * The first call of a run is always sent, so even an n8n slower than the budget moves on.
     */
    async flush(): Promise<boolean> {
      await inFlight;
      if (sentAny && input.now() >= input.deadline) {
        batch = emptyBatch();
        return false;
      }
      if (batch.pages === 0) return true;
      const sending = batch;
      batch = emptyBatch();
      sentAny = true;
      inFlight = send(sending);
      // Awaited by the next flush or settle; never an unhandled rejection meanwhile.
      inFlight.catch(() => {});
      return true;
    },
    settle: () => inFlight,
  };
}

/**
 * Collects one leased source until its walk is done or the deadline passes: walks n8n's
 * list from the newest execution down, fetching the next page while the previous ones are
 * ingested, then fetches by id the executions still open and the ids the walk found missing.
 * Pages and their progress are saved together in one transaction, so stopping anywhere is
 * safe: the next run resumes after the last pages committed.
 */
export async function syncSource(input: SyncSourceInput): Promise<SourceOutcome> {
  const { source, n8n, now, log } = input;
  const stats: SyncStats = { pages: 0, executionsIngested: 0, billableCounted: 0 };
  // Whether anything waits to be fetched by id: one RPC saved per source and run otherwise.
  let openOrProbed = source.open_executions > 0;
  const pipeline = ingestPipeline(input, stats, (summary) => {
    openOrProbed ||= summary.opened > 0 || summary.probes_added > 0;
  });
  const pagesPerIngest = input.settings.pagesPerIngest ?? PAGES_PER_INGEST;
  try {
    const backfillFrom = source.backfill_from ? new Date(source.backfill_from) : null;
    let position: WalkPosition = {
      floorId: source.floor_id,
      lowestSeenId: decodeCursor(source.walk_cursor).lastId,
      topId: source.walk_top_id,
      backfillFrom,
      filtered: false,
    };
    let cursor: string | undefined = source.walk_cursor ?? undefined;
    let supportsStartedAfter = source.supports_started_after;
    // n8n's startedAfter skips executions still queued (startedAt null), so only the
    // first walk of a new source uses it; the second walk repeats the backfill unfiltered.
    const filtering = () =>
      Boolean(backfillFrom && source.high_water_id === 0 && supportsStartedAfter !== false);
    const list = (filter: boolean) => {
      const page = n8n.listExecutions({
        ...(input.settings.pageSize ? { limit: input.settings.pageSize } : {}),
        ...(cursor ? { cursor } : {}),
        ...(filter && backfillFrom ? { startedAfter: backfillFrom.toISOString() } : {}),
        ...(source.project_id ? { projectId: source.project_id } : {}),
        ...(input.signal ? { signal: input.signal } : {}),
      });
      // Awaited below; a walk that stops before then must not leave it unhandled.
      page.catch(() => {});
      return { filter, page };
    };

    if (now() >= input.deadline) return { status: 'deferred', ...stats };
    let pending = list(filtering());
    for (;;) {
      const { filter } = pending;
      let page: Awaited<ReturnType<N8nClient['listExecutions']>>;
      try {
        page = await pending.page;
      } catch (error) {
        if (filter && error instanceof N8nApiError && error.kind === 'unsupported_parameter') {
          supportsStartedAfter = false;
          pending = list(filtering());
          continue;
        }
        throw error;
      }
      const probed =
        filter && supportsStartedAfter === null
          ? true
          : supportsStartedAfter === false
            ? false
            : null;
      if (probed !== null) supportsStartedAfter = probed;

      const order = checkPage(
        { cursor: cursor ?? null, lowestSeenId: position.lowestSeenId },
        page,
      );
      if (!order.ok) throw new RefusedAnswer(order.message);
      // The walk's newest id becomes the next walk's floor: one n8n never assigned, or one
      // below ids already collected, would make every later walk skip executions unseen.
      const walkTop = { firstPage: cursor === undefined, highWaterId: source.high_water_id };
      const ids = checkWalkIds(walkTop, page);
      if (!ids.ok) throw new RefusedAnswer(ids.message);
      const far = topToConfirm(walkTop, page);
      if (far && !(await answersById(input, far.id))) throw new RefusedAnswer(unconfirmedTop(far));
      const step = walkStep({ ...position, filtered: filter }, page);
      refuseImplausible(step.executions, now());
      pipeline.add(
        step.executions,
        {
          ...step.progress,
          ...(supportsStartedAfter === null
            ? {}
            : { supports_started_after: supportsStartedAfter }),
        },
        step.holes,
      );
      if (step.progress.gap) log.warn({ gap: step.progress.gap }, 'pruning gap detected');
      const done = step.progress.done;
      if (!done) {
        cursor = step.progress.cursor ?? undefined;
        position = { ...position, lowestSeenId: step.lowestId, topId: step.progress.top_id };
      }
      const more = !done && now() < input.deadline;
      if (more) pending = list(filtering());
      if ((!more || pipeline.pages >= pagesPerIngest) && !(await pipeline.flush())) {
        return { status: 'deferred', ...stats };
      }
      if (!more) {
        await pipeline.settle();
        if (!done) return { status: 'deferred', ...stats };
        break;
      }
    }
    // After the walk, so the ids it just found missing are fetched in the same run.
    if (openOrProbed) await revisitOpenExecutions(input, stats);
    return { status: 'ok', ...stats };
  } catch (thrown) {
    const settled = (call: Promise<unknown>) =>
      call.then(
        () => null,
        (error: unknown) => error,
      );
    // An ingest still in flight ends first; if the lease was lost, that is what happened.
    let inFlight = await settled(pipeline.settle());
    if (inFlight === null && (input.signal?.aborted || thrown instanceof RefusedAnswer)) {
      // The pages gathered before the cut or the refused answer passed every check: they
      // are kept as a walk page by page would have kept them (flush's budget rule applies).
      inFlight = await settled(pipeline.flush().then(() => pipeline.settle()));
    }
    const leaseLost = (e: unknown): e is ThrownFailure =>
      e instanceof ThrownFailure && e.failure.code === 'conflict';
    const error = leaseLost(inFlight) ? inFlight : thrown;
    if (leaseLost(error)) {
      log.warn(
        { reason: error.message },
        'lease lost; leaving the source to the run that holds it',
      );
      return { status: 'lease_lost', ...stats };
    }
    // Cut at the run's deadline: what was committed stays, the next run (or the background
    // one this run hands over to) resumes from the saved cursor.
    if (input.signal?.aborted) return { status: 'deferred', ...stats };
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof RefusedAnswer) {
      return {
        status: 'failed',
        error: `n8n at ${source.base_url}: ${message}`,
        ...stats,
      };
    }
    if (error instanceof ThrownFailure && error.failure.code === 'unavailable') {
      return { status: 'failed', error: message, databaseUnreachable: true, ...stats };
    }
    return { status: 'failed', error: message, ...stats };
  }
}
