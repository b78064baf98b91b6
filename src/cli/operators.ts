import type { Command } from 'commander';
import { addOperator, listOperators, removeOperator } from '../accounts/operators.ts';
import { emailOption } from './arguments.ts';
import { type CommandContext, valueOrExit } from './context.ts';
import { addListCommand } from './list-command.ts';
import { openForNewUsers, passwordFlag, printAccount } from './members.ts';
import { printJson, time } from './output.ts';

export function registerOperators(operators: Command, ctx: CommandContext): void {
  const { io } = ctx;

  operators
    .command('add')
    .description(
      'mark a user operator (creating them: locally with a password printed once, on Supabase by invitation)',
    )
    .addOption(emailOption("the operator's"))
    .addOption(passwordFlag())
    .option('--json', 'print the operator as JSON on stdout')
    .action(async (options: { email: string; password?: string; json?: boolean }) => {
      const user = valueOrExit(
        await addOperator({
          ...(await openForNewUsers(ctx, options.password)),
          email: options.email,
        }),
      );
      if (options.json) return printJson(io, user);
      printAccount(io, user, [['operator', 'yes']]);
      io.err('A signed-in session sees the change at its next token refresh (within the hour).');
    });

  addListCommand(operators, ctx, {
    description: 'every operator',
    load: async (database) => database.valueOrExit(await listOperators({ db: database.db })),
    empty: 'No operators yet: add one with `flowmeter operators add --email <address>`.',
    columns: ['email', 'since', 'last sign-in', 'user id'],
    row: (o) => [o.email, time(o.created_at), time(o.last_sign_in_at), o.user_id],
  });

  operators
    .command('remove')
    .description('clear the operator mark (the user keeps their account and memberships)')
    .addOption(emailOption("the operator's"))
    .option('--json', 'print what was removed as JSON on stdout')
    .action(async (options: { email: string; json?: boolean }) => {
      const { db } = await ctx.openSupabase();
      const removed = valueOrExit(await removeOperator({ db, email: options.email }));
      if (options.json) return printJson(io, removed);
      io.out(`${removed.email} is no longer an operator.`);
      io.err('A signed-in session keeps the mark until its next token refresh (within the hour).');
    });
}
