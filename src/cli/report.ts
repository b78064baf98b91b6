import { type Command, Option } from 'commander';
import { z } from 'zod';
import { reporterSettings, stripeClientFrom } from '../billing/from-config.ts';
import { runReporter } from '../billing/report-usage.ts';
import { loadReporterConfig } from '../config/reporter-env.ts';
import { API_MAX_ROWS } from '../db/api-max-rows.ts';
import type { Database } from '../db/database.types.ts';
import { plural } from '../domain/words.ts';
import { STRIPE_KEPT_FAILING } from '../stripe/errors.ts';
import { reportReviewSteps, STRIPE_REPLAY_WINDOW_HOURS } from '../stripe/replay-window.ts';
import { parser, repeatable, schemas, tenantFilterOption } from './arguments.ts';
import { CliError, type CommandContext, EXIT, valueOrExit } from './context.ts';
import { addListCommand } from './list-command.ts';
import { cliLogger, count, printJson, renderTable, short, time } from './output.ts';
import { createProgress } from './progress.ts';

const reportId = z
  .string()
  .regex(/^\d{1,18}$/, { error: 'must be a meter report id (public.meter_reports.id)' })
  .transform(Number);

type MeterReport = Database['public']['Tables']['meter_reports']['Row'];

const METER_REPORT_STATUSES = ['pending', 'sent', 'late', 'review'] as const;
type MeterReportStatus = (typeof METER_REPORT_STATUSES)[number];
const reportStatus = z.enum(METER_REPORT_STATUSES, {
  error: 'must be pending, sent, late or review',
});

interface ReportOptions {
  tenant?: string[];
  dryRun?: boolean;
  json?: boolean;
}

export function registerReport(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command('report')
    .description(
      'report unreported billable usage to Stripe Billing Meters now (what the hourly report-usage does)',
    )
    .addOption(tenantFilterOption())
    .option(
      '--dry-run',
      'send nothing: record the deltas in the ledger and show the meter events the next run sends',
    )
    .option('--json', 'print the run summary as JSON on stdout')
    .action(async (options: ReportOptions) => {
      const { config, database } = await ctx.open(loadReporterConfig);
      if (!config.STRIPE_SECRET_KEY && !options.dryRun) {
        throw new CliError(
          EXIT.usage,
          'STRIPE_SECRET_KEY is not set, so nothing can be sent: set it (see .env.example), or pass --dry-run to see what would be sent',
        );
      }
      const tenantIds = await database.tenantIds(options.tenant);
      // A dry run sends nothing, so there is nothing to follow.
      const progress =
        options.json || options.dryRun ? undefined : createProgress(io, 'reporting', 'meter event');
      const result = await runReporter({
        db: database.db,
        stripe: options.dryRun ? null : stripeClientFrom(config),
        // No 30-second function limit here: an operator's run may take what the backlog needs.
        settings: { ...reporterSettings(config), budgetMs: 24 * 3600_000 },
        log: cliLogger(progress ? (line) => progress.line(line) : io.err),
        ...(tenantIds ? { tenantIds } : {}),
        ...(progress
          ? {
              onProgress: (event) =>
                event.type === 'claimed' ? progress.start(event.reports) : progress.increment(),
            }
          : {}),
      }).finally(() => progress?.stop());
      const summary = valueOrExit(result);

      const corrections = summary.corrections;
      if (!summary.dryRun && (summary.failed > 0 || summary.deferred > 0 || summary.review > 0))
        ctx.exit(EXIT.failed);
      if (corrections && (corrections.failed > 0 || corrections.review > 0)) ctx.exit(EXIT.failed);
      if (options.json) return printJson(io, summary);
      if (summary.dryRun) {
        if (summary.wouldSend.length === 0) {
          io.out('dry run: nothing to report');
          return;
        }
        io.out(
          renderTable(
            ['identifier', 'customer', 'event name', 'value', 'timestamp'],
            summary.wouldSend.map((r) => [
              r.identifier,
              r.stripe_customer_id,
              r.event_name,
              count(r.value),
              time(r.event_timestamp),
            ]),
          ),
        );
        io.out(
          `dry run: ${plural(summary.wouldSend.length, 'meter event')} would be sent; they are in the ledger, pending, for the next run`,
        );
        return;
      }
      io.out(
        `${summary.claimed} pending: ${summary.sent} sent, ${summary.failed} failed, ${summary.late} late, ${summary.review > 0 ? `${summary.review} to check by hand, ` : ''}${summary.deferred} deferred`,
      );
      if (corrections && corrections.claimed > 0) {
        io.out(
          `${plural(corrections.claimed, 'pending correction')}: ${corrections.sent} sent, ${corrections.credited} credited instead of cancelled, ${corrections.failed} failed, ${corrections.late} late, ${corrections.review} to check by hand, ${corrections.deferred} deferred (\`flowmeter corrections list\` shows them)`,
        );
      }
      if (summary.failed > 0) {
        io.err('Failed reports stay pending and are re-sent, unchanged, by the next run.');
      }
      if (summary.stoppedBy === 'auth') {
        io.err(
          'Stripe refused the API key, so the run stopped: set STRIPE_SECRET_KEY to a valid key; the reports stay pending.',
        );
      } else if (summary.stoppedBy === 'unavailable' || corrections?.stoppedBy === 'unavailable') {
        io.err(
          `${STRIPE_KEPT_FAILING}, so the run stopped sending: the rest waits, unattempted, for the next run (status.stripe.com says whether Stripe is down).`,
        );
      } else if (summary.deferred > 0 || (corrections?.deferred ?? 0) > 0) {
        io.err(
          "The run's time (REPORTER_BUDGET_SECONDS) ran out: the rest waits, unattempted, for the next run.",
        );
      }
      if (summary.late > 0) {
        io.err(
          'Late reports belong to invoices that are already final: see `flowmeter status` and docs/billing.md.',
        );
      }
      if (summary.review > 0) {
        io.err(
          `Reports to check by hand had an attempt without an answer over ${STRIPE_REPLAY_WINDOW_HOURS} hours ago: Stripe may no longer recognise their identifiers, so they are not sent again. ${reportReviewSteps()}.`,
        );
      }
    });

  const reports = program.command('reports').description('the Stripe meter report ledger');

  addListCommand<MeterReport, { status?: MeterReportStatus[] }>(reports, ctx, {
    description:
      'meter reports newest first, with their identifier in Stripe, status and last error',
    tenantFilter: {},
    options: (command) =>
      command.addOption(
        new Option(
          '--status <status>',
          'only reports in this status: pending, sent, late or review (repeatable)',
        ).argParser(repeatable(reportStatus)),
      ),
    load: async (database, filter, options) =>
      database.unwrap(
        await database.db.rpc('list_meter_reports', {
          ...filter,
          ...(options.status ? { statuses: options.status } : {}),
          max_rows: API_MAX_ROWS,
        }),
      ),
    empty: (options) =>
      options.status
        ? `No meter reports ${options.status.join(' or ')}.`
        : 'No meter reports yet: report-usage (or `flowmeter report`) makes them from collected usage.',
    columns: [
      'id',
      'tenant',
      'period start',
      'executions',
      'status',
      'attempts',
      'identifier',
      'last error',
    ],
    row: (r) => [
      r.id,
      r.tenant_id,
      time(r.period_start),
      count(r.value),
      r.unknown_outcome ? `${r.status} (outcome unknown)` : r.status,
      r.attempts,
      r.identifier,
      short(r.last_error, 50),
    ],
    advice: (rows) =>
      rows.some((r) => r.status === 'review')
        ? `For the reports in review: ${reportReviewSteps(false)}.`
        : undefined,
  });

  reports
    .command('resolve')
    .description(
      "after checking in Stripe a report waiting for review: say whether Stripe's meter holds its event",
    )
    .argument(
      '<id>',
      "the report's id (`flowmeter reports list --status review` lists them)",
      parser(reportId),
    )
    .requiredOption(
      '--stripe-has <yes|no>',
      "whether the meter's events in Stripe's Dashboard show its identifier: yes records it sent, no sends it with the next run",
      parser(schemas.yesNo),
    )
    .option('--json', 'print the report as JSON on stdout')
    .action(async (id: number, options: { stripeHas: boolean; json?: boolean }) => {
      const { database } = await ctx.open(loadReporterConfig);
      const report = database.unwrap(
        await database.db.rpc('resolve_meter_report', { id, stripe_holds: options.stripeHas }),
      );
      if (options.json) return printJson(io, report);
      io.out(
        report.status === 'sent'
          ? `report ${report.id} (${report.identifier}): recorded sent, as Stripe holds it`
          : `report ${report.id} (${report.identifier}): pending again; the next report-usage run (or \`flowmeter report\`) sends it`,
      );
    });
}
