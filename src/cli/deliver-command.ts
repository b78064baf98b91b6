import type { Command, Option } from 'commander';
import type { DeliverySummary } from '../domain/delivery-summary.ts';
import { type CommandContext, EXIT } from './context.ts';
import { printJson } from './output.ts';

export interface DeliverSpec<Options extends object> {
  description: string;
  /** What the run can be narrowed to (--tenant, --endpoint). */
  only: Option;
  /** Sends what is due now: an operator's run drains it all, not one scheduled batch. */
  run: (options: Options) => Promise<DeliverySummary>;
  /** Said on stderr when a delivery failed: where to look next. */
  advice?: string;
}

/**
 * The `deliver` subcommand of alerts and webhooks: the run's summary as a line or as JSON,
 * exit 1 when a delivery failed (retried later) or was given up.
 */
export function addDeliverCommand<Options extends object>(
  parent: Command,
  ctx: CommandContext,
  spec: DeliverSpec<Options>,
): void {
  const { io } = ctx;
  parent
    .command('deliver')
    .description(spec.description)
    .addOption(spec.only)
    .option('--json', 'print the run summary as JSON on stdout')
    .action(async (options: Options & { json?: boolean }) => {
      const summary = await spec.run(options);
      const failed = summary.failed > 0 || summary.gaveUp > 0;
      if (failed) ctx.exit(EXIT.failed);
      if (options.json) return printJson(io, summary);
      io.out(
        `${summary.claimed} due: ${summary.delivered} delivered, ${summary.failed} failed (retried later), ${summary.gaveUp} given up`,
      );
      if (failed && spec.advice) io.err(spec.advice);
    });
}
