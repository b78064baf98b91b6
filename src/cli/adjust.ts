import type { Command } from 'commander';
import { z } from 'zod';
import { stripeClientFrom } from '../billing/from-config.ts';
import { type Correction, MAX_CORRECTION, recordCorrection } from '../billing/record-correction.ts';
import { sendCorrections } from '../billing/send-corrections.ts';
import { loadReporterConfig, type ReporterConfig } from '../config/reporter-env.ts';
import type { Logger } from '../observability/logger.ts';
import { parser, schemas, tenantOption } from './arguments.ts';
import { CliError, type CommandContext, type Database, EXIT } from './context.ts';
import { addFilteredList } from './list-command.ts';
import { cliLogger, count, printJson, renderRecord, short, time } from './output.ts';

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

const correctionId = z
  .string()
  .regex(/^\d{1,18}$/, { error: 'must be a correction id (see `flowmeter corrections list`)' })
  .transform(Number);

/** A pending correction sent now when a key is set; as it was otherwise. */
async function sendNow(
  database: Database,
  config: ReporterConfig,
  correction: Correction,
  log: Logger,
): Promise<Correction> {
  const stripe = stripeClientFrom(config);
  if (correction.status !== 'pending' || !stripe) return correction;
  const sent = database.valueOrExit(
    await sendCorrections({
      db: database.db,
      stripe,
      log,
      ids: [correction.id],
      finalizationGraceMinutes: config.INVOICE_FINALIZATION_GRACE_MINUTES,
    }),
  );
  return sent.settled[0] ?? correction;
}

/** What a correction did, in words, for the table and the record. */
function correctionEffect(c: Correction): string {
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
    .addOption(tenantOption())
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
      const { config, database } = await ctx.open(loadReporterConfig);
      const tenant = await database.tenant(options.tenant);
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
      const stripe = stripeClientFrom(config);
      const correction = await sendNow(database, config, recorded.correction, cliLogger(io.err));
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
          correction.method === 'cancel' && !correction.cancel_sent_at
            ? `Check in Stripe whether the event was cancelled, then \`flowmeter corrections resolve ${correction.id} --stripe-cancelled yes|no\`; nothing more is sent for it until then.`
            : `Check in Stripe whether the meter's events hold identifier ${correction.identifier}, then \`flowmeter corrections resolve ${correction.id} --stripe-has yes|no\`; nothing more is sent for it until then.`,
        );
      }
    });

  const corrections = program
    .command('corrections')
    .description('corrections of billed usage and repairs of Stripe drift');

  addFilteredList(corrections, ctx, {
    description: 'corrections newest first, with how each was sent and its status',
    rpc: 'list_meter_corrections',
    empty: 'No corrections: `flowmeter adjust` records one.',
    columns: ['id', 'tenant', 'period start', 'kind', 'executions', 'sent as', 'status', 'reason'],
    row: (c) => [
      c.id,
      c.tenant_id,
      time(c.period_start),
      c.kind,
      c.delta > 0 ? `+${count(c.delta)}` : count(c.delta),
      short(correctionEffect(c), 60),
      c.status,
      short(c.reason, 60),
    ],
  });

  corrections
    .command('resolve')
    .description(
      'after checking in Stripe a correction waiting for review: say what Stripe shows, and finish it',
    )
    .argument('<id>', 'the correction (see `flowmeter corrections list`)', parser(correctionId))
    .option(
      '--stripe-cancelled <yes|no>',
      "a cancellation in review: whether Stripe's Dashboard shows the event cancelled; yes goes on with the remainder, no credits instead",
      parser(schemas.yesNo),
    )
    .option(
      '--stripe-has <yes|no>',
      "a meter event in review: whether the meter's events in Stripe's Dashboard hold its identifier; yes records it sent, no sends it again",
      parser(schemas.yesNo),
    )
    .option('--json', 'print the correction as JSON on stdout')
    .action(
      async (
        id: number,
        options: { stripeCancelled?: boolean; stripeHas?: boolean; json?: boolean },
      ) => {
        const shows = options.stripeCancelled ?? options.stripeHas;
        if (
          shows === undefined ||
          (options.stripeCancelled !== undefined && options.stripeHas !== undefined)
        ) {
          throw new CliError(
            EXIT.usage,
            "give one of --stripe-cancelled yes|no (a cancellation in review) or --stripe-has yes|no (a meter event in review): the correction's last error says which",
          );
        }
        const { config, database } = await ctx.open(loadReporterConfig);
        const resolved = database.unwrap(
          await database.db.rpc('resolve_meter_correction', { id, stripe_shows: shows }),
        );
        const correction = await sendNow(database, config, resolved, cliLogger(io.err));
        if (correction.status === 'pending') ctx.exit(EXIT.failed);
        if (options.json) return printJson(io, correction);
        io.out(correctionRecord(correction));
      },
    );
}
