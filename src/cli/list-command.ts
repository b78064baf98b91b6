import type { Command } from 'commander';
import {
  type CommandContext,
  type Database,
  filteredTenantIds,
  openSupabase,
  tenantFilterOption,
} from './context.ts';
import { type Cell, printJson, renderTable } from './output.ts';

export interface ListSpec<Row> {
  description: string;
  /** Adds the repeatable --tenant filter, its help ending with this note. */
  tenantFilter?: { note?: string };
  load: (database: Database, tenantIds: string[] | undefined) => Promise<Row[]>;
  /** Printed instead of an empty table: what to run to get a first row. */
  empty: string;
  columns: string[];
  row: (row: Row) => Cell[];
}

/** A `list` subcommand: its rows as a table for people, as JSON with --json. */
export function addListCommand<Row>(
  parent: Command,
  ctx: CommandContext,
  spec: ListSpec<Row>,
): void {
  const { io } = ctx;
  const command = parent.command('list').description(spec.description);
  if (spec.tenantFilter) command.addOption(tenantFilterOption(spec.tenantFilter.note));
  command
    .option('--json', 'print JSON on stdout')
    .action(async (options: { tenant?: string[]; json?: boolean }) => {
      const database = await openSupabase(io);
      const tenantIds = await filteredTenantIds(database, options.tenant);
      const rows = await spec.load(database, tenantIds);
      if (options.json) return printJson(io, rows);
      if (rows.length === 0) io.out(spec.empty);
      else io.out(renderTable(spec.columns, rows.map(spec.row)));
    });
}
