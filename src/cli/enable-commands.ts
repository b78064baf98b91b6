import type { Command } from 'commander';
import type { CommandContext, Database } from './context.ts';
import { printJson } from './output.ts';

export interface EnableSpec<Id, Shown> {
  /** The help of each of the two commands. */
  description: { enable: string; disable: string };
  /** The `<id>` argument: its help and its parser. */
  id: { description: string; parse: (value: string) => Id };
  /** The help of --json. */
  json: string;
  /** Turns the object on or off; answers what may be shown of it (no secrets). */
  set: (database: Database, id: Id, enabled: boolean) => Promise<Shown>;
  /** Prints the outcome for people. */
  done: (shown: Shown, enabled: boolean) => void;
}

/** The `enable` and `disable` subcommands of a kind of object that can be switched off. */
export function addEnableCommands<Id, Shown>(
  parent: Command,
  ctx: CommandContext,
  spec: EnableSpec<Id, Shown>,
): void {
  const { io } = ctx;
  for (const [name, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    parent
      .command(name)
      .description(spec.description[name])
      .argument('<id>', spec.id.description, spec.id.parse)
      .option('--json', spec.json)
      .action(async (id: Id, options: { json?: boolean }) => {
        const shown = await spec.set(await ctx.openSupabase(), id, enabled);
        if (options.json) return printJson(io, shown);
        spec.done(shown, enabled);
      });
  }
}
