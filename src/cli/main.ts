import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ConfigError, loadCollectorConfig } from '../config/env.ts';
import { environmentWithLocalStack } from '../local/local-env.ts';
import { collectNow } from './collect.ts';

/**
 * The operator CLI. Exit codes: 0 success; 1 the work ran but something failed (a source);
 * 2 bad arguments or configuration, nothing done; 3 a service could not be reached.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3 } as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function sourceId(value: string, previous: string[] = []): string[] {
  if (!UUID.test(value))
    throw new InvalidArgumentError(`"${value}" is not a source id (a UUID, see the sources list)`);
  return [...previous, value.toLowerCase()];
}

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = new Command()
    .name('flowmeter')
    .description('Operate flowmeter: usage metering and billing for hosted n8n.')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s.trimEnd()),
      writeErr: (s) => io.err(s.trimEnd()),
    });

  program
    .command('collect')
    .description('pull new n8n executions now, for the given sources or every enabled one')
    .option('-s, --source <id>', 'only this source (repeatable)', sourceId)
    .option('--json', 'print the run summary as JSON on stdout')
    .action(async (options: { source?: string[]; json?: boolean }) => {
      const { env } = await environmentWithLocalStack(io.env);
      const summary = await collectNow(loadCollectorConfig(env), options, io);
      if (
        options.source?.length &&
        summary.sourcesOk + summary.sourcesFailed + summary.sourcesDeferred === 0
      ) {
        io.err('no such enabled source, or it is being collected by another run right now');
        exitCode = EXIT.failed;
      } else if (summary.sourcesFailed > 0) exitCode = EXIT.failed;
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof ConfigError) {
      io.err(error.message);
      return EXIT.usage;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.err(`error: ${message}`);
    return /fetch failed|ECONNREFUSED|ENOTFOUND|Could not connect/i.test(message)
      ? EXIT.unavailable
      : EXIT.failed;
  }
}

if (import.meta.main) {
  const code = await runCli(process.argv.slice(2), {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    env: process.env,
  });
  process.exitCode = code;
}
