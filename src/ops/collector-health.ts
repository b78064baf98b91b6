import { z } from 'zod';
import { plural } from '../domain/words.ts';

const when = z.string().nullable();
const number = z.coerce.number();

/** collector_health()'s JSON, checked where it enters TypeScript. */
export const collectorHealthSchema = z.object({
  latest_scheduled_run: z
    .object({
      id: z.string(),
      started_at: z.string(),
      finished_at: when,
      killed: z.boolean(),
      sources_ok: number,
      sources_failed: number,
      pages: number,
      executions_ingested: number,
      database_unreachable: z.boolean(),
      first_error: z.string().nullable(),
    })
    .nullable(),
  killed_runs: z.array(
    z.object({
      id: z.string(),
      trigger: z.string(),
      started_at: z.string(),
      pages: number,
      executions_ingested: number,
      billable_counted: number,
    }),
  ),
  dead_leases: z.array(
    z.object({
      source_id: z.string(),
      tenant_id: z.string(),
      base_url: z.string(),
      lease_expired_at: z.string(),
      held_for_seconds: number,
    }),
  ),
  unacknowledged_gaps: z.object({
    gaps: number,
    executions: number,
    by_kind: z.record(z.string(), number),
    sources: number,
    oldest_detected_at: when,
  }),
});

export type CollectorHealth = z.infer<typeof collectorHealthSchema>;

/** Whole minutes or hours, for a line a person reads. */
const span = (seconds: number) =>
  seconds >= 5400
    ? `${Math.round(seconds / 3600)} h`
    : `${Math.max(1, Math.round(seconds / 60))} min`;

/**
 * What of the collector needs a person, each with what to do. Run-wide findings (the latest
 * scheduled run, killed runs) are left out when the status is limited to some tenants.
 */
export function collectorAttention(
  health: CollectorHealth,
  options: { perTenant: boolean },
): string[] {
  const lines: string[] = [];
  const latest = health.latest_scheduled_run;
  if (!options.perTenant && latest) {
    if (latest.database_unreachable) {
      lines.push(
        `the latest scheduled collection (${latest.started_at}) could not reach the database: check SUPABASE_URL and the database's availability`,
      );
    }
    if (latest.finished_at !== null && latest.sources_failed > 0) {
      lines.push(
        `the latest scheduled collection (${latest.started_at}) finished with ${plural(latest.sources_failed, 'failed source')}${latest.first_error ? ` (${latest.first_error.slice(0, 120)})` : ''}: see the sources above`,
      );
    }
  }
  if (!options.perTenant && health.killed_runs.length > 0) {
    const [last] = health.killed_runs;
    lines.push(
      `${plural(health.killed_runs.length, 'collector run')} in the last day never finished (killed or timed out; the latest, ${last?.trigger} at ${last?.started_at}, had committed ${last?.pages} pages, ${last?.executions_ingested} executions): check the function logs`,
    );
  }
  for (const lease of health.dead_leases) {
    lines.push(
      `source ${lease.source_id.slice(0, 8)} (${lease.base_url}) is held by a lease whose run is dead, for ${span(lease.held_for_seconds)}: the next run takes it over; if this persists, check that collect-usage runs`,
    );
  }
  const gaps = health.unacknowledged_gaps;
  if (gaps.gaps > 0) {
    const kinds = Object.entries(gaps.by_kind)
      .map(([kind, n]) => `${n} ${kind}`)
      .join(', ');
    lines.push(
      `${plural(gaps.gaps, 'gap')} (${plural(gaps.executions, 'execution')} possibly uncounted: ${kinds}) since the last acknowledgement: see \`flowmeter sources list\`, then \`flowmeter sources acknowledge-gaps\``,
    );
  }
  return lines;
}
