import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { dbNumber } from '../db/json-number.ts';
import { fail, type Result } from '../domain/result.ts';
import type { Logger } from '../observability/logger.ts';

/** What prune_history (supabase/migrations/…_operator.sql) answers: rows deleted per table. */
const prunedSchema = z.object({
  reservations: dbNumber,
  scheduled_runs: dbNumber,
  collector_runs: dbNumber,
  webhook_events: dbNumber,
  invoice_previews: dbNumber,
});

export interface UpkeepSummary {
  /** Execution partitions dropped for being older than the retention. */
  droppedPartitions: string[];
  /**
   * Rows of each history table deleted (released reservations, scheduled and collector
   * runs, invoice previews of ended periods and their dead claims).
   */
  pruned: Record<string, number>;
  /** What failed, each naming its call; the run it is part of reads as failed for it. */
  failed: string[];
}

/**
 * The housekeeping that keeps storage bounded, run on the collector's schedule but not by
 * the collector: next month's execution partition made and expired ones dropped, then
 * enforcement's released reservations, the run history and old invoice previews pruned to
 * the same retention as raw executions. A failure of either is logged, listed in `failed`
 * and left for the next run; it never holds up collection (see withUpkeep).
 */
export async function runUpkeep(input: {
  db: Db;
  retentionMonths: number;
  log: Logger;
}): Promise<UpkeepSummary> {
  const { db, log } = input;
  const summary: UpkeepSummary = { droppedPartitions: [], pruned: {}, failed: [] };
  const { data: dropped, error } = await db.rpc('maintain_execution_partitions', {
    retention_months: input.retentionMonths,
  });
  if (error) {
    log.error({ error: error.message }, 'partition upkeep failed');
    summary.failed.push(`maintain_execution_partitions failed: ${error.message}`);
  } else if (dropped?.length) {
    summary.droppedPartitions = dropped;
    log.info({ dropped }, 'dropped expired execution partitions');
  }
  const { data: pruned, error: pruneError } = await db.rpc('prune_history', {
    retention_months: input.retentionMonths,
  });
  if (pruneError) {
    log.error({ error: pruneError.message }, 'history upkeep failed');
    summary.failed.push(`prune_history failed: ${pruneError.message}`);
    return summary;
  }
  const parsed = prunedSchema.safeParse(pruned);
  if (!parsed.success) {
    const message = 'prune_history answered in a shape this version does not read';
    log.error({ error: z.prettifyError(parsed.error) }, message);
    summary.failed.push(message);
    return summary;
  }
  summary.pruned = parsed.data;
  if (Object.values(summary.pruned).some((n) => n > 0)) {
    log.info({ pruned: summary.pruned }, 'pruned history past the retention');
  }
  return summary;
}

/**
 * The outcome of a run that did the upkeep first: the run's own, unless the upkeep failed,
 * which makes the run read as failed, saying what of it failed, so that status names it
 * (storage that is not pruned grows unseen otherwise). The run's own failure comes first.
 */
export function withUpkeep<T, C extends string>(
  upkeep: UpkeepSummary,
  run: Result<T, C>,
): Result<T, C | 'internal'> {
  if (!run.ok || upkeep.failed.length === 0) return run;
  return fail(
    'internal',
    `storage upkeep failed (${upkeep.failed.join('; ')}); the collection itself ran`,
    { value: run.value },
  );
}
