import { type Command, Option } from 'commander';
import { z } from 'zod';
import { newUserAccess } from '../accounts/access.ts';
import { addMember, MEMBER_ROLES, type MemberRole } from '../accounts/add-member.ts';
import type { EnsuredUser } from '../accounts/ensure-user.ts';
import { listMembers } from '../accounts/list-members.ts';
import { removeMember } from '../accounts/remove-member.ts';
import { emailOption, parser, schemas, tenantOption } from './arguments.ts';
import {
  type CliIo,
  type CommandContext,
  loadSupabaseConfig,
  valueOrExit,
  valueOrStdin,
} from './context.ts';
import { addListCommand } from './list-command.ts';
import { printJson, renderRecord, time } from './output.ts';

const role = parser(z.enum(MEMBER_ROLES, { error: 'must be viewer or admin' }));

/** What happened to the account, and the generated password the one time it is shown. */
export function printAccount(io: CliIo, user: EnsuredUser, extra: Array<[string, string]>) {
  io.out(
    renderRecord([
      ...extra,
      ['email', user.email],
      ['user id', user.id],
      [
        'account',
        {
          existing: 'existing (unchanged)',
          created: 'created',
          invited: 'invited (Supabase Auth e-mailed them a link)',
        }[user.outcome],
      ],
      ...(user.generatedPassword ? [['password', user.generatedPassword] as [string, string]] : []),
    ]),
  );
  if (user.generatedPassword) {
    io.err('The password is shown this once and stored nowhere in clear: hand it to the user now.');
  }
}

/** `--password -` of a command that may create the user it names. */
export const passwordFlag = () =>
  new Option(
    '--password <->',
    "a new user's password, read from standard input (instead of a generated one or an invitation)",
  ).argParser(parser(schemas.passwordFromStdin));

/**
 * The database, and how a user created on the way gets in: the password from standard input
 * with `--password -`, otherwise generated locally or an invitation.
 */
export async function openForNewUsers(ctx: CommandContext, password: string | undefined) {
  const { config, database } = await ctx.open(loadSupabaseConfig);
  const given =
    password === undefined
      ? undefined
      : await valueOrStdin(ctx.io, password, '--password', 'the password', { verbatim: true });
  return {
    db: database.db,
    access: newUserAccess({
      supabaseUrl: config.SUPABASE_URL,
      ...(given !== undefined ? { password: given } : {}),
    }),
  };
}

export function registerMembers(members: Command, ctx: CommandContext): void {
  const { io } = ctx;

  members
    .command('add')
    .description(
      'make a user a member of a tenant (creating them: locally with a password printed once, on Supabase by invitation)',
    )
    .addOption(tenantOption())
    .addOption(emailOption("the user's"))
    .option('--role <role>', 'viewer (reads usage) or admin', role, 'viewer')
    .addOption(passwordFlag())
    .option('--json', 'print the membership as JSON on stdout')
    .action(
      async (options: {
        tenant: string;
        email: string;
        role: MemberRole;
        password?: string;
        json?: boolean;
      }) => {
        const added = valueOrExit(
          await addMember({
            ...(await openForNewUsers(ctx, options.password)),
            tenant: options.tenant,
            email: options.email,
            role: options.role,
          }),
        );
        if (options.json) return printJson(io, added);
        printAccount(io, added.user, [
          ['tenant', `${added.tenant.name} (${added.tenant.external_ref ?? added.tenant.id})`],
          ['role', added.role],
        ]);
      },
    );

  addListCommand(members, ctx, {
    description: "every tenant's members, or one tenant's",
    options: (command) => command.addOption(tenantOption('only')),
    load: async ({ db }, _, options: { tenant?: string }) =>
      valueOrExit(await listMembers({ db, ...(options.tenant ? { tenant: options.tenant } : {}) })),
    empty:
      'No members yet: add one with `flowmeter members add --tenant <tenant> --email <address>`.',
    columns: ['tenant', 'email', 'role', 'member since', 'last sign-in', 'user id'],
    row: (m) => [
      m.tenant_external_ref ?? m.tenant_name,
      m.email,
      m.role,
      time(m.created_at),
      time(m.last_sign_in_at),
      m.user_id,
    ],
  });

  members
    .command('remove')
    .description('end a membership (the user keeps their account)')
    .addOption(tenantOption())
    .addOption(emailOption("the member's"))
    .option('--json', 'print what was removed as JSON on stdout')
    .action(async (options: { tenant: string; email: string; json?: boolean }) => {
      const { db } = await ctx.openSupabase();
      const removed = valueOrExit(
        await removeMember({ db, tenant: options.tenant, email: options.email }),
      );
      if (options.json) return printJson(io, removed);
      io.out(`${removed.email} is no longer a member of ${removed.tenant.name}.`);
    });
}
