import { open, rename, rm } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import { z } from 'zod';
import { plural } from '../domain/words.ts';
import { exportRange } from '../export/export-range.ts';
import {
  EXPORT_FORMATS,
  EXPORT_GROUPINGS,
  type ExportFormat,
  type ExportGrouping,
  exportUsage,
} from '../export/export-usage.ts';
import { parser, schemas, tenantFilterOption } from './arguments.ts';
import { CliError, type CommandContext, EXIT, valueOrExit } from './context.ts';
import { createProgress } from './progress.ts';

/** A calendar day that exists: 2026-02-30 is refused, not read as 2 March. */
const day = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, { error: 'must be a day like 2026-11-01 (YYYY-MM-DD)' })
  .refine(
    (d) => {
      const parsed = new Date(`${d}T00:00:00Z`);
      return !Number.isNaN(parsed.getTime()) && parsed.toISOString().startsWith(d);
    },
    { error: 'must be a day that exists, like 2026-11-30' },
  );

const outputFile = z.string().trim().min(1, { error: 'must be a file name' });

interface ExportOptions {
  tenant?: string[];
  period?: string;
  from?: string;
  to?: string;
  by: ExportGrouping;
  format: ExportFormat;
  output?: string;
}

/** A file the export can be written to, opened before anything is read. */
async function openOutput(file: string) {
  // Written beside the file and renamed when complete, so a failed export leaves no file
  // that looks whole.
  const partial = `${file}.partial`;
  const handle = await open(partial, 'w').catch((error: NodeJS.ErrnoException) => {
    throw new CliError(EXIT.usage, `cannot write ${file} (${error.code ?? error.message})`);
  });
  return {
    stream: handle.createWriteStream(),
    complete: () => rename(partial, file),
    discard: () => rm(partial, { force: true }),
  };
}

export function registerExport(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  program
    .command('export')
    .description('export usage for your own systems')
    .command('usage')
    .description(
      'usage per tenant and day, workflow or execution, as CSV or NDJSON, streamed from the database',
    )
    .addOption(tenantFilterOption('; default: every tenant'))
    .option('--period <YYYY-MM>', 'a UTC calendar month', parser(schemas.month))
    .option(
      '--from <YYYY-MM-DD>',
      'the first UTC day (default: the first of this month)',
      parser(day),
    )
    .option('--to <YYYY-MM-DD>', 'the last UTC day, inclusive (default: today)', parser(day))
    .addOption(
      new Option(
        '--by <grouping>',
        'one row per tenant and day, per tenant and workflow, or per execution',
      )
        .choices(EXPORT_GROUPINGS)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--format <format>', 'csv or json (NDJSON)')
        .choices(EXPORT_FORMATS)
        .default('csv'),
    )
    .option('-o, --output <file>', 'write to this file instead of stdout', parser(outputFile))
    .action(async (options: ExportOptions) => {
      const range = valueOrExit(
        exportRange({
          now: new Date(),
          ...(options.period ? { period: options.period } : {}),
          ...(options.from ? { from: options.from } : {}),
          ...(options.to ? { to: options.to } : {}),
        }),
      );
      const database = await ctx.openSupabase();
      const tenantIds = (await database.tenantIds(options.tenant)) ?? null;
      const file = options.output ? await openOutput(options.output) : undefined;
      const progress = createProgress(
        io,
        'exporting',
        options.by === 'day' ? 'days' : 'executions',
      );
      const result = await exportUsage({
        db: database.db,
        tenantIds,
        range,
        by: options.by,
        format: options.format,
        output: file?.stream ?? io.stdout,
        endOutput: file !== undefined,
        onProgress: (event) =>
          event.type === 'size' ? progress.start(event.total) : progress.advance(event.covered),
      })
        .catch(async (error: unknown) => {
          await file?.discard();
          throw error;
        })
        .finally(() => progress.stop());
      if (!result.ok) await file?.discard();
      const { rows } = database.valueOrExit(result);
      await file?.complete();
      io.err(
        `exported ${plural(rows, 'row')} (per ${options.by}, ${range.fromDay} to ${range.toDay}) as ${options.format === 'csv' ? 'CSV' : 'NDJSON'}${options.output ? ` to ${options.output}` : ''}`,
      );
    });
}
