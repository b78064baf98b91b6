import type { PostgrestError } from '@supabase/supabase-js';
import type { Command } from 'commander';
import { API_MAX_ROWS } from '../db/api-max-rows.ts';
import type { Database as Schema } from '../db/database.types.ts';
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
  /** The option that narrows the list, named when it is as long as one call hands over (--tenant where tenantFilter is set). */
  narrowWith?: string;
  /** Said on stderr below the table, when some rows call for it: what to do about them. */
  advice?: (rows: Row[]) => string | undefined;
}

/** Said below a list as long as one call hands over: there may be more than it shows. */
export const fullListNote = (narrowWith?: string) =>
  `showing the first ${API_MAX_ROWS.toLocaleString('en-US')}, as many as one call to the database hands over: there may be more${narrowWith ? `; narrow the list with ${narrowWith}` : ''}`;

/**
 * A listing subcommand: its rows as a table for people, as JSON with --json. A list as long
 * as one call hands over says so on stderr, with --json too (the JSON is only the rows).
 */
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
      const full = rows.length >= API_MAX_ROWS;
      const narrowWith = spec.narrowWith ?? (spec.tenantFilter ? '--tenant' : undefined);
      if (options.json) {
        printJson(io, rows);
        // On stderr: the JSON stays only the rows, and a script still learns it is cut.
        if (full) io.err(fullListNote(narrowWith));
        return;
      }
      if (rows.length === 0) {
        io.out(typeof spec.empty === 'string' ? spec.empty : spec.empty(options));
        return;
      }
      io.out(renderTable(spec.columns, rows.map(spec.row)));
      const advice = spec.advice?.(rows);
      if (advice) io.err(advice);
      if (full) io.err(fullListNote(narrowWith));
    });
}

type Functions = Schema['public']['Functions'];

/** The SQL functions that list rows and take the --tenant filter as `tenant_ids`. */
type FilteredListing = {
  [F in keyof Functions]: ReturnType<typeof tenantFilter> extends Functions[F]['Args']
    ? Functions[F]['Returns'] extends unknown[]
      ? F
      : never
    : never;
}[keyof Functions];

type Listed<F extends FilteredListing> = Functions[F]['Returns'] extends (infer Row)[]
  ? Row
  : never;

/** A `list` subcommand with the --tenant filter, showing what one SQL function answers for it. */
export function addFilteredList<F extends FilteredListing>(
  parent: Command,
  ctx: CommandContext,
  spec: Omit<ListSpec<Listed<F>, object>, 'load' | 'options'> & { rpc: F },
): void {
  const { rpc, ...list } = spec;
  addListCommand(parent, ctx, {
    tenantFilter: {},
    ...list,
    // supabase-js cannot relate a function name still generic to its arguments and rows;
    // FilteredListing holds only functions that take the filter and answer rows.
    load: async (database, filter) =>
      database.unwrap(
        (await database.db.rpc(rpc, filter as Functions[F]['Args'])) as {
          data: Listed<F>[] | null;
          error: PostgrestError | null;
          status: number;
        },
      ),
  });
}
