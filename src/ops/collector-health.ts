import { z } from 'zod';
import { dbNumber } from '../db/json-number.ts';
import { dbTimestamp } from '../db/json-time.ts';
import { plural } from '../domain/words.ts';

const when = dbTimestamp.nullable();
const number = dbNumber;

/** What health reads of one collector run, scheduled or background. */
const runSchema = z.object({
  id: z.string(),
  started_at: dbTimestamp,
  finished_at: when,
  sources_ok: number,
  sources_failed: number,
  sources_lease_lost: number,
  pages: number,
  executions_ingested: number,
  database_unreachable: z.boolean(),
  failure: z.string().nullable(),
  first_error: z.string().nullable(),
  sources_handoff_refused: number,
  handoff_error: z.string().nullable(),
});

/** collector_health()'s JSON, checked where it enters TypeScript. */
export const collectorHealthSchema = z.object({
  latest_scheduled_run: runSchema.extend({ killed: z.boolean() }).nullable(),
  failed_background_runs: z.object({ count: number, latest: z.array(runSchema) }),
  killed_runs: z.array(
    z.object({
      id: z.string(),
      trigger: z.string(),
      started_at: dbTimestamp,
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
      lease_expired_at: dbTimestamp,
      held_for_seconds: number,
    }),
  ),
  deferred_sources: z.object({
    count: number,
    /** The five longest uncollected, longest first. */
    longest: z.array(
      z.object({
        source_id: z.string(),
        tenant_id: z.string(),
        base_url: z.string(),
        last_success_at: when,
        last_walk_completed_at: when,
        uncollected_seconds: number,
      }),
    ),
  }),
  unacknowledged_gaps: z.object({
    gaps: number,
    executions: number,
    by_kind: z.record(z.string(), number),
    sources: number,
    oldest_detected_at: when,
  }),
});

export type CollectorHealth = z.infer<typeof collectorHealthSchema>;
type Run = z.infer<typeof runSchema>;

/** Whole minutes or hours, for a line a person reads. */
const span = (seconds: number) =>
  seconds >= 5400
    ? `${Math.round(seconds / 3600)} h`
    : `${Math.max(1, Math.round(seconds / 60))} min`;

const excerpt = (text: string | null) => (text ? ` (${text.slice(0, 120)})` : '');

/** A 401 or 403 is the background function refusing the secret; anything else, the URL. */
const handOffAdvice = (error: string | null) => {
  if (error !== null && / answered 40[13]$/.test(error)) {
    return 'set the same FLOWMETER_INTERNAL_SECRET for collect-usage and collect-usage-background';
  }
  // Cut at the end of the run: a deployed background function answers 202 at once, so the
  // hand-off had little time or the site answered slowly.
  if (error !== null && / before the run had to end$/.test(error)) {
    return 'collect-usage-background answers at once when deployed: if this repeats, check that URL is the site URL, or lower COLLECTOR_BUDGET_SECONDS so the hand-off starts earlier';
  }
  return 'check that URL is the site URL and collect-usage-background is deployed';
};

/**
 * What went wrong in one run, each with what to do; nothing when it ran clean. A run that
 * failed as a whole worked none of its sources, so their counts say nothing more.
 */
function runProblems(run: Run, name: string): string[] {
  const lines: string[] = [];
  if (run.database_unreachable) {
    lines.push(
      `${name} (${run.started_at}) could not reach the database${excerpt(run.failure)}: check SUPABASE_URL and the database's availability`,
    );
  } else if (run.failure !== null) {
    lines.push(
      `${name} (${run.started_at}) failed as a whole${excerpt(run.failure)}: check the function logs; its sources stay due and the next run collects them`,
    );
  }
  if (run.failure !== null) return lines;
  if (run.finished_at !== null && run.sources_failed > 0) {
    lines.push(
      `${name} (${run.started_at}) finished with ${plural(run.sources_failed, 'failed source')}${excerpt(run.first_error)}: see the sources above`,
    );
  }
  if (run.sources_handoff_refused > 0) {
    lines.push(
      `${name} (${run.started_at}) could not hand ${plural(run.sources_handoff_refused, 'source')} to collect-usage-background${excerpt(run.handoff_error)}: ${handOffAdvice(run.handoff_error)}; they stay due and the next run collects them`,
    );
  }
  if (run.sources_lease_lost > 0) {
    lines.push(
      `${name} (${run.started_at}) found ${plural(run.sources_lease_lost, 'source')} taken over by another run (its lease ran out first): if this repeats, check that runs do not overlap for longer than COLLECTOR_LEASE_SECONDS`,
    );
  }
  return lines;
}

/**
 * Sources every run takes and none gets through: each run cuts the walk at its budget and
 * defers it, which records no error, so nothing else would name them.
 */
function deferredAttention(deferred: CollectorHealth['deferred_sources']): string[] {
  const [longest] = deferred.longest;
  if (deferred.count === 0 || !longest) return [];
  const walk = longest.last_walk_completed_at
    ? `its walk last completed at ${longest.last_walk_completed_at}`
    : 'its walk never completed';
  const one = deferred.count === 1;
  return [
    `${plural(deferred.count, 'source')} not collected for 30 minutes or more although every collector run takes ${one ? 'it' : 'them'}: each run cuts ${one ? 'its walk' : 'their walks'} at its budget and defers ${one ? 'it' : 'them'} (${one ? '' : 'the longest: '}${longest.source_id.slice(0, 8)} (${longest.base_url}), for ${span(longest.uncollected_seconds)}, ${walk}): unless FLOWMETER_INTERNAL_SECRET and URL are set, set them so that collect-usage hands walks unfinished at its budget to collect-usage-background; with or without them, raising COLLECTOR_BUDGET_SECONDS or COLLECTOR_CONCURRENCY gives each walk more; if its n8n answers slowly or not at all, \`flowmeter sources test ${longest.source_id}\` shows it`,
  ];
}

/**
 * What of the collector needs a person, each with what to do. Run-wide findings (the latest
 * scheduled run, background runs that ended badly since it started, killed runs) are left
 * out when the status is limited to some tenants.
 */
export function collectorAttention(
  health: CollectorHealth,
  options: { perTenant: boolean },
): string[] {
  const lines: string[] = [];
  const latest = health.latest_scheduled_run;
  if (!options.perTenant && latest) {
    lines.push(...runProblems(latest, 'the latest scheduled collection'));
  }
  const background = health.failed_background_runs;
  if (!options.perTenant) {
    for (const run of background.latest) lines.push(...runProblems(run, 'a background collection'));
    const more = background.count - background.latest.length;
    if (more > 0) {
      lines.push(
        `${plural(more, 'more background collection')} since the latest scheduled one ended badly: check the collect-usage-background logs`,
      );
    }
  }
  if (!options.perTenant && health.killed_runs.length > 0) {
    const [last] = health.killed_runs;
    lines.push(
      `${plural(health.killed_runs.length, 'collector run')} in the last day never finished (killed or timed out; the latest, ${last?.trigger} at ${last?.started_at}, had committed ${plural(last?.pages ?? 0, 'page')}, ${plural(last?.executions_ingested ?? 0, 'execution')}): check the function logs`,
    );
  }
  for (const lease of health.dead_leases) {
    lines.push(
      `source ${lease.source_id.slice(0, 8)} (${lease.base_url}) is held by a lease that ran out unreleased (its run died, or never learned it held it), for ${span(lease.held_for_seconds)}: the next run takes it over; if this persists, check that collect-usage runs`,
    );
  }
  lines.push(...deferredAttention(health.deferred_sources));
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
