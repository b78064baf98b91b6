import type { Command } from 'commander';
import { stripeClientFrom } from '../billing/from-config.ts';
import { runReconciliation, startOfLastMonth } from '../billing/reconcile.ts';
import { loadReconcileConfig } from '../config/reporter-env.ts';
import { plural } from '../domain/words.ts';
import { parser, schemas, tenantFilterOption } from './arguments.ts';
import { type CommandContext, EXIT, valueOrExit } from './context.ts';
import { cliLogger, count, printJson, renderTable, short, time } from './output.ts';

interface ReconcileOptions {
  since?: Date;
  repair?: boolean;
  tenant?: string[];
  json?: boolean;
}

export function registerReconcile(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command('reconcile')
    .description(
      "check counters against raw executions, and what Stripe accepted against Stripe's summaries",
    )
    .option(
      '--since <date>',
      'check billing periods starting at or after this (default: the first of last month, UTC); keep it within the raw-execution retention',
      parser(schemas.since),
    )
    .option(
      '--repair',
      "also set drifted counters to the raw-row totals, and correct Stripe's meter where it drifted (each repair is recorded)",
    )
    .addOption(tenantFilterOption())
    .option('--json', 'print the findings as JSON on stdout')
    .action(async (options: ReconcileOptions) => {
      const { config, database } = await ctx.open(loadReconcileConfig);
      const tenantIds = await database.tenantIds(options.tenant);
      const since = options.since ?? startOfLastMonth();
      const summary = valueOrExit(
        await runReconciliation({
          db: database.db,
          stripe: stripeClientFrom(config),
          log: cliLogger(io.err),
          since,
          repair: options.repair ?? false,
          concurrency: config.RECONCILE_CONCURRENCY,
          finalizationGraceMinutes: config.INVOICE_FINALIZATION_GRACE_MINUTES,
          ...(tenantIds ? { tenantIds } : {}),
        }),
      );

      const findings = [
        ...summary.counterFindings,
        ...summary.stripeFindings,
        ...summary.previewFindings,
      ];
      const unanswered = summary.stripeFailed + summary.previewFailed > 0;
      if (findings.some((f) => !f.repaired) || unanswered) ctx.exit(EXIT.failed);
      if (options.json) return printJson(io, { since: since.toISOString(), ...summary });

      if (findings.length > 0) {
        io.out(
          renderTable(
            ['kind', 'tenant', 'period start', 'expected', 'actual', 'repaired', 'detail'],
            findings.map((f) => [
              f.kind,
              f.tenant_id,
              time(f.period_start),
              count(f.expected),
              count(f.actual),
              f.repaired ? 'yes' : 'no',
              short(f.detail, 80),
            ]),
          ),
        );
      }
      const repaired = summary.counterFindings.filter((f) => f.repaired).length;
      io.out(
        `since ${time(since.toISOString())}: counters ${summary.counterFindings.length === 0 ? 'match the raw executions' : `drifted in ${plural(summary.counterFindings.length, 'tenant-period')} (${repaired} repaired)`}`,
      );
      if (config.STRIPE_SECRET_KEY) {
        io.out(
          `Stripe: ${plural(summary.stripeChecked, 'customer-period')} checked, ${summary.stripeFindings.length} ${summary.stripeFindings.length === 1 ? 'disagrees' : 'disagree'}, ${summary.stripeSkipped} not settled yet (sent within the last hour, or a correction or an unanswered report on its way; compared next time)`,
        );
        io.out(
          `Invoice previews: ${summary.previewChecked} compared with flowmeter's estimate, ${summary.previewFindings.length} disagree, ${summary.previewSkipped} not fetched (compared next time)`,
        );
        if (summary.stripeFailed > 0) {
          io.err(
            `Stripe did not answer for ${plural(summary.stripeFailed, 'customer-period')} (latest: ${summary.stripeError}): not compared; fix what it names and run again.`,
          );
        }
        if (summary.previewFailed > 0) {
          io.err(
            `Stripe did not preview ${plural(summary.previewFailed, 'invoice')} (latest: ${summary.previewError}): not compared; fix what it names and run again.`,
          );
        }
      } else {
        io.out('Stripe: not compared (STRIPE_SECRET_KEY is not set)');
      }
      if (summary.counterFindings.some((f) => !f.repaired)) {
        io.err('Run again with --repair to set the drifted counters to the raw-row totals.');
      }
      if (summary.stripeFindings.some((f) => !f.repaired)) {
        io.err(
          "Run again with --repair to correct Stripe's meter (a correction each, see `flowmeter corrections list`).",
        );
      }
    });
}
