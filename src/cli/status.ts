import type { Command } from 'commander';
import type { z } from 'zod';
import { plural } from '../domain/words.ts';
import { type CollectorHealth, collectorHealthSchema } from '../ops/collector-health.ts';
import { type OperatorStatus, operatorStatusSchema } from '../ops/operator-status.ts';
import { scheduledFunctionRows } from '../ops/scheduled-functions.ts';
import { statusFindings } from '../ops/status-findings.ts';
import { tenantFilterOption } from './arguments.ts';
import { CliError, type CommandContext, EXIT, tenantFilter } from './context.ts';
import { count, duration, printJson, renderTable, short, sourceError, time } from './output.ts';

type Status = OperatorStatus;

/** No Netlify function runs longer: a run unfinished after this was killed. */
const LONGEST_RUN_MS = 15 * 60_000;

const runLength = (run: Status['collector_runs'][number]) =>
  run.finished_at
    ? duration((Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000)
    : Date.now() - Date.parse(run.started_at) > LONGEST_RUN_MS
      ? 'killed'
      : 'running';

function render(status: Status, collector: CollectorHealth, attention: string[]): string {
  const { sources, meter_reports: reports, alert_deliveries: alerts } = status;
  const lines: string[] = [];
  lines.push(
    `Sources: ${sources.enabled} enabled of ${sources.total}, ${sources.failing} failing, ${sources.never_collected} never collected, longest lag ${duration(sources.max_lag_seconds)}`,
  );
  if (sources.worst.length > 0) {
    lines.push(
      renderTable(
        ['source', 'tenant', 'url', 'last success', 'lag', 'failures', 'last error'],
        sources.worst.map((s) => [
          s.id.slice(0, 8),
          s.tenant_name,
          s.base_url,
          s.enabled ? (s.last_success_at ? time(s.last_success_at) : 'never') : 'disabled',
          duration(s.lag_seconds),
          s.consecutive_failures,
          s.consecutive_failures > 0 ? sourceError(s.last_error, s.base_url, 50) : '',
        ]),
      ),
    );
  }
  lines.push(
    `Stripe meter reports: ${reports.pending} pending (${plural(reports.pending_value, 'execution')}${reports.oldest_pending_at ? `, oldest ${time(reports.oldest_pending_at)}` : ''}), ${reports.retrying} retrying, ${reports.late} late (${plural(reports.late_value - reports.late_unknown_value, 'execution')} not billed${reports.late_unknown > 0 ? `, ${plural(reports.late_unknown_value, 'execution')} maybe billed: outcome unknown, check Stripe` : ''})`,
  );
  if (reports.auth_failing) lines.push('  Stripe refuses the API key: nothing can be sent');
  if (reports.failing > 0) {
    lines.push(`  ${reports.failing} failed ${reports.failing_threshold} or more times`);
  }
  if (reports.last_error && reports.pending + reports.late > 0) {
    lines.push(`  last error: ${short(reports.last_error, 120)}`);
  }
  const { stripe_events: events } = status;
  lines.push(
    `Stripe webhook events rejected (last 30 days): ${events.rejected}${events.last_rejected_at ? ` (latest ${events.last_rejected_id} at ${time(events.last_rejected_at)}: ${short(events.last_reason, 100)})` : ''}`,
    `Stripe customers on a plan with no tenant linked: ${events.customers_without_tenant}${events.last_customer_without_tenant ? ` (latest ${events.last_customer_without_tenant.customer_id} on ${events.last_customer_without_tenant.plan_id})` : ''}`,
  );
  const { reconciliation: found } = status;
  lines.push(
    `Reconciliation findings not repaired (last 30 days): ${found.unrepaired}${found.last_found_at ? ` (latest ${found.last_kind} at ${time(found.last_found_at)}: ${short(found.last_detail, 100)})` : ''}`,
  );
  lines.push(
    `Alert deliveries not delivered: ${alerts.pending} pending, ${alerts.sending} sending, ${alerts.retrying} retrying, ${alerts.given_up} given up${alerts.oldest_at ? ` (oldest ${time(alerts.oldest_at)})` : ''}`,
  );
  if (alerts.last_error) lines.push(`  last error: ${short(alerts.last_error, 120)}`);
  const webhooks = status.webhook_deliveries;
  lines.push(
    `Webhook deliveries failing: ${webhooks.retrying} retrying, ${webhooks.given_up} given up, ${plural(webhooks.failing_endpoints.length, 'endpoint')} affected`,
  );
  lines.push('Scheduled functions:');
  lines.push(
    renderTable(
      [
        'function',
        'schedule',
        'last run',
        'outcome',
        'last success',
        'failures since',
        'last error',
      ],
      scheduledFunctionRows(status.scheduled_functions, status.generated_at).map(
        ({ name, run, schedule, overdue }) =>
          run
            ? [
                name,
                schedule ?? '–',
                `${time(run.last_started_at)}${overdue ? ' (overdue)' : ''}`,
                run.last_ok === null ? 'running' : run.last_ok ? 'ok' : 'failed',
                run.last_success_at ? time(run.last_success_at) : 'never',
                run.failures_since_success,
                run.last_ok === false ? short(run.last_error, 60) : '',
              ]
            : [name, schedule ?? '–', 'never run', '–', '–', '–', ''],
      ),
    ),
  );
  lines.push('Latest collector runs:');
  lines.push(
    status.collector_runs.length === 0
      ? '  none yet'
      : renderTable(
          ['started', 'trigger', 'took', 'ok', 'failed', 'deferred', 'new executions', 'errors'],
          status.collector_runs.map((r) => [
            time(r.started_at),
            r.trigger,
            runLength(r),
            r.sources_ok,
            r.sources_failed,
            r.sources_deferred,
            count(r.executions_ingested),
            r.errors,
          ]),
        ),
  );
  const gaps = collector.unacknowledged_gaps;
  lines.push(
    `Collector: ${plural(gaps.gaps, 'gap')} not acknowledged (${plural(gaps.executions, 'execution')}), ${plural(collector.dead_leases.length, 'dead lease')}, ${plural(collector.killed_runs.length, 'run')} killed in the last day, ${plural(collector.failed_background_runs.count, 'background run')} ended badly since the latest scheduled one`,
  );
  lines.push(attention.length ? `Needs attention: ${attention.join('; ')}` : 'All healthy.');
  return lines.join('\n');
}

/** A status function's JSON as its schema has it; another shape means older migrations. */
function parsedAnswer<T>(fn: string, schema: z.ZodType<T>, raw: unknown): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new CliError(
      EXIT.failed,
      `${fn} answered in an unexpected shape (${parsed.error.issues[0]?.message}): apply the latest migrations`,
    );
  }
  return parsed.data;
}

export function registerStatus(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command('status')
    .description(
      'one screen: source lag and errors, Stripe reports not sent, alerts not delivered, latest collector runs',
    )
    .addOption(tenantFilterOption('; collector runs are always all'))
    .option('--json', 'print JSON on stdout')
    .action(async (options: { tenant?: string[]; json?: boolean }) => {
      const database = await ctx.openSupabase();
      const tenantIds = await database.tenantIds(options.tenant);
      const args = tenantFilter(tenantIds);
      const status = parsedAnswer(
        'operator_status',
        operatorStatusSchema,
        database.unwrap(await database.db.rpc('operator_status', args)),
      );
      const collector = parsedAnswer(
        'collector_health',
        collectorHealthSchema,
        database.unwrap(await database.db.rpc('collector_health', args)),
      );
      const attention = statusFindings(status, collector, {
        perTenant: tenantIds !== undefined,
      });
      if (attention.length > 0) ctx.exit(EXIT.failed);
      if (options.json) {
        return printJson(io, { ...status, collector, needs_attention: attention });
      }
      io.out(render(status, collector, attention));
    });
}
