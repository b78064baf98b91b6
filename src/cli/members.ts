import { type Command, Option } from 'commander';
import { z } from 'zod';
import { newUserAccess } from '../accounts/access.ts';
import { addMember, MEMBER_ROLES, type MemberRole } from '../accounts/add-member.ts';
import type { EnsuredUser } from '../accounts/ensure-user.ts';
import { listMembers } from '../accounts/list-members.ts';
import { removeMember } from '../accounts/remove-member.ts';
import { parser, schemas } from './arguments.ts';
import {
  type CliIo,
  type CommandContext,
  loadEnvironment,
  loadSupabaseConfig,
  openDatabase,
  openSupabase,
  valueOrExit,
  valueOrStdin,
} from './context.ts';
import { printJson, renderRecord, renderTable, time } from './output.ts';

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
export async function openForNewUsers(io: CliIo, password: string | undefined) {
  const config = await loadEnvironment(io, loadSupabaseConfig);
  const given =
    password === undefined
      ? undefined
      : await valueOrStdin(io, password, '--password', 'the password', { verbatim: true });
  return {
    db: openDatabase(config).db,
    access: newUserAccess({
      supabaseUrl: config.SUPABASE_URL,
      ...(given !== undefined ? { password: given } : {}),
    }),
  };
}

export function registerMembers(program: Command, ctx: CommandContext): void {
  const { io } = ctx;
  const members = program
    .command('members')
    .description("who may sign in to a tenant's dashboard (Supabase Auth users)");

  members
    .command('add')
    .description(
      'make a user a member of a tenant (creating them: locally with a password printed once, on Supabase by invitation)',
    )
    .requiredOption('--tenant <tenant>', 'tenant id or external reference', parser(schemas.tenant))
    .requiredOption('--email <address>', "the user's e-mail address", parser(schemas.email))
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
            ...(await openForNewUsers(io, options.password)),
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

  members
    .command('list')
    .description("every tenant's members, or one tenant's")
    .option(
      '--tenant <tenant>',
      'only this tenant (id or external reference)',
      parser(schemas.tenant),
    )
    .option('--json', 'print JSON on stdout')
    .action(async (options: { tenant?: string; json?: boolean }) => {
      const { db } = await openSupabase(io);
      const rows = valueOrExit(
        await listMembers({ db, ...(options.tenant ? { tenant: options.tenant } : {}) }),
      );
      if (options.json) return printJson(io, rows);
      if (rows.length === 0) {
        io.out(
          'No members yet: add one with `flowmeter members add --tenant <tenant> --email <address>`.',
        );
        return;
      }
      io.out(
        renderTable(
          ['tenant', 'email', 'role', 'member since', 'last sign-in', 'user id'],
          rows.map((m) => [
            m.tenant_external_ref ?? m.tenant_name,
            m.email,
            m.role,
            time(m.created_at),
            time(m.last_sign_in_at),
            m.user_id,
          ]),
        ),
      );
    });

  members
    .command('remove')
    .description('end a membership (the user keeps their account)')
    .requiredOption('--tenant <tenant>', 'tenant id or external reference', parser(schemas.tenant))
    .requiredOption('--email <address>', "the member's e-mail address", parser(schemas.email))
    .option('--json', 'print what was removed as JSON on stdout')
    .action(async (options: { tenant: string; email: string; json?: boolean }) => {
      const { db } = await openSupabase(io);
      const removed = valueOrExit(
        await removeMember({ db, tenant: options.tenant, email: options.email }),
      );
      if (options.json) return printJson(io, removed);
      io.out(`${removed.email} is no longer a member of ${removed.tenant.name}.`);
    });
}
