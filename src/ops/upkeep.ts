import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { dbNumber } from '../db/json-number.ts';
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
}

/**
 * The housekeeping that keeps storage bounded, run on the collector's schedule but not by
 * the collector: next month's execution partition made and expired ones dropped, then
 * enforcement's released reservations, the run history and old invoice previews pruned to
 * the same retention as raw executions. A failure of either is logged and left for the next run; it never
 * holds up collection.
 */
export async function runUpkeep(input: {
  db: Db;
  retentionMonths: number;
  log: Logger;
}): Promise<UpkeepSummary> {
  const { db, log } = input;
  const summary: UpkeepSummary = { droppedPartitions: [], pruned: {} };
  const { data: dropped, error } = await db.rpc('maintain_execution_partitions', {
    retention_months: input.retentionMonths,
  });
  if (error) log.error({ error: error.message }, 'partition upkeep failed');
  else if (dropped?.length) {
    summary.droppedPartitions = dropped;
    log.info({ dropped }, 'dropped expired execution partitions');
  }
  const { data: pruned, error: pruneError } = await db.rpc('prune_history', {
    retention_months: input.retentionMonths,
  });
  if (pruneError) {
    log.error({ error: pruneError.message }, 'history upkeep failed');
    return summary;
  }
  const parsed = prunedSchema.safeParse(pruned);
  if (!parsed.success) {
    log.error(
      { error: z.prettifyError(parsed.error) },
      'prune_history answered in a shape this version does not read',
    );
    return summary;
  }
  summary.pruned = parsed.data;
  if (Object.values(summary.pruned).some((n) => n > 0)) {
    log.info({ pruned: summary.pruned }, 'pruned history past the retention');
  }
  return summary;
}
