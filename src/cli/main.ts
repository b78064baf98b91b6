import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ConfigError, loadCollectorConfig } from '../config/env.ts';
import { environmentWithLocalStack } from '../local/local-env.ts';
import { registerAdjust } from './adjust.ts';
import { registerAlerts } from './alerts.ts';
import { collectNow } from './collect.ts';
import {
  CliError,
  type CliIo,
  commandContext,
  configHint,
  EXIT,
  readProcessStdin,
} from './context.ts';
import { registerExport } from './export.ts';
import { registerMembers } from './members.ts';
import { registerOperators } from './operators.ts';
import { registerPlans } from './plans.ts';
import { registerReconcile } from './reconcile.ts';
import { registerReport } from './report.ts';
import { registerSources } from './sources.ts';
import { registerStatus } from './status.ts';
import { registerTenants } from './tenants.ts';
import { registerWebhooks } from './webhooks.ts';

export { type CliIo, EXIT };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function sourceId(value: string, previous: string[] = []): string[] {
  if (!UUID.test(value))
    throw new InvalidArgumentError(`"${value}" is not a source id (a UUID, see the sources list)`);
  return [...previous, value.toLowerCase()];
}

/** The command groups and what each is for; each group's module adds its subcommands. */
const GROUPS = {
  plans: 'commercial plans: quota, policy, pricing',
  tenants: 'customers: plan, Stripe link, usage',
  members: "who may sign in to a tenant's dashboard (Supabase Auth users)",
  operators: 'who may sign in to the operator console (Supabase Auth users marked in app_metadata)',
  sources: "tenants' n8n instances whose executions are metered",
  alerts: 'usage alerts: where they are sent, and sending the pending ones now',
  webhooks: 'signed webhooks (Standard Webhooks) to the operator’s own systems',
} as const;

/**
 * The operator CLI. Exit codes: 0 success; 1 the work ran but something failed (a source);
 * 2 bad arguments or configuration, nothing done; 3 a service could not be reached.
 */
/** Control characters (C0, DEL, C1) but the newline. */
const CONTROL = /[^\P{Cc}\n]/gu;

export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const ctx = commandContext(io, (code) => {
    exitCode = Math.max(exitCode, code);
  });
  const program = new Command()
    .name('flowmeter')
    .description('Operate flowmeter: usage metering and billing for hosted n8n.')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({
      writeOut: (s) => io.out(s.trimEnd()),
      writeErr: (s) => io.err(s.trimEnd()),
      // A refused argument is quoted back: its control characters (an escape sequence would
      // act on the operator's terminal) are shown as \u{…} instead. Newlines are the message's.
      outputError: (s, write) =>
        write(s.replace(CONTROL, (c) => `\\u{${c.codePointAt(0)?.toString(16)}}`)),
    })
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 failed (the work ran, something failed), 2 bad arguments or configuration (nothing changed), 3 a service unreachable.\nEvery command takes --json for scripts. See docs/cli.md.',
    );

  const group = (name: keyof typeof GROUPS) => program.command(name).description(GROUPS[name]);
  registerPlans(group('plans'), ctx);
  registerTenants(group('tenants'), ctx);
  registerMembers(group('members'), ctx);
  registerOperators(group('operators'), ctx);
  registerSources(group('sources'), ctx);

  program
    .command('collect')
    .description('pull new n8n executions now, for the given sources or every enabled one')
    .option('-s, --source <id>', 'only this source (repeatable)', sourceId)
    .option('--json', 'print the run summary as JSON on stdout')
    .action(async (options: { source?: string[]; json?: boolean }) => {
      const { env } = await environmentWithLocalStack(io.env);
      const summary = await collectNow(loadCollectorConfig(env), options, io);
      if (summary.databaseUnreachable) {
        io.err(
          'the database could not be reached during the run: is it running, and is SUPABASE_URL right?',
        );
        exitCode = EXIT.unavailable;
      } else if (
        options.source?.length &&
        summary.sourcesOk + summary.sourcesFailed + summary.sourcesDeferred === 0
      ) {
        io.err('no such enabled source, or it is being collected by another run right now');
        exitCode = EXIT.failed;
      } else if (summary.sourcesFailed > 0) exitCode = EXIT.failed;
    });

  registerReport(program, ctx);
  registerAdjust(program, ctx);
  registerAlerts(group('alerts'), ctx);
  registerReconcile(program, ctx);
  registerStatus(program, ctx);
  registerExport(program, ctx);
  registerWebhooks(group('webhooks'), ctx);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof CliError) {
      io.err(`error: ${error.message}`);
      return error.exitCode;
    }
    if (error instanceof ConfigError) {
      const hint = configHint(error);
      io.err(hint ? `${error.message}\n${hint}` : error.message);
      return EXIT.usage;
    }
    // Not an expected failure (those carry their code): a fault of ours, never read as an
    // outage from its wording.
    io.err(`error: ${error instanceof Error ? error.message : String(error)}`);
    return EXIT.failed;
  }
}

/** The real terminal: what `bin/flowmeter.js` should pass (progress bars need `stderr`). */
export const processIo: CliIo = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  stdout: process.stdout,
  env: process.env,
  stderr: process.stderr,
  readStdin: readProcessStdin,
};

/**
 * `flowmeter … | head`: once the reader has gone, writing fails with EPIPE. Nothing more
 * can be shown, so the CLI ends quietly instead of with Node's stack trace; any other
 * stream error stays fatal.
 */
export function exitQuietlyOnBrokenPipe(streams = [process.stdout, process.stderr]): void {
  for (const stream of streams) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
      process.exit(process.exitCode ?? EXIT.ok);
    });
  }
}

if (import.meta.main) {
  exitQuietlyOnBrokenPipe();
  process.exitCode = await runCli(process.argv.slice(2), processIo);
}
