import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from './project.ts';

const run = promisify(execFile);

/**
 * Runs the Supabase CLI from node_modules against a database URL. The CLI is what ships
 * migrations to production (`supabase db push`), so the local stack applies them with it too.
 */
async function supabaseCli(args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  const bin = join(projectRoot, 'node_modules', '.bin', 'supabase');
  try {
    return await run(bin, [...args, '--workdir', projectRoot], {
      cwd: projectRoot,
      env: { ...process.env, SUPABASE_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' },
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (error) {
    const failure = error as Error & { stdout?: string; stderr?: string };
    throw new Error(
      `supabase ${args[0] ?? ''} ${args[1] ?? ''} failed: ${failure.stderr || failure.stdout || failure.message}`.trim(),
    );
  }
}

/** The CLI talks to a custom Postgres without TLS only when told so. */
const cliDatabaseUrl = (url: string) =>
  url.includes('sslmode=') ? url : `${url}${url.includes('?') ? '&' : '?'}sslmode=disable`;

export async function applyMigrations(databaseUrl: string): Promise<string> {
  const { stdout, stderr } = await supabaseCli([
    'migration',
    'up',
    `--remote=${cliDatabaseUrl(databaseUrl)}`,
    '--yes',
  ]);
  return `${stdout}${stderr}`;
}

export interface AdvisorFinding {
  name: string;
  title: string;
  level: 'ERROR' | 'WARN' | 'INFO';
  detail: string;
  remediation?: string;
}

export async function runAdvisors(databaseUrl: string): Promise<AdvisorFinding[]> {
  const { stdout } = await supabaseCli([
    'db',
    'advisors',
    `--remote=${cliDatabaseUrl(databaseUrl)}`,
    '--type',
    'all',
    '--level',
    'info',
    '--output-format',
    'json',
  ]);
  const parsed = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { results: AdvisorFinding[] };
  return parsed.results;
}

export async function generateTypes(databaseUrl: string): Promise<string> {
  const { stdout } = await supabaseCli([
    'gen',
    'types',
    'typescript',
    `--remote=${cliDatabaseUrl(databaseUrl)}`,
    '--schema',
    'public',
  ]);
  return stdout;
}
