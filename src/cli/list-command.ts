import type { Command } from 'commander';
import { tenantFilterOption } from './arguments.ts';
import { type CommandContext, type Database, tenantFilter } from './context.ts';
import { type Cell, printJson, renderTable } from './output.ts';

export interface ListSpec<Row, Options extends object> {
  /** The subcommand's name: `list` unless said. */
  name?: string;
  description: string;
  /** Adds the repeatable --tenant filter, its help ending with this note. */
  tenantFilter?: { note?: string };
  /** The command's own options, beside --tenant and --json. */
  options?: (command: Command) => Command;
  /** The rows; `filter` is the `tenant_ids` argument --tenant asks for. */
  load: (
    database: Database,
    filter: ReturnType<typeof tenantFilter>,
    options: Options,
  ) => Promise<Row[]>;
  /** Printed instead of an empty table: what to run to get a first row. */
  empty: string | ((options: Options) => string);
  columns: string[];
  row: (row: Row) => Cell[];
  /** Said on stderr below the table, when some rows call for it: what to do about them. */
  advice?: (rows: Row[]) => string | undefined;
}

/** A listing subcommand: its rows as a table for people, as JSON with --json. */
export function addListCommand<Row, Options extends object = object>(
  parent: Command,
  ctx: CommandContext,
  spec: ListSpec<Row, Options>,
): void {
  const { io } = ctx;
  const command = parent.command(spec.name ?? 'list').description(spec.description);
  if (spec.tenantFilter) command.addOption(tenantFilterOption(spec.tenantFilter.note));
  spec.options?.(command);
  command
    .option('--json', 'print JSON on stdout')
    .action(async (options: Options & { tenant?: string[]; json?: boolean }) => {
      const database = await ctx.openSupabase();
      const tenantIds = spec.tenantFilter ? await database.tenantIds(options.tenant) : undefined;
      const rows = await spec.load(database, tenantFilter(tenantIds), options);
      if (options.json) return printJson(io, rows);
      if (rows.length === 0) {
        io.out(typeof spec.empty === 'string' ? spec.empty : spec.empty(options));
        return;
      }
      io.out(renderTable(spec.columns, rows.map(spec.row)));
      const advice = spec.advice?.(rows);
      if (advice) io.err(advice);
    });
}
