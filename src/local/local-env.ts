import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseEnv } from 'node:util';
import { projectRoot } from './project.ts';
import type { LocalStackInfo } from './stack.ts';

/**
 * Where `npm start` keeps its state: the data folder and the generated connection file.
 * FLOWMETER_LOCAL_DIR moves it (a second checkout, or tests of `npm start` itself).
 */
const localStateDir = process.env.FLOWMETER_LOCAL_DIR || join(projectRoot, '.flowmeter');
export const localEnvFile = join(localStateDir, 'local.env');
export const localDataDir = join(localStateDir, 'db');
/** The dashboard as npm start built it: one per state folder, so two checkouts never share it. */
export const localDashboardDir = join(localStateDir, 'dashboard');

export interface LocalEnv extends LocalStackInfo {
  /** Keyring for secrets at rest in the local database; generated once, then kept. */
  encryptionKeys: string;
  /** The local runner's secret for POST /api/v1/enforce; generated once, then kept. */
  runnerSecret: string;
  /** Shared by collect-usage and collect-usage-background; generated once, then kept. */
  internalSecret: string;
  /** Where npm start serves the tenant dashboard. */
  dashboardUrl: string;
  /** The demo's sign-ins (the first demo tenant's viewer, the operator), with the demo only. */
  demoSignIns?: {
    tenant: { email: string; password: string };
    operator: { email: string; password: string };
  };
}

export function formatLocalEnv(env: LocalEnv): string {
  return [
    "# Written by `npm start`: the local stack's connection settings. Regenerated on every start.",
    `SUPABASE_URL=${env.supabaseUrl}`,
    `SUPABASE_ANON_KEY=${env.anonKey}`,
    `SUPABASE_SERVICE_ROLE_KEY=${env.serviceRoleKey}`,
    `SUPABASE_JWT_SECRET=${env.jwtSecret}`,
    `DATABASE_URL=${env.databaseUrl}`,
    `FLOWMETER_ENCRYPTION_KEYS=${env.encryptionKeys}`,
    `RUNNER_SECRETS=${env.runnerSecret}`,
    `FLOWMETER_INTERNAL_SECRET=${env.internalSecret}`,
    `FLOWMETER_DASHBOARD_URL=${env.dashboardUrl}`,
    ...(env.demoSignIns
      ? [
          `FLOWMETER_DEMO_TENANT_EMAIL=${env.demoSignIns.tenant.email}`,
          `FLOWMETER_DEMO_TENANT_PASSWORD=${env.demoSignIns.tenant.password}`,
          `FLOWMETER_DEMO_OPERATOR_EMAIL=${env.demoSignIns.operator.email}`,
          `FLOWMETER_DEMO_OPERATOR_PASSWORD=${env.demoSignIns.operator.password}`,
        ]
      : []),
    '',
  ].join('\n');
}

export const generateEncryptionKeys = () => `local:${randomBytes(32).toString('base64')}`;
export const generateSecret = () => randomBytes(32).toString('hex');

export async function writeLocalEnv(env: LocalEnv, file = localEnvFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, formatLocalEnv(env), { mode: 0o600 });
}

export async function readLocalEnv(
  file = localEnvFile,
): Promise<Record<string, string> | undefined> {
  try {
    return parseEnv(await readFile(file, 'utf8')) as Record<string, string>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * The environment for tools run next to `npm start` (the CLI): the process environment,
 * completed from .flowmeter/local.env when it names no Supabase project of its own.
 */
export async function environmentWithLocalStack(
  env: NodeJS.ProcessEnv = process.env,
  file = localEnvFile,
): Promise<{ env: Record<string, string | undefined>; usedLocalEnv: boolean }> {
  if (env.SUPABASE_URL) return { env, usedLocalEnv: false };
  const local = await readLocalEnv(file);
  if (!local) return { env, usedLocalEnv: false };
  return { env: { ...local, ...env }, usedLocalEnv: true };
}
