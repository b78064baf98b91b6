import type { Command } from 'commander';
import { addOperator, listOperators, removeOperator } from '../accounts/operators.ts';
import { parser, schemas } from './arguments.ts';
import { type CommandContext, openSupabase, valueOrExit } from './context.ts';
import { openForNewUsers, passwordFlag, printAccount } from './members.ts';
import { printJson, renderTable, time } from './output.ts';

export function registerOperators(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  const operators = program
    .command('operators')
    .description(
      'who may sign in to the operator console (Supabase Auth users marked in app_metadata)',
    );

  operators
    .command('add')
    .description(
      'mark a user operator (creating them: locally with a password printed once, on Supabase by invitation)',
    )
    .requiredOption('--email <address>', "the operator's e-mail address", parser(schemas.email))
    .addOption(passwordFlag())
    .option('--json', 'print the operator as JSON on stdout')
    .action(async (options: { email: string; password?: string; json?: boolean }) => {
      const user = valueOrExit(
        await addOperator({
          ...(await openForNewUsers(io, options.password)),
          email: options.email,
        }),
      );
      if (options.json) return printJson(io, user);
      printAccount(io, user, [['operator', 'yes']]);
      io.err('A signed-in session sees the change at its next token refresh (within the hour).');
    });

  operators
    .command('list')
    .description('every operator')
    .option('--json', 'print JSON on stdout')
    .action(async (options: { json?: boolean }) => {
      const { db } = await openSupabase(io);
      const rows = valueOrExit(await listOperators({ db }));
      if (options.json) return printJson(io, rows);
      if (rows.length === 0) {
        io.out('No operators yet: add one with `flowmeter operators add --email <address>`.');
        return;
      }
      io.out(
        renderTable(
          ['email', 'since', 'last sign-in', 'user id'],
          rows.map((o) => [o.email, time(o.created_at), time(o.last_sign_in_at), o.user_id]),
        ),
      );
    });

  operators
    .command('remove')
    .description('clear the operator mark (the user keeps their account and memberships)')
    .requiredOption('--email <address>', "the operator's e-mail address", parser(schemas.email))
    .option('--json', 'print what was removed as JSON on stdout')
    .action(async (options: { email: string; json?: boolean }) => {
      const { db } = await openSupabase(io);
      const removed = valueOrExit(await removeOperator({ db, email: options.email }));
      if (options.json) return printJson(io, removed);
      io.out(`${removed.email} is no longer an operator.`);
      io.err('A signed-in session keeps the mark until its next token refresh (within the hour).');
    });
}
