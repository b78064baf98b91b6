import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { N8nApiError, type N8nClient } from '../n8n/client.ts';
import type { N8nExecution } from '../n8n/schemas.ts';
import type { Logger } from '../observability/logger.ts';
import { cursorLastId, toIngestRow, type WalkPosition, walkStep } from './walk.ts';

export type ClaimedSource =
  Database['public']['Functions']['claim_collector_sources']['Returns'][number];

export interface SyncSettings {
  /** An execution still unfinished this long after it was first seen is given up on. */
  openMaxAgeMs: number;
  /** How many open executions to revisit per run. */
  revisitBatch: number;
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
  | ({ status: 'failed'; error: string } & SyncStats)
  | ({ status: 'lease_lost' } & SyncStats);

export interface SyncSourceInput {
  db: Db;
  n8n: N8nClient;
  source: ClaimedSource;
  /** Epoch ms after which no new page is started. */
  deadline: number;
  now: () => number;
  settings: SyncSettings;
  log: Logger;
  onPage?: (stats: SyncStats) => void;
}

interface IngestSummary {
  inserted: number;
  billable: number;
  opened: number;
  probes_added: number;
}

class LeaseLost extends Error {}

type IngestArgs = Database['public']['Functions']['ingest_execution_page']['Args'];

async function ingest(
  input: SyncSourceInput,
  executions: N8nExecution[],
  walk: object | null,
  holes: number[] = [],
): Promise<IngestSummary> {
  const { data, error } = await input.db.rpc('ingest_execution_page', {
    source_id: input.source.source_id,
    lease_token: input.source.lease_token,
    executions: executions.map(toIngestRow),
    ...(walk ? { walk: walk as IngestArgs['walk'] } : {}),
    ...(holes.length ? { holes } : {}),
  });
  if (error?.code === 'PT409') throw new LeaseLost(error.message);
  if (error) throw new Error(`ingest_execution_page failed: ${error.message}`);
  return data as unknown as IngestSummary;
}

/** Re-fetches executions that were unfinished; gives up on vanished and too-old ones. */
async function revisitOpenExecutions(input: SyncSourceInput, stats: SyncStats): Promise<void> {
  const { db, source, n8n, settings, now } = input;
  const { data: open, error } = await db.rpc('list_open_executions', {
    source_id: source.source_id,
    lease_token: source.lease_token,
    max_rows: settings.revisitBatch,
  });
  if (error?.code === 'PT409') throw new LeaseLost(error.message);
  if (error) throw new Error(`list_open_executions failed: ${error.message}`);

  const seen: N8nExecution[] = [];
  const vanished: number[] = [];
  const abandoned: number[] = [];
  const notFound: number[] = [];
  for (const row of open ?? []) {
    const probe = row.status === 'probe';
    if (!probe && now() - Date.parse(row.first_seen_at) > settings.openMaxAgeMs) {
      abandoned.push(row.execution_id);
      continue;
    }
    if (now() >= input.deadline) break;
    const execution = await n8n.getExecution(String(row.execution_id));
    if (execution) seen.push(execution);
    else if (probe) notFound.push(row.execution_id);
    else vanished.push(row.execution_id);
  }
  if (seen.length) {
    const summary = await ingest(input, seen, null);
    stats.executionsIngested += summary.inserted;
    stats.billableCounted += summary.billable;
  }
  if (vanished.length || abandoned.length || notFound.length) {
    const { error: closeError } = await db.rpc('close_open_executions', {
      source_id: source.source_id,
      lease_token: source.lease_token,
      vanished,
      abandoned,
      not_found: notFound,
    });
    if (closeError?.code === 'PT409') throw new LeaseLost(closeError.message);
    if (closeError) throw new Error(`close_open_executions failed: ${closeError.message}`);
    if (vanished.length || abandoned.length) {
      input.log.warn({ vanished, abandoned }, 'gave up on open executions');
    }
  }
}

/** Pages sent to the database in one ingest call, unless the walk ends or the budget does. */
export const PAGES_PER_INGEST = 4;

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
    const summary = await ingest(input, [...b.executions.values()], b.walk, b.holes);
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
      lowestSeenId: cursorLastId(source.walk_cursor),
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

      const step = walkStep({ ...position, filtered: filter }, page);
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
    // An ingest still in flight ends first; if the lease was lost, that is what happened.
    const inFlight = await pipeline.settle().then(
      () => null,
      (error: unknown) => error,
    );
    const error = inFlight instanceof LeaseLost ? inFlight : thrown;
    if (error instanceof LeaseLost) {
      log.warn(
        { reason: error.message },
        'lease lost; leaving the source to the run that holds it',
      );
      return { status: 'lease_lost', ...stats };
    }
    const message = error instanceof Error ? error.message : String(error);
    return { status: 'failed', error: message, ...stats };
  }
}
