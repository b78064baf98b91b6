import type { Command } from 'commander';
import { z } from 'zod';
import { stripeClientFrom } from '../billing/from-config.ts';
import { type Correction, MAX_CORRECTION, recordCorrection } from '../billing/record-correction.ts';
import { sendCorrections } from '../billing/send-corrections.ts';
import { loadReporterConfig } from '../config/reporter-env.ts';
import { parser, schemas } from './arguments.ts';
import {
  type CommandContext,
  EXIT,
  filteredTenantIds,
  loadEnvironment,
  openDatabase,
  resolveTenant,
  tenantFilterOption,
} from './context.ts';
import { cliLogger, count, printJson, renderRecord, renderTable, short, time } from './output.ts';

const executions = z
  .string()
  .trim()
  .regex(/^[+-]?\d{1,10}$/, {
    error: `must be a whole number of executions, e.g. -40 or 25 (at most ${MAX_CORRECTION.toLocaleString('en-US')} either way)`,
  })
  .transform(Number)
  .refine((n) => n !== 0, { error: 'must not be 0: a correction adds or takes off executions' })
  .refine((n) => Math.abs(n) <= MAX_CORRECTION, {
    error: `must be at most ${MAX_CORRECTION.toLocaleString('en-US')} either way`,
  });

const reason = z
  .string()
  .trim()
  .min(1, { error: 'must say why (it is kept with the correction and shown to the tenant)' })
  .max(500, { error: 'must be at most 500 characters' })
  .refine((s) => !/[\p{Cc}\p{Cf}]/u.test(s), {
    error: 'must be plain text, without control or format characters',
  });

/** A billing period that can have been reported: not after the current UTC month. */
const pastMonth = schemas.month.refine((m) => m <= new Date().toISOString().slice(0, 7), {
  error: 'must not be after the current month: only reported periods can be corrected',
});

const requestKey = z.string().trim().min(1).max(200, { error: 'must be at most 200 characters' });

/** What a correction did, in words, for the table and the record. */
export function correctionEffect(c: Correction): string {
  if (c.method === 'meter_event') return `meter event of ${count(c.event_value)}`;
  if (c.method === 'cancel') {
    const rest = c.event_value ? `, ${count(c.event_value)} re-sent` : '';
    return `cancels ${c.cancels_identifier} (${count(c.cancelled_value)})${rest}`;
  }
  if (c.method === 'credit') return `credit of ${count(c.credit_amount)} ${c.currency} minor units`;
  return 'nothing billed for these executions';
}

function correctionRecord(c: Correction) {
  return renderRecord([
    ['correction', c.id],
    ['tenant', c.tenant_id],
    ['period', `${time(c.period_start)} → ${time(c.period_end)}`],
    ['executions', c.delta > 0 ? `+${count(c.delta)}` : count(c.delta)],
    ['reason', c.reason],
    ['requested by', c.requested_by],
    ['sent as', correctionEffect(c)],
    ['identifier', c.identifier],
    ['status', c.status],
    ['stripe object', c.stripe_object_id],
    ['last error', c.last_error],
  ]);
}

interface AdjustOptions {
  tenant: string;
  period: string;
  by: number;
  reason: string;
  key?: string;
  json?: boolean;
}

export function registerAdjust(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command('adjust')
    .description(
      "correct a reported billing period: record the correction in the ledger, then send it to Stripe (a meter event, a cancellation within Stripe's 24 hours, or a credit)",
    )
    .requiredOption('--tenant <tenant>', 'tenant id or external reference', parser(schemas.tenant))
    .requiredOption(
      '--period <YYYY-MM>',
      'the UTC month in which the billing period starts',
      parser(pastMonth),
    )
    .requiredOption('--by <n>', 'executions to add (25) or take off (-40)', parser(executions))
    .requiredOption(
      '--reason <text>',
      'why: kept with the correction, shown to the tenant',
      parser(reason),
    )
    .option(
      '--key <key>',
      'what makes a repeat the same correction (default: tenant, period, --by and --reason)',
      parser(requestKey),
    )
    .option('--json', 'print the correction as JSON on stdout')
    .allowExcessArguments(false)
    .action(async (options: AdjustOptions) => {
      const config = await loadEnvironment(io, loadReporterConfig);
      const database = openDatabase(config);
      const tenant = await resolveTenant(database, options.tenant);
      const recorded = database.valueOrExit(
        await recordCorrection({
          db: database.db,
          tenantId: tenant.id,
          period: { month: options.period },
          delta: options.by,
          reason: options.reason,
          requestedBy: `flowmeter adjust (${io.env.USER ?? io.env.USERNAME ?? 'unknown user'})`,
          finalizationGraceMinutes: config.INVOICE_FINALIZATION_GRACE_MINUTES,
          ...(options.key ? { requestKey: `key:${options.key}` } : {}),
        }),
      );
      let correction = recorded.correction;
      const stripe = stripeClientFrom(config);
      if (correction.status === 'pending' && stripe) {
        const sent = database.valueOrExit(
          await sendCorrections({
            db: database.db,
            stripe,
            log: cliLogger(io.err),
            ids: [correction.id],
            finalizationGraceMinutes: config.INVOICE_FINALIZATION_GRACE_MINUTES,
          }),
        );
        correction = sent.settled[0] ?? correction;
      }
      if (correction.status === 'pending' || correction.status === 'review') ctx.exit(EXIT.failed);
      if (options.json) return printJson(io, { created: recorded.created, correction });
      io.out(correctionRecord(correction));
      if (!recorded.created) {
        io.err(
          `Correction ${correction.id} was already recorded for this request; nothing new was recorded. To record another, give another --reason or --key.`,
        );
      }
      if (correction.status === 'pending') {
        io.err(
          stripe
            ? 'Not sent yet: it stays pending and the hourly report-usage run (or `flowmeter report`) sends it, unchanged.'
            : 'STRIPE_SECRET_KEY is not set: recorded, pending; report-usage sends it once the key is set.',
        );
      }
      if (correction.status === 'review') {
        io.err(
          'Check in Stripe whether the event was cancelled (docs/billing.md "Corrections"); nothing more is sent for it.',
        );
      }
    });

  program
    .command('corrections')
    .description('corrections of billed usage and repairs of Stripe drift, newest first')
    .addOption(tenantFilterOption())
    .option('--period <YYYY-MM>', 'only periods starting in this UTC month', parser(schemas.month))
    .option('--json', 'print the corrections as JSON on stdout')
    .action(async (options: { tenant?: string[]; period?: string; json?: boolean }) => {
      const config = await loadEnvironment(io, loadReporterConfig);
      const database = openDatabase(config);
      const tenantIds = await filteredTenantIds(database, options.tenant);
      const rows = database.unwrap(
        await database.db.rpc('list_meter_corrections', {
          ...(tenantIds ? { tenant_ids: tenantIds } : {}),
          ...(options.period ? { in_month: `${options.period}-01` } : {}),
        }),
      );
      if (options.json) return printJson(io, rows);
      if (rows.length === 0) {
        io.out('No corrections.');
        return;
      }
      io.out(
        renderTable(
          ['id', 'tenant', 'period start', 'kind', 'executions', 'sent as', 'status', 'reason'],
          rows.map((c) => [
            c.id,
            c.tenant_id,
            time(c.period_start),
            c.kind,
            c.delta > 0 ? `+${count(c.delta)}` : count(c.delta),
            short(correctionEffect(c), 60),
            c.status,
            short(c.reason, 60),
          ]),
        ),
      );
    });
}
