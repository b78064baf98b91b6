import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseEnv } from 'node:util';
import { projectRoot } from './project.ts';
import type { LocalStackInfo } from './stack.ts';

/**
 * Where `npm start` keeps its state: the data folder and the generated connection file.
 * FLOWMETER_LOCAL_DIR moves it (a second checkout, or tests of `npm start` itself).
 */
export const localStateDir = process.env.FLOWMETER_LOCAL_DIR || join(projectRoot, '.flowmeter');
export const localEnvFile = join(localStateDir, 'local.env');
export const localDataDir = join(localStateDir, 'db');

export function formatLocalEnv(info: LocalStackInfo): string {
  return [
    "# Written by `npm start`: the local stack's connection settings. Regenerated on every start.",
    `SUPABASE_URL=${info.supabaseUrl}`,
    `SUPABASE_ANON_KEY=${info.anonKey}`,
    `SUPABASE_SERVICE_ROLE_KEY=${info.serviceRoleKey}`,
    `SUPABASE_JWT_SECRET=${info.jwtSecret}`,
    `DATABASE_URL=${info.databaseUrl}`,
    '',
  ].join('\n');
}

export async function writeLocalEnv(info: LocalStackInfo, file = localEnvFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, formatLocalEnv(info), { mode: 0o600 });
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
