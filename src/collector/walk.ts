import type { N8nExecution, N8nPage } from '../n8n/schemas.ts';

export interface WalkPosition {
  floorId: number;
  /** The last id of the previous page (from the cursor), when resuming mid-walk. */
  lowestSeenId: number | null;
  topId: number | null;
  /** Set while a new source backfills its current billing period. */
  backfillFrom: Date | null;
  /** The page was listed with startedAfter, which also hides queued and running executions. */
  filtered: boolean;
}

export interface WalkProgress {
  cursor: string | null;
  top_id: number | null;
  done: boolean;
  gap?: { from_id: number; to_id: number; detail: string };
}

export interface WalkStep {
  /** The executions worth sending to the database (new to the walk, inside the backfill). */
  executions: N8nExecution[];
  /**
   * Ids the walk passed that n8n did not list: running executions (n8n never lists those),
   * executions whose workflow does not save them, or ones not yet committed. Each is probed
   * by id once; a running one is then followed until it finishes.
   */
  holes: number[];
  progress: WalkProgress;
  lowestId: number | null;
}

const startedBefore = (execution: N8nExecution, boundary: Date) =>
  execution.startedAt !== null && new Date(execution.startedAt) < boundary;

/**
 * One step of a walk through n8n's execution list, newest to oldest. Pure: given where the
 * walk stands and the page n8n returned, decides what to ingest and where the walk goes.
 *
 * The walk stops at the first page that reaches the floor (ids at or below it were walked
 * before), at the backfill boundary of a new source, or at the end of the list. Ending the
 * list above a non-zero floor means n8n pruned past the watermark: the ids in between may
 * have been pruned before they were seen, which is reported as a gap.
 */
export function walkStep(position: WalkPosition, page: N8nPage): WalkStep {
  const ids = page.data.map((e) => Number(e.id));
  const pageTop = ids.length ? Math.max(...ids) : null;
  const pageLowest = ids.length ? Math.min(...ids) : null;
  const topId = Math.max(position.topId ?? 0, pageTop ?? 0) || null;
  const lowestId = pageLowest ?? position.lowestSeenId;
  const { floorId, backfillFrom } = position;

  const reachedFloor = floorId > 0 && ids.some((id) => id <= floorId);
  const reachedBackfillStart =
    backfillFrom !== null &&
    page.data.length > 0 &&
    page.data.every((e) => startedBefore(e, backfillFrom));
  const endOfList = page.nextCursor === null;
  const done = reachedFloor || reachedBackfillStart || endOfList;

  const executions = page.data.filter(
    (e) => Number(e.id) > floorId && !(backfillFrom && startedBefore(e, backfillFrom)),
  );

  // While backfilling, holes below the first execution before the boundary are older still.
  // At the floor or the end of the list, ids below the lowest listed one down to the floor
  // are holes too (a long-running execution older than everything listed, say). A filtered
  // listing hides more than running executions, so it yields no holes below its last item.
  const downTo = reachedFloor || (endOfList && !position.filtered) ? floorId : null;
  const holes = findHoles(ids, position.lowestSeenId, downTo, floorId);

  const progress: WalkProgress = { cursor: done ? null : page.nextCursor, top_id: topId, done };
  if (endOfList && !reachedFloor && floorId > 0) {
    const oldestListed = lowestId ?? (topId ?? floorId) + 1;
    if (oldestListed > floorId + 1) {
      progress.gap = {
        from_id: floorId + 1,
        to_id: oldestListed - 1,
        detail: `n8n lists nothing at or below id ${oldestListed - 1} any more; executions ${floorId + 1}–${oldestListed - 1} may have been pruned before they were collected`,
      };
    }
  }
  return { executions, holes, progress, lowestId };
}

/** A run of missing ids longer than this is not probed id by id (e.g. a project filter). */
export const MAX_HOLE_SPAN = 1000;

function findHoles(
  pageIds: number[],
  above: number | null,
  downTo: number | null,
  floorId: number,
): number[] {
  const listed = [...new Set(pageIds)].sort((a, b) => b - a);
  const bounds = [
    ...(above !== null ? [above] : []),
    ...listed,
    ...(downTo !== null ? [downTo] : []),
  ];
  const holes: number[] = [];
  for (let i = 1; i < bounds.length; i++) {
    const upper = bounds[i - 1] as number;
    const lower = Math.max(bounds[i] as number, floorId);
    if (upper - lower - 1 > MAX_HOLE_SPAN) continue;
    for (let id = upper - 1; id > lower; id--) holes.push(id);
  }
  return holes;
}

/**
 * The shape ingest_execution_page takes. A time or retry n8n has not got is left out rather
 * than sent as null (the function reads a missing key as null): most executions are no
 * retry, and every key costs bytes to send and work to parse, a thousand times a call.
 */
export function toIngestRow(e: N8nExecution) {
  return {
    id: e.id,
    status: e.status,
    mode: e.mode,
    workflow_id: e.workflowId,
    ...(e.startedAt ? { started_at: e.startedAt } : {}),
    ...(e.stoppedAt ? { stopped_at: e.stoppedAt } : {}),
    ...(e.retryOf ? { retry_of: e.retryOf } : {}),
  };
}
